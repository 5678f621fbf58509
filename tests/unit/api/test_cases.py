"""Cases through the API, on the in-memory doubles: creation with alerts and notes, the
escalation marks on the alerts, listing, the status transitions, alerts added and removed, the
timeline, and who may do what."""

from __future__ import annotations

from typing import Any

import pytest

from api.cases import Case, CaseAlert, CaseChange, CaseRefused, CaseStatus, InMemoryCaseStore
from socpipe.records import utcnow
from tests.support.triage import VIEWER_AGENCY, Rig, auth, rig


@pytest.fixture
def api() -> Rig:
    return rig(12)


def _ids(api: Rig, query: str = "") -> list[str]:
    body = api.client.get(f"/alerts?limit=500&{query}", headers=auth("analyst")).json()
    return [a["id"] for a in body["data"]]


def _create(api: Rig, body: dict[str, Any], who: str = "analyst") -> dict[str, Any]:
    answer = api.client.post("/cases", json=body, headers=auth(who))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def _patch(api: Rig, case_id: str, body: dict[str, Any], who: str = "analyst") -> Any:
    return api.client.patch(f"/cases/{case_id}", json=body, headers=auth(who))


def _alert(api: Rig, alert_id: str) -> dict[str, Any]:
    alert: dict[str, Any] = api.client.get(f"/alerts/{alert_id}", headers=auth("admin")).json()
    return alert


def test_a_case_is_created_with_its_alerts_and_notes_and_marks_the_alerts(api: Rig) -> None:
    ids = _ids(api, "rule_id=rule-rdp")
    case = _create(
        api,
        {
            "title": "Dò RDP từ nước ngoài vào ba đơn vị",
            "alert_ids": ids,
            "notes": ["Cùng dải địa chỉ 203.113.x.x"],
        },
    )
    assert case["status"] == "open" and case["created_by"] == "analyst"
    assert case["alert_ids"] == ids
    assert case["agencies"] == sorted({"so-tttt", "phuong-phuc-xa", "xa-tan-lap"})
    assert [n["text"] for n in case["notes"]] == ["Cùng dải địa chỉ 203.113.x.x"]
    assert [e["action"] for e in case["timeline"]] == ["created"]
    assert case["timeline"][0]["detail"]["alert_ids"] == ids
    for alert_id in ids:
        alert = _alert(api, alert_id)
        assert alert["cases"] == [case["id"]]
        last = alert["history"][-1]
        assert (last["action"], last["by"]) == ("escalated", "analyst")
        assert last["detail"] == {"case": case["id"], "title": case["title"]}
    assert api.client.get(f"/cases/{case['id']}", headers=auth("author")).json() == case


def test_a_case_may_start_without_alerts(api: Rig) -> None:
    case = _create(api, {"title": "Theo dõi chiến dịch lừa đảo"})
    assert case["alert_ids"] == [] and case["agencies"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "t", "alert_ids": ["bad id!"]},
        {"title": "t", "alert_ids": ["a"] * 501},
        {"title": "t", "notes": [""]},
        {"title": "t", "owner": "lan"},
    ],
)
def test_a_bad_case_is_a_422(api: Rig, body: dict[str, Any]) -> None:
    assert api.client.post("/cases", json=body, headers=auth("analyst")).status_code == 422


def test_a_case_of_an_unknown_alert_is_a_422_and_nothing_is_kept(api: Rig) -> None:
    answer = api.client.post(
        "/cases", json={"title": "t", "alert_ids": [_ids(api)[0], "f" * 32]}, headers=auth("admin")
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "alert_ids"]
    assert "f" * 32 in answer.json()["detail"][0]["msg"]
    assert api.cases.cases == {}
    assert _alert(api, _ids(api)[0])["cases"] == []


