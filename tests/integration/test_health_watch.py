"""The health watch on the real Kafka: a collector's heartbeats stop, a health record reaches
soc.raw; the rule set turns it into a detection."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from detectors import health
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_hunter
from socpipe.kafka import client_options, ensure_topics, make_producer
from socpipe.records import RawBatch
from socpipe.settings import Settings

pytestmark = pytest.mark.kafka

RULES = Path(__file__).resolve().parents[2] / "rules"


def test_a_collector_that_stops_beating_is_reported_and_alerts(pipeline_settings: Settings) -> None:
    topics = pipeline_settings.kafka.topics
    ensure_topics(pipeline_settings.kafka, ["raw", "heartbeats"])
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
    records = []
    deadline = time.monotonic() + 60
    try:
        while not records and time.monotonic() < deadline:
            records = [r for m in consumer for r in RawBatch.from_json(m.value).records]
    finally:
        stop.set()
        thread.join(30)
        consumer.close()
    (record,) = records
    assert record.data is not None
    assert record.data["socpipe_health"]["check"] == "collector-silent"
    assert record.agency.id == "so-noi-vu"
    assert list(watch.collectors) == ["collector/so-noi-vu/snv-srv-01"]

    # The province's rule set makes it a detection with its ATT&CK technique.
    event = Normalizer().normalize(record)
    hunter = build_hunter([RULES / "socpipe", RULES / "filters"])
    detector = SigmaDetector(hunter.engine, "test", hunter.correlations, hunter.keys)
    detections = detector.evaluate(event.event, event.document)
    titles = {d.rule.title for d in detections}
    assert "A collector went silent" in titles
    (silent,) = [d for d in detections if d.rule.title == "A collector went silent"]
    assert "t1562.006" in " ".join(silent.rule.tags).lower()
