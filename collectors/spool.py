"""The collector's disk spool: Kafka messages held in order while Kafka is away.

The spool is a directory of append-only segment files ``<20-digit sequence>.spool`` and a state
file ``head.json`` saying where the oldest entry not yet acknowledged starts. Each entry is one
encoded Kafka message (key, value, headers), framed as::

    magic/version (1 byte, 0xD1) | flags (1) | payload length (4) | CRC-32 of the payload (4)
    | CRC-32 of these 10 header bytes (4) | payload

big-endian, with zlib's CRC-32. The payload is ``has key (1) | key length (4) | key | header
count (2) | (name length (2) | UTF-8 name | value length (4) | value)* | value``.

What survives what:

- ``append`` writes a whole batch with one ``write`` and one ``fsync``; the last entry of the batch
  carries a commit flag. When the spool is opened again, entries after the newest commit flag of
  the newest segment are an append cut short (a crash, SIGKILL, a power cut) and are cut off, with
  a warning naming the file and offset: a batch is in the spool whole or not at all.
- A bad entry in the newest segment with nothing readable after it is such a cut-short append too.
  A bad entry followed by a good one, or any bad entry in an older segment, is damage: opening the
  spool fails with ``SpoolCorruptError`` naming the file, the offset and what to do, rather than
  skipping entries silently. Entries read later are checked again, so ``peek`` never returns a
  damaged entry either.
- ``ack`` rewrites ``head.json`` atomically (temporary file, fsync, rename, fsync of the
  directory) and then deletes the segments wholly behind it; a crash in between leaves segments
  that the next open deletes.

One process at a time: the directory is locked (``flock`` on ``lock``) while a ``Spool`` is open.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import re
import struct
import sys
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson

from collectors.checkpoint import sync_directory, write_atomically
from socpipe.errors import ConfigError

if sys.platform != "win32":
    import fcntl

log = logging.getLogger(__name__)

STATE_FILE = "head.json"
LOCK_FILE = "lock"
SEGMENT_SUFFIX = ".spool"

_MAGIC = 0xD1  # the high nibble marks a spool entry, the low one is the format version
_COMMIT = 0x01  # flag of the last entry of an append
_HEAD = struct.Struct(">BBII")  # magic/version, flags, payload length, payload CRC
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEAD.size + _CRC.size
_KEY = struct.Struct(">BI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_MAX_U16 = 0xFFFF
_MAX_U32 = 0xFFFF_FFFF
_SEGMENT_NAME = re.compile(r"(\d{20})\.spool")
_READ_BUFFER = 256 * 1024
_O_BINARY: int = getattr(os, "O_BINARY", 0)
_INSTANCES = itertools.count(1)


class SpoolCorruptError(ConfigError):
    """A segment or the state file of the spool cannot be read; the message says which file,
    where, and what to do."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One outgoing Kafka message, already encoded."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def spooled_size(self) -> int:
        """The bytes this entry takes in the spool, framing included (what ``max_bytes``
        counts)."""
        size = HEADER_BYTES + _KEY.size + _U16.size + len(self.value)
        if self.key is not None:
            size += len(self.key)
        for name, value in self.headers:
            size += _U16.size + len(name.encode("utf-8")) + _U32.size + len(value)
        return size


@dataclass(frozen=True, slots=True, order=True)
class SpoolPosition:
    """Where one entry of a spool is: its segment and byte offset (positions order as the entries
    do). Only the ``Spool`` object that returned it accepts it."""

    segment: int
    offset: int
    end: int = field(compare=False)
    index: int = field(compare=False)
    instance: int = field(compare=False, repr=False)


