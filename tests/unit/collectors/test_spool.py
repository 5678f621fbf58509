"""Spool: order across segments and restarts, the max_bytes bound, recovery from an append cut
short (truncated file, garbage, SIGKILL), refusal of damage, and a model-based test."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from collectors.spool import HEADER_BYTES, Spool, SpoolCorruptError, SpoolEntry, SpoolPosition
from socpipe.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[3]
VIETNAMESE = "Đăng nhập thất bại cho người dùng nguyễn.văn.a từ Sở Tài nguyên và Môi trường"
BIG = 1 << 30


def entry(number: int, padding: int = 0) -> SpoolEntry:
    """A message like the shipper's: keyed, with headers, a Vietnamese value."""
    return SpoolEntry(
        key=f"so-tnmt/web-{number % 3}".encode(),
        value=f"{VIETNAMESE} #{number} ".encode() + b"." * padding,
        headers=(("socpipe-kind", b"raw"), ("nguồn", f"tệp {number}".encode())),
    )


def batch(start: int, count: int, padding: int = 0) -> list[SpoolEntry]:
    return [entry(number, padding) for number in range(start, start + count)]


def held(spool: Spool, step: int = 7) -> list[SpoolEntry]:
    """Every entry the spool holds, read in steps as the shipper reads them."""
    found: list[SpoolEntry] = []
    after: SpoolPosition | None = None
    while page := spool.peek(step, BIG, after=after):
        found += [item for _, item in page]
        after = page[-1][0]
        assert len(found) <= 1_000_000, "peek does not move on"
    return found


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def open_spool(directory: Path, max_bytes: int = BIG, segment_bytes: int = 4096) -> Spool:
    return Spool(directory, max_bytes=max_bytes, segment_bytes=segment_bytes)


def test_entries_come_back_in_order_across_segments(tmp_path: Path) -> None:
    written = [*batch(0, 5), SpoolEntry(None, b"", ()), *batch(5, 40, padding=100)]
    with open_spool(tmp_path / "spool", segment_bytes=1024) as spool:
        for start in range(0, len(written), 4):
            assert spool.append(written[start : start + 4])

        assert held(spool) == written
        assert len(segments(tmp_path / "spool")) > 3
        assert spool.entries == len(written)
        assert not spool.empty


def test_segment_names_and_directory_mode(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "spool"
    with open_spool(directory, segment_bytes=200) as spool:
        spool.append(batch(0, 1, padding=300))
        spool.append(batch(1, 1))

    names = [path.name for path in segments(directory)]
    assert names == ["00000000000000000000.spool", "00000000000000000001.spool"]
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in segments(directory))


def test_peek_does_not_remove_and_keeps_to_its_limits(tmp_path: Path) -> None:
    written = batch(0, 10)
    sizes = [item.spooled_size for item in written]
    with open_spool(tmp_path / "spool") as spool:
        spool.append(written)

        first = spool.peek(3, BIG)
        assert [item for _, item in first] == written[:3]
        assert spool.peek(3, BIG) == first
        assert [item for _, item in spool.peek(100, sizes[0] + sizes[1])] == written[:2]
        assert [item for _, item in spool.peek(100, sizes[0] + sizes[1] - 1)] == written[:1]
        # One entry even if it is larger than max_bytes, or the spool could never drain.
        assert [item for _, item in spool.peek(100, 1)] == written[:1]
        assert spool.peek(0, BIG) == []
        after = [item for _, item in spool.peek(4, BIG, after=first[-1][0])]
        assert after == written[3:7]
        assert spool.entries == 10


def test_spooled_size_is_what_the_disk_and_size_bytes_hold(tmp_path: Path) -> None:
    written = [*batch(0, 3), SpoolEntry(None, "nhật ký".encode(), ()), SpoolEntry(b"", b"x")]
    with open_spool(tmp_path / "spool") as spool:
        spool.append(written)

        expected = sum(item.spooled_size for item in written)
        assert spool.size_bytes == expected
        assert segments(tmp_path / "spool")[0].stat().st_size == expected
        assert spool.free_bytes == BIG - expected
        assert [item.key for item in held(spool)] == [item.key for item in written]


def test_restart_keeps_what_was_not_acknowledged(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory, segment_bytes=600) as spool:
        for start in range(0, 30, 3):
            spool.append(batch(start, 3))
        page = spool.peek(11, BIG)
        spool.ack(page[-1][0])
        size_before = spool.size_bytes

    with open_spool(directory, segment_bytes=600) as again:
        assert held(again) == batch(11, 19)
        assert again.entries == 19
        assert again.size_bytes == size_before
        again.ack(again.peek(19, BIG)[-1][0])
        assert again.empty

    with open_spool(directory, segment_bytes=600) as third:
        assert third.empty
        assert third.size_bytes == 0
        assert held(third) == []


