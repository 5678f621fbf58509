"""Tests of detectors.parsers.pfsense: pfSense filterlog CSV to ECS fragments.

There is no real pfSense data in /work/shared/data. Every filterlog line below is a HAND-WRITTEN
EXAMPLE, written for these tests after the raw filter log format Netgate documents
(docs.netgate.com, "Raw Filter Log Format"); addresses are from documentation or private ranges.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, ParseContext
from detectors.parsers.network import NETWORK_PROGRAM_PARSERS
from detectors.parsers.pfsense import PfsenseFilterlogParser
from detectors.syslog import SyslogLine, parse_syslog
from tests.support.ecs import assert_program_fragment

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)
PARSER = PfsenseFilterlogParser()


# --- hand-written example messages (not real device output) -----------------------------------

TCP_BLOCK = (
    "5,,,1000000103,igb1,match,block,in,4,0x0,,64,0,0,DF,6,tcp,60,198.51.100.7,203.0.113.10,"
    "41234,22,0,S,123456,,29200,,mss;sackOK;TS;nop;wscale"
)
UDP_PASS = (
    "76,,,1611234567,igb0.20,match,pass,out,4,0x0,,63,30211,0,none,17,udp,72,10.20.0.15,"
    "203.0.113.53,51514,53,52"
)
ICMP_REQUEST = (
    "120,,,1700001111,em0,match,pass,in,4,0x0,,64,41511,0,DF,1,icmp,84,10.30.0.7,10.30.0.1,"
    "request,4915,12"
)
ICMP_UNREACH_PORT = (
    "9,,,1000000104,igb1,match,block,out,4,0x0,,64,58861,0,none,1,icmp,56,203.0.113.10,"
    "198.51.100.7,unreachport,198.51.100.7,17,33434"
)
ICMP_NEEDFRAG = (
    "9,,,1000000104,igb1,match,pass,out,4,0x0,,64,1,0,none,1,icmp,56,203.0.113.10,"
    "198.51.100.7,needfrag,198.51.100.7,1400"
)
ICMP_OTHER = (
    "9,,,1000000104,igb1,match,block,in,4,0x0,,64,1,0,none,1,icmp,56,198.51.100.7,"
    "203.0.113.10,timexceed,time exceeded in-transit"
)
IPV6_UDP = (
    "6,,,1000000105,igb1.27,match,block,in,6,0x00,0x00000,64,udp,17,32,2001:db8:27::15,"
    "2001:db8:ffff::53,546,547,32"
)
IPV6_ICMP = "6,,,1000000105,igb0,match,pass,out,6,0x00,0x00000,255,ICMPv6,58,32,fe80::1,ff02::1,"
CARP = (
    "21,,,1000005000,igb2,match,pass,out,4,0x10,,255,15042,0,none,112,carp,56,10.0.0.2,"
    "224.0.0.18,advertise,255,1,2,0,1"
)
OPNSENSE_TCP = (
    "82,,,fae559338f65e11c53669fc3642c93c2,vtnet0,match,pass,in,4,0x0,,64,17212,0,DF,6,tcp,"
    "60,10.1.1.5,192.0.2.80,39182,443,0,S,2933149911,,64240,,mss;sackOK;TS;nop;wscale"
)
EXAMPLES = [
    TCP_BLOCK, UDP_PASS, ICMP_REQUEST, ICMP_UNREACH_PORT, ICMP_NEEDFRAG, ICMP_OTHER, IPV6_UDP,
    IPV6_ICMP, CARP, OPNSENSE_TCP,
]  # fmt: skip


def _line(message: str) -> SyslogLine:
    return SyslogLine(
        timestamp=RECEIVED, hostname="pfsense", program="filterlog", pid=72237, message=message
    )


def _parse(message: str) -> Fragment:
    fragment = PARSER.parse(_line(message), CONTEXT)
    assert fragment is not None, message
    _assert_valid(fragment)
    return fragment


def _assert_valid(fragment: Fragment) -> None:
    assert_program_fragment(fragment, RECEIVED)


def test_every_example_parses() -> None:
    for message in EXAMPLES:
        fragment = _parse(message)
        assert fragment["observer"]["vendor"] == "Netgate"
        assert fragment["event"]["category"] == ["network"]


def test_ipv4_tcp_block() -> None:
    fragment = _parse(TCP_BLOCK)
    assert fragment["rule"] == {"id": "1000000103"}
    assert fragment["event"] == {
        "provider": "filterlog",
        "category": ["network"],
        "type": ["connection", "denied"],
        "action": "block",
        "reason": "match",
    }
    assert fragment["observer"] == {
        "vendor": "Netgate",
        "product": "pfSense",
        "type": "firewall",
        "ingress": {"interface": {"name": "igb1"}},
    }
    assert fragment["network"] == {
        "type": "ipv4", "iana_number": "6", "transport": "tcp", "bytes": 60,
    }  # fmt: skip
    assert fragment["source"] == {"ip": "198.51.100.7", "port": 41234}
    assert fragment["destination"] == {"ip": "203.0.113.10", "port": 22}
    assert fragment["pfsense"] == {
        "ip": {"tos": "0x0", "ttl": 64, "id": 0, "offset": 0, "flags": "DF"},
        "tcp": {
            "length": 0,
            "flags": "S",
            "seq": 123456,
            "window": 29200,
            "options": ["mss", "sackOK", "TS", "nop", "wscale"],
        },
    }
    # pf's "in" is about the interface; the normalizer judges direction from the addresses.
    assert "direction" not in fragment["network"]


def test_udp_pass_out_is_on_the_egress_interface_with_its_vlan() -> None:
    fragment = _parse(UDP_PASS)
    assert fragment["event"]["type"] == ["connection", "allowed"]
    assert fragment["observer"]["egress"] == {
        "interface": {"name": "igb0.20"}, "vlan": {"id": "20"},
    }  # fmt: skip
    assert "ingress" not in fragment["observer"]
    assert fragment["destination"] == {"ip": "203.0.113.53", "port": 53}
    assert fragment["pfsense"]["udp"] == {"length": 52}
    assert fragment["pfsense"]["ip"]["flags"] == "none"


def test_icmp_types() -> None:
    request = _parse(ICMP_REQUEST)
    assert request["network"]["transport"] == "icmp"
    assert request["pfsense"]["icmp"] == {"type": "request", "id": 4915, "seq": 12}
    assert "port" not in request["source"]
    unreach = _parse(ICMP_UNREACH_PORT)
    assert unreach["pfsense"]["icmp"] == {
        "type": "unreachport",
        "destination": {"ip": "198.51.100.7"},
        "unreachable": {"iana_number": "17", "port": 33434},
    }
    needfrag = _parse(ICMP_NEEDFRAG)
    assert needfrag["pfsense"]["icmp"]["mtu"] == 1400
    other = _parse(ICMP_OTHER)
    assert other["pfsense"]["icmp"] == {
        "type": "timexceed",
        "description": "time exceeded in-transit",
    }


def test_ipv6() -> None:
    udp = _parse(IPV6_UDP)
    assert udp["network"] == {"type": "ipv6", "iana_number": "17", "transport": "udp", "bytes": 32}
    assert udp["source"] == {"ip": "2001:db8:27::15", "port": 546}
    assert udp["pfsense"]["ip"] == {"tos": "0x00", "flow_label": "0x00000", "ttl": 64}
    icmp6 = _parse(IPV6_ICMP)
    assert icmp6["network"]["transport"] == "ipv6-icmp"  # the IANA keyword, not "icmpv6"


def test_carp_and_opnsense() -> None:
    carp = _parse(CARP)
    assert carp["network"]["transport"] == "vrrp"  # CARP uses VRRP's protocol number
    assert carp["pfsense"]["carp"] == {
        "type": "advertise", "ttl": 255, "vhid": 1, "version": 2, "advskew": 0, "advbase": 1,
    }  # fmt: skip
    opnsense = _parse(OPNSENSE_TCP)
    assert opnsense["rule"]["id"] == "fae559338f65e11c53669fc3642c93c2"
    assert opnsense["destination"]["port"] == 443


def test_through_the_syslog_header() -> None:
    line = parse_syslog(f"<134>Dec 10 06:55:46 filterlog[72237]: {TCP_BLOCK}", RECEIVED)
    fragment = PARSER.parse(line, CONTEXT)
    assert fragment is not None
    assert fragment["source"]["ip"] == "198.51.100.7"


def test_unreadable_lines_give_none() -> None:
    for message in (
        "",
        "not a filterlog line",
        "5,,,1000000103,igb1,match,block,in",  # cut short
        TCP_BLOCK.replace("198.51.100.7", "198.51.100.700"),  # not an address
        TCP_BLOCK.replace(",in,4,", ",sideways,4,"),
        TCP_BLOCK.replace(",in,4,", ",in,5,"),
        "x" + TCP_BLOCK,
    ):
        assert PARSER.parse(_line(message), CONTEXT) is None, message


def test_out_of_range_numbers_are_left_out() -> None:
    huge = "9" * 31
    message = TCP_BLOCK.replace("41234,22", "99999,22").replace(",64,0,0,DF", f",{huge},0,0,DF")
    fragment = _parse(message)
    assert "port" not in fragment["source"]
    assert "ttl" not in fragment["pfsense"]["ip"]


def test_registered_as_a_network_program_parser() -> None:
    assert any(isinstance(p, PfsenseFilterlogParser) for p in NETWORK_PROGRAM_PARSERS)
    assert PARSER.programs == frozenset({"filterlog"})


def test_real_syslog_lines_of_other_programs_give_none() -> None:
    logs = sorted((DATA / "loghub").glob("*/*.log"))
    if not logs:
        pytest.skip(f"no shared data at {DATA}")
    for path in logs:
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            assert PARSER.parse(_line(text), CONTEXT) is None


# --- odd input ---------------------------------------------------------------------------------


def _check_any(message: str) -> None:
    fragment = PARSER.parse(_line(message), CONTEXT)
    if fragment is not None:
        _assert_valid(fragment)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text(message: str) -> None:
    _check_any(message)


@settings(max_examples=300, deadline=None)
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_arbitrary_bytes_decoded_with_replacement(message: str) -> None:
    _check_any(message)


_ODD = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", "4", "6", "tcp", "udp", "icmp", "ICMPv6", "112", "carp", "request",
                     "unreachport", "needfrag", "tstampreply", "2001:db8::1", "10.0.0.1",
                     "::ffff:10.0.0.1", "in", "out", "block", "pass", "1:2", "²"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(EXAMPLES),
    st.lists(st.tuples(st.integers(min_value=0, max_value=40), _ODD), max_size=6),
)
def test_examples_with_fields_replaced(message: str, changes: list[tuple[int, str]]) -> None:
    fields = message.split(",")
    for index, value in changes:
        if index < len(fields):
            fields[index] = value
        else:
            fields.append(value)
    _check_any(",".join(fields))


def test_one_mebibyte_lines() -> None:
    mib = 2**20
    for message in (
        "," * mib,
        TCP_BLOCK + ";wscale" * (mib // 7),
        TCP_BLOCK.replace("mss", "9" * mib),
        "1," * (mib // 2),
        ICMP_OTHER + "," + "x" * mib,
    ):
        _check_any(message)
