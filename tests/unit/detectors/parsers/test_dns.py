"""Tests of detectors.parsers.dns: BIND named messages and query log files to ECS fragments.

The only real named lines in /work/shared/data are 16 in loghub's Linux sample, all
"notify question section contains no SOA" (not classified, so None). Every other named line
below is a HAND-WRITTEN EXAMPLE, written for these tests after the formats BIND 9 writes
(ISC's ARM, "The category Phrase"/querylog, and named's source for the denial messages);
addresses are from documentation or private ranges.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, NotMine, ParseContext
from detectors.parsers.dns import BindQueryFileParser, BindQueryParser
from detectors.parsers.network import NETWORK_LINE_PARSERS, NETWORK_PROGRAM_PARSERS
from detectors.syslog import SyslogLine, parse_syslog
from socpipe.records import EcsEvent
from tests.support.ecs import ECS_CATEGORIES, ECS_TYPES

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)
PROGRAM = BindQueryParser()
FILE = BindQueryFileParser()
ICT = timezone(timedelta(hours=7))


# --- hand-written example messages (not real server output) -----------------------------------

QUERY_911 = (
    "client @0x7f64bc0a0f10 192.168.1.10#53412 (www.example.com): query: www.example.com IN A"
    " +E(0)K (192.168.1.1)"
)
QUERY_99 = (
    "client 192.168.1.11#40001 (mail.example.vn): query: mail.example.vn IN MX + (192.168.1.1)"
)
QUERY_98 = "client 192.168.1.12#40002: query: example.vn IN NS -E (192.168.1.1)"
QUERY_PREFIXED = (
    "queries: info: client @0x7f1a2c0b3d40 10.20.30.40#60111 (cong.example.gov.vn):"
    " query: cong.example.gov.vn IN AAAA +E(0)DC (10.20.0.53)"
)
QUERY_IPV6_TCP_VIEW = (
    "client @0x7f1a2c0b3d40 2001:db8:1::25#38211 (example.vn): view internal:"
    " query: example.vn IN DNSKEY -ETD (2001:db8:1::53)"
)
QUERY_CACHE_DENIED = (
    "client @0x7f0c5c017a60 198.51.100.99#31337 (example.org): query (cache)"
    " 'example.org/ANY/IN' denied (allow-query-cache did not match)"
)
UPDATE_DENIED = "client @0x7f0c5c017a60 198.51.100.99#5353: update 'example.vn/IN' denied"
TRANSFER_DENIED = (
    "security: error: client @0x7f0c5c017a60 198.51.100.98#41870 (example.vn):"
    " zone transfer 'example.vn/AXFR/IN' denied"
)
TRANSFER_STARTED = (
    "client @0x7f0c5c0180b0 10.20.0.54#50122 (example.vn): transfer of 'example.vn/IN':"
    " AXFR-style IXFR started (serial 2024121001)"
)
UPDATING = (
    "client @0x7f0c5c0180b0 10.20.0.10#49152/key dhcp-key: updating zone 'example.vn/IN':"
    " adding an RR at 'may-tinh-01.example.vn' A 10.20.5.31"
)
LAME = "lame server resolving 'example.com' (in 'example.com'?): 192.0.2.53#53"
RESOLVE_ERROR = (
    "lame-servers: info: SERVFAIL unexpected RCODE resolving 'bad.example.net/A/IN': 192.0.2.54#53"
)
ZONE_LOADED = "zone example.vn/IN: loaded serial 2024121001"
ZONE_LOADED_VIEW = "zone 20.10.in-addr.arpa/IN/internal: loaded serial 7 (DNSSEC signed)"
ZONE_FAILED = "zone example.vn/IN: loading from master file db.example.vn failed: file not found"
ZONE_NOT_LOADED = "zone example.vn/IN: not loaded due to errors."

QUERY_FILE_LINE = (
    "10-Dec-2024 06:55:46.123 queries: info: client @0x7f64bc0a0f10 192.168.1.10#53412"
    " (www.example.com): query: www.example.com IN A +E(0)K (192.168.1.1)"
)


def _line(message: str) -> SyslogLine:
    return SyslogLine(timestamp=RECEIVED, hostname="ns1", program="named", pid=812, message=message)


def _program(message: str) -> Fragment:
    fragment = PROGRAM.parse(_line(message), CONTEXT)
    assert fragment is not None, message
    _assert_valid(fragment)
    return fragment


def _file(line: str) -> Fragment:
    fragment = FILE.parse(line, CONTEXT)
    _assert_valid(fragment)
    return fragment


def _assert_valid(fragment: Fragment) -> None:
    event: dict[str, Any] = fragment.get("event", {})
    assert set(event.get("category", [])) <= ECS_CATEGORIES
    assert set(event.get("type", [])) <= ECS_TYPES
    for owned in ("organization", "labels", "related", "host"):
        assert owned not in fragment
    stamp = fragment.get("@timestamp", RECEIVED)
    assert isinstance(stamp, datetime)
    assert stamp.tzinfo is not None
    EcsEvent.model_validate({**fragment, "@timestamp": stamp, "event": dict(event)})


# --- queries -----------------------------------------------------------------------------------


def test_query_bind_9_11() -> None:
    fragment = _program(QUERY_911)
    assert fragment == {
        "event": {"action": "query", "category": ["network"], "type": ["protocol", "info"]},
        "network": {"protocol": "dns", "transport": "udp", "type": "ipv4"},
        "dns": {
            "type": "query",
            "question": {"name": "www.example.com", "class": "IN", "type": "A"},
            "header_flags": ["RD"],
        },
        "bind": {"flags": "+E(0)K"},
        "source": {"ip": "192.168.1.10", "port": 53412},
        "destination": {"ip": "192.168.1.1"},
    }


def test_query_older_forms() -> None:
    old = _program(QUERY_99)
    assert old["dns"]["question"] == {"name": "mail.example.vn", "class": "IN", "type": "MX"}
    assert old["source"] == {"ip": "192.168.1.11", "port": 40001}
    oldest = _program(QUERY_98)
    assert oldest["dns"]["question"]["type"] == "NS"
    assert "header_flags" not in oldest["dns"]  # "-": no recursion asked for


def test_query_with_category_prefix_ipv6_tcp_and_view() -> None:
    prefixed = _program(QUERY_PREFIXED)
    assert prefixed["dns"]["header_flags"] == ["RD", "DO", "CD"]
    assert prefixed["destination"] == {"ip": "10.20.0.53"}
    v6 = _program(QUERY_IPV6_TCP_VIEW)
    assert v6["source"] == {"ip": "2001:db8:1::25", "port": 38211}
    assert v6["network"] == {"protocol": "dns", "transport": "tcp", "type": "ipv6"}
    assert v6["dns"]["header_flags"] == ["DO"]
    assert v6["bind"] == {"flags": "-ETD", "view": "internal"}
    assert v6["destination"] == {"ip": "2001:db8:1::53"}


# --- other messages ----------------------------------------------------------------------------


def test_denials_are_failures() -> None:
    query = _program(QUERY_CACHE_DENIED)
    assert query["event"] == {
        "action": "query",
        "category": ["network"],
        "type": ["denied"],
        "outcome": "failure",
        "reason": "allow-query-cache did not match",
    }
    assert query["dns"]["question"] == {"name": "example.org", "type": "ANY", "class": "IN"}
    assert query["source"] == {"ip": "198.51.100.99", "port": 31337}
    update = _program(UPDATE_DENIED)
    assert update["event"]["action"] == "update"
    assert update["event"]["outcome"] == "failure"
    assert update["dns"]["question"] == {"name": "example.vn"}
    transfer = _program(TRANSFER_DENIED)
    assert transfer["event"]["action"] == "zone-transfer"
    assert transfer["event"]["type"] == ["denied"]
    assert transfer["source"]["ip"] == "198.51.100.98"


def test_transfers_and_updates_that_happen() -> None:
    started = _program(TRANSFER_STARTED)
    assert started["event"]["action"] == "zone-transfer"
    assert started["event"]["type"] == ["start"]
    assert started["event"]["outcome"] == "success"
    assert started["dns"]["question"]["name"] == "example.vn"
    update = _program(UPDATING)
    assert update["event"]["action"] == "update"
    assert update["event"]["type"] == ["change"]
    assert update["source"] == {"ip": "10.20.0.10", "port": 49152}
    assert update["bind"] == {"key": "dhcp-key"}


def test_lame_server_and_resolver_errors() -> None:
    lame = _program(LAME)
    assert lame["event"]["action"] == "lame-server"
    assert lame["destination"] == {"ip": "192.0.2.53", "port": 53}
    assert lame["dns"]["question"]["name"] == "example.com"
    error = _program(RESOLVE_ERROR)
    assert error["event"]["outcome"] == "failure"
    assert error["error"]["message"] == "SERVFAIL unexpected RCODE"
    assert error["dns"]["question"] == {"name": "bad.example.net", "type": "A", "class": "IN"}


def test_zone_loads() -> None:
    loaded = _program(ZONE_LOADED)
    assert loaded["event"] == {
        "action": "zone-load",
        "category": ["configuration"],
        "type": ["change"],
        "outcome": "success",
    }
    assert _program(ZONE_LOADED_VIEW)["dns"]["question"]["name"] == "20.10.in-addr.arpa"
    failed = _program(ZONE_FAILED)
    assert failed["event"]["outcome"] == "failure"
    assert failed["error"]["message"] == "file not found"
    assert _program(ZONE_NOT_LOADED)["event"]["outcome"] == "failure"


def test_other_named_messages_give_none() -> None:
    for message in (
        "starting BIND 9.18.28-1~deb12u2-Debian (Extended Support Version) <id:>",
        "zone example.vn/IN: sending notifies (serial 2024121001)",
        "notify question section contains no SOA",
        "client @0x7f 192.0.2.1#53 (x): something new",
        "",
    ):
        assert PROGRAM.parse(_line(message), CONTEXT) is None, message


def test_real_named_lines_from_loghub() -> None:
    path = DATA / "loghub" / "Linux" / "Linux_2k.log"
    if not path.exists():
        pytest.skip(f"no loghub Linux sample at {path}")
    named = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = parse_syslog(text, RECEIVED)
        if line.program == "named":
            named.append(PROGRAM.parse(line, CONTEXT))
    assert len(named) == 16
    assert named == [None] * 16  # all "notify question section contains no SOA"


# --- BIND's own log file -----------------------------------------------------------------------


def test_query_log_file_line() -> None:
    fragment = _file(QUERY_FILE_LINE)
    assert fragment["@timestamp"] == datetime(2024, 12, 10, 6, 55, 46, 123000, tzinfo=ICT)
    assert fragment["event"]["timezone"] == "Asia/Ho_Chi_Minh"
    assert fragment["log"] == {"logger": "queries", "level": "info"}
    assert fragment["source"] == {"ip": "192.168.1.10", "port": 53412}
    assert fragment["dns"]["question"]["name"] == "www.example.com"
    assert fragment["message"].startswith("queries: info: client @0x7f64bc0a0f10")
    assert FILE.sniff(QUERY_FILE_LINE)


def test_file_time_forms_and_zones() -> None:
    query = QUERY_FILE_LINE.split(" ", 2)[2]
    utc = _file(f"2024-12-09T23:55:46.123Z {query}")
    assert utc["@timestamp"] == datetime(2024, 12, 9, 23, 55, 46, 123000, tzinfo=UTC)
    assert "timezone" not in utc["event"]
    local = _file(f"2024-12-10T06:55:46.123 {query}")
    assert local["@timestamp"] == datetime(2024, 12, 10, 6, 55, 46, 123000, tzinfo=ICT)
    bare = _file("10-Dec-2024 06:55:46.123 " + QUERY_911)  # no category or severity printed
    assert "log" not in bare
    severity_only = _file("10-Dec-2024 06:55:46.123 info: " + QUERY_911)
    assert severity_only["log"] == {"level": "info"}
    utc_context = FILE.parse(QUERY_FILE_LINE, ParseContext(received=RECEIVED, timezone="UTC"))
    assert utc_context["@timestamp"] == datetime(2024, 12, 10, 6, 55, 46, 123000, tzinfo=UTC)


def test_file_impossible_dates_keep_the_line_without_time() -> None:
    for stamp in ("30-Feb-2024 06:55:46.123", "10-Foo-2024 06:55:46.123", "10-Dec-2024 25:61:61"):
        fragment = _file(f"{stamp} {QUERY_911}")
        assert "@timestamp" not in fragment
        assert fragment["dns"]["question"]["name"] == "www.example.com"


def test_file_lines_of_other_categories_and_programs() -> None:
    general = _file("10-Dec-2024 06:55:46.123 general: info: managed-keys-zone: loaded serial 9")
    assert general["log"] == {"logger": "general", "level": "info"}
    assert "category" not in general["event"]
    tomcat = "10-Dec-2024 06:55:46.123 INFO [main] org.apache.catalina.startup.Catalina.start"
    with pytest.raises(NotMine):
        FILE.parse(tomcat, CONTEXT)
    with pytest.raises(NotMine):
        FILE.parse("Dec 10 06:55:46 ns1 named[1]: " + QUERY_911, CONTEXT)
    assert not FILE.sniff(tomcat)


def test_registered() -> None:
    assert any(isinstance(p, BindQueryParser) for p in NETWORK_PROGRAM_PARSERS)
    assert any(isinstance(p, BindQueryFileParser) for p in NETWORK_LINE_PARSERS)
    assert PROGRAM.programs == frozenset({"named"})
    assert FILE.name == FILE.dataset == PROGRAM.dataset == "bind.query"


def test_real_lines_of_other_formats_are_not_taken_by_the_file_parser() -> None:
    logs = sorted((DATA / "loghub").glob("*/*.log")) + sorted(
        (DATA / "ecs-fixtures").rglob("*.log")
    )
    if not logs:
        pytest.skip(f"no shared data at {DATA}")
    taken = []
    for path in logs:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if FILE.sniff(line):
                taken.append(line)
            try:
                FILE.parse(line, CONTEXT)
            except NotMine:
                continue
            taken.append(line)
    assert taken == []


# --- odd input ---------------------------------------------------------------------------------


def _check_any(text: str) -> None:
    fragment = PROGRAM.parse(_line(text), CONTEXT)
    if fragment is not None:
        _assert_valid(fragment)
    FILE.sniff(text)
    with contextlib.suppress(NotMine):
        _assert_valid(FILE.parse(text, CONTEXT))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    _check_any(text)
    _check_any("10-Dec-2024 06:55:46.123 " + text)


@settings(max_examples=300, deadline=None)
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_arbitrary_bytes_decoded_with_replacement(text: str) -> None:
    _check_any(text)
    _check_any("queries: info: " + text)


_PIECES = st.one_of(
    st.text(max_size=15),
    st.integers(min_value=0, max_value=2**70).map(str),
    st.sampled_from(["192.0.2.1", "2001:db8::1", "fe80::1%eth0", "999.1.1.1", "::", "'", "(",
                     ")", "\\)", "#", "/", ": ", "+E(0)K", "-", "IN", "A", "denied", "view x: "]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "client @0x1 {}#{} ({}): query: {} {} {} {} ({})",
            "client {}#{}: {}query (cache) '{}/{}/{}' denied ({})",
            "lame server resolving '{}' (in '{}'?): {}#{}",
            "{} resolving '{}/{}/{}': {}#{}",
            "zone {}/{}: loading from master file {} failed: {}",
            "{}-{}-{} {}:{}:{}.{} queries: info: client {}#{}: query: a IN A + ({})",
        ]
    ),
    st.lists(_PIECES, min_size=10, max_size=10),
)
def test_templates_with_odd_pieces(template: str, pieces: list[str]) -> None:
    _check_any(template.format(*pieces))


def test_one_mebibyte_lines() -> None:
    mib = 2**20
    for text in (
        "client " * (mib // 7),
        "client @0x1 192.0.2.1#53 (" + "\\" * mib,
        QUERY_911.replace("www.example.com IN", "a" * mib + " IN"),
        "x" * mib + " resolving 'a/b/c': 192.0.2.1#53",
        "a: b: " + "'" * mib,
        "zone " + "a" * mib + "/IN: loaded serial 1",
        "10-Dec-2024 06:55:46.123 queries: " + "client " * (mib // 7),
    ):
        _check_any(text)