def test_ack_deletes_segments_wholly_behind_the_head(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory, segment_bytes=300) as spool:
        for number in range(8):
            spool.append(batch(number, 1, padding=200))
        names = segments(directory)
        assert len(names) == 8
        page = spool.peek(3, BIG)

        spool.ack(page[1][0])
        assert segments(directory) == names[2:]
        spool.ack(page[2][0])
        assert segments(directory) == names[3:]
        spool.ack(spool.peek(100, BIG)[-1][0])
        # The newest segment stays: appends go on in it.
        assert segments(directory) == names[-1:]
        assert spool.empty


def test_acknowledging_twice_or_out_of_order_is_harmless(tmp_path: Path) -> None:
    with open_spool(tmp_path / "spool") as spool:
        spool.append(batch(0, 6))
        page = spool.peek(6, BIG)
        spool.ack(page[3][0])

        spool.ack(page[3][0])
        spool.ack(page[1][0])

        assert held(spool) == batch(4, 2)
        # Reading on after an acknowledged position starts at the oldest held entry.
        assert [item for _, item in spool.peek(10, BIG, after=page[0][0])] == batch(4, 2)


def test_positions_of_another_spool_object_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory) as spool:
        spool.append(batch(0, 2))
        stale = spool.peek(1, BIG)[0][0]

    with open_spool(directory) as again, pytest.raises(ValueError, match="another Spool"):
        again.ack(stale)


def test_full_spool_refuses_without_writing_then_accepts_after_ack(tmp_path: Path) -> None:
    one = entry(0, padding=100).spooled_size
    directory = tmp_path / "spool"
    with open_spool(directory, max_bytes=3 * one) as spool:
        assert spool.append(batch(0, 2, padding=100))
        assert spool.fits(batch(2, 1, padding=100))
        assert not spool.fits(batch(2, 2, padding=100))
        on_disk = sum(path.stat().st_size for path in segments(directory))

        assert spool.append(batch(2, 2, padding=100)) is False

        assert sum(path.stat().st_size for path in segments(directory)) == on_disk
        assert spool.entries == 2
        spool.ack(spool.peek(1, BIG)[0][0])
        assert spool.append(batch(2, 2, padding=100))
        assert held(spool) == batch(1, 3, padding=100)
        assert spool.free_bytes == 0


def test_a_batch_larger_than_the_whole_spool_is_an_error(tmp_path: Path) -> None:
    with open_spool(tmp_path / "spool", max_bytes=1000) as spool:
        with pytest.raises(ValueError, match="more than the whole spool"):
            spool.append(batch(0, 1, padding=2000))
        assert spool.append([])
        assert spool.empty


def test_one_fsync_per_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_spool(tmp_path / "spool", segment_bytes=BIG) as spool:
        calls: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            calls.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        for start in range(0, 500, 100):
            spool.append(batch(start, 100))

        assert len(calls) == 5


def test_a_failed_append_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory) as spool:
        spool.append(batch(0, 3))
        assert spool.peek(10, BIG)  # the reader now has the segment open
        size = segments(directory)[0].stat().st_size
        real_fsync = os.fsync

        def failing_fsync(fd: int) -> None:
            monkeypatch.setattr(os, "fsync", real_fsync)
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="Input/output"):
            spool.append(batch(3, 4))

        assert segments(directory)[0].stat().st_size == size
        assert spool.entries == 3
        assert spool.append(batch(100, 2))
        assert held(spool) == batch(0, 3) + batch(100, 2)

    with open_spool(directory) as again:
        assert held(again) == batch(0, 3) + batch(100, 2)


def test_vietnamese_bytes_and_odd_entries_survive_a_restart(tmp_path: Path) -> None:
    written = [
        SpoolEntry(
            "khóa/máy-chủ".encode(),
            VIETNAMESE.encode("utf-8"),
            (("tiêu-đề", "giá trị ạ".encode()),),
        ),
        SpoolEntry(None, VIETNAMESE.encode("utf-16-le"), ()),
        SpoolEntry(b"", bytes(range(256)), (("", b""), ("ư" * 300, b"\x00\xff"))),
        SpoolEntry(b"k", b"\xc3\x28 not UTF-8 \xed\xa0\x80", ()),
    ]
    directory = tmp_path / "spool"
    with open_spool(directory) as spool:
        spool.append(written)

    with open_spool(directory) as again:
        assert held(again) == written
        assert held(again)[1].key is None
        assert held(again)[2].key == b""


