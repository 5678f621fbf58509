"""Web server error logs to ECS: Apache 2.0/2.2/2.4 and nginx.

Apache::

    [Sun Dec 04 04:47:44 2005] [error] [client 1.2.3.4] File does not exist: /var/www/x
    [Wed Oct 11 14:32:52.123456 2017] [core:error] [pid 12:tid 34] [client 1.2.3.4:5] AH00126: ...

nginx::

    2016/10/25 14:49:34 [error] 54053#0: *1 open() "/x" failed (2: No such file or directory),
    client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "localhost:8080"

Neither carries a zone: the time is read in ``context.timezone``. ``message`` is what Elastic puts
there: the text after the header and after a ``[client ...]`` that follows the header directly.
A multi-line nginx event (FastCGI stderr) arrives here line by line: the first line parses, and a
continuation line (``PHP message: ...``) is NotMine. Given the joined event, the message keeps
every line.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Final

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext, is_ip
from detectors.syslog import zone_named

_MONTHS: Final = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MAX_LONG: Final = 2**63 - 1
# Levels Elastic's apache pipeline files under event.type "error"; the rest are "info".
_ERROR_LEVELS: Final = frozenset({"emerg", "alert", "crit", "error", "warn"})

_APACHE_ERROR = re.compile(
    r"\[(?:"
    # ctime, as Apache writes it (fraction from 2.4): "Wed Oct 11 14:32:52.123456 2017"
    r"(?:[A-Za-z]{3} )?(?P<mon>(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"
    r" +(?P<day>\d{1,2}) (?P<hour>\d{1,2}):(?P<min>\d\d)"
    r":(?P<sec>\d\d)(?:\.(?P<frac>\d{1,9}))? (?P<year>\d{4})"
    # ErrorLogFormat's %{cu}t: "2017-10-11 14:32:52.123456"
    r"|(?P<iyear>\d{4})-(?P<imon>\d\d)-(?P<iday>\d\d)[ T](?P<ihour>\d\d):(?P<imin>\d\d)"
    r":(?P<isec>\d\d)(?:\.(?P<ifrac>\d{1,9}))?"
    r")\] \[(?:(?P<module>[^\]:\s]*):)?(?P<level>[A-Za-z]+\d?)\]"
    r"(?: \[pid (?P<pid>\d{1,19})(?::tid (?P<tid>\d{1,20}))?\])?"
    r"(?: \[client (?P<client>[^\]\s]+)\])? ?(?P<message>.*)\Z",
    re.DOTALL,
)
# A [client] after the source file of a trace/debug line or after an APR status, e.g.
# "mod_rewrite.c(470): [client ...] " or "(70007)The timeout specified has expired: [client ...] ".
_LATE_CLIENT = re.compile(
    r"(?:[\w.\-]{1,64}\(\d{1,9}\): )?(?:\(-?\d{1,9}\)[^\[:]{0,200}: )?\[client ([^\]\s]+)\] "
)
_AH_CODE = re.compile(r"(AH\d{5}): ")
_FILE_MISSING = re.compile(r"(?:File does not exist|script not found or unable to stat): ([^,]+)")
_APACHE_AUTH = re.compile(
    r"(?:AH0161[78]: )?user (?P<user>[^\s:]+)(?:: authentication failure| not found)"
)
_NGINX_ERROR = re.compile(
    r"(?P<year>\d{4})/(?P<mon>\d\d)/(?P<day>\d\d) (?P<hour>\d\d):(?P<min>\d\d):(?P<sec>\d\d)"
    r" \[(?P<level>[a-z]+)\] (?P<pid>\d{1,19})#(?P<tid>\d{1,20}):(?: \*(?P<cid>\d{1,20}))?"
    r" ?(?P<message>.*)\Z",
    re.DOTALL,
)
# The context nginx appends to a message about a request; request, host and referrer are sent by
# the client, so the first ", client: " that starts a well-formed tail is taken.
_NGINX_CONTEXT = re.compile(
    r', client: (?P<client>[^,\s]+), server: (?P<server>[^,]*)(?:, request: "(?P<request>.*?)")?'
    r'(?:, subrequest: "[^"]*")?(?:, upstream: "(?P<upstream>[^"]*)")?'
    r'(?:, host: "(?P<host>[^"]*)")?(?:, referrer: "(?P<referrer>[^"]*)")?\Z',
    re.DOTALL,
)
_NGINX_TRIES: Final = 4
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")
_NGINX_AUTH = re.compile(r'user "(?P<user>[^"]*)"(?:: password mismatch| was not found in)')
_REQUEST_LINE = re.compile(r"([A-Za-z][A-Za-z_-]{0,31}) (\S+)(?: HTTP/(\d{1,2}(?:\.\d{1,2})?))?\Z")


class ApacheErrorParser(LineParser):
    """Apache httpd error log, 2.0 to 2.4, with module:level, pid/tid and client."""

    name: ClassVar[str] = "apache.error"
    dataset: ClassVar[str] = "apache.error"

    def sniff(self, line: str) -> bool:
        """A bracketed ctime or ISO time, then a bracketed level."""
        return line.startswith("[") and _APACHE_ERROR.match(line[:200] + "\n") is not None

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment of one error line; NotMine when it has no Apache error header."""
        match = _APACHE_ERROR.match(line.rstrip("\r\n").removeprefix("\ufeff"))
        if match is None:
            raise NotMine("not an Apache error line")
        parts = match.groupdict()
        level = parts["level"].lower()
        event: dict[str, Any] = {
            "kind": "event",
            "category": ["web"],
            "type": ["error" if level in _ERROR_LEVELS else "info"],
        }
        fragment: Fragment = {"event": event, "log": {"level": level}}
        fields: tuple[str | int, ...]
        if parts["year"]:
            fields = (parts["year"], _MONTHS[parts["mon"].lower()], parts["day"])
            clock = (parts["hour"], parts["min"], parts["sec"], parts["frac"])
        else:
            fields = (parts["iyear"], parts["imon"], parts["iday"])
            clock = (parts["ihour"], parts["imin"], parts["isec"], parts["ifrac"])
        _set_local_time(fragment, (*fields, *clock), context)
        if parts["module"]:
            fragment["apache"] = {"error": {"module": parts["module"]}}
        _set_process(fragment, parts["pid"], parts["tid"])

        message: str = parts["message"]
        fragment["message"] = message
        client, rest = parts["client"], message
        if client is None:
            late = _LATE_CLIENT.match(message)
            if late:
                client, rest = late.group(1), message[late.end() :]
        if client:
            # 2.4 ("[pid" present) writes client ip:port; 2.2 writes the address alone.
            fragment["source"] = _client(client, with_port=parts["pid"] is not None)
        code = _AH_CODE.match(rest)
        if code:
            fragment["error"] = {"code": code.group(1)}
        missing = _FILE_MISSING.search(rest, 0, 256)
        if missing:
            fragment["file"] = {"path": missing.group(1)}
        referrer = rest.rfind(", referer: ")
        if referrer >= 0 and " " not in rest[referrer + 11 :]:
            fragment["http"] = {"request": {"referrer": rest[referrer + 11 :]}}
        auth = _APACHE_AUTH.match(rest, code.end() if code else 0)
        if auth:
            _auth_failure(fragment, auth.group("user"))
        return fragment


