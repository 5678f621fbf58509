"""FileTailSource: complete lines since the checkpoint, across restarts, truncation and rotation."""

from __future__ import annotations

import base64
import logging
import shutil
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from collectors import filetail
from collectors.base import RecordMaker, SourceStats
from collectors.checkpoint import Checkpoint, CheckpointStore
from collectors.filetail import FileTailSource, TailBatch
from socpipe.records import AgencyRef, CollectorRef, RawBatch, RawRecord, SourceRef
from socpipe.settings import Tier

AGENCY = AgencyRef(id="so-tttt", tier=Tier.PROVINCE, name="Sở Thông tin và Truyền thông")
COLLECTOR = CollectorRef(id="collector-1", version="0.1.0")
VIETNAMESE = "Đăng nhập thất bại cho người dùng nguyễn.văn.a"


def make_source(
    log_file: Path, checkpoints: Path, max_line_bytes: int = 1024 * 1024
) -> FileTailSource:
    """A source on ``log_file``, its store freshly loaded from ``checkpoints`` as after a start."""
    source = SourceRef(type="file", path=str(log_file), format="syslog")
    maker = RecordMaker(
        agency=AGENCY,
        collector=COLLECTOR,
        host="web-01",
        source=source,
        stats=SourceStats(name=f"file:{log_file}"),
        max_line_bytes=max_line_bytes,
    )
    return FileTailSource(log_file, CheckpointStore(checkpoints, save_interval_s=0), maker)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as out:
        out.write(data)


def messages(batch: TailBatch) -> list[str | None]:
    return [record["message"] for record in batch.records]


def positions(batch: TailBatch) -> list[int]:
    return [record["position"] for record in batch.records]


def ids(batch: TailBatch) -> list[str]:
    return [record.id for record in whole(batch)]


def whole(batch: TailBatch) -> list[RawRecord]:
    """The batch's records as the SOC decodes them: each lean record with the batch's common
    fields (as RawBatch does with a message's ``common``)."""
    assert batch.common is not None
    wire = orjson.dumps({"v": 1, "common": batch.common, "records": batch.records})
    return RawBatch.from_json(wire).records


def read_all(source: FileTailSource, max_records: int = 1000) -> TailBatch:
    return source.read_batch(max_records)


# --- reading --------------------------------------------------------------------------------


def test_missing_file_gives_an_empty_batch_without_checkpoint(tmp_path: Path) -> None:
    source = make_source(tmp_path / "auth.log", tmp_path / "cp.json")

    batch = source.read_batch(10)

    assert batch.records == []
    assert batch.checkpoint is None
    source.commit(batch)
    assert not (tmp_path / "cp.json").exists()


