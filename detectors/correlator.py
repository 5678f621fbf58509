"""``socpipe correlate``: soc.correlate → correlation detections on soc.detections.

Detectors send each event that a correlation's rule matched to ``soc.correlate``, keyed by the
correlation and the event's group (``SigmaDetector.candidates``), so every state lives on one
partition and one correlator owns it however many detectors and correlators run. A correlator
keeps one :class:`~detectors.sigma.correlation.CorrelationEngine` per partition it owns, feeds
it only the correlation each record names, and after every batch moves the engine's clock to the
latest event time it saw, which closes windows decided at their end.

Restarts and rebalances: state is rebuilt by replaying ``soc.correlate``. When a partition is
assigned, the correlator seeks back from its committed offset to what was written in the
``lookback`` before now (the longest timespan, the out-of-order allowance and a margin) and
replays up to the committed offset without sending hits: those were sent before. Hits carry
stable ids (correlation, group, window), and alerting folds a detection id once, so a hit sent
again after a crash between send and commit is not counted twice. A correlator down longer than
the lookback loses the state of windows open when it stopped (they start afresh).

Rule sets come as for the detector (``detectors.reload``): the set in force on ``soc.rules``,
else ``detector.rules_paths``; a new set takes over between batches, each partition's state
carried over (``CorrelationEngine.restore``: the state of a changed correlation is dropped).

For completeness accounting (``socpipe.counters``) the handler counts, per agency and UTC hour,
the detections it sends (not those of a replay, which are not sent) and the records it
dead-letters; ``run`` publishes the counts to soc.heartbeats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition

from detectors.reload import RuleSetWatcher, rules_in
from detectors.sigma.correlation import CorrelationEngine, CorrelationHit
from detectors.sigma.detection import SigmaDetector, rule_ref_of
from detectors.worker import follow_rules
from socpipe.counters import CounterPublisher, StageCounters
from socpipe.deadletter import DeadLetterWriter
from socpipe.kafka import ensure_topics, make_consumer, make_producer
from socpipe.records import Detection, DetectorRef, Entities, stable_id
from socpipe.settings import Settings, Tier
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)

_TIERS = frozenset(tier.value for tier in Tier)
# Replayed beyond the longest timespan and the allowance, for records written late.
_MARGIN_S = 15 * 60


class CorrelateHandler:
    """The batch handler: feed each record to its partition's engine; send the hits."""

    def __init__(
        self,
        producer: KafkaProducer,
        dlq: DeadLetterWriter,
        *,
        detections_topic: str,
        detector: SigmaDetector | None,
        rules: RuleSetWatcher | None = None,
        counters: StageCounters | None = None,
    ) -> None:
        self.producer = producer
        self.dlq = dlq
        self.detections_topic = detections_topic
        self.detector = detector
        self.rules = rules
        self.counters = counters
        self.engines: dict[int, CorrelationEngine] = {}
        # partition -> the committed offset when it was assigned: records before it are replay
        self.replay_until: dict[int, int] = {}
        # (partition, state key, group JSON) -> who the last event was about (for advance hits)
        self._about: dict[tuple[int, str, str], dict[str, Any]] = {}

    @property
    def lookback_s(self) -> float:
        """How far back a partition's state is rebuilt from."""
        correlations = self.detector.correlations if self.detector is not None else None
        specs = correlations.correlations if correlations is not None else []
        longest = max((rule.timespan.seconds for rule in specs), default=0)
        return float(longest) + 60.0 + _MARGIN_S

    def _engine(self, partition: int) -> CorrelationEngine | None:
        correlations = self.detector.correlations if self.detector is not None else None
        if correlations is None:
            return None
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = CorrelationEngine(correlations.correlations)
        return engine

    def drop(self, partitions: Sequence[int]) -> None:
        """Forget partitions this correlator no longer owns."""
        for partition in partitions:
            self.engines.pop(partition, None)
            self.replay_until.pop(partition, None)
        self._about = {key: value for key, value in self._about.items() if key[0] in self.engines}

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        self._swap_rules()
        futures: list[Any] = []
        latest: dict[int, datetime] = {}
        for message in messages:
            try:
                record = orjson.loads(message.value)
                state_key, rules, event = record["c"], record["rules"], record["event"]
                if not isinstance(event, dict) or not isinstance(rules, list):
                    raise TypeError("event must be an object and rules a list")
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                futures.append(self.dlq.refuse(message, f"not a correlation candidate: {exc}"))
                if self.counters is not None:
                    self.counters.add(_agency_of(message.value), "dead_lettered")
                continue
            engine = self._engine(message.partition)
            if engine is None:
                continue
            group = message.key.decode(errors="replace") if message.key else ""
            self._about[(message.partition, state_key, group)] = event
            hits = engine.observe(rules, event, only=state_key)
            stamp = _time(event.get("@timestamp"))
            if stamp is not None and (
                message.partition not in latest or stamp > latest[message.partition]
            ):
                latest[message.partition] = stamp
            if message.offset >= self.replay_until.get(message.partition, -1):
                futures.extend(self._send(hit, event) for hit in hits)
        for partition, stamp in latest.items():
            engine = self.engines.get(partition)
            if engine is None:
                continue
            closing = engine.advance(stamp)
            position = max((m.offset for m in messages if m.partition == partition), default=0)
            if position >= self.replay_until.get(partition, -1):
                for hit in closing:
                    group = orjson.dumps([hit.key, list(hit.group.values())], default=str)
                    about = self._about.get((partition, hit.key, group.decode()), {})
                    futures.append(self._send(hit, about))
        return futures

    def _send(self, hit: CorrelationHit, event: dict[str, Any]) -> Any:
        detection = correlation_detection(hit, event, self._version())
        if self.counters is not None:
            self.counters.add(detection.entities.agency, "detected")
        return self.producer.send(
            self.detections_topic,
            key=detection.dedup_key.encode(),
            value=detection.to_json(),
        )

    def _version(self) -> str:
        return self.detector.version if self.detector is not None else "none"

    def _swap_rules(self) -> None:
        if self.rules is None:
            return
        published = self.rules.take()
        if published is None:
            return
        log.info("correlating with rule set %s (was %s)", published.version, self._version())
        old = self.engines
        self.detector = published
        self.engines = {}
        if published.correlations is not None:
            for partition, engine in old.items():
                self.engines[partition] = CorrelationEngine.restore(
                    published.correlations.correlations, engine.snapshot()
                )
        self.rules.running(published.version, "soc.rules", rules_in(published))


