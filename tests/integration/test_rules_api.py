"""``/rules`` and ``/exceptions`` on the real services: the rule store in Elasticsearch (seeded,
versioned, searched), backtests and an exception's preview over events indexed into
``<prefix>-events-<day>``, and a rule set published to ``soc.rules`` and read back there as a
detector reads it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from detectors.reload import RuleSetWatcher, rules_in
from detectors.sigma.publish import status
from socpipe.elastic import make_elasticsearch
from socpipe.settings import ApiSettings, Settings
from tests.support.events import index_events, ssh_event

pytestmark = [pytest.mark.elasticsearch, pytest.mark.kafka]

RULES = Path(__file__).resolve().parents[2] / "rules"
AUTHOR = "author-token-0123456789"
SSH_FAILURE = "0bf5816a-a6b8-4bc5-957a-c74e7ce82d3f"
SSH_BRUTE_FORCE = "43f39fb0-2ed0-4f13-9da8-241ac8cd39ee"
HEADERS = {"Authorization": f"Bearer {AUTHOR}"}
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
INSIDE = ipaddress.ip_network("10.20.0.0/16")
HOSTS = [
    ("so-tttt", "tttt-web"),
    ("so-tttt", "tttt-db"),
    ("phuong-phuc-xa", "px-srv"),
    ("so-noi-vu", "snv-app"),
]


def make_events() -> list[dict[str, Any]]:
    """300 logins over five days, four hosts of three agencies, a third from inside, one in
    five a success; and a burst of twelve failures from one address within two minutes."""
    events = []
    for n in range(300):
        agency, host = HOSTS[n % len(HOSTS)]
        ip = f"10.20.{n % 7}.{n % 250}" if n % 3 == 0 else f"113.{160 + n % 3}.{n % 250}.{n % 7}"
        at = NOW - timedelta(minutes=23 * n + 2)
        events.append(
            ssh_event(n, at, agency=agency, host=host, ip=ip, failed=n % 5 != 0, prefix="it")
        )
    burst = NOW - timedelta(hours=30)
    for k in range(12):
        at = burst + timedelta(seconds=9 * k)
        events.append(
            ssh_event(
                1000 + k,
                at,
                agency="so-noi-vu",
                host="snv-app",
                ip="45.9.1.1",
                failed=True,
                prefix="it",
            )
        )
    return events


def failures_since(events: list[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["event"]["outcome"] == "failure" and datetime.fromisoformat(e["@timestamp"]) >= since
    ]


def alerts_of(events: list[dict[str, Any]]) -> int:
    """Alerts as alerting folds SSH failures: per agency, host and hour."""
    return len(
        {
            (
                e["organization"]["id"],
                e["host"]["name"],
                int(datetime.fromisoformat(e["@timestamp"]).timestamp()) // 3600,
            )
            for e in events
        }
    )


@pytest.fixture
def settings(pipeline_settings: Settings) -> Settings:
    """The test's services, the project's rules to seed from, and a rule author's key."""
    paths = [RULES / "socpipe", RULES / "filters", RULES / "pipelines"]
    detector = pipeline_settings.detector.model_copy(update={"rules_paths": paths})
    api = ApiSettings.model_validate(
        {"tokens": [{"name": "ra", "token": AUTHOR, "role": "rule_author"}]}
    )
    return pipeline_settings.model_copy(update={"detector": detector, "api": api})


@pytest.fixture
def events(settings: Settings) -> Iterator[list[dict[str, Any]]]:
    written = make_events()
    es = make_elasticsearch(settings.elasticsearch)
    try:
        index_events(es, settings, written)
        yield written
    finally:
        es.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The whole API on the test's own indices and topics."""
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client
    client = getattr(app.state, "rules_elasticsearch", None)
    if client is not None:
        client.close()


