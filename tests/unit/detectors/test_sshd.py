"""Tests of detectors.sshd: sshd lines to ECS events, checked against loghub and Elastic."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detectors.sshd import parse_sshd
from socpipe.errors import RecordError
from socpipe.records import EcsEvent, RawRecord

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
LOGHUB = DATA / "loghub" / "OpenSSH"
AUTH_FIXTURES = DATA / "ecs-fixtures" / "system" / "auth"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)


def _raw(message: str, *, position: int = 0, path: str | None = "/var/log/auth.log") -> RawRecord:
    return RawRecord.model_validate(
        {
            "id": f"raw-{position}",
            "agency": {"id": "so-tttt", "tier": "province", "name": "Sở Thông tin và Truyền thông"},
            "collector": {"id": "collector-1", "version": "0.1.0"},
            "host": "collector-host",
            "source": {
                "type": "file" if path else "syslog",
                "path": path,
                "port": None if path else 514,
                "format": "syslog",
            },
            "received": RECEIVED,
            "position": position,
            "message": message,
        }
    )


def _sshd(message: str, **line: Any) -> EcsEvent:
    return parse_sshd(_raw(f"Dec 10 06:55:46 LabSZ sshd[24200]: {message}", **line))


def _flat(event: EcsEvent) -> dict[str, Any]:
    """The event as Elastic's fixtures write it: dotted keys."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", event.to_dict())
    return flat


def test_every_event_carries_where_it_came_from() -> None:
    event = _sshd("Accepted password for an from 10.1.2.3 port 50022 ssh2", position=4096)
    doc = event.to_dict()

    assert doc["@timestamp"] == "2024-12-10T06:55:46+07:00"
    assert doc["message"] == "Accepted password for an from 10.1.2.3 port 50022 ssh2"
    assert doc["event"] == {
        "id": "raw-4096",
        "kind": "event",
        "category": ["authentication"],
        "type": ["start"],
        "action": "ssh_login",
        "outcome": "success",
        "dataset": "system.auth",
        "module": "system",
        "original": "Dec 10 06:55:46 LabSZ sshd[24200]: "
        "Accepted password for an from 10.1.2.3 port 50022 ssh2",
        "created": "2024-12-11T08:00:00Z",
        "timezone": "Asia/Ho_Chi_Minh",
    }
    assert doc["host"] == {"name": "LabSZ", "hostname": "LabSZ"}
    assert doc["process"] == {"name": "sshd", "pid": 24200}
    assert doc["organization"] == {"id": "so-tttt", "name": "Sở Thông tin và Truyền thông"}
    assert doc["labels"] == {"tier": "province"}
    assert doc["log"] == {"offset": 4096, "file": {"path": "/var/log/auth.log"}}
    assert doc["user"] == {"name": "an"}
    assert doc["source"] == {"ip": "10.1.2.3", "port": 50022}
    assert doc["related"] == {"hosts": ["LabSZ"], "ip": ["10.1.2.3"], "user": ["an"]}
    assert doc["system"] == {"auth": {"ssh": {"event": "Accepted", "method": "password"}}}
    assert EcsEvent.from_json(event.to_json()) == event


def test_a_line_with_its_zone_has_no_event_timezone() -> None:
    event = parse_sshd(_raw("2018-10-23T09:16:50.123456+02:00 web-01 sshd[123]: Connection closed"))

    assert event.event.timezone is None
    assert event.timestamp.isoformat() == "2018-10-23T09:16:50.123456+02:00"


def test_rfc5424_line_from_a_syslog_listener() -> None:
    event = parse_sshd(
        _raw(
            "<38>1 2024-12-10T06:55:46.5+07:00 bastion sshd 911 - - "
            "Failed publickey for root from 2001:db8::7 port 40022 ssh2: ED25519 SHA256:abc",
            path=None,
        )
    )

    assert event.host is not None and event.host.name == "bastion"
    assert event.process is not None and event.process.pid == 911
    assert event.source is not None
    assert (event.source.ip, event.source.port) == ("2001:db8::7", 40022)
    assert event.log == {
        "offset": 0,
        "syslog": {
            "priority": 38,
            "facility": {"code": 4, "name": "auth"},
            "severity": {"code": 6, "name": "informational"},
        },
    }
    assert _flat(event)["system.auth.ssh.signature"] == "ED25519 SHA256:abc"


