"""Netfilter packet logs the kernel writes: iptables/nftables ``LOG`` rules, UFW, firewalld.

    [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.9
    DST=10.0.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=4242 DF PROTO=TCP SPT=4242 DPT=22
    WINDOW=64240 RES=0x00 SYN URGP=0

The text before ``IN=`` is the rule's ``--log-prefix`` (``rule.name``); words in it such as BLOCK,
DROP or REJECT (ACCEPT, ALLOW) say whether the packet was denied (allowed). Fields follow
Elastic's ``iptables`` module: ECS ``source``/``destination``, ``network.*``,
``observer.ingress``/``egress.interface.name``, and the rest under ``iptables.*``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from detectors.parsers.base import Fragment, ParseContext, ProgramParser, is_ip
from detectors.syslog import SyslogLine

# "[ 1234.567890] ": the kernel's own time since boot, when the kernel log carries it.
_KERNEL_TIME = re.compile(r"\[\s*\d+\.\d+\]\s*")
# The packet fields start at " IN=" (or at IN= when the rule has no prefix).
_START = re.compile(r"(?:^|\s)IN=")
_DENIED = re.compile(r"(?<![A-Z])(?:BLOCK|DROP|REJECT|DENY|DENIED)")
_ALLOWED = re.compile(r"(?<![A-Z])(?:ALLOW|ACCEPT|PASS)")
_TCP_FLAGS = frozenset({"CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN"})
_FRAGMENT_FLAGS = frozenset({"CE", "DF", "MF"})
# IANA protocol numbers of the protocols netfilter names; ECS network.iana_number is a string.
_IANA = {
    "icmp": "1", "igmp": "2", "tcp": "6", "udp": "17", "gre": "47", "esp": "50", "ah": "51",
    "ipv6-icmp": "58", "sctp": "132", "udplite": "136",
}  # fmt: skip
_TRANSPORT_BY_NUMBER = {number: name for name, number in _IANA.items()}
# Ethernet types of the MAC= field's last two bytes.
_ETHER_TYPES = {2048: "ipv4", 34525: "ipv6", 2054: "arp"}
# Decimal fields of the IP header (v4, then v6) and of ICMP, by the iptables.* name they take.
_IP_NUMBERS = (
    ("TTL", "ttl"), ("HOPLIMIT", "ttl"), ("ID", "id"), ("FLOWLBL", "flow_label"),
    ("FRAG", "fragment_offset"), ("TC", "tos"),
)  # fmt: skip
_ICMP_NUMBERS = (
    ("TYPE", "type"), ("CODE", "code"), ("ID_PAYLOAD", "id"), ("SEQ_PAYLOAD", "seq"),
    ("PARAMETER", "parameter"), ("MTU", "mtu"),
)  # fmt: skip
_SAFE_INT_DIGITS = 19  # a field longer than this is not a number the kernel wrote


class KernelFirewallParser(ProgramParser):
    """Packet log lines of netfilter (iptables, nftables, UFW, firewalld); None for others."""

    programs: ClassVar[frozenset[str]] = frozenset({"kernel"})
    dataset: ClassVar[str] = "iptables.log"

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for a netfilter log line, or None for any other kernel message."""
        message = line.message
        if "IN=" not in message or "SRC=" not in message:
            return None
        start = _START.search(message)
        if start is None:
            return None
        prefix = message[: start.start()]
        kernel_time = _KERNEL_TIME.match(prefix)
        if kernel_time:
            prefix = prefix[kernel_time.end() :]
        fields = _packet_fields(message[start.end() - 3 :])
        if not is_ip(fields.get("SRC", "")):
            return None  # "IN=" in some other message, or a packet log cut short
        return _fragment(prefix.strip().strip("[]:").strip(), fields)


def _packet_fields(text: str) -> dict[str, Any]:
    """The KEY=VALUE pairs and flags of a packet log, with each meaning found in its place.

    The same key means different things before and after PROTO= (LEN and ID of the IP header,
    then of UDP or ICMP); a bracketed part is the packet an ICMP error quotes, skipped.
    """
    fields: dict[str, Any] = {}
    after_proto = False
    depth = 0
    tcp_flags: list[str] = []
    fragment_flags: list[str] = []
    for token in text.split():
        if depth or token.startswith("["):
            depth += token.count("[") - token.count("]")
            depth = max(depth, 0)
            continue
        key, sep, value = token.partition("=")
        if not sep:
            if token in _TCP_FLAGS and after_proto:
                tcp_flags.append(token)
            elif token in _FRAGMENT_FLAGS and not after_proto:
                fragment_flags.append(token)
            continue
        if key == "PROTO":
            after_proto = True
            fields[key] = value
        elif after_proto and key in ("LEN", "ID", "SEQ"):
            fields.setdefault(f"{key}_PAYLOAD", value)
        else:
            fields.setdefault(key, value)
    if tcp_flags:
        fields["tcp_flags"] = tcp_flags
    if fragment_flags:
        fields["fragment_flags"] = fragment_flags
    return fields


