"""Windows event logs: the events of .evtx files, and of folders watched for new .evtx files.

``EvtxSource`` is a pull source (``collectors.base.PullSource``). Each event becomes one raw
record carrying the event as the ``evtx`` package writes it (``{"Event": {"System": ...,
"EventData": ...}}``, what ``detectors.parsers.windows.WinlogEvtxParser`` takes) in ``data``.
Its position is the record's id in the file, which is the event's ``EventRecordID`` in a log
Windows wrote (a log exported with a query numbers its records anew from 1 and keeps the
original in the event), and its stream the file's device and inode, so re-reading a file
reproduces the ids it shipped before.

Files, and the order they are read in: ``settings.paths`` are files, globs or folders (a folder
means the ``*.evtx`` files directly in it); they are looked up again every ``settings.rescan_s``
seconds, and read oldest first (by modification time, then name).

An EVTX file is a 4 KiB header and 64 KiB chunks, each holding whole records. The source reads
the chunk headers itself to skip, without parsing them, the chunks whose records were all
shipped, and hands the ``evtx`` package (a Rust parser) a view of the file made of the header
and the chunks still to read, oldest records first (so a log that wrapped around is read in
record order). The package parses one chunk at a time and the source stops at ``max_records``,
keeping the parser for the next poll while the file is unchanged: a 100 MB log is never held in
memory, and the file stays open only until it was read to its end (or it changes).

Checkpoints: per file path, ``Checkpoint(device, inode, offset=the next record id to ship)``,
stored and saved by the batch's ``commit``. Records below that id are skipped by id, so a
restart resumes after the last committed record, nothing skipped and nothing repeated. A file of
another device or inode at the path is read from its start. A file whose highest record id fell
below what was shipped from it (a log cleared or rewritten in place) is read again from its
start, with ids of a new generation.

What goes wrong, and what is counted (``stats.unreadable``, each reported once in
``stats.error``, naming the file and record):

- a file that is not EVTX: counted, and not looked at again until its size or time changes;
- a record or chunk the package cannot parse: counted, and the rest of the file is read;
- a file still being written or copied, whose last chunk is incomplete: its complete records are
  shipped, and the incomplete chunk is counted once (the source cannot tell a copy in progress
  from a file cut short); the rest is read once it is there;
- a file that vanishes or cannot be opened: reported, and the other files are read.

``stats.lag`` is in bytes: the size of each known file not yet read since it last changed, and
what is left to parse of the file being read.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import orjson
from evtx import PyEvtxParser, PyRecordsIterator

from collectors.base import (
    Clock,
    PullBatch,
    RecordDict,
    RecordMaker,
    SourceStats,
    monotonic,
    received_now,
)
from collectors.checkpoint import Checkpoint, CheckpointStore
from socpipe.settings import EvtxSourceSettings

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

HEADER_BYTES = 4096
CHUNK_BYTES = 64 * 1024
# The chunk header with its string and template offset tables; records start after it.
CHUNK_HEADER_BYTES = 512
RECORD_HEADER_BYTES = 24
_FILE_MAGIC = b"ElfFile\x00"
_CHUNK_MAGIC = b"ElfChnk\x00"
_RECORD_MAGIC = b"\x2a\x2a\x00\x00"
# first and last event record id, at bytes 24 and 32 of a chunk header
_CHUNK_IDS = struct.Struct("<QQ")
# magic, size and event record id of a record
_RECORD_HEADER = struct.Struct("<4sIQ")
_SIZE = struct.Struct("<I")
# where a chunk header keeps the offset of its free space, past its last record
_FREE_SPACE_AT = 48
# The package names the record in its errors: "Failed to parse record number 3: ...".
_RECORD_NUMBER = re.compile(r"record number (\d+)")
# How many distinct problems are remembered per file to be reported once; past that a problem
# may be counted again when the file is read again.
MAX_REMEMBERED = 1024
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class _Signature:
    """Which file, and which version of it: a change of any field means it must be read again."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> _Signature:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A chunk of the file: where it is, how many of its bytes are complete, its record ids."""

    offset: int
    available: int
    first_id: int
    last_id: int