def test_file_appearing_later_is_read_from_its_start(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    source = make_source(log_file, tmp_path / "cp.json")
    assert source.read_batch(10).records == []

    log_file.write_bytes(b"first\n")

    assert messages(source.read_batch(10)) == ["first"]


def test_records_carry_source_positions_and_deterministic_ids(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"one\ntwo\nthree\n")
    source = make_source(log_file, tmp_path / "cp.json")

    batch = source.read_batch(10)

    status = log_file.stat()
    expected_source = SourceRef(type="file", path=str(log_file), format="syslog")
    assert messages(batch) == ["one", "two", "three"]
    assert positions(batch) == [0, 4, 8]
    for record in whole(batch):
        assert record.source == expected_source
        assert record.agency == AGENCY
        assert record.collector == COLLECTOR
        assert record.host == "web-01"
        assert record.received.utcoffset() == timedelta(0)
        assert record.data is None
        assert record.raw is None
        assert record.id == RawRecord.make_id(
            "collector-1", expected_source, f"{status.st_dev}:{status.st_ino}", record.position
        )
    assert batch.checkpoint == Checkpoint(status.st_dev, status.st_ino, 14)


def test_appended_lines_are_read_once(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"a\n")
    source = make_source(log_file, tmp_path / "cp.json")
    assert messages(source.read_batch(10)) == ["a"]

    assert source.read_batch(10).records == []
    append(log_file, b"b\nc\n")

    batch = source.read_batch(10)
    assert messages(batch) == ["b", "c"]
    assert positions(batch) == [2, 4]
    assert source.read_batch(10).records == []


def test_partial_last_line_is_held_back_until_its_newline(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"done\nhalf a li")
    source = make_source(log_file, tmp_path / "cp.json")

    first = source.read_batch(10)
    assert messages(first) == ["done"]
    assert first.checkpoint is not None
    assert first.checkpoint.offset == 5
    assert source.read_batch(10).records == []

    append(log_file, b"ne\n")

    second = source.read_batch(10)
    assert messages(second) == ["half a line"]
    assert positions(second) == [5]


def test_max_records_is_respected_and_batches_follow_on(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"".join(f"line {n}\n".encode() for n in range(10)))
    source = make_source(log_file, tmp_path / "cp.json")

    batches = [source.read_batch(3) for _ in range(5)]

    assert [len(batch.records) for batch in batches] == [3, 3, 3, 1, 0]
    read = [message for batch in batches for message in messages(batch)]
    assert read == [f"line {n}" for n in range(10)]
    offsets = [batch.checkpoint.offset for batch in batches if batch.checkpoint is not None]
    assert offsets == [21, 42, 63, 70, 70]


def test_max_records_below_one_is_refused(tmp_path: Path) -> None:
    source = make_source(tmp_path / "auth.log", tmp_path / "cp.json")

    with pytest.raises(ValueError, match="max_records"):
        source.read_batch(0)


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 64])
def test_read_chunk_size_does_not_change_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    log_file = tmp_path / "auth.log"
    content = f"{VIETNAMESE}\r\n\nshort\nanother line, longer than a chunk\npartial".encode()
    log_file.write_bytes(content)
    expected = read_all(make_source(log_file, tmp_path / "a.json"))
    monkeypatch.setattr(filetail, "READ_CHUNK_BYTES", chunk_bytes)

    batch = read_all(make_source(log_file, tmp_path / "b.json"))

    assert messages(batch) == messages(expected)
    assert positions(batch) == positions(expected)
    assert ids(batch) == ids(expected)
    assert batch.checkpoint == expected.checkpoint


# --- text -----------------------------------------------------------------------------------


def test_vietnamese_text_round_trips(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(f"{VIETNAMESE}\n".encode())

    batch = read_all(make_source(log_file, tmp_path / "cp.json"))
    (record,) = batch.records

    assert record["message"] == VIETNAMESE
    assert whole(batch)[0].message == VIETNAMESE


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"bad \xff\xfe byte\ncut \xc4\nlatin-1 caf\xe9\nok\n")

    batch = read_all(make_source(log_file, tmp_path / "cp.json"))

    assert messages(batch) == ["bad \ufffd\ufffd byte", "cut \ufffd", "latin-1 caf\ufffd", "ok"]
    # The exact bytes ride along, so nothing the machine wrote is lost.
    assert [base64.b64decode(r["raw"]) for r in batch.records[:3]] == [
        b"bad \xff\xfe byte",
        b"cut \xc4",
        b"latin-1 caf\xe9",
    ]
    assert "raw" not in batch.records[3]
    assert whole(batch)[0].message == "bad \ufffd\ufffd byte"


def test_crlf_and_lf_endings_are_stripped(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"windows\r\nunix\n\r\nan \r inside\r\r\n")

    batch = read_all(make_source(log_file, tmp_path / "cp.json"))

    assert messages(batch) == ["windows", "unix", "", "an \r inside\r"]
    assert positions(batch) == [0, 9, 14, 16]


def test_utf8_byte_order_mark_at_the_start_is_dropped(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"\xef\xbb\xbfheader\nbody\n")

    batch = read_all(make_source(log_file, tmp_path / "cp.json"))

    assert messages(batch) == ["header", "body"]
    assert positions(batch) == [0, 10]


# --- checkpoints and restarts ---------------------------------------------------------------


def test_read_batch_does_not_move_the_stored_checkpoint(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"a\nb\n")
    checkpoints = tmp_path / "cp.json"
    source = make_source(log_file, checkpoints)

    source.read_batch(10)

    assert not checkpoints.exists()
    assert CheckpointStore(checkpoints).get(log_file) is None


