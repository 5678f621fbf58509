"""``socpipe anomaly``: soc.events → anomaly detections on soc.detections, in batches.

The scorer reads every ECS event the detectors write and folds it, for each model in force
(``soc.models``, :mod:`detectors.anomaly.publish`), into that model's window of the event's
entity (:class:`~detectors.anomaly.windows.Windows`, one fold per agency). Windows close by
event time: a window is judged once its agency's latest event time (the agency's watermark) is
``anomaly.lateness_s`` past its end, or, when the agency has sent nothing for
``anomaly.idle_s``, once its end is that far behind the wall clock. The closed windows of a
batch are scored together (:meth:`AnomalyModel.judge`); a window above its threshold (the
entity's, raised by analysts' false positives, else its agency's, else the model's) becomes a
:class:`~socpipe.records.Detection` of type ``anomaly`` carrying the score, the threshold and
the features that drove it, and the window's first events.

Ids: a detection's id is stable (model version, agency, entity, window start) and its dedup key
is the model name, agency and entity, so a window judged again (a replay) folds into the same
alert once, and an entity anomalous hour after hour is one alert that grows.

One scorer owns every partition of ``soc.events`` (it assigns them itself rather than joining a
group that would split an entity's events, keyed by agency and host, between members): its
windows always see all of an entity's events. A second scorer started by mistake judges the same
windows and produces the same ids, which alerting folds once. Offsets are committed in the
scorer's group after each batch; at start the scorer reads back from its committed offsets over
the longest window, the lateness and a margin to rebuild the windows open when it stopped, and
sends nothing for a window its agency's watermark had already closed before the restart (those
were judged then).

A model published while the scorer runs takes over between batches without a restart. For
each agency the new model starts at its first window boundary after the agency's watermark;
the model it replaces keeps the windows it has open until they close, and is then dropped. A
model withdrawn stops at once (its open windows are not judged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from detectors.anomaly.model import AnomalyModel, Judgement
from detectors.anomaly.publish import ModelWatcher
from detectors.anomaly.windows import WindowKey, Windows, event_time
from detectors.reload import status_value
from socpipe.counters import CounterPublisher, StageCounters
from socpipe.deadletter import DeadLetterWriter
from socpipe.kafka import client_options, ensure_topics, make_producer
from socpipe.records import (
    AnomalyDetail,
    Detection,
    DetectorRef,
    Entities,
    RuleRef,
    Severity,
    stable_id,
)
from socpipe.settings import AnomalySettings, Settings, Tier
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)

# Events a window keeps to show with its detection.
SAMPLES: Final = 3
# Replayed at start beyond the longest window and the lateness, for records written late.
_MARGIN_S: Final = 15 * 60
_NO_ROWS: Final = np.zeros((0, 0))
_TIERS: Final = frozenset(tier.value for tier in Tier)
_ENTITY_LABEL: Final = {
    "user": "account",
    "host": "host",
    "source_ip": "source address",
    "agency": "agency",
}


@dataclass
class ModelRun:
    """One model in force and its open windows, one fold per agency.

    ``since`` (agency → time): events before it belong to the model this one took over from.
    ``until`` (set when the run is retiring; agency → time): events from it on belong to the
    successor; agencies it does not name are not this run's any more. ``horizon`` (agency →
    time): the windows before it are judged, so an event for them is late and not counted.
    """

    name: str
    model: AnomalyModel
    folds: dict[str, Windows] = field(default_factory=dict)
    since: dict[str, datetime] = field(default_factory=dict)
    until: dict[str, datetime] | None = None
    horizon: dict[str, datetime] = field(default_factory=dict)
    late: int = 0

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.model.meta.window_s)

    def open_windows(self) -> int:
        return sum(len(windows) for windows in self.folds.values())

    def observe(
        self, event: Mapping[str, Any], agency: str, moment: datetime, *, may_open: bool
    ) -> None:
        """Count ``event`` in its window, if it is this run's and not late."""
        since = self.since.get(agency)
        if since is not None and moment < since:
            return
        if self.until is not None:
            until = self.until.get(agency)
            if until is None or moment >= until:
                return
        horizon = self.horizon.get(agency)
        if horizon is not None and moment < horizon:
            self.late += 1
            return
        fold = self.folds.get(agency)
        if fold is None:
            fold = self.folds[agency] = self.model.windows(samples=SAMPLES)
        fold.add(event, may_open=may_open)

    def close(self, agency: str, before: datetime) -> tuple[list[WindowKey], NDArray[np.float64]]:
        """Take the agency's windows that ended at or before ``before`` (keys and rows)."""
        fold = self.folds.get(agency)
        if fold is None or not len(fold):
            return [], _NO_ROWS
        keys, rows = fold.take(before)
        if not keys:
            return [], _NO_ROWS
        seconds = self.model.meta.window_s
        epoch = int(before.timestamp())
        edge = datetime.fromtimestamp(epoch - epoch % seconds, UTC)
        if agency not in self.horizon or edge > self.horizon[agency]:
            self.horizon[agency] = edge
        return keys, rows


