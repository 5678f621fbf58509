"""FortiGate key=value logs (traffic, UTM and event types) into ECS, after Elastic's fortinet
integration.

    <189>date=2024-12-10 time=06:55:46 devname="FGT60F" devid="FGT60FTK2209ABCD" logid="0000000013"
    type="traffic" subtype="forward" level="notice" vd="root" srcip=10.10.1.23 srcport=51234 ...

A line may start with a syslog ``<PRI>`` and a syslog header (a relay adds one): everything before
the first ``key=`` is ignored. The keys FortiOS documents are mapped to ECS (``srcip`` to
``source.ip``, ``devname`` to ``observer.name``, ``policyid`` to ``rule.id``, ...); every other key
is kept under ``fortinet.firewall.<key>`` as text, as Elastic does. Values ``N/A`` and empty ones
are dropped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from urllib.parse import urlsplit

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext, is_ip
from detectors.syslog import zone_named

# A key starts after a blank (or the ">" of a syslog <PRI>); a quoted value may hold escaped
# quotes (\"); the quoted branch is written unrolled so that an unterminated quote costs one
# linear scan, not a backtracking storm.
# Keys are ASCII words of at most 64 characters: they become Elasticsearch field names.
_KV = re.compile(
    r'(?<![^\s>])([A-Za-z_][A-Za-z0-9_]{0,63})=(?:"([^"\\]*(?:\\.[^"\\]*)*)"|(\S*))', re.DOTALL
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
# A real FortiGate line has under 150 keys; more is noise that would bloat the index mapping.
_MAX_KEYS = 256
_DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})")
# FortiOS writes "+0700" or "-0500"; some versions "UTC+7:00" or "GMT+07:00".
_TZ = re.compile(r"(?:[A-Za-z]{1,4})?([+-])([0-9]{1,2}):?([0-9]{2})")
_UI_ADDRESS = re.compile(r"\w+\(([^()]+)\)")
_MAC_SEPARATORS = re.compile(r"[:.]")

_IANA_TRANSPORT = {
    "0": "hopopt", "1": "icmp", "2": "igmp", "6": "tcp", "8": "egp", "17": "udp", "41": "ipv6",
    "47": "gre", "50": "esp", "51": "ah", "58": "ipv6-icmp", "89": "ospf", "112": "vrrp",
    "132": "sctp",
}  # fmt: skip
_DIRECTIONS = {"outgoing": "outbound", "incoming": "inbound"}
_ECS_DIRECTIONS = frozenset({"ingress", "egress", "inbound", "outbound", "internal", "external"})
_DENIED = frozenset({"deny", "block", "blocked", "dropped", "drop", "reset", "clear_session"})
_ALLOWED = frozenset({"pass", "passthrough", "accept", "allow", "allowed", "pass_session"})
_FAILED = frozenset({"failure", "failed", "fail", "negotiate_error", "error", "denied"})
_SUCCEEDED = frozenset({"success", "successful", "ok", "logon", "logout"})
# What each UTM subtype is about, besides network traffic.
_UTM_CATEGORY = {
    "ips": "intrusion_detection",
    "anomaly": "intrusion_detection",
    "virus": "malware",
    "webfilter": "web",
    "waf": "web",
    "emailfilter": "email",
    "file-filter": "file",
}
_CONFIG_TYPES = {"add": "creation", "delete": "deletion", "edit": "change", "move": "change"}

# Keys whose value moves to an ECS field: not repeated under fortinet.firewall.
_MOVED = frozenset({
    "date", "time", "tz", "eventtime", "devname", "devid", "logid", "level", "msg", "logdesc",
    "srcip", "srcport", "dstip", "dstport", "srcintf", "dstintf", "sentbyte", "rcvdbyte",
    "sentpkt", "rcvdpkt", "transip", "transport", "tranip", "tranport", "proto", "service", "app",
    "policyid", "policyname", "poluuid", "policytype", "profile", "applist", "appcat", "catdesc",
    "duration", "user", "unauthuser", "group", "dstunauthuser", "srcmac", "dstmac", "srcdomain",
    "hostname", "url", "httpmethod", "referralurl", "agent", "filename", "filesize", "qname",
    "qtype", "qclass", "xid", "ipaddr", "eventtype", "reason", "dir", "direction", "remip",
    "locip", "remport", "locport",
})  # fmt: skip
_MAX_LONG = 2**63 - 1


class FortigateParser(LineParser):
    """FortiGate key=value log lines (FortiOS 5.6 to 7.6), as sent over syslog or stored."""

    name: ClassVar[str] = "fortigate"
    dataset: ClassVar[str] = "fortinet.firewall"

    def sniff(self, line: str) -> bool:
        """A FortiGate line names its device or log id, and its type."""
        return ("devname=" in line or "logid=" in line) and "type=" in line

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment for one FortiGate line; NotMine if it is not one."""
        kv = _key_values(line)
        if not (("devname" in kv or "logid" in kv) and "type" in kv):
            raise NotMine("not a FortiGate line: no devname= or logid=, or no type=")
        return _fragment(kv, context)


