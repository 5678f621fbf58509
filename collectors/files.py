"""A file source of the collector: the files its paths and globs name, each tailed on its own.

``FileSource`` looks its patterns up again every ``rescan_s`` seconds, so a file that appears
later (a new virtual host's log, a dated file) is picked up; a file that disappears is kept open
until it was read to its end (a rotation renames it away) and then forgotten. Each file keeps its
own checkpoint (``collectors.filetail``); a poll takes the next batch round-robin from the files
with new lines, so one busy file does not starve the others.
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

from collectors.base import PullBatch, RecordMaker, monotonic
from collectors.checkpoint import CheckpointStore
from collectors.filetail import FileTailSource, TailBatch
from socpipe.records import SourceRef
from socpipe.settings import FileSourceSettings

log = logging.getLogger(__name__)


class FileSource:
    """Tails every file matching ``settings.paths`` (minus ``exclude``); a PullSource."""

    def __init__(
        self, settings: FileSourceSettings, store: CheckpointStore, maker: RecordMaker
    ) -> None:
        self.settings = settings
        self.stats = maker.stats
        self._store = store
        # Each file gets a maker of its own path from this one (same agency, host, counters).
        self._maker = maker
        self._tails: dict[Path, FileTailSource] = {}
        self._next_scan = 0.0
        self._next_lag = 0.0
        self._turn = 0

    def poll(self, max_records: int) -> PullBatch | None:
        """The next batch of new lines of one of the files, round-robin; None if none has any."""
        now = monotonic()
        if now >= self._next_scan:
            self._scan()
            self._next_scan = now + self.settings.rescan_s
        tails = list(self._tails.values())
        for step in range(len(tails)):
            tail = tails[(self._turn + step) % len(tails)]
            try:
                batch = tail.read_batch(max_records)
            except OSError as exc:
                self.stats.error(f"{tail.path}: cannot read: {exc.strerror or exc}")
                tail.close()
                continue
            if batch.records:
                self._turn = (self._turn + step + 1) % len(tails)
                self.stats.read += len(batch.records)
                if now >= self._next_lag:
                    # Looked at once a second: an fstat per file per batch is not free.
                    self.stats.lag = sum(t.unread_bytes() for t in tails)
                    self._next_lag = now + 1.0
                return PullBatch(batch.records, _Commit(tail, batch), batch.common)
        self.stats.lag = 0
        return None

    def close(self) -> None:
        """Close every file; what was read but not committed is read again next time."""
        for tail in self._tails.values():
            tail.close()

    @property
    def files(self) -> list[Path]:
        """The files followed now."""
        return list(self._tails)

    def _scan(self) -> None:
        found: set[Path] = set()
        for pattern in self.settings.paths:
            if glob.has_magic(pattern):
                matches = glob.glob(pattern)  # noqa: PTH207 - patterns are whole paths
                found.update(Path(p) for p in matches if Path(p).is_file())
            else:
                # A plain path is followed even before it exists: the file may come later.
                found.add(Path(pattern))
        excluded = {
            Path(p)
            for pattern in self.settings.exclude
            for p in glob.glob(pattern)  # noqa: PTH207 - patterns are whole paths
        }
        found -= excluded
        for path in sorted(found - set(self._tails)):
            log.info("following %s", path)
            source = SourceRef(type="file", path=str(path), format=self.settings.format)
            self._tails[path] = FileTailSource(path, self._store, self._maker.for_source(source))
        for path in set(self._tails) - found:
            # Gone from the patterns (rotated away, deleted): let it go once nothing is left.
            if self._tails[path].unread_bytes() == 0:
                self._tails.pop(path).close()
                if not path.exists():
                    # Deleted: a new file that gets its inode must not resume at its offset.
                    self._store.discard(path)


class _Commit:
    """Moves one file's checkpoint past a batch (the PullBatch callback)."""

    __slots__ = ("_batch", "_tail")

    def __init__(self, tail: FileTailSource, batch: TailBatch) -> None:
        self._tail = tail
        self._batch = batch

    def __call__(self) -> None:
        self._tail.commit(self._batch)