def boundary_after(moment: datetime, seconds: int) -> datetime:
    """The first window boundary (of ``seconds``-long windows) after ``moment``."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds + seconds, UTC)


class AnomalyHandler:
    """The batch handler: fold each event into every model's windows; judge those that close."""

    def __init__(
        self,
        producer: KafkaProducer,
        dlq: DeadLetterWriter,
        *,
        detections_topic: str,
        settings: AnomalySettings,
        models: Mapping[str, AnomalyModel] | None = None,
        watcher: ModelWatcher | None = None,
        counters: StageCounters | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.producer = producer
        self.dlq = dlq
        self.detections_topic = detections_topic
        self.settings = settings
        self.watcher = watcher
        self.counters = counters
        self.clock = clock
        self.wall = wall
        self.runs: dict[str, ModelRun] = {
            name: ModelRun(name, model)
            for name, model in (models or {}).items()
            if self._mine(name)
        }
        self.retiring: list[ModelRun] = []
        self.watermarks: dict[str, datetime] = {}  # agency → its latest event time
        self.touched: dict[str, float] = {}  # agency → clock() when its last event came
        self.tiers: dict[str, str] = {}
        # partition → the committed offset at start: records before it are a replay.
        self.replay_until: dict[int, int] = {}
        # agency → the latest event time of its replayed records (what was seen before).
        self.replayed: dict[str, datetime] = {}
        # Running totals (the metrics endpoint reads them when scraped).
        self.detections = 0
        self.events = 0
        self.untimed = 0
        self.judged: dict[tuple[str, bool], int] = {}  # (model name, anomalous) → windows
        self.open_windows: dict[str, int] = {}  # model name → windows open after the last tick
        self._full_logged = 0.0
        self._late_retired = 0

    @property
    def lookback_s(self) -> float:
        """How far back the windows open at a restart are rebuilt from."""
        longest = max((run.model.meta.window_s for run in self.runs.values()), default=0)
        return float(longest + self.settings.lateness_s + _MARGIN_S)

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        self._swap()
        futures: list[Any] = []
        runs = [*self.runs.values(), *self.retiring]
        may_open = sum(run.open_windows() for run in runs) < self.settings.max_windows
        now = self.clock()
        # A host whose clock runs ahead must not close everyone's windows: an agency's
        # watermark goes no further than the wall clock (and the lateness) allows.
        ahead = self.wall() + timedelta(seconds=self.settings.lateness_s)
        for message in messages:
            try:
                event = orjson.loads(message.value)
                if not isinstance(event, dict):
                    raise TypeError(f"a {type(event).__name__}, not an object")
            except (orjson.JSONDecodeError, TypeError) as exc:
                futures.append(self.dlq.refuse(message, f"not an ECS event: {exc}"))
                if self.counters is not None:
                    self.counters.add("unknown", "dead_lettered")
                continue
            self.events += 1
            moment = event_time(event.get("@timestamp"))
            if moment is None:
                self.untimed += 1
                continue
            agency = _agency(event)
            mark = min(moment, ahead)
            if mark > self.watermarks.get(agency, mark - timedelta(seconds=1)):
                self.watermarks[agency] = mark
            self.touched[agency] = now
            tier = _part(event, "labels").get("tier")
            if tier in _TIERS:
                self.tiers[agency] = tier
            if message.offset < self.replay_until.get(message.partition, -1):
                seen = self.replayed.get(agency)
                if seen is None or moment > seen:
                    self.replayed[agency] = moment
            for run in runs:
                run.observe(event, agency, moment, may_open=may_open)
        if not may_open:
            self._log_full(runs)
        futures.extend(self.tick())
        return futures

    def tick(self) -> list[Any]:
        """Judge the windows that closed (by watermark, or by the clock for quiet agencies);
        send the anomalous ones. The stream loop also calls it when a poll brings nothing
        (a model published then is taken over then, not at the next event)."""
        self._swap()
        futures: list[Any] = []
        lateness = timedelta(seconds=self.settings.lateness_s)
        now, wall = self.clock(), self.wall()
        for run in [*self.runs.values(), *self.retiring]:
            keys: list[WindowKey] = []
            rows: list[NDArray[np.float64]] = []
            for agency in list(run.folds):
                before = self._closing_point(agency, now, wall, lateness)
                if before is not None:
                    closed, matrix = run.close(agency, before)
                    if closed:
                        keys += closed
                        rows.append(matrix)
            if not keys:
                continue
            # One scoring per model and batch: the forest's cost is mostly per call.
            for judgement in run.model.judge(keys, np.concatenate(rows)):
                tally = (run.name, judgement.anomalous)
                self.judged[tally] = self.judged.get(tally, 0) + 1
                if not judgement.anomalous:
                    continue
                seen = self.replayed.get(judgement.key.agency or "unknown")
                end = judgement.key.start + run.window
                if seen is not None and end + lateness <= seen:
                    continue  # judged before the restart: this is its replay
                futures.append(self._send(run, judgement))
        self._retire(now, wall, lateness)
        opened: dict[str, int] = {}
        for run in [*self.runs.values(), *self.retiring]:
            opened[run.name] = opened.get(run.name, 0) + run.open_windows()
        self.open_windows = opened
        return futures

    @property
    def late(self) -> int:
        """Events not counted because their window was already judged (all runs so far)."""
        return self._late_retired + sum(run.late for run in [*self.runs.values(), *self.retiring])

    def _closing_point(
        self, agency: str, now: float, wall: datetime, lateness: timedelta
    ) -> datetime | None:
        """Windows of ``agency`` ending at or before this are judged now."""
        watermark = self.watermarks.get(agency)
        before = watermark - lateness if watermark is not None else None
        if now - self.touched.get(agency, now) >= self.settings.idle_s:
            quiet = wall - lateness
            before = quiet if before is None or quiet > before else before
        return before

    def _retire(self, now: float, wall: datetime, lateness: timedelta) -> None:
        """Drop the retiring runs whose windows are all judged."""
        kept = []
        for run in self.retiring:
            done = run.open_windows() == 0 and all(
                (point := self._closing_point(agency, now, wall, lateness)) is not None
                and point >= until
                for agency, until in (run.until or {}).items()
            )
            if done:
                self._late_retired += run.late
                log.info("model %s %s retired", run.name, run.model.meta.version)
            else:
                kept.append(run)
        self.retiring = kept

    def _send(self, run: ModelRun, judgement: Judgement) -> Any:
        agency = judgement.key.agency or "unknown"
        detection = anomaly_detection(
            run.name,
            run.model,
            judgement,
            tier=self.tiers.get(agency),
            severity=Severity(self.settings.severity),
        )
        self.detections += 1
        if self.counters is not None:
            self.counters.add(detection.entities.agency, "detected")
        return self.producer.send(
            self.detections_topic,
            key=detection.dedup_key.encode(),
            value=detection.to_json(),
        )

    def _swap(self) -> None:
        """Take the models published or withdrawn since the last batch."""
        if self.watcher is None:
            return
        changes = self.watcher.take()
        if not changes:
            return
        for name, model in changes.items():
            if not self._mine(name):
                continue
            old = self.runs.pop(name, None)
            if model is None:
                if old is not None:
                    self._late_retired += old.late
                    log.info(
                        "model %s withdrawn: %d open windows dropped", name, old.open_windows()
                    )
                continue
            new = ModelRun(name, model)
            # Each agency's first window of the new model is its first whole one.
            for agency, watermark in self.watermarks.items():
                new.since[agency] = boundary_after(watermark, model.meta.window_s)
            if old is not None and old.open_windows():
                old.until = {agency: new.since[agency] for agency in old.folds}
                self.retiring.append(old)
            log.info(
                "model %s: %s takes over%s",
                name,
                model.meta.version,
                f" from {old.model.meta.version}" if old is not None else "",
            )
            self.runs[name] = new
        self.watcher.running({name: run.model.meta.version for name, run in self.runs.items()})

    def _mine(self, name: str) -> bool:
        """Whether this scorer runs the model ``name`` (``anomaly.models``, empty: all)."""
        return not self.settings.models or name in self.settings.models

    def _log_full(self, runs: list[ModelRun]) -> None:
        now = self.clock()
        if now - self._full_logged < 60:
            return
        self._full_logged = now
        refused = sum(fold.refused for run in runs for fold in run.folds.values())
        log.warning(
            "%d windows open (anomaly.max_windows %d): new windows wait until others close; "
            "%d events left out so far",
            sum(run.open_windows() for run in runs),
            self.settings.max_windows,
            refused,
        )


class ScorerMetrics:
    """Prometheus metrics of a scorer, read from its handler's totals when scraped (nothing is
    counted twice in the hot loop)."""

    def __init__(self, handler: AnomalyHandler, registry: CollectorRegistry | None = None) -> None:
        self.handler = handler
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        handler = self.handler
        events = CounterMetricFamily(
            "socpipe_anomaly_events",
            "Events the scorer read, by outcome (late: their window was already judged)",
            labels=["outcome"],
        )
        events.add_metric(["read"], handler.events)
        events.add_metric(["untimed"], handler.untimed)
        events.add_metric(["late"], handler.late)
        events.add_metric(["dead_lettered"], handler.dlq.count)
        yield events
        windows = CounterMetricFamily(
            "socpipe_anomaly_windows",
            "Windows judged, by model and verdict",
            labels=["model", "verdict"],
        )
        for (name, anomalous), count in sorted(handler.judged.items()):
            windows.add_metric([name, "anomalous" if anomalous else "normal"], count)
        yield windows
        opened = GaugeMetricFamily(
            "socpipe_anomaly_open_windows", "Windows open, by model", labels=["model"]
        )
        for name, count in sorted(handler.open_windows.items()):
            opened.add_metric([name], count)
        yield opened

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Serve /metrics on ``address:port`` from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)


