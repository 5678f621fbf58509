"""Completeness on the real Kafka and Elasticsearch: two agencies' raw records and collector
heartbeats go through the detector stage (`detectors.worker.run`, its counters published to
soc.heartbeats); the watch's aggregator writes the documents; `completeness()` gives each
agency's counts; a second aggregator reading every heartbeat again doubles nothing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from alerting.completeness import CompletenessRow, aggregate, completeness
from detectors import health, worker
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import client_options, ensure_topics, make_admin, make_producer
from socpipe.records import (
    HEARTBEAT_KIND,
    KIND_HEADER,
    RAW_KIND,
    AgencyRef,
    CollectorRef,
    RawBatch,
    RawRecord,
    SourceRef,
)
from socpipe.settings import Settings, Tier

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch]

A, B = "so-tai-chinh", "phuong-phuc-xa"
SSHD = "Nov 27 09:59:01 srv sshd[811]: "
T = TypeVar("T")


@pytest.fixture
def es(pipeline_settings: Settings) -> Iterator[Elasticsearch]:
    client = make_elasticsearch(pipeline_settings.elasticsearch)
    yield client
    with contextlib.suppress(Exception):  # the conftest drops the indices, not this template
        client.indices.delete_index_template(
            name=f"{pipeline_settings.elasticsearch.index_prefix}-completeness"
        )
    client.close()


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = 120.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not seen within {timeout_s:.0f} s: {what}")


def record(agency: str, position: int, line: str) -> RawRecord:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    return RawRecord(
        id=RawRecord.make_id(f"c-{agency}", source, "1:1", position),
        agency=AgencyRef(id=agency, tier=Tier.PROVINCE),
        collector=CollectorRef(id=f"c-{agency}", version="0.1.0"),
        host="srv",
        source=source,
        received=datetime.now(UTC),
        position=position,
        message=line,
    )


def heartbeat(agency: str, started: str, sent: int) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "kind": "collector",
            "time": started,
            "started": started,
            "interval_s": 30,
            "agency": {"id": agency, "tier": "province"},
            "collector": {"id": f"c-{agency}", "version": "0.1.0"},
            "host": "srv",
            "stopping": False,
            "sources": [{"name": "file:/var/log/auth.log", "read": sent, "sent": sent}],
        }
    )


def ship(settings: Settings) -> None:
    """What two collectors send: A restarts once; B sends a message the detector cannot read."""
    raw = settings.kafka.topics.raw
    spec = settings.kafka.topic_specs["raw"]
    admin = make_admin(settings.kafka)
    try:
        admin.create_topics(
            [
                NewTopic(f"{raw}.{agency}", spec.partitions, spec.replication_factor)
                for agency in (A, B)
            ]
        )
    finally:
        admin.close()
    first, second = "2026-11-27T02:00:00+00:00", "2026-11-27T02:30:00+00:00"
    messages: list[tuple[str, bytes, bytes]] = [
        (A, HEARTBEAT_KIND, heartbeat(A, first, 0)),
        (A, RAW_KIND, RawBatch(records=[
            record(A, 0, SSHD + "Failed password for root from 203.0.113.9 port 4242 ssh2"),
            record(A, 1, SSHD + "Accepted publickey for an from 10.0.0.5 port 5000 ssh2"),
        ]).to_json()),
        (A, HEARTBEAT_KIND, heartbeat(A, first, 2)),
        # Restarted: counters from zero again.
        (A, HEARTBEAT_KIND, heartbeat(A, second, 0)),
        (A, RAW_KIND, RawBatch(records=[
            record(A, 2, SSHD + "Accepted publickey for an from 10.0.0.5 port 5001 ssh2"),
        ]).to_json()),
        (A, HEARTBEAT_KIND, heartbeat(A, second, 1)),
        (B, HEARTBEAT_KIND, heartbeat(B, first, 0)),
        (B, RAW_KIND, RawBatch(records=[
            record(B, 0, SSHD + "Accepted publickey for an from 10.0.0.5 port 5000 ssh2"),
            record(B, 1, SSHD + "Accepted publickey for an from 10.0.0.6 port 5000 ssh2"),
            record(B, 2, "this line is no syslog at all"),
        ]).to_json()),
        # A batch whose one record breaks the schema: dead-lettered.
        (B, RAW_KIND, orjson.dumps({"v": 1, "records": [{"id": "x", "message": "?"}]})),
        (B, HEARTBEAT_KIND, heartbeat(B, first, 4)),
    ]  # fmt: skip
    producer = make_producer(settings.kafka)
    try:
        for agency, kind, value in messages:
            producer.send(
                f"{raw}.{agency}", key=f"{agency}/srv".encode(), value=value,
                headers=[(KIND_HEADER, kind)],
            ).get(timeout=30)  # fmt: skip
    finally:
        producer.close()


def committed_to_end(settings: Settings, group: str, topics: list[str]) -> bool:
    """Whether ``group`` has committed every partition of ``topics`` up to its end."""
    consumer = KafkaConsumer(**client_options(settings.kafka))
    admin = make_admin(settings.kafka)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.partitions_for_topic(topic) or set()
        ]
        ends = consumer.end_offsets(partitions)
        done = admin.list_group_offsets(group).get(group, {})
        return all(ends[p] == 0 or (p in done and done[p].offset >= ends[p]) for p in partitions)
    finally:
        consumer.close()
        admin.close()


def totals(rows: list[CompletenessRow]) -> dict[str, dict[str, int]]:
    """Per agency, every hour summed (the test may run across an hour's end)."""
    summed: dict[str, dict[str, int]] = {}
    for row in rows:
        into = summed.setdefault(row.agency, {})
        values: dict[str, Any] = row.model_dump(
            exclude={"agency", "hour", "dead_lettered_by_stage"}
        )
        values.update(values.pop("gaps"))
        for name, value in values.items():
            into[name] = into.get(name, 0) + value
    return summed


def query(
    es: Elasticsearch, settings: Settings, agency: str | None = None
) -> list[CompletenessRow]:
    prefix = settings.elasticsearch.index_prefix
    es.indices.refresh(index=f"{prefix}-completeness")
    now = datetime.now(UTC)
    return completeness(
        es, prefix, agency=agency, since=now - timedelta(hours=2), until=now + timedelta(hours=1)
    )


def test_each_agency_is_counted_once_from_collector_to_detector_even_when_read_again(
    pipeline_settings: Settings, es: Elasticsearch
) -> None:
    settings = pipeline_settings
    topics = settings.kafka.topics
    ensure_topics(settings.kafka)
    ship(settings)

    # The detector stage, as `socpipe detect` runs it; on stop it publishes its last counts.
    stop_detect = threading.Event()
    detecting = threading.Thread(target=worker.run, args=(settings, stop_detect), daemon=True)
    detecting.start()
    try:
        wait_for(
            lambda: committed_to_end(
                settings, settings.detector.group_id, [f"{topics.raw}.{A}", f"{topics.raw}.{B}"]
            ),
            "the detector through both agencies' topics",
        )
    finally:
        stop_detect.set()
        detecting.join(60)
    assert not detecting.is_alive()

    # The watch runs the aggregator until it has committed everything on soc.heartbeats.
    stop_watch = threading.Event()
    watching = threading.Thread(
        target=health.run, args=(settings, stop_watch), kwargs={"client": es}, daemon=True
    )
    watching.start()
    group = f"{settings.alerting.group_id}-completeness"
    try:
        wait_for(
            lambda: committed_to_end(settings, group, [topics.heartbeats]),
            "the aggregator through soc.heartbeats",
        )
    finally:
        stop_watch.set()
        watching.join(60)
    assert not watching.is_alive()

    rows = query(es, settings)
    assert all(row.hour.minute == 0 and row.hour.tzinfo is not None for row in rows)
    found = totals(rows)
    assert set(found) == {A, B}
    # A: 2 records, then 1 after its collector restarted; one failed password detected.
    assert {k: found[A][k] for k in ("collected", "received", "parsed", "unparsed")} == {
        "collected": 3,
        "received": 3,
        "parsed": 3,
        "unparsed": 0,
    }
    assert (found[A]["detected"], found[A]["dead_lettered"]) == (1, 0)
    # B: 3 records and one broken batch of 1 record, dead-lettered.
    assert {k: found[B][k] for k in ("collected", "received", "parsed", "unparsed")} == {
        "collected": 4,
        "received": 4,
        "parsed": 2,
        "unparsed": 1,
    }
    assert (found[B]["detected"], found[B]["dead_lettered"]) == (0, 1)
    for agency in (A, B):
        assert (found[agency]["not_received"], found[agency]["unaccounted"]) == (0, 0)
    # An agency-scoped caller sees its own rows only.
    assert {row.agency for row in query(es, settings, agency=B)} == {B}

    # Restarted without its place (a new group: every heartbeat read again): nothing doubles.
    again = settings.model_copy(
        update={"alerting": settings.alerting.model_copy(update={"group_id": "again"})}
    )
    aggregate(again, threading.Event(), es, until_end=True)
    assert totals(query(es, settings)) == found
    # And once more, with its place: nothing is read, nothing changes.
    aggregate(settings, threading.Event(), es, until_end=True)
    assert totals(query(es, settings)) == found
