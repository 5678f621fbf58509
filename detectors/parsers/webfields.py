"""ECS fields of a web server access line: the fragment from the line's values, by role.

``access_fragment`` turns the values of one access line, keyed by role (``addr``, ``time_clf``,
``request``, ``status``, ...), into the ECS fragment; ``NginxAccessParser``/``ApacheAccessParser``
(``webaccess``) and ``LogFormatParser`` (``weblogformat``) share it, with the patterns both need
(the common log format time, a quoted field) and ``address_list``.

Where several addresses are known (an X-Forwarded-For list and the peer), ``source.address`` is
the first public one in the order logged, else the first IP address, else the first entry, as
Elastic's nginx pipeline does; the whole list stays in ``<vendor>.access.remote_ip_list``. The
header is set by the client, so an analyst should read the list when the peer is public.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from detectors.parsers.base import Fragment, ParseContext
from detectors.syslog import zone_named

_MONTHS: Final = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MAX_LONG: Final = 2**63 - 1

# The time of the common log format: "10/Oct/2000:13:55:36 -0700" (Apache %t, nginx $time_local).
CLF_TIME_TEXT = r"\d{1,2}/[A-Za-z]{3}/\d{4}:\d{1,2}:\d\d:\d\d(?:\.\d{1,9})? [+-]\d\d:?\d\d"
_CLF_TIME = re.compile(
    r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{1,2}):(\d\d):(\d\d)(?:\.(\d{1,9}))? ([+-])(\d\d):?(\d\d)"
)
ISO_TIME_TEXT = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"
_ISO_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|([+-])(\d\d):?(\d\d))?"
)
# A double-quoted field; Apache escapes '"' inside as '\"', nginx as '\x22'. Unrolled for speed.
QUOTED = r'([^"\\]*(?:\\.[^"\\]*)*)'
# "METHOD target HTTP/x.y"; without a version only an origin-form target ("GET /") counts.
_REQUEST_LINE = re.compile(r"([A-Za-z][A-Za-z_-]{0,31}) (.+?)(?: HTTP/(\d{1,2}(?:\.\d{1,2})?))?\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})\Z")
_NUMBER = re.compile(r"\d{1,12}(?:\.\d{1,9})?")
_EPOCH = re.compile(r"\d{1,19}(?:\.\d{1,9})?")


def access_fragment(
    values: dict[str, str],
    addresses: list[str],
    extras: dict[str, str],
    vendor: str,
    context: ParseContext,
    time_format: str | None = None,
) -> Fragment:
    """The ECS fragment from an access line's values by role (plain dicts: runs per event)."""
    event: dict[str, Any] = {"kind": "event", "category": ["web"], "type": ["access"]}
    fragment: Fragment = {"event": event}
    own: dict[str, Any] = dict(extras)  # <vendor>.access.*
    _set_time(fragment, values, context, time_format)

    source: dict[str, Any] = {}
    if addresses:
        source = _endpoint(_pick_source(addresses))
        # Elastic keeps the list when its entries are addresses or names (not "unix:").
        if len(addresses) > 1 or "domain" in source or "ip" in source:
            own["remote_ip_list"] = addresses
    port = _port(values.get("remote_port"))
    if port is not None:
        source["port"] = port
    if source:
        fragment["source"] = source

    url: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    host = values.get("vhost") or values.get("host") or values.get("server_name")
    if host and host != "-":
        destination = _host(host)
        if "domain" in destination:
            url["domain"] = destination["domain"]
    if values.get("host") and values.get("server_name") not in (None, "", "-"):
        own["server_name"] = values["server_name"]
    if "ip" not in destination and is_ip_address(values.get("server_addr")):
        destination["ip"] = values["server_addr"]
    port = _port(values.get("server_port"))
    if port is not None and "port" not in destination:
        destination["port"] = port
    if destination:
        fragment["destination"] = destination

    user = values.get("user")
    if user and user != "-":
        fragment["user"] = {"name": user}
    ident = values.get("ident")
    if ident and ident != "-":
        own["ident"] = ident

    http: dict[str, Any] = {}
    request: dict[str, Any] = {}
    method, target, version = _request(values.get("request"), own)
    method = _present(values.get("method")) or method
    target = _present(values.get("uri")) or target
    protocol = _present(values.get("protocol"))
    if protocol and protocol.upper().startswith("HTTP/"):
        version = protocol[5:]
    if method:
        request["method"] = method
    if version:
        http["version"] = version
    if target:
        url |= request_url(target, method)
    else:
        # Apache's %q carries its "?"; nginx's $args does not.
        path = _present(values.get("path"))
        query = _present((values.get("args") or "").removeprefix("?"))
        if path:
            url["path"] = path
            url["original"] = f"{path}?{query}" if query else path
        if query:
            url["query"] = query
    scheme = _present(values.get("scheme"))
    if scheme:
        url["scheme"] = scheme
    if url:
        fragment["url"] = url

    referrer = _present(values.get("referrer"))
    if referrer:
        request["referrer"] = referrer
    _put_number(request, "bytes", values.get("request_length"))
    for role, key in (("request_id", "id"), ("request_mime", "mime_type")):
        value = _present(values.get(role))
        if value:
            request[key] = value
    response: dict[str, Any] = {}
    status = _int(values.get("status")) or _int(values.get("status_original"))
    if status is not None and 100 <= status <= 999:
        response["status_code"] = status
        event["outcome"] = "success" if status < 400 else "failure"
    body = _int(values.get("body_bytes"))
    if body is not None:
        response["body"] = {"bytes": body}
    _put_number(response, "bytes", values.get("bytes_sent"))
    mime = _present(values.get("response_mime"))
    if mime:
        response["mime_type"] = mime
    if request:
        http["request"] = request
    if response:
        http["response"] = response
    if http:
        fragment["http"] = http

    agent = _present(values.get("user_agent"))
    if agent:
        fragment["user_agent"] = {"original": agent}
    duration = _duration(values)
    if duration is not None:
        event["duration"] = duration
    upstream = [float(n) for n in _NUMBER.findall(values.get("upstream_time") or "")]
    if upstream:
        # "0.004, 0.100" (retries) and "0.001 : 0.002" (redirects): the total upstream time.
        own["upstream_response_time"] = round(sum(upstream), 6)
    tls = _tls(values.get("tls_protocol"), values.get("tls_cipher"))
    if tls:
        fragment["tls"] = tls
    pid, tid = _int(values.get("pid")), _int(values.get("tid"))
    if pid is not None or tid is not None:
        fragment["process"] = {"pid": pid} if pid is not None else {}
        if tid is not None:
            fragment["process"]["thread"] = {"id": tid}
    filename = _present(values.get("filename"))
    if filename:
        fragment["file"] = {"path": filename}
    if own:
        fragment[vendor] = {"access": own}
    return fragment


