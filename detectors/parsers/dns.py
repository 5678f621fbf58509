"""BIND 9 (``named``) query logs and a few other named messages, into ECS ``dns.*``.

A query line, as BIND 9.11 and later write it (9.9 to 9.10 lack the ``@0x...`` client object,
9.8 and before also the name in parentheses):

    client @0x7f64bc0a0f10 192.168.1.10#53412 (www.example.com): query: www.example.com IN A
    +E(0)K (192.168.1.1)

(one line, folded here).

The flags after the type are BIND's: ``+`` recursion desired (``-`` not), ``E(n)`` EDNS version n,
``S`` signed, ``T`` over TCP, ``D`` DNSSEC OK, ``C`` checking disabled, ``V``/``K`` cookies. The
address in parentheses at the end is the server's own. With ``print-category`` and
``print-severity`` a message starts ``queries: info: ``.

Besides queries: refused queries, updates and zone transfers (``... denied``), lame servers,
resolver errors and zone loads are classified; any other named message gives None (syslog) or
a bare fragment with the time (BIND's own log file).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext, ProgramParser, is_ip
from detectors.syslog import SyslogLine, zone_named

_ADDRESS = r"[0-9A-Fa-f:.]+"
# "queries: info: " (category and severity), either may be absent.
_PREFIX = r"(?:[a-z][a-z0-9_-]*(?: [0-9]+)?: ){0,2}"
_CLIENT = re.compile(
    _PREFIX + r"client (?:@0x[0-9A-Fa-f]+ )?(?P<ip>" + _ADDRESS + r")(?:%[^#\s]*)?#(?P<port>[0-9]+)"
    r"(?:/key (?P<key>[^:\s]+))?"
    r"(?: \([^)\\]*(?:\\.[^)\\]*)*\))?: (?:view (?P<view>[^:]+): )?(?P<rest>.*)",
    re.DOTALL,
)
_QUERY = re.compile(
    r"query: (?P<name>\S+) (?P<class>\S+) (?P<type>\S+) (?P<flags>[-+]\S*)"
    r"(?: \((?P<server>[^)]*)\))?\s*$"
)
_DENIED = re.compile(
    r"(?P<what>query(?: \(cache\))?|update|update forwarding|zone transfer) "
    r"'(?P<target>[^']*)' denied(?: \((?P<why>[^)]*)\))?\s*$"
)
_TRANSFER = re.compile(
    r"transfer of '(?P<zone>[^/']*)/[^']*': (?:AXFR-style IXFR|AXFR|IXFR) (?P<what>started|ended)"
)
_UPDATING = re.compile(r"updating zone '(?P<zone>[^/']*)/[^']*': ")
_LAME = re.compile(
    _PREFIX + r"lame server resolving '(?P<name>[^']*)' \(in '[^']*'\?\): "
    r"(?P<ip>" + _ADDRESS + r")#(?P<port>[0-9]+)"
    r"(?:/key (?P<key>[^:\s]+))?"
)
_RESOLVE_ERROR = re.compile(
    _PREFIX + r"(?P<error>[^'\n]+?) resolving '(?P<name>[^/']*)/(?P<type>[^/']*)/(?P<class>[^']*)':"
    r" (?P<ip>" + _ADDRESS + r")#(?P<port>[0-9]+)"
    r"(?:/key (?P<key>[^:\s]+))?"
)
_ZONE = re.compile(
    _PREFIX + r"zone (?P<zone>[^/\s]+)/[A-Za-z0-9]+(?:/\S+)?: (?P<rest>.*)", re.DOTALL
)
_ZONE_FAILED = re.compile(
    r"loading from master file \S+ failed: (?P<error>.*)|not loaded due to errors"
)

_DENIED_ACTIONS = {"update forwarding": "update", "zone transfer": "zone-transfer"}
_FLAG_HEADERS = (("+", "RD"), ("D", "DO"), ("C", "CD"))
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# print-time local (the default): "10-Dec-2024 06:55:46.123"; iso8601 and iso8601-utc (9.16+).
_FILE_TIME = re.compile(
    r"(?:([0-9]{2})-([A-Za-z]{3})-([0-9]{4})|([0-9]{4})-([0-9]{2})-([0-9]{2})T)"
    r" ?([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?(Z)? "
)
_FILE_PREFIX = re.compile(
    r"(?:([a-z][a-z0-9_-]*): )?(?:(info|notice|warning|error|critical|debug(?: [0-9]+)?): )?"
)
# Categories named can log to a channel; a line under one of them is BIND's even if not classified.
_CATEGORIES = frozenset({
    "client", "cname", "config", "database", "default", "delegation-only", "dispatch", "dnssec",
    "dnstap", "edns-disabled", "general", "lame-servers", "network", "notify", "nsid", "queries",
    "query-errors", "rate-limit", "resolver", "rpz", "security", "serve-stale", "spill",
    "trust-anchor-telemetry", "unmatched", "update", "update-security", "xfer-in", "xfer-out",
    "zoneload",
})  # fmt: skip
_SEVERITIES = frozenset({"info", "notice", "warning", "error", "critical"})


class BindQueryParser(ProgramParser):
    """Messages of BIND's ``named`` sent to syslog: queries, refusals, transfers, zone loads."""

    programs: ClassVar[frozenset[str]] = frozenset({"named"})
    dataset: ClassVar[str] = "bind.query"

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The ECS fragment for one named message, or None if it is not one classified here."""
        return bind_message(line.message)


class BindQueryFileParser(LineParser):
    """Lines of a query log file BIND writes itself, starting with its own timestamp."""

    name: ClassVar[str] = "bind.query"
    dataset: ClassVar[str] = "bind.query"

    def sniff(self, line: str) -> bool:
        """BIND's timestamp, then a client line (queries are what these files are for)."""
        return _FILE_TIME.match(line) is not None and "client " in line

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment for one line; NotMine if it is not a BIND log line."""
        stamp = _FILE_TIME.match(line)
        if stamp is None:
            raise NotMine("not a BIND log line: no BIND timestamp at the start")
        rest = line[stamp.end() :].rstrip("\r\n")
        prefix = _FILE_PREFIX.match(rest)
        category, severity = prefix.groups() if prefix else (None, None)
        if category in _SEVERITIES and severity is None:
            category, severity = None, category  # print-severity without print-category
        fragment = bind_message(rest)
        if fragment is None:
            # Other programs (Tomcat) use the same timestamp: claim only what names a category.
            if category not in _CATEGORIES:
                raise NotMine("not a BIND log line: no known category and no known message")
            fragment = {"event": {}}
        fragment["message"] = rest
        log: dict[str, Any] = {}
        if category:
            log["logger"] = category
        if severity:
            log["level"] = severity
        if log:
            fragment["log"] = log
        when = _file_time(stamp, context)
        if when is not None:
            fragment["@timestamp"] = when
            if stamp.group(11) is None:
                fragment["event"]["timezone"] = context.timezone
        return fragment


def bind_message(message: str) -> Fragment | None:
    """The ECS fragment for a named message (after the syslog header), or None."""
    client = _CLIENT.match(message)
    if client:
        return _client_message(client)
    lame = _LAME.match(message)
    if lame:
        fragment = _network_event("lame-server", ["info"])
        fragment["dns"] = {"question": {"name": lame["name"]}}
        _put_server(fragment, lame["ip"], lame["port"])
        return fragment
    error = _RESOLVE_ERROR.match(message)
    if error:
        fragment = _network_event("resolve", ["error"], "failure")
        question = {"name": error["name"], "type": error["type"], "class": error["class"]}
        fragment["dns"] = {"question": question}
        fragment["error"] = {"message": error["error"]}
        _put_server(fragment, error["ip"], error["port"])
        return fragment
    zone = _ZONE.match(message)
    if zone:
        return _zone_message(zone)
    return None


def _client_message(client: re.Match[str]) -> Fragment | None:
    rest = client["rest"]
    query = _QUERY.match(rest)
    if query:
        fragment = _network_event("query", ["protocol", "info"])
        _query(fragment, query)
    else:
        denied = _DENIED.match(rest)
        if denied:
            what = denied["what"]
            action = _DENIED_ACTIONS.get(what, what.split(" ", 1)[0])
            fragment = _network_event(action, ["denied"], "failure")
            _denied_target(fragment, action, denied["target"])
            if denied["why"]:
                fragment["event"]["reason"] = denied["why"]
        else:
            transfer = _TRANSFER.match(rest)
            updating = None if transfer else _UPDATING.match(rest)
            if transfer:
                kind = "start" if transfer["what"] == "started" else "end"
                fragment = _network_event("zone-transfer", [kind], "success")
                fragment["dns"] = {"question": {"name": transfer["zone"]}}
            elif updating:
                fragment = _network_event("update", ["change"], "success")
                fragment["dns"] = {"question": {"name": updating["zone"]}}
            else:
                return None
    source: dict[str, Any] = {}
    if is_ip(client["ip"]):
        source["ip"] = client["ip"]
        fragment["network"]["type"] = "ipv6" if ":" in client["ip"] else "ipv4"
    port = _port(client["port"])
    if port is not None:
        source["port"] = port
    if source:
        fragment["source"] = source
    if client["view"]:
        fragment.setdefault("bind", {})["view"] = client["view"]
    if client["key"]:
        fragment.setdefault("bind", {})["key"] = client["key"]  # the TSIG key that signed it
    return fragment


def _query(fragment: Fragment, query: re.Match[str]) -> None:
    flags = query["flags"]
    question = {"name": query["name"], "class": query["class"], "type": query["type"]}
    dns: dict[str, Any] = {"type": "query", "question": question}
    headers = [header for flag, header in _FLAG_HEADERS if flag in flags]
    if headers:
        dns["header_flags"] = headers
    fragment["dns"] = dns
    fragment["network"]["transport"] = "tcp" if "T" in flags else "udp"
    fragment["bind"] = {"flags": flags}
    server = query["server"]
    if server and is_ip(server):
        fragment["destination"] = {"ip": server}


def _denied_target(fragment: Fragment, action: str, target: str) -> None:
    # query: name/type/class; update: zone/class; zone transfer: zone/AXFR/class.
    parts = target.split("/")
    question: dict[str, Any] = {"name": parts[0]}
    if action == "query" and len(parts) == 3:
        question.update(type=parts[1], **{"class": parts[2]})
    fragment["dns"] = {"question": question}


def _zone_message(zone: re.Match[str]) -> Fragment | None:
    rest = zone["rest"]
    if rest.startswith("loaded serial"):
        outcome, error = "success", None
    else:
        failed = _ZONE_FAILED.match(rest)
        if failed is None:
            return None
        outcome, error = "failure", failed["error"] or rest
    fragment: Fragment = {
        "event": {
            "action": "zone-load",
            "category": ["configuration"],
            "type": ["change"],
            "outcome": outcome,
        },
        "dns": {"question": {"name": zone["zone"]}},
    }
    if error:
        fragment["error"] = {"message": error}
    return fragment


def _network_event(action: str, types: list[str], outcome: str | None = None) -> Fragment:
    event: dict[str, Any] = {"action": action, "category": ["network"], "type": types}
    if outcome:
        event["outcome"] = outcome
    return {"event": event, "network": {"protocol": "dns"}}


def _put_server(fragment: Fragment, ip: str, port: str) -> None:
    destination: dict[str, Any] = {}
    if is_ip(ip):
        destination["ip"] = ip
    number = _port(port)
    if number is not None:
        destination["port"] = number
    if destination:
        fragment["destination"] = destination


def _port(text: str) -> int | None:
    if len(text) > 5:
        return None
    port = int(text)  # the patterns admit only ASCII digits
    return port if port <= 65535 else None


def _file_time(stamp: re.Match[str], context: ParseContext) -> datetime | None:
    day, month_name, year, iso_year, iso_month, iso_day, hour, minute, second, fraction, utc = (
        stamp.groups()
    )
    if month_name is not None:
        month = _MONTHS.get(month_name.lower())
        if month is None:
            return None
    else:
        year, month, day = iso_year, int(iso_month), iso_day
    zone = zone_named("UTC" if utc else context.timezone)
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    try:
        return datetime(
            int(year), month, int(day), int(hour), int(minute), min(int(second), 59), micros,
            tzinfo=zone,
        )  # fmt: skip
    except ValueError:
        return None  # 30 February
