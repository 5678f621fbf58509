"""``/rules`` with in-memory doubles: the store seeded from the project's rules, validation errors
at their line, versions, enable/disable, rule tests with the real example events of
rules/socpipe, backtests over in-memory events, publishing, and who may do what."""

from __future__ import annotations

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
ADMIN = "admin-token-01234567890"
VIEWER = "viewer-token-0123456789"
COLLECTOR = "collector-token-012345"
SSH_FAILURE = "0bf5816a-a6b8-4bc5-957a-c74e7ce82d3f"
SSH_BRUTE_FORCE = "43f39fb0-2ed0-4f13-9da8-241ac8cd39ee"
NEW_ID = "5d7e2c1a-9b3f-4e8a-a6d0-1c2b3a4d5e6f"
# Half past an hour that has passed (30 to 90 minutes ago): every sample event is in the past.
NOW = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)

NEW_RULE = f"""title: Sudo to root by a web server account
id: {NEW_ID}
status: test
logsource:
  product: linux
  service: sudo
detection:
  selection:
    user.name: www-data
  condition: selection
level: high
tags:
  - attack.privilege-escalation
  - attack.t1548.003
"""


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sample_events() -> list[dict[str, Any]]:
    """Failures and successes over three days, in two agencies and three hosts; and a burst of
    twelve failures from one address in two minutes (the brute-force correlation fires once)."""
    events = []
    hosts = [("so-tttt", "tttt-web"), ("so-tttt", "tttt-db"), ("phuong-phuc-xa", "px-srv")]
    for n in range(120):
        agency, host = hosts[n % 3]
        at = NOW - timedelta(minutes=37 * n + 5)
        events.append(
            ssh_event(n, at, agency=agency, host=host, ip=f"113.160.{n}.9", failed=n % 4 != 0)
        )
    burst = NOW - timedelta(days=1, hours=3)
    for k in range(12):
        at = burst + timedelta(seconds=10 * k)
        events.append(ssh_event(500 + k, at, agency="so-tttt", host="tttt-web", ip="45.9.1.1"))
    return events


def expected(events: list[dict[str, Any]], since: datetime) -> tuple[int, int]:
    """Failures since ``since``, and their alerts: one per agency, host and hour."""
    failures = [
        e
        for e in events
        if e["event"]["outcome"] == "failure" and datetime.fromisoformat(e["@timestamp"]) >= since
    ]
    windows = {
        (
            e["organization"]["id"],
            e["host"]["name"],
            int(datetime.fromisoformat(e["@timestamp"]).timestamp()) // 3600,
        )
        for e in failures
    }
    return len(failures), len(windows)


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return sample_events()


