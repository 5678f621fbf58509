"""The Elasticsearch alert store against the real server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from alerting.store import AlertQuery, ElasticsearchAlertStore, SourcedDetection
from socpipe.elastic import make_elasticsearch
from socpipe.records import Alert
from socpipe.settings import Settings
from tests.support.factories import make_detection

pytestmark = pytest.mark.elasticsearch


@pytest.fixture
def es(pipeline_settings: Settings) -> Iterator[Elasticsearch]:
    client = make_elasticsearch(pipeline_settings.elasticsearch)
    yield client
    client.close()


@pytest.fixture
def store(es: Elasticsearch, pipeline_settings: Settings) -> ElasticsearchAlertStore:
    store = ElasticsearchAlertStore(es, pipeline_settings.elasticsearch.index_prefix, 3600)
    store.ensure_ready()
    store.ensure_ready()  # idempotent
    return store


def refreshed(store: ElasticsearchAlertStore) -> ElasticsearchAlertStore:
    store.client.indices.refresh(index=f"{store.alias}-*")
    return store


def test_alerts_are_written_with_deterministic_ids_in_monthly_indices(
    store: ElasticsearchAlertStore,
) -> None:
    batch = [SourcedDetection(make_detection(n), "soc.detections:1", n) for n in range(1, 6)]
    result = store.apply(batch)
    assert result.failed == [] and result.written == 1
    page = refreshed(store).search(AlertQuery())
    assert page.total == 1
    (alert,) = page.alerts
    assert alert.count == 5
    assert alert.entities.user == "nguyễn.văn.a"
    indices = store.client.indices.get(index=f"{store.alias}-*")
    assert list(indices) == [f"{store.alias}-2026.11"]
    assert store.get(alert.id) == alert


def test_a_replayed_batch_leaves_exactly_one_alert_with_the_same_count(
    store: ElasticsearchAlertStore,
) -> None:
    batch = [SourcedDetection(make_detection(n), "soc.detections:0", n) for n in range(1, 4)]
    store.apply(batch)
    again = store.apply(batch)
    assert again.replays == 3 and again.written == 0
    page = refreshed(store).search(AlertQuery())
    assert page.total == 1 and page.alerts[0].count == 3


def test_concurrent_writers_lose_no_count(
    store: ElasticsearchAlertStore, pipeline_settings: Settings
) -> None:
    """Two stores fold into the same alert at once; optimistic concurrency keeps every count."""
    other = ElasticsearchAlertStore(
        make_elasticsearch(pipeline_settings.elasticsearch), store.prefix, 3600
    )

    failures: list[object] = []

    def write(target: ElasticsearchAlertStore, partition: int) -> None:
        for n in range(20):
            number = partition * 1000 + n
            result = target.apply([SourcedDetection(make_detection(number), f"d:{partition}", n)])
            failures.extend(result.failed)

    threads = [threading.Thread(target=write, args=(s, p)) for p, s in enumerate((store, other))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    (alert,) = refreshed(store).search(AlertQuery()).alerts
    assert alert.count == 40
    other.client.close()


def test_search_filters_and_agency_scope(store: ElasticsearchAlertStore) -> None:
    store.apply(
        [
            SourcedDetection(make_detection(1, agency="so-tttt", dedup_key="a"), "d:0", 1),
            SourcedDetection(make_detection(2, agency="phuong-phuc-xa", dedup_key="b"), "d:0", 2),
        ]
    )
    refreshed(store)
    assert store.search(AlertQuery(agency="phuong-phuc-xa")).total == 1
    assert store.search(AlertQuery(text="SSH failure")).total == 2
    assert store.search(AlertQuery(severity="high")).total == 0  # type: ignore[arg-type]


def test_a_document_the_mapping_refuses_is_reported_not_raised(
    store: ElasticsearchAlertStore,
) -> None:
    bad = make_detection(1, source_ip="not-an-ip")
    result = store.apply([SourcedDetection(bad, "d:0", 1)])
    assert result.written == 0
    ((item, reason),) = result.failed
    assert item.detection.id == bad.id
    assert "source_ip" in reason


def test_search_before_any_alert_is_empty(es: Elasticsearch, pipeline_settings: Settings) -> None:
    empty = ElasticsearchAlertStore(
        es, pipeline_settings.elasticsearch.index_prefix + "-none", 3600
    )
    assert empty.search(AlertQuery()).total == 0
    assert empty.get("nothing") is None
    assert isinstance(Alert, type)


def test_ping_answers_on_the_real_server(store: ElasticsearchAlertStore) -> None:
    assert store.ping() is True
    away = ElasticsearchAlertStore(Elasticsearch("http://127.0.0.1:9"), "x", 3600)
    assert away.ping() is False