def _set_time(
    fragment: Fragment, values: dict[str, str], context: ParseContext, time_format: str | None
) -> None:
    stamp: datetime | None = None
    assumed = False
    try:
        if "time_clf" in values:
            stamp = _clf_datetime(values["time_clf"])
        elif "time_iso" in values:
            stamp, assumed = _iso_datetime(values["time_iso"], zone_named(context.timezone))
        elif "time_fmt" in values and time_format:
            stamp = datetime.strptime(values["time_fmt"], time_format)
            if stamp.tzinfo is None:
                stamp, assumed = stamp.replace(tzinfo=zone_named(context.timezone)), True
        else:
            stamp = _epoch(values)
    except (ValueError, OverflowError, OSError) as exc:
        fragment["error"] = {"message": f"invalid time in the line: {exc}"}
        return
    if stamp is None:
        return
    for role, scale in (("time_msec_frac", 1000), ("time_usec_frac", 1)):
        if role in values and values[role].isdigit():
            stamp = stamp.replace(microsecond=int(values[role]) * scale % 1_000_000)
    fragment["@timestamp"] = stamp
    if assumed:
        fragment["event"]["timezone"] = context.timezone


def _clf_datetime(text: str) -> datetime:
    match = _CLF_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a common log format time")
    day, month_name, year, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    month = _MONTHS.get(month_name.lower())
    if month is None:
        raise ValueError(f"{month_name!r} is not a month")
    return datetime(
        int(year),
        month,
        int(day),
        int(hour),
        int(minute),
        min(int(second), 59),  # a leap second is kept as :59
        int(fraction[:6].ljust(6, "0")) if fraction else 0,
        tzinfo=_offset(sign, off_h, off_m),
    )


def _iso_datetime(text: str, zone: tzinfo) -> tuple[datetime, bool]:
    """An ISO 8601 time; one without zone is read in ``zone`` (and the flag says so)."""
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 time")
    year, month, day, hour, minute, second, fraction, offset, sign, off_h, off_m = match.groups()
    if offset is None:
        tz = zone
    elif offset == "Z":
        tz = UTC
    else:
        tz = _offset(sign, off_h, off_m)
    stamp = datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        min(int(second), 59),
        int(fraction[:6].ljust(6, "0")) if fraction else 0,
        tzinfo=tz,
    )
    return stamp, offset is None


