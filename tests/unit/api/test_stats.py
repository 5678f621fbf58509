"""``GET /stats`` on the in-memory doubles: the counts per facet, the histogram, the top
entities, their agency scope, and the checks of its parameters. Expected values are computed
here from the alerts themselves."""

from __future__ import annotations

import ipaddress
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerting.queries import AlertQuery, StatsQuery, compute_stats, histogram_starts
from alerting.store import InMemoryAlertStore
from socpipe.records import Alert
from socpipe.settings import Tier
from tests.support.triage import VIEWER_AGENCY, Rig, auth, varied_batch

SINCE = "2026-11-27T00:00:00+00:00"
UNTIL = "2026-11-29T00:00:00+00:00"


@pytest.fixture
def api() -> Rig:
    store = InMemoryAlertStore(3600)
    store.apply(varied_batch(60))
    return Rig(store)


def _alerts(api: Rig) -> list[Alert]:
    store = api.store
    assert isinstance(store, InMemoryAlertStore)
    return list(store.alerts.values())


def _stats(api: Rig, who: str = "analyst", **params: Any) -> dict[str, Any]:
    answer = api.client.get(
        "/stats", params={"since": SINCE, "until": UNTIL} | params, headers=auth(who)
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _as_counts(buckets: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    return {b["key"]: (b["alerts"], b["detections"]) for b in buckets}


def _expected(alerts: list[Alert], key: Any) -> dict[str, tuple[int, int]]:
    counted: Counter[str] = Counter()
    detections: Counter[str] = Counter()
    for alert in alerts:
        keys = key(alert)
        for k in keys if isinstance(keys, list) else [keys]:
            if k is not None:
                counted[k] += 1
                detections[k] += alert.count
    return {k: (counted[k], detections[k]) for k in counted}


def test_counts_per_facet_match_the_alerts(api: Rig) -> None:
    alerts = _alerts(api)
    body = _stats(api)
    assert body["alerts"] == len(alerts) == 60
    assert body["detections"] == sum(a.count for a in alerts)
    for name, key in (
        ("by_severity", lambda a: a.severity.value),
        ("by_status", lambda a: a.status.value),
        ("by_agency", lambda a: a.entities.agency),
        ("by_tier", lambda a: a.entities.tier.value),
        ("by_rule", lambda a: a.rule.id),
        ("by_tactic", lambda a: a.rule.tactics),
    ):
        assert _as_counts(body[name]) == _expected(alerts, key), name
    titles = {b["key"]: b["label"] for b in body["by_rule"]}
    assert titles["rule-rdp"] == "RDP from abroad"
    # A bucket list is ordered by alerts, most first, then by key.
    for name in ("by_severity", "by_agency", "by_tactic", "top_hosts"):
        order = [(-b["alerts"], b["key"]) for b in body[name]]
        assert order == sorted(order), name


def test_top_entities_are_the_most_frequent_and_top_bounds_them(api: Rig) -> None:
    alerts = _alerts(api)
    body = _stats(api, top=3)
    for name, key in (
        ("top_hosts", lambda a: a.entities.host),
        ("top_users", lambda a: a.entities.user),
        ("top_source_ips", lambda a: a.entities.source_ip),
    ):
        expected = _expected(alerts, key)
        # Ties go by key, as Elasticsearch orders them: addresses by value, not as text.
        order = ipaddress.ip_address if name == "top_source_ips" else str
        ranked = sorted(expected, key=lambda k: (-expected[k][0], order(k)))[:3]
        assert [b["key"] for b in body[name]] == ranked, name
        assert all(expected[b["key"]] == (b["alerts"], b["detections"]) for b in body[name])
    assert len(_stats(api, top=100)["top_source_ips"]) == len(
        {a.entities.source_ip for a in alerts}
    )


def test_the_hourly_histogram_covers_the_range_with_empty_hours(api: Rig) -> None:
    alerts = _alerts(api)
    body = _stats(api, interval="1h")
    starts = [datetime.fromisoformat(b["start"]) for b in body["histogram"]]
    assert starts[0] == datetime(2026, 11, 27, tzinfo=UTC)
    assert starts[-1] == datetime(2026, 11, 29, tzinfo=UTC)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))
    hours = Counter(a.last_seen.replace(minute=0, second=0, microsecond=0) for a in alerts)
    assert {datetime.fromisoformat(b["start"]): b["alerts"] for b in body["histogram"]} == {
        start: hours.get(start, 0) for start in starts
    }
    assert sum(b["detections"] for b in body["histogram"]) == body["detections"]


def test_daily_buckets_start_at_midnight_in_the_asked_zone(api: Rig) -> None:
    hanoi = _stats(api, interval="1d")  # Asia/Ho_Chi_Minh by default
    assert hanoi["timezone"] == "Asia/Ho_Chi_Minh"
    assert [b["start"] for b in hanoi["histogram"]] == [
        "2026-11-26T17:00:00Z",
        "2026-11-27T17:00:00Z",
        "2026-11-28T17:00:00Z",
    ]
    utc = _stats(api, interval="1d", tz="UTC")
    assert [b["start"] for b in utc["histogram"]] == [
        "2026-11-27T00:00:00Z",
        "2026-11-28T00:00:00Z",
        "2026-11-29T00:00:00Z",
    ]
    # 60 alerts 13 minutes apart from 02:00 UTC: until 14:47 UTC, 21:47 in Hà Nội.
    assert [b["alerts"] for b in hanoi["histogram"]] == [60, 0, 0]
    assert [b["alerts"] for b in utc["histogram"]] == [60, 0, 0]


