"""``socpipe detect``: soc.raw → ECS events on soc.events and detections on soc.detections.

Every readable raw record becomes an event, parsed or tagged ``unparsed``
(``detectors.normalize``). Only a Kafka message that cannot be read as a RawBatch goes to
soc.dlq, with the reason; the worker goes on. The Sigma engine judges each event with the rule
set in force: the one published on soc.rules (swapped in between batches as new ones are
published, ``detectors.reload``), else ``detector.rules_paths``; with neither, the foundation's
failed-SSH-password check stands in.

For completeness accounting (``socpipe.counters``, docs/completeness.md) the handler counts per
agency and UTC hour the raw records it received, parsed, left unparsed and dead-lettered, and the
detections it produced; ``run`` publishes those counts to soc.heartbeats.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from kafka import KafkaProducer

from detectors.checks import Check, FailedPasswordCheck
from detectors.enrich import AgencyRegistry, AssetRegistry
from detectors.metrics import DetectorMetrics
from detectors.normalize import Normalizer
from detectors.reload import RuleSetWatcher, rules_in, status_value
from detectors.sigma.detection import SigmaDetector, ruleset_version
from detectors.sigma.hunt import build_hunter
from socpipe.counters import CounterPublisher, Measure, StageCounters
from socpipe.deadletter import DeadLetterWriter
from socpipe.errors import RecordError
from socpipe.kafka import (
    agency_of_topic,
    ensure_topics,
    make_consumer,
    make_producer,
    raw_topics_pattern,
)
from socpipe.localservices import default_home
from socpipe.records import (
    HEARTBEAT_KIND,
    KIND_HEADER,
    RawBatch,
    encode_document,
    message_kind,
)
from socpipe.settings import DetectorSettings, Settings
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)

# A batch's completeness counts: (agency, measure) -> n.
_Tally = dict[tuple[str, Measure], int]


def build_normalizer(settings: DetectorSettings) -> Normalizer:
    """The normalizer for these settings; a bad registry or asset file raises ConfigError."""
    return Normalizer(
        timezone=settings.syslog_timezone,
        agencies=AgencyRegistry.load(settings.agencies_file) if settings.agencies_file else None,
        assets=AssetRegistry.load(settings.assets_file) if settings.assets_file else None,
        options={
            name: options.model_dump(exclude_none=True)
            for name, options in settings.formats.items()
        },
    )


class RawRecordHandler:
    """The batch handler: normalize each raw record, run the checks, produce, dead-letter."""

    def __init__(
        self,
        producer: KafkaProducer,
        dlq: DeadLetterWriter,
        *,
        events_topic: str,
        detections_topic: str,
        checks: Sequence[Check],
        correlate_topic: str = "soc.correlate",
        normalizer: Normalizer,
        metrics: DetectorMetrics | None = None,
        sigma: SigmaDetector | None = None,
        rules: RuleSetWatcher | None = None,
        raw_topic: str = "soc.raw",
        heartbeats_topic: str = "soc.heartbeats",
        counters: StageCounters | None = None,
    ) -> None:
        self.producer = producer
        self.raw_topic = raw_topic
        self.heartbeats_topic = heartbeats_topic
        self.dlq = dlq
        self.events_topic = events_topic
        self.detections_topic = detections_topic
        self.correlate_topic = correlate_topic
        self.checks = list(checks)
        self.normalizer = normalizer
        self.metrics = metrics or DetectorMetrics()
        self.sigma = sigma
        self.rules = rules
        self.counters = counters

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        futures: list[Any] = []
        # (agency, measure) -> count for this batch, added to the counters once at its end: one
        # lock per batch instead of three per record, and nothing counted of a batch that raised.
        tally: _Tally = {}
        self._swap_rules()
        for message in messages:
            where = f"{message.topic}/{message.partition}@{message.offset}"
            # Only this agency's credential can write this topic (None: the SOC's own soc.raw).
            claimed = agency_of_topic(self.raw_topic, message.topic)
            if message_kind(message.headers) == HEARTBEAT_KIND:
                futures.append(self._heartbeat(message, claimed))
                continue
            try:
                batch = RawBatch.from_json(message.value, where=where)
            except RecordError as exc:
                futures.append(
                    self.dlq.send(
                        str(exc),
                        message.value,
                        topic=message.topic,
                        partition=message.partition,
                        offset=message.offset,
                    )
                )
                self.metrics.count(claimed or "unknown", "unknown", "dead_lettered")
                lost = _records_in(message.value)
                _tally(tally, claimed or "unknown", "received", lost)
                _tally(tally, claimed or "unknown", "dead_lettered", lost)
                continue
            if claimed is not None and (
                strangers := sorted({r.agency.id for r in batch.records} - {claimed})
            ):
                # A collector that speaks for another agency is not trusted with any record of
                # the message: all of it goes to the DLQ, for the SOC to look into.
                futures.append(
                    self.dlq.refuse(
                        message,
                        f"records claim agency {', '.join(strangers)} but came on "
                        f"{message.topic}, which only agency {claimed}'s credential can write; "
                        f"the whole message ({len(batch.records)} records) is refused",
                        agency=claimed,
                    )
                )
                self.metrics.count(claimed, "unknown", "spoofed")
                # Counted for the agency whose topic it came on, not the one it claims.
                _tally(tally, claimed, "received", len(batch.records))
                _tally(tally, claimed, "dead_lettered", len(batch.records))
                continue
            for raw in batch.records:
                normalized = self.normalizer.normalize(raw)
                self.metrics.count(raw.agency.id, normalized.format, normalized.status)
                _tally(tally, raw.agency.id, "received")
                _tally(tally, raw.agency.id, normalized.status)
                event = normalized.event
                key = f"{raw.agency.id}/{raw.host}".encode()
                document = normalized.document
                futures.append(
                    self.producer.send(self.events_topic, key=key, value=encode_document(document))
                )
                detections = []
                for check in self.checks:
                    try:
                        detection = check.evaluate(event)
                    except RecordError as exc:
                        log.warning(
                            "%s: check %s skipped record %s: %s",
                            where,
                            type(check).__name__,
                            raw.id,
                            exc,
                        )
                        continue
                    if detection is not None:
                        detections.append(detection)
                if self.sigma is not None:
                    try:
                        detections.extend(self.sigma.evaluate(event, document))
                    except RecordError as exc:
                        log.warning("%s: Sigma skipped record %s: %s", where, raw.id, exc)
                    # Re-keyed by correlation and group: one correlator owns each state.
                    for key, value in self.sigma.candidates(document):
                        futures.append(
                            self.producer.send(self.correlate_topic, key=key, value=value)
                        )
                for detection in detections:
                    self.metrics.detections.labels(
                        agency=raw.agency.id, rule=detection.rule.id
                    ).inc()
                    _tally(tally, detection.entities.agency, "detected")
                    futures.append(
                        self.producer.send(
                            self.detections_topic,
                            key=detection.dedup_key.encode(),
                            value=detection.to_json(),
                        )
                    )
        if self.counters is not None:
            for (agency, measure), n in tally.items():
                self.counters.add(agency, measure, n)
        return futures

    def _heartbeat(self, message: Any, claimed: str | None) -> Any:
        """Pass a collector's heartbeat on to soc.heartbeats once its agency is the topic's."""
        try:
            beat = orjson.loads(message.value)
            agency = beat["agency"]["id"]
            collector = beat["collector"]["id"]
            if not isinstance(agency, str) or not isinstance(collector, str):
                raise TypeError("agency.id and collector.id must be strings")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            why = f"not a collector heartbeat: {type(exc).__name__}: {exc}"
            return self.dlq.refuse(message, why, agency=claimed)
        if claimed is not None and agency != claimed:
            return self.dlq.refuse(
                message,
                f"a heartbeat claims agency {agency} but came on {message.topic}, "
                f"which only agency {claimed}'s credential can write",
                agency=claimed,
            )
        beat["via"] = message.topic
        return self.producer.send(
            self.heartbeats_topic,
            key=f"collector/{agency}/{collector}".encode(),
            value=orjson.dumps(beat),
            headers=[(KIND_HEADER, HEARTBEAT_KIND)],
        )

    def _swap_rules(self) -> None:
        """Take a newly published rule set, between batches: one set judges a whole batch."""
        if self.rules is None:
            return
        published = self.rules.take()
        if published is None:
            return
        log.info("now running rule set %s (was %s)", published.version, self._version())
        self.sigma = published
        self.checks = []
        self.rules.running(published.version, "soc.rules", rules_in(published))

    def _version(self) -> str:
        return self.sigma.version if self.sigma is not None else "none"


def _tally(tally: _Tally, agency: str, measure: Measure, n: int = 1) -> None:
    tally[agency, measure] = tally.get((agency, measure), 0) + n


def _records_in(value: bytes | None) -> int:
    """How many records an unreadable message held, as far as it can be told (at least 1): a
    batch that is JSON with a ``records`` list but fails its schema still says how many."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return 1
    records = data.get("records") if isinstance(data, dict) else None
    return max(1, len(records)) if isinstance(records, list) else 1


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the detector stage until ``stop`` is set."""
    topics = settings.kafka.topics
    normalizer = build_normalizer(settings.detector)
    metrics = DetectorMetrics()
    if settings.detector.metrics_port:
        metrics.serve(settings.detector.metrics_port)
        log.info("metrics at http://127.0.0.1:%d/metrics", settings.detector.metrics_port)
    ensure_topics(settings.kafka, ["rules", "heartbeats"])
    producer = make_producer(settings.kafka)
    watcher, sigma = follow_rules(settings, producer, settings.detector.id)
    if sigma is None:
        log.warning(
            "no rule set on %s and no detector.rules_paths: only the built-in SSH failure "
            "check runs (rules/socpipe holds it as a Sigma rule, with others)",
            topics.rules,
        )
    # soc.raw and every agency's soc.raw.<agency>, also those provisioned while running.
    consumer = make_consumer(
        settings.kafka,
        settings.detector.group_id,
        [],
        pattern=raw_topics_pattern(topics.raw),
        metadata_max_age_ms=5_000,
    )
    counters = StageCounters("detect", settings.detector.id)
    # A producer of its own: the stream loop closes its producer on the way out, and the last
    # counts are published after that.
    publisher = CounterPublisher(
        counters, make_producer(settings.kafka, max_block_ms=10_000), topics.heartbeats
    )
    handler = RawRecordHandler(
        producer,
        DeadLetterWriter(producer, topics.dlq, "detect"),
        events_topic=topics.events,
        detections_topic=topics.detections,
        correlate_topic=topics.correlate,
        # The Sigma engine takes the foundation's check's place; rules/socpipe has it as a rule.
        checks=[] if sigma is not None else [FailedPasswordCheck()],
        normalizer=normalizer,
        metrics=metrics,
        sigma=sigma,
        rules=watcher,
        raw_topic=topics.raw,
        heartbeats_topic=topics.heartbeats,
        counters=counters,
    )
    log.info("detecting from %s and %s.<agency>", topics.raw, topics.raw)
    publisher.start()
    try:
        StreamLoop(consumer, producer, handler, max_records=settings.detector.batch_size).run(stop)
    finally:
        watcher.stop()
        publisher.stop()
        publisher.producer.close(timeout=10)


def follow_rules(
    settings: Settings, producer: KafkaProducer, name: str
) -> tuple[RuleSetWatcher, SigmaDetector | None]:
    """The rule set to start with, and a started watcher of soc.rules for the next ones.

    The set in force on soc.rules wins; ``detector.rules_paths`` serves until one is
    published. What runs (or is rejected) is reported on soc.heartbeats under ``name``.
    """
    heartbeats = settings.kafka.topics.heartbeats

    def publish_status(status: dict[str, Any]) -> None:
        producer.send(heartbeats, key=name.encode(), value=status_value(name, status))

    home = settings.local.home or default_home()
    watcher = RuleSetWatcher(
        settings.kafka, unpack_dir=home / "rulesets", publish_status=publish_status
    )
    sigma, source = watcher.initial(), "soc.rules"
    if sigma is None and settings.detector.rules_paths:
        sigma, source = configured_rules(settings), "rules_paths"
    if sigma is not None:
        watcher.running(sigma.version, source, rules_in(sigma))
    watcher.start()
    return watcher, sigma


def configured_rules(settings: Settings) -> SigmaDetector:
    """The rules of ``detector.rules_paths``, loaded and compiled (what cannot be is logged)."""
    placeholders = settings.detector.placeholders
    hunter = build_hunter(settings.detector.rules_paths, placeholders)
    report = hunter.report
    version = ruleset_version(settings.detector.rules_paths, placeholders)
    log.info(
        "Sigma rule set %s: %d rules compiled, %d not, %d load errors",
        version,
        report.compiled,
        report.failed,
        report.problems,
    )
    for message in report.messages:
        log.warning("rule not loaded: %s", message)
    return SigmaDetector(hunter.engine, version, hunter.correlations, hunter.keys)