@pytest.fixture
def client(events: list[dict[str, Any]]) -> Iterator[TestClient]:
    tokens = [
        {"name": "an", "token": ANALYST, "role": "analyst"},
        {"name": "ra", "token": AUTHOR, "role": "rule_author"},
        {"name": "ad", "token": ADMIN, "role": "soc_admin"},
        {"name": "vw", "token": VIEWER, "role": "agency_viewer", "agency": "so-tttt"},
        {"name": "co", "token": COLLECTOR, "role": "collector", "agency": "so-tttt"},
    ]
    settings = load_settings(
        api={"tokens": tokens},
        detector={
            "rules_paths": [str(RULES / name) for name in ("socpipe", "filters", "pipelines")]
        },
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


def rule_files() -> list[Path]:
    found = sorted((RULES / "socpipe").rglob("*.yml"))
    return [path for path in found if not path.name.endswith(".tests.yml")]


def test_the_store_is_seeded_with_the_projects_rules(client: TestClient) -> None:
    listed = client.get("/rules?limit=500", headers=auth(ANALYST)).json()
    ids = {yaml.safe_load(path.read_text())["id"] for path in rule_files()}
    ids |= {yaml.safe_load(path.read_text())["id"] for path in (RULES / "filters").glob("*.yml")
            if not path.name.endswith(".tests.yml")}  # fmt: skip
    assert {rule["id"] for rule in listed["data"]} == ids  # pipelines are not rules
    assert listed["total"] == len(ids)
    kinds = {rule["id"]: rule["kind"] for rule in listed["data"]}
    assert kinds[SSH_FAILURE] == "rule" and kinds[SSH_BRUTE_FORCE] == "correlation"
    assert kinds["3c2e8f61-7d4a-4b19-9a05-6e1f2d8c7b40"] == "filter"
    assert all(rule["enabled"] and rule["version"] == 1 for rule in listed["data"])


def test_listing_filters_and_pages(client: TestClient) -> None:
    def ids(query: str) -> list[str]:
        answer = client.get(f"/rules?{query}", headers=auth(ANALYST))
        assert answer.status_code == 200, answer.text
        return [rule["id"] for rule in answer.json()["data"]]

    assert SSH_FAILURE in ids("q=ssh+authentication")
    assert ids(f"q={SSH_FAILURE}") == [SSH_FAILURE]
    assert SSH_FAILURE in ids("level=medium") and SSH_FAILURE not in ids("level=high")
    assert SSH_FAILURE in ids("tactic=credential-access")
    assert set(ids("kind=correlation")) >= {SSH_BRUTE_FORCE}
    first, second = ids("limit=3&offset=0"), ids("limit=3&offset=3")
    assert len(first) == len(second) == 3 and not set(first) & set(second)
    assert client.get("/rules?level=urgent", headers=auth(ANALYST)).status_code == 422
    assert client.get("/rules?limit=501", headers=auth(ANALYST)).status_code == 422


def test_a_rule_with_its_yaml_and_versions(client: TestClient) -> None:
    rule = client.get(f"/rules/{SSH_FAILURE}", headers=auth(ANALYST)).json()
    source = (RULES / "socpipe" / "linux" / "sshd_authentication_failure.yml").read_text()
    assert rule["yaml"] == source
    assert rule["logsource"] == {"product": "linux", "service": "sshd"}
    assert rule["tactics"] == ["credential_access"] and rule["techniques"] == ["T1110"]
    assert [v["version"] for v in rule["versions"]] == [1]
    assert (
        client.get("/rules/0000aaaa-0000-4000-8000-000000000000", headers=auth(ANALYST)).status_code
        == 404
    )
    assert client.get("/rules/..%2Fetc", headers=auth(ANALYST)).status_code in (404, 422)


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        (("condition: selection", "condition: selection and nope"), 22, "'nope' not defined"),
        (("    event.outcome: failure", "    event.outcome|containz: failure"), 21, "containz"),
        (("level: medium", "level: [medium"), 26, "invalid YAML"),  # found at the end
        (("level: medium", "level: urgent"), 25, "level"),
        (("title: SSH", "title: SSH\ntitle: SSH again\n#"), 2, "duplicate key"),
        ((f"id: {SSH_FAILURE}", f"id: {NEW_ID}"), 2, "is not the rule's"),
        ((f"id: {SSH_FAILURE}", "id: &x 7"), 2, "aliases"),
    ],
)
def test_validation_errors_come_with_their_line(
    client: TestClient, change: tuple[str, str], line: int, words: str
) -> None:
    source = client.get(f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR)).json()["yaml"]
    assert change[0] in source
    broken = source.replace(change[0], change[1], 1)
    answer = client.put(f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR), json={"yaml": broken})
    assert answer.status_code == 422, answer.text
    problems = answer.json()["detail"]
    assert any(p["line"] == line and words in p["message"] for p in problems), problems
    assert client.get(f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR)).json()["version"] == 1