def test_the_directory_is_locked_while_open(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory), pytest.raises(ConfigError, match="in use by another process"):
        open_spool(directory)
    with open_spool(directory) as again:
        assert again.empty


def test_closed_spool_refuses_use(tmp_path: Path) -> None:
    spool = open_spool(tmp_path / "spool")
    spool.close()
    spool.close()
    with pytest.raises(ValueError, match="closed"):
        spool.append(batch(0, 1))


# -- an append cut short --------------------------------------------------------------------


def appended_batches(directory: Path, count: int, size: int = 3) -> list[list[SpoolEntry]]:
    batches = [batch(number * size, size) for number in range(count)]
    with open_spool(directory, segment_bytes=BIG) as spool:
        for each in batches:
            spool.append(each)
    return batches


def truncate(path: Path, size: int) -> None:
    with path.open("r+b") as file:
        file.truncate(size)


@pytest.mark.parametrize("cut", [1, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 5, -1])
def test_a_torn_last_entry_is_dropped_with_its_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut: int
) -> None:
    directory = tmp_path / "spool"
    batches = appended_batches(directory, 3)
    segment = segments(directory)[0]
    last_batch_start = sum(item.spooled_size for item in batches[0] + batches[1])
    last_entry_start = segment.stat().st_size - batches[2][-1].spooled_size
    # Cut inside the last entry: its batch's first two entries are whole but must go too.
    truncate(segment, last_entry_start + (cut if cut > 0 else batches[2][-1].spooled_size - 1))

    with (
        caplog.at_level(logging.WARNING, logger="collectors.spool"),
        open_spool(directory) as spool,
    ):
        assert held(spool) == batches[0] + batches[1]
        assert spool.size_bytes == last_batch_start
        assert spool.append(batches[2])
        assert held(spool) == batches[0] + batches[1] + batches[2]

    assert segment.stat().st_size == last_batch_start + sum(i.spooled_size for i in batches[2])
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(segment) in warning
    assert f"at byte {last_batch_start}" in warning


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00" * 4096,
        random.Random(7).randbytes(5000),
        bytes([0xD1]) * 50,
        bytes([0xD1, 0x01, 0, 0, 0, 3]),
    ],
    ids=["zeros", "random", "magic-bytes", "short-header"],
)
def test_garbage_after_the_last_append_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    directory = tmp_path / "spool"
    batches = appended_batches(directory, 2)
    segment = segments(directory)[0]
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(garbage)

    with (
        caplog.at_level(logging.WARNING, logger="collectors.spool"),
        open_spool(directory) as spool,
    ):
        assert held(spool) == batches[0] + batches[1]

    assert segment.stat().st_size == size
    assert any(str(segment) in record.getMessage() for record in caplog.records)


def test_a_torn_append_in_the_newest_segment_after_older_ones(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory, segment_bytes=500) as spool:
        for start in range(0, 12, 2):
            spool.append(batch(start, 2))
    newest = segments(directory)[-1]
    truncate(newest, newest.stat().st_size - 3)

    with open_spool(directory, segment_bytes=500) as again:
        assert held(again) == batch(0, 10)


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (0, "entry starts with"),
        (3, "checksum of its header"),
        (HEADER_BYTES + 2, "checksum of its payload"),
    ],
    ids=["magic", "length", "payload"],
)
def test_damage_in_the_middle_is_refused_naming_file_and_offset(
    tmp_path: Path, where: int, reason: str
) -> None:
    directory = tmp_path / "spool"
    batches = appended_batches(directory, 3)
    segment = segments(directory)[0]
    damaged = batches[0][0].spooled_size  # the second entry
    flip(segment, damaged + where)

    with pytest.raises(SpoolCorruptError) as caught:
        open_spool(directory)

    message = str(caught.value)
    assert str(segment) in message
    assert f"corrupt at byte {damaged}" in message
    assert reason in message
    assert "not an append cut short" in message
    assert "move" in message


def test_damage_at_the_end_of_an_older_segment_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory, segment_bytes=400) as spool:
        for start in range(0, 9, 3):
            spool.append(batch(start, 3))
    older = segments(directory)[0]
    truncate(older, older.stat().st_size - 1)

    with pytest.raises(SpoolCorruptError, match="not the newest segment") as caught:
        open_spool(directory, segment_bytes=400)
    assert str(older) in str(caught.value)