@lru_cache(maxsize=128)
def _offset(sign: str, hours: str, minutes: str) -> tzinfo:
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)  # ValueError beyond 24 h


def _epoch(values: dict[str, str]) -> datetime | None:
    for role, scale in (
        ("time_epoch", 1),
        ("time_sec", 1),
        ("time_msec", 1_000),
        ("time_usec", 1_000_000),
    ):
        text = values.get(role)
        if text and _EPOCH.fullmatch(text):
            return datetime.fromtimestamp(float(text) / scale, UTC)
    return None


def _request(request: str | None, own: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """Method, target and version of a request line; a line that is not HTTP is kept in ``own``."""
    if request is None or request in ("", "-"):
        return None, None, None
    match = _REQUEST_LINE.match(request)
    if match:
        method, target, version = match.groups()
        if version is not None or target.startswith("/"):
            return method, target, version
    own["request"] = request
    return None, None, None


def request_url(target: str, method: str | None) -> dict[str, Any]:
    """``url.*`` of a request target; the path and query percent-decoded, as Elastic does."""
    url: dict[str, Any] = {"original": target}
    if target.startswith("/"):
        path, _, query = target.partition("?")
    elif "://" in target[:12]:
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError:
            return url
        path, query = parts.path, parts.query
        if parts.scheme:
            url["scheme"] = parts.scheme
        if parts.hostname:
            url["domain"] = parts.hostname
        if port is not None:
            url["port"] = port
    else:
        if method and method.upper() == "CONNECT":
            url |= {k: v for k, v in _host(target).items() if k in ("domain", "port")}
        return url
    path = unquote(path)
    if path:
        url["path"] = path
        name = path.rpartition("/")[2]
        extension = name.rpartition(".")[2] if "." in name else ""
        if extension:
            url["extension"] = extension
    if query:
        url["query"] = unquote(query)
    return url


def _host(text: str) -> dict[str, Any]:
    """``destination.*`` of ``host[:port]``: ``ip`` or ``domain``, and ``port``."""
    host, port = text, None
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        host, _, rest = text[1:].partition("]")
        port = _port(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = _port(number)
    result: dict[str, Any] = {}
    if is_ip_address(host):
        result["ip"] = host
    elif _HOSTNAME.match(host):
        result["domain"] = host
    if port is not None:
        result["port"] = port
    return result


def address_list(text: str) -> list[str]:
    """The entries of an address list: "a, b", '"a, b" c'; "-" and empty entries dropped."""
    entries = []
    for token in text.replace(",", " ").split():
        entry = token.strip('"')
        if entry and entry != "-":
            entries.append(entry)
    return entries


def _pick_source(addresses: list[str]) -> str:
    first_ip: str | None = None
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if ip.is_global:
            return address
        if first_ip is None:
            first_ip = address
    return first_ip or addresses[0]


def _endpoint(address: str) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"address": address}
    if is_ip_address(address):
        endpoint["ip"] = address
    elif _HOSTNAME.match(address):
        endpoint["domain"] = address
    return endpoint


def is_ip_address(text: str | None) -> bool:
    """Whether ``text`` is an IP address; False for None, empty or over-long text."""
    if not text or len(text) > 64:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _present(value: str | None) -> str | None:
    return None if value is None or value in ("", "-") else value


def _int(text: str | None) -> int | None:
    if not text or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= _MAX_LONG else None


def _port(text: str | None) -> int | None:
    value = _int(text)
    return value if value is not None and value <= 65535 else None


def _put_number(target: dict[str, Any], key: str, text: str | None) -> None:
    value = _int(text)
    if value is not None:
        target[key] = value


def _duration(values: dict[str, str]) -> int | None:
    """``event.duration`` in nanoseconds from $request_time, %D, %T or %{ms}T."""
    for role, scale in (  # the finest unit first: %D beside %T, say
        ("duration_us", 1_000),
        ("duration_ms", 1_000_000),
        ("duration_s", 1_000_000_000),
    ):
        text = values.get(role)
        if text and _NUMBER.fullmatch(text):
            return round(float(text) * scale)
    return None


def _tls(protocol: str | None, cipher: str | None) -> dict[str, Any]:
    tls: dict[str, Any] = {}
    protocol = _present(protocol)
    if protocol:
        name, _, version = protocol.partition("v")  # TLSv1.2, SSLv3
        if version:
            tls["version_protocol"] = name.lower()
            tls["version"] = version if "." in version else f"{version}.0"
    cipher = _present(cipher)
    if cipher:
        tls["cipher"] = cipher
    return tls
