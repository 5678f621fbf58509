"""The .evtx source on real Windows event logs (the SigmaHQ regression files): every record once,
checkpoints and restarts, folders watched, files still being copied, and files that are not
event logs at all."""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from evtx import PyEvtxParser

from collectors.base import PullBatch, RecordDict, RecordMaker, SourceStats
from collectors.checkpoint import Checkpoint, CheckpointStore
from collectors.evtxsource import CHUNK_BYTES, HEADER_BYTES, EvtxSource, _Chunk, _to_read
from detectors.worker import build_normalizer
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef
from socpipe.settings import DetectorSettings, EvtxSourceSettings, Tier

FILE_EVENT = Path("sigma/regression_data/rules/windows/file/file_event")
# Real logs with several records each, and one whose event data is not ASCII.
SEVEN = FILE_EVENT / (
    "file_event_win_hktl_netexec_file_indicators/efc21479-9e83-41da-8cf1-122e06ba8db3.evtx"
)
FIVE = FILE_EVENT / "file_event_win_anydesk_artefact/0b9ad457-2554-44c1-82c2-d56a99c42377.evtx"
RIGHT_TO_LEFT = FILE_EVENT / (
    "file_event_win_susp_right_to_left_override_extension_spoofing/"
    "979baf41-ca44-4540-9d0c-4fcef3b5a3a4.evtx"
)
# Where a chunk header keeps the offset of its free space: the end of its records.
FREE_SPACE_AT = 48


@pytest.fixture
def seven(shared_data: Path) -> Path:
    return shared_data / SEVEN


@pytest.fixture
def five(shared_data: Path) -> Path:
    return shared_data / FIVE


class FakeClock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_source(
    tmp_path: Path,
    paths: list[Path],
    *,
    clock: FakeClock | None = None,
    rescan_s: float = 10.0,
) -> EvtxSource:
    """A source over ``paths`` with its checkpoints in ``tmp_path`` (read anew each time, as a
    restarted collector reads them)."""
    stats = SourceStats(name="evtx")
    maker = RecordMaker(
        agency=AgencyRef(id="so-tttt", tier=Tier.PROVINCE, name="Sở Thông tin và Truyền thông"),
        collector=CollectorRef(id="collector-1", version="test"),
        host="may-thu-thap-01",
        source=SourceRef(type="evtx", path=str(paths[0]), format="evtx"),
        stats=stats,
    )
    settings = EvtxSourceSettings(paths=[str(path) for path in paths], rescan_s=rescan_s)
    store = CheckpointStore(tmp_path / "checkpoints.json")
    return EvtxSource(settings, store, maker, clock=clock or FakeClock())


def drain(source: EvtxSource, max_records: int = 1000, *, commit: bool = True) -> list[RecordDict]:
    """Poll until nothing is new, committing each batch."""
    records: list[RecordDict] = []
    while (batch := source.poll(max_records)) is not None:
        assert 0 < len(batch.records) <= max_records
        records.extend(batch.records)
        if commit:
            batch.commit()
    return records