def test_cases_are_listed_newest_change_first_and_filtered(api: Rig) -> None:
    ids = _ids(api)
    first = _create(api, {"title": "một", "alert_ids": ids[:2]})
    second = _create(api, {"title": "hai", "alert_ids": ids[1:3]})
    assert _patch(api, first["id"], {"status": "in_progress"}).status_code == 200

    def listed(query: str = "") -> list[str]:
        answer = api.client.get(f"/cases?{query}", headers=auth("analyst"))
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["data"]]

    assert listed() == [first["id"], second["id"]]
    assert listed("status=open") == [second["id"]]
    assert listed("status=in_progress") == [first["id"]]
    assert listed(f"alert_id={ids[1]}") == [first["id"], second["id"]]
    assert listed(f"alert_id={ids[0]}") == [first["id"]]
    assert listed("limit=1") == [first["id"]]
    assert api.client.get("/cases?limit=1", headers=auth("analyst")).json()["total"] == 2
    agency = _alert(api, ids[2])["entities"]["agency"]
    assert listed(f"agency={agency}") == [second["id"]]
    assert api.client.get("/cases?status=done", headers=auth("analyst")).status_code == 422


def test_status_transitions_of_a_case(api: Rig) -> None:
    case = _create(api, {"title": "t"})
    for status, code in (
        ("in_progress", 200),
        ("open", 409),
        ("closed", 200),
        ("open", 409),
        ("in_progress", 200),
        ("closed", 200),
    ):
        answer = _patch(api, case["id"], {"status": status})
        assert answer.status_code == code, (status, answer.text)
    body = api.client.get(f"/cases/{case['id']}", headers=auth("analyst")).json()
    changes = [
        (e["detail"]["from"], e["detail"]["to"])
        for e in body["timeline"]
        if e["action"] == "status_changed"
    ]
    assert changes == [
        ("open", "in_progress"),
        ("in_progress", "closed"),
        ("closed", "in_progress"),
        ("in_progress", "closed"),
    ]
    assert body["closed_at"] is not None


def test_an_open_case_may_close_at_once_and_reopens_only_to_in_progress(api: Rig) -> None:
    case = _create(api, {"title": "t"})
    assert _patch(api, case["id"], {"status": "closed"}).json()["status"] == "closed"
    refused = _patch(api, case["id"], {"status": "open"})
    assert refused.status_code == 409
    assert "in_progress" in refused.json()["detail"]
    reopened = _patch(api, case["id"], {"status": "in_progress"}).json()
    assert reopened["status"] == "in_progress" and reopened["closed_at"] is None