def test_commit_then_restart_resumes_exactly(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"l0\nl1\nl2\nl3\n")
    checkpoints = tmp_path / "cp.json"
    everything = read_all(make_source(log_file, tmp_path / "reference.json"))

    source = make_source(log_file, checkpoints)
    first = source.read_batch(2)
    source.commit(first)
    source.close()
    append(log_file, b"l4\n")

    restarted = make_source(log_file, checkpoints)
    rest = read_all(restarted)

    assert messages(first) + messages(rest) == ["l0", "l1", "l2", "l3", "l4"]
    assert positions(rest) == [6, 9, 12]
    assert ids(first) + ids(rest)[:2] == ids(everything)
    assert rest.checkpoint is not None
    assert rest.checkpoint.offset == 15


def test_without_commit_a_restart_reads_the_same_records_again(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"l0\nl1\nl2\n")
    checkpoints = tmp_path / "cp.json"
    source = make_source(log_file, checkpoints)
    committed = source.read_batch(1)
    source.commit(committed)
    lost_in_flight = source.read_batch(10)
    source.close()

    again = read_all(make_source(log_file, checkpoints, max_line_bytes=10))

    assert messages(again) == ["l1", "l2"]
    assert ids(again) == ids(lost_in_flight)
    assert positions(again) == positions(lost_in_flight)


def test_close_forgets_what_was_not_committed(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"l0\nl1\n")
    source = make_source(log_file, tmp_path / "cp.json")
    first = source.read_batch(10)

    source.close()

    assert ids(source.read_batch(10)) == ids(first)


def test_commit_of_an_unchanged_checkpoint_writes_nothing(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"l0\n")
    checkpoints = tmp_path / "cp.json"
    source = make_source(log_file, checkpoints)
    source.commit(source.read_batch(10))
    checkpoints.unlink()

    source.commit(source.read_batch(10))

    assert not checkpoints.exists()


def test_checkpoint_past_the_end_after_a_restart_starts_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"a long first line\nanother line\n")
    checkpoints = tmp_path / "cp.json"
    source = make_source(log_file, checkpoints)
    source.commit(source.read_batch(10))
    source.close()
    log_file.write_bytes(b"short\n")

    with caplog.at_level(logging.WARNING, logger="collectors.filetail"):
        batch = read_all(make_source(log_file, checkpoints))

    assert messages(batch) == ["short"]
    assert positions(batch) == [0]
    assert "truncated" in caplog.text


# --- truncation and rotation ----------------------------------------------------------------


def test_truncation_starts_over_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old line 1\nold line 2\n")
    source = make_source(log_file, tmp_path / "cp.json")
    source.commit(source.read_batch(10))

    with log_file.open("r+b") as out:
        out.truncate(0)
    append(log_file, b"new\n")
    with caplog.at_level(logging.WARNING, logger="collectors.filetail"):
        batch = source.read_batch(10)

    assert messages(batch) == ["new"]
    assert positions(batch) == [0]
    assert batch.checkpoint is not None
    assert batch.checkpoint.offset == 4
    assert str(log_file) in caplog.text
    assert "truncated" in caplog.text


def test_copytruncate_rotation_loses_nothing_already_written(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"before 1\nbefore 2\n")
    source = make_source(log_file, tmp_path / "cp.json")
    before = source.read_batch(10)
    source.commit(before)

    # What logrotate's copytruncate does: copy the file aside, then empty it in place.
    shutil.copyfile(log_file, tmp_path / "auth.log.1")
    with log_file.open("r+b") as out:
        out.truncate(0)
    append(log_file, b"after 1\n")
    after = source.read_batch(10)

    assert messages(before) == ["before 1", "before 2"]
    assert messages(after) == ["after 1"]
    assert positions(after) == [0]
    assert after.checkpoint is not None
    assert (after.checkpoint.inode, after.checkpoint.offset) == (log_file.stat().st_ino, 8)


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old 1\n")
    checkpoints = tmp_path / "cp.json"
    source = make_source(log_file, checkpoints)
    first = source.read_batch(10)
    source.commit(first)

    append(log_file, b"old 2\nold 3\n")
    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_bytes(b"new 1\nnew 2\n")
    batch = source.read_batch(10)

    assert messages(batch) == ["old 2", "old 3", "new 1", "new 2"]
    assert positions(batch) == [6, 12, 0, 6]
    # Same positions in another file give other ids.
    assert whole(batch)[2].id != whole(first)[0].id
    status = log_file.stat()
    assert batch.checkpoint == Checkpoint(status.st_dev, status.st_ino, 12)

    source.commit(batch)
    source.close()
    append(log_file, b"new 3\n")
    resumed = read_all(make_source(log_file, checkpoints))
    assert messages(resumed) == ["new 3"]