def test_since_and_until_bound_every_count(api: Rig) -> None:
    since, until = "2026-11-27T05:00:00+00:00", "2026-11-27T08:00:00+00:00"
    body = _stats(api, since=since, until=until)
    inside = [
        a
        for a in _alerts(api)
        if datetime.fromisoformat(since) <= a.last_seen <= datetime.fromisoformat(until)
    ]
    assert body["alerts"] == len(inside) > 0
    assert len(body["histogram"]) == 4
    assert sum(b["alerts"] for b in body["histogram"]) == len(inside)
    assert _as_counts(body["by_agency"]) == _expected(inside, lambda a: a.entities.agency)


def test_filters_narrow_the_counts(api: Rig) -> None:
    alerts = _alerts(api)
    body = _stats(api, severity=["critical", "high"], tier="commune")
    chosen = [
        a
        for a in alerts
        if a.severity.value in ("critical", "high") and a.entities.tier == Tier.COMMUNE
    ]
    assert body["alerts"] == len(chosen)
    acknowledged = _ids_of(api, 3)
    bulk = {"action": "acknowledge", "ids": acknowledged}
    assert api.client.post("/alerts/bulk", json=bulk, headers=auth("analyst")).status_code == 200
    assert _stats(api, status="new")["alerts"] == 57
    assert _as_counts(_stats(api)["by_status"]) == {
        "new": (57, _detections(api, "new")),
        "acknowledged": (3, _detections(api, "acknowledged")),
    }
    assert _stats(api, rule_id="rule-ssh")["alerts"] == 15


def _ids_of(api: Rig, count: int) -> list[str]:
    body = api.client.get(f"/alerts?limit={count}", headers=auth("analyst")).json()
    return [a["id"] for a in body["data"]]


def _detections(api: Rig, status: str) -> int:
    return sum(a.count for a in _alerts(api) if a.status.value == status)


def test_an_agency_viewer_counts_only_its_agency(api: Rig) -> None:
    mine = [a for a in _alerts(api) if a.entities.agency == VIEWER_AGENCY]
    body = _stats(api, who="viewer")
    assert body["alerts"] == len(mine) == 20
    assert [b["key"] for b in body["by_agency"]] == [VIEWER_AGENCY]
    assert sum(b["alerts"] for b in body["histogram"]) == len(mine)
    assert {b["key"] for b in body["top_hosts"]} <= {a.entities.host for a in mine}
    assert _stats(api, who="viewer", agency=VIEWER_AGENCY) == body
    other = api.client.get("/stats?agency=so-tttt", headers=auth("viewer"))
    assert other.status_code == 403


@pytest.mark.parametrize("who", ["admin", "analyst", "author", "viewer"])
def test_every_reader_role_reads_stats(api: Rig, who: str) -> None:
    assert api.client.get("/stats", headers=auth(who)).status_code == 200


def test_without_a_range_the_last_seven_days_per_hour(api: Rig) -> None:
    body = api.client.get("/stats", headers=auth("analyst")).json()
    since = datetime.fromisoformat(body["since"])
    until = datetime.fromisoformat(body["until"])
    assert until - since == timedelta(days=7)
    assert len(body["histogram"]) in (7 * 24, 7 * 24 + 1)
    daily = api.client.get("/stats?interval=1d", headers=auth("analyst")).json()
    span = datetime.fromisoformat(daily["until"]) - datetime.fromisoformat(daily["since"])
    assert span == timedelta(days=30)


@pytest.mark.parametrize(
    "query",
    [
        "interval=5m",
        "tz=Mars/Olympus",
        "tz=posixrules",
        "top=0",
        "top=101",
        "since=2026-11-29T00:00:00%2B00:00&until=2026-11-27T00:00:00%2B00:00",
        "since=2026-01-01T00:00:00%2B00:00&until=2026-11-27T00:00:00%2B00:00",
        "since=1900-01-01T00:00:00%2B00:00&interval=1d",
        "since=yesterday",
        "agency=Sở TTTT",
        "status=closed",
    ],
)
def test_bad_stats_parameters_are_a_422(api: Rig, query: str) -> None:
    answer = api.client.get(f"/stats?{query}", headers=auth("analyst"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_a_whole_year_per_day_fits(api: Rig) -> None:
    answer = api.client.get(
        "/stats?since=2026-01-01T00:00:00%2B00:00&until=2026-12-31T00:00:00%2B00:00&interval=1d",
        headers=auth("analyst"),
    )
    assert answer.status_code == 200
    assert len(answer.json()["histogram"]) == 365


def test_an_empty_store_gives_zero_counts_and_empty_intervals() -> None:
    empty = Rig(InMemoryAlertStore())
    body = _stats(empty)
    assert body["alerts"] == 0 and body["by_severity"] == []
    assert len(body["histogram"]) == 49
    assert {b["alerts"] for b in body["histogram"]} == {0}


def test_compute_stats_without_a_range_spans_the_data() -> None:
    store = InMemoryAlertStore()
    store.apply(varied_batch(10))
    stats = compute_stats(store.alerts.values(), StatsQuery(where=AlertQuery(), interval="1h"))
    first = min(a.last_seen for a in store.alerts.values())
    last = max(a.last_seen for a in store.alerts.values())
    assert [b.start for b in stats.histogram] == histogram_starts(first, last, "1h", "UTC")
    assert sum(b.alerts for b in stats.histogram) == 10