def anomaly_detection(
    name: str,
    model: AnomalyModel,
    judgement: Judgement,
    *,
    tier: str | None = None,
    severity: Severity = Severity.MEDIUM,
) -> Detection:
    """A window above its threshold as a detection of model ``name``."""
    meta, key = model.meta, judgement.key
    agency = key.agency or "unknown"
    entity = meta.entity
    whose = {entity: key.entity} if entity in ("user", "host", "source_ip") else {}
    entities = Entities(agency=agency, tier=Tier(tier) if tier in _TIERS else None, **whose)
    minutes = meta.window_s // 60
    span = f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
    rule = RuleRef(
        id=f"anomaly/{name}",
        title=f"Unusual {_ENTITY_LABEL[entity]} activity ({span} windows)",
        level=severity,
    )
    detection_id = stable_id("anomaly", meta.version, agency, key.entity, key.start.isoformat())
    return Detection(
        id=detection_id,
        timestamp=key.start,
        detector=DetectorRef(type="anomaly", id=name, version=meta.version),
        rule=rule,
        severity=severity,
        risk_score=severity.risk_score,
        entities=entities,
        dedup_key=stable_id("anomaly", name, agency, key.entity),
        event_ids=list(key.event_ids) or [detection_id],
        events=[dict(sample) for sample in key.samples],
        anomaly=AnomalyDetail(
            score=round(judgement.score, 4),
            threshold=round(judgement.threshold, 4),
            features=judgement.features,
        ),
    )


