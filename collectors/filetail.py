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

A line longer than the maker's ``max_line_bytes`` is shipped cut to that length (the rest is
skipped up to its newline), marked ``truncated`` and counted; bytes that are not UTF-8 are shipped
replaced, with the exact bytes in ``raw`` (``collectors.base.RecordMaker``).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from collectors.base import RecordDict, RecordMaker, received_now
from collectors.checkpoint import Checkpoint, CheckpointStore

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class TailBatch:
    """Records read from one file, in order, and the checkpoint to commit once they were acked.

    ``checkpoint`` is None when there is no file at the path yet.
    """

    records: list[RecordDict]
    checkpoint: Checkpoint | None
    # What the (lean) records share: agency, collector, host, source, receive time.
    common: RecordDict | None = None


class FileTailSource:
    """Reads the lines appended to the file at ``path`` since its checkpoint in ``store``.

    Commit batches in the order they were read; ``close()`` forgets what was read but not
    committed, so the next batch starts again at the stored checkpoint.
    """

    def __init__(self, path: Path, store: CheckpointStore, maker: RecordMaker) -> None:
        self.path = path
        self._store = store
        self._maker = maker
        self._max_line = maker.max_line_bytes
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
        self._was_at_end = True

    def read_batch(self, max_records: int) -> TailBatch:
        """Up to ``max_records`` complete lines read since the last batch or the stored checkpoint.

        The stored checkpoint does not move; ``commit`` moves it. Raises OSError if the file exists
        but cannot be read.
        """
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        records: list[RecordDict] = []
        if self._file is None and not self._open(resume=True):
            return TailBatch(records, None)
        received = received_now()
        # The stream (file and truncation count) the batch's common id prefix is for; records of
        # another one (a rotation or truncation within the batch) carry their ids themselves.
        first_stream: str | None = None
        while True:
            # Looked at before reading, so that whatever reached the old file before the new one
            # had data is read before switching. Only once a read found the end: until then the
            # file has more to give whatever the path names now.
            looked = self._was_at_end
            successor = looked and self._path_holds_successor()
            lines, at_end = self._read_lines(max_records - len(records), final=successor)
            self._was_at_end = at_end
            stream = self._stream
            made = self._maker.lines(stream, lines, received)
            if first_stream is None and made:
                first_stream = stream
            elif stream != first_stream:
                for record in made:
                    record.setdefault("id", self._maker.record_id(stream, record["position"]))
            records.extend(made)
            if at_end and not looked and len(records) < max_records:
                continue  # at the end now: look at the path, and read what came meanwhile
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
        common = self._maker.common(received, first_stream or self._stream)
        return TailBatch(records, self._checkpoint(), common)

    def commit(self, batch: TailBatch) -> None:
        """Store the batch's checkpoint (its records were acknowledged downstream) and save the
        store when its save interval has passed (``CheckpointStore.save_if_due``)."""
        checkpoint = batch.checkpoint
        if checkpoint is None or self._store.get(self.path) == checkpoint:
            return
        self._store.set(self.path, checkpoint)
        self._store.save_if_due()

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
            pending += chunk
            # All complete lines of what is pending, split in C; their positions by a running sum
            # of their lengths (each plus its newline).
            last = pending.rfind(b"\n")
            if last >= 0:
                parts = bytes(pending[:last]).split(b"\n")
                room = limit - len(lines)
                if len(parts) > room:
                    parts = parts[:room]
                offset = self._offset
                starts = accumulate((len(part) + 1 for part in parts), initial=offset)
                lines.extend(zip(starts, parts, strict=False))
                start = sum(len(part) + 1 for part in parts)
                del pending[:start]
                self._line_start = self._offset = offset + start
            if len(lines) < limit and len(pending) > self._max_line:
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

    def unread_bytes(self) -> int:
        """Bytes of the open file past what was read (0 when none is open): the source's lag."""
        if self._file is None:
            return 0
        try:
            return max(0, os.fstat(self._file.fileno()).st_size - self._offset)
        except OSError:
            return 0

    @property
    def _stream(self) -> str:
        # Generation 0 keeps the plain device:inode form, so ids of untruncated files are stable.
        base = f"{self._device}:{self._inode}"
        return f"{base}:{self._generation}" if self._generation else base
