"""The health watch on the real Kafka: a collector's heartbeats stop, a health record reaches
soc.raw; the detect stage's handler, with the province's rule set, turns it into a detection on
soc.detections."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from detectors import health
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_hunter
from detectors.worker import RawRecordHandler
from socpipe.deadletter import DeadLetterWriter
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import client_options, ensure_topics, make_producer
from socpipe.records import Detection, RawBatch
from socpipe.settings import Settings

# The watch also runs the completeness aggregator, which writes to Elasticsearch.
pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch]

RULES = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture
def watch_settings(pipeline_settings: Settings) -> Iterator[Settings]:
    yield pipeline_settings
    es = make_elasticsearch(pipeline_settings.elasticsearch)
    with contextlib.suppress(Exception):  # the conftest drops the indices, not this template
        es.indices.delete_index_template(
            name=f"{pipeline_settings.elasticsearch.index_prefix}-completeness"
        )
    es.close()


def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every message of ``topic`` now, from its start."""
    consumer = KafkaConsumer(**client_options(settings.kafka), consumer_timeout_ms=1000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        return list(consumer)
    finally:
        consumer.close()


def test_a_collector_that_stops_beating_is_reported_and_alerts(watch_settings: Settings) -> None:
    pipeline_settings = watch_settings
    topics = pipeline_settings.kafka.topics
    ensure_topics(pipeline_settings.kafka)
    producer = make_producer(pipeline_settings.kafka)
    for n in range(3):
        beat = {
            "agency": {"id": "so-noi-vu", "tier": "province"},
            "collector": {"id": "snv-srv-01", "version": "0.1.0"},
            "host": "snv-srv-01",
            "interval_s": 0.2,
            "sources": [{"name": "file:/var/log/auth.log", "read": n}],
        }
        producer.send(
            topics.heartbeats, key=b"collector/so-noi-vu/snv-srv-01", value=orjson.dumps(beat)
        ).get(timeout=30)
    # The detectors' own status shares the topic: not a collector.
    producer.send(topics.heartbeats, key=b"detector-1", value=b'{"running": "x"}').get(timeout=30)
    producer.close()

    stop = threading.Event()
    watch = health.HealthWatch(silence_factor=3, min_silence_s=1)
    thread = threading.Thread(
        target=health.run,
        args=(pipeline_settings, stop),
        kwargs={"watch": watch, "check_every_s": 0.2},
        daemon=True,
    )
    thread.start()
    consumer = KafkaConsumer(**client_options(pipeline_settings.kafka), consumer_timeout_ms=500)
    partitions = [TopicPartition(topics.raw, p) for p in consumer.partitions_for_topic(topics.raw)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    messages: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while not messages and time.monotonic() < deadline:
            messages = list(consumer)
    finally:
        stop.set()
        thread.join(30)
        consumer.close()
    assert not thread.is_alive()
    (message,) = messages
    (record,) = RawBatch.from_json(message.value).records
    assert record.data is not None
    assert record.data["socpipe_health"]["check"] == "collector-silent"
    assert record.agency.id == "so-noi-vu"
    assert list(watch.collectors) == ["collector/so-noi-vu/snv-srv-01"]

    # Through the detect stage's handler with the province's rule set: a detection of the
    # collector_silent rule on soc.detections, with its ATT&CK technique.
    hunter = build_hunter([RULES / "socpipe", RULES / "filters"])
    detector = SigmaDetector(hunter.engine, "test", hunter.correlations, hunter.keys)
    producer = make_producer(pipeline_settings.kafka)
    handler = RawRecordHandler(
        producer,
        DeadLetterWriter(producer, topics.dlq, "detect"),
        events_topic=topics.events,
        detections_topic=topics.detections,
        correlate_topic=topics.correlate,
        checks=[],
        normalizer=Normalizer(),
        sigma=detector,
        raw_topic=topics.raw,
        heartbeats_topic=topics.heartbeats,
    )
    try:
        for future in handler([message]):
            future.get(timeout=30)
    finally:
        producer.close()
    detections = [
        Detection.from_json(m.value) for m in read_all(pipeline_settings, topics.detections)
    ]
    silent = [d for d in detections if d.rule.title == "A collector went silent"]
    assert len(silent) == 1, [d.rule.title for d in detections]
    assert silent[0].entities.agency == "so-noi-vu"
    assert silent[0].rule.id == "4e9b1f27-8c3d-4a5e-b6f0-2d7c9a1e5b84"  # collector_silent.yml
    assert "t1562.006" in " ".join(silent[0].rule.tags).lower()
    assert read_all(pipeline_settings, topics.dlq) == []