def _agency(event: Mapping[str, Any]) -> str:
    agency = _part(event, "organization").get("id")
    return agency if isinstance(agency, str) and agency else "unknown"


def _part(event: Mapping[str, Any], name: str) -> dict[str, Any]:
    part = event.get(name)
    return part if isinstance(part, dict) else {}


def assign_and_rebuild(consumer: KafkaConsumer, topic: str, handler: AnomalyHandler) -> None:
    """Take every partition of ``topic``; seek each back by the handler's lookback from its
    committed offset (from the end, for a new group), noting where the replay ends."""
    numbers = consumer.partitions_for_topic(topic) or set()
    partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
    if not partitions:
        raise RuntimeError(f"{topic} has no partitions")
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    since_ms = int((time.time() - handler.lookback_s) * 1000)
    found = consumer.offsets_for_times({tp: since_ms for tp in partitions})
    for tp in partitions:
        committed = consumer.committed(tp)
        if committed is None:
            committed = ends[tp]  # a new scorer starts now, its windows rebuilt as above
        at = found.get(tp)
        start = min(at.offset, committed) if at is not None else committed
        handler.replay_until[tp.partition] = committed
        consumer.seek(tp, start)
        if start < committed:
            log.info("%s: rebuilding windows from offset %d to %d", tp, start, committed)


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the anomaly scorer until ``stop`` is set."""
    topics = settings.kafka.topics
    ensure_topics(settings.kafka, ["events", "detections", "models", "heartbeats", "dlq"])
    producer = make_producer(settings.kafka)
    scorer_id = settings.anomaly.id

    def publish_status(status: dict[str, Any]) -> None:
        value = status_value(scorer_id, status, role="scorer")
        producer.send(topics.heartbeats, key=scorer_id.encode(), value=value)

    watcher = ModelWatcher(settings.kafka, publish_status=publish_status)
    models = watcher.initial()
    watcher.start()
    counters = StageCounters("anomaly", scorer_id)
    # Its own producer: the stream loop closes its producer before the last counts are sent.
    publisher = CounterPublisher(
        counters, make_producer(settings.kafka, max_block_ms=10_000), topics.heartbeats
    )
    handler = AnomalyHandler(
        producer,
        DeadLetterWriter(producer, topics.dlq, "anomaly"),
        detections_topic=topics.detections,
        settings=settings.anomaly,
        models=models,
        watcher=watcher,
        counters=counters,
    )
    options = client_options(settings.kafka)
    options.update(
        group_id=settings.anomaly.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.anomaly.batch_size,
    )
    if settings.anomaly.metrics_port:
        ScorerMetrics(handler).serve(settings.anomaly.metrics_port)
    consumer = KafkaConsumer(**options)
    assign_and_rebuild(consumer, topics.events, handler)
    watcher.running({name: run.model.meta.version for name, run in handler.runs.items()})
    log.info("scoring %s with %s", topics.events, ", ".join(handler.runs) or "no model yet")
    publisher.start()
    try:
        StreamLoop(
            consumer,
            producer,
            handler,
            max_records=settings.anomaly.batch_size,
            idle=handler.tick,
        ).run(stop)
    finally:
        watcher.stop()
        publisher.stop()
        publisher.producer.close(timeout=10)
        log.info(
            "scorer stopped: %d detections; %d events without a time, %d late",
            handler.detections,
            handler.untimed,
            handler.late,
        )