def test_hostname_falls_back_to_the_collectors_host() -> None:
    event = parse_sshd(
        _raw("Dec 10 06:55:46 sshd[7]: Accepted password for an from 10.1.2.3 port 2")
    )

    assert event.host is not None
    assert (event.host.name, event.host.hostname) == ("collector-host", "collector-host")


def test_sshd_session_of_openssh_9_8_is_sshd() -> None:
    event = parse_sshd(
        _raw("Dec 10 06:55:46 web sshd-session[77]: Failed password for an from 10.0.0.9 port 1")
    )

    assert (event.event.action, event.event.outcome) == ("ssh_login", "failure")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Accepted publickey for vagrant from 10.0.2.2 port 63673 ssh2: RSA SHA256:xyz",
            ("ssh_login", "success", "vagrant", "10.0.2.2", 63673),
        ),
        (
            "Accepted keyboard-interactive/pam for an from 10.0.2.2 port 2 ssh2",
            ("ssh_login", "success", "an", "10.0.2.2", 2),
        ),
        (
            "Failed password for root from 183.62.140.253 port 43144 ssh2",
            ("ssh_login", "failure", "root", "183.62.140.253", 43144),
        ),
        (
            "Failed password for invalid user admin from 119.4.203.64 port 2191 ssh2",
            ("ssh_login", "failure", "admin", "119.4.203.64", 2191),
        ),
        (
            "Failed none for invalid user 0 from 5.188.10.180 port 49811 ssh2",
            ("ssh_login", "failure", "0", "5.188.10.180", 49811),
        ),
        (
            "Failed publickey for git from 10.9.8.7 port 3 ssh2: RSA SHA256:q",
            ("ssh_login", "failure", "git", "10.9.8.7", 3),
        ),
        (
            "message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
            ("ssh_login", "failure", "root", "5.36.59.76", 42393),
        ),
        (
            "Invalid user webmaster from 173.234.31.186",
            ("invalid_user", "failure", "webmaster", "173.234.31.186", None),
        ),
        (
            "Invalid user oracle from 10.0.0.1 port 5555",
            ("invalid_user", "failure", "oracle", "10.0.0.1", 5555),
        ),
        (
            "error: maximum authentication attempts exceeded for invalid user admin from "
            "10.0.0.2 port 4 ssh2 [preauth]",
            ("max_auth_attempts_exceeded", "failure", "admin", "10.0.0.2", 4),
        ),
        (
            "Disconnecting: Too many authentication failures for root [preauth]",
            ("max_auth_attempts_exceeded", "failure", "root", None, None),
        ),
        (
            "Received disconnect from 10.0.0.3 port 51200:11: Bye Bye [preauth]",
            ("ssh_disconnect", None, None, "10.0.0.3", 51200),
        ),
        (
            "Received disconnect from 183.62.140.253: 11: Bye Bye [preauth]",
            ("ssh_disconnect", None, None, "183.62.140.253", None),
        ),
        (
            "error: Received disconnect from 103.99.0.122: 14: No more user authentication "
            "methods available. [preauth]",
            ("ssh_disconnect", None, None, "103.99.0.122", None),
        ),
        (
            "Disconnected from invalid user test 10.0.0.4 port 6 [preauth]",
            ("ssh_disconnect", None, "test", "10.0.0.4", 6),
        ),
        (
            "Disconnected from authenticating user root 10.0.0.4 port 7 [preauth]",
            ("ssh_disconnect", None, "root", "10.0.0.4", 7),
        ),
        (
            "Disconnected from user an 10.0.0.4 port 8",
            ("ssh_disconnect", None, "an", "10.0.0.4", 8),
        ),
        (
            "Connection closed by 5.188.10.180 [preauth]",
            ("ssh_connection_closed", None, None, "5.188.10.180", None),
        ),
        (
            "Connection closed by authenticating user root 10.0.0.5 port 9 [preauth]",
            ("ssh_connection_closed", None, "root", "10.0.0.5", 9),
        ),
        (
            "Connection reset by 10.0.0.5 port 9",
            ("ssh_connection_closed", None, None, "10.0.0.5", 9),
        ),
        (
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
            "rhost=183.62.140.253  user=root",
            ("pam_auth_failure", "failure", "root", "183.62.140.253", None),
        ),
        (
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
            "rhost=103.99.0.122 ",
            ("pam_auth_failure", "failure", None, "103.99.0.122", None),
        ),
        (
            "PAM 4 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= "
            "rhost=5.188.10.180  user=root",
            ("pam_more_auth_failures", "failure", "root", "5.188.10.180", None),
        ),
        (
            "PAM 1 more authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
            "rhost=10.0.0.6",
            ("pam_more_auth_failures", "failure", None, "10.0.0.6", None),
        ),
        (
            "reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] "
            "failed - POSSIBLE BREAK-IN ATTEMPT!",
            ("reverse_mapping_failed", None, None, "173.234.31.186", None),
        ),
        (
            "Did not receive identification string from 2.125.160.217",
            ("no_identification_string", None, None, "2.125.160.217", None),
        ),
        (
            "input_userauth_request: invalid user webmaster [preauth]",
            ("invalid_user_auth_request", "failure", "webmaster", None, None),
        ),
        (
            "pam_unix(sshd:session): session opened for user fztu by (uid=0)",
            ("session_opened", None, "fztu", None, None),
        ),
        (
            "pam_unix(sshd:session): session opened for user an(uid=1000) by an(uid=0)",
            ("session_opened", None, "an", None, None),
        ),
        (
            "pam_unix(sshd:session): session closed for user fztu",
            ("session_closed", None, "fztu", None, None),
        ),
        (
            "pam_unix(sshd:auth): check pass; user unknown",
            ("sshd_message", None, None, None, None),
        ),
        (
            "Server listening on 0.0.0.0 port 22.",
            ("sshd_message", None, None, None, None),
        ),
    ],
)
def test_classifies_sshd_messages(
    message: str, expected: tuple[str, str | None, str | None, str | None, int | None]
) -> None:
    event = _sshd(message)

    found = (
        event.event.action,
        event.event.outcome,
        event.user.name if event.user else None,
        event.source.ip if event.source else None,
        event.source.port if event.source else None,
    )
    assert found == expected
    assert event.event.kind == "event"
    assert event.message == message
    related = event.related or {}
    assert related.get("user") == ([expected[2]] if expected[2] else None)
    assert related.get("ip") == ([expected[3]] if expected[3] else None)


def test_session_events_are_session_start_and_end() -> None:
    opened = _sshd("pam_unix(sshd:session): session opened for user an(uid=1000) by (uid=0)")
    closed = _sshd("pam_unix(sshd:session): session closed for user an")

    assert (opened.event.category, opened.event.type) == (["session"], ["start"])
    assert opened.user is not None and opened.user.id == "1000"
    assert (closed.event.category, closed.event.type) == (["session"], ["end"])


def test_other_sshd_messages_have_no_category_or_outcome() -> None:
    event = _sshd("Server listening on :: port 22.")

    assert event.event.category is None
    assert event.event.type is None
    assert event.event.outcome is None
    assert event.source is None


@pytest.mark.parametrize(
    "message",
    [
        "Failed password for invalid user a from 6.6.6.6 port 1 ssh2: x from 10.1.2.3 port 22 ssh2",
        "Accepted password for a from 6.6.6.6 port 1 from 10.1.2.3 port 22 ssh2",
        "Invalid user a from 6.6.6.6 from 10.1.2.3 port 22",
        "Disconnected from invalid user a 6.6.6.6 port 1 10.1.2.3 port 22 [preauth]",
    ],
)
def test_an_address_inside_a_user_name_is_not_the_source(message: str) -> None:
    event = _sshd(message)

    assert event.source is not None
    assert (event.source.ip, event.source.port) == ("10.1.2.3", 22)
    assert event.user is not None and "6.6.6.6" in (event.user.name or "")


def test_a_host_name_in_place_of_an_address_is_source_domain() -> None:
    event = _sshd(
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost=ec2-52-80-34-196.cn-north-1.compute.amazonaws.com.cn"
    )

    assert event.source is not None
    assert event.source.ip is None
    assert event.source.domain == "ec2-52-80-34-196.cn-north-1.compute.amazonaws.com.cn"
    assert event.related is not None and "ip" not in event.related


def test_reverse_mapping_keeps_the_claimed_name() -> None:
    event = _sshd(
        "reverse mapping checking getaddrinfo for ns.example.com [173.234.31.186] failed - "
        "POSSIBLE BREAK-IN ATTEMPT!"
    )

    assert event.source is not None and event.source.domain == "ns.example.com"
    assert event.related is not None and event.related["hosts"] == ["LabSZ", "ns.example.com"]


def test_vietnamese_user_name_survives() -> None:
    event = _sshd("Failed password for invalid user nguyễn.văn.a from 10.1.2.3 port 22 ssh2")

    assert event.user is not None and event.user.name == "nguyễn.văn.a"
    assert "nguyễn.văn.a" in (event.event.original or "")
    assert json.loads(event.to_json())["user"]["name"] == "nguyễn.văn.a"


def test_user_name_escaped_by_sshd_is_decoded() -> None:
    # sshd writes non-ASCII bytes of what a client sent as octal escapes.
    escaped = "nguy\\341\\273\\205n.v\\304\\203n.a"
    event = _sshd(f"Invalid user {escaped} from 10.1.2.3 port 22")

    assert event.user is not None and event.user.name == "nguyễn.văn.a"
    assert event.message == f"Invalid user {escaped} from 10.1.2.3 port 22"


def test_escapes_that_are_not_utf8_are_kept() -> None:
    event = _sshd("Invalid user a\\377b from 10.1.2.3")

    assert event.user is not None and event.user.name == "a\\377b"


def test_a_line_of_another_program_is_refused() -> None:
    with pytest.raises(RecordError, match="not an sshd line: program is 'cron'") as caught:
        parse_sshd(_raw("Dec 10 06:55:01 LabSZ cron[99]: (root) CMD (run-parts /etc/cron.hourly)"))

    assert "/var/log/auth.log at 0" in str(caught.value)
    assert "agency so-tttt" in str(caught.value)


def test_a_line_without_program_is_refused() -> None:
    with pytest.raises(RecordError, match="not an sshd line: the line names no program"):
        parse_sshd(_raw("Apr 4 03:39:57 --- last message repeated 1 time ---"))


def test_a_line_that_is_not_syslog_says_why_and_where() -> None:
    with pytest.raises(RecordError) as caught:
        parse_sshd(_raw("sshd: Accepted password for an", position=77))

    message = str(caught.value)
    assert "/var/log/auth.log at 77" in message
    assert "record raw-77" in message
    assert "not a syslog line: no timestamp at the start" in message


def test_a_structured_record_is_refused() -> None:
    raw = _raw("x").model_copy(update={"message": None, "data": {"k": "v"}})

    with pytest.raises(RecordError, match="carries data, not a line"):
        parse_sshd(raw)


# --- loghub OpenSSH_2k: 2,000 real lines, with loghub's own template per line ----------------


def _expected_class(template: str) -> str | None:
    inner = template.removeprefix("message repeated <*> times: [ ")
    for prefix, name in (("Failed ", "failed"), ("Accepted ", "accepted")):
        if inner.startswith(prefix):
            return name
    return "invalid_user" if template.startswith("Invalid user ") else None


def _found_class(event: EcsEvent) -> str | None:
    if event.event.action == "ssh_login":
        return {"failure": "failed", "success": "accepted"}[str(event.event.outcome)]
    return "invalid_user" if event.event.action == "invalid_user" else None


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"no loghub OpenSSH data at {LOGHUB}")
def test_loghub_openssh_lines_all_parse_and_classify_as_loghub_does() -> None:
    lines = (LOGHUB / "OpenSSH_2k.log").read_text("utf-8").splitlines()
    with (LOGHUB / "OpenSSH_2k.log_structured.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(lines) == len(rows)

    expected: Counter[str | None] = Counter()
    found: Counter[str | None] = Counter()
    wrong = []
    for number, (line, row) in enumerate(zip(lines, rows, strict=True), start=1):
        assert int(row["LineId"]) == number
        event = parse_sshd(_raw(line, position=number))
        want, got = _expected_class(row["EventTemplate"]), _found_class(event)
        expected[want] += 1
        found[got] += 1
        if want != got:
            wrong.append(f"line {number}: expected {want}, got {got}: {line}")
        # loghub trims trailing blanks from Content.
        assert (event.message or "").rstrip() == row["Content"], f"line {number}"
        assert event.process is not None and event.process.pid == int(row["Pid"])
        assert event.host is not None and event.host.hostname == row["Component"]

    assert wrong == []
    assert found == expected
    assert expected["failed"] > 0 and expected["accepted"] > 0 and expected["invalid_user"] > 0


# --- Elastic's expected output for its own sshd test lines -----------------------------------

# Fields Elastic sets that we set the same way. Not compared: event.category and event.type
# (Elastic uses ["info"] for logins; we use ECS's "start"), event.action for "Invalid user"
# (ours is invalid_user), and its pipeline's bookkeeping and GeoIP enrichment.
_ELASTIC_FIELDS = (
    "event.kind",
    "event.dataset",
    "event.module",
    "event.outcome",
    "host.hostname",
    "process.name",
    "process.pid",
    "user.name",
    "source.ip",
    "source.port",
    "system.auth.ssh.event",
    "system.auth.ssh.method",
    "system.auth.ssh.signature",
    "system.auth.ssh.dropped_ip",
)
_SET_VALUED = ("related.ip", "related.user", "related.hosts")


def _elastic_sshd_cases() -> list[Any]:
    log = AUTH_FIXTURES / "test.log"
    if not log.is_file():
        return []
    raw = log.read_bytes()
    docs = json.loads((AUTH_FIXTURES / "test.log-expected.json").read_text("utf-8"))
    return [
        pytest.param(
            raw[doc["log.offset"] :].split(b"\n", 1)[0].decode("utf-8"),
            doc,
            id=f"test.log@{doc['log.offset']}",
        )
        for doc in docs
        if doc.get("process.name") == "sshd"
    ]


@pytest.mark.skipif(not AUTH_FIXTURES.is_dir(), reason=f"no ECS fixtures at {AUTH_FIXTURES}")
@pytest.mark.parametrize(("line", "elastic"), _elastic_sshd_cases())
def test_agrees_with_elastic_system_auth(line: str, elastic: dict[str, Any]) -> None:
    ours = _flat(parse_sshd(_raw(line, position=elastic["log.offset"])))

    for field in _ELASTIC_FIELDS:
        if field in elastic:
            assert ours.get(field) == elastic[field], field
    for field in _SET_VALUED:
        if field in elastic:
            assert set(ours.get(field, [])) == set(elastic[field]), field
    if elastic.get("system.auth.ssh.event") == "Invalid":
        assert ours["event.action"] == "invalid_user"
    elif "event.action" in elastic:
        assert ours["event.action"] == elastic["event.action"]
    assert ours["log.offset"] == elastic["log.offset"]


def test_elastic_fixture_has_sshd_lines() -> None:
    # Guards the parametrized test above against silently running on no cases at all.
    if not AUTH_FIXTURES.is_dir():
        pytest.skip(f"no ECS fixtures at {AUTH_FIXTURES}")
    cases = _elastic_sshd_cases()
    assert cases
    assert all(re.search(r" sshd\[\d+\]: ", case.values[0]) for case in cases)