def test_validate_checks_a_rule_without_saving_it(client: TestClient) -> None:
    answer = client.post("/rules/validate", headers=auth(ANALYST), json={"yaml": NEW_RULE})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is True and body["problems"] == []
    rule = body["rule"]
    assert (rule["id"], rule["kind"], rule["level"]) == (NEW_ID, "rule", "high")
    assert rule["logsource"] == {"product": "linux", "service": "sudo"}
    assert rule["tactics"] == ["privilege_escalation"] and rule["techniques"] == ["T1548.003"]
    assert client.get(f"/rules/{NEW_ID}", headers=auth(ANALYST)).status_code == 404  # not saved
    aws = NEW_RULE.replace("product: linux\n  service: sudo", "product: aws\n  service: cloudtrail")
    warned = client.post("/rules/validate", headers=auth(AUTHOR), json={"yaml": aws}).json()
    assert warned["valid"] is True
    assert any("no socpipe events" in w["message"] for w in warned["warnings"])


@pytest.mark.parametrize(
    ("change", "line", "words", "parses"),
    [
        (("condition: selection", "condition: selection or missing"), 10, "'missing'", True),
        (("user.name: www-data", "user.name|containz: www-data"), 9, "containz", True),
        (("level: high", "level: [high"), 12, "invalid YAML", False),  # said on the next line
        (("user.name: www-data", "user.name: www-data: x"), 9, "invalid YAML", False),
        (("title: Sudo", "title: Sudo\ntitle: again\n#"), 2, "duplicate key", False),
        ((f"id: {NEW_ID}", "id: &x 7"), 2, "aliases", False),
    ],
)
def test_validate_gives_each_error_with_its_line(
    client: TestClient, change: tuple[str, str], line: int, words: str, parses: bool
) -> None:
    assert change[0] in NEW_RULE
    broken = NEW_RULE.replace(change[0], change[1], 1)
    answer = client.post("/rules/validate", headers=auth(ANALYST), json={"yaml": broken})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["valid"] is False
    assert any(p["line"] == line and words in p["message"] for p in body["problems"]), body
    assert all(p["severity"] == "error" for p in body["problems"])
    # What the YAML says of the rule, once it parses (it does not compile).
    assert (body["rule"] is not None) is parses
    if parses:
        assert body["rule"]["id"] == NEW_ID


def test_validate_as_a_rule_to_save(client: TestClient) -> None:
    source = client.get(f"/rules/{SSH_FAILURE}", headers=auth(ANALYST)).json()["yaml"]

    def check(**body: Any) -> dict[str, Any]:
        answer = client.post("/rules/validate", headers=auth(ANALYST), json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    assert check(yaml=source, rule_id=SSH_FAILURE)["valid"] is True
    other = check(yaml=NEW_RULE, rule_id=SSH_FAILURE)  # PUT /rules/{id} would refuse it
    assert not other["valid"] and other["problems"][0]["line"] == 2
    assert "is not the rule's" in other["problems"][0]["message"]
    taken = check(yaml=source, new=True)  # POST /rules would answer 409
    assert not taken["valid"] and taken["problems"][0]["line"] == 2
    assert "exists" in taken["problems"][0]["message"]
    assert check(yaml=NEW_RULE, new=True)["valid"] is True
    # A correlation is checked with the rules it counts, as saving checks it.
    client.post(f"/rules/{SSH_FAILURE}/disable", headers=auth(AUTHOR))
    correlation = client.get(f"/rules/{SSH_BRUTE_FORCE}", headers=auth(ANALYST)).json()["yaml"]
    warned = check(yaml=correlation)
    assert warned["valid"] and warned["rule"]["kind"] == "correlation"
    assert any(
        SSH_FAILURE in w["message"] and "disabled" in w["message"] for w in warned["warnings"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {"yaml": ""},
        {"yaml": "x" * (256 * 1024 + 1)},
        {"yaml": NEW_RULE, "unknown": 1},
        {"yaml": NEW_RULE, "rule_id": "../etc"},
        {"yaml": NEW_RULE, "new": 0},
        {},
    ],
)
def test_validate_refuses_a_request_outside_its_schema(
    client: TestClient, body: dict[str, Any]
) -> None:
    answer = client.post("/rules/validate", headers=auth(ANALYST), json=body)
    assert answer.status_code == 422, answer.text


def test_validate_is_for_rule_readers(client: TestClient) -> None:
    for token in (VIEWER, COLLECTOR):
        answer = client.post("/rules/validate", headers=auth(token), json={"yaml": NEW_RULE})
        assert answer.status_code == 403
    assert client.post("/rules/validate", json={"yaml": NEW_RULE}).status_code == 401
    for token in (ANALYST, AUTHOR, ADMIN):
        answer = client.post("/rules/validate", headers=auth(token), json={"yaml": NEW_RULE})
        assert answer.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"yaml": "- a list\n- not a rule\n"},
        {"yaml": "title: no id\nlogsource: {product: linux}\n"},
        {"yaml": NEW_RULE + "---\n" + NEW_RULE},
        {"yaml": "x" * (256 * 1024 + 1)},
        {"yaml": ""},
        {"yaml": NEW_RULE, "unknown": 1},
    ],
)
def test_what_is_not_one_rule_is_a_422(client: TestClient, body: dict[str, Any]) -> None:
    answer = client.post("/rules", headers=auth(AUTHOR), json=body)
    assert answer.status_code == 422, answer.text


