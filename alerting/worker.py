"""``socpipe alert``: fold soc.detections into alerts in Elasticsearch, then commit offsets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from alerting.store import AlertStore, ElasticsearchAlertStore, SourcedDetection
from socpipe.deadletter import DeadLetterWriter
from socpipe.elastic import make_elasticsearch
from socpipe.errors import RecordError
from socpipe.kafka import make_consumer, make_producer
from socpipe.records import Detection
from socpipe.settings import Settings
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)


class AlertIndexer:
    """The batch handler: decode detections, apply them to the store, dead-letter the rest."""

    def __init__(self, store: AlertStore, dlq: DeadLetterWriter) -> None:
        self.store = store
        self.dlq = dlq

    def __call__(self, records: Sequence[Any]) -> list[Any]:
        futures: list[Any] = []
        batch: list[SourcedDetection] = []
        for record in records:
            where = f"{record.topic}/{record.partition}@{record.offset}"
            try:
                detection = Detection.from_json(record.value, where=where)
            except RecordError as exc:
                futures.append(
                    self.dlq.send(
                        str(exc),
                        record.value,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                )
                continue
            batch.append(
                SourcedDetection(detection, f"{record.topic}:{record.partition}", record.offset)
            )
        if batch:
            # Raises if Elasticsearch is unreachable: the batch is then not committed.
            result = self.store.apply(batch)
            for item, reason in result.failed:
                futures.append(
                    self.dlq.send(
                        reason,
                        item.detection.to_json(),
                        topic=item.source.split(":")[0],
                        partition=int(item.source.rsplit(":", 1)[1]),
                        offset=item.offset,
                        agency=item.detection.entities.agency,
                        record_id=item.detection.id,
                    )
                )
            log.debug(
                "alerts written %d, replays skipped %d, failed %d",
                result.written,
                result.replays,
                len(result.failed),
            )
        return futures


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the alerting stage until ``stop`` is set."""
    es = make_elasticsearch(settings.elasticsearch)
    store = ElasticsearchAlertStore(
        es,
        settings.elasticsearch.index_prefix,
        settings.alerting.dedup_window_s,
        settings.elasticsearch.index_replicas,
    )
    store.ensure_ready()
    producer = make_producer(settings.kafka)
    consumer = make_consumer(
        settings.kafka, settings.alerting.group_id, [settings.kafka.topics.detections]
    )
    dlq = DeadLetterWriter(producer, settings.kafka.topics.dlq, "alert")
    loop = StreamLoop(
        consumer, producer, AlertIndexer(store, dlq), max_records=settings.alerting.batch_size
    )
    log.info("alerting from %s into %s", settings.kafka.topics.detections, store.alias)
    loop.run(stop)
