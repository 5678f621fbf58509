"""Alerting on the real Elasticsearch (and Kafka for the dead letters): index templates and
retention, the events indexer, and the ECS view of alerts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from alerting.indices import Indices
from alerting.store import AlertQuery, ElasticsearchAlertStore, SourcedDetection
from alerting.worker import AlertIndexer, EventIndexer
from api.audit import AuditQuery, ElasticsearchAuditLog
from socpipe.deadletter import DeadLetterWriter
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import ensure_topics, make_consumer, make_producer
from socpipe.records import DeadLetter
from socpipe.settings import RetentionSettings, Settings
from tests.support.factories import make_detection

pytestmark = [pytest.mark.elasticsearch, pytest.mark.kafka]


@dataclass(frozen=True)
class Message:
    """What the handlers read of a Kafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp: int = 1_764_288_000_000
    key: bytes | None = None


@pytest.fixture
def es(pipeline_settings: Settings) -> Iterator[Elasticsearch]:
    client = make_elasticsearch(pipeline_settings.elasticsearch)
    yield client
    client.close()


@pytest.fixture
def indices(es: Elasticsearch, pipeline_settings: Settings) -> Indices:
    indices = Indices(es, pipeline_settings.elasticsearch.index_prefix)
    indices.ensure_templates()
    return indices


def _dead_letters(settings: Settings) -> list[DeadLetter]:
    consumer = make_consumer(
        settings.kafka, "read-dlq", [settings.kafka.topics.dlq], consumer_timeout_ms=4000
    )
    try:
        return [DeadLetter.from_json(message.value) for message in consumer]
    finally:
        consumer.close()


def test_retention_deletes_whole_expired_periods_only(indices: Indices, es: Elasticsearch) -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    names = {
        "events": ["2026.10.01", "2026.10.28", "2026.10.29", "2026.11.28"],
        "alerts": ["2025.10", "2025.11", "2026.11"],
        "audit": ["2025.01", "2026.11"],
    }
    for family, suffixes in names.items():
        for suffix in suffixes:
            es.indices.create(index=f"{indices.alias(family)}-{suffix}")  # type: ignore[arg-type]
    stray = f"{indices.alias('events')}-archive"  # not of the family's shape: never touched
    es.indices.create(index=stray)
    retention = RetentionSettings(events_days=30, alerts_days=365, audit_days=730)
    expected = [
        f"{indices.alias('alerts')}-2025.10",  # ended 2025-11-01, 392 days ago
        f"{indices.alias('events')}-2026.10.01",
        f"{indices.alias('events')}-2026.10.28",  # ended 2026-10-29 00:00, 31.5 days ago
    ]
    assert indices.apply_retention(retention, now, dry_run=True) == expected
    assert all(es.indices.exists(index=name) for name in expected)
    assert indices.apply_retention(retention, now) == expected
    assert not any(es.indices.exists(index=name) for name in expected)
    left = set(es.indices.get(index=f"{indices.prefix}-*"))
    assert f"{indices.alias('events')}-2026.10.29" in left and stray in left
    assert f"{indices.alias('audit')}-2025.01" in left  # audit keeps two years
    # Every index of a family is in its alias, through the template.
    aliases = es.indices.get_alias(name=indices.alias("alerts"))
    assert set(aliases) == {
        f"{indices.alias('alerts')}-2025.11",
        f"{indices.alias('alerts')}-2026.11",
    }


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-11-28T02:{n % 60:02d}:00.000Z",
        "message": f"Đăng nhập thất bại lần {n} cho nguyễn.văn.a",
        "event": {"id": f"ev-{n}", "kind": "event", "category": ["authentication"]},
        "source": {"ip": f"10.20.1.{n}", "port": 50000 + n},
        "user": {"name": "nguyễn.văn.a"},
        "organization": {"id": "so-tttt"},
        "winlog": {"event_id": "4625", "event_data": {"TargetUserName": "nguyễn.văn.a"}},
    } | extra