def _key_values(line: str) -> dict[str, str]:
    kv: dict[str, str] = {}
    for count, match in enumerate(_KV.finditer(line)):
        if count >= _MAX_KEYS:
            break
        key, quoted, bare = match.groups()
        value = bare if quoted is None else quoted
        if "\\" in value and quoted is not None:
            value = _ESCAPE.sub(r"\1", value)
        # FortiOS repeats a key now and then (tz twice); the first is the one it meant.
        if value and value != "N/A" and key not in kv:
            kv[key] = value
    return kv


def _fragment(kv: dict[str, str], context: ParseContext) -> Fragment:
    fragment: Fragment = {}
    event: dict[str, Any] = {}
    observer: dict[str, Any] = {"vendor": "Fortinet", "product": "Fortigate", "type": "firewall"}
    fragment["event"] = event
    fragment["observer"] = observer
    _set_time(fragment, kv, context)

    get = kv.get
    _put(observer, "name", get("devname"))
    _put(observer, "serial_number", get("devid"))
    _put(event, "code", get("logid"))
    _put(fragment, "message", get("msg"))
    if "level" in kv:
        fragment["log"] = {"level": kv["level"]}
    if "srcintf" in kv:
        observer["ingress"] = {"interface": {"name": kv["srcintf"]}}
    if "dstintf" in kv:
        observer["egress"] = {"interface": {"name": kv["dstintf"]}}

    log_type, subtype = get("type", ""), get("subtype", "")
    source, destination = _endpoints(kv, subtype == "vpn")
    network = _network(kv, source, destination)
    _rule(fragment, kv)
    _user(fragment, source, destination, kv, subtype == "vpn")
    _content(fragment, kv)

    duration = _long(get("duration"))
    if duration is not None and duration <= _MAX_LONG // 1_000_000_000:
        event["duration"] = duration * 1_000_000_000
    _put(event, "reason", get("reason"))

    if log_type == "traffic":
        _classify_traffic(event, kv)
    elif log_type in ("utm", "dns"):
        _classify_utm(event, kv, subtype)
    elif log_type == "event":
        _classify_event(event, kv, subtype)
    if "action" not in event:
        _put(event, "action", get("eventtype") or get("action"))

    for name, part in (("source", source), ("destination", destination), ("network", network)):
        if part:
            fragment[name] = part
    extra = {key: value for key, value in kv.items() if key not in _MOVED}
    if extra:
        fragment["fortinet"] = {"firewall": extra}
    return fragment