def correlation_detection(hit: CorrelationHit, event: dict[str, Any], version: str) -> Detection:
    """A hit as a detection: who it concerns comes from its group, the agency and host from
    the event that made it fire (the last one of its group for windows decided at their end)."""
    ref = rule_ref_of(hit.correlation_id, hit.title, hit.level, hit.tags)
    organization, labels, host = (_part(event, name) for name in ("organization", "labels", "host"))
    group = hit.group
    tier = labels.get("tier")
    entities = Entities(
        agency=str(organization.get("id") or "unknown"),
        tier=Tier(tier) if tier in _TIERS else None,
        host=_text(group.get("host.name")) or _text(host.get("name")),
        user=_text(group.get("user.name")),
        source_ip=_text(group.get("source.ip")) or _text(group.get("client.ip")),
    )
    group_text = orjson.dumps(group, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return Detection(
        id=hit.id,
        timestamp=hit.window_end,
        detector=DetectorRef(type="correlation", id=ref.id, version=version),
        rule=ref,
        severity=ref.level,
        risk_score=ref.level.risk_score,
        entities=entities,
        dedup_key=stable_id(ref.id, entities.agency, group_text),
        event_ids=list(hit.event_ids) or [hit.id],
        events=[],
    )


def _agency_of(value: bytes | None) -> str:
    """The agency of an unreadable candidate, if its event still says (else ``unknown``)."""
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return "unknown"
    event = record.get("event") if isinstance(record, dict) else None
    agency = _part(event, "organization").get("id") if isinstance(event, dict) else None
    return agency if isinstance(agency, str) and agency else "unknown"


def _part(event: dict[str, Any], name: str) -> dict[str, Any]:
    part = event.get(name)
    return part if isinstance(part, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None


class _Rebuild(ConsumerRebalanceListener):  # type: ignore[misc]
    """Pauses newly assigned partitions until their state is rebuilt; forgets revoked ones.

    The callback runs on the client's network thread, where no blocking call is allowed, so
    it only notes the partitions; :class:`CorrelateLoop` rebuilds them before the next poll.
    """

    def __init__(self, consumer: KafkaConsumer, handler: CorrelateHandler) -> None:
        self.consumer = consumer
        self.handler = handler
        self.pending: list[TopicPartition] = []

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.handler.drop([tp.partition for tp in revoked])
        self.pending = [tp for tp in self.pending if tp not in revoked]

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        if assigned:
            self.consumer.pause(*assigned)
            self.pending.extend(assigned)

    def rebuild(self) -> None:
        """Seek each pending partition back by the lookback; replay up to its committed offset
        without sending hits (they were sent before); then let it be read."""
        pending, self.pending = self.pending, []
        since_ms = int((time.time() - self.handler.lookback_s) * 1000)
        for tp in pending:
            committed = self.consumer.committed(tp)
            self.handler.engines.pop(tp.partition, None)
            if committed is not None:
                found = self.consumer.offsets_for_times({tp: since_ms}).get(tp)
                start = min(found.offset, committed) if found is not None else committed
                self.handler.replay_until[tp.partition] = committed
                if start < committed:
                    log.info("%s: rebuilding state from offset %d to %d", tp, start, committed)
                    self.consumer.seek(tp, start)
        if pending:
            self.consumer.resume(*pending)


class CorrelateLoop(StreamLoop):
    """The stream loop, rebuilding newly assigned partitions' state before each poll."""

    def __init__(self, *args: Any, rebuild: _Rebuild, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rebuild = rebuild

    def run_once(self) -> int:
        if self.rebuild.pending:
            self.rebuild.rebuild()
        return super().run_once()


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the correlator stage until ``stop`` is set."""
    topics = settings.kafka.topics
    ensure_topics(settings.kafka, ["correlate", "detections", "rules", "heartbeats"])
    producer = make_producer(settings.kafka)
    correlator_id = f"correlator-{settings.detector.id.removeprefix('detector-')}"
    watcher, detector = follow_rules(settings, producer, correlator_id)
    counters = StageCounters("correlate", correlator_id)
    # Its own producer: the stream loop closes its producer before the last counts are sent.
    publisher = CounterPublisher(
        counters, make_producer(settings.kafka, max_block_ms=10_000), topics.heartbeats
    )
    handler = CorrelateHandler(
        producer,
        DeadLetterWriter(producer, topics.dlq, "correlate"),
        detections_topic=topics.detections,
        detector=detector,
        rules=watcher,
        counters=counters,
    )
    consumer = make_consumer(
        settings.kafka, f"{settings.detector.group_id}-correlate", [topics.correlate]
    )
    # Subscribed again with the listener that rebuilds state on assignment.
    rebuild = _Rebuild(consumer, handler)
    consumer.subscribe([topics.correlate], listener=rebuild)
    log.info("correlating from %s", topics.correlate)
    publisher.start()
    try:
        CorrelateLoop(consumer, producer, handler, max_records=500, rebuild=rebuild).run(stop)
    finally:
        watcher.stop()
        publisher.stop()
        publisher.producer.close(timeout=10)
