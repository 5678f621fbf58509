"""pfSense (and OPNsense) ``filterlog`` lines into ECS, after Elastic's pfsense integration.

The message is the CSV that pfSense documents as its filter log format
(docs.netgate.com/pfsense/en/latest/monitoring/filter-log-format-for-pfsense-2-2.html):

    <rule>,<sub-rule>,<anchor>,<tracker>,<interface>,<reason>,<action>,<direction>,<ip version>,
    IPv4: <tos>,<ecn>,<ttl>,<id>,<offset>,<flags>,<protocol id>,<protocol text>,
    IPv6: <class>,<flow label>,<hop limit>,<protocol text>,<protocol id>,
    <length>,<source>,<destination>,
    TCP: <src port>,<dst port>,<data length>,<flags>,<seq>,<ack>,<window>,<urg>,<options>
    UDP: <src port>,<dst port>,<data length>
    ICMP: <type>,<fields of that type>
    CARP: <type>,<ttl>,<vhid>,<version>,<advskew>,<advbase>

``network.direction`` is left to the normalizer, which judges it from the addresses (inbound,
outbound, internal, external): pf's own ``in``/``out`` is relative to the interface, not the
network, so it says on which side the interface is: ``observer.ingress`` or ``observer.egress``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from detectors.parsers.base import Fragment, ParseContext, ProgramParser, is_ip
from detectors.syslog import SyslogLine

# IANA keywords for the protocol numbers pf logs; ECS network.transport uses them.
_IANA_TRANSPORT = {
    "1": "icmp", "2": "igmp", "6": "tcp", "17": "udp", "41": "ipv6", "47": "gre", "50": "esp",
    "51": "ah", "58": "ipv6-icmp", "89": "ospf", "103": "pim", "112": "vrrp", "132": "sctp",
}  # fmt: skip
_ACTIONS = {"block": "denied", "reject": "denied", "pass": "allowed"}
_DIRECTIONS = {"in": "ingress", "out": "egress"}
# Field names of each ICMP type's extra fields, as pfSense's filterlog.c writes them.
_ICMP_FIELDS: dict[str, tuple[str, ...]] = {
    "request": ("id", "seq"),
    "reply": ("id", "seq"),
    "tstamp": ("id", "seq"),
    "tstampreply": ("id", "seq", "otime", "rtime", "ttime"),
    "unreachproto": ("destination.ip", "unreachable.iana_number"),
    "unreachport": ("destination.ip", "unreachable.iana_number", "unreachable.port"),
    "needfrag": ("destination.ip", "mtu"),
}
_ICMP_NUMBERS = frozenset({"id", "seq", "otime", "rtime", "ttime", "unreachable.port", "mtu"})
_CARP_FIELDS = ("type", "ttl", "vhid", "version", "advskew", "advbase")
_MAX_LONG = 2**63 - 1


class PfsenseFilterlogParser(ProgramParser):
    """The packet filter log pfSense and OPNsense write as program ``filterlog``."""

    programs: ClassVar[frozenset[str]] = frozenset({"filterlog"})
    dataset: ClassVar[str] = "pfsense.log"

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The ECS fragment for one filterlog CSV line, or None if it does not read as one."""
        fields = line.message.strip().split(",")
        if len(fields) < 12:
            return None
        rule_number, _sub, _anchor, tracker, interface, reason, action, direction, version = fields[
            :9
        ]
        side = _DIRECTIONS.get(direction)
        if not (rule_number.isascii() and rule_number.isdigit()) or side is None:
            return None
        ip: dict[str, Any] = {}
        if version == "4" and len(fields) >= 20:
            tos, ecn, ttl, ident, offset, flags, number, text = fields[9:17]
            ip.update(tos=tos, ecn=ecn, ttl=_long(ttl), id=_long(ident), offset=_long(offset))
            ip["flags"] = flags
            position = 17
        elif version == "6" and len(fields) >= 17:
            tos, flow_label, hop_limit, text, number = fields[9:14]
            # pfSense's hop limit is the IPv6 TTL (Elastic calls it pfsense.ip.flags).
            ip.update(tos=tos, flow_label=flow_label, ttl=_long(hop_limit))
            position = 14
        else:
            return None
        length, source_ip, destination_ip = fields[position : position + 3]
        if not (is_ip(source_ip) and is_ip(destination_ip)):
            return None
        rest = fields[position + 3 :]

        number = number if number.isascii() and number.isdigit() else ""
        transport = _IANA_TRANSPORT.get(number) or text.lower() or None
        network: dict[str, Any] = {"type": "ipv4" if version == "4" else "ipv6"}
        _put(network, "iana_number", number)
        _put(network, "transport", transport)
        _put(network, "bytes", _long(length))
        source: dict[str, Any] = {"ip": source_ip}
        destination: dict[str, Any] = {"ip": destination_ip}
        pfsense: dict[str, Any] = {"ip": _compact(ip)}
        _protocol(number, transport, rest, source, destination, pfsense)

        event: dict[str, Any] = {"provider": "filterlog", "category": ["network"]}
        event["type"] = ["connection", _ACTIONS[action]] if action in _ACTIONS else ["connection"]
        _put(event, "action", action)
        _put(event, "reason", reason)
        face: dict[str, Any] = {"interface": {"name": interface}}
        _vlan, dot, vlan = interface.rpartition(".")
        if dot and vlan.isascii() and vlan.isdigit():
            face["vlan"] = {"id": vlan}  # igb1.12 is VLAN 12 on igb1
        fragment: Fragment = {
            "event": event,
            "observer": {"vendor": "Netgate", "product": "pfSense", "type": "firewall", side: face},
            "network": network,
            "source": source,
            "destination": destination,
            "pfsense": _compact(pfsense),
        }
        if tracker:
            fragment["rule"] = {"id": tracker}
        return fragment


