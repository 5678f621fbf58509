"""From ECS events to one row of numbers per entity and time window.

A :class:`WindowSpec` says whose windows (``user``, ``host``, ``source_ip`` or ``agency``) and how
long (5 minutes, 1 hour...). :class:`Windows` folds events into per-window counters and gives
each closed window as a row of :data:`BASE_FEATURES` followed by one count per known log
template and ``template.unseen``:

- ``events``; ``authentication.success`` / ``.failure`` and their ``failure_ratio``;
  ``outcome.failure``; per ECS category (``category.<name>`` for :data:`CATEGORIES`);
- distinct hosts, source addresses, destinations (address:port), URLs and processes (each set
  capped at :data:`MAX_DISTINCT`: a count above it is "at least");
- ``bytes.out`` (``source.bytes`` of outbound connections, else ``network.bytes``);
- ``off_hours.share``: the share of events outside working hours (Asia/Ho_Chi_Minh, Monday to
  Friday, :attr:`WindowSpec.working_hours`);
- ``web.error``: HTTP answers 400 and above;
- for events no parser structured (no ``event.action``), the log template drain3 finds for their
  line (:class:`Templates`): a count per template known from the baseline, and
  ``template.unseen`` for lines matching none of them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import numpy as np
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
from numpy.typing import NDArray

Entity = Literal["user", "host", "source_ip", "agency"]
CATEGORIES: Final = ("authentication", "network", "process", "file", "web", "iam", "configuration")
BASE_FEATURES: Final[tuple[str, ...]] = (
    "events",
    "authentication.success",
    "authentication.failure",
    "authentication.failure_ratio",
    "outcome.failure",
    *(f"category.{name}" for name in CATEGORIES if name != "authentication"),
    "distinct.host",
    "distinct.source",
    "distinct.destination",
    "distinct.url",
    "distinct.process",
    "bytes.out",
    "off_hours.share",
    "web.error",
)
UNSEEN: Final = "template.unseen"
MAX_DISTINCT: Final = 10_000
ENTITIES: Final[tuple[Entity, ...]] = ("user", "host", "source_ip", "agency")
_ZONE: Final = ZoneInfo("Asia/Ho_Chi_Minh")
# drain3 logs "Starting Drain3 template miner" at INFO for every miner: one per fold here.
logging.getLogger("drain3.template_miner").setLevel(logging.WARNING)


@dataclass(frozen=True)
class WindowSpec:
    """Whose windows and how long; working hours [start, end) in Vietnam's time, Mon–Fri."""

    entity: Entity = "user"
    window_s: int = 3600
    working_hours: tuple[int, int] = (7, 17)

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES:
            raise ValueError(f"entity must be one of {', '.join(ENTITIES)}, not {self.entity!r}")
        if self.window_s < 60:
            raise ValueError(f"a window of {self.window_s}s is too short (60 s at least)")
        start, end = self.working_hours
        if not 0 <= start < end <= 24:
            raise ValueError(f"working_hours must be 0 <= start < end <= 24, not {start}–{end}")


class Templates:
    """Log templates of unstructured lines, mined with drain3.

    ``learn`` mines templates from baseline lines; :meth:`vocabulary` keeps the ``size`` most
    frequent, and a :class:`Templates` made from a vocabulary (``Templates(vocabulary)``) only
    matches lines to them: the index of a known template, or None (``template.unseen``).
    """

    def __init__(self, vocabulary: Iterable[str] = ()) -> None:
        config = TemplateMinerConfig()
        config.profiling_enabled = False
        self._miner = TemplateMiner(config=config)
        self._index: dict[int, int] = {}
        self.names: list[str] = []
        self._seen: Counter[int] = Counter()
        for template in vocabulary:
            result = self._miner.add_log_message(template)
            self._index.setdefault(int(result["cluster_id"]), len(self.names))
            self.names.append(template)

    def learn(self, line: str) -> None:
        """Mine ``line`` into the templates (training only)."""
        result = self._miner.add_log_message(line)
        self._seen[int(result["cluster_id"])] += 1

    def vocabulary(self, size: int = 50) -> list[str]:
        """The ``size`` most frequent templates learned, most frequent first."""
        clusters = {c.cluster_id: c.get_template() for c in self._miner.drain.clusters}
        return [clusters[cid] for cid, _ in self._seen.most_common(size) if cid in clusters]

    def match(self, line: str) -> int | None:
        """The index in :attr:`names` of the template ``line`` matches, or None."""
        cluster = self._miner.match(line)
        return None if cluster is None else self._index.get(cluster.cluster_id)


def _get(event: Mapping[str, Any], *path: str) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def event_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def entity_of(event: Mapping[str, Any], entity: Entity) -> str | None:
    """The event's value for ``entity`` (None when it has none: the event is not counted)."""
    if entity == "user":
        name = _get(event, "user", "name")
    elif entity == "host":
        name = _get(event, "host", "name")
    elif entity == "source_ip":
        name = _get(event, "source", "ip")
    else:
        name = _get(event, "organization", "id")
    return name if isinstance(name, str) and name else None


@dataclass
class _Window:
    agency: str | None
    counts: Counter[str] = field(default_factory=Counter)
    templates: Counter[int] = field(default_factory=Counter)
    sets: dict[str, set[str]] = field(default_factory=dict)
    off_hours: int = 0
    event_ids: list[str] = field(default_factory=list)
    samples: list[Mapping[str, Any]] = field(default_factory=list)

    def add_distinct(self, name: str, value: Any) -> None:
        if value is None or value == "":
            return
        bucket = self.sets.setdefault(name, set())
        if len(bucket) < MAX_DISTINCT:
            bucket.add(str(value))


