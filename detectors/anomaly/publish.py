"""The anomaly models in force: published like a rule set, followed by every running scorer.

``soc.models`` is a compacted topic holding one record per model name (``user-1h``,
``host-5m``...): the skops file of the model in force under that name. ``socpipe model publish``
checks a file exactly as a scorer will load it (:func:`detectors.anomaly.model.loads`: no type
outside the trusted list, the metadata readable) and writes it under its name; publishing under
the same name again replaces the model, ``socpipe model withdraw`` writes the name's tombstone.

Each scorer (``socpipe anomaly``) reads the topic to its end at start, then follows it in a
thread of its own (:class:`ModelWatcher`): a model is loaded there, in the background, and handed
over between batches by :meth:`ModelWatcher.take`; one that does not load is rejected with its
reason and the model it would have replaced keeps running. What each scorer runs and rejected is
published on ``soc.heartbeats`` (kind ``anomaly-models``), which ``socpipe model status`` reads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from detectors.anomaly.model import AnomalyModel, loads
from detectors.reload import CompactedFollower
from detectors.sigma.publish import latest_statuses
from socpipe.errors import ConfigError
from socpipe.kafka import ensure_topics, make_producer
from socpipe.records import utcnow
from socpipe.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)

STATUS_KIND: Final = "anomaly-models"
# A model file is a few MB (200 trees); the topic takes records of up to 64 MiB.
MAX_MODEL_BYTES: Final = 60 << 20
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def default_name(model: AnomalyModel) -> str:
    """The name a model is published under unless told: its entity and window (``user-1h``)."""
    seconds = model.meta.window_s
    if seconds % 3600 == 0:
        length = f"{seconds // 3600}h"
    elif seconds % 60 == 0:
        length = f"{seconds // 60}m"
    else:
        length = f"{seconds}s"
    return f"{model.meta.entity.replace('_', '-')}-{length}"


def check_name(name: str) -> str:
    """``name`` if it can name a model (lower-case letters, digits, ``.``, ``_``, ``-``)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"model name {name!r}: lower-case letters, digits, '.', '_' and '-', 1 to 63 of them"
        )
    return name


def publish(path: Path, settings: Settings, *, name: str | None = None) -> tuple[str, AnomalyModel]:
    """Check the model file at ``path`` as a scorer will load it, then make it the model in
    force under ``name`` (default :func:`default_name`). Returns the name and the model."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from error
    if len(data) > MAX_MODEL_BYTES:
        raise ConfigError(f"{path}: {len(data):,} bytes, more than a model may be")
    model = loads(data, where=str(path))
    model.windows()  # its features must match this version's windows, as in a scorer
    chosen = check_name(name or default_name(model))
    ensure_topics(settings.kafka, ["models"])
    producer = make_producer(settings.kafka, max_request_size=MAX_MODEL_BYTES + (1 << 20))
    try:
        producer.send(settings.kafka.topics.models, key=chosen.encode(), value=data).get(
            timeout=120
        )
    finally:
        producer.close()
    return chosen, model


def withdraw(name: str, settings: Settings) -> None:
    """Stop every scorer running the model ``name`` (its tombstone on ``soc.models``)."""
    if name not in in_force(settings):
        raise ConfigError(f"no model {name!r} is in force (socpipe model status lists them)")
    ensure_topics(settings.kafka, ["models"])
    producer = make_producer(settings.kafka)
    try:
        producer.send(settings.kafka.topics.models, key=name.encode(), value=None).get(timeout=60)
    finally:
        producer.close()


def in_force(settings: Settings, timeout_s: float = 60.0) -> dict[str, bytes]:
    """Each model name's file in force (the last record per key, tombstones removing)."""
    ensure_topics(settings.kafka, ["models"])
    follower = CompactedFollower(settings.kafka, settings.kafka.topics.models)
    try:
        return latest_per_key(follower.read_to_end(timeout_s))
    finally:
        follower.stop()


def latest_per_key(records: list[Any]) -> dict[str, bytes]:
    """The last value per key of ``records`` in order; a tombstone (no value) removes its key."""
    found: dict[str, bytes] = {}
    for record in records:
        if record.key is None:
            continue
        name = bytes(record.key).decode(errors="replace")
        if record.value is None:
            found.pop(name, None)
        else:
            found[name] = bytes(record.value)
    return found


@dataclass
class ModelsStatus:
    """The models in force and what each scorer runs."""

    in_force: dict[str, dict[str, Any]]
    scorers: list[dict[str, Any]]