def test_rotation_respects_max_records_across_the_switch(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"")
    source = make_source(log_file, tmp_path / "cp.json")
    assert source.read_batch(10).records == []

    append(log_file, b"old 1\nold 2\nold 3\n")
    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_bytes(b"new 1\nnew 2\n")
    batches = [source.read_batch(2) for _ in range(4)]

    assert [messages(batch) for batch in batches] == [
        ["old 1", "old 2"],
        ["old 3", "new 1"],
        ["new 2"],
        [],
    ]


def test_rotation_waits_while_the_writer_still_writes_the_old_file(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old 1\n")
    old_name = tmp_path / "auth.log.1"
    source = make_source(log_file, tmp_path / "cp.json")
    assert messages(source.read_batch(10)) == ["old 1"]

    # logrotate renamed the file and created an empty one; the daemon has not reopened yet.
    log_file.rename(old_name)
    log_file.write_bytes(b"")
    append(old_name, b"old 2\n")
    assert messages(source.read_batch(10)) == ["old 2"]

    append(old_name, b"old 3\n")
    append(log_file, b"new 1\n")
    assert messages(source.read_batch(10)) == ["old 3", "new 1"]


def test_rotation_ships_an_unterminated_last_line_of_the_old_file(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old 1\nold tail without newline")
    source = make_source(log_file, tmp_path / "cp.json")
    assert messages(source.read_batch(10)) == ["old 1"]

    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_bytes(b"new 1\n")
    batch = source.read_batch(10)

    assert messages(batch) == ["old tail without newline", "new 1"]
    assert positions(batch) == [6, 0]


def test_rotated_while_stopped_reads_the_new_file_from_its_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old 1\nold 2\n")
    checkpoints = tmp_path / "cp.json"
    source = make_source(log_file, checkpoints)
    source.commit(source.read_batch(10))
    source.close()

    # Created before the old file is removed, so it cannot get the old file's inode back.
    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_bytes(b"new 1 is longer than everything before\n")
    (tmp_path / "auth.log.1").unlink()
    with caplog.at_level(logging.INFO, logger="collectors.filetail"):
        batch = read_all(make_source(log_file, checkpoints))

    assert messages(batch) == ["new 1 is longer than everything before"]
    assert positions(batch) == [0]
    assert "another file" in caplog.text


def test_deleted_file_is_read_to_its_end_and_then_the_new_one(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old 1\n")
    source = make_source(log_file, tmp_path / "cp.json")
    assert messages(source.read_batch(10)) == ["old 1"]

    with log_file.open("ab") as writer:
        writer.write(b"old 2\n")
        writer.flush()
        log_file.unlink()
        # The path is gone, but the open file is still there to be read.
        assert messages(source.read_batch(10)) == ["old 2"]
        writer.write(b"old 3\n")
    log_file.write_bytes(b"new 1\n")

    assert messages(source.read_batch(10)) == ["old 3", "new 1"]


# --- long lines -----------------------------------------------------------------------------


def test_line_over_the_limit_is_cut_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_file = tmp_path / "auth.log"
    limit = 1024 * 1024
    log_file.write_bytes(b"short\n" + b"x" * (limit + 1000) + b"\nafter\n")
    source = make_source(log_file, tmp_path / "cp.json")

    batch = read_all(source)

    assert [len(message or "") for message in messages(batch)] == [5, limit, 5]
    assert messages(batch)[2] == "after"
    assert positions(batch) == [0, 6, 6 + limit + 1000 + 1]
    assert batch.records[1]["truncated"] >= limit + 1000
    stats = source._maker.stats
    assert stats.truncated == 1
    assert stats.last_error is not None
    assert "record at 6" in stats.last_error


def test_cut_does_not_split_a_character(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    # "ă" is 2 bytes, so 10 bytes end inside the fifth one after the leading "a".
    log_file.write_bytes(("a" + "ă" * 10 + "\n" + "ệ" * 10 + "\n").encode())

    batch = read_all(make_source(log_file, tmp_path / "cp.json", max_line_bytes=10))

    assert messages(batch) == ["aăăăă", "ệệệ"]


def test_unterminated_long_line_ships_its_head_and_skips_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filetail, "READ_CHUNK_BYTES", 4)
    log_file = tmp_path / "auth.log"
    checkpoints = tmp_path / "cp.json"
    log_file.write_bytes(b"ok\n" + b"y" * 25)
    source = make_source(log_file, checkpoints, max_line_bytes=10)

    head = source.read_batch(10)
    assert messages(head) == ["ok", "y" * 10]
    assert positions(head) == [0, 3]
    # The line is not finished: a restart must ship its head again, not its tail as a line.
    assert head.checkpoint is not None
    assert head.checkpoint.offset == 3
    source.commit(head)
    again = read_all(make_source(log_file, checkpoints, max_line_bytes=10))
    assert ids(again)[-1] == ids(head)[-1]

    append(log_file, b"y" * 30 + b"\nnext\n")
    rest = source.read_batch(10)
    assert messages(rest) == ["next"]
    assert positions(rest) == [3 + 55 + 1]
    assert rest.checkpoint is not None
    assert rest.checkpoint.offset == 3 + 55 + 1 + 5


def test_many_lines_are_read_whole_and_in_order(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    lines = [f"<34>Oct 11 22:14:15 web-01 sshd[{n}]: {VIETNAMESE} {n}" for n in range(20_000)]
    log_file.write_bytes("\n".join(lines).encode() + b"\n")
    source = make_source(log_file, tmp_path / "cp.json")

    read: list[str | None] = []
    batch = source.read_batch(5000)
    while batch.records:
        read.extend(messages(batch))
        batch = source.read_batch(5000)

    assert read == lines
    assert batch.checkpoint is not None
    assert batch.checkpoint.offset == log_file.stat().st_size


def test_short_lines_left_unread_at_max_records_are_not_taken_for_a_long_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"".join(f"l{n}\n".encode() for n in range(10)))
    source = make_source(log_file, tmp_path / "cp.json", max_line_bytes=10)

    read = [message for _ in range(10) for message in messages(source.read_batch(1))]

    assert read == [f"l{n}" for n in range(10)]


def test_lines_after_a_truncation_get_new_ids_that_survive_a_restart(tmp_path: Path) -> None:
    """After copytruncate the same offsets hold other lines: their ids must differ."""
    log_file = tmp_path / "auth.log"
    checkpoints = tmp_path / "cp.json"
    log_file.write_bytes(b"line at zero\n")
    source = make_source(log_file, checkpoints)
    before = source.read_batch(10)
    source.commit(before)

    with log_file.open("r+b") as out:
        out.truncate(0)
    append(log_file, b"new\n")  # shorter than what was read: the shrink is visible
    after = source.read_batch(10)
    source.commit(after)
    assert positions(before) == positions(after) == [0]
    assert ids(before) != ids(after)
    assert after.checkpoint is not None and after.checkpoint.generation == 1

    # A restart resumes in the same generation: the next line's id is that of a reader that
    # never stopped.
    append(log_file, b"next\n")
    resumed = make_source(log_file, checkpoints).read_batch(10)
    continued = source.read_batch(10)
    assert messages(resumed) == ["next"]
    assert ids(resumed) == ids(continued)


def test_a_batch_across_a_rotation_keeps_each_files_ids(tmp_path: Path) -> None:
    log_file = tmp_path / "auth.log"
    log_file.write_bytes(b"old 1\n")
    source = make_source(log_file, tmp_path / "cp.json")
    source.read_batch(10)
    old = log_file.stat()
    append(log_file, b"old 2\n")
    log_file.rename(tmp_path / "auth.log.1")
    log_file.write_bytes(b"new 1\n")
    new = log_file.stat()

    batch = source.read_batch(10)

    where = SourceRef(type="file", path=str(log_file), format="syslog")
    assert [(r.message, r.id) for r in whole(batch)] == [
        ("old 2", RawRecord.make_id("collector-1", where, f"{old.st_dev}:{old.st_ino}", 6)),
        ("new 1", RawRecord.make_id("collector-1", where, f"{new.st_dev}:{new.st_ino}", 0)),
    ]
