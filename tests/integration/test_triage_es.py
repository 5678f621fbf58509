"""Triage against the real Elasticsearch: search filters and cursor pages over a few hundred
alerts (checked against the in-memory reading of the same alerts), an analyst's change racing a
fold of new detections (both survive, whichever loses the race), the statistics aggregations,
and cases kept in ``<prefix>-cases``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch
from fastapi.testclient import TestClient

from alerting.grouping import alert_id
from alerting.queries import AlertQuery, StatsQuery
from alerting.store import ElasticsearchAlertStore, InMemoryAlertStore, SourcedDetection
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.triage import TriageChange
from api.users import InMemoryUserStore
from socpipe.elastic import make_elasticsearch
from socpipe.records import AlertStatus, Severity, utcnow
from socpipe.settings import Settings, Tier
from tests.support.triage import VIEWER_AGENCY, api_settings, auth, varied_batch, varied_detection

pytestmark = pytest.mark.elasticsearch

COUNT = 300
SOURCE = "soc.detections:0"


@pytest.fixture
def es(pipeline_settings: Settings) -> Iterator[Elasticsearch]:
    client = make_elasticsearch(pipeline_settings.elasticsearch)
    yield client
    client.close()


def _new_store(es: Elasticsearch, settings: Settings) -> ElasticsearchAlertStore:
    return ElasticsearchAlertStore(es, settings.elasticsearch.index_prefix, 3600)


def _refresh(store: ElasticsearchAlertStore) -> None:
    store.client.indices.refresh(index=f"{store.alias}-*")


@pytest.fixture
def store(es: Elasticsearch, pipeline_settings: Settings) -> ElasticsearchAlertStore:
    store = _new_store(es, pipeline_settings)
    store.ensure_ready()
    result = store.apply(varied_batch(COUNT))
    assert result.failed == [] and result.written == COUNT
    _refresh(store)
    return store


@pytest.fixture
def mirror() -> InMemoryAlertStore:
    """The same alerts in the in-memory double: the reading the real one must agree with."""
    mirror = InMemoryAlertStore(3600)
    mirror.apply(varied_batch(COUNT))
    return mirror


@pytest.fixture
def client(store: ElasticsearchAlertStore, pipeline_settings: Settings) -> TestClient:
    settings = pipeline_settings.model_copy(update={"api": api_settings().api})
    app = create_app(settings, store=store, users=InMemoryUserStore(), audit=InMemoryAuditLog())
    return TestClient(app)


QUERIES = [
    AlertQuery(limit=500),
    AlertQuery(severity=Severity.CRITICAL, limit=500),
    AlertQuery(severity=(Severity.HIGH, Severity.LOW), limit=500),
    AlertQuery(agency=VIEWER_AGENCY, limit=500),
    AlertQuery(tier=Tier.PROVINCE, limit=500),
    AlertQuery(rule_id="rule-webshell", limit=500),
    AlertQuery(tactic="lateral_movement", limit=500),
    AlertQuery(technique="T1110", limit=500),
    AlertQuery(technique="T1505.003", limit=500),
    AlertQuery(host="host-4", user="trần.thị.b", limit=500),
    AlertQuery(source_ip="10.1.0.0/16", limit=500),
    AlertQuery(source_ip="203.113.6.7", limit=500),
    AlertQuery(
        since=varied_detection(40).timestamp, until=varied_detection(90).timestamp, limit=500
    ),
    AlertQuery(text="web shell", limit=500),
    AlertQuery(text="nguyễn.văn.a", agency="so-tttt", limit=500),
    AlertQuery(status=AlertStatus.NEW, sort="count", order="asc", limit=500),
    AlertQuery(sort="severity", limit=500),
    AlertQuery(sort="first_seen", order="asc", severity=Severity.MEDIUM, limit=17),
]


@pytest.mark.parametrize("query", QUERIES)
def test_search_agrees_with_the_in_memory_reading(
    store: ElasticsearchAlertStore, mirror: InMemoryAlertStore, query: AlertQuery
) -> None:
    real, double = store.search(query), mirror.search(query)
    assert real.total == double.total > 0
    assert [a.id for a in real.alerts] == [a.id for a in double.alerts]
    assert real.next_after == double.next_after


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "count", "order": "asc"},
        {"sort": "severity"},
        {"sort": "risk_score", "order": "asc", "severity": ["high", "critical"]},
        {"agency": "xa-tan-lap", "sort": "first_seen"},
    ],
)
def test_cursor_pages_give_each_alert_once_over_hundreds(
    client: TestClient, mirror: InMemoryAlertStore, params: dict[str, Any]
) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = params | {"limit": 37} | ({"cursor": cursor} if cursor else {})
        answer = client.get("/alerts", params=query, headers=auth("analyst"))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [a["id"] for a in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    whole = client.get("/alerts", params=params | {"limit": 500}, headers=auth("analyst")).json()
    assert seen == [a["id"] for a in whole["data"]]
    assert len(seen) == len(set(seen)) == whole["total"]
    assert pages == -(-len(seen) // 37)
    expected = mirror.search(
        AlertQuery(
            agency=params.get("agency"),
            severity=tuple(Severity(s) for s in params.get("severity", ())),
            sort=params.get("sort", "last_seen"),
            order=params.get("order", "desc"),
            limit=500,
        )
    )
    assert seen == [a.id for a in expected.alerts]


def test_a_tampered_cursor_is_a_400_on_the_real_store(client: TestClient) -> None:
    cursor = client.get("/alerts?limit=5", headers=auth("analyst")).json()["next_cursor"]
    for bad in (cursor[:-3] + "abc", "x" + cursor, "eyJ9.AAAA"):
        answer = client.get("/alerts", params={"cursor": bad}, headers=auth("analyst"))
        assert answer.status_code == 400, bad


def test_an_agency_viewer_reads_only_its_agency_on_the_real_store(
    client: TestClient, mirror: InMemoryAlertStore
) -> None:
    body = client.get("/alerts?limit=500", headers=auth("viewer")).json()
    assert body["total"] == mirror.search(AlertQuery(agency=VIEWER_AGENCY)).total == COUNT // 3
    assert {a["entities"]["agency"] for a in body["data"]} == {VIEWER_AGENCY}
    foreign = mirror.search(AlertQuery(agency="so-tttt", limit=1)).alerts[0].id
    assert client.get(f"/alerts/{foreign}", headers=auth("viewer")).status_code == 404
    assert client.get(f"/alerts/{foreign}", headers=auth("analyst")).status_code == 200
    stats = client.get("/stats?interval=1d&since=2026-11-20T00:00:00Z", headers=auth("viewer"))
    assert [b["key"] for b in stats.json()["by_agency"]] == [VIEWER_AGENCY]


# --- races --------------------------------------------------------------------------------------


class _Interposer:
    """The store's client, with ``before_mget`` run once, just before the first real-time read
    of the next write: the other writer's change lands between that read and its write."""

    def __init__(self, client: Elasticsearch, before_mget: Callable[[], None]) -> None:
        self._client = client
        self._before = before_mget
        self.fired = False
        self.reads = 0

    def mget(self, **kwargs: Any) -> Any:
        self.reads += 1
        answer = self._client.mget(**kwargs)
        if not self.fired:
            self.fired = True
            self._before()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _alert_of(store: ElasticsearchAlertStore, n: int) -> str:
    """The id of the n-th alert of the mix, as every writer derives it."""
    detection = varied_detection(n)
    return alert_id(detection, store.policies.grouping(detection))


