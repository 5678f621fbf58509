"""Tests of detectors.parsers.firewall: netfilter packet logs (iptables, UFW, firewalld)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, ParseContext
from detectors.parsers.firewall import KernelFirewallParser
from detectors.syslog import SyslogLine, parse_syslog
from socpipe.records import EcsEvent

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
LOGHUB_LINUX = DATA / "loghub" / "Linux" / "Linux_2k.log"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)
PARSER = KernelFirewallParser()

UFW_BLOCK = (
    "[12345.678901] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 "
    "SRC=203.0.113.9 DST=10.0.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=4242 DF PROTO=TCP "
    "SPT=4242 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0"
)


def _kernel(message: str) -> Fragment | None:
    fragment = PARSER.parse(SyslogLine(RECEIVED, "fw-01", "kernel", None, message), CONTEXT)
    if fragment is not None:
        _assert_valid(fragment)
    return fragment


def _flat(fragment: Fragment | None) -> dict[str, Any]:
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
    assert event["category"] == ["network"]
    assert event["type"][0] == "connection"
    assert set(event["type"]) <= {"connection", "denied", "allowed"}
    assert event["action"] in ("firewall-block", "firewall-allow", "firewall-log")
    for key in ("@timestamp", "event.id", "event.original", "host.name", "related", "message"):
        assert key not in _flat(fragment), f"{key} is the normalizer's"
    EcsEvent.model_validate({"@timestamp": RECEIVED, **fragment})


def test_ufw_block_with_kernel_time() -> None:
    fragment = _kernel(UFW_BLOCK)

    assert fragment == {
        "event": {
            "action": "firewall-block",
            "category": ["network"],
            "type": ["connection", "denied"],
            "outcome": "failure",
        },
        "rule": {"name": "UFW BLOCK"},
        "source": {"ip": "203.0.113.9", "port": 4242, "mac": "52-54-00-65-43-21"},
        "destination": {"ip": "10.0.0.5", "port": 22, "mac": "52-54-00-12-34-56"},
        "network": {"transport": "tcp", "iana_number": "6", "type": "ipv4", "bytes": 60},
        "observer": {"ingress": {"interface": {"name": "eth0"}}},
        "iptables": {
            "ether_type": 2048,
            "length": 60,
            "input_device": "eth0",
            "ttl": 52,
            "id": 4242,
            "tos": 0,
            "precedence_bits": 0,
            "fragment_flags": ["DF"],
            "tcp": {"window": 64240, "reserved_bits": 0, "flags": ["SYN"]},
        },
    }


def test_a_whole_syslog_line() -> None:
    line = parse_syslog(f"Dec 11 07:59:58 fw-01 kernel: {UFW_BLOCK}", RECEIVED)

    assert line.program == "kernel"
    fragment = PARSER.parse(line, CONTEXT)
    assert fragment is not None and fragment["source"]["ip"] == "203.0.113.9"


@pytest.mark.parametrize(
    ("prefix", "action", "rule"),
    [
        ("[UFW BLOCK] ", "firewall-block", "UFW BLOCK"),
        ("[UFW LIMIT BLOCK] ", "firewall-block", "UFW LIMIT BLOCK"),
        ("[UFW ALLOW] ", "firewall-allow", "UFW ALLOW"),
        ("[UFW AUDIT] ", "firewall-log", "UFW AUDIT"),
        ("IPTABLES-DROP: ", "firewall-block", "IPTABLES-DROP"),
        ("iptables DROP_INPUT: ", "firewall-block", "iptables DROP_INPUT"),
        ("FINAL_REJECT: ", "firewall-block", "FINAL_REJECT"),
        ("filter_IN_public_REJECT: ", "firewall-block", "filter_IN_public_REJECT"),
        ("IPT-ACCEPT-SSH: ", "firewall-allow", "IPT-ACCEPT-SSH"),
        ("nft denied: ", "firewall-block", "nft denied"),
        ("NEW-CONN ", "firewall-log", "NEW-CONN"),
        ("", "firewall-log", None),
        ("[ 5.000001] ", "firewall-log", None),
    ],
)
def test_prefix_says_what_the_rule_did(prefix: str, action: str, rule: str | None) -> None:
    fragment = _kernel(
        f"{prefix}IN=eth0 OUT= SRC=198.51.100.7 DST=10.0.0.5 LEN=40 TOS=0x00 PREC=0x00 TTL=250 "
        "ID=54321 PROTO=TCP SPT=53296 DPT=8088 WINDOW=65535 RES=0x00 SYN URGP=0"
    )

    flat = _flat(fragment)
    assert flat["event.action"] == action
    assert flat.get("rule.name") == rule
    expected_type = {"firewall-block": "denied", "firewall-allow": "allowed"}.get(action)
    assert flat["event.type"] == (
        ["connection", expected_type] if expected_type else ["connection"]
    )
    assert flat.get("event.outcome") == {
        "firewall-block": "failure",
        "firewall-allow": "success",
    }.get(action)


def test_outgoing_udp() -> None:
    flat = _flat(
        _kernel(
            "[UFW AUDIT] IN= OUT=ens192 SRC=10.0.0.5 DST=8.8.8.8 LEN=73 TOS=0x00 PREC=0x00 TTL=64 "
            "ID=12345 PROTO=UDP SPT=40000 DPT=53 LEN=53"
        )
    )

    assert flat["observer.egress.interface.name"] == "ens192"
    assert "observer.ingress.interface.name" not in flat
    assert (flat["network.transport"], flat["network.iana_number"]) == ("udp", "17")
    assert flat["iptables.length"] == flat["network.bytes"] == 73
    assert flat["iptables.udp.length"] == 53
    assert flat["iptables.id"] == 12345  # the IP header's, not overwritten by anything after


def test_ipv6() -> None:
    flat = _flat(
        _kernel(
            "[UFW BLOCK] IN=eth0 OUT= MAC=33:33:00:00:00:01:52:54:00:65:43:21:86:dd "
            "SRC=2001:db8::7 DST=2001:db8::1 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=717 PROTO=TCP "
            "SPT=51000 DPT=443 WINDOW=28800 RES=0x00 SYN URGP=0"
        )
    )

    assert (flat["source.ip"], flat["destination.ip"]) == ("2001:db8::7", "2001:db8::1")
    assert flat["network.type"] == "ipv6"
    assert (flat["iptables.ttl"], flat["iptables.flow_label"], flat["iptables.tos"]) == (64, 717, 0)


def test_icmpv6_is_ianas_name() -> None:
    flat = _flat(
        _kernel(
            "IN=eth0 OUT= SRC=fe80::1 DST=ff02::1 LEN=72 TC=0 HOPLIMIT=255 FLOWLBL=0 "
            "PROTO=ICMPv6 TYPE=134 CODE=0"
        )
    )

    assert (flat["network.transport"], flat["network.iana_number"]) == ("ipv6-icmp", "58")
    assert (flat["iptables.icmp.type"], flat["iptables.icmp.code"]) == (134, 0)


def test_icmp_echo() -> None:
    flat = _flat(
        _kernel(
            "IPTABLES-DROP: IN=eth0 OUT= SRC=192.0.2.44 DST=10.0.0.5 LEN=84 TOS=0x00 PREC=0x00 "
            "TTL=63 ID=6789 PROTO=ICMP TYPE=8 CODE=0 ID=98765 SEQ=30123"
        )
    )

    assert flat["iptables.id"] == 6789
    assert flat["iptables.icmp.type"] == 8
    assert (flat["iptables.icmp.id"], flat["iptables.icmp.seq"]) == (98765, 30123)
    assert "source.port" not in flat


def test_icmp_error_quoting_a_packet_keeps_the_outer_addresses() -> None:
    flat = _flat(
        _kernel(
            "[UFW BLOCK] IN=eth0 OUT= SRC=10.0.0.1 DST=10.0.0.5 LEN=68 TOS=0x00 PREC=0xC0 TTL=64 "
            "ID=1 PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.0.5 DST=10.0.0.1 LEN=40 TOS=0x00 PREC=0x00 "
            "TTL=64 ID=2 PROTO=UDP SPT=53 DPT=3333 LEN=20 ] MTU=1500"
        )
    )

    assert (flat["source.ip"], flat["destination.ip"]) == ("10.0.0.1", "10.0.0.5")
    assert "source.port" not in flat
    assert flat["iptables.precedence_bits"] == 0xC0
    assert flat["iptables.icmp.mtu"] == 1500


def test_tcp_sequence_and_other_protocols() -> None:
    tcp = _flat(
        _kernel(
            "IN=eth0 OUT= SRC=192.0.2.1 DST=10.0.0.5 LEN=52 TOS=0x00 PREC=0x00 TTL=50 ID=1 DF "
            "PROTO=TCP SPT=1 DPT=2 SEQ=1000 ACK=2000 WINDOW=10 RES=0x00 ACK PSH URGP=0 MARK=0x1a"
        )
    )
    gre = _flat(
        _kernel("IN=eth0 OUT= SRC=192.0.2.1 DST=10.0.0.5 LEN=52 TOS=0x00 TTL=50 ID=1 PROTO=47")
    )

    assert (tcp["iptables.tcp.seq"], tcp["iptables.tcp.ack"]) == (1000, 2000)
    assert tcp["iptables.tcp.flags"] == ["ACK", "PSH"]
    assert tcp["iptables.mark"] == 0x1A
    assert (gre["network.transport"], gre["network.iana_number"]) == ("gre", "47")


def test_mac_with_more_bytes_and_elastic_values() -> None:
    # As Elastic's iptables module reads a DROP_INPUT line (its MACs ours in ECS's notation).
    flat = _flat(
        _kernel(
            "iptables DROP_INPUT: IN=eth0 OUT= MAC=90:10:35:5a:1e:3a:90:10:76:e0:e2:d5:08:00:45:00 "
            "SRC=198.51.100.68 DST=172.16.54.114 LEN=40 TOS=0x00 PREC=0x00 TTL=250 ID=54321 "
            "PROTO=TCP SPT=53296 DPT=8088 WINDOW=65535 RES=0x00 SYN URGP=0 "
        )
    )

    assert flat["destination.mac"] == "90-10-35-5A-1E-3A"
    assert flat["source.mac"] == "90-10-76-E0-E2-D5"
    assert flat["iptables.ether_type"] == 2048
    assert (flat["iptables.ttl"], flat["iptables.tcp.window"], flat["destination.port"]) == (
        250,
        65535,
        8088,
    )


@pytest.mark.parametrize(
    "message",
    [
        "Linux version 2.6.5-1.358 (bhcompile@bugs.build.redhat.com) (gcc version 3.3.3)",
        "usbcore: registered new driver hub",
        "[ 12.345678] e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
        'audit: type=1400 audit(1700000000.1:2): apparmor="DENIED" operation="open"',
        "IN=eth0 but no packet here",
        "IN=eth0 OUT= SRC=",
        "",
    ],
)
def test_other_kernel_messages_are_not_mine(message: str) -> None:
    assert _kernel(message) is None


@pytest.mark.skipif(not LOGHUB_LINUX.is_file(), reason=f"no loghub Linux data at {LOGHUB_LINUX}")
def test_loghub_kernel_lines_are_not_firewall_lines() -> None:
    received = datetime(2005, 12, 31, tzinfo=UTC)
    kernel = 0
    for text in LOGHUB_LINUX.read_text("utf-8", errors="replace").splitlines():
        line = parse_syslog(text, received)
        if line.program == "kernel":
            kernel += 1
            assert PARSER.parse(line, CONTEXT) is None, text

    assert kernel == 76


# --- no input makes the parser fail -------------------------------------------------------------

_KEYS = ["IN", "OUT", "MAC", "SRC", "DST", "LEN", "TOS", "PREC", "TTL", "ID", "PROTO", "SPT",
         "DPT", "WINDOW", "RES", "TYPE", "CODE", "SEQ", "ACK", "TC", "HOPLIMIT", "FLOWLBL", "MARK",
         "FRAG", "GATEWAY", "MTU", "PARAMETER"]  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=20).map(lambda text: "".join(text.split())),
    st.integers(min_value=-1, max_value=2**70).map(str),
    st.sampled_from(["0x00", "0xZZ", "TCP", "udp", "ICMPv6", "47", "999", "203.0.113.9",
                     "2001:db8::1", "52:54:00:12:34:56:52:54:00:65:43:21:08:00", "zz:zz", ""]),
)  # fmt: skip
_TOKENS = st.one_of(
    st.tuples(st.sampled_from(_KEYS), _VALUES).map(lambda pair: f"{pair[0]}={pair[1]}"),
    st.sampled_from(["SYN", "ACK", "DF", "MF", "CE", "[", "]", "[SRC=1.2.3.4", "INCOMPLETE"]),
)
_PACKETS = st.tuples(
    st.sampled_from(["", "[UFW BLOCK] ", "[1.5] ", "DROP: ", "x"]),
    st.lists(_TOKENS, max_size=30).map(" ".join),
).map(lambda parts: f"{parts[0]}IN=eth0 SRC=10.0.0.1 {parts[1]}")


@settings(max_examples=300, deadline=None)
@given(
    message=st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace")), _PACKETS)
)
def test_any_kernel_message_parses_or_is_left_alone(message: str) -> None:
    fragment = _kernel(message)

    assert fragment is None or isinstance(fragment, dict)


def test_huge_messages() -> None:
    for message in (
        "IN=eth0 SRC=10.0.0.1 " + "[" * 2**20,
        "IN=eth0 SRC=10.0.0.1 " + "SYN " * 2**18,
        "IN=" * 2**18 + " SRC=1",
        "x" * 2**20 + " IN=eth0 SRC=10.0.0.1 LEN=" + "9" * 100,
        "IN=eth0 SRC=10.0.0.1 MAC=" + "aa:" * 2**18,
    ):
        started = datetime.now(UTC)
        fragment = _kernel(message)
        assert fragment is None or isinstance(fragment, dict)
        assert (datetime.now(UTC) - started).total_seconds() < 2
