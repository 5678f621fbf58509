"""``/exceptions`` with in-memory doubles: a filter made from a simple body, previewed against
in-memory events, stored as a versioned member of the rule set, applied by rule tests and
backtests, withdrawn by a new version; and who may do it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from alerting.store import InMemoryAlertStore
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.backtest import InMemoryEventSource
from api.rulecheck import InMemoryRulePublisher
from api.rulestore import InMemoryRuleStore
from api.users import InMemoryUserStore
from socpipe.settings import load_settings
from tests.support.events import ssh_event

RULES = Path(__file__).resolve().parents[3] / "rules"
ANALYST = "analyst-token-0123456789"
AUTHOR = "author-token-0123456789"
VIEWER = "viewer-token-0123456789"
SSH_FAILURE = "0bf5816a-a6b8-4bc5-957a-c74e7ce82d3f"
SSH_BRUTE_FORCE = "43f39fb0-2ed0-4f13-9da8-241ac8cd39ee"
SCANNER_FILTER = "3c2e8f61-7d4a-4b19-9a05-6e1f2d8c7b40"
# Half past an hour that has passed (30 to 90 minutes ago): every sample event is in the past.
NOW = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)
INSIDE = ipaddress.ip_network("10.20.0.0/16")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def events() -> list[dict[str, Any]]:
    """Failures from inside (10.20.x.x, the province's own monitoring) and outside, in two
    agencies, one every 50 minutes over four days."""
    found = []
    for n in range(110):
        agency = "so-tttt" if n % 2 else "phuong-phuc-xa"
        ip = f"10.20.{n % 5}.{n}" if n % 3 == 0 else f"113.161.{n}.7"
        at = NOW - timedelta(minutes=50 * n + 1)
        found.append(ssh_event(n, at, agency=agency, host=f"{agency}-srv{n % 2}", ip=ip))
    return found


@pytest.fixture
def client(events: list[dict[str, Any]]) -> Iterator[TestClient]:
    tokens = [
        {"name": "an", "token": ANALYST, "role": "analyst"},
        {"name": "ra", "token": AUTHOR, "role": "rule_author"},
        {"name": "vw", "token": VIEWER, "role": "agency_viewer", "agency": "so-tttt"},
    ]
    settings = load_settings(
        api={"tokens": tokens},
        detector={"rules_paths": [str(RULES / "socpipe"), str(RULES / "filters")]},
    )
    app = create_app(
        settings,
        store=InMemoryAlertStore(3600),
        users=InMemoryUserStore(),
        audit=InMemoryAuditLog(),
    )
    app.state.rule_store = InMemoryRuleStore()
    app.state.rule_events = InMemoryEventSource(events)
    app.state.rule_publisher = InMemoryRulePublisher()
    with TestClient(app) as test_client:
        yield test_client


def monitoring(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rule_id": SSH_FAILURE,
        "agency": "so-tttt",
        "conditions": [{"field": "source.ip", "operator": "cidr", "values": ["10.20.0.0/16"]}],
        "reason": "the Sở TTTT's monitoring probes log in with an expired password",
        "days": 3,
    }
    return {**body, **changes}


def suppressed(events: list[dict[str, Any]], since: datetime) -> tuple[int, int]:
    """Failures since ``since``, and those of so-tttt from inside (what the exception hides)."""
    recent = [e for e in events if datetime.fromisoformat(e["@timestamp"]) >= since]
    hidden = [
        e
        for e in recent
        if e["organization"]["id"] == "so-tttt"
        and ipaddress.ip_address(e["source"]["ip"]) in INSIDE
    ]
    return len(recent), len(hidden)


def test_a_preview_counts_what_it_would_suppress_and_saves_nothing(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    answer = client.post("/exceptions", headers=auth(AUTHOR), json=monitoring(preview_only=True))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["saved"] is False and body["exception"] is None
    preview = body["preview"]
    since = datetime.fromisoformat(preview["scan"]["since"])
    total, hidden = suppressed(events, since)
    assert hidden > 0
    suppression = preview["suppression"]
    assert suppression["rule_ids"] == [SSH_FAILURE]
    assert suppression["matches_without"] == total
    assert suppression["suppressed_matches"] == hidden
    assert preview["matches"] == total - hidden
    assert suppression["suppressed_alerts"] >= 1
    hidden_ids = {e["event"]["id"] for e in events if e["source"]["ip"].startswith("10.20.")}
    assert set(suppression["suppressed_sample_event_ids"]) <= hidden_ids
    assert client.get("/exceptions", headers=auth(AUTHOR)).json()["total"] == 2  # the seeded


def test_the_filter_follows_the_projects_format(client: TestClient) -> None:
    text = client.post(
        "/exceptions", headers=auth(AUTHOR), json=monitoring(preview_only=True)
    ).json()["yaml"]
    document = yaml.safe_load(text)
    assert document["logsource"] == {"product": "linux", "service": "sshd"}
    assert document["filter"] == {
        "rules": [SSH_FAILURE],
        "exception": {"organization.id": "so-tttt", "source.ip|cidr": "10.20.0.0/16"},
        "condition": "not exception",
    }
    assert document["description"].startswith("the Sở TTTT's")


def test_a_saved_exception_is_a_versioned_filter_that_rules_apply(client: TestClient) -> None:
    made = client.post("/exceptions", headers=auth(AUTHOR), json=monitoring())
    assert made.status_code == 201, made.text
    exception = made.json()["exception"]
    assert exception["enabled"] and exception["version"] == 1 and exception["author"] == "ra"
    assert exception["agencies"] == ["so-tttt"] and exception["rule_ids"] == [SSH_FAILURE]
    rule = client.get(f"/rules/{exception['id']}", headers=auth(ANALYST)).json()
    assert rule["kind"] == "filter" and rule["yaml"] == made.json()["yaml"]
    listed = client.get(f"/exceptions?rule_id={SSH_FAILURE}", headers=auth(ANALYST)).json()
    assert [e["id"] for e in listed["data"]] == [exception["id"]]
    assert client.get("/exceptions?agency=so-tttt", headers=auth(ANALYST)).json()["total"] == 2
    # A probe of so-tttt's monitoring no longer matches the rule; the same from outside does.
    probe = (
        "<38>Nov 27 10:00:01 tttt-srv sshd[9]: Failed password for root from 10.20.1.1 port 22 ssh2"
    )
    cases = [
        {
            "name": "monitoring",
            "match": False,
            "format": "syslog",
            "raw": probe,
            "agency": "so-tttt",
        },
        {
            "name": "another agency",
            "match": True,
            "format": "syslog",
            "raw": probe,
            "agency": "so-noi-vu",
        },
    ]
    tested = client.post(
        f"/rules/{SSH_FAILURE}/test", headers=auth(ANALYST), json={"cases": cases}
    ).json()
    assert tested["failed"] == 0 and tested["filters"] == [exception["id"]]
    unfiltered = client.post(
        f"/rules/{SSH_FAILURE}/test", headers=auth(ANALYST), json={"cases": cases, "filters": False}
    ).json()
    assert [r["matched"] for r in unfiltered["results"]] == [True, True]
    backtest = client.post(f"/rules/{SSH_FAILURE}/preview?days=3", headers=auth(AUTHOR)).json()
    assert backtest["filters_applied"] == [exception["id"]]
    assert backtest["matches"] == made.json()["preview"]["matches"]
    published = client.post("/rules/publish", headers=auth(AUTHOR)).json()
    assert published["filters"] == 3


def test_deleting_disables_with_a_new_version(client: TestClient) -> None:
    made = client.post("/exceptions", headers=auth(AUTHOR), json=monitoring()).json()["exception"]
    gone = client.delete(f"/exceptions/{made['id']}", headers=auth(AUTHOR))
    assert gone.status_code == 200, gone.text
    assert gone.json()["enabled"] is False and gone.json()["version"] == 2
    history = client.get(f"/rules/{made['id']}", headers=auth(ANALYST)).json()["versions"]
    assert [(v["version"], v["enabled"]) for v in history] == [(2, False), (1, True)]
    assert (
        client.get("/exceptions?enabled=true&agency=so-tttt", headers=auth(ANALYST)).json()["total"]
        == 1
    )
    backtest = client.post(f"/rules/{SSH_FAILURE}/preview?days=3", headers=auth(AUTHOR)).json()
    assert backtest["filters_applied"] == []
    assert client.delete(f"/exceptions/{SSH_FAILURE}", headers=auth(AUTHOR)).status_code == 404
    missing = "/exceptions/00000000-0000-4000-8000-000000000000"
    assert client.delete(missing, headers=auth(AUTHOR)).status_code == 404


def test_a_global_exception_applies_to_every_agency(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    body = monitoring(agency=None, preview_only=True)
    preview = client.post("/exceptions", headers=auth(AUTHOR), json=body).json()["preview"]
    since = datetime.fromisoformat(preview["scan"]["since"])
    recent = [e for e in events if datetime.fromisoformat(e["@timestamp"]) >= since]
    inside = [e for e in recent if ipaddress.ip_address(e["source"]["ip"]) in INSIDE]
    assert preview["suppression"]["suppressed_matches"] == len(inside)


def test_wildcards_in_values_are_literal(client: TestClient) -> None:
    body = monitoring(
        conditions=[{"field": "source.ip", "operator": "startswith", "values": ["10.20.*"]}],
        preview_only=True,
    )
    answer = client.post("/exceptions", headers=auth(AUTHOR), json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["preview"]["suppression"]["suppressed_matches"] == 0
    assert "10.20.\\*" in answer.json()["yaml"]


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"agency": None, "conditions": []}, 422),  # that would be disabling the rule
        ({"conditions": [{"field": "a", "values": ["1"]}, {"field": "a", "values": ["2"]}]}, 422),
        ({"conditions": [{"field": "bad field!", "values": ["1"]}]}, 422),
        ({"conditions": [{"field": "a", "operator": "regex", "values": ["1"]}]}, 422),
        ({"conditions": [{"field": "a", "values": []}]}, 422),
        ({"reason": ""}, 422),
        ({"days": 31}, 422),
        ({"rule_id": "00000000-0000-4000-8000-000000000000"}, 404),
        ({"rule_id": SSH_BRUTE_FORCE}, 422),  # filters do not apply to correlations
        ({"rule_id": SCANNER_FILTER}, 422),
    ],
)
def test_a_bad_body_is_refused(client: TestClient, changes: dict[str, Any], status: int) -> None:
    answer = client.post("/exceptions", headers=auth(AUTHOR), json=monitoring(**changes))
    assert answer.status_code == status, answer.text


def test_a_value_the_loader_refuses_is_a_422_with_its_line(client: TestClient) -> None:
    body = monitoring(
        conditions=[{"field": "source.ip", "operator": "cidr", "values": ["10.20.0.0/99"]}]
    )
    answer = client.post("/exceptions", headers=auth(AUTHOR), json=body)
    assert answer.status_code == 422, answer.text
    problem = answer.json()["detail"][0]
    assert problem["line"] is not None and "10.20.0.0/99" in problem["message"]


def test_who_may_do_what(client: TestClient) -> None:
    assert client.get("/exceptions", headers=auth(ANALYST)).status_code == 200
    for token in (ANALYST, VIEWER):
        assert client.post("/exceptions", headers=auth(token), json=monitoring()).status_code == 403
        assert (
            client.delete(f"/exceptions/{SCANNER_FILTER}", headers=auth(token)).status_code == 403
        )
    assert client.get("/exceptions", headers=auth(VIEWER)).status_code == 403
    assert client.delete(f"/exceptions/{SCANNER_FILTER}", headers=auth(AUTHOR)).status_code == 200
    trail: InMemoryAuditLog = client.app.state.audit  # type: ignore[attr-defined]
    assert trail.entries[-1]["target"] == {"type": "exception", "id": SCANNER_FILTER}
