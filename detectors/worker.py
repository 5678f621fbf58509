"""``socpipe detect``: soc.raw → ECS events on soc.events and detections on soc.detections.

Until the Sigma engine lands, parsing covers sshd lines and one check (failed SSH password)
stands in for the rules. A raw message or record that cannot be handled goes to soc.dlq with the
reason; the worker goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer

from detectors.checks import Check, FailedPasswordCheck
from detectors.sshd import parse_sshd
from socpipe.deadletter import DeadLetterWriter
from socpipe.errors import RecordError
from socpipe.kafka import make_consumer, make_producer
from socpipe.records import RawBatch
from socpipe.settings import Settings
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)


class RawRecordHandler:
    """The batch handler: parse each raw record, run the checks, produce, dead-letter failures."""

    def __init__(
        self,
        producer: KafkaProducer,
        dlq: DeadLetterWriter,
        *,
        events_topic: str,
        detections_topic: str,
        checks: Sequence[Check],
        timezone: str,
    ) -> None:
        self.producer = producer
        self.dlq = dlq
        self.events_topic = events_topic
        self.detections_topic = detections_topic
        self.checks = list(checks)
        self.timezone = timezone
        self.events = 0
        self.detections = 0

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
                continue
            for raw in batch.records:
                try:
                    event = parse_sshd(raw, self.timezone)
                    detections = [d for check in self.checks if (d := check.evaluate(event))]
                except RecordError as exc:
                    futures.append(
                        self.dlq.send(
                            f"{where} record {raw.id} ({raw.source.path}:{raw.position}): {exc}",
                            raw.to_json(),
                            topic=message.topic,
                            partition=message.partition,
                            offset=message.offset,
                            agency=raw.agency.id,
                            record_id=raw.id,
                        )
                    )
                    continue
                key = f"{raw.agency.id}/{raw.host}".encode()
                futures.append(
                    self.producer.send(self.events_topic, key=key, value=event.to_json())
                )
                self.events += 1
                for detection in detections:
                    futures.append(
                        self.producer.send(
                            self.detections_topic,
                            key=detection.dedup_key.encode(),
                            value=detection.to_json(),
                        )
                    )
                    self.detections += 1
        return futures


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the detector stage until ``stop`` is set."""
    topics = settings.kafka.topics
    producer = make_producer(settings.kafka)
    consumer = make_consumer(settings.kafka, settings.detector.group_id, [topics.raw])
    handler = RawRecordHandler(
        producer,
        DeadLetterWriter(producer, topics.dlq, "detect"),
        events_topic=topics.events,
        detections_topic=topics.detections,
        checks=[FailedPasswordCheck()],
        timezone=settings.detector.syslog_timezone,
    )
    log.info("detecting from %s", topics.raw)
    StreamLoop(consumer, producer, handler, max_records=settings.detector.batch_size).run(stop)