@dataclass(frozen=True)
class WindowKey:
    """One window: whose, from when (UTC, aligned on the window length), of which agency, and
    the ids of its first 20 events (what a detection of it names), and its first events
    themselves when :class:`Windows` was asked to keep some."""

    entity: str
    start: datetime
    agency: str | None
    event_ids: tuple[str, ...] = ()
    samples: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)


class Windows:
    """Events folded into per-window counters (see the module docstring)."""

    def __init__(
        self, spec: WindowSpec, templates: Templates | None = None, *, samples: int = 0
    ) -> None:
        self.spec = spec
        self.templates = templates or Templates()
        # How many of each window's first events it keeps (a detection shows them).
        self.samples = samples
        # Events not counted because ``add(..., may_open=False)`` would have opened a window.
        self.refused = 0
        self.features: tuple[str, ...] = (
            *BASE_FEATURES,
            *(f"template.{n}" for n in range(len(self.templates.names))),
            UNSEEN,
        )
        self._windows: dict[tuple[str, int], _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def add(self, event: Mapping[str, Any], *, may_open: bool = True) -> bool:
        """Count ``event`` in its entity's window; False when it has no entity or time, or
        when its window is not open and ``may_open`` is False (counted in :attr:`refused`)."""
        who = entity_of(event, self.spec.entity)
        moment = event_time(event.get("@timestamp"))
        if who is None or moment is None:
            return False
        epoch = int(moment.timestamp())
        start = epoch - epoch % self.spec.window_s
        window = self._windows.get((who, start))
        if window is None:
            if not may_open:
                self.refused += 1
                return False
            agency = _get(event, "organization", "id")
            window = self._windows[who, start] = _Window(
                agency if isinstance(agency, str) else None
            )
        self._count(window, event, moment)
        event_id = _get(event, "event", "id")
        if isinstance(event_id, str) and len(window.event_ids) < 20:
            window.event_ids.append(event_id)
        if len(window.samples) < self.samples:
            window.samples.append(event)
        return True

    def _count(self, window: _Window, event: Mapping[str, Any], moment: datetime) -> None:
        counts = window.counts
        counts["events"] += 1
        categories = _as_list(_get(event, "event", "category"))
        outcome = _get(event, "event", "outcome")
        if outcome == "failure":
            counts["outcome.failure"] += 1
        for category in categories:
            if category == "authentication":
                if outcome == "success":
                    counts["authentication.success"] += 1
                elif outcome == "failure":
                    counts["authentication.failure"] += 1
            elif category in CATEGORIES:
                counts[f"category.{category}"] += 1
        window.add_distinct("host", _get(event, "host", "name"))
        window.add_distinct("source", _get(event, "source", "ip"))
        destination = _get(event, "destination", "ip")
        if destination is not None:
            window.add_distinct(
                "destination", f"{destination}:{_get(event, 'destination', 'port')}"
            )
        window.add_distinct("url", _get(event, "url", "path") or _get(event, "url", "original"))
        window.add_distinct("process", _get(event, "process", "name"))
        sent = _get(event, "source", "bytes")
        if sent is None:
            sent = _get(event, "network", "bytes")
        if isinstance(sent, int | float) and sent > 0:
            counts["bytes.out"] += int(sent)
        status = _get(event, "http", "response", "status_code")
        if isinstance(status, int) and status >= 400:
            counts["web.error"] += 1
        local = moment.astimezone(_ZONE)
        start, end = self.spec.working_hours
        if local.weekday() >= 5 or not start <= local.hour < end:
            window.off_hours += 1
        if _get(event, "event", "action") is None:
            line = _get(event, "event", "original") or event.get("message")
            if isinstance(line, str) and line:
                found = self.templates.match(line)
                window.templates[-1 if found is None else found] += 1

    def _row(self, window: _Window) -> list[float]:
        counts = window.counts
        events = counts["events"]
        failures = counts["authentication.failure"]
        attempts = failures + counts["authentication.success"]
        derived = {
            "authentication.failure_ratio": failures / attempts if attempts else 0.0,
            "off_hours.share": window.off_hours / events if events else 0.0,
            **{f"distinct.{name}": len(values) for name, values in window.sets.items()},
        }
        row = [float(derived.get(name, counts.get(name, 0))) for name in BASE_FEATURES]
        row += [float(window.templates.get(n, 0)) for n in range(len(self.templates.names))]
        row.append(float(window.templates.get(-1, 0)))
        return row

    def take(self, before: datetime | None = None) -> tuple[list[WindowKey], NDArray[np.float64]]:
        """The windows that ended at or before ``before`` (all when None), removed: their keys
        and rows (one per key, columns :attr:`features`)."""
        limit = None if before is None else int(before.timestamp())
        keys: list[WindowKey] = []
        rows: list[list[float]] = []
        for (who, start), window in list(self._windows.items()):
            if limit is not None and start + self.spec.window_s > limit:
                continue
            del self._windows[who, start]
            moment = datetime.fromtimestamp(start, UTC)
            keys.append(
                WindowKey(
                    who, moment, window.agency, tuple(window.event_ids), tuple(window.samples)
                )
            )
            rows.append(self._row(window))
        matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.features))
        return keys, matrix


def lines_for_templates(events: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The lines of the events no parser structured: what :meth:`Templates.learn` mines."""
    for event in events:
        if _get(event, "event", "action") is None:
            line = _get(event, "event", "original") or event.get("message")
            if isinstance(line, str) and line:
                yield line