@dataclass(slots=True)
class _Layout:
    """What the chunk headers of a file say, read without parsing any record."""

    chunks: list[_Chunk]
    # (offset, reason) of slots that hold something other than a chunk
    garbage: list[tuple[int, str]]
    # (offset, bytes present) of a last chunk that is not all there yet
    tail: tuple[int, int] | None
    # offsets of records not whole in a chunk that is: being written, or damaged
    torn: list[int]
    # the highest record id in the file (0 if none)
    max_id: int


class _ChunkView(io.RawIOBase):
    """The file header followed by chosen chunks, as one seekable file for the parser.

    Reads go to the open file as the parser asks for them. A chunk's bytes past
    ``available`` (an incomplete record, or a chunk the writer has not finished) read as zeros,
    where the parser stops cleanly instead of building an event from half a record.
    """

    def __init__(self, file: BinaryIO, segments: list[tuple[int, int, int]]) -> None:
        super().__init__()
        self._file = file
        # (real offset, bytes available, length) per segment, and where each starts in the view
        self._segments = segments
        self._starts: list[int] = []
        total = 0
        for _, _, length in segments:
            self._starts.append(total)
            total += length
        self._size = total
        self._position = 0
        self._furthest = 0

    @property
    def remaining(self) -> int:
        """Bytes of the view the parser has not read yet."""
        return self._size - self._furthest

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(target):
            return 0
        index = bisect.bisect_right(self._starts, self._position) - 1
        real, available, length = self._segments[index]
        within = self._position - self._starts[index]
        count = min(len(target), length - within)
        data = b""
        if within < available:
            data = _read_at(self._file, real + within, min(count, available - within))
        # Short of what the chunk had when it was chosen (the file shrank): zeros, and the
        # next poll sees the change and starts over.
        target[: len(data)] = data
        target[len(data) : count] = bytes(count - len(data))
        self._position += count
        self._furthest = max(self._furthest, self._position)
        return count


@dataclass(slots=True)
class _Reader:
    """A file being read: the open file, the parser's record iterator, and the file's signature
    when it was opened."""

    file: BinaryIO
    view: _ChunkView
    records: PyRecordsIterator
    signature: _Signature

    def close(self) -> None:
        self.file.close()