def test_alerts_are_added_and_removed_with_timeline_and_marks(api: Rig) -> None:
    ids = _ids(api)
    case = _create(api, {"title": "t", "alert_ids": ids[:2]})
    answer = _patch(
        api,
        case["id"],
        {"add_alerts": [ids[2], ids[0]], "remove_alerts": [ids[1]], "notes": ["gộp thêm"]},
        who="lan",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["alert_ids"] == [ids[0], ids[2]]
    actions = [(e["action"], e["by"], e["detail"]) for e in body["timeline"][1:]]
    assert actions == [
        ("alerts_added", "lan", {"ids": [ids[2]]}),
        ("alerts_removed", "lan", {"ids": [ids[1]]}),
        ("note_added", "lan", {"length": len("gộp thêm")}),
    ]
    assert [n["by"] for n in body["notes"]] == ["lan"]
    assert _alert(api, ids[2])["cases"] == [case["id"]]
    assert _alert(api, ids[2])["history"][-1]["action"] == "escalated"
    removed = _alert(api, ids[1])
    assert removed["cases"] == []
    assert removed["history"][-1]["action"] == "removed_from_case"
    assert _alert(api, ids[0])["cases"] == [case["id"]]
    # Adding what is there and removing what is not change nothing.
    same = _patch(api, case["id"], {"add_alerts": [ids[0]], "remove_alerts": [ids[5]]}).json()
    assert same["timeline"] == body["timeline"]


def test_an_alert_may_be_in_several_cases(api: Rig) -> None:
    alert_id = _ids(api)[0]
    one = _create(api, {"title": "một", "alert_ids": [alert_id]})
    two = _create(api, {"title": "hai", "alert_ids": [alert_id]})
    assert _alert(api, alert_id)["cases"] == [one["id"], two["id"]]
    _patch(api, one["id"], {"remove_alerts": [alert_id]})
    assert _alert(api, alert_id)["cases"] == [two["id"]]


def test_the_alerts_of_a_closed_case_change_only_with_a_reopening(api: Rig) -> None:
    ids = _ids(api)
    case = _create(api, {"title": "t", "alert_ids": ids[:1]})
    _patch(api, case["id"], {"status": "closed"})
    refused = _patch(api, case["id"], {"add_alerts": [ids[1]]})
    assert refused.status_code == 409 and "reopen" in refused.json()["detail"]
    assert _alert(api, ids[1])["cases"] == []
    noted = _patch(api, case["id"], {"notes": ["ghi chú sau khi đóng"]})
    assert noted.status_code == 200
    both = _patch(api, case["id"], {"status": "in_progress", "add_alerts": [ids[1]]})
    assert both.status_code == 200
    assert both.json()["alert_ids"] == ids[:2]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"notes": []},
        {"status": "archived"},
        {"add_alerts": ["a"], "remove_alerts": ["a"]},
        {"title": ""},
        {"priority": "high"},
    ],
)
def test_a_bad_case_patch_is_a_422(api: Rig, body: dict[str, Any]) -> None:
    case = _create(api, {"title": "t"})
    assert _patch(api, case["id"], body).status_code == 422


def test_adding_an_unknown_alert_is_a_422(api: Rig) -> None:
    case = _create(api, {"title": "t"})
    answer = _patch(api, case["id"], {"add_alerts": ["f" * 32]})
    assert answer.status_code == 422
    assert api.cases.cases[case["id"]].alerts == []


def test_an_unknown_case_is_a_404(api: Rig) -> None:
    assert api.client.get("/cases/nope", headers=auth("analyst")).status_code == 404
    assert _patch(api, "nope", {"title": "x"}).status_code == 404
    assert api.client.get("/cases/bad id!", headers=auth("analyst")).status_code == 422


def test_who_may_read_and_write_cases(api: Rig) -> None:
    case = _create(api, {"title": "t", "alert_ids": _ids(api, f"agency={VIEWER_AGENCY}")[:1]})
    for who in ("admin", "analyst", "author"):
        assert api.client.get("/cases", headers=auth(who)).status_code == 200
        assert api.client.get(f"/cases/{case['id']}", headers=auth(who)).status_code == 200
    # An agency viewer has no case permission at all, not even for its own agency's cases.
    assert api.client.get("/cases", headers=auth("viewer")).status_code == 403
    assert api.client.get(f"/cases/{case['id']}", headers=auth("viewer")).status_code == 403
    for who in ("author", "viewer"):
        assert api.client.post("/cases", json={"title": "t"}, headers=auth(who)).status_code == 403
        assert _patch(api, case["id"], {"title": "x"}, who=who).status_code == 403
    assert _create(api, {"title": "của admin"}, who="admin")["created_by"] == "admin"


def test_a_case_change_is_pure_and_refuses_what_the_transitions_forbid() -> None:
    store = InMemoryCaseStore()
    now = utcnow()
    case = store.create(Case(id="c1", title="t", created_at=now, created_by="an", updated_at=now))
    change = CaseChange(by="an", at=now, add=(CaseAlert(id="a1", agency="so-tttt"),))
    once = change(case)
    assert change(case) == once and case.alerts == []
    assert change(once) is once
    with pytest.raises(CaseRefused):
        CaseChange(by="an", at=now, status=CaseStatus.OPEN)(
            once.model_copy(update={"status": CaseStatus.CLOSED})
        )
