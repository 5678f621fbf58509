"""Tests of detectors.syslog: RFC 3164, RFC 5424 and ISO-timestamp lines, years and zones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from detectors.syslog import parse_syslog
from socpipe.errors import ConfigError, RecordError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ECS_FIXTURES = DATA / "ecs-fixtures" / "system"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)


def test_bsd_line_splits_into_header_and_message() -> None:
    line = parse_syslog(
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186", RECEIVED
    )

    assert line.timestamp == datetime(2024, 12, 10, 6, 55, 46, tzinfo=HCM)
    assert line.hostname == "LabSZ"
    assert line.program == "sshd"
    assert line.pid == 24200
    assert line.message == "Invalid user webmaster from 173.234.31.186"
    assert line.priority is None
    assert line.zone_assumed is True


def test_bsd_line_with_priority_single_digit_day_and_crlf() -> None:
    line = parse_syslog("<38>Apr  4 03:39:57 web-01 sudo: vagrant : TTY=pts/0\r\n", RECEIVED)

    assert line.priority == 38
    assert line.timestamp == datetime(2024, 4, 4, 3, 39, 57, tzinfo=HCM)
    assert (line.hostname, line.program, line.pid) == ("web-01", "sudo", None)
    assert line.message == "vagrant : TTY=pts/0"


def test_bsd_line_is_read_in_the_zone_given() -> None:
    line = parse_syslog("Dec 10 06:55:46 LabSZ sshd[1]: x", RECEIVED, tz="UTC")

    assert line.timestamp == datetime(2024, 12, 10, 6, 55, 46, tzinfo=UTC)


def test_bsd_line_without_hostname_keeps_its_program() -> None:
    line = parse_syslog("Dec 10 06:55:46 sshd[7]: error: kex_exchange_identification", RECEIVED)

    assert (line.hostname, line.program, line.pid) == (None, "sshd", 7)
    assert line.message == "error: kex_exchange_identification"


def test_bsd_line_without_tag_is_all_message() -> None:
    line = parse_syslog("Apr 4 03:39:57 --- last message repeated 1 time ---", RECEIVED)

    assert (line.hostname, line.program, line.pid) == (None, None, None)
    assert line.message == "--- last message repeated 1 time ---"


def test_vietnamese_text_survives() -> None:
    text = "Failed password for invalid user nguyễn.văn.a from 10.1.2.3 port 22 ssh2 — Sở TT&TT"
    line = parse_syslog(f"Dec 10 06:55:46 máy-chủ-01 sshd[5]: {text}", RECEIVED)

    assert line.hostname == "máy-chủ-01"
    assert line.message == text


@pytest.mark.parametrize(
    ("line", "received", "expected"),
    [
        # Read on New Year's morning: last night's line is last year's.
        (
            "Dec 31 23:59:58 h p: x",
            datetime(2025, 1, 1, 0, 0, 5, tzinfo=HCM),
            datetime(2024, 12, 31, 23, 59, 58, tzinfo=HCM),
        ),
        # The sender's clock is past midnight already: its line is next year's.
        (
            "Jan  1 00:00:01 h p: x",
            datetime(2024, 12, 31, 23, 59, 0, tzinfo=HCM),
            datetime(2025, 1, 1, 0, 0, 1, tzinfo=HCM),
        ),
        # A date months ahead of the time received is from last year (an old file read late).
        (
            "Jun  1 12:00:00 h p: x",
            datetime(2025, 3, 1, tzinfo=HCM),
            datetime(2024, 6, 1, 12, 0, tzinfo=HCM),
        ),
        # A day or two ahead is clock skew, not last year.
        (
            "Mar  2 12:00:00 h p: x",
            datetime(2025, 3, 1, tzinfo=HCM),
            datetime(2025, 3, 2, 12, 0, tzinfo=HCM),
        ),
        # 29 February exists only in the leap year before.
        (
            "Feb 29 10:00:00 h p: x",
            datetime(2025, 3, 1, tzinfo=HCM),
            datetime(2024, 2, 29, 10, 0, tzinfo=HCM),
        ),
        # The year is that of the zone of the line, not of UTC: 1 Jan 01:00 in Ho Chi Minh City.
        (
            "Jan  1 00:30:00 h p: x",
            datetime(2024, 12, 31, 18, 0, tzinfo=UTC),
            datetime(2025, 1, 1, 0, 30, tzinfo=HCM),
        ),
    ],
)
def test_bsd_year_comes_from_the_time_received(
    line: str, received: datetime, expected: datetime
) -> None:
    assert parse_syslog(line, received).timestamp == expected


# From RFC 5424 section 6.5, with an escaped "]" inside a value.
STRUCTURED_DATA = (
    '[exampleSDID@32473 iut="3" eventSource="Appl\\]ication"][examplePriority@32473 class="high"]'
)


def test_rfc5424_line_with_structured_data() -> None:
    line = parse_syslog(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 8710 ID47 "
        + STRUCTURED_DATA
        + " \ufeffAn application event log entry",
        RECEIVED,
    )

    assert line.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert line.zone_assumed is False
    assert (line.hostname, line.program, line.pid) == ("mymachine.example.com", "evntslog", 8710)
    assert line.priority == 165
    assert line.msgid == "ID47"
    assert line.structured_data == STRUCTURED_DATA
    assert line.message == "An application event log entry"


def test_rfc5424_nil_values() -> None:
    line = parse_syslog(
        "<34>1 2003-10-11T22:14:15.003-07:00 - su - - - 'su root' failed for lonvick", RECEIVED
    )

    assert line.timestamp == datetime(
        2003, 10, 11, 22, 14, 15, 3000, tzinfo=timezone(timedelta(hours=-7))
    )
    assert (line.hostname, line.program, line.pid, line.msgid) == (None, "su", None, None)
    assert line.structured_data is None
    assert line.message == "'su root' failed for lonvick"


def test_rfc5424_without_time_or_message_uses_the_time_received() -> None:
    line = parse_syslog("<13>1 - host sshd 42 - -", RECEIVED)

    assert line.timestamp == RECEIVED
    assert (line.hostname, line.program, line.pid, line.message) == ("host", "sshd", 42, "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2018-10-23T09:16:50.123456+02:00 web-01 sshd[123]: Accepted publickey",
            datetime(2018, 10, 23, 9, 16, 50, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "<13>2018-10-23T09:16:50Z web-01 sshd[123]: Accepted publickey",
            datetime(2018, 10, 23, 9, 16, 50, tzinfo=UTC),
        ),
        (
            "1986-04-26T01:23:45.101+0400 web-01 sshd[123]: Accepted publickey",
            datetime(1986, 4, 26, 1, 23, 45, 101000, tzinfo=timezone(timedelta(hours=4))),
        ),
        # Nanoseconds are cut to the microseconds a datetime holds.
        (
            "2018-10-23T09:16:50.123456789+07:00 web-01 sshd[123]: Accepted publickey",
            datetime(2018, 10, 23, 9, 16, 50, 123456, tzinfo=HCM),
        ),
    ],
)
def test_iso_timestamp_variant(text: str, expected: datetime) -> None:
    line = parse_syslog(text, RECEIVED)

    assert line.timestamp == expected
    assert line.zone_assumed is False
    assert (line.hostname, line.program, line.pid) == ("web-01", "sshd", 123)
    assert line.message == "Accepted publickey"


def test_iso_timestamp_without_zone_is_read_in_the_zone_given() -> None:
    line = parse_syslog("2019-06-14T10:40:20.912134 localhost sudo: session opened", RECEIVED)

    assert line.timestamp == datetime(2019, 6, 14, 10, 40, 20, 912134, tzinfo=HCM)
    assert line.zone_assumed is True


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("\r\n", "it is empty"),
        ("hello world", "no timestamp at the start"),
        ("sshd[1]: Dec 10 06:55:46 x", "no timestamp at the start"),
        ("<999>Dec 10 06:55:46 h p: x", "priority <999> is above 191"),
        ("<34>1 2003-10-11T22:14:15Z host", "not an RFC 5424 syslog line"),
        ("<34>1 2003-10-11T22:14:15Z host app - - [sd]junk", "not an RFC 5424 syslog line"),
        ("Feb 30 06:55:46 h p: x", "invalid timestamp (day is out of range for month)"),
        ("Foo 10 06:55:46 h p: x", "'Foo' is not a month name"),
        ("2020-13-01T00:00:00Z h p: x", "invalid timestamp (month must be in 1..12)"),
        ("2020-01-01T25:00:00Z h p: x", "invalid timestamp (hour must be in 0..23)"),
    ],
)
def test_a_line_that_is_not_syslog_says_why(text: str, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        parse_syslog(text, RECEIVED)

    assert reason in str(caught.value)


def test_an_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        parse_syslog("Dec 10 06:55:46 h p: x", RECEIVED, tz="Mars/Olympus")


def test_a_naive_time_received_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_syslog("Dec 10 06:55:46 h p: x", datetime(2024, 12, 11))


# Elastic's expected output for single-line events. The harness ran in a zone 2 hours behind UTC
# ("-02:00", or "+00:00" for the older files) and kept milliseconds.
_FIXTURE_ZONES = {
    "auth/timestamp.log": "Etc/GMT+2",
    "syslog/tz-offset.log": "UTC",
    "syslog/suse-syslog.log": "UTC",
    "syslog/darwin-syslog-sample.log": "UTC",
}


def _fixture_cases() -> list[Any]:
    if not ECS_FIXTURES.is_dir():
        return []
    cases = []
    for name, zone in _FIXTURE_ZONES.items():
        log = ECS_FIXTURES / name
        raw = log.read_bytes()
        for doc in json.loads(log.with_name(log.name + "-expected.json").read_text("utf-8")):
            if "multiline" in doc.get("log.flags", []):
                continue
            text = raw[doc["log.offset"] :].split(b"\n", 1)[0].decode("utf-8")
            cases.append(pytest.param(text, zone, doc, id=f"{name}@{doc['log.offset']}"))
    return cases


@pytest.mark.skipif(not ECS_FIXTURES.is_dir(), reason=f"no ECS fixtures at {ECS_FIXTURES}")
@pytest.mark.parametrize(("text", "zone", "expected"), _fixture_cases())
def test_agrees_with_elastic_on_its_fixtures(
    text: str, zone: str, expected: dict[str, object]
) -> None:
    line = parse_syslog(text, RECEIVED, tz=zone)

    assert line.message == expected["message"]
    assert line.hostname == expected.get("host.hostname")
    assert line.program == expected.get("process.name")
    assert line.pid == expected.get("process.pid")
    if "@timestamp" in expected:
        stamp = datetime.fromisoformat(str(expected["@timestamp"]))
        milliseconds = line.timestamp.microsecond // 1000 * 1000
        assert line.timestamp.replace(microsecond=milliseconds) == stamp