def test_a_patch_that_loses_the_race_to_a_fold_keeps_both(
    es: Elasticsearch,
    store: ElasticsearchAlertStore,
    pipeline_settings: Settings,
) -> None:
    n = 7
    alert_id = _alert_of(store, n)
    before = store.get(alert_id)
    assert before is not None
    folder = _new_store(es, pipeline_settings)
    fold = [SourcedDetection(varied_detection(n, 5), SOURCE, 10_000)]

    def concurrent_fold() -> None:
        assert folder.apply(fold).written == 1

    racing = _new_store(es, pipeline_settings)
    interposer = _Interposer(es, concurrent_fold)
    racing.client = interposer  # type: ignore[assignment]
    settings = pipeline_settings.model_copy(update={"api": api_settings().api})
    app = create_app(settings, store=racing, users=InMemoryUserStore(), audit=InMemoryAuditLog())
    body = {"status": "acknowledged", "assignee": "lan", "comment": "đang kiểm tra"}
    answer = TestClient(app).patch(f"/alerts/{alert_id}", json=body, headers=auth("analyst"))
    assert interposer.fired
    assert interposer.reads == 2  # the conflict made the analyst's change read again
    assert answer.status_code == 200, answer.text
    after = store.get(alert_id)
    assert after is not None
    assert after.count == before.count + 1  # the fold's
    assert varied_detection(n, 5).id in after.detection_ids
    assert (after.status, after.assignee) == (AlertStatus.ACKNOWLEDGED, "lan")  # the analyst's
    assert [note.text for note in after.notes] == ["đang kiểm tra"]
    assert [h.action for h in after.history] == [
        "created",
        "assigned",
        "status_changed",
        "commented",
    ]