def _set_time(fragment: Fragment, kv: dict[str, str], context: ParseContext) -> None:
    date, time = kv.get("date"), kv.get("time")
    if date and time:
        day, clock = _DATE.fullmatch(date), _TIME.fullmatch(time)
        if day and clock:
            zone, assumed = _zone(kv.get("tz"), context.timezone)
            year, month, mday = (int(part) for part in day.groups())
            hour, minute, second = (int(part) for part in clock.groups())
            try:
                stamp: datetime | None = datetime(
                    year, month, mday, hour, minute, min(second, 59), tzinfo=zone
                )
            except ValueError:
                stamp = None  # 30 February, hour 25: try eventtime
            if stamp is not None:
                fragment["@timestamp"] = stamp
                if assumed:
                    fragment["event"]["timezone"] = context.timezone
                return
    stamp = _epoch(kv.get("eventtime"))
    if stamp is not None:
        fragment["@timestamp"] = stamp


def _zone(tz: str | None, default: str) -> tuple[tzinfo, bool]:
    """The zone of the line's tz= key, else the context's (and True: it was assumed)."""
    match = _TZ.fullmatch(tz) if tz else None
    if match:
        sign, hours, minutes = match.groups()
        if int(hours) < 24 and int(minutes) < 60:
            offset = timedelta(hours=int(hours), minutes=int(minutes))
            return (UTC if not offset else timezone(-offset if sign == "-" else offset)), False
    return zone_named(default), True


def _epoch(text: str | None) -> datetime | None:
    """eventtime: seconds (FortiOS 6.0), ms, µs or ns (6.2 and later) since the epoch."""
    if not text or not _digits(text) or len(text) > 19:
        return None
    value = int(text)
    digits = len(text)
    if digits <= 11:
        seconds, micros = value, 0
    elif digits <= 14:
        seconds, micros = divmod(value, 1000)
        micros *= 1000
    elif digits <= 17:
        seconds, micros = divmod(value, 1_000_000)
    else:
        seconds, micros = divmod(value // 1000, 1_000_000)
    try:
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)
    except (OverflowError, OSError, ValueError):
        return None