class _Tracked:
    """One file of the source: its cursor (ahead of the stored checkpoint by what is read but
    not committed) and what was reported about it."""

    def __init__(self, path: Path, maker: RecordMaker) -> None:
        self.path = path
        self.maker = maker
        # From the last stat; None while the path holds no file.
        self.signature: _Signature | None = None
        self.identity: tuple[int, int] | None = None
        self.generation = 0
        self.next_id = 0
        # Set by close(): the cursor is taken again from the stored checkpoint.
        self.resume = True
        self.reader: _Reader | None = None
        # Nothing more to read until the file differs from this.
        self.idle: _Signature | None = None
        self.problems: set[str] = set()

    @property
    def stream(self) -> str:
        assert self.identity is not None
        device, inode = self.identity
        # Generation 0 keeps the plain device:inode form, as the file tail does.
        return f"{device}:{inode}:{self.generation}" if self.generation else f"{device}:{inode}"

    def checkpoint(self) -> Checkpoint:
        assert self.identity is not None
        device, inode = self.identity
        return Checkpoint(device, inode, self.next_id, self.generation)

    def drop_reader(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def lag(self) -> int:
        if self.reader is not None:
            return self.reader.view.remaining
        if self.signature is None or self.signature == self.idle:
            return 0
        return self.signature.size


class EvtxSource:
    """Reads the events of the .evtx files of ``settings``; see the module docstring.

    ``clock`` (monotonic seconds) times the rescans; tests pass a fake. Batches must be
    committed in the order they were polled; ``commit`` may be called from another thread.
    """

    def __init__(
        self,
        settings: EvtxSourceSettings,
        store: CheckpointStore,
        maker: RecordMaker,
        *,
        clock: Clock = monotonic,
    ) -> None:
        self.settings = settings
        self.stats: SourceStats = maker.stats
        self._store = store
        self._maker = maker
        self._clock = clock
        self._files: dict[Path, _Tracked] = {}
        self._order: list[_Tracked] = []
        self._next_scan: float | None = None
        self._problems: set[str] = set()
        # commit runs on the shipper's thread, beside poll reading checkpoints.
        self._lock = threading.Lock()

    def poll(self, max_records: int) -> PullBatch | None:
        """Up to ``max_records`` events not read before, from the oldest file on, or None."""
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        now = self._clock()
        if self._next_scan is None or now >= self._next_scan:
            self._rescan()
            self._next_scan = now + self.settings.rescan_s
        received = received_now()
        records: list[RecordDict] = []
        moved: dict[Path, Checkpoint] = {}
        for tracked in self._order:
            if len(records) >= max_records:
                break
            before = len(records)
            try:
                self._read(tracked, max_records - len(records), received, records)
            except OSError as exc:
                tracked.drop_reader()
                self._report(tracked, f"os {exc.errno}", f"{tracked.path}: cannot read: {exc}")
            if len(records) > before:
                moved[tracked.path] = tracked.checkpoint()
        self.stats.lag = sum(tracked.lag() for tracked in self._order)
        if not records:
            return None
        return PullBatch(records, lambda: self._commit(moved))

    def close(self) -> None:
        """Close the files; the next poll resumes at the stored checkpoints."""
        for tracked in self._files.values():
            tracked.drop_reader()
            tracked.resume = True
            tracked.idle = None

    # --- which files ------------------------------------------------------------------------

    def _rescan(self) -> None:
        found: dict[Path, None] = {}
        for pattern in self.settings.paths:
            for path in self._expand(pattern):
                found.setdefault(path)
        for path in [path for path in self._files if path not in found]:
            log.info("%s is gone from the watched paths; forgetting it", path)
            self._files.pop(path).drop_reader()
        for path in found:
            if path not in self._files:
                maker = self._maker.with_source(path=str(path), format=self.settings.format)
                self._files[path] = _Tracked(path, maker)
        for tracked in self._files.values():
            try:
                tracked.signature = _Signature.of(tracked.path.stat())
            except OSError:
                tracked.signature = None

        def oldest_first(tracked: _Tracked) -> tuple[bool, int, str]:
            missing = tracked.signature is None
            mtime = tracked.signature.mtime_ns if tracked.signature is not None else 0
            return missing, mtime, str(tracked.path)

        self._order = sorted(self._files.values(), key=oldest_first)

    def _expand(self, pattern: str) -> list[Path]:
        """The files ``pattern`` names now: itself, the files a glob matches, or a folder's
        .evtx files."""
        path = Path(pattern).expanduser()
        if _GLOB_CHARACTERS.isdisjoint(pattern):
            return self._folder(path) if path.is_dir() else [path]
        # Path.glob takes a pattern relative to where it starts.
        base = Path(path.anchor) if path.is_absolute() else Path()
        files: list[Path] = []
        for found in sorted(base.glob(str(path.relative_to(base)))):
            files.extend(self._folder(found) if found.is_dir() else [found])
        return files

    def _folder(self, folder: Path) -> list[Path]:
        key = f"folder {folder}"
        try:
            files = sorted(
                entry
                for entry in folder.iterdir()
                if entry.suffix.lower() == ".evtx" and entry.is_file()
            )
        except OSError as exc:
            if key not in self._problems:
                self._problems.add(key)
                message = f"{folder}: cannot list the folder: {exc.strerror}"
                log.warning("%s", message)
                self.stats.error(message)
            return []
        self._problems.discard(key)
        return files

    # --- reading ----------------------------------------------------------------------------

    def _read(
        self, tracked: _Tracked, limit: int, received: str, records: list[RecordDict]
    ) -> None:
        """Add up to ``limit`` records of one file to ``records``."""
        try:
            signature = _Signature.of(tracked.path.stat())
        except FileNotFoundError:
            if tracked.reader is not None:
                self._report(
                    tracked, "vanished", f"{tracked.path}: the file vanished while being read"
                )
            tracked.drop_reader()
            tracked.signature = None
            return
        tracked.signature = signature
        if tracked.reader is not None and tracked.reader.signature != signature:
            tracked.drop_reader()
        if tracked.reader is None and (signature == tracked.idle or not self._open(tracked)):
            return
        reader = tracked.reader
        assert reader is not None
        # Records shipped and records that failed: both cost parsing, and the poll must end.
        work = 0
        while work < limit:
            try:
                item = next(reader.records)
            except StopIteration:
                tracked.idle = reader.signature
                tracked.drop_reader()
                return
            except Exception as exc:  # the package raises RuntimeError for a bad record or chunk
                work += 1
                self._unreadable(tracked, exc)
                continue
            if not isinstance(item, dict):
                continue
            record_id = item.get("event_record_id")
            if not isinstance(record_id, int) or record_id < tracked.next_id:
                continue
            tracked.next_id = record_id + 1
            work += 1
            try:
                event = orjson.loads(item["data"])
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                self._count(
                    tracked,
                    f"record {record_id}",
                    f"{tracked.path}: record {record_id} is unreadable: its JSON: {exc}",
                )
                continue
            if not isinstance(event, dict):
                self._count(
                    tracked,
                    f"record {record_id}",
                    f"{tracked.path}: record {record_id} is unreadable: not a JSON object",
                )
                continue
            records.append(tracked.maker.data(tracked.stream, record_id, event, received))
            self.stats.read += 1

    def _open(self, tracked: _Tracked) -> bool:
        """Open the file and start its parser at the cursor; False if there is nothing to read."""
        try:
            # Unbuffered: reads are whole chunks, at offsets the parser chooses.
            file = tracked.path.open("rb", buffering=0)
        except FileNotFoundError:
            return False
        try:
            reader = self._start(tracked, file)
        except BaseException:
            file.close()
            raise
        if reader is None:
            file.close()
            return False
        tracked.reader = reader
        return True

    def _start(self, tracked: _Tracked, file: BinaryIO) -> _Reader | None:
        # fstat, not stat: the identity must be that of the file opened.
        signature = _Signature.of(os.fstat(file.fileno()))
        self._resume(tracked, (signature.device, signature.inode))
        header = _read_at(file, 0, HEADER_BYTES)
        if header[: len(_FILE_MAGIC)] != _FILE_MAGIC[: len(header)]:
            self._count(
                tracked,
                f"not evtx {signature}",
                f"{tracked.path}: not an EVTX file (it starts with {header[:8]!r}); "
                "skipped until it changes",
            )
            tracked.idle = signature
            return None
        if len(header) < HEADER_BYTES:
            if header:
                self._report(
                    tracked,
                    f"short header {signature}",
                    f"{tracked.path}: only {len(header)} bytes, less than an EVTX header; "
                    "still being written?",
                )
            tracked.idle = signature
            return None
        layout = _scan(file, signature.size)
        for offset, reason in layout.garbage:
            self._count(
                tracked,
                f"chunk {offset}",
                f"{tracked.path}: the chunk at byte {offset} is unreadable: {reason}",
            )
        if layout.tail is not None:
            offset, present = layout.tail
            self._count(
                tracked,
                f"tail {offset}",
                f"{tracked.path}: the last chunk (at byte {offset}) has {present} of "
                f"{CHUNK_BYTES} bytes: the file is still being written or was cut short; "
                "its complete records are read, the rest once it is there",
            )
        for offset in layout.torn:
            self._count(
                tracked,
                f"torn {offset}",
                f"{tracked.path}: the record at byte {offset} is not whole (being written, or "
                "damaged); it and the records after it in its chunk are read once it is whole",
            )
        if tracked.next_id > 1 and layout.max_id < tracked.next_id - 1:
            log.warning(
                "%s: its highest record id is %d, below the %d already read: the log was "
                "cleared or rewritten in place; reading it from its start",
                tracked.path,
                layout.max_id,
                tracked.next_id - 1,
            )
            tracked.generation += 1
            tracked.next_id = 0
        chunks = _to_read(layout.chunks, tracked.next_id)
        if not chunks:
            tracked.idle = signature
            return None
        segments = [(0, HEADER_BYTES, HEADER_BYTES)]
        segments += [(chunk.offset, chunk.available, CHUNK_BYTES) for chunk in chunks]
        view = _ChunkView(file, segments)
        try:
            # One thread: the collector shares the machine, and one chunk at a time bounds memory.
            parser = PyEvtxParser(view, number_of_threads=1)
            records = parser.records_json()
        except Exception as exc:  # OSError or RuntimeError for a header the package refuses
            self._count(
                tracked,
                f"not evtx {signature}",
                f"{tracked.path}: not a readable EVTX file: {exc}; skipped until it changes",
            )
            tracked.idle = signature
            return None
        return _Reader(file, view, records, signature)

    def _resume(self, tracked: _Tracked, identity: tuple[int, int]) -> None:
        """Take the cursor from the stored checkpoint for a file not read yet, or again."""
        if tracked.identity == identity and not tracked.resume:
            return
        if tracked.identity != identity:
            tracked.problems.clear()
        tracked.identity, tracked.resume = identity, False
        with self._lock:
            stored = self._store.get(tracked.path)
        if stored is not None and (stored.device, stored.inode) == identity:
            tracked.next_id, tracked.generation = stored.offset, stored.generation
            return
        if stored is not None:
            log.info(
                "%s is another file (inode %d) than at the checkpoint (inode %d); "
                "reading it from its start",
                tracked.path,
                identity[1],
                stored.inode,
            )
        tracked.next_id = tracked.generation = 0

    # --- checkpoints and problems -----------------------------------------------------------

    def _commit(self, checkpoints: dict[Path, Checkpoint]) -> None:
        # Called from the shipper's thread: it must not raise.
        with self._lock:
            for path, checkpoint in checkpoints.items():
                self._store.set(path, checkpoint)
            try:
                self._store.save()
            except OSError as exc:
                message = f"cannot save the checkpoints to {self._store.file}: {exc}"
                log.error("%s", message)
                self.stats.error(message)

    def _unreadable(self, tracked: _Tracked, exc: Exception) -> None:
        text = str(exc)
        found = _RECORD_NUMBER.search(text)
        key = f"record {found.group(1)}" if found else text[:200]
        self._count(tracked, key, f"{tracked.path}: unreadable: {text}")

    def _count(self, tracked: _Tracked, key: str, message: str) -> None:
        """Count something unreadable and report it, once per file."""
        if self._report(tracked, key, message):
            self.stats.unreadable += 1

    def _report(self, tracked: _Tracked, key: str, message: str) -> bool:
        """Report a problem of a file unless it was reported already; whether it was new."""
        if key in tracked.problems:
            return False
        if len(tracked.problems) < MAX_REMEMBERED:
            tracked.problems.add(key)
        log.warning("%s", message)
        self.stats.error(message)
        return True


def _scan(file: BinaryIO, size: int) -> _Layout:
    """Read the chunk headers of the file: which chunks hold records, and which ids."""
    layout = _Layout(chunks=[], garbage=[], tail=None, torn=[], max_id=0)
    offset = HEADER_BYTES
    while offset < size:
        present = min(CHUNK_BYTES, size - offset)
        head = _read_at(file, offset, CHUNK_HEADER_BYTES)
        if len(head) < CHUNK_HEADER_BYTES:
            # Not even the chunk's header is there yet: nothing of it can be read.
            if head.strip(b"\x00"):
                layout.tail = (offset, len(head))
            break
        if head[: len(_CHUNK_MAGIC)] == _CHUNK_MAGIC:
            first_id, last_id = _CHUNK_IDS.unpack_from(head, 24)
            layout.chunks.append(_Chunk(offset, present, first_id, last_id))
            if present < CHUNK_BYTES:
                layout.tail = (offset, present)
        elif head.strip(b"\x00"):
            layout.garbage.append((offset, f"no chunk header (it starts with {head[:8]!r})"))
        # else: a slot the writer allocated and has not used yet
        offset += CHUNK_BYTES
    if not layout.chunks:
        return layout
    # The newest chunk (and an incomplete one) is walked record by record and read only up to
    # its last whole record: the writer may be in the middle of the next one, and the parser
    # turns a torn record into an event with fields cut short rather than an error. Its header
    # may also lag behind the records written.
    newest = max(layout.chunks, key=lambda chunk: (chunk.first_id, chunk.offset))
    for index, chunk in enumerate(layout.chunks):
        whole = chunk.available == CHUNK_BYTES
        if chunk is not newest and whole:
            layout.max_id = max(layout.max_id, chunk.last_id)
            continue
        data = _read_at(file, chunk.offset, chunk.available)
        end, walked_id = _walk(data)
        layout.chunks[index] = _Chunk(chunk.offset, end, chunk.first_id, chunk.last_id)
        (free_space,) = _SIZE.unpack_from(data, _FREE_SPACE_AT)
        if whole and end < min(free_space, CHUNK_BYTES):
            # The header says records go on past the last whole one.
            layout.torn.append(chunk.offset + end)
        # The header's last id when no whole record was found (the first one is damaged):
        # taking the log for cleared on that ground would ship it all again.
        layout.max_id = max(layout.max_id, walked_id or chunk.last_id)
    return layout


def _read_at(file: BinaryIO, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
    # seek and read rather than os.pread, which Windows lacks; one thread reads a file.
    file.seek(offset)
    data = bytearray()
    while len(data) < size:
        part = file.read(size - len(data))
        if not part:
            break
        data += part
    return bytes(data)


def _walk(chunk: bytes) -> tuple[int, int]:
    """Where the whole records of a chunk end, and the id of the last one (0 if none)."""
    offset, last_id = CHUNK_HEADER_BYTES, 0
    while offset + RECORD_HEADER_BYTES <= len(chunk):
        magic, size, record_id = _RECORD_HEADER.unpack_from(chunk, offset)
        if magic != _RECORD_MAGIC or size < RECORD_HEADER_BYTES + 4:
            break
        end = offset + size
        # A record ends with a copy of its size: written last, so it shows the record is whole.
        if end > len(chunk) or _SIZE.unpack_from(chunk, end - 4)[0] != size:
            break
        offset, last_id = end, record_id
    return offset, last_id


def _to_read(chunks: list[_Chunk], next_id: int) -> list[_Chunk]:
    """The chunks that may hold records from ``next_id`` on, oldest records first.

    A chunk is done once the writer moved on to a newer one, so its header's last id can be
    trusted; the newest chunk is always read, and its records below ``next_id`` skipped by id.
    """
    ordered = sorted(chunks, key=lambda chunk: (chunk.first_id, chunk.offset))
    if not ordered:
        return []
    newest = ordered[-1]
    return [
        chunk
        for chunk in ordered
        if chunk is newest or chunk.last_id >= next_id or chunk.last_id < chunk.first_id
    ]