def test_the_rule_store_in_elasticsearch(client: TestClient, settings: Settings) -> None:
    listed = client.get("/rules?limit=500", headers=HEADERS).json()
    assert listed["total"] == len(listed["data"]) == 44  # 33 rules, 9 correlations, 2 filters
    assert {r["kind"] for r in listed["data"]} == {"rule", "correlation", "filter"}
    searched = client.get("/rules?q=brute+force&kind=correlation", headers=HEADERS).json()
    assert SSH_BRUTE_FORCE in [r["id"] for r in searched["data"]]
    tactic = client.get("/rules?tactic=credential-access&level=medium", headers=HEADERS).json()
    assert SSH_FAILURE in [r["id"] for r in tactic["data"]]
    source = client.get(f"/rules/{SSH_FAILURE}", headers=HEADERS).json()["yaml"]
    changed = client.put(
        f"/rules/{SSH_FAILURE}",
        headers=HEADERS,
        json={"yaml": source.replace("level: medium", "level: high"), "comment": "louder"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["rule"]["version"] == 2
    assert client.post(f"/rules/{SSH_FAILURE}/disable", headers=HEADERS).json()["version"] == 3
    assert [
        r["id"] for r in client.get("/rules?enabled=false", headers=HEADERS).json()["data"]
    ] == [SSH_FAILURE]
    assert client.get(f"/rules/{SSH_FAILURE}/versions/1", headers=HEADERS).json()["yaml"] == source
    es = make_elasticsearch(settings.elasticsearch)
    try:
        index = f"{settings.elasticsearch.index_prefix}-rules"
        hits = es.search(index=index, query={"term": {"rule_id": SSH_FAILURE}}, sort=["version"])
        flags = [(h["_source"]["version"], h["_source"]["latest"]) for h in hits["hits"]["hits"]]
        assert flags == [(1, False), (2, False), (3, True)]
        mapping = es.indices.get_mapping(index=index)[index]["mappings"]
        assert mapping["dynamic"] == "strict"
    finally:
        es.close()
    broken = source.replace("condition: selection", "condition: selection and nope")
    refused = client.put(f"/rules/{SSH_FAILURE}", headers=HEADERS, json={"yaml": broken})
    assert refused.status_code == 422 and refused.json()["detail"][0]["line"] == 22


def test_a_backtest_counts_what_the_rule_would_have_raised(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    answer = client.post(f"/rules/{SSH_FAILURE}/preview?days=3", headers=HEADERS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    since = datetime.fromisoformat(body["scan"]["since"])
    failures = failures_since(events, since)
    assert body["matches"] == len(failures)
    assert body["alerts"] == alerts_of(failures)
    in_period = [e for e in events if datetime.fromisoformat(e["@timestamp"]) >= since]
    assert body["scan"]["events_in_period"] == body["scan"]["events_scanned"] == len(in_period)
    assert body["scan"]["capped"] is False
    written = {e["event"]["id"] for e in failures}
    assert body["sample_event_ids"] and set(body["sample_event_ids"]) <= written
    per_agency = {a["agency"]: a["matches"] for a in body["by_agency"]}
    assert per_agency["so-noi-vu"] == sum(e["organization"]["id"] == "so-noi-vu" for e in failures)


def test_a_capped_backtest_says_so(client: TestClient, events: list[dict[str, Any]]) -> None:
    body = client.post(
        f"/rules/{SSH_FAILURE}/preview?days=30&max_events=50", headers=HEADERS
    ).json()
    scan = body["scan"]
    assert (scan["events_scanned"], scan["event_cap"], scan["capped"]) == (50, 50, True)
    assert scan["events_in_period"] == len(events)
    newest = sorted(events, key=lambda e: e["@timestamp"], reverse=True)[:50]
    assert body["matches"] == sum(e["event"]["outcome"] == "failure" for e in newest)
    assert "only the newest 50" in body["note"]


def test_a_correlation_is_backtested(client: TestClient, events: list[dict[str, Any]]) -> None:
    body = client.post(f"/rules/{SSH_BRUTE_FORCE}/preview?days=3", headers=HEADERS).json()
    since = datetime.fromisoformat(body["scan"]["since"])
    # The burst is the only address with ten failures within five minutes in one agency.
    assert body["correlation"]["hits"] == 1 and body["alerts"] == 1
    assert body["correlation"]["base_matches"] == len(failures_since(events, since))
    assert {a["agency"] for a in body["by_agency"]} == {"so-noi-vu"}


def test_an_exceptions_preview_and_its_effect(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    body = {
        "rule_id": SSH_FAILURE,
        "agency": "so-tttt",
        "conditions": [{"field": "source.ip", "operator": "cidr", "values": ["10.20.0.0/16"]}],
        "reason": "the Sở TTTT's monitoring probes",
        "days": 3,
    }
    made = client.post("/exceptions", headers=HEADERS, json=body)
    assert made.status_code == 201, made.text
    preview = made.json()["preview"]
    since = datetime.fromisoformat(preview["scan"]["since"])
    failures = failures_since(events, since)
    hidden = [
        e
        for e in failures
        if e["organization"]["id"] == "so-tttt"
        and ipaddress.ip_address(e["source"]["ip"]) in INSIDE
    ]
    assert hidden
    assert preview["suppression"]["matches_without"] == len(failures)
    assert preview["suppression"]["suppressed_matches"] == len(hidden)
    kept = [e for e in failures if e not in hidden]
    assert preview["matches"] == len(kept) and preview["alerts"] == alerts_of(kept)
    assert preview["suppression"]["alerts_without"] == alerts_of(failures)
    exception_id = made.json()["exception"]["id"]
    listed = client.get(f"/exceptions?rule_id={SSH_FAILURE}", headers=HEADERS).json()
    assert [e["id"] for e in listed["data"]] == [exception_id]
    after = client.post(f"/rules/{SSH_FAILURE}/preview?days=3", headers=HEADERS).json()
    assert after["matches"] == len(kept) and after["filters_applied"] == [exception_id]
    assert client.delete(f"/exceptions/{exception_id}", headers=HEADERS).json()["version"] == 2
    restored = client.post(f"/rules/{SSH_FAILURE}/preview?days=3", headers=HEADERS).json()
    assert restored["matches"] == len(failures)


def test_the_published_set_is_what_a_detector_reads(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    client.post(f"/rules/{SSH_FAILURE}/disable", headers=HEADERS)
    refused = client.post("/rules/publish", headers=HEADERS)
    assert refused.status_code == 422  # its correlations need the disabled rule
    assert any(p["rule_id"] == SSH_BRUTE_FORCE for p in refused.json()["detail"])
    client.post(f"/rules/{SSH_FAILURE}/enable", headers=HEADERS)
    answer = client.post("/rules/publish", headers=HEADERS)
    assert answer.status_code == 200, answer.text
    published = answer.json()
    assert published["published"] and (published["rules"], published["correlations"]) == (33, 9)
    in_force = status(settings, timeout_s=30).in_force
    assert in_force is not None and in_force["version"] == published["version"]
    watcher = RuleSetWatcher(settings.kafka, unpack_dir=tmp_path / "rulesets")
    detector = watcher.initial(timeout_s=60)
    assert detector is not None and detector.version == published["version"]
    assert rules_in(detector) == published["compiled"]