def test_a_fold_that_loses_the_race_to_a_patch_keeps_both(
    es: Elasticsearch,
    store: ElasticsearchAlertStore,
    pipeline_settings: Settings,
) -> None:
    n = 11
    alert_id = _alert_of(store, n)
    before = store.get(alert_id)
    assert before is not None
    analyst = _new_store(es, pipeline_settings)
    change = TriageChange(by="lan", at=utcnow(), status=AlertStatus.IN_PROGRESS, comment="xem")

    def concurrent_patch() -> None:
        assert analyst.update(alert_id, change).outcome == "updated"

    folding = _new_store(es, pipeline_settings)
    interposer = _Interposer(es, concurrent_patch)
    folding.client = interposer  # type: ignore[assignment]
    result = folding.apply([SourcedDetection(varied_detection(n, 6), SOURCE, 20_000)])
    assert interposer.fired
    assert interposer.reads == 2  # the conflict made the fold read again
    assert result.failed == [] and result.written == 1
    _refresh(store)  # a fold does not wait for its change to be searchable
    after = store.get(alert_id)
    assert after is not None
    assert after.count == before.count + 1
    assert (after.status, [note.text for note in after.notes]) == (AlertStatus.IN_PROGRESS, ["xem"])


def test_patches_and_folds_in_two_threads_lose_nothing(
    es: Elasticsearch, store: ElasticsearchAlertStore, pipeline_settings: Settings
) -> None:
    n, rounds = 13, 12
    alert_id = _alert_of(store, n)
    before = store.get(alert_id)
    assert before is not None
    folder, analyst = _new_store(es, pipeline_settings), _new_store(es, pipeline_settings)
    errors: list[str] = []

    def fold() -> None:
        for k in range(rounds):
            detection = varied_detection(n, 100 + k)
            result = folder.apply([SourcedDetection(detection, SOURCE, 30_000 + k)])
            if result.written != 1:
                errors.append(f"fold {k}: {result}")

    def comment() -> None:
        for k in range(rounds):
            change = TriageChange(by="lan", at=utcnow(), comment=f"ghi chú {k}")
            outcome = analyst.update(alert_id, change).outcome
            if outcome != "updated":
                errors.append(f"comment {k}: {outcome}")

    threads = [threading.Thread(target=fold), threading.Thread(target=comment)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _refresh(store)
    after = store.get(alert_id)
    assert after is not None
    assert after.count == before.count + rounds
    assert [note.text for note in after.notes] == [f"ghi chú {k}" for k in range(rounds)]


def test_bulk_acknowledge_on_the_real_store(
    client: TestClient, store: ElasticsearchAlertStore
) -> None:
    ids = [a.id for a in store.search(AlertQuery(rule_id="rule-scan", limit=40)).alerts]
    answer = client.post(
        "/alerts/bulk",
        json={"action": "acknowledge", "ids": [*ids, "0" * 32]},
        headers=auth("analyst"),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"] == {"updated": 40, "not_found": 1}
    # wait_for: the change is searchable when the answer comes.
    page = store.search(AlertQuery(rule_id="rule-scan", status=AlertStatus.ACKNOWLEDGED, limit=500))
    assert {a.id for a in page.alerts} == set(ids)


# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        StatsQuery(
            where=AlertQuery(
                since=varied_detection(0).timestamp, until=varied_detection(COUNT).timestamp
            ),
            interval="1h",
            timezone="UTC",
            top=5,
        ),
        StatsQuery(
            where=AlertQuery(
                since=varied_detection(0).timestamp, until=varied_detection(COUNT).timestamp
            ),
            interval="1d",
            timezone="Asia/Ho_Chi_Minh",
            top=50,
        ),
        StatsQuery(
            where=AlertQuery(
                agency=VIEWER_AGENCY,
                severity=(Severity.HIGH, Severity.CRITICAL),
                since=varied_detection(30).timestamp,
                until=varied_detection(120).timestamp,
            ),
            interval="1h",
            timezone="Asia/Ho_Chi_Minh",
            top=3,
        ),
    ],
)
def test_stats_aggregations_agree_with_the_in_memory_reading(
    store: ElasticsearchAlertStore, mirror: InMemoryAlertStore, query: StatsQuery
) -> None:
    real, double = store.stats(query), mirror.stats(query)
    assert real.alerts == double.alerts > 0
    assert real.detections == double.detections
    assert real.histogram == double.histogram
    for facet in real.facets:
        assert real.facets[facet] == double.facets[facet], facet


