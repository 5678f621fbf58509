"""Where each file source stopped: a JSON file mapping source paths to device, inode and offset.

The file looks like ``{"/var/log/auth.log": {"device": 2049, "inode": 131, "offset": 5120}}``.
It is rewritten whole on every save, atomically, so a crash leaves either the old or the new
version and never half of one.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from socpipe.errors import ConfigError

_START_OVER = (
    "move it aside to start over (every source is then read again from its start, and what "
    "was shipped already is sent again with the same ids)"
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A position in one file: which file (device and inode), the byte offset to read from, and
    how often that file was truncated in place (a part of record ids)."""

    device: int
    inode: int
    offset: int
    generation: int = 0

    @classmethod
    def from_dict(cls, data: object) -> Checkpoint:
        """Read one entry of the checkpoint file; raises ValueError saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        fields = ("device", "inode", "offset")
        optional = ("generation",)
        if not set(fields) <= set(data) <= set(fields + optional):
            raise ValueError(
                f"expected the keys {', '.join(fields)} (and optionally generation), "
                f"got {', '.join(data) or 'none'}"
            )
        for name in (*fields, *optional):
            if name not in data:
                continue
            value = data[name]
            # bool is an int in Python, but true/false here means the file was edited wrongly.
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        return cls(
            device=data["device"],
            inode=data["inode"],
            offset=data["offset"],
            generation=data.get("generation", 0),
        )

    def to_dict(self) -> dict[str, int]:
        """The entry as written to the checkpoint file."""
        return asdict(self)


class CheckpointStore:
    """The checkpoints of one collector, read from ``file`` at construction and saved on demand.

    Raises ConfigError if the file exists but cannot be read or is not a valid checkpoint file,
    or if its directory does not exist. A missing file means no source has a checkpoint yet.
    Thread-safe: sources read it while the shipper's thread commits.
    """

    def __init__(self, file: Path, save_interval_s: float = 1.0) -> None:
        self.file = file
        self.save_interval_s = save_interval_s
        self._checkpoints: dict[str, Checkpoint] = self._load()
        self._lock = threading.Lock()
        # Saves one at a time, so an older snapshot never replaces a newer one on disk.
        self._save_lock = threading.Lock()
        self._saved_at = 0.0
        self._dirty = False

    def get(self, path: Path) -> Checkpoint | None:
        """The checkpoint of the source at ``path``, or None if it has none yet."""
        with self._lock:
            return self._checkpoints.get(str(path))

    def set(self, path: Path, checkpoint: Checkpoint) -> None:
        """Remember ``checkpoint`` for the source at ``path``; ``save()`` makes it durable."""
        with self._lock:
            self._checkpoints[str(path)] = checkpoint
            self._dirty = True

    def discard(self, path: Path) -> None:
        """Forget the checkpoint of a source that is gone (a deleted file), so that a new file
        that reuses its inode is not taken for it; ``save()`` makes it durable."""
        with self._lock:
            self._checkpoints.pop(str(path), None)
            self._dirty = True

    def save_if_due(self) -> bool:
        """Save when ``save_interval_s`` passed since the last save; whether it saved.

        A checkpoint saved late only means that a crash re-reads (and sends again, with the same
        ids) up to a second more; an fsync per batch would cost more than the reading.
        """
        if not self._dirty or time.monotonic() - self._saved_at < self.save_interval_s:
            return False
        self.save()
        return True

    def flush(self) -> None:
        """Save if anything changed since the last save (on a graceful stop)."""
        if self._dirty:
            self.save()

    def save(self) -> None:
        """Write every checkpoint to the file: to a temporary file beside it, synced, then renamed
        over it, so that a crash at any point leaves a whole file behind."""
        with self._save_lock:
            with self._lock:
                self._dirty = False
                self._saved_at = time.monotonic()
                data = orjson.dumps(
                    {path: checkpoint.to_dict() for path, checkpoint in self._checkpoints.items()},
                    option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
                )
            write_atomically(self.file, data)

    def _load(self) -> dict[str, Checkpoint]:
        if not self.file.parent.is_dir():
            raise ConfigError(
                f"checkpoint file {self.file}: its directory {self.file.parent} does not exist; "
                "create it or set collector.checkpoint_file to a path in an existing directory"
            )
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(
                f"cannot read checkpoint file {self.file}: {exc.strerror}; "
                f"fix its permissions, or {_START_OVER}"
            ) from exc
        try:
            content = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"checkpoint file {self.file} is corrupt: not valid JSON ({exc}); {_START_OVER}"
            ) from exc
        if not isinstance(content, dict):
            raise ConfigError(
                f"checkpoint file {self.file} is corrupt: the top level must be an object mapping "
                f"source paths to checkpoints, not {type(content).__name__}; {_START_OVER}"
            )
        checkpoints: dict[str, Checkpoint] = {}
        for path, entry in content.items():
            try:
                checkpoints[path] = Checkpoint.from_dict(entry)
            except ValueError as exc:
                raise ConfigError(
                    f"checkpoint file {self.file} is corrupt: entry {path!r}: {exc}; {_START_OVER}"
                ) from exc
        return checkpoints


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any point leaves the old or the new
    content whole: a temporary file beside it, synced, renamed over it, the directory synced."""
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_directory(directory)


def sync_directory(directory: Path) -> None:
    """Make the directory's entries durable (a created or renamed file is durable only once its
    directory entry is on disk). Windows cannot open a directory this way; there the file system
    is trusted."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