def test_every_change_is_a_new_version(client: TestClient) -> None:
    source = client.get(f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR)).json()["yaml"]
    changed = source.replace("level: medium", "level: high")
    answer = client.put(
        f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR), json={"yaml": changed, "comment": "louder"}
    )
    assert answer.status_code == 200, answer.text
    rule = answer.json()["rule"]
    assert rule["version"] == 2 and rule["level"] == "high" and rule["author"] == "ra"
    newest = rule["versions"][0]
    assert (newest["version"], newest["comment"]) == (2, "louder")
    old = client.get(f"/rules/{SSH_FAILURE}/versions/1", headers=auth(ANALYST)).json()
    assert old["yaml"] == source and old["level"] == "medium"
    assert client.get(f"/rules/{SSH_FAILURE}/versions/3", headers=auth(ANALYST)).status_code == 404


def test_a_new_rule_and_an_existing_id(client: TestClient) -> None:
    made = client.post("/rules", headers=auth(AUTHOR), json={"yaml": NEW_RULE, "comment": "new"})
    assert made.status_code == 201, made.text
    assert made.json()["rule"]["version"] == 1 and made.json()["published"] is False
    assert client.post("/rules", headers=auth(AUTHOR), json={"yaml": NEW_RULE}).status_code == 409
    put = client.put(f"/rules/{NEW_ID}", headers=auth(AUTHOR), json={"yaml": NEW_RULE})
    assert put.json()["rule"]["version"] == 2


def test_a_rule_of_a_log_source_without_events_is_saved_with_a_warning(client: TestClient) -> None:
    aws = NEW_RULE.replace("product: linux\n  service: sudo", "product: aws\n  service: cloudtrail")
    answer = client.post("/rules", headers=auth(AUTHOR), json={"yaml": aws})
    assert answer.status_code == 201, answer.text
    assert any("no socpipe events" in w["message"] for w in answer.json()["warnings"])


def test_enable_and_disable_make_versions(client: TestClient) -> None:
    off = client.post(
        f"/rules/{SSH_FAILURE}/disable", headers=auth(AUTHOR), json={"comment": "noisy"}
    )
    assert off.status_code == 200, off.text
    assert off.json()["enabled"] is False and off.json()["version"] == 2
    assert off.json()["versions"][0]["comment"] == "noisy"
    again = client.post(f"/rules/{SSH_FAILURE}/disable", headers=auth(AUTHOR))
    assert again.json()["version"] == 2  # already disabled: no new version
    disabled = client.get("/rules?enabled=false", headers=auth(ANALYST)).json()["data"]
    assert [rule["id"] for rule in disabled] == [SSH_FAILURE]
    on = client.post(f"/rules/{SSH_FAILURE}/enable", headers=auth(ADMIN)).json()
    assert on["enabled"] is True and on["version"] == 3 and on["author"] == "ad"
    assert (
        client.get(f"/rules/{SSH_FAILURE}/versions/2", headers=auth(ANALYST)).json()["enabled"]
        is False
    )