def test_moving_a_damaged_segment_aside_as_advised_opens_the_rest(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory, segment_bytes=400) as spool:
        for start in range(0, 9, 3):
            spool.append(batch(start, 3))
    first = segments(directory)[0]
    flip(first, 20)
    with pytest.raises(SpoolCorruptError):
        open_spool(directory, segment_bytes=400)

    first.rename(tmp_path / first.name)

    with open_spool(directory, segment_bytes=400) as spool:
        assert held(spool) == batch(3, 6)


def test_damage_after_opening_is_caught_when_read(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory) as spool:
        spool.append(batch(0, 4))
        segment = segments(directory)[0]
        damaged = sum(item.spooled_size for item in batch(0, 2))
        flip(segment, damaged + entry(2).spooled_size - 1)  # the last byte of its value

        assert len(spool.peek(2, BIG)) == 2
        with pytest.raises(SpoolCorruptError) as caught:
            spool.peek(4, BIG)
        assert f"{segment} is corrupt at byte {damaged}" in str(caught.value)
        assert "checksum of its payload" in str(caught.value)


@pytest.mark.parametrize(
    "content", [b"{not json", b"[1, 2]", b'{"format": 1, "segment": -1, "offset": 0}']
)
def test_a_corrupt_state_file_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    directory = tmp_path / "spool"
    appended_batches(directory, 1)
    (directory / "head.json").write_bytes(content)

    with pytest.raises(SpoolCorruptError) as caught:
        open_spool(directory)
    assert str(directory / "head.json") in str(caught.value)
    assert "delete it" in str(caught.value)


def test_segments_left_by_a_crash_after_saving_the_head_are_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with open_spool(directory, segment_bytes=300) as spool:
        for number in range(4):
            spool.append(batch(number, 1, padding=200))
        first = segments(directory)[0]
        content = first.read_bytes()
        spool.ack(spool.peek(2, BIG)[-1][0])
    first.write_bytes(content)  # as if the crash came before the delete

    with open_spool(directory, segment_bytes=300) as again:
        assert held(again) == [entry(2, 200), entry(3, 200)]
    assert not first.exists()


# -- SIGKILL at a random moment -------------------------------------------------------------

CHILD = """
import random, sys
from pathlib import Path
from collectors.spool import Spool, SpoolEntry

directory = Path(sys.argv[1])
start, size, seed = (int(arg) for arg in sys.argv[2:5])
rng = random.Random(seed)

def value(i):
    return f"Đăng nhập #{i} ".encode() * (1 + i % 37)

spool = Spool(directory, max_bytes=1 << 40, segment_bytes=64 * 1024)
n = start
while True:
    spool.append([
        SpoolEntry(str(i).encode(), value(i), (("số", b"%d" % i),))
        for i in range(n, n + size)
    ])
    n += size
    print("appended", n, flush=True)
    if spool.entries > 3 * size and rng.random() < 0.3:
        page = spool.peek(rng.randint(1, 2 * size), 1 << 30)
        spool.ack(page[-1][0])
        print("acked", int(page[-1][1].key), flush=True)
"""


def expected_entry(number: int) -> SpoolEntry:
    value = f"Đăng nhập #{number} ".encode() * (1 + number % 37)
    return SpoolEntry(str(number).encode(), value, (("số", b"%d" % number),))


def line_complete(words: list[str], lines: list[str], rest: str) -> bool:
    """Whether the report was printed whole (its newline was written before the kill)."""
    text = " ".join(words) + "\n"
    return any(line == text for line in lines) or text in rest


def test_sigkill_at_any_moment_leaves_whole_batches_in_order(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    size = 40
    rng = random.Random()
    start, first_held = 0, 0
    for round_number in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), str(start), str(size), str(round_number)],
            cwd=PROJECT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(rng.randint(1, 60))]
        # Land anywhere: in an append, between the write and the fsync, in saving the head.
        time.sleep(rng.random() * 0.01)
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate()
        assert child.returncode == -signal.SIGKILL, errors
        # A kill may cut the child's last report short: only whole "word number" lines count.
        reports = [
            words
            for words in (line.split() for line in [*lines, *rest.splitlines()])
            if len(words) == 2 and words[1].isdigit() and line_complete(words, lines, rest)
        ]
        appended = max([int(n) for word, n in reports if word == "appended"], default=start)
        acked = max([int(n) for word, n in reports if word == "acked"], default=-1)

        with open_spool(directory, max_bytes=1 << 40, segment_bytes=64 * 1024) as spool:
            entries = held(spool, step=size)
        numbers = [int(item.key or b"") for item in entries]

        assert entries == [expected_entry(number) for number in numbers], "damaged entries"
        if numbers:
            end = numbers[-1] + 1
            assert numbers == list(range(numbers[0], end)), "not in order or with gaps"
            assert first_held <= numbers[0] and acked < numbers[0] <= appended
            # Whole batches only: the one being written when killed is all there or not at all.
            assert end in (appended, appended + size)
        else:
            end = start
            assert appended == start
        start, first_held = end, numbers[0] if numbers else end