class Spool:
    """A bounded, ordered, crash-safe queue of ``SpoolEntry`` on disk (see the module docstring).

    Opening recovers the directory (created with mode 0o700 if missing): raises
    ``SpoolCorruptError`` for damage it must not skip, and ``ConfigError`` if the directory cannot
    be created or another process has it open. ``max_bytes`` bounds the entries held (framing
    included); the disk may hold one segment (or one append, if larger) more: the consumed start
    of the oldest segment.
    A segment is started when the next append would take the current one past
    ``segment_bytes`` (an append is never split, so one larger batch makes a larger segment).

    Thread-safe; meant for one shipper thread that appends and drains. Close it (or use it as a
    context manager) to release the directory.
    """

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        if max_bytes < 1 or segment_bytes < 1:
            raise ValueError(
                f"max_bytes and segment_bytes must be >= 1, got {max_bytes} and {segment_bytes}"
            )
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._state_file = directory / STATE_FILE
        self._lock = threading.Lock()
        self._instance = next(_INSTANCES)
        self._lock_fd: int | None = None
        self._write_fd: int | None = None
        self._reader: BinaryIO | None = None
        self._reader_segment = -1
        self._reader_offset = -1
        self._seqs: list[int] = []  # segment sequence numbers, ascending
        self._sizes: dict[int, int] = {}  # bytes of committed entries per segment
        self._head_segment = 0
        self._head_offset = 0
        self._head_index = 0  # entries are numbered from 0 at the head when opened
        self._tail_index = 0
        self._size_bytes = 0
        self._closed = False
        self._broken: str | None = None
        try:
            self._open()
        except BaseException:
            self._close_files()
            raise

    # -- public API --------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes of the entries held (not yet acknowledged), framing included."""
        with self._lock:
            return self._size_bytes

    @property
    def entries(self) -> int:
        """How many entries are held."""
        with self._lock:
            return self._tail_index - self._head_index

    @property
    def empty(self) -> bool:
        """Whether no entry is held."""
        with self._lock:
            return self._tail_index == self._head_index

    @property
    def free_bytes(self) -> int:
        """How many more bytes (``SpoolEntry.spooled_size``) an append may add now."""
        with self._lock:
            # Below zero if max_bytes was lowered while the spool held more.
            return max(0, self.max_bytes - self._size_bytes)

    def fits(self, entries: Sequence[SpoolEntry]) -> bool:
        """Whether ``append(entries)`` would be taken now."""
        return sum(entry.spooled_size for entry in entries) <= self.free_bytes

    def append(self, entries: Sequence[SpoolEntry]) -> bool:
        """Add ``entries`` after those held, all or none, on disk (fsync) when it returns True.

        Returns False, writing nothing, if they would take the spool past ``max_bytes``. Raises
        ValueError if they could never fit (more than ``max_bytes`` together) or a field is too
        long for the format, and OSError if the disk fails (nothing of them is then held).
        """
        if not entries:
            return True
        data = _frames(entries)
        if len(data) > self.max_bytes:
            raise ValueError(
                f"a batch of {len(entries)} entries takes {len(data)} bytes, more than the whole "
                f"spool {self.directory} may hold ({self.max_bytes} bytes); send smaller batches "
                "or raise collector.spool.max_bytes"
            )
        with self._lock:
            self._check_usable()
            if self._size_bytes + len(data) > self.max_bytes:
                return False
            tail = self._seqs[-1]
            if self._sizes[tail] and self._sizes[tail] + len(data) > self.segment_bytes:
                tail = self._roll()
            self._write(tail, data)
            self._sizes[tail] += len(data)
            self._size_bytes += len(data)
            self._tail_index += len(entries)
        return True

    def peek(
        self, max_entries: int, max_bytes: int, *, after: SpoolPosition | None = None
    ) -> list[tuple[SpoolPosition, SpoolEntry]]:
        """The oldest entries held, in order, without removing them: up to ``max_entries``, and
        only as many as fit in ``max_bytes`` (``spooled_size``) but always one if any is held.

        ``after``: start after this entry instead (to read on before the ones returned are
        acknowledged); a position already acknowledged means the oldest held. Raises
        ``SpoolCorruptError`` if an entry was damaged on disk since the spool was opened.
        """
        with self._lock:
            self._check_usable()
            if after is None or after.index < self._head_index:
                segment, offset, index = self._head_segment, self._head_offset, self._head_index
            else:
                self._check_position(after)
                segment, offset, index = after.segment, after.end, after.index + 1
            found: list[tuple[SpoolPosition, SpoolEntry]] = []
            taken = 0
            while len(found) < max_entries and index < self._tail_index:
                if offset >= self._sizes[segment]:
                    segment = self._seqs[bisect.bisect_right(self._seqs, segment)]
                    offset = 0
                    continue
                entry, end = self._read_entry(segment, offset)
                if found and taken + end - offset > max_bytes:
                    break
                found.append((SpoolPosition(segment, offset, end, index, self._instance), entry))
                taken += end - offset
                offset = end
                index += 1
            return found

    def ack(self, position: SpoolPosition) -> None:
        """Forget every entry up to and including ``position``: the head moves past it on disk
        (atomically, synced), and segments wholly behind it are deleted. Acknowledging a
        position already acknowledged does nothing."""
        with self._lock:
            self._check_usable()
            self._check_position(position)
            if position.index < self._head_index:
                return
            freed = self._bytes_between(
                (self._head_segment, self._head_offset), (position.segment, position.end)
            )
            head = self._normalized(position.segment, position.end)
            # Memory follows the disk: if saving fails, the entries are still held (and sent again).
            self._save_head(*head)
            self._head_segment, self._head_offset = head
            self._head_index = position.index + 1
            self._size_bytes -= freed
            self._drop_consumed()

    def close(self) -> None:
        """Close the files and release the directory; what was appended stays held."""
        with self._lock:
            self._closed = True
            self._close_files()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- opening and recovery ----------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the spool directory {self.directory}: {exc.strerror or exc}; "
                "create it (mode 0700, owned by the collector's user) or set "
                "collector.spool.dir to a writable place"
            ) from exc
        self._lock_fd = _lock_directory(self.directory)
        for leftover in self.directory.glob(f".{STATE_FILE}.*.tmp"):
            leftover.unlink(missing_ok=True)

        state = self._load_head()
        seqs = sorted(
            int(match.group(1))
            for path in self.directory.iterdir()
            if (match := _SEGMENT_NAME.fullmatch(path.name))
        )
        head_segment, head_offset = state if state is not None else (seqs[0] if seqs else 0, 0)
        for seq in [seq for seq in seqs if seq < head_segment]:
            # Wholly acknowledged; a crash came between saving the head and deleting these.
            self._segment_path(seq).unlink(missing_ok=True)
            seqs.remove(seq)
        if seqs and seqs[0] != head_segment:
            log.warning(
                "spool %s: segment %s holding the oldest entries is missing; going on with %s",
                self.directory,
                self._segment_path(head_segment).name,
                self._segment_path(seqs[0]).name,
            )
            head_segment, head_offset = seqs[0], 0
        if not seqs:
            head_segment = head_segment + 1 if state is not None else 0
            head_offset = 0
            self._create_segment(head_segment)
            seqs.append(head_segment)

        for seq in seqs:
            start = head_offset if seq == head_segment else 0
            size, count = self._recover_segment(seq, start, newest=seq == seqs[-1])
            self._sizes[seq] = size
            self._size_bytes += size - start
            self._tail_index += count
        self._seqs = seqs
        self._head_segment, self._head_offset = self._normalized(head_segment, head_offset)
        if state != (self._head_segment, self._head_offset):
            self._save_head(self._head_segment, self._head_offset)
        self._drop_consumed()
        self._write_fd = os.open(
            self._segment_path(self._seqs[-1]), os.O_WRONLY | os.O_APPEND | _O_BINARY
        )

    def _recover_segment(self, seq: int, start: int, *, newest: bool) -> tuple[int, int]:
        """Check the entries of segment ``seq`` from ``start``; cut off an interrupted append at
        the end of the newest segment. Returns the segment's size after that and how many
        entries it holds from ``start``."""
        path = self._segment_path(seq)
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            if start > size:
                raise SpoolCorruptError(
                    f"spool state file {self._state_file} says the oldest entry starts at byte "
                    f"{start} of {path}, but that file has only {size} bytes; "
                    f"{self._state_advice()}"
                )
            file.seek(start)
            data = file.read()
        view = memoryview(data)
        offset = committed_end = start
        count = committed_count = 0
        problem: str | None = None
        while offset < size:
            problem, length, flags = _check_frame(view, offset - start)
            if problem is not None:
                break
            offset += HEADER_BYTES + length
            count += 1
            if flags & _COMMIT:
                committed_end, committed_count = offset, count
        if problem is None and committed_end == size:
            return size, count

        if problem is None:
            problem = "the last append did not complete (its last entry is missing)"
        if not newest:
            raise SpoolCorruptError(
                f"spool segment {path} is corrupt at byte {offset}: {problem}; it is not the "
                f"newest segment, so it was whole when the next was started. "
                f"{self._segment_advice(path)}"
            )
        resume = _next_frame(data, offset - start)
        if resume is not None:
            raise SpoolCorruptError(
                f"spool segment {path} is corrupt at byte {offset}: {problem}, but an entry "
                f"follows at byte {start + resume}, so it is not an append cut short by a crash. "
                f"{self._segment_advice(path)}"
            )
        log.warning(
            "spool segment %s: dropping the append cut short at byte %d (%s): %d bytes, %d whole "
            "entries; its batch was never reported as spooled, so it is read again",
            path,
            committed_end,
            problem,
            size - committed_end,
            count - committed_count,
        )
        fd = os.open(path, os.O_WRONLY | _O_BINARY)
        try:
            os.ftruncate(fd, committed_end)
            os.fsync(fd)
        finally:
            os.close(fd)
        return committed_end, committed_count

    def _load_head(self) -> tuple[int, int] | None:
        try:
            raw = self._state_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the spool state file {self._state_file}: {exc.strerror or exc}; "
                "fix its permissions"
            ) from exc
        try:
            content = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SpoolCorruptError(
                f"spool state file {self._state_file} is corrupt: not valid JSON ({exc}); "
                f"{self._state_advice()}"
            ) from exc
        values = content if isinstance(content, dict) else {}
        fields = (values.get("format"), values.get("segment"), values.get("offset"))
        if values.keys() != {"format", "segment", "offset"} or not all(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
            for value in fields
        ):
            raise SpoolCorruptError(
                f"spool state file {self._state_file} is corrupt: expected an object with the "
                f'whole numbers "format", "segment" and "offset", got {raw[:200]!r}; '
                f"{self._state_advice()}"
            )
        if values["format"] != 1:
            raise SpoolCorruptError(
                f"spool state file {self._state_file} has format {values['format']}, this "
                "collector reads format 1; run the collector version that wrote it until the "
                "spool is empty"
            )
        return values["segment"], values["offset"]

    def _state_advice(self) -> str:
        return (
            f"stop the collector and delete it to send every entry in {self.directory} again "
            "from the oldest (Kafka then gets those already sent a second time)"
        )

    def _segment_advice(self, path: Path) -> str:
        return (
            f"To go on without the entries in it (they are lost, the others are still sent), stop "
            f"the collector and move {path} out of {self.directory}; keep it to find out what "
            "damaged it (disk errors, another program writing there)."
        )

    # -- writing -----------------------------------------------------------------------------

    def _write(self, seq: int, data: bytes) -> None:
        assert self._write_fd is not None
        start = self._sizes[seq]
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._write_fd, view)
                view = view[written:]
            os.fsync(self._write_fd)
        except OSError:
            self._undo_write(seq, start)
            raise

    def _undo_write(self, seq: int, start: int) -> None:
        # The reader may hold bytes of the failed write in its buffer; they are about to change.
        self._close_reader()
        assert self._write_fd is not None
        try:
            os.ftruncate(self._write_fd, start)
            os.fsync(self._write_fd)
        except OSError as exc:
            self._broken = (
                f"a failed append to {self._segment_path(seq)} could not be undone "
                f"({exc.strerror or exc}); restart the collector (opening the spool cuts it off)"
            )
            log.error("spool %s: %s", self.directory, self._broken)

    def _roll(self) -> int:
        seq = self._seqs[-1] + 1
        fd = self._create_segment(seq)
        assert self._write_fd is not None
        os.close(self._write_fd)
        self._write_fd = fd
        self._seqs.append(seq)
        self._sizes[seq] = 0
        head = self._normalized(self._head_segment, self._head_offset)
        if head != (self._head_segment, self._head_offset):
            self._save_head(*head)
            self._head_segment, self._head_offset = head
            self._drop_consumed()
        return seq

    def _create_segment(self, seq: int) -> int:
        path = self._segment_path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        try:
            # An append to it is durable only once its directory entry is.
            sync_directory(self.directory)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd

    def _save_head(self, segment: int, offset: int) -> None:
        data = orjson.dumps({"format": 1, "segment": segment, "offset": offset})
        write_atomically(self._state_file, data)

    def _drop_consumed(self) -> None:
        while self._seqs[0] < self._head_segment:
            seq = self._seqs.pop(0)
            del self._sizes[seq]
            if self._reader_segment == seq:
                self._close_reader()
            try:
                self._segment_path(seq).unlink(missing_ok=True)
            except OSError as exc:
                # Harmless: the next open deletes it.
                log.warning("spool: cannot delete %s: %s", self._segment_path(seq), exc)

    # -- reading -----------------------------------------------------------------------------

    def _read_entry(self, seq: int, offset: int) -> tuple[SpoolEntry, int]:
        path = self._segment_path(seq)
        if self._reader is None or self._reader_segment != seq:
            self._close_reader()
            self._reader = path.open("rb", buffering=_READ_BUFFER)
            self._reader_segment = seq
        if self._reader_offset != offset:
            self._reader.seek(offset)
        self._reader_offset = -1  # unknown until this read succeeded
        header = self._reader.read(HEADER_BYTES)
        problem, length, _flags = _check_frame(memoryview(header), 0, payload=False)
        payload = b""
        if problem is None:
            payload = self._reader.read(length)
            if len(payload) != length:
                problem = f"the entry is cut short at byte {offset + HEADER_BYTES + len(payload)}"
            elif zlib.crc32(payload) != _HEAD.unpack_from(header)[3]:
                problem = "the checksum of its payload does not match"
        if problem is None:
            try:
                entry = _decode(payload)
            except ValueError as exc:
                problem = f"its payload is not a spool entry ({exc})"
            else:
                end = offset + HEADER_BYTES + length
                self._reader_offset = end
                return entry, end
        raise SpoolCorruptError(
            f"spool segment {path} is corrupt at byte {offset}: {problem}; it was whole when the "
            f"spool was opened. {self._segment_advice(path)}"
        )

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._reader_segment = self._reader_offset = -1

    # -- bookkeeping -------------------------------------------------------------------------

    def _segment_path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{SEGMENT_SUFFIX}"

    def _normalized(self, segment: int, offset: int) -> tuple[int, int]:
        """The head moved past segments it has wholly consumed, except the newest."""
        while segment != self._seqs[-1] and offset >= self._sizes[segment]:
            segment = self._seqs[bisect.bisect_right(self._seqs, segment)]
            offset = 0
        return segment, offset

    def _bytes_between(self, start: tuple[int, int], end: tuple[int, int]) -> int:
        if start[0] == end[0]:
            return end[1] - start[1]
        middle = sum(self._sizes[seq] for seq in self._seqs if start[0] < seq < end[0])
        return self._sizes[start[0]] - start[1] + middle + end[1]

    def _check_position(self, position: SpoolPosition) -> None:
        if position.instance != self._instance:
            raise ValueError(
                f"{position} was returned by another Spool object; peek again after reopening"
            )
        if position.index >= self._tail_index:
            raise ValueError(f"{position} is not an entry of spool {self.directory}")

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"spool {self.directory} is closed")
        if self._broken is not None:
            raise OSError(f"spool {self.directory} is unusable: {self._broken}")

    def _close_files(self) -> None:
        self._close_reader()
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _frames(entries: Sequence[SpoolEntry]) -> bytes:
    """The framed entries of one append, the last one flagged as its commit."""
    parts: list[bytes] = []
    last = len(entries) - 1
    for number, entry in enumerate(entries):
        payload = _encode(entry)
        if len(payload) > _MAX_U32:
            raise ValueError(f"a spool entry holds at most {_MAX_U32} bytes, got {len(payload)}")
        head = _HEAD.pack(
            _MAGIC, _COMMIT if number == last else 0, len(payload), zlib.crc32(payload)
        )
        parts += (head, _CRC.pack(zlib.crc32(head)), payload)
    return b"".join(parts)