def _protocol(
    number: str,
    transport: str | None,
    rest: list[str],
    source: dict[str, Any],
    destination: dict[str, Any],
    pfsense: dict[str, Any],
) -> None:
    if transport in ("tcp", "udp") and len(rest) >= 3:
        _put(source, "port", _port(rest[0]))
        _put(destination, "port", _port(rest[1]))
        if transport == "udp":
            pfsense["udp"] = _compact({"length": _long(rest[2])})
            return
        tcp: dict[str, Any] = {"length": _long(rest[2])}
        if len(rest) >= 8:
            # Some versions log the sequence as "first:last".
            tcp.update(flags=rest[3], seq=_long(rest[4].split(":", 1)[0]), ack=_long(rest[5]))
            tcp.update(window=_long(rest[6]), urg=rest[7])
            options = ",".join(rest[8:])
            if options:
                tcp["options"] = options.split(";")
        pfsense["tcp"] = _compact(tcp)
    elif transport in ("icmp", "ipv6-icmp") and rest:
        icmp: dict[str, Any] = {"type": rest[0]}
        names = _ICMP_FIELDS.get(rest[0])
        if names is None:
            _put(icmp, "description", ",".join(rest[1:]))
        else:
            for name, value in zip(names, rest[1:], strict=False):
                if name == "destination.ip":
                    if is_ip(value):
                        icmp["destination"] = {"ip": value}
                elif name.startswith("unreachable."):
                    unreachable = icmp.setdefault("unreachable", {})
                    field = name.split(".", 1)[1]
                    unreachable[field] = _long(value) if name in _ICMP_NUMBERS else value
                else:
                    icmp[name] = _long(value) if name in _ICMP_NUMBERS else value
        pfsense["icmp"] = _compact(icmp)
    elif number == "112" and rest:  # CARP shares VRRP's protocol number
        carp: dict[str, Any] = dict(zip(_CARP_FIELDS, rest, strict=False))
        for name in _CARP_FIELDS[1:]:
            if name in carp:
                carp[name] = _long(carp[name])
        pfsense["carp"] = _compact(carp)


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Without the empty fields pf writes as ",,"."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _compact(value)
        if value is not None and value != "" and value != {}:
            out[key] = value
    return out


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        target[key] = value


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 65535 else None


def _long(text: str) -> int | None:
    """A non-negative number that fits Elasticsearch's long, else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    value = int(text)
    return value if value <= _MAX_LONG else None