class NginxErrorParser(LineParser):
    """nginx error log: level, pid#tid, connection id, and the client and request of the context."""

    name: ClassVar[str] = "nginx.error"
    dataset: ClassVar[str] = "nginx.error"

    def sniff(self, line: str) -> bool:
        """'YYYY/MM/DD HH:MM:SS [level] pid#tid:' at the start."""
        return _NGINX_ERROR.match(line[:80] + "\n") is not None

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment of one error line (or joined event); NotMine for other text."""
        match = _NGINX_ERROR.match(line.rstrip("\r\n").removeprefix("\ufeff"))
        if match is None:
            raise NotMine("not an nginx error line")
        parts = match.groupdict()
        level = parts["level"]
        event: dict[str, Any] = {
            "kind": "event",
            "category": ["web"],
            "type": ["error" if level in _ERROR_LEVELS else "info"],
        }
        message: str = parts["message"]
        fragment: Fragment = {"event": event, "log": {"level": level}, "message": message}
        fields = (parts["year"], parts["mon"], parts["day"])
        _set_local_time(fragment, (*fields, parts["hour"], parts["min"], parts["sec"]), context)
        _set_process(fragment, parts["pid"], parts["tid"])
        own: dict[str, Any] = {}
        connection = _long(parts["cid"])
        if connection is not None:
            own["connection_id"] = connection
        _nginx_context(fragment, own, message)
        auth = _NGINX_AUTH.match(message)
        if auth:
            _auth_failure(fragment, auth.group("user"))
        if own:
            fragment["nginx"] = {"error": own}
        return fragment


def _nginx_context(fragment: Fragment, own: dict[str, Any], message: str) -> None:
    start = 0
    for _ in range(_NGINX_TRIES):
        start = message.find(", client: ", start)
        if start < 0:
            return
        context = _NGINX_CONTEXT.match(message, start)
        if context:
            break
        start += 1
    else:
        return
    parts = context.groupdict()
    fragment["source"] = _client(parts["client"], with_port=False)
    if parts["server"]:
        own["server"] = parts["server"]
    if parts["upstream"]:
        own["upstream"] = parts["upstream"]
    request = parts["request"]
    if request:
        line = _REQUEST_LINE.match(request)
        if line:
            method, target, version = line.groups()
            http: dict[str, Any] = {"request": {"method": method}}
            if version:
                http["version"] = version
            fragment["http"] = http
            fragment["url"] = {"original": target}
        else:
            own["request"] = request
    if parts["host"]:
        host = parts["host"].rpartition(":")[0] if parts["host"].count(":") == 1 else parts["host"]
        fragment.setdefault("url", {})["domain"] = host
    if parts["referrer"]:
        fragment.setdefault("http", {}).setdefault("request", {})["referrer"] = parts["referrer"]


def _auth_failure(fragment: Fragment, user: str) -> None:
    """A failed HTTP basic authentication: the user, and the authentication category."""
    fragment["user"] = {"name": user}
    fragment["event"]["action"] = "http_auth_failure"
    fragment["event"]["category"] = ["web", "authentication"]
    fragment["event"]["type"] = ["error", "start"]
    fragment["event"]["outcome"] = "failure"


def _client(text: str, *, with_port: bool) -> dict[str, Any]:
    address, port = text, None
    head, _, tail = text.rpartition(":")
    # "1.2.3.4:5678" always has a port; "::1:5678" only where the format always writes one.
    if tail.isdigit() and len(tail) <= 5 and (with_port or "." in head) and is_ip(head):
        address, port = head, int(tail)
    source: dict[str, Any] = {"address": address}
    if is_ip(address):
        source["ip"] = address
    elif _HOSTNAME.fullmatch(address):
        source["domain"] = address
    if port is not None:
        source["port"] = port
    return source


def _set_local_time(
    fragment: Fragment, fields: tuple[str | int | None, ...], context: ParseContext
) -> None:
    """@timestamp from year, month, day, hour, minute, second[, fraction], in the context zone."""
    year, month, day, hour, minute, second, *fraction = fields
    digits = str(fraction[0]) if fraction and fraction[0] else ""
    try:
        stamp = datetime(
            int(year or 0),
            int(month or 0),
            int(day or 0),
            int(hour or 0),
            int(minute or 0),
            min(int(second or 0), 59),  # a leap second is kept as :59
            int(digits[:6].ljust(6, "0")) if digits else 0,
            tzinfo=zone_named(context.timezone),
        )
    except ValueError as exc:
        fragment["error"] = {"message": f"invalid time in the line: {exc}"}
        return
    fragment["@timestamp"] = stamp
    fragment["event"]["timezone"] = context.timezone


def _set_process(fragment: Fragment, pid: str | None, tid: str | None) -> None:
    process: dict[str, Any] = {}
    pid_value, tid_value = _long(pid), _long(tid)
    if pid_value is not None:
        process["pid"] = pid_value
    if tid_value is not None:
        process["thread"] = {"id": tid_value}
    if process:
        fragment["process"] = process


def _long(text: str | None) -> int | None:
    if not text:
        return None
    value = int(text)
    return value if value <= _MAX_LONG else None