def test_events_are_indexed_by_id_and_typed_and_a_refused_one_is_dead_lettered(
    pipeline_settings: Settings, indices: Indices, es: Elasticsearch
) -> None:
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka)
    indexed: list[tuple[str, int]] = []
    handler = EventIndexer(
        es,
        indices,
        DeadLetterWriter(producer, settings.kafka.topics.dlq, "index"),
        on_indexed=lambda agency, count: indexed.append((agency, count)),
    )
    topic = settings.kafka.topics.events
    bad = _event(9, source={"ip": "không phải địa chỉ"})
    batch = [Message(topic, 0, n, orjson.dumps(_event(n))) for n in range(1, 4)]
    batch += [Message(topic, 0, 4, orjson.dumps(bad)), Message(topic, 0, 5, b"{not json")]
    for future in handler(batch) + handler(batch):  # the second time: a replay
        future.get(timeout=30)
    producer.close()
    es.indices.refresh(index=indices.alias("events"))
    alias = indices.alias("events")
    assert es.count(index=alias)["count"] == 3
    assert indexed == [("so-tttt", 3), ("so-tttt", 3)]
    assert list(es.indices.get(index=f"{alias}-*")) == [f"{alias}-2026.11.28"]
    # Typed as ECS says: an address range query, a keyword of a Windows field, text in Vietnamese.
    in_range = es.count(index=alias, query={"term": {"source.ip": "10.20.1.0/30"}})["count"]
    assert in_range == 3  # .1, .2, .3
    windows = {"term": {"winlog.event_data.TargetUserName": "nguyễn.văn.a"}}
    assert es.count(index=alias, query=windows)["count"] == 3
    assert es.count(index=alias, query={"match": {"message": "thất bại"}})["count"] == 3
    letters = _dead_letters(settings)
    refused = [letter for letter in letters if letter.record_id == "ev-9"]
    assert len(refused) == 2 and all(letter.stage == "index" for letter in refused)
    assert (
        "source.ip" in refused[0].reason and "Elasticsearch refused event ev-9" in refused[0].reason
    )
    assert orjson.loads(refused[0].original)["source"]["ip"] == "không phải địa chỉ"
    broken = [letter for letter in letters if letter.offset == 5]
    assert broken and "not an event" in broken[0].reason


def test_alert_documents_carry_the_ecs_view(pipeline_settings: Settings, es: Elasticsearch) -> None:
    store = ElasticsearchAlertStore(es, pipeline_settings.elasticsearch.index_prefix, 3600)
    store.ensure_ready()
    changes: list[Any] = []
    dlq = DeadLetterWriter(make_producer(pipeline_settings.kafka), "unused", "alert")
    handler = AlertIndexer(store, dlq, stop=threading.Event(), on_changes=changes.extend)
    detections = [make_detection(n) for n in range(1, 4)]
    records = [
        Message("soc.detections", 0, n, detection.to_json())
        for n, detection in enumerate(detections)
    ]
    assert handler(records) == []
    assert [(c.new, c.added, c.alert.count) for c in changes] == [(True, 3, 3)]
    assert handler(records) == [] and len(changes) == 1  # a replay changes nothing
    es.indices.refresh(index=store.alias)
    query = {
        "bool": {
            "filter": [
                {"term": {"event.kind": "alert"}},
                {"term": {"threat.technique.id": "T1110"}},
                {"term": {"organization.id": "so-tttt"}},
                {"term": {"source.ip": "173.234.31.0/24"}},
                {"range": {"@timestamp": {"gte": "2026-11-27T02:00:03Z"}}},
            ]
        }
    }
    assert es.count(index=store.alias, query=query)["count"] == 1
    (alert,) = store.search(AlertQuery()).alerts
    assert alert.count == 3 and alert.last_seen == detections[-1].timestamp


def test_an_alert_elasticsearch_refuses_is_dead_lettered_and_the_batch_goes_on(
    pipeline_settings: Settings, es: Elasticsearch
) -> None:
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    store = ElasticsearchAlertStore(es, settings.elasticsearch.index_prefix, 3600)
    store.ensure_ready()
    producer = make_producer(settings.kafka)
    handler = AlertIndexer(store, DeadLetterWriter(producer, settings.kafka.topics.dlq, "alert"))
    good = make_detection(1)
    bad = make_detection(2, dedup_key="key-bad", source_ip="not an address")
    records = [
        Message("soc.detections", 1, 10, good.to_json()),
        Message("soc.detections", 1, 11, bad.to_json()),
    ]
    for future in handler(records):
        future.get(timeout=30)
    producer.close()
    es.indices.refresh(index=store.alias)
    assert es.count(index=store.alias)["count"] == 1
    (letter,) = _dead_letters(settings)
    assert letter.stage == "alert" and letter.record_id == bad.id and letter.offset == 11
    assert "source_ip" in letter.reason