def _cases_of(tests_file: Path) -> tuple[str, list[dict[str, Any]]]:
    rule_file = tests_file.with_name(tests_file.name.replace(".tests.yml", ".yml"))
    rule_id = yaml.safe_load(rule_file.read_text())["id"]
    cases = yaml.safe_load(tests_file.read_text())["tests"]
    return rule_id, cases


@pytest.mark.parametrize(
    "tests_file",
    sorted([*(RULES / "socpipe").rglob("*.tests.yml"), *(RULES / "filters").glob("*.tests.yml")]),
    ids=lambda path: path.stem.removesuffix(".tests"),
)
def test_the_example_events_of_the_projects_rules_pass(
    client: TestClient, tests_file: Path
) -> None:
    rule_id, cases = _cases_of(tests_file)
    answer = client.post(f"/rules/{rule_id}/test", headers=auth(ANALYST), json={"cases": cases})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["failed"] == 0, [r for r in body["results"] if not r["passed"]]
    assert body["passed"] == len(cases) == len(body["results"])
    assert [result["name"] for result in body["results"]] == [case["name"] for case in cases]


def test_a_failing_case_says_why(client: TestClient) -> None:
    _, cases = _cases_of(RULES / "socpipe" / "linux" / "sshd_authentication_failure.tests.yml")
    success = next(case for case in cases if not case["match"])
    wrong = {**success, "name": "expects a match it cannot have", "match": True}
    body = client.post(
        f"/rules/{SSH_FAILURE}/test", headers=auth(ANALYST), json={"cases": [cases[0], wrong]}
    ).json()
    assert (body["passed"], body["failed"]) == (1, 1)
    failed = body["results"][1]
    assert failed["case"] == 1 and not failed["matched"] and not failed["passed"]
    assert failed["why"] == "expected a match, got none"
    assert any("its condition does not hold" in line for line in failed["details"])
    assert body["results"][0]["why"] == "matched, as expected"


