"""``socpipe detect``: soc.raw → ECS events on soc.events and detections on soc.detections.

Every readable raw record becomes an event, parsed or tagged ``unparsed``
(``detectors.normalize``). Only a Kafka message that cannot be read as a RawBatch goes to
soc.dlq, with the reason; the worker goes on. Until the Sigma engine lands, one check (failed SSH
password) stands in for the rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer

from detectors.checks import Check, FailedPasswordCheck
from detectors.enrich import AgencyRegistry, AssetRegistry
from detectors.metrics import DetectorMetrics
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector, ruleset_version
from detectors.sigma.hunt import build_engine
from socpipe.deadletter import DeadLetterWriter
from socpipe.errors import RecordError
from socpipe.kafka import make_consumer, make_producer
from socpipe.records import RawBatch, encode_document
from socpipe.settings import DetectorSettings, Settings
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)


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
        normalizer: Normalizer,
        metrics: DetectorMetrics | None = None,
        sigma: SigmaDetector | None = None,
    ) -> None:
        self.producer = producer
        self.dlq = dlq
        self.events_topic = events_topic
        self.detections_topic = detections_topic
        self.checks = list(checks)
        self.normalizer = normalizer
        self.metrics = metrics or DetectorMetrics()
        self.sigma = sigma

    def __call__(self, messages: Sequence[Any]) -> list[Any]:
        futures: list[Any] = []
        for message in messages:
            where = f"{message.topic}/{message.partition}@{message.offset}"
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
                self.metrics.count("unknown", "unknown", "dead_lettered")
                continue
            for raw in batch.records:
                normalized = self.normalizer.normalize(raw)
                self.metrics.count(raw.agency.id, normalized.format, normalized.status)
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
                for detection in detections:
                    self.metrics.detections.labels(
                        agency=raw.agency.id, rule=detection.rule.id
                    ).inc()
                    futures.append(
                        self.producer.send(
                            self.detections_topic,
                            key=detection.dedup_key.encode(),
                            value=detection.to_json(),
                        )
                    )
        return futures


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the detector stage until ``stop`` is set."""
    topics = settings.kafka.topics
    normalizer = build_normalizer(settings.detector)
    metrics = DetectorMetrics()
    if settings.detector.metrics_port:
        metrics.serve(settings.detector.metrics_port)
        log.info("metrics at http://127.0.0.1:%d/metrics", settings.detector.metrics_port)
    sigma = None
    if settings.detector.rules_paths:
        placeholders = settings.detector.placeholders
        engine, report = build_engine(settings.detector.rules_paths, placeholders)
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
        sigma = SigmaDetector(engine, version)
    else:
        log.warning(
            "no detector.rules_paths: only the built-in SSH failure check runs "
            "(rules/socpipe holds it as a Sigma rule, with others)"
        )
    producer = make_producer(settings.kafka)
    consumer = make_consumer(settings.kafka, settings.detector.group_id, [topics.raw])
    handler = RawRecordHandler(
        producer,
        DeadLetterWriter(producer, topics.dlq, "detect"),
        events_topic=topics.events,
        detections_topic=topics.detections,
        # The Sigma engine takes the foundation's check's place; rules/socpipe has it as a rule.
        checks=[] if sigma is not None else [FailedPasswordCheck()],
        normalizer=normalizer,
        metrics=metrics,
        sigma=sigma,
    )
    log.info("detecting from %s", topics.raw)
    StreamLoop(consumer, producer, handler, max_records=settings.detector.batch_size).run(stop)