def events_of(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(record id, event) of every record, as the ``evtx`` package reads the file itself."""
    events: list[tuple[int, dict[str, Any]]] = []
    for record in PyEvtxParser(str(path)).records_json():
        assert record is not None
        events.append((record["event_record_id"], orjson.loads(record["data"])))
    return events


def positions(records: list[RecordDict]) -> list[int]:
    return [record["position"] for record in records]


def stream_of(path: Path) -> str:
    status = path.stat()
    return f"{status.st_dev}:{status.st_ino}"


def copy(source: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    shutil.copyfile(source, target)
    return target


def records_end(data: bytes) -> int:
    """Where the records of the (first) chunk end, from its header."""
    (free_space,) = struct.unpack_from("<I", data, HEADER_BYTES + FREE_SPACE_AT)
    return int(free_space)


# --- every record, once ----------------------------------------------------------------------


def test_every_record_of_a_real_file_is_shipped_once_with_its_record_id(
    tmp_path: Path, seven: Path
) -> None:
    source = make_source(tmp_path, [seven])
    expected = events_of(seven)
    assert len(expected) > 1

    records = drain(source)

    assert positions(records) == [record_id for record_id, _ in expected]
    assert [record["data"] for record in records] == [event for _, event in expected]
    assert len({record["id"] for record in records}) == len(records)
    maker = source._maker
    assert [record["id"] for record in records] == [
        maker.record_id(stream_of(seven), record_id) for record_id, _ in expected
    ]
    for record in records:
        raw = RawRecord.model_validate(record)
        assert raw.source.type == "evtx"
        assert raw.source.path == str(seven)
        assert raw.source.format == source.settings.format
    assert source.stats.read == len(expected)
    assert source.stats.unreadable == 0
    assert source.stats.lag == 0
    assert source.poll(1000) is None


def test_small_polls_continue_where_the_last_one_stopped(
    tmp_path: Path, seven: Path, five: Path
) -> None:
    folder = tmp_path / "logs"
    first_file, second_file = copy(seven, folder, "a.evtx"), copy(five, folder, "b.evtx")
    os.utime(second_file, ns=(first_file.stat().st_mtime_ns + 10**9,) * 2)
    source = make_source(tmp_path, [folder])
    expected = [record_id for record_id, _ in events_of(seven) + events_of(five)]

    first = source.poll(2)
    assert first is not None
    assert positions(first.records) == expected[:2]
    # Lag is in bytes: the second file is not read yet.
    assert source.stats.lag >= second_file.stat().st_size

    rest = drain(source, max_records=2, commit=False)

    assert positions(first.records) + positions(rest) == expected
    assert source.stats.lag == 0


def test_files_are_read_oldest_first_then_by_name(tmp_path: Path, seven: Path, five: Path) -> None:
    folder = tmp_path / "logs"
    newest = copy(five, folder, "a-newest.evtx")
    oldest = copy(seven, folder, "z-oldest.evtx")
    tied = copy(five, folder, "m-tied.evtx")
    for path, when in ((newest, 3_000), (oldest, 1_000), (tied, 1_000)):
        os.utime(path, ns=(when * 10**9, when * 10**9))
    (folder / "notes.txt").write_text("không phải nhật ký sự kiện\n", encoding="utf-8")
    (folder / "subfolder.evtx").mkdir()
    source = make_source(tmp_path, [folder])

    records = drain(source)

    order = [record["source"]["path"] for record in records]
    expected = (
        [str(tied)] * len(events_of(five))
        + [str(oldest)] * len(events_of(seven))
        + [str(newest)] * len(events_of(five))
    )
    assert order == expected
    # The two copies of one log are two files: their ids differ.
    assert len({record["id"] for record in records}) == len(records)


def test_a_file_named_twice_is_read_once(tmp_path: Path, seven: Path) -> None:
    folder = tmp_path / "logs"
    path = copy(seven, folder)
    source = make_source(tmp_path, [folder, path, folder / "*.evtx"])

    records = drain(source)

    assert positions(records) == [record_id for record_id, _ in events_of(seven)]


# --- Windows events --------------------------------------------------------------------------


def test_the_records_normalize_to_windows_events(tmp_path: Path, seven: Path) -> None:
    source = make_source(tmp_path, [seven])
    normalizer = build_normalizer(DetectorSettings())

    records = drain(source)

    assert records
    for record in records:
        normalized = normalizer.normalize(RawRecord.model_validate(record))
        assert normalized.status == "parsed"
        assert normalized.format == "winlog.evtx"
        system = record["data"]["Event"]["System"]
        winlog = normalized.document["winlog"]
        assert winlog["event_id"] == str(system["EventID"])
        assert winlog["channel"] == system["Channel"]
        assert winlog["computer_name"] == system["Computer"]
        assert winlog["event_data"] == record["data"]["Event"]["EventData"]
        assert normalized.document["log"]["file"]["path"] == str(seven)
        assert normalized.document["event"]["id"] == record["id"]


def test_text_that_is_not_ascii_survives(tmp_path: Path, shared_data: Path) -> None:
    path = shared_data / RIGHT_TO_LEFT
    expected = events_of(path)
    assert any("\u202e" in orjson.dumps(event).decode() for _, event in expected)
    source = make_source(tmp_path, [path])

    records = drain(source)

    assert [record["data"] for record in records] == [event for _, event in expected]
    for record in records:
        assert RawRecord.model_validate_json(orjson.dumps(record)).data == record["data"]


def test_vietnamese_event_data_survives_the_record_and_the_normalizer(
    tmp_path: Path, seven: Path
) -> None:
    # No real log here holds Vietnamese; a real event's fields are given Vietnamese values on
    # the way the source builds records (the maker, JSON, the normalizer).
    source = make_source(tmp_path, [seven])
    batch = source.poll(1)
    assert batch is not None
    event = batch.records[0]["data"]
    values = {
        "User": "UBND-TINH\\nguyễn.văn.đức",
        "TargetFilename": "C:\\Tài liệu\\Báo cáo quý Ba – Sở Tài chính.docx",
    }
    event["Event"]["EventData"].update(values)
    text = orjson.dumps(event).decode("utf-8")
    record = source._maker.data("1:2", 3, orjson.loads(text), "2025-01-02T03:04:05+00:00")

    shipped = orjson.dumps(record)
    raw = RawRecord.model_validate_json(shipped)

    assert "nguyễn.văn.đức".encode() in shipped
    assert raw.data is not None
    for name, value in values.items():
        assert raw.data["Event"]["EventData"][name] == value
    normalized = build_normalizer(DetectorSettings()).normalize(raw)
    assert normalized.status == "parsed"
    assert (
        normalized.document["winlog"]["event_data"]["TargetFilename"] == (values["TargetFilename"])
    )


# --- checkpoints -----------------------------------------------------------------------------


def test_a_restart_resumes_after_the_last_committed_record(tmp_path: Path, seven: Path) -> None:
    expected = [record_id for record_id, _ in events_of(seven)]
    source = make_source(tmp_path, [seven])
    committed = source.poll(3)
    assert committed is not None
    committed.commit()
    uncommitted = source.poll(2)
    assert uncommitted is not None
    source.close()

    stored = CheckpointStore(tmp_path / "checkpoints.json").get(seven)
    status = seven.stat()
    assert stored == Checkpoint(status.st_dev, status.st_ino, expected[2] + 1)

    again = make_source(tmp_path, [seven])
    rest = drain(again)

    assert positions(committed.records) + positions(rest) == expected
    # What was read but not committed comes again, with the same ids.
    assert [r["id"] for r in rest[: len(uncommitted.records)]] == [
        r["id"] for r in uncommitted.records
    ]
    assert drain(make_source(tmp_path, [seven])) == []


def test_close_reads_the_uncommitted_records_again(tmp_path: Path, seven: Path) -> None:
    expected = [record_id for record_id, _ in events_of(seven)]
    source = make_source(tmp_path, [seven])
    committed = source.poll(2)
    assert committed is not None
    committed.commit()
    assert source.poll(2) is not None

    source.close()
    rest = drain(source)

    assert positions(rest) == expected[2:]


def test_batches_committed_in_order_leave_the_last_checkpoint(
    tmp_path: Path, seven: Path, five: Path
) -> None:
    folder = tmp_path / "logs"
    first, second = copy(seven, folder, "a.evtx"), copy(five, folder, "b.evtx")
    os.utime(second, ns=(first.stat().st_mtime_ns + 10**9,) * 2)
    source = make_source(tmp_path, [folder])
    batches: list[PullBatch] = []
    while (batch := source.poll(3)) is not None:
        batches.append(batch)
    for batch in batches:
        batch.commit()

    store = CheckpointStore(tmp_path / "checkpoints.json")
    for path in (first, second):
        stored = store.get(path)
        assert stored is not None
        assert stored.offset == max(record_id for record_id, _ in events_of(path)) + 1
        assert stored.inode == path.stat().st_ino


def test_a_file_replaced_at_the_same_path_is_read_from_its_start(
    tmp_path: Path, seven: Path, five: Path
) -> None:
    folder = tmp_path / "logs"
    path = copy(seven, folder, "Security.evtx")
    source = make_source(tmp_path, [path])
    first = drain(source)
    # A new file renamed over the old one, as a copy tool finishing does.
    replacement = copy(five, tmp_path, "incoming.evtx")
    replacement.replace(path)

    while_running = drain(source)
    after_restart = drain(make_source(tmp_path, [path]))

    assert positions(first) == [record_id for record_id, _ in events_of(seven)]
    assert positions(while_running) == [record_id for record_id, _ in events_of(five)]
    assert {r["id"] for r in while_running}.isdisjoint(r["id"] for r in first)
    assert after_restart == []


# --- folders ---------------------------------------------------------------------------------


def test_a_watched_folder_picks_up_a_new_file_at_the_next_rescan(
    tmp_path: Path, seven: Path, five: Path
) -> None:
    folder = tmp_path / "logs"
    first = copy(seven, folder)
    clock = FakeClock()
    source = make_source(tmp_path, [folder], clock=clock, rescan_s=30)
    assert positions(drain(source)) == [record_id for record_id, _ in events_of(seven)]

    second = copy(five, folder)
    before_rescan = source.poll(100)
    clock.now += 30
    after_rescan = drain(source)

    assert before_rescan is None
    assert positions(after_rescan) == [record_id for record_id, _ in events_of(five)]
    assert {r["source"]["path"] for r in after_rescan} == {str(second)}
    assert first != second


# --- files still being written ---------------------------------------------------------------


def test_a_file_being_copied_ships_what_is_complete_then_the_rest(
    tmp_path: Path, seven: Path
) -> None:
    expected = [record_id for record_id, _ in events_of(seven)]
    data = seven.read_bytes()
    assert len(data) == HEADER_BYTES + CHUNK_BYTES
    # Half way through the records of the chunk: in the middle of a record, and of the chunk.
    cut = HEADER_BYTES + records_end(data) // 2
    path = tmp_path / "logs" / "Security.evtx"
    path.parent.mkdir()
    path.write_bytes(data[:cut])
    source = make_source(tmp_path, [path])

    early = drain(source)
    assert 0 < len(early) < len(expected)
    assert positions(early) == expected[: len(early)]
    assert source.stats.unreadable == 1
    assert source.stats.last_error is not None
    assert str(path) in source.stats.last_error

    # More arrives, still short of the end: reported once, not at every poll.
    source.stats.last_error = None
    with path.open("ab") as out:
        out.write(data[cut : cut + 8])
    assert source.poll(100) is None
    assert source.poll(100) is None
    assert source.stats.unreadable == 1
    assert source.stats.last_error is None

    # A restart in between, then the copy completes.
    restarted = make_source(tmp_path, [path])
    assert restarted.poll(100) is None
    with path.open("ab") as out:
        out.write(data[cut + 8 :])
    late = drain(restarted)

    assert positions(early) + positions(late) == expected
    assert len({r["id"] for r in early + late}) == len(expected)
    assert [r["data"] for r in early + late] == [event for _, event in events_of(seven)]


def test_a_chunk_written_in_place_ships_its_whole_records_and_counts_the_torn_one_once(
    tmp_path: Path, seven: Path
) -> None:
    # A live log: the chunk is allocated whole and its records written into it, so a reader
    # may see the last one torn.
    expected = [record_id for record_id, _ in events_of(seven)]
    data = seven.read_bytes()
    cut = HEADER_BYTES + records_end(data) - 100
    path = tmp_path / "Application.evtx"
    path.write_bytes(data[:cut] + bytes(len(data) - cut))
    source = make_source(tmp_path, [path])

    early = drain(source)
    assert 0 < len(early) < len(expected)
    assert positions(early) == expected[: len(early)]
    assert source.stats.unreadable == 1

    # The writer touched the file without finishing the record: not counted again.
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert drain(source) == []
    assert source.stats.unreadable == 1

    with path.open("r+b") as out:
        out.seek(cut)
        out.write(data[cut:])
    late = drain(source)

    assert positions(early) + positions(late) == expected
    # The torn record is shipped whole, not cut short.
    assert [r["data"] for r in early + late] == [event for _, event in events_of(seven)]
    assert source.stats.unreadable == 1


# --- bad files -------------------------------------------------------------------------------


def test_files_that_are_not_event_logs_are_counted_and_never_raise(
    tmp_path: Path, seven: Path
) -> None:
    folder = tmp_path / "logs"
    good = copy(seven, folder, "good.evtx")
    noise = random.Random(20250102)
    text = folder / "text.evtx"
    text.write_text("Nhật ký này không phải EVTX\n" * 200, encoding="utf-8")
    (folder / "random.evtx").write_bytes(noise.randbytes(HEADER_BYTES + CHUNK_BYTES))
    # The file header of an event log, then garbage where its chunk should be.
    (folder / "garbage-chunk.evtx").write_bytes(
        seven.read_bytes()[:HEADER_BYTES] + noise.randbytes(CHUNK_BYTES)
    )
    (folder / "empty.evtx").write_bytes(b"")
    (folder / "header-only-so-far.evtx").write_bytes(seven.read_bytes()[:100])
    clock = FakeClock()
    source = make_source(tmp_path, [folder], clock=clock)

    records = drain(source)

    assert positions(records) == [record_id for record_id, _ in events_of(seven)]
    assert {r["source"]["path"] for r in records} == {str(good)}
    assert source.stats.unreadable == 3

    # Looked at again only once changed.
    clock.now += 60
    assert drain(source) == []
    assert source.stats.unreadable == 3
    with text.open("a", encoding="utf-8") as out:
        out.write("vẫn không phải\n")
    assert drain(source) == []
    assert source.stats.unreadable == 4
    assert source.stats.last_error is not None
    assert str(text) in source.stats.last_error


def test_a_damaged_record_is_counted_and_the_others_shipped(tmp_path: Path, seven: Path) -> None:
    expected = [record_id for record_id, _ in events_of(seven)]
    data = bytearray(seven.read_bytes())
    # The second record: after the first, whose size follows its magic.
    first_record = HEADER_BYTES + 512
    (first_size,) = struct.unpack_from("<I", data, first_record + 4)
    second = first_record + first_size
    (second_size,) = struct.unpack_from("<I", data, second + 4)
    data[second + 24 : second + second_size - 8] = random.Random(7).randbytes(second_size - 32)
    path = tmp_path / "damaged.evtx"
    path.write_bytes(bytes(data))
    source = make_source(tmp_path, [path])

    records = drain(source)

    assert positions(records) == [expected[0], *expected[2:]]
    assert source.stats.unreadable == 1
    assert source.stats.last_error is not None
    assert str(path) in source.stats.last_error
    assert f"record number {expected[1]}" in source.stats.last_error


def test_a_vanished_file_is_reported_and_the_others_read(
    tmp_path: Path, seven: Path, five: Path
) -> None:
    folder = tmp_path / "logs"
    doomed = copy(seven, folder, "a.evtx")
    kept = copy(five, folder, "b.evtx")
    os.utime(kept, ns=(doomed.stat().st_mtime_ns + 10**9,) * 2)
    source = make_source(tmp_path, [folder, tmp_path / "not-there-yet.evtx"])
    assert source.poll(2) is not None

    doomed.unlink()
    rest = drain(source)

    assert {r["source"]["path"] for r in rest} == {str(kept)}
    assert positions(rest) == [record_id for record_id, _ in events_of(five)]
    assert source.stats.last_error is not None
    assert str(doomed) in source.stats.last_error


def test_a_cleared_log_is_read_again_with_new_ids(tmp_path: Path, seven: Path, five: Path) -> None:
    # Rewritten in place (same inode) with fewer records than were shipped from it.
    assert len(events_of(five)) < len(events_of(seven))
    path = tmp_path / "System.evtx"
    path.write_bytes(seven.read_bytes())
    source = make_source(tmp_path, [path])
    before = drain(source)

    with path.open("r+b") as out:
        out.write(five.read_bytes())
        out.truncate()
    after = drain(source)

    assert positions(after) == [record_id for record_id, _ in events_of(five)]
    assert {r["id"] for r in after}.isdisjoint(r["id"] for r in before)


def test_every_real_log_of_the_corpus_is_read_whole(tmp_path: Path, shared_data: Path) -> None:
    files = sorted((shared_data / "sigma" / "regression_data").rglob("*.evtx"))
    assert files
    source = make_source(tmp_path, files)

    records = drain(source, max_records=50)

    by_file: dict[str, list[int]] = {}
    for record in records:
        by_file.setdefault(record["source"]["path"], []).append(record["position"])
    assert by_file == {str(path): [record_id for record_id, _ in events_of(path)] for path in files}
    assert source.stats.unreadable == 0


# --- which chunks are parsed -----------------------------------------------------------------


def test_chunks_are_read_oldest_records_first_and_done_ones_skipped() -> None:
    # A log that wrapped around: its oldest records are in the middle of the file.
    newest = _Chunk(offset=HEADER_BYTES, available=CHUNK_BYTES, first_id=300, last_id=399)
    oldest = _Chunk(HEADER_BYTES + CHUNK_BYTES, CHUNK_BYTES, first_id=100, last_id=199)
    middle = _Chunk(HEADER_BYTES + 2 * CHUNK_BYTES, CHUNK_BYTES, first_id=200, last_id=299)
    chunks = [newest, oldest, middle]

    assert _to_read(chunks, 0) == [oldest, middle, newest]
    assert _to_read(chunks, 200) == [middle, newest]
    assert _to_read(chunks, 300) == [newest]
    # The newest chunk is read even when its header says it holds nothing new: the writer may
    # have added records since it was last written.
    assert _to_read(chunks, 400) == [newest]
    assert _to_read([], 1) == []
