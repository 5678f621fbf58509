"""Against the real broker: topics, the wire format, and commit-after-ack."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType

from socpipe.kafka import ensure_topics, make_admin, make_consumer, make_producer
from socpipe.records import RawBatch, RawRecord, SourceRef
from socpipe.settings import Settings
from socpipe.stream import StreamLoop

pytestmark = pytest.mark.kafka


def test_topics_are_created_once_with_partitions_and_retention(
    pipeline_settings: Settings,
) -> None:
    kafka = pipeline_settings.kafka
    created = ensure_topics(kafka)
    assert sorted(created) == sorted(kafka.topics.all().values())
    assert ensure_topics(kafka) == []
    admin = make_admin(kafka)
    try:
        (raw_meta,) = admin.describe_topics([kafka.topics.raw])
        assert len(raw_meta["partitions"]) == kafka.topic_specs["raw"].partitions
        configs = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, kafka.topics.rules),
                ConfigResource(ConfigResourceType.TOPIC, kafka.topics.dlq),
            ]
        )["topic"]
        assert configs[kafka.topics.rules]["cleanup.policy"]["value"] == "compact"
        retention = configs[kafka.topics.dlq]["retention.ms"]["value"]
        assert retention == str(kafka.topic_specs["dlq"].retention_ms)
    finally:
        admin.close()


def _batch(n: int) -> RawBatch:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    return RawBatch(
        records=[
            RawRecord(
                id=RawRecord.make_id("c", source, "1:1", i),
                agency={"id": "so-tttt", "tier": "province"},  # type: ignore[arg-type]
                collector={"id": "c", "version": "0"},
                host="h",
                source=source,  # type: ignore[arg-type]
                received=datetime.now(UTC),
                position=i,
                message=f"Đăng nhập thất bại lần {i} — người dùng nguyễn.văn.a",
            )
            for i in range(n)
        ]
    )


def test_vietnamese_text_survives_the_broker(pipeline_settings: Settings) -> None:
    kafka = pipeline_settings.kafka
    ensure_topics(kafka, ["raw"])
    batch = _batch(3)
    producer = make_producer(kafka)
    producer.send(kafka.topics.raw, key=b"so-tttt/h", value=batch.to_json()).get(timeout=30)
    producer.close()
    consumer = make_consumer(kafka, "roundtrip", [kafka.topics.raw], consumer_timeout_ms=20_000)
    try:
        received = next(iter(consumer))
    finally:
        consumer.close()
    assert RawBatch.from_json(received.value) == batch
    assert received.key == b"so-tttt/h"


def _drain(consumer: KafkaConsumer, want: int, timeout_s: float = 30.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def test_offsets_are_committed_only_after_the_handler_succeeded(
    pipeline_settings: Settings,
) -> None:
    kafka = pipeline_settings.kafka
    ensure_topics(kafka, ["raw", "events"])
    producer = make_producer(kafka)
    for i in range(5):
        producer.send(kafka.topics.raw, value=f"m{i}".encode())
    producer.flush()

    def failing(records: Sequence[Any]) -> list[Any]:
        raise RuntimeError("Elasticsearch is away")

    loop = StreamLoop(make_consumer(kafka, "commit-test", [kafka.topics.raw]), producer, failing)
    with pytest.raises(RuntimeError):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            loop.run_once()
    loop.consumer.close(autocommit=False)

    seen: list[bytes] = []

    def forwarding(records: Sequence[Any]) -> list[Any]:
        seen.extend(r.value for r in records)
        return [producer.send(kafka.topics.events, value=r.value) for r in records]

    loop = StreamLoop(make_consumer(kafka, "commit-test", [kafka.topics.raw]), producer, forwarding)
    deadline = time.monotonic() + 30
    while len(seen) < 5 and time.monotonic() < deadline:
        loop.run_once()
    loop.consumer.close(autocommit=False)
    assert sorted(seen) == [f"m{i}".encode() for i in range(5)]  # nothing lost by the failure

    # Committed now: the group starts after them.
    again = make_consumer(kafka, "commit-test", [kafka.topics.raw])
    try:
        assert _drain(again, 1, timeout_s=5) == []
    finally:
        again.close()
    producer.close()


def test_stream_loop_stops_on_event(pipeline_settings: Settings) -> None:
    kafka = pipeline_settings.kafka
    ensure_topics(kafka, ["raw"])
    loop = StreamLoop(
        make_consumer(kafka, "stop-test", [kafka.topics.raw]),
        make_producer(kafka),
        lambda records: [],
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
