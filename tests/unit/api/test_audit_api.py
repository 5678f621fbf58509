"""The audit trail of triage: every change (and refused change) of an alert or a case is an
entry naming the caller, the route, the target and what was asked; ``GET /audit`` reads them,
for a soc_admin only, and is not itself recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.triage import Rig, auth, rig


@pytest.fixture
def api() -> Rig:
    return rig(6)


def _ids(api: Rig) -> list[str]:
    body = api.client.get("/alerts?limit=500", headers=auth("analyst")).json()
    return [a["id"] for a in body["data"]]


def _trail(api: Rig, query: str = "", who: str = "admin") -> list[dict[str, Any]]:
    answer = api.client.get(f"/audit?{query}", headers=auth(who))
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def test_an_alert_change_is_recorded_with_its_target_and_what_was_asked(api: Rig) -> None:
    alert_id = _ids(api)[0]
    body = {"status": "in_progress", "assignee": "lan", "comment": "bí mật của vụ việc"}
    assert api.client.patch(f"/alerts/{alert_id}", json=body, headers=auth("analyst")).is_success
    (entry,) = api.audit.entries
    assert entry["event"]["action"] == "update_alert"
    assert entry["event"]["outcome"] == "success"
    assert entry["user"] == {"name": "analyst", "roles": ["analyst"]}
    assert entry["target"] == {"type": "alert", "id": alert_id}
    assert entry["detail"] == {
        "status": "in_progress",
        "assignee": "lan",
        "comment_length": len(body["comment"]),
        "outcome": "updated",
    }
    # The comment's text is the alert's business, not the trail's.
    assert "bí mật" not in str(entry)
    (read,) = _trail(api)
    assert read["action"] == "update_alert" and read["user"] == "analyst"
    assert (read["target_type"], read["target_id"]) == ("alert", alert_id)
    assert read["method"] == "PATCH" and read["status_code"] == 200
    assert read["path"] == f"/alerts/{alert_id}"
    assert read["detail"]["status"] == "in_progress"


def test_a_refused_change_is_recorded_as_a_failure(api: Rig) -> None:
    alert_id = _ids(api)[0]
    api.client.patch(f"/alerts/{alert_id}", json={"status": "in_progress"}, headers=auth("lan"))
    refused = api.client.patch(
        f"/alerts/{alert_id}", json={"status": "acknowledged"}, headers=auth("lan")
    )
    assert refused.status_code == 409
    (failure,) = _trail(api, "outcome=failure")
    assert failure["status_code"] == 409 and failure["reason"] == "HTTP 409"
    assert failure["target_id"] == alert_id and failure["user"] == "lan"
    assert len(_trail(api, "outcome=success")) == 1


def test_bulk_actions_and_cases_are_recorded(api: Rig) -> None:
    ids = _ids(api)
    bulk = {"action": "resolve", "ids": ids[:2], "verdict": "duplicate", "reason": "trùng"}
    assert api.client.post("/alerts/bulk", json=bulk, headers=auth("analyst")).is_success
    case = api.client.post(
        "/cases", json={"title": "vụ việc", "alert_ids": ids[2:4]}, headers=auth("admin")
    ).json()
    patch = {"status": "closed", "notes": ["xong"]}
    assert api.client.patch(f"/cases/{case['id']}", json=patch, headers=auth("lan")).is_success
    newest_first = _trail(api)
    assert [e["action"] for e in newest_first] == ["update_case", "create_case", "bulk_alerts"]
    updated, created, bulk_entry = newest_first
    assert bulk_entry["detail"] == {
        "action": "resolve",
        "ids": ids[:2],
        "counts": {"updated": 2},
    }
    assert (created["target_type"], created["target_id"]) == ("case", case["id"])
    assert created["detail"]["alert_ids"] == ids[2:4]
    assert created["user"] == "admin" and created["roles"] == ["soc_admin"]
    assert updated["detail"] == {"status": "closed", "notes": 1}


def test_the_trail_is_filtered_by_user_action_outcome_and_time(api: Rig) -> None:
    ids = _ids(api)
    api.client.patch(f"/alerts/{ids[0]}", json={"status": "acknowledged"}, headers=auth("lan"))
    api.client.patch(f"/alerts/{ids[1]}", json={"comment": "xem"}, headers=auth("analyst"))
    api.client.post("/cases", json={"title": "t"}, headers=auth("analyst"))
    assert [e["target_id"] for e in _trail(api, "user=lan")] == [ids[0]]
    assert len(_trail(api, "action=update_alert")) == 2
    assert len(_trail(api, "action=update_alert&user=analyst")) == 1
    assert _trail(api, "outcome=failure") == []
    assert len(_trail(api, "limit=2")) == 2
    now = datetime.now(UTC)
    later = (now + timedelta(minutes=5)).isoformat()
    earlier = (now - timedelta(minutes=5)).isoformat()
    assert _trail(api, f"since={later.replace('+', '%2B')}") == []
    assert len(_trail(api, f"since={earlier.replace('+', '%2B')}")) == 3
    assert _trail(api, f"until={earlier.replace('+', '%2B')}") == []


@pytest.mark.parametrize("who", ["analyst", "author", "viewer"])
def test_only_a_soc_admin_reads_the_trail(api: Rig, who: str) -> None:
    api.client.patch(f"/alerts/{_ids(api)[0]}", json={"comment": "x"}, headers=auth("analyst"))
    assert api.client.get("/audit", headers=auth(who)).status_code == 403
    assert api.client.get("/audit").status_code == 401


def test_reading_is_not_recorded(api: Rig) -> None:
    for path in ("/alerts", "/cases", "/stats", "/audit", f"/alerts/{_ids(api)[0]}"):
        api.client.get(path, headers=auth("admin"))
    assert api.audit.entries == []


def test_the_viewer_s_forbidden_attempts_are_recorded(api: Rig) -> None:
    alert_id = _ids(api)[0]
    answer = api.client.patch(
        f"/alerts/{alert_id}", json={"status": "acknowledged"}, headers=auth("viewer")
    )
    assert answer.status_code == 403
    (entry,) = _trail(api)
    assert entry["user"] == "viewer" and entry["agency"] == "phuong-phuc-xa"
    assert entry["outcome"] == "failure" and entry["status_code"] == 403


@pytest.mark.parametrize(
    "query",
    ["outcome=maybe", "limit=0", "limit=1001", "since=now", f"user={'u' * 65}"],
)
def test_bad_audit_filters_are_a_422(api: Rig, query: str) -> None:
    assert api.client.get(f"/audit?{query}", headers=auth("admin")).status_code == 422