def _endpoints(kv: dict[str, str], vpn: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    source: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    _put_ip(source, "ip", kv.get("srcip"))
    _put(source, "port", _port(kv.get("srcport")))
    _put_ip(destination, "ip", kv.get("dstip"))
    _put(destination, "port", _port(kv.get("dstport")))
    # In VPN events the remote end (remip) is the client; elsewhere it is the far side.
    near, far = (destination, source) if vpn else (source, destination)
    if "ip" not in near:
        _put_ip(near, "ip", kv.get("locip"))
        _put(near, "port", _port(kv.get("locport")))
    if "ip" not in far:
        _put_ip(far, "ip", kv.get("remip"))
        _put(far, "port", _port(kv.get("remport")))
    if "ip" not in source and "ui" in kv:
        # Admin logins name the client only as ui="https(10.0.0.5)".
        ui = _UI_ADDRESS.fullmatch(kv["ui"])
        if ui:
            _put_ip(source, "ip", ui.group(1))
    _put(source, "bytes", _long(kv.get("sentbyte")))
    _put(source, "packets", _long(kv.get("sentpkt")))
    _put(destination, "bytes", _long(kv.get("rcvdbyte")))
    _put(destination, "packets", _long(kv.get("rcvdpkt")))
    for side, ip_key, port_key in (
        (source, "transip", "transport"),
        (destination, "tranip", "tranport"),
    ):
        nat: dict[str, Any] = {}
        _put_ip(nat, "ip", kv.get(ip_key))
        _put(nat, "port", _port(kv.get(port_key)))
        if nat:
            side["nat"] = nat
    _put(source, "mac", _mac(kv.get("srcmac")))
    _put(destination, "mac", _mac(kv.get("dstmac")))
    _put(source, "domain", kv.get("srcdomain"))
    return source, destination


def _network(
    kv: dict[str, str], source: dict[str, Any], destination: dict[str, Any]
) -> dict[str, Any]:
    network: dict[str, Any] = {}
    proto = kv.get("proto")
    if proto and _digits(proto):
        network["iana_number"] = proto
        _put(network, "transport", _IANA_TRANSPORT.get(proto))
    if "service" in kv:
        network["protocol"] = kv["service"].lower()
    if "app" in kv:
        network["application"] = kv["app"].lower()
    direction = kv.get("dir") or kv.get("direction")
    if direction:
        direction = direction.lower()
        direction = _DIRECTIONS.get(direction, direction)
        network["direction"] = direction if direction in _ECS_DIRECTIONS else "unknown"
    for total, key in (("bytes", "bytes"), ("packets", "packets")):
        if key in source and key in destination:
            network[total] = min(source[key] + destination[key], _MAX_LONG)
    return network


def _rule(fragment: Fragment, kv: dict[str, str]) -> None:
    rule: dict[str, Any] = {}
    _put(rule, "id", kv.get("policyid"))
    _put(rule, "name", kv.get("policyname"))
    _put(rule, "uuid", kv.get("poluuid"))
    _put(rule, "ruleset", kv.get("policytype") or kv.get("profile") or kv.get("applist"))
    category = kv.get("appcat") or kv.get("catdesc")
    if category:
        rule["category"] = category.replace(".", "-")  # as Elastic: "Web.Client" -> "Web-Client"
    _put(rule, "description", kv.get("logdesc"))
    if rule:
        fragment["rule"] = rule


def _user(
    fragment: Fragment,
    source: dict[str, Any],
    destination: dict[str, Any],
    kv: dict[str, str],
    vpn: bool,
) -> None:
    name = kv.get("unauthuser") or kv.get("user")
    if name is None and vpn:
        name = kv.get("xauthuser") or kv.get("eapuser")
    if name:
        fragment["user"] = {"name": name}
        source["user"] = {"name": name}
    group = kv.get("group")
    if group:
        source.setdefault("user", {})["group"] = {"name": group}
    if "dstunauthuser" in kv:
        destination["user"] = {"name": kv["dstunauthuser"]}


def _content(fragment: Fragment, kv: dict[str, str]) -> None:
    """URL, HTTP, file and DNS fields of UTM logs."""
    url: dict[str, Any] = {}
    raw_url = kv.get("url")
    if raw_url:
        if raw_url.startswith("/"):
            url["path"] = raw_url
        else:
            url["original"] = raw_url
            url.update(_url_parts(raw_url))
    if "hostname" in kv:
        url["domain"] = kv["hostname"]
    if url:
        fragment["url"] = url
    http: dict[str, Any] = {}
    if "httpmethod" in kv:
        http["method"] = kv["httpmethod"].upper()
    _put(http, "referrer", kv.get("referralurl"))
    if http:
        fragment["http"] = {"request": http}
    if "agent" in kv:
        fragment["user_agent"] = {"original": kv["agent"]}
    file: dict[str, Any] = {}
    _put(file, "name", kv.get("filename"))
    _put(file, "size", _long(kv.get("filesize")))
    if file:
        fragment["file"] = file
    question: dict[str, Any] = {}
    _put(question, "name", kv.get("qname"))
    _put(question, "type", kv.get("qtype"))
    _put(question, "class", kv.get("qclass"))
    if question:
        dns: dict[str, Any] = {"question": question}
        _put(dns, "id", kv.get("xid"))
        resolved = [ip for ip in kv.get("ipaddr", "").split(", ") if is_ip(ip)]
        if resolved:
            dns["resolved_ip"] = resolved
        fragment["dns"] = dns


def _url_parts(text: str) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    try:
        split = urlsplit(text)
        port = split.port
    except ValueError:  # "http://[bad" or a port above 65535
        return parts
    if split.scheme and split.hostname:
        parts["scheme"] = split.scheme
        parts["domain"] = split.hostname
        _put(parts, "port", port)
        _put(parts, "path", split.path)
        _put(parts, "query", split.query)
    return parts


def _classify_traffic(event: dict[str, Any], kv: dict[str, str]) -> None:
    action = kv.get("action")
    event["category"] = ["network"]
    types = ["connection"]
    if action:
        event["action"] = action
        # A traffic log is written when a session ends, except the optional one at its start.
        types.append("start" if action == "start" else "end")
        event["outcome"] = "success"
    if "app" in kv and action != "deny":
        types.append("protocol")
    if kv.get("utmaction") in ("block", "blocked") or action == "deny":
        types.append("denied")
    elif "utmaction" not in kv:
        types.append("allowed")
    event["type"] = types


def _classify_utm(event: dict[str, Any], kv: dict[str, str], subtype: str) -> None:
    action = kv.get("action", "").lower()
    specific = _UTM_CATEGORY.get(subtype)
    event["category"] = [specific, "network"] if specific else ["network"]
    if action in _DENIED:
        event["type"] = ["denied"]
    elif action in _ALLOWED:
        event["type"] = ["allowed"]
    else:
        event["type"] = ["info"]  # detected, monitored, dns responses
    if action:
        event["outcome"] = "success"  # the device did what its profile said, as Elastic puts it


def _classify_event(event: dict[str, Any], kv: dict[str, str], subtype: str) -> None:
    action = kv.get("action", "")
    lowered = action.lower()
    described = (kv.get("logdesc") or kv.get("msg") or "").lower()
    outcome = _outcome(kv)
    if action:
        event["action"] = action
    if subtype == "vpn":
        categories, types = ["network"], ["connection"]
        if "login" in lowered or "auth" in lowered:
            categories.insert(0, "authentication")
            types.append("start")
        elif lowered.endswith(("-up", "new-con")):
            # A tunnel is a session, as OpenVPN connections are (see openvpn.py).
            categories.append("session")
            types.append("start")
            outcome = outcome or "success"
        elif lowered.endswith("-down"):
            categories.append("session")
            types.append("end")
            outcome = outcome or "success"
    elif subtype == "user" or lowered in ("login", "logout") or "login" in described:
        categories = ["authentication"]
        if "logoff" in lowered or "logout" in lowered:
            types = ["end"]
            outcome = outcome or "success"
        else:
            types = ["start"]
            if lowered in ("fsso-logon", "auth-logon"):
                outcome = outcome or "success"
    elif "cfgpath" in kv or lowered in _CONFIG_TYPES:
        categories, types = ["configuration"], [_CONFIG_TYPES.get(lowered, "change")]
    elif subtype == "update":
        categories, types = ["host", "malware"], ["info"]
    elif subtype == "system":
        categories, types = ["host"], ["info"]
    else:
        categories, types = [], []
    if categories:
        event["category"] = categories
        event["type"] = types
    if outcome:
        event["outcome"] = outcome


def _outcome(kv: dict[str, str]) -> str | None:
    for key in ("result", "status"):
        value = kv.get(key, "").lower()
        if value in _FAILED:
            return "failure"
        if value in _SUCCEEDED:
            return "success"
    action = kv.get("action", "").lower()
    return "failure" if "fail" in action else None


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        target[key] = value


def _put_ip(target: dict[str, Any], key: str, value: str | None) -> None:
    if value and is_ip(value):
        target[key] = value


def _port(text: str | None) -> int | None:
    if text is None or not _digits(text) or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 65535 else None


def _long(text: str | None) -> int | None:
    """A non-negative count that fits Elasticsearch's long, else None."""
    if text is None or not _digits(text) or len(text) > 19:
        return None
    value = int(text)
    return value if value <= _MAX_LONG else None


def _digits(text: str) -> bool:
    # str.isdigit alone says yes to "²", which int() refuses.
    return text.isascii() and text.isdigit()


def _mac(text: str | None) -> str | None:
    """ECS writes MAC addresses upper-case with hyphens: 00-0C-29-AB-CD-EF."""
    if not text:
        return None
    return _MAC_SEPARATORS.sub("-", text).upper()
