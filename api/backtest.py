"""Backtests: what a rule would have raised over the last days of indexed events.

The events are read from ``<prefix>-events-*`` newest first (:class:`ElasticsearchEventSource`:
a point in time and ``search_after``), at most a cap of them (:data:`EVENT_CAP`; the answer says
how many there were and whether the cap cut the scan), and judged by the compiled rule through
the same engine, log-source routing and detections as the streaming detector
(``SigmaDetector``), never by a translation into an Elasticsearch query. Matches are folded as
alerting folds them (``alerting.grouping``: the policies of ``alerting.policies``, else the
detector's key, rule, agency and host, and ``dedup_window_s``, one hour by default), which gives
the number of alerts.

A correlation is backtested too: the events its rules match are kept (their projection, what a
correlator receives), replayed oldest first through a :class:`CorrelationEngine`, and its hits
become detections as the correlator makes them and are folded the same way.

Several :class:`Judge` can read one scan: an exception's preview judges the events with the
rule as it runs now and with the exception added, and the difference is what it suppresses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from elasticsearch import Elasticsearch, NotFoundError
from pydantic import ValidationError
from sigma.processing.pipeline import ProcessingPipeline

from alerting.grouping import AlertPolicies, alert_id
from detectors.correlator import correlation_detection
from detectors.sigma.correlation import (
    CorrelationEngine,
    CorrelationHit,
    build_correlations,
    keys_by_compiled,
)
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import compile_loaded, engine_of
from detectors.sigma.loader import LoadResult
from socpipe.errors import RecordError
from socpipe.records import Detection, EcsEvent

EVENT_CAP: Final = 100_000
"""The most events one backtest reads (the newest of the period)."""
SAMPLES: Final = 10
_PAGE: Final = 1000
_VERSION: Final = "backtest"


class BacktestError(Exception):
    """The rule cannot be backtested (it does not load or compile): what is wrong."""


class EventSource(ABC):
    """Where a backtest reads events."""

    @abstractmethod
    def scan(self, since: datetime, until: datetime, limit: int) -> Iterator[dict[str, Any]]:
        """Events with ``since <= @timestamp <= until``, newest first, at most ``limit``."""

    @abstractmethod
    def count(self, since: datetime, until: datetime) -> int:
        """How many events the period holds."""


def _time(document: Mapping[str, Any]) -> datetime | None:
    value = document.get("@timestamp")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class InMemoryEventSource(EventSource):
    """The test double: a list of ECS event documents."""

    def __init__(self, events: Iterable[dict[str, Any]] = ()) -> None:
        self.events = list(events)

    def _within(self, since: datetime, until: datetime) -> list[tuple[datetime, dict[str, Any]]]:
        timed = [(_time(event), event) for event in self.events]
        return [(t, e) for t, e in timed if t is not None and since <= t <= until]

    def scan(self, since: datetime, until: datetime, limit: int) -> Iterator[dict[str, Any]]:
        found = sorted(self._within(since, until), key=lambda pair: pair[0], reverse=True)
        for _, event in found[:limit]:
            yield event

    def count(self, since: datetime, until: datetime) -> int:
        return len(self._within(since, until))


class ElasticsearchEventSource(EventSource):
    """The indexed events, ``<prefix>-events-*``, read with a point in time."""

    def __init__(self, client: Elasticsearch, prefix: str) -> None:
        self.client = client
        self.pattern = f"{prefix}-events-*"

    @staticmethod
    def _range(since: datetime, until: datetime) -> dict[str, Any]:
        bounds = {"gte": since.isoformat(), "lte": until.isoformat()}
        return {"bool": {"filter": [{"range": {"@timestamp": bounds}}]}}

    def count(self, since: datetime, until: datetime) -> int:
        try:
            answer = self.client.count(index=self.pattern, query=self._range(since, until))
        except NotFoundError:
            return 0
        return int(answer["count"])

    def scan(self, since: datetime, until: datetime, limit: int) -> Iterator[dict[str, Any]]:
        try:
            pit = self.client.open_point_in_time(index=self.pattern, keep_alive="2m")["id"]
        except NotFoundError:
            return
        read, after = 0, None
        try:
            while read < limit:
                answer = self.client.search(
                    pit={"id": pit, "keep_alive": "2m"},
                    query=self._range(since, until),
                    sort=[{"@timestamp": "desc"}, {"_shard_doc": "desc"}],
                    size=min(_PAGE, limit - read),
                    track_total_hits=False,
                    **({"search_after": after} if after is not None else {}),
                )
                pit = answer.get("pit_id", pit)
                hits = answer["hits"]["hits"]
                for hit in hits:
                    document: dict[str, Any] = hit["_source"]
                    event = document.setdefault("event", {})
                    if isinstance(event, dict):
                        event.setdefault("id", hit["_id"])
                    yield document
                read += len(hits)
                if len(hits) < _PAGE:
                    return
                after = hits[-1]["sort"]
        finally:
            self.client.close_point_in_time(id=pit)


@dataclass
class Tally:
    """What one judge found: matches (events, or correlation hits), alerts, samples."""

    matches: int = 0
    alerts: set[str] = field(default_factory=set)
    by_agency: dict[str, list[int]] = field(default_factory=dict)  # agency -> [matches, alerts]
    samples: list[str] = field(default_factory=list)
    unreadable: int = 0  # matched events that are not valid ECS events
    # Every matched event's id, when asked (an exception's preview names what it suppresses).
    ids: list[str] | None = None

    def fold(self, detection: Detection, policies: AlertPolicies) -> None:
        """Count ``detection`` and the alert it would fold into."""
        self.matches += 1
        agency = self.by_agency.setdefault(detection.entities.agency or "", [0, 0])
        agency[0] += 1
        alert = alert_id(detection, policies.grouping(detection))
        if alert not in self.alerts:
            self.alerts.add(alert)
            agency[1] += 1
        if len(self.samples) < SAMPLES:
            self.samples.extend(detection.event_ids[: SAMPLES - len(self.samples)])
        if self.ids is not None:
            self.ids.extend(detection.event_ids)


class Judge:
    """Judges events with one rule set: counts the detections of ``rule_ids`` (per-event rules)
    or the hits of the correlation ``correlation_id``."""

    def __init__(
        self,
        result: LoadResult,
        pipeline: ProcessingPipeline,
        policies: AlertPolicies,
        *,
        rule_ids: Sequence[str] = (),
        correlation_id: str | None = None,
        keep_ids: bool = False,
    ) -> None:
        compiled, failures = compile_loaded(result)
        wanted = set(rule_ids)
        failed = [f"{error.reason}: {error.message}" for loaded, error in failures
                  if str(loaded.rule.id) in wanted]  # fmt: skip
        if failed:
            raise BacktestError(f"the rule does not compile: {'; '.join(failed)}")
        self.policies = policies
        self.tally = Tally(ids=[] if keep_ids else None)
        self.correlation_id = correlation_id
        self._correlations: CorrelationEngine | None = None
        self._kept: list[tuple[list[str], dict[str, Any]]] = []
        if correlation_id is None:
            chosen = [entry for loaded, entry in compiled if str(loaded.rule.id) in wanted]
            if not chosen:
                raise BacktestError("the rule did not load: see its problems (log source?)")
            self._keys = {}
        else:
            correlations = list(result.correlations)
            if not any(str(c.id) == correlation_id for c in correlations):
                raise BacktestError("the correlation did not load: are its rules loaded?")
            for correlation in correlations:
                correlation.generate = True  # counted whatever it reports (see ruletest)
            self._correlations, problems = build_correlations(correlations)
            if any(problem.severity == "error" for problem in problems):
                raise BacktestError("; ".join(problem.message for problem in problems))
            chosen = [entry for _, entry in compiled]
            self._keys = keys_by_compiled(compiled)
        self.engine = engine_of(chosen, pipeline)
        self._detector = SigmaDetector(self.engine, _VERSION)

    def observe(self, document: dict[str, Any]) -> None:
        """Judge one event."""
        matched = self.engine.match(document)
        if not matched:
            return
        if self._correlations is not None:
            keys = [self._keys[rule] for rule in matched if rule in self._keys]
            if keys:
                self._kept.append((keys, self._correlations.projection(document)))
            return
        try:
            event = EcsEvent.model_validate(document)
            detections = self._detector.evaluate(event, document)
        except (ValidationError, RecordError):
            self.tally.unreadable += 1
            return
        for detection in detections:
            self.tally.fold(detection, self.policies)

    def finish(self, until: datetime) -> Tally:
        """The tally; for a correlation, after replaying its rules' matches oldest first."""
        engine = self._correlations
        if engine is None:
            return self.tally
        about: dict[tuple[str, bytes], dict[str, Any]] = {}
        for keys, event in reversed(self._kept):  # kept newest first
            for state_key, group in engine.route(keys, event):
                about[(state_key, orjson.dumps(list(group), default=str))] = event
            for hit in engine.observe(keys, event):
                self._hit(hit, event)
        for hit in engine.advance(until):
            values = orjson.dumps(list(hit.group.values()), default=str)
            self._hit(hit, about.get((hit.key, values), {}))
        return self.tally

    def _hit(self, hit: CorrelationHit, event: dict[str, Any]) -> None:
        if hit.correlation_id == self.correlation_id:
            self.tally.fold(correlation_detection(hit, event, _VERSION), self.policies)

    @property
    def base_matches(self) -> int:
        """For a correlation: how many events its rules matched."""
        return len(self._kept)


@dataclass(frozen=True)
class Scan:
    """The period a backtest read and how much of it."""

    since: datetime
    until: datetime
    events_in_period: int
    events_scanned: int
    cap: int
    oldest_scanned: datetime | None

    @property
    def capped(self) -> bool:
        """Whether the cap left older events of the period unread."""
        return self.events_scanned < self.events_in_period


def run_backtest(
    source: EventSource, judges: Sequence[Judge], days: int, cap: int, now: datetime
) -> Scan:
    """Read the last ``days`` days of events (newest first, at most ``cap``) through every
    judge, then finish them."""
    until = now
    since = now - timedelta(days=days)
    total = source.count(since, until)
    scanned = 0
    oldest: datetime | None = None
    for document in source.scan(since, until, cap):
        scanned += 1
        for judge in judges:
            judge.observe(document)
        oldest = _time(document) or oldest
    for judge in judges:
        judge.finish(until)
    return Scan(since, until, max(total, scanned), scanned, cap, oldest)


__all__ = [
    "EVENT_CAP",
    "BacktestError",
    "ElasticsearchEventSource",
    "EventSource",
    "InMemoryEventSource",
    "Judge",
    "Scan",
    "Tally",
    "run_backtest",
]
