"""Tail one log file: the complete lines appended since the checkpoint, as raw records.

Reading and committing are apart. ``read_batch`` moves only a cursor in memory and hands back the
checkpoint that covers the records it returned; the worker calls ``commit`` once Kafka (or the
spool) acknowledged them. A crash in between reads the same lines again, with the same ids, so
nothing is skipped and a repeat can be recognised downstream (at-least-once).

A record's position is the byte offset where its line starts, and its id is derived from the
collector, the path, the file's device and inode, and that position.

What happens to the file:

- appended to: lines are read once their newline is written; a partial last line waits.
- truncated in place (``copytruncate``, ``> file``): the file shrank below the cursor, so it is
  read again from the start, with a warning.
- renamed away and a new file created at the path: the old file, still open, is read to its end
  first; the new one is read from its start once it has data (until then the writer may still be
  writing to the old file).
- rotated or replaced while the collector was stopped: the file at the path has another inode than
  the checkpoint, so it is read from its start; what was left unread in the old file is not.

A line longer than ``MAX_LINE_BYTES`` is shipped cut to that length, with a warning.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collectors.checkpoint import Checkpoint, CheckpointStore
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef, utcnow

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 1024 * 1024
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class TailBatch:
    """Records read from one file, in order, and the checkpoint to commit once they were acked.

    ``checkpoint`` is None when there is no file at the path yet.
    """

    records: list[RawRecord]
    checkpoint: Checkpoint | None


class FileTailSource:
    """Reads the lines appended to the file at ``path`` since its checkpoint in ``store``.

    Commit batches in the order they were read; ``close()`` forgets what was read but not
    committed, so the next batch starts again at the stored checkpoint.
    """

    def __init__(
        self,
        path: Path,
        store: CheckpointStore,
        *,
        agency: AgencyRef,
        collector: CollectorRef,
        host: str,
        fmt: str,
    ) -> None:
        self.path = path
        self._store = store
        self._agency = agency
        self._collector = collector
        self._host = host
        self._source = SourceRef(type="file", path=str(path), format=fmt)
        self._file: io.FileIO | None = None
        self._device = 0
        self._inode = 0
        # Where the line being read starts: what a checkpoint holds, and the next record's position.
        self._line_start = 0
        # The next byte to read. Past _line_start only while the rest of an over-long line, already
        # shipped cut, is skipped; otherwise the two are equal.
        self._offset = 0
        self._skipping = False
        # How often this file (device and inode) was truncated: part of each record's id, so
        # lines written after a copytruncate never reuse the ids of the lines they replace.
        self._generation = 0

    def read_batch(self, max_records: int) -> TailBatch:
        """Up to ``max_records`` complete lines read since the last batch or the stored checkpoint.

        The stored checkpoint does not move; ``commit`` moves it. Raises OSError if the file exists
        but cannot be read.
        """
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        records: list[RawRecord] = []
        if self._file is None and not self._open(resume=True):
            return TailBatch(records, None)
        received = utcnow()
        while True:
            # Looked at before reading, so that whatever reached the old file before the new one
            # had data is read before switching.
            successor = self._path_holds_successor()
            lines, at_end = self._read_lines(max_records - len(records), final=successor)
            records.extend(self._record(position, raw, received) for position, raw in lines)
            if not (at_end and successor):
                break
            log.info(
                "%s was rotated: read the old file (inode %d) to its end; "
                "reading the new one from its start",
                self.path,
                self._inode,
            )
            self.close()
            if not self._open(resume=False) or len(records) >= max_records:
                break
        return TailBatch(records, self._checkpoint())

    def commit(self, batch: TailBatch) -> None:
        """Store and save the batch's checkpoint: its records were acknowledged downstream."""
        checkpoint = batch.checkpoint
        if checkpoint is None or self._store.get(self.path) == checkpoint:
            return
        self._store.set(self.path, checkpoint)
        self._store.save()

    def close(self) -> None:
        """Close the file; the next batch opens it again and resumes at the stored checkpoint."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- the file ---------------------------------------------------------------------------

    def _open(self, *, resume: bool) -> bool:
        try:
            file = self.path.open("rb", buffering=0)
        except FileNotFoundError:
            return False
        # fstat, not stat: the identity must be that of the file opened, even if the path has
        # moved on since.
        status = os.fstat(file.fileno())
        self._file = file
        self._device, self._inode = status.st_dev, status.st_ino
        self._line_start = self._offset = 0
        self._skipping = False
        self._generation = 0
        stored = self._store.get(self.path) if resume else None
        if stored is None:
            return True
        if (stored.device, stored.inode) == (self._device, self._inode):
            # An offset past the end is caught as a truncation by _read_lines.
            self._line_start = self._offset = stored.offset
            self._generation = stored.generation
        else:
            log.info(
                "%s is another file (inode %d) than at the checkpoint (inode %d), so it was "
                "rotated or replaced while the collector was stopped; reading it from its start",
                self.path,
                self._inode,
                stored.inode,
            )
        return True

    def _path_holds_successor(self) -> bool:
        """Whether the path names another file than the open one now, and the writer began it."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return False
        return (status.st_dev, status.st_ino) != (self._device, self._inode) and status.st_size > 0

    def _checkpoint(self) -> Checkpoint | None:
        if self._file is None:
            return None
        return Checkpoint(
            device=self._device,
            inode=self._inode,
            offset=self._line_start,
            generation=self._generation,
        )

    def _read_lines(self, limit: int, *, final: bool) -> tuple[list[tuple[int, bytes]], bool]:
        """Up to ``limit`` lines from the cursor on, as (position, bytes without the newline), and
        whether the end of the file was reached. With ``final`` (the file will get no more data) an
        unterminated last line is returned too.
        """
        file = self._file
        assert file is not None
        size = os.fstat(file.fileno()).st_size
        if size < self._offset:
            log.warning(
                "%s shrank to %d bytes, below the %d already read: it was truncated "
                "(copytruncate or a rewrite); reading it again from its start",
                self.path,
                size,
                self._offset,
            )
            self._line_start = self._offset = 0
            self._skipping = False
            self._generation += 1
        file.seek(self._offset)
        # Plain (position, bytes) tuples: this is the hot loop; records are built by the caller.
        lines: list[tuple[int, bytes]] = []
        # Bytes read past self._offset that do not yet end in a newline.
        pending = bytearray()
        at_end = False
        while len(lines) < limit:
            chunk = file.read(READ_CHUNK_BYTES)
            if not chunk:
                at_end = True
                break
            if self._skipping:
                newline = chunk.find(b"\n")
                if newline < 0:
                    self._offset += len(chunk)
                    continue
                self._line_start = self._offset = self._offset + newline + 1
                self._skipping = False
                chunk = chunk[newline + 1 :]
            searched = len(pending)
            pending += chunk
            start = 0
            while len(lines) < limit:
                newline = pending.find(b"\n", max(start, searched))
                if newline < 0:
                    break
                lines.append((self._offset + start, bytes(pending[start:newline])))
                start = newline + 1
            del pending[:start]
            self._line_start = self._offset = self._offset + start
            if len(lines) < limit and len(pending) > MAX_LINE_BYTES:
                # Ship the line's head now rather than hold an unbounded buffer for its newline.
                # The checkpoint stays at the line's start until the newline comes, so a restart
                # ships the head again with the same id instead of the tail as a line of its own.
                lines.append((self._offset, bytes(pending)))
                self._offset += len(pending)
                self._skipping = True
                pending.clear()
        if at_end and final and pending and not self._skipping:
            lines.append((self._offset, bytes(pending)))
            self._line_start = self._offset = self._offset + len(pending)
        return lines, at_end

    # --- records ----------------------------------------------------------------------------

    @property
    def _stream(self) -> str:
        # Generation 0 keeps the plain device:inode form, so ids of untruncated files are stable.
        base = f"{self._device}:{self._inode}"
        return f"{base}:{self._generation}" if self._generation else base

    def _record(self, position: int, raw: bytes, received: datetime) -> RawRecord:
        return RawRecord(
            id=RawRecord.make_id(self._collector.id, self._source, self._stream, position),
            agency=self._agency,
            collector=self._collector,
            host=self._host,
            source=self._source,
            received=received,
            position=position,
            message=self._decode(position, raw),
        )

    def _decode(self, position: int, raw: bytes) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if position == 0 and raw.startswith(_UTF8_BOM):
            # Windows tools often begin a UTF-8 file with a byte-order mark; it is not text.
            raw = raw[len(_UTF8_BOM) :]
        if len(raw) > MAX_LINE_BYTES:
            log.warning(
                "%s: the line at byte %d is longer than %d bytes; shipping only its first %d",
                self.path,
                position,
                MAX_LINE_BYTES,
                MAX_LINE_BYTES,
            )
            raw = raw[: _char_boundary(raw, MAX_LINE_BYTES)]
        return raw.decode("utf-8", errors="replace")


def _char_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below ``limit`` that does not split a UTF-8 character."""
    cut = limit
    # A UTF-8 character is at most 4 bytes: stepping back over at most 3 continuation bytes
    # (10xxxxxx) reaches its first byte, so the cut drops a split character whole.
    while cut > limit - 3 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut
