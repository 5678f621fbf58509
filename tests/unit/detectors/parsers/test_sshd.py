"""Tests of detectors.parsers.sshd: sshd messages to ECS fragments, against loghub and Elastic."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, ParseContext
from detectors.parsers.sshd import SshdParser, unescape_octal
from detectors.syslog import SyslogLine, parse_syslog
from socpipe.records import EcsEvent
from tests.support.ecs import ECS_CATEGORIES, ECS_TYPES

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
LOGHUB = DATA / "loghub" / "OpenSSH"
AUTH_FIXTURES = DATA / "ecs-fixtures" / "system" / "auth"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)
PARSER = SshdParser()


def _sshd(message: str, program: str = "sshd") -> Fragment | None:
    fragment = PARSER.parse(SyslogLine(RECEIVED, "LabSZ", program, 24200, message), CONTEXT)
    if fragment is not None:
        _assert_valid(fragment)
    return fragment


def _flat(fragment: Fragment | None) -> dict[str, Any]:
    """The fragment with dotted keys, as Elastic's fixtures write documents."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", fragment or {})
    return flat


def _assert_valid(fragment: Fragment) -> None:
    event = fragment["event"]
    assert isinstance(event["action"], str)
    assert set(event.get("category", [])) <= ECS_CATEGORIES
    assert set(event.get("type", [])) <= ECS_TYPES
    assert event.get("outcome") in (None, "success", "failure")
    for key in ("@timestamp", "event.id", "event.original", "host.name", "related", "message"):
        assert key not in _flat(fragment), f"{key} is the normalizer's"
    EcsEvent.model_validate({"@timestamp": RECEIVED, **fragment})


def test_accepted_login() -> None:
    fragment = _sshd("Accepted password for an from 10.1.2.3 port 50022 ssh2")

    assert fragment == {
        "event": {
            "action": "ssh_login",
            "category": ["authentication"],
            "type": ["start"],
            "outcome": "success",
        },
        "user": {"name": "an"},
        "source": {"ip": "10.1.2.3", "port": 50022},
        "system": {"auth": {"ssh": {"event": "Accepted", "method": "password"}}},
    }


def test_signature_of_a_key() -> None:
    fragment = _sshd(
        "Failed publickey for root from 2001:db8::7 port 40022 ssh2: ED25519 SHA256:abc"
    )

    flat = _flat(fragment)
    assert (flat["source.ip"], flat["source.port"]) == ("2001:db8::7", 40022)
    assert flat["system.auth.ssh.signature"] == "ED25519 SHA256:abc"


@pytest.mark.parametrize("program", ["sshd", "sshd-session", "sshd-auth"])
def test_openssh_9_8_programs_are_sshd(program: str) -> None:
    fragment = _sshd("Failed password for an from 10.0.0.9 port 1", program)

    assert fragment is not None
    assert (fragment["event"]["action"], fragment["event"]["outcome"]) == ("ssh_login", "failure")
    assert program in PARSER.programs


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
            "Invalid user unknown from 10.0.0.1 port 5555",
            ("invalid_user", "failure", "unknown", "10.0.0.1", 5555),
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
            "Disconnecting invalid user admin 10.0.0.2 port 4: Too many authentication failures "
            "[preauth]",
            ("max_auth_attempts_exceeded", "failure", "admin", "10.0.0.2", 4),
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
            "Address 10.0.0.8 maps to host.example, but this does not map back to the address "
            "- POSSIBLE BREAK-IN ATTEMPT!",
            ("reverse_mapping_failed", None, None, "10.0.0.8", None),
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
        # The old detectors.sshd left this one generic; PAM's "user unknown" is a failure.
        (
            "pam_unix(sshd:auth): check pass; user unknown",
            ("pam_user_unknown", "failure", None, None, None),
        ),
        (
            "User root from 10.0.0.7 not allowed because not listed in AllowUsers",
            ("user_not_allowed", "failure", "root", "10.0.0.7", None),
        ),
        (
            "Unable to negotiate with 10.0.0.7 port 4444: no matching key exchange method "
            "found. Their offer: diffie-hellman-group1-sha1 [preauth]",
            ("ssh_negotiation_failed", None, None, "10.0.0.7", 4444),
        ),
        (
            "fatal: Timeout before authentication for 10.0.0.7 port 4445",
            ("ssh_login_timeout", "failure", None, "10.0.0.7", 4445),
        ),
        (
            'Connection from 10.0.0.7 port 4446 on 10.0.0.1 port 22 rdomain ""',
            ("ssh_connection", None, None, "10.0.0.7", 4446),
        ),
    ],
)
def test_classifies_sshd_messages(
    message: str, expected: tuple[str, str | None, str | None, str | None, int | None]
) -> None:
    flat = _flat(_sshd(message))

    found = (
        flat.get("event.action"),
        flat.get("event.outcome"),
        flat.get("user.name"),
        flat.get("source.ip"),
        flat.get("source.port"),
    )
    assert found == expected


@pytest.mark.parametrize(
    "message",
    [
        "Server listening on 0.0.0.0 port 22.",
        "Server listening on :: port 22.",
        "PAM service(sshd) ignoring max retries; 6 > 3",
        "pam_unix(sshd:auth): auth could not identify password for [an]",
        "Received signal 15; terminating.",
        "",
    ],
)
def test_other_sshd_messages_are_left_generic(message: str) -> None:
    assert _sshd(message) is None


def test_session_events_are_session_start_and_end() -> None:
    opened = _sshd("pam_unix(sshd:session): session opened for user an(uid=1000) by (uid=0)")
    closed = _sshd("pam_unix(sshd:session): session closed for user an")

    assert opened is not None and closed is not None
    assert (opened["event"]["category"], opened["event"]["type"]) == (["session"], ["start"])
    assert opened["user"] == {"name": "an", "id": "1000"}
    assert (closed["event"]["category"], closed["event"]["type"]) == (["session"], ["end"])


def test_connection_from_names_this_server_as_destination() -> None:
    flat = _flat(_sshd("Connection from 10.0.0.7 port 4446 on 10.0.0.1 port 22"))

    assert (flat["destination.ip"], flat["destination.port"]) == ("10.0.0.1", 22)


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
    flat = _flat(_sshd(message))

    assert (flat["source.ip"], flat["source.port"]) == ("10.1.2.3", 22)
    assert "6.6.6.6" in flat["user.name"]


def test_a_host_name_in_place_of_an_address_is_source_domain() -> None:
    fragment = _sshd(
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost=ec2-52-80-34-196.cn-north-1.compute.amazonaws.com.cn"
    )

    assert fragment is not None
    assert fragment["source"] == {"domain": "ec2-52-80-34-196.cn-north-1.compute.amazonaws.com.cn"}


def test_reverse_mapping_keeps_the_claimed_name() -> None:
    fragment = _sshd(
        "reverse mapping checking getaddrinfo for ns.example.com [173.234.31.186] failed - "
        "POSSIBLE BREAK-IN ATTEMPT!"
    )

    assert fragment is not None
    assert fragment["source"] == {"ip": "173.234.31.186", "domain": "ns.example.com"}


def test_no_identification_string_is_elastics_dropped_ip() -> None:
    flat = _flat(_sshd("Did not receive identification string from 2.125.160.217 port 4242"))

    assert flat["system.auth.ssh.dropped_ip"] == flat["source.ip"] == "2.125.160.217"
    assert flat["source.port"] == 4242


def test_vietnamese_user_name_survives() -> None:
    fragment = _sshd("Failed password for invalid user nguyễn.văn.a from 10.1.2.3 port 22 ssh2")

    assert fragment is not None and fragment["user"] == {"name": "nguyễn.văn.a"}


def test_user_name_escaped_by_sshd_is_decoded() -> None:
    # sshd writes non-ASCII bytes of what a client sent as octal escapes.
    escaped = "nguy\\341\\273\\205n.v\\304\\203n.a"
    fragment = _sshd(f"Invalid user {escaped} from 10.1.2.3 port 22")

    assert fragment is not None and fragment["user"] == {"name": "nguyễn.văn.a"}


def test_escapes_that_are_not_utf8_are_kept() -> None:
    fragment = _sshd("Invalid user a\\377b from 10.1.2.3")

    assert fragment is not None and fragment["user"] == {"name": "a\\377b"}
    assert unescape_octal("tr\\341\\272\\247n") == "trần"


def test_loghub_linux_style_tags_reach_pam() -> None:
    # Old syslogd tagged the PAM module into the program: "sshd(pam_unix)[19939]: ...".
    fragment = _sshd(
        "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
        "sshd(pam_unix)",
    )
    unknown = _sshd("check pass; user unknown", "sshd(pam_unix)")

    assert _flat(fragment) == {
        "event.action": "pam_auth_failure",
        "event.category": ["authentication"],
        "event.type": ["info"],
        "event.outcome": "failure",
        "source.ip": "218.188.2.4",
    }
    assert unknown is not None and unknown["event"]["action"] == "pam_user_unknown"


# --- loghub OpenSSH_2k: 2,000 real lines, with loghub's own template per line ----------------


def _expected_class(template: str) -> str | None:
    inner = template.removeprefix("message repeated <*> times: [ ")
    for prefix, name in (("Failed ", "failed"), ("Accepted ", "accepted")):
        if inner.startswith(prefix):
            return name
    return "invalid_user" if template.startswith("Invalid user ") else None