def _encode(entry: SpoolEntry) -> bytes:
    # Plain struct packing: this runs for every Kafka message while Kafka is away.
    key = entry.key
    parts = [_KEY.pack(key is not None, len(key) if key is not None else 0)]
    if key:
        parts.append(key)
    if len(entry.headers) > _MAX_U16:
        raise ValueError(f"a spool entry has at most {_MAX_U16} headers, got {len(entry.headers)}")
    parts.append(_U16.pack(len(entry.headers)))
    for name, value in entry.headers:
        raw_name = name.encode("utf-8")
        if len(raw_name) > _MAX_U16:
            raise ValueError(f"header name {name[:40]!r}… is longer than {_MAX_U16} bytes")
        parts += (_U16.pack(len(raw_name)), raw_name, _U32.pack(len(value)), value)
    parts.append(entry.value)
    return b"".join(parts)


def _decode(payload: bytes) -> SpoolEntry:
    """The entry a payload holds; ValueError if it is not one."""
    try:
        has_key, key_length = _KEY.unpack_from(payload, 0)
        offset = _KEY.size
        key = payload[offset : offset + key_length] if has_key else None
        offset += key_length
        (count,) = _U16.unpack_from(payload, offset)
        offset += _U16.size
        headers = []
        for _ in range(count):
            (name_length,) = _U16.unpack_from(payload, offset)
            offset += _U16.size
            name = payload[offset : offset + name_length].decode("utf-8")
            offset += name_length
            (value_length,) = _U32.unpack_from(payload, offset)
            offset += _U32.size
            headers.append((name, payload[offset : offset + value_length]))
            offset += value_length
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from exc
    if offset > len(payload) or has_key > 1:
        raise ValueError("its lengths run past its end")
    return SpoolEntry(key, payload[offset:], tuple(headers))


