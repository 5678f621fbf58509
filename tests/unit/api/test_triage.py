"""Searching and triaging alerts through the API, on the in-memory doubles: filters, sorts,
cursor pages, status transitions, assignment, comments, history, bulk actions, and the agency
scope of an agency viewer."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from alerting.store import InMemoryAlertStore, SourcedDetection
from socpipe.records import AlertStatus
from tests.support.triage import (
    VIEWER_AGENCY,
    Rig,
    auth,
    rig,
    varied_batch,
    varied_detection,
)


@pytest.fixture
def api() -> Rig:
    return rig(24)


def _all(api: Rig, path: str, who: str = "analyst") -> list[dict[str, Any]]:
    answer = api.client.get(path, headers=auth(who))
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def _first_id(api: Rig, **filters: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return str(_all(api, f"/alerts?{query}")[0]["id"])


def _patch(api: Rig, alert_id: str, body: dict[str, Any], who: str = "analyst") -> Any:
    return api.client.patch(f"/alerts/{alert_id}", json=body, headers=auth(who))


# --- search -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("severity=high", lambda a: a["severity"] == "high"),
        ("severity=high&severity=critical", lambda a: a["severity"] in ("high", "critical")),
        ("agency=xa-tan-lap", lambda a: a["entities"]["agency"] == "xa-tan-lap"),
        ("tier=province", lambda a: a["entities"]["tier"] == "province"),
        ("rule_id=rule-rdp", lambda a: a["rule"]["id"] == "rule-rdp"),
        ("tactic=lateral_movement", lambda a: "lateral_movement" in a["rule"]["tactics"]),
        ("tactic=lateral-movement", lambda a: "lateral_movement" in a["rule"]["tactics"]),
        ("technique=T1110", lambda a: a["rule"]["techniques"] == ["T1110.001"]),
        ("technique=t1505.003", lambda a: a["rule"]["techniques"] == ["T1505.003"]),
        ("host=host-3", lambda a: a["entities"]["host"] == "host-3"),
        ("user=trần.thị.b", lambda a: a["entities"]["user"] == "trần.thị.b"),
        ("source_ip=10.1.1.22", lambda a: a["entities"]["source_ip"] == "10.1.1.22"),
        (
            "source_ip=10.0.0.0/15",
            lambda a: (
                ipaddress.ip_address(a["entities"]["source_ip"])
                in ipaddress.ip_network("10.0.0.0/15")
            ),
        ),
        ("since=2026-11-27T04:00:00%2B00:00", lambda a: a["last_seen"] >= "2026-11-27T04:00"),
        ("until=2026-11-27T11:00:00%2B07:00", lambda a: a["last_seen"] <= "2026-11-27T04:00"),
        ("q=shell upload", lambda a: a["rule"]["title"] == "Web shell upload"),
        ("q=NGUYỄN", lambda a: a["entities"]["user"] == "nguyễn.văn.a"),
        ("status=new", lambda a: a["status"] == "new"),
    ],
)
def test_each_filter_selects_exactly_the_matching_alerts(api: Rig, query: str, check: Any) -> None:
    every = _all(api, "/alerts?limit=500")
    chosen = _all(api, f"/alerts?limit=500&{query}")
    assert chosen, query
    assert [a["id"] for a in chosen] == [a["id"] for a in every if check(a)]


def test_filters_combine_and_total_counts_every_match(api: Rig) -> None:
    body = api.client.get(
        "/alerts?agency=so-tttt&severity=medium&limit=1", headers=auth("analyst")
    ).json()
    every = _all(api, "/alerts?limit=500")
    expected = [
        a for a in every if a["entities"]["agency"] == "so-tttt" and a["severity"] == "medium"
    ]
    assert body["total"] == len(expected) > 1
    assert [a["id"] for a in body["data"]] == [expected[0]["id"]]


@pytest.mark.parametrize(
    ("sort", "value"),
    [
        ("last_seen", lambda a: a["last_seen"]),
        ("first_seen", lambda a: a["first_seen"]),
        ("risk_score", lambda a: a["risk_score"]),
        ("severity", lambda a: a["risk_score"]),  # the factories' risk follows the severity
        ("count", lambda a: a["count"]),
    ],
)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorts_in_either_order_with_the_id_breaking_ties(
    api: Rig, sort: str, value: Any, order: str
) -> None:
    got = _all(api, f"/alerts?limit=500&sort={sort}&order={order}")
    expected = sorted(got, key=lambda a: a["id"])
    expected.sort(key=value, reverse=order == "desc")
    assert [a["id"] for a in got] == [a["id"] for a in expected]


@pytest.mark.parametrize(
    "query",
    [
        "sort=last_seen",
        "sort=count&order=asc",
        "sort=severity&order=desc",
        "agency=so-tttt&sort=first_seen&order=asc",
    ],
)
@pytest.mark.parametrize("limit", [1, 5, 7, 24, 30])
def test_cursor_pages_give_every_alert_exactly_once_in_order(
    api: Rig, query: str, limit: int
) -> None:
    whole = [a["id"] for a in _all(api, f"/alerts?limit=500&{query}")]
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        path = f"/alerts?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        answer = api.client.get(path, headers=auth("analyst"))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total"] == len(whole)
        seen += [a["id"] for a in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == whole


def _cursor(api: Rig, query: str = "") -> str:
    body = api.client.get(f"/alerts?limit=3&{query}", headers=auth("analyst")).json()
    return str(body["next_cursor"])


def _tampered(cursor: str) -> str:
    head, tail = cursor.split(".")
    payload = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    altered = payload.replace(b'"k":[', b'"k":[1')
    return base64.urlsafe_b64encode(altered).rstrip(b"=").decode() + "." + tail


@pytest.mark.parametrize(
    ("make", "query", "message"),
    [
        (_tampered, "", "altered"),
        (lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"), "", "altered"),
        (lambda c: "not-a-cursor", "", "signature"),
        (lambda c: "!!!.???", "", "base64"),
        (lambda c: c, "agency=so-tttt", "other filters"),
        (lambda c: c, "sort=count", "another sort"),
        (lambda c: c, "order=asc", "another sort"),
    ],
)
def test_a_bad_cursor_is_a_400_that_says_why(api: Rig, make: Any, query: str, message: str) -> None:
    cursor = make(_cursor(api))
    params = dict(part.split("=") for part in f"limit=3&{query}".strip("&").split("&"))
    answer = api.client.get("/alerts", params=params | {"cursor": cursor}, headers=auth("analyst"))
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["detail"]


def test_a_cursor_of_the_viewer_scope_is_not_one_of_the_analyst_scope(api: Rig) -> None:
    viewer = api.client.get("/alerts?limit=2", headers=auth("viewer")).json()["next_cursor"]
    answer = api.client.get(
        "/alerts", params={"limit": 2, "cursor": viewer}, headers=auth("analyst")
    )
    assert answer.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "source_ip=10.0.0.999",
        "source_ip=not-an-ip",
        "technique=X1110",
        "tactic=Credential Access",
        "since=0.5",
        "since=2026-11-27T04:00:00",  # no offset
        "until=9999-01-01T00:00:00%2B00:00",
        "sort=title",
        "order=up",
        "severity=fatal",
        "tier=district",
        "agency=Bad Agency",
        "limit=501",
        f"q={'x' * 201}",
        "since=2026-11-28T00:00:00%2B00:00&until=2026-11-27T00:00:00%2B00:00",
    ],
)
def test_bad_search_input_is_a_422_that_names_it(api: Rig, query: str) -> None:
    answer = api.client.get(f"/alerts?{query}", headers=auth("analyst"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


# --- transitions --------------------------------------------------------------------------------


def test_an_alert_walks_the_whole_triage_and_each_step_is_in_its_history(api: Rig) -> None:
    alert_id = _first_id(api, severity="critical")
    steps = [
        {"status": "acknowledged"},
        {"status": "in_progress", "assignee": "lan"},
        {"comment": "Đã chặn địa chỉ 203.113.6.23 trên tường lửa."},
        {"status": "resolved", "verdict": "true_positive", "reason": "tấn công thật, đã xử lý"},
    ]
    for step in steps:
        answer = _patch(api, alert_id, step)
        assert answer.status_code == 200, answer.text
    alert = api.client.get(f"/alerts/{alert_id}", headers=auth("admin")).json()
    assert alert["status"] == "resolved" and alert["verdict"] == "true_positive"
    assert alert["assignee"] == "lan"
    assert [n["text"] for n in alert["notes"]] == [steps[2]["comment"]]
    assert alert["notes"][0]["by"] == "analyst"
    actions = [(h["action"], h["by"]) for h in alert["history"]]
    assert actions == [
        ("created", "socpipe"),
        ("status_changed", "analyst"),
        ("assigned", "analyst"),
        ("status_changed", "analyst"),
        ("commented", "analyst"),
        ("status_changed", "analyst"),
    ]
    last = alert["history"][-1]["detail"]
    assert last == {
        "from": "in_progress",
        "to": "resolved",
        "verdict": "true_positive",
        "reason": "tấn công thật, đã xử lý",
    }


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        (["in_progress"], "acknowledged"),
        (["acknowledged"], "new"),
        (["in_progress"], "new"),
        (["resolved"], "resolved"),
        (["resolved"], "acknowledged"),
        (["resolved"], "false_positive"),
        (["false_positive"], "resolved"),
        (["false_positive"], "new"),
    ],
)
def test_forbidden_transitions_are_a_409_that_says_what_is_allowed(
    api: Rig, path: list[str], refused: str
) -> None:
    alert_id = _first_id(api)
    for step in path:
        body: dict[str, Any] = {"status": step}
        if step == "resolved":
            body |= {"verdict": "benign_positive", "reason": "quản trị viên kiểm thử"}
        if step == "false_positive":
            body |= {"verdict": "false_positive", "reason": "luật sai"}
        assert _patch(api, alert_id, body).status_code == 200
    before = api.client.get(f"/alerts/{alert_id}", headers=auth("analyst")).json()
    body = {"status": refused}
    if refused in ("resolved", "false_positive"):
        verdict = "false_positive" if refused == "false_positive" else "true_positive"
        body |= {"verdict": verdict, "reason": "lại"}
    answer = _patch(api, alert_id, body)
    assert answer.status_code == 409, answer.text
    assert "may become" in answer.json()["detail"]
    after = api.client.get(f"/alerts/{alert_id}", headers=auth("analyst")).json()
    assert after == before


@pytest.mark.parametrize(
    "body",
    [
        {"status": "resolved"},
        {"status": "resolved", "verdict": "true_positive"},
        {"status": "resolved", "reason": "done"},
        {"status": "resolved", "verdict": "true_positive", "reason": "   "},
        {"status": "false_positive", "reason": "rule too broad"},
        {"status": "false_positive", "verdict": "true_positive", "reason": "contradiction"},
        {"status": "resolved", "verdict": "false_positive", "reason": "use false_positive"},
        {"status": "in_progress", "verdict": "true_positive"},
        {"verdict": "true_positive", "reason": "verdict alone"},
        {},
        {"status": "closed"},
        {"assignee": "bad name with spaces"},
        {"comment": ""},
        {"comment": "x" * 4001},
        {"status": "acknowledged", "color": "red"},
    ],
)
def test_an_incomplete_or_contradictory_patch_is_a_422(api: Rig, body: dict[str, Any]) -> None:
    answer = _patch(api, _first_id(api), body)
    assert answer.status_code == 422, answer.text


def test_reopening_needs_a_reason_goes_to_in_progress_and_clears_the_verdict(api: Rig) -> None:
    alert_id = _first_id(api)
    closing = {"status": "false_positive", "verdict": "false_positive", "reason": "luật quá rộng"}
    assert _patch(api, alert_id, closing).status_code == 200
    refused = _patch(api, alert_id, {"status": "in_progress"})
    assert refused.status_code == 409 and "reason" in refused.json()["detail"]
    reopened = _patch(api, alert_id, {"status": "in_progress", "reason": "lại xuất hiện"})
    assert reopened.status_code == 200
    body = reopened.json()
    assert body["status"] == "in_progress" and body["verdict"] is None
    assert body["history"][-1]["detail"] == {
        "from": "false_positive",
        "to": "in_progress",
        "previous_verdict": "false_positive",
        "reason": "lại xuất hiện",
    }


def test_repeating_the_status_of_an_open_alert_changes_nothing(api: Rig) -> None:
    alert_id = _first_id(api)
    first = _patch(api, alert_id, {"status": "acknowledged"}).json()
    again = _patch(api, alert_id, {"status": "acknowledged"})
    assert again.status_code == 200
    assert again.json()["history"] == first["history"]


def test_assign_then_unassign_each_leaves_an_entry(api: Rig) -> None:
    alert_id = _first_id(api)
    assert _patch(api, alert_id, {"assignee": "lan"}).json()["assignee"] == "lan"
    body = _patch(api, alert_id, {"assignee": None}, who="lan").json()
    assert body["assignee"] is None
    assert [(h["action"], h["by"], h["detail"]) for h in body["history"][1:]] == [
        ("assigned", "analyst", {"from": None, "to": "lan"}),
        ("unassigned", "lan", {"from": "lan", "to": None}),
    ]


def test_a_missing_alert_is_a_404(api: Rig) -> None:
    answer = _patch(api, "0" * 32, {"status": "acknowledged"})
    assert answer.status_code == 404


def test_a_fold_after_triage_keeps_status_assignee_notes_and_history(api: Rig) -> None:
    n = 5
    alert_id = _first_id(api, host=f"host-{n % 7}", rule_id="rule-webshell")
    body = {"status": "in_progress", "assignee": "lan", "comment": "đang xem"}
    assert _patch(api, alert_id, body).status_code == 200
    before = api.client.get(f"/alerts/{alert_id}", headers=auth("analyst")).json()
    result = api.store.apply([SourcedDetection(varied_detection(n, 9), "soc.detections:0", 999)])
    assert result.written == 1
    after = api.client.get(f"/alerts/{alert_id}", headers=auth("analyst")).json()
    assert after["count"] == before["count"] + 1
    for kept in ("status", "assignee", "notes", "history", "verdict"):
        assert after[kept] == before[kept], kept


# --- bulk ---------------------------------------------------------------------------------------


def test_bulk_acknowledge_reports_each_alert(api: Rig) -> None:
    ids = [a["id"] for a in _all(api, "/alerts?limit=4")]
    assert _patch(api, ids[0], {"status": "in_progress"}).status_code == 200
    assert _patch(api, ids[1], {"status": "acknowledged"}).status_code == 200
    answer = api.client.post(
        "/alerts/bulk",
        json={"action": "acknowledge", "ids": [*ids, "f" * 32, ids[2]]},
        headers=auth("analyst"),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    outcomes = [(r["id"], r["outcome"]) for r in body["results"]]
    assert outcomes == [
        (ids[0], "refused"),
        (ids[1], "unchanged"),
        (ids[2], "updated"),
        (ids[3], "updated"),
        ("f" * 32, "not_found"),
    ]
    assert "may become" in body["results"][0]["detail"]
    assert body["counts"] == {"refused": 1, "unchanged": 1, "updated": 2, "not_found": 1}
    statuses = {a["id"]: a["status"] for a in _all(api, "/alerts?limit=500")}
    assert [statuses[i] for i in ids] == ["in_progress", "acknowledged"] + ["acknowledged"] * 2


def test_bulk_resolve_assign_and_comment(api: Rig) -> None:
    ids = [a["id"] for a in _all(api, "/alerts?limit=6&rule_id=rule-scan")]
    for body in (
        {"action": "assign", "ids": ids, "assignee": "lan"},
        {"action": "comment", "ids": ids, "text": "quét cổng từ mạng nội bộ"},
        {"action": "resolve", "ids": ids[:3], "verdict": "benign_positive", "reason": "kiểm thử"},
        {"action": "resolve", "ids": ids[3:], "verdict": "false_positive", "reason": "luật sai"},
    ):
        answer = api.client.post("/alerts/bulk", json=body, headers=auth("lan"))
        assert answer.status_code == 200, answer.text
        assert {r["outcome"] for r in answer.json()["results"]} == {"updated"}
    for n, alert_id in enumerate(ids):
        alert = api.client.get(f"/alerts/{alert_id}", headers=auth("analyst")).json()
        assert alert["assignee"] == "lan"
        assert [note["text"] for note in alert["notes"]] == ["quét cổng từ mạng nội bộ"]
        assert alert["status"] == ("resolved" if n < 3 else "false_positive")
        assert alert["verdict"] == ("benign_positive" if n < 3 else "false_positive")
        assert alert["history"][-1]["by"] == "lan"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "acknowledge", "ids": []},
        {"action": "acknowledge", "ids": ["a"] * 501},
        {"action": "close", "ids": ["a"]},
        {"action": "resolve", "ids": ["a"], "verdict": "true_positive"},
        {"action": "resolve", "ids": ["a"], "reason": "no verdict"},
        {"action": "comment", "ids": ["a"]},
        {"action": "assign", "ids": ["a"]},
        {"ids": ["a"]},
        {"action": "acknowledge", "ids": ["bad id!"]},
    ],
)
def test_a_bad_bulk_request_is_a_422(api: Rig, body: dict[str, Any]) -> None:
    answer = api.client.post("/alerts/bulk", json=body, headers=auth("analyst"))
    assert answer.status_code == 422, answer.text


# --- roles and the agency scope -----------------------------------------------------------------


def test_an_agency_viewer_reads_only_its_agency_everywhere(api: Rig) -> None:
    mine = _all(api, "/alerts?limit=500", who="viewer")
    assert mine and {a["entities"]["agency"] for a in mine} == {VIEWER_AGENCY}
    assert len(mine) == len(_all(api, f"/alerts?limit=500&agency={VIEWER_AGENCY}"))
    assert len(_all(api, f"/alerts?limit=500&agency={VIEWER_AGENCY}", who="viewer")) == len(mine)
    # Every other filter stays within the agency.
    for query in ("severity=critical", "q=RDP", "rule_id=rule-ssh", "source_ip=10.0.0.0/8"):
        assert all(
            a["entities"]["agency"] == VIEWER_AGENCY
            for a in _all(api, f"/alerts?limit=500&{query}", who="viewer")
        )
    other = api.client.get("/alerts?agency=so-tttt", headers=auth("viewer"))
    assert other.status_code == 403
    assert "phuong-phuc-xa" in other.json()["detail"]
    foreign = _first_id(api, agency="so-tttt")
    assert api.client.get(f"/alerts/{foreign}", headers=auth("viewer")).status_code == 404
    own = mine[0]["id"]
    assert api.client.get(f"/alerts/{own}", headers=auth("viewer")).status_code == 200


def test_an_agency_viewer_pages_through_its_agency_only(api: Rig) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        body = api.client.get("/alerts", params=params, headers=auth("viewer")).json()
        seen += [a["id"] for a in body["data"]]
        assert {a["entities"]["agency"] for a in body["data"]} <= {VIEWER_AGENCY}
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in _all(api, "/alerts?limit=500", who="viewer")]


@pytest.mark.parametrize("who", ["viewer", "author"])
def test_only_triagers_change_alerts(api: Rig, who: str) -> None:
    own = _all(api, "/alerts?limit=1", who="viewer")[0]["id"]
    before = api.client.get(f"/alerts/{own}", headers=auth("admin")).json()
    assert _patch(api, own, {"status": "acknowledged"}, who=who).status_code == 403
    bulk = {"action": "acknowledge", "ids": [own]}
    assert api.client.post("/alerts/bulk", json=bulk, headers=auth(who)).status_code == 403
    assert api.client.get(f"/alerts/{own}", headers=auth("admin")).json() == before


def test_the_admin_triages_too(api: Rig) -> None:
    alert_id = _first_id(api)
    answer = _patch(api, alert_id, {"status": "acknowledged"}, who="admin")
    assert answer.status_code == 200
    assert answer.json()["history"][-1]["by"] == "admin"


def test_the_openapi_document_describes_every_triage_route_and_model(api: Rig) -> None:
    spec = api.client.get("/openapi.json", headers=auth("analyst")).json()
    paths = spec["paths"]
    assert {"get", "patch"} <= set(paths["/alerts/{alert_id}"])
    assert "post" in paths["/alerts/bulk"]
    for path, method in (("/alerts", "get"), ("/alerts/{alert_id}", "patch")):
        ok = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].rsplit("/", 1)[-1] in ("AlertsPage", "AlertPublic")
    schemas = spec["components"]["schemas"]
    assert {"AlertPatch", "AlertsPage", "AlertsBulkResult", "BulkResolve"} <= set(schemas)
    params = {p["name"]: p for p in paths["/alerts"]["get"]["parameters"]}
    assert {"cursor", "sort", "order", "source_ip", "technique", "tactic", "tier"} <= set(params)


def test_an_empty_store_answers_an_empty_page() -> None:
    empty = Rig(InMemoryAlertStore())
    body = empty.client.get("/alerts", headers=auth("analyst")).json()
    assert body == {"data": [], "total": 0, "total_exact": True, "next_cursor": None}


def test_many_alerts_page_at_the_maximum_limit() -> None:
    store = InMemoryAlertStore()
    store.apply(varied_batch(600))
    big = Rig(store)
    first = big.client.get("/alerts?limit=500", headers=auth("analyst")).json()
    assert len(first["data"]) == 500 and first["total"] == 600
    second = big.client.get(
        "/alerts", params={"limit": 500, "cursor": first["next_cursor"]}, headers=auth("analyst")
    ).json()
    assert len(second["data"]) == 100 and second["next_cursor"] is None
    ids = [a["id"] for a in first["data"] + second["data"]]
    assert len(set(ids)) == 600


def test_alert_status_values_are_the_records_own() -> None:
    assert {s.value for s in AlertStatus} == {
        "new",
        "acknowledged",
        "in_progress",
        "resolved",
        "false_positive",
    }