def test_unsaved_yaml_is_tested_and_its_errors_have_lines(client: TestClient) -> None:
    event = {
        "event": {"dataset": "system.auth"},
        "process": {"name": "sudo"},
        "user": {"name": "www-data"},
    }
    cases = [{"name": "www-data sudo", "match": True, "event": event}]
    body = client.post(
        "/rules/test", headers=auth(ANALYST), json={"yaml": NEW_RULE, "cases": cases}
    )
    assert body.status_code == 200, body.text
    assert client.get(f"/rules/{NEW_ID}", headers=auth(ANALYST)).status_code == 404  # not saved
    broken = NEW_RULE.replace("condition: selection", "condition: selection or missing")
    answer = client.post(
        "/rules/test", headers=auth(ANALYST), json={"yaml": broken, "cases": cases}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["line"] == 10
    bad_case = [{"name": "bad format", "match": True, "format": "nope", "raw": "x"}]
    flagged = client.post(
        "/rules/test", headers=auth(ANALYST), json={"yaml": NEW_RULE, "cases": bad_case}
    )
    problems = flagged.json()["problems"]
    assert problems and problems[0]["case"] == 0 and "unknown format" in problems[0]["message"]
    missing = [{"name": "no event", "match": True}]
    assert client.post(
        "/rules/test", headers=auth(ANALYST), json={"yaml": NEW_RULE, "cases": missing}
    ).json()["problems"]


def test_backtest_counts_matches_and_alerts(
    client: TestClient, events: list[dict[str, Any]]
) -> None:
    answer = client.post(f"/rules/{SSH_FAILURE}/preview?days=2", headers=auth(AUTHOR))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    since = datetime.fromisoformat(body["scan"]["since"])
    matches, alerts = expected(events, since)
    assert (body["matches"], body["alerts"]) == (matches, alerts)
    in_period = sum(datetime.fromisoformat(e["@timestamp"]) >= since for e in events)
    assert body["scan"]["events_scanned"] == body["scan"]["events_in_period"] == in_period
    assert body["scan"]["capped"] is False and body["alert_window_s"] == 3600
    assert sum(a["matches"] for a in body["by_agency"]) == matches
    assert len(body["sample_event_ids"]) == 10
    assert body["correlation"] is None


def test_backtest_states_its_cap(client: TestClient) -> None:
    body = client.post(
        f"/rules/{SSH_FAILURE}/preview?days=30&max_events=20", headers=auth(AUTHOR)
    ).json()
    assert body["scan"]["events_scanned"] == 20 and body["scan"]["capped"] is True
    assert body["scan"]["event_cap"] == 20 and "only the newest 20" in body["note"]
    for days in (0, 31):
        answer = client.post(f"/rules/{SSH_FAILURE}/preview?days={days}", headers=auth(AUTHOR))
        assert answer.status_code == 422


def test_backtest_of_an_unsaved_version(client: TestClient, events: list[dict[str, Any]]) -> None:
    source = client.get(f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR)).json()["yaml"]
    narrower = source.replace(
        "event.outcome: failure", "event.outcome: failure\n    source.ip: 45.9.1.1"
    )
    body = client.post(
        f"/rules/{SSH_FAILURE}/preview?days=3", headers=auth(AUTHOR), json={"yaml": narrower}
    ).json()
    assert body["matches"] == 12 and body["alerts"] == 1
    other = client.post(
        f"/rules/{SSH_FAILURE}/preview", headers=auth(AUTHOR), json={"yaml": NEW_RULE}
    )
    assert other.status_code == 422 and "is not the rule's" in other.text


def test_a_correlation_is_backtested_through_the_correlation_engine(client: TestClient) -> None:
    body = client.post(f"/rules/{SSH_BRUTE_FORCE}/preview?days=3", headers=auth(AUTHOR)).json()
    assert body["kind"] == "correlation"
    assert body["correlation"]["hits"] == 1 and body["matches"] == 1 and body["alerts"] == 1
    assert body["correlation"]["base_matches"] > 12
    assert len(body["sample_event_ids"]) == 10  # the burst's events behind the hit
    assert "correlation engine" in body["note"]


def test_publish_builds_the_enabled_set_and_refuses_a_broken_one(client: TestClient) -> None:
    publisher: InMemoryRulePublisher = client.app.state.rule_publisher  # type: ignore[attr-defined]
    first = client.post("/rules/publish", headers=auth(AUTHOR))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["published"] and body["correlations"] >= 1 and body["filters"] == 2
    assert body["files"] > body["rules"] + body["correlations"] + body["filters"]  # + pipelines
    # The brute-force correlation counts SSH failures: without that rule it cannot load.
    client.post(f"/rules/{SSH_FAILURE}/disable", headers=auth(AUTHOR))
    refused = client.post("/rules/publish", headers=auth(AUTHOR))
    assert refused.status_code == 422
    problems = refused.json()["detail"]
    brute_force = next(p for p in problems if p["rule_id"] == SSH_BRUTE_FORCE)
    assert SSH_FAILURE in brute_force["message"] and brute_force["line"] == 25
    assert "/tmp" not in refused.text and "socpipe-" not in refused.text
    client.post(f"/rules/{SSH_FAILURE}/enable", headers=auth(AUTHOR))
    again = client.post("/rules/publish", headers=auth(AUTHOR)).json()
    assert again["version"] == body["version"]  # the same files: the same version
    assert [result.bundle.version for result in publisher.published] == [body["version"]] * 2