def _found_class(fragment: Fragment | None) -> str | None:
    action = (fragment or {}).get("event", {}).get("action")
    if action == "ssh_login":
        return {"failure": "failed", "success": "accepted"}[str(fragment["event"]["outcome"])]
    return "invalid_user" if action == "invalid_user" else None


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"no loghub OpenSSH data at {LOGHUB}")
def test_loghub_openssh_lines_all_parse_and_classify_as_loghub_does() -> None:
    lines = (LOGHUB / "OpenSSH_2k.log").read_text("utf-8").splitlines()
    with (LOGHUB / "OpenSSH_2k.log_structured.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(lines) == len(rows) == 2000

    expected: Counter[str | None] = Counter()
    found: Counter[str | None] = Counter()
    classified = 0
    wrong = []
    for number, (text, row) in enumerate(zip(lines, rows, strict=True), start=1):
        assert int(row["LineId"]) == number
        line = parse_syslog(text, RECEIVED)
        # loghub trims trailing blanks from Content.
        assert line.message.rstrip() == row["Content"], f"line {number}"
        assert (line.program, line.pid) == ("sshd", int(row["Pid"]))
        assert line.hostname == row["Component"]
        fragment = PARSER.parse(line, CONTEXT)
        if fragment is not None:
            _assert_valid(fragment)
            classified += 1
        want, got = _expected_class(row["EventTemplate"]), _found_class(fragment)
        expected[want] += 1
        found[got] += 1
        if want != got:
            wrong.append(f"line {number}: expected {want}, got {got}: {text}")

    assert wrong == []
    assert found == expected
    assert expected["failed"] > 0 and expected["accepted"] > 0 and expected["invalid_user"] > 0
    # Left generic: "PAM service(sshd) ignoring max retries" (7), "fatal: Write failed" (1).
    assert classified == 1992


# --- Elastic's expected output for its own sshd test lines -----------------------------------

# Fields Elastic sets that we set the same way. Not compared: event.category and event.type
# (Elastic uses "info" and the non-ECS "authentication_success"; we use ECS's "start"),
# event.action for "Invalid user" (ours is invalid_user), related.* and host.* (the
# normalizer's), GeoIP enrichment and pipeline bookkeeping.
_ELASTIC_FIELDS = (
    "event.outcome",
    "user.name",
    "source.ip",
    "source.port",
    "system.auth.ssh.event",
    "system.auth.ssh.method",
    "system.auth.ssh.signature",
    "system.auth.ssh.dropped_ip",
)


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
@pytest.mark.parametrize(("text", "elastic"), _elastic_sshd_cases())
def test_agrees_with_elastic_system_auth(text: str, elastic: dict[str, Any]) -> None:
    line = parse_syslog(text, RECEIVED)
    assert (line.program, line.pid, line.hostname) == (
        elastic["process.name"],
        elastic["process.pid"],
        elastic["host.hostname"],
    )
    fragment = PARSER.parse(line, CONTEXT)
    assert fragment is not None
    ours = _flat(fragment)

    for field in _ELASTIC_FIELDS:
        if field in elastic:
            assert ours.get(field) == elastic[field], field
    if elastic.get("system.auth.ssh.event") == "Invalid":
        assert ours["event.action"] == "invalid_user"
    elif "event.action" in elastic:
        assert ours["event.action"] == elastic["event.action"]
    if "authentication" in elastic.get("event.category", []):
        assert "authentication" in ours["event.category"]


def test_elastic_fixture_has_sshd_lines() -> None:
    # Guards the parametrized test above against silently running on no cases at all.
    if not AUTH_FIXTURES.is_dir():
        pytest.skip(f"no ECS fixtures at {AUTH_FIXTURES}")
    cases = _elastic_sshd_cases()
    assert len(cases) == 5
    assert all(re.search(r" sshd\[\d+\]: ", case.values[0]) for case in cases)


# --- no input makes the parser fail -------------------------------------------------------------

_STARTS = [
    "", "Failed password for ", "Accepted publickey for ", "Invalid user ", "Connection closed by ",
    "Disconnected from user ", "Received disconnect from ", "pam_unix(sshd:auth): ",
    "pam_unix(sshd:session): session opened for user ", "PAM 3 more authentication failures; ",
    "input_userauth_request: invalid user ", "Disconnecting: Too many authentication failures",
    "reverse mapping checking getaddrinfo for ", "User ", "Connection from ",
    "message repeated 3 times: [ ", "Did not receive identification string from ",
]  # fmt: skip
_MESSAGES = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("utf-8", "replace")),
    st.tuples(st.sampled_from(_STARTS), st.text()).map("".join),
    st.tuples(
        st.sampled_from(_STARTS), st.text(), st.sampled_from([" from ", " port ", " ssh2", ": "])
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(
    program=st.sampled_from(["sshd", "sshd-session", "sshd(pam_unix)", "sshd-auth"]),
    message=_MESSAGES,
)
def test_any_message_parses_or_is_left_alone(program: str, message: str) -> None:
    fragment = PARSER.parse(SyslogLine(RECEIVED, None, program, None, message), CONTEXT)

    assert fragment is None or isinstance(fragment, dict)
    if fragment is not None:
        _assert_valid(fragment)


@pytest.mark.parametrize("start", _STARTS)
def test_huge_messages_take_linear_time(start: str) -> None:
    # 1 MiB built to make a backtracking pattern retry at every repeat.
    for filler in ("a from b port 1 ", "rhost= user= ", " ", "\\341", "x"):
        message = start + filler * (2**20 // len(filler))
        started = datetime.now(UTC)
        fragment = _sshd(message)
        assert fragment is None or isinstance(fragment, dict)
        assert (datetime.now(UTC) - started).total_seconds() < 2, (start, filler)