def _check_frame(
    view: memoryview, offset: int, *, payload: bool = True
) -> tuple[str | None, int, int]:
    """What is wrong with the frame at ``offset`` (None if nothing), its payload length and
    flags. Without ``payload``, only the header is checked."""
    if len(view) - offset < HEADER_BYTES:
        return f"only {len(view) - offset} bytes of a {HEADER_BYTES}-byte header", 0, 0
    magic, flags, length, payload_crc = _HEAD.unpack_from(view, offset)
    if magic != _MAGIC:
        return f"0x{magic:02x} where an entry starts with 0x{_MAGIC:02x}", 0, 0
    (header_crc,) = _CRC.unpack_from(view, offset + _HEAD.size)
    if zlib.crc32(view[offset : offset + _HEAD.size]) != header_crc:
        return "the checksum of its header does not match", 0, 0
    if not payload:
        return None, length, flags
    start = offset + HEADER_BYTES
    if start + length > len(view):
        return f"an entry of {length} bytes runs past the end of the file", length, flags
    if zlib.crc32(view[start : start + length]) != payload_crc:
        return "the checksum of its payload does not match", length, flags
    return None, length, flags


def _next_frame(data: bytes, offset: int) -> int | None:
    """Where a whole entry starts after the bad one at ``offset`` of ``data``, or None."""
    view = memoryview(data)
    problem, length, _flags = _check_frame(view, offset, payload=False)
    if problem is None:
        end = offset + HEADER_BYTES + length
        if end > len(data):
            return None  # a sound header whose entry runs past the end: plainly cut short
        search = end  # the sound header says where the bad entry ends
    else:
        search = offset + 1
    while (search := data.find(_MAGIC, search)) != -1:
        if _check_frame(view, search)[0] is None:
            return search
        search += 1
    return None


def _lock_directory(directory: Path) -> int | None:
    if sys.platform == "win32":
        return None  # one collector per machine there; no flock
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ConfigError(
            f"the spool directory {directory} is in use by another process (it holds {path}); "
            "give each collector its own collector.spool.dir"
        ) from exc
    except BaseException:
        os.close(fd)
        raise
    return fd