def test_changes_are_in_the_audit_trail(client: TestClient) -> None:
    client.post(f"/rules/{SSH_FAILURE}/disable", headers=auth(AUTHOR))
    trail: InMemoryAuditLog = client.app.state.audit  # type: ignore[attr-defined]
    entry = trail.entries[-1]
    assert entry["target"] == {"type": "rule", "id": SSH_FAILURE}
    assert entry["detail"] == {"version": 2, "enabled": False} and entry["user"]["name"] == "ra"


def test_who_may_do_what(client: TestClient) -> None:
    source = client.get(f"/rules/{SSH_FAILURE}", headers=auth(ANALYST)).json()["yaml"]
    body = {"yaml": source}
    for token in (ANALYST, VIEWER, COLLECTOR):
        assert (
            client.put(f"/rules/{SSH_FAILURE}", headers=auth(token), json=body).status_code == 403
        )
        assert (
            client.post("/rules", headers=auth(token), json={"yaml": NEW_RULE}).status_code == 403
        )
        assert client.post(f"/rules/{SSH_FAILURE}/disable", headers=auth(token)).status_code == 403
        assert client.post("/rules/publish", headers=auth(token)).status_code == 403
        assert client.post(f"/rules/{SSH_FAILURE}/preview", headers=auth(token)).status_code == 403
    for token in (VIEWER, COLLECTOR):
        assert client.get("/rules", headers=auth(token)).status_code == 403
        assert client.get(f"/rules/{SSH_FAILURE}", headers=auth(token)).status_code == 403
    assert client.get("/rules").status_code == 401
    cases = [{"name": "x", "match": False, "event": {"message": "x"}}]
    assert (
        client.post(
            f"/rules/{SSH_FAILURE}/test", headers=auth(ANALYST), json={"cases": cases}
        ).status_code
        == 200
    )
    assert client.put(f"/rules/{SSH_FAILURE}", headers=auth(AUTHOR), json=body).status_code == 200
    assert client.put(f"/rules/{SSH_FAILURE}", headers=auth(ADMIN), json=body).status_code == 200


def test_openapi_describes_the_rule_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=auth(ANALYST)).json()
    paths = spec["paths"]
    for path in ("/rules", "/rules/{rule_id}", "/rules/{rule_id}/versions/{number}",
                 "/rules/{rule_id}/test", "/rules/{rule_id}/preview", "/rules/publish",
                 "/rules/test", "/rules/preview", "/rules/validate"):  # fmt: skip
        assert path in paths
    put = paths["/rules/{rule_id}"]["put"]
    assert put["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RuleChange"
    )
    assert "BacktestPublic" in spec["components"]["schemas"]


def test_a_correlation_over_a_disabled_rule_is_saved_with_a_warning(client: TestClient) -> None:
    client.post(f"/rules/{SSH_FAILURE}/disable", headers=auth(AUTHOR))
    source = client.get(f"/rules/{SSH_BRUTE_FORCE}", headers=auth(AUTHOR)).json()["yaml"]
    answer = client.put(f"/rules/{SSH_BRUTE_FORCE}", headers=auth(AUTHOR), json={"yaml": source})
    assert answer.status_code == 200, answer.text
    warnings = [w["message"] for w in answer.json()["warnings"]]
    assert any(SSH_FAILURE in w and "disabled" in w for w in warnings), warnings


def test_the_422_of_a_rule_is_described(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=auth(ANALYST)).json()
    put = spec["paths"]["/rules/{rule_id}"]["put"]["responses"]["422"]
    assert put["content"]["application/json"]["schema"]["$ref"].endswith("RuleProblems")
    problem = spec["components"]["schemas"]["RuleProblem"]["properties"]
    assert {"line", "message"} <= set(problem)