# -- against a model ------------------------------------------------------------------------

MODEL_MAX_BYTES = 3000
MODEL_SEGMENT_BYTES = 300

names = st.sampled_from(["socpipe-kind", "nguồn", "số-bản-ghi", ""]) | st.text(
    st.characters(codec="utf-8"), max_size=8
)
values = st.binary(max_size=200) | st.text(st.characters(codec="utf-8"), max_size=60).map(
    str.encode
)
spool_entries = st.builds(
    SpoolEntry,
    key=st.none() | st.binary(max_size=16),
    value=values,
    headers=st.lists(st.tuples(names, st.binary(max_size=16)), max_size=3).map(tuple),
)


def take(model: list[SpoolEntry], max_entries: int, max_bytes: int) -> list[SpoolEntry]:
    """What peek must return from ``model``: at most ``max_entries``, within ``max_bytes``
    unless that leaves none."""
    taken: list[SpoolEntry] = []
    total = 0
    for item in model[:max_entries]:
        if taken and total + item.spooled_size > max_bytes:
            break
        taken.append(item)
        total += item.spooled_size
    return taken


class SpoolModel(RuleBasedStateMachine):
    """Append, peek, read on, acknowledge and reopen, against a list of what was appended."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.spool = self._open()
        self.appended: list[SpoolEntry] = []
        self.head = 0  # how many of ``appended`` were acknowledged
        self.peeked: list[tuple[SpoolPosition, int]] = []  # positions and their index
        self.stale: list[SpoolPosition] = []

    def _open(self) -> Spool:
        return Spool(
            self.root / "spool", max_bytes=MODEL_MAX_BYTES, segment_bytes=MODEL_SEGMENT_BYTES
        )

    @property
    def model(self) -> list[SpoolEntry]:
        return self.appended[self.head :]

    @rule(entries=st.lists(spool_entries, min_size=1, max_size=6))
    def append(self, entries: list[SpoolEntry]) -> None:
        needed = sum(item.spooled_size for item in entries)
        if needed > MODEL_MAX_BYTES:
            with pytest.raises(ValueError):
                self.spool.append(entries)
            return
        fits = sum(item.spooled_size for item in self.model) + needed <= MODEL_MAX_BYTES
        assert self.spool.fits(entries) is fits
        assert self.spool.append(entries) is fits
        if fits:
            self.appended += entries

    @rule(max_entries=st.integers(0, 12), max_bytes=st.integers(0, 2500))
    def peek(self, max_entries: int, max_bytes: int) -> None:
        page = self.spool.peek(max_entries, max_bytes)
        assert [item for _, item in page] == take(self.model, max_entries, max_bytes)
        self.peeked = [(position, self.head + n) for n, (position, _) in enumerate(page)]

    @precondition(lambda self: self.peeked)
    @rule(data=st.data(), max_entries=st.integers(1, 12))
    def peek_after(self, data: st.DataObject, max_entries: int) -> None:
        position, index = data.draw(st.sampled_from(self.peeked))
        page = self.spool.peek(max_entries, BIG, after=position)
        start = max(self.head, index + 1)
        assert [item for _, item in page] == self.appended[start : start + max_entries]
        self.peeked += [(position, start + n) for n, (position, _) in enumerate(page)]

    @precondition(lambda self: self.peeked)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        position, index = data.draw(st.sampled_from(self.peeked))
        self.spool.ack(position)
        self.head = max(self.head, index + 1)

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = self._open()
        self.stale += [position for position, _ in self.peeked]
        self.peeked = []

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def ack_stale(self, data: st.DataObject) -> None:
        with pytest.raises(ValueError):
            self.spool.ack(data.draw(st.sampled_from(self.stale)))

    @invariant()
    def counts_match(self) -> None:
        assert self.spool.entries == len(self.model)
        assert self.spool.size_bytes == sum(item.spooled_size for item in self.model)
        assert self.spool.empty is (not self.model)
        on_disk = sum(path.stat().st_size for path in segments(self.root / "spool"))
        # Held entries plus the consumed start of the oldest segment (at most one append or
        # segment_bytes).
        assert self.spool.size_bytes <= on_disk <= self.spool.size_bytes + MODEL_MAX_BYTES

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.root, ignore_errors=True)


SpoolModel.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_spool_against_a_model = SpoolModel.TestCase