def _fragment(rule: str, fields: dict[str, Any]) -> Fragment:
    upper = rule.upper()
    if _DENIED.search(upper):
        action, kind, outcome = "firewall-block", "denied", "failure"
    elif _ALLOWED.search(upper):
        action, kind, outcome = "firewall-allow", "allowed", "success"
    else:
        action, kind, outcome = "firewall-log", None, None
    event: dict[str, Any] = {
        "action": action,
        "category": ["network"],
        "type": ["connection", kind] if kind else ["connection"],
    }
    if outcome:
        event["outcome"] = outcome
    fragment: Fragment = {"event": event}
    if rule:
        fragment["rule"] = {"name": rule}

    iptables: dict[str, Any] = {}
    source = _side(fields.get("SRC"), fields.get("SPT"))
    destination = _side(fields.get("DST"), fields.get("DPT"))
    _mac(fields.get("MAC"), source, destination, iptables)
    if source:
        fragment["source"] = source
    if destination:
        fragment["destination"] = destination

    network: dict[str, Any] = {}
    proto = (fields.get("PROTO") or "").lower()
    if proto:
        if proto.isdigit():
            network["iana_number"] = proto
            proto = _TRANSPORT_BY_NUMBER.get(proto, "")
        elif proto == "icmpv6":
            proto = "ipv6-icmp"
        if proto:
            network["transport"] = proto
            if proto in _IANA:
                network["iana_number"] = _IANA[proto]
    if "ether_type" in iptables and iptables["ether_type"] in _ETHER_TYPES:
        network["type"] = _ETHER_TYPES[iptables["ether_type"]]
    elif "TC" in fields or "HOPLIMIT" in fields:
        network["type"] = "ipv6"
    length = _int(fields.get("LEN"))
    if length is not None:
        network["bytes"] = length
        iptables["length"] = length
    if network:
        fragment["network"] = network

    observer: dict[str, Any] = {}
    if fields.get("IN"):
        iptables["input_device"] = fields["IN"]
        observer["ingress"] = {"interface": {"name": fields["IN"]}}
    if fields.get("OUT"):
        iptables["output_device"] = fields["OUT"]
        observer["egress"] = {"interface": {"name": fields["OUT"]}}
    if observer:
        fragment["observer"] = observer

    _ip_header(fields, iptables)
    _transport_header(proto, fields, iptables)
    if iptables:
        fragment["iptables"] = iptables
    return fragment


def _side(address: str | None, port: str | None) -> dict[str, Any]:
    side: dict[str, Any] = {}
    if address and is_ip(address):
        side["ip"] = address
    number = _int(port)
    if number is not None and number <= 65535:
        side["port"] = number
    return side


def _mac(
    value: str | None,
    source: dict[str, Any],
    destination: dict[str, Any],
    iptables: dict[str, Any],
) -> None:
    # MAC= is the Ethernet header as logged: destination (6 bytes), source (6), type (2).
    if not value:
        return
    octets = value.split(":")
    if len(octets) < 6 or any(len(octet) != 2 for octet in octets):
        return
    try:
        raw = bytes.fromhex("".join(octets))
    except ValueError:
        return
    destination["mac"] = _ecs_mac(raw[:6])
    if len(raw) >= 12:
        source["mac"] = _ecs_mac(raw[6:12])
    if len(raw) >= 14:
        iptables["ether_type"] = int.from_bytes(raw[12:14], "big")


def _ecs_mac(raw: bytes) -> str:
    # ECS writes MAC addresses as upper-case hex pairs joined by hyphens (RFC 7042).
    return raw.hex("-").upper()


def _ip_header(fields: dict[str, Any], iptables: dict[str, Any]) -> None:
    for key, name in _IP_NUMBERS:
        number = _int(fields.get(key))
        if number is not None:
            iptables.setdefault(name, number)
    for key, name in (("TOS", "tos"), ("PREC", "precedence_bits"), ("MARK", "mark")):
        number = _hex(fields.get(key))
        if number is not None:
            iptables.setdefault(name, number)
    if "fragment_flags" in fields:
        iptables["fragment_flags"] = fields["fragment_flags"]


def _transport_header(proto: str, fields: dict[str, Any], iptables: dict[str, Any]) -> None:
    if proto == "tcp":
        tcp: dict[str, Any] = {}
        for key, name in (("WINDOW", "window"), ("SEQ_PAYLOAD", "seq"), ("ACK", "ack")):
            number = _int(fields.get(key))
            if number is not None:
                tcp[name] = number
        reserved = _hex(fields.get("RES"))
        if reserved is not None:
            tcp["reserved_bits"] = reserved
        if "tcp_flags" in fields:
            tcp["flags"] = fields["tcp_flags"]
        if tcp:
            iptables["tcp"] = tcp
    elif proto in ("udp", "udplite"):
        length = _int(fields.get("LEN_PAYLOAD"))
        if length is not None:
            iptables["udp"] = {"length": length}
    elif proto in ("icmp", "ipv6-icmp"):
        icmp: dict[str, Any] = {}
        for key, name in _ICMP_NUMBERS:
            number = _int(fields.get(key))
            if number is not None:
                icmp[name] = number
        gateway = fields.get("GATEWAY")
        if gateway and is_ip(gateway):
            icmp["redirect"] = gateway
        if icmp:
            iptables["icmp"] = icmp


def _int(text: str | None) -> int | None:
    if text and text.isdigit() and len(text) <= _SAFE_INT_DIGITS and text.isascii():
        return int(text)
    return None


def _hex(text: str | None) -> int | None:
    if not text:
        return None
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if not digits or len(digits) > 16 or not digits.isascii():
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None