def status(settings: Settings, timeout_s: float = 60.0) -> ModelsStatus:
    """The models on ``soc.models`` (their metadata) and each scorer's latest status record."""
    models: dict[str, dict[str, Any]] = {}
    for name, data in sorted(in_force(settings, timeout_s).items()):
        try:
            meta = loads(data, where=f"soc.models {name}").meta
        except ConfigError as error:
            models[name] = {"error": str(error)}
            continue
        models[name] = {
            "version": meta.version,
            "entity": meta.entity,
            "window_s": meta.window_s,
            "threshold": meta.threshold,
            "windows": meta.windows,
            "since": meta.since,
            "until": meta.until,
            "bytes": len(data),
        }
    ensure_topics(settings.kafka, ["heartbeats"])
    return ModelsStatus(models, latest_statuses(settings, STATUS_KIND, "scorer", timeout_s))


def format_status(state: ModelsStatus) -> list[str]:
    """The status as lines for a terminal."""
    lines = []
    if not state.in_force:
        lines.append("no model published on soc.models: scorers read events and judge none")
    for name, model in state.in_force.items():
        if "error" in model:
            lines.append(f"in force: {name}: {model['error']}")
            continue
        lines.append(
            f"in force: {name} = {model['version']} ({model['entity']} per {model['window_s']} s, "
            f"threshold {model['threshold']:.3f}, {model['windows']:,} baseline windows "
            f"{model['since']} to {model['until']}, {model['bytes']:,} bytes)"
        )
    if not state.scorers:
        lines.append("no scorer has reported yet")
    for record in state.scorers:
        running = record.get("models") or {}
        shown = ", ".join(f"{name} {version}" for name, version in sorted(running.items()))
        line = f"  {record.get('scorer')}: runs {shown or 'no model'} as of {record.get('at')}"
        for name, rejected in sorted((record.get("rejected") or {}).items()):
            line += f"; rejected {name}: {rejected.get('error')}"
        lines.append(line)
    return lines


@dataclass
class ModelsState:
    """What a scorer runs (name → version), and what it last refused (name → why)."""

    running: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, dict[str, str]] = field(default_factory=dict)


class ModelWatcher(CompactedFollower):
    """Follows ``soc.models``; loads models in the background; hands them over between
    batches (a model withdrawn is handed over as None)."""

    thread_name = "models-watcher"

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        publish_status: Callable[[dict[str, Any]], None] | None = None,
        poll_timeout_ms: int = 1000,
    ) -> None:
        super().__init__(
            kafka,
            kafka.topics.models,
            publish_status=publish_status,
            poll_timeout_ms=poll_timeout_ms,
        )
        self.state = ModelsState()
        self._lock = threading.Lock()
        self._pending: dict[str, AnomalyModel | None] = {}

    def initial(self, timeout_s: float = 120.0) -> dict[str, AnomalyModel]:
        """The models in force (those that load; the others are rejected and reported)."""
        found = {}
        for name, data in latest_per_key(self.read_to_end(timeout_s)).items():
            model = self.load(name, data)
            if model is not None:
                found[name] = model
        return found

    def take(self) -> dict[str, AnomalyModel | None]:
        """The models loaded or withdrawn since the last call, by name."""
        with self._lock:
            pending, self._pending = self._pending, {}
            return pending

    def running(self, models: dict[str, str]) -> None:
        """Record (and publish) that the scorer now runs ``models`` (name → version)."""
        self.state.running = dict(models)
        for name in models:
            self.state.rejected.pop(name, None)
        self._publish()

    def arrived(self, records: list[Any]) -> None:
        for record in records:
            if record.key is None:
                continue
            name = bytes(record.key).decode(errors="replace")
            if record.value is None:
                with self._lock:
                    self._pending[name] = None
                continue
            model = self.load(name, bytes(record.value))
            if model is not None:
                with self._lock:
                    self._pending[name] = model

    def load(self, name: str, data: bytes) -> AnomalyModel | None:
        """The model of one record; None (and a published rejection) if it does not load."""
        started = time.monotonic()
        try:
            model = loads(data, where=f"soc.models {name}")
            model.windows()
        except Exception as error:  # a file from a newer socpipe, a damaged record...
            log.error("model %s rejected, the one running keeps running: %s", name, error)
            self.state.rejected[name] = {"error": str(error), "at": utcnow().isoformat()}
            self._publish()
            return None
        log.info(
            "model %s loaded in %.1fs: %s (%s per %d s)",
            name,
            time.monotonic() - started,
            model.meta.version,
            model.meta.entity,
            model.meta.window_s,
        )
        return model

    def _publish(self) -> None:
        self.report(
            {
                "kind": STATUS_KIND,
                "models": self.state.running,
                "rejected": self.state.rejected or None,
            }
        )