def test_stats_of_an_empty_deployment(es: Elasticsearch, pipeline_settings: Settings) -> None:
    empty = _new_store(es, pipeline_settings)
    where = AlertQuery(since=varied_detection(0).timestamp, until=varied_detection(100).timestamp)
    stats = empty.stats(StatsQuery(where=where, interval="1h"))
    assert stats.alerts == 0 and len(stats.histogram) == 22  # 02:00 to 23:40


# --- cases --------------------------------------------------------------------------------------


def test_cases_round_trip_in_their_own_index(
    client: TestClient,
    store: ElasticsearchAlertStore,
    es: Elasticsearch,
    pipeline_settings: Settings,
) -> None:
    ids = [a.id for a in store.search(AlertQuery(rule_id="rule-rdp", limit=3)).alerts]
    created = client.post(
        "/cases",
        json={"title": "Dò RDP", "alert_ids": ids[:2], "notes": ["bắt đầu"]},
        headers=auth("analyst"),
    )
    assert created.status_code == 201, created.text
    case = created.json()
    assert case["alert_ids"] == ids[:2]
    fetched = client.get(f"/cases/{case['id']}", headers=auth("author")).json()
    assert fetched == case
    listed = client.get("/cases", params={"alert_id": ids[0]}, headers=auth("analyst")).json()
    assert [c["id"] for c in listed["data"]] == [case["id"]]
    changed = client.patch(
        f"/cases/{case['id']}",
        json={"add_alerts": [ids[2]], "remove_alerts": [ids[0]], "status": "in_progress"},
        headers=auth("lan"),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["alert_ids"] == [ids[1], ids[2]]
    assert [e["action"] for e in changed.json()["timeline"]] == [
        "created",
        "status_changed",
        "alerts_added",
        "alerts_removed",
    ]
    for marked, cases in ((ids[0], []), (ids[1], [case["id"]]), (ids[2], [case["id"]])):
        alert = client.get(f"/alerts/{marked}", headers=auth("analyst")).json()
        assert alert["cases"] == cases, marked
    closed = client.patch(f"/cases/{case['id']}", json={"status": "closed"}, headers=auth("lan"))
    assert closed.json()["status"] == "closed"
    refused = client.patch(f"/cases/{case['id']}", json={"status": "open"}, headers=auth("lan"))
    assert refused.status_code == 409
    by_status = client.get("/cases?status=closed", headers=auth("analyst")).json()
    assert by_status["total"] == 1
    # The index is strict: a field nobody mapped is refused, not added.
    index = f"{pipeline_settings.elasticsearch.index_prefix}-cases"
    with pytest.raises(BadRequestError):
        es.index(index=index, document={"id": "x", "owner": "nobody"})