def test_an_alert_lives_in_the_monthly_index_of_its_window(
    pipeline_settings: Settings, es: Elasticsearch
) -> None:
    store = ElasticsearchAlertStore(es, pipeline_settings.elasticsearch.index_prefix, 86400)
    store.ensure_ready()
    # Day windows are aligned to the epoch: 1 December starts a window, and so an index, of its
    # own; detections two minutes apart across midnight are two alerts in two monthly indices.
    late = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    batch = [
        SourcedDetection(make_detection(1, at=late), "d:0", 1),
        SourcedDetection(make_detection(2, at=late + timedelta(minutes=2)), "d:0", 2),
    ]
    assert store.apply(batch).written == 2
    names = sorted(es.indices.get(index=f"{store.alias}-*"))
    assert names == [f"{store.alias}-2026.11", f"{store.alias}-2026.12"]


def test_a_storm_of_ten_thousand_detections_is_one_alert_in_elasticsearch(
    pipeline_settings: Settings, es: Elasticsearch
) -> None:
    store = ElasticsearchAlertStore(es, pipeline_settings.elasticsearch.index_prefix, 3600)
    store.ensure_ready()
    storm = [
        SourcedDetection(make_detection(n, at=datetime(2026, 11, 27, 2, 30, tzinfo=UTC)), "d:0", n)
        for n in range(10_000)
    ]
    new = 0
    for first in range(0, len(storm), 500):  # as the worker's batches come
        result = store.apply(storm[first : first + 500])
        assert not result.failed
        new += sum(change.new for change in result.changes)
    es.indices.refresh(index=store.alias)
    (alert,) = store.search(AlertQuery()).alerts
    assert alert.count == 10_000 and new == 1
    assert len(alert.detection_ids) == 100 and alert.detection_ids[-1] == storm[-1].detection.id


def test_past_ten_thousand_matches_the_total_is_a_floor(
    pipeline_settings: Settings, es: Elasticsearch
) -> None:
    from elasticsearch import helpers

    from alerting.grouping import Grouping, fold
    from alerting.templates import alert_document
    from socpipe.records import Severity

    store = ElasticsearchAlertStore(es, pipeline_settings.elasticsearch.index_prefix, 3600)
    store.ensure_ready()
    first = fold(None, make_detection(1), grouping=Grouping("k", 3600), source="d:0", offset=1)
    assert first is not None
    index = store.indices.index_for("alerts", first.window_start)
    documents = (
        {
            "_index": index,
            "_id": f"a{n}",
            "_source": alert_document(
                first.model_copy(
                    update={"id": f"a{n}", "severity": Severity.LOW if n % 2000 else Severity.HIGH}
                )
            ),
        }
        for n in range(10_001)
    )
    helpers.bulk(es, documents, chunk_size=2000, refresh="wait_for")
    everything = store.search(AlertQuery(limit=5))
    assert everything.total == 10_000 and not everything.total_exact
    high = store.search(AlertQuery(severity=Severity.HIGH, limit=5))
    assert high.total == 6 and high.total_exact


def test_the_api_s_audit_trail_puts_its_template_before_its_first_entry(
    es: Elasticsearch, pipeline_settings: Settings
) -> None:
    # No template yet (the alert worker, which puts them all, has not started).
    prefix = pipeline_settings.elasticsearch.index_prefix
    audit = ElasticsearchAuditLog(es, Indices(es, prefix))
    now = datetime.now(UTC)
    entry = {
        "@timestamp": now.isoformat(),
        "event": {"kind": "event", "action": "update_alert", "outcome": "success"},
        "user": {"name": "lan.nguyễn"},
    }
    audit.record(entry)
    es.indices.refresh(index=f"{prefix}-audit-*")
    (found,) = audit.search(AuditQuery(action="update_alert"))
    assert found["user"]["name"] == "lan.nguyễn"
    index = Indices(es, prefix).index_for("audit", now)
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["dynamic"] == "strict"  # the template's, not guessed from the first entry
