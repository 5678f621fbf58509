"""Turn one sshd syslog line into an ECS event, after Elastic's ``system.auth`` fileset.

Messages sshd logs about authentication and connections are classified into ``event.action``
(``ssh_login``, ``invalid_user``, ``ssh_disconnect``, ...), ``event.category``/``event.type`` and
``event.outcome``, with the user, source address and port pulled out. Any other sshd message
still becomes an event, with action ``sshd_message`` and no outcome.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, NamedTuple

from detectors.syslog import DEFAULT_TIMEZONE, SyslogLine, parse_syslog
from socpipe.errors import RecordError
from socpipe.records import EcsEvent, RawRecord

# OpenSSH 9.8 moved per-connection work, and its logging, into sshd-session; 10.0 added sshd-auth.
SSHD_PROGRAMS = frozenset({"sshd", "sshd-session", "sshd-auth"})
GENERIC_ACTION = "sshd_message"

_SYSLOG_FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
_SYSLOG_SEVERITIES = (
    "emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug",
)  # fmt: skip


class _Kind(NamedTuple):
    """What one message pattern means in ECS; its named groups say where the values are."""

    pattern: re.Pattern[str]
    action: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    outcome: str | None = None
    ssh_event: str | None = None  # Elastic's system.auth.ssh.event: Accepted, Failed, Invalid


def _kind(
    pattern: str,
    action: str,
    category: tuple[str, ...],
    type_: tuple[str, ...],
    outcome: str | None = None,
    ssh_event: str | None = None,
) -> _Kind:
    return _Kind(re.compile(pattern), action, category, type_, outcome, ssh_event)


_AUTH = ("authentication",)
_NETWORK = ("network",)
_CONNECTION_END = ("connection", "end")
_PREAUTH = r"(?: \[preauth\])?$"
# "invalid user X" / "authenticating user X" / "user X" before an address, as OpenSSH 7.5+ logs.
_WHOSE = r"(?:(?:invalid |authenticating )?user (?P<user>.*) )?"
# A user name is whatever the client sent, " from 6.6.6.6 port 1" included: user patterns are
# greedy so that the address is the one sshd wrote last, after the name, not one inside it.

# Most frequent first: the patterns are tried in order and each fails on its first characters.
_KINDS = (
    _kind(
        r"Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*) from (?P<address>\S+)"
        r" port (?P<port>\d+)(?: ssh\d)?(?:: (?P<signature>.+))?$",
        "ssh_login", _AUTH, ("start",), "failure", "Failed",
    ),
    _kind(
        r"pam_unix\(sshd:auth\): authentication failure;.*? rhost=(?P<address>\S*)"
        r"(?:\s+user=(?P<user>.*))?$",
        "pam_auth_failure", _AUTH, ("info",), "failure",
    ),
    _kind(
        r"(?:error: )?Received disconnect from (?P<address>\S+) port (?P<port>\d+):\s?\d+: .*$",
        "ssh_disconnect", _NETWORK, _CONNECTION_END,
    ),
    # OpenSSH before 7.3 logged no port: "Received disconnect from 1.2.3.4: 11: Bye Bye".
    _kind(
        r"(?:error: )?Received disconnect from (?P<address>\S+): \d+: .*$",
        "ssh_disconnect", _NETWORK, _CONNECTION_END,
    ),
    _kind(
        r"Invalid user (?P<user>.*) from (?P<address>\S+)(?: port (?P<port>\d+))?$",
        "invalid_user", _AUTH, ("info",), "failure", "Invalid",
    ),
    _kind(
        r"input_userauth_request: invalid user (?P<user>.*?)" + _PREAUTH,
        "invalid_user_auth_request", _AUTH, ("info",), "failure",
    ),
    _kind(
        r"reverse mapping checking getaddrinfo for (?P<domain>\S+) \[(?P<address>[^\]]+)\]"
        r" failed(?: - POSSIBLE BREAK-IN ATTEMPT!)?$",
        "reverse_mapping_failed", _NETWORK, ("info",),
    ),
    _kind(
        r"Address (?P<address>\S+) maps to (?P<domain>\S+), but this does not map back to the"
        r" address(?: - POSSIBLE BREAK-IN ATTEMPT!)?$",
        "reverse_mapping_failed", _NETWORK, ("info",),
    ),
    _kind(
        r"Connection (?:closed|reset) by " + _WHOSE + r"(?P<address>\S+) port (?P<port>\d+)"
        + _PREAUTH,
        "ssh_connection_closed", _NETWORK, _CONNECTION_END,
    ),
    # OpenSSH before 7.3: "Connection closed by 1.2.3.4 [preauth]".
    _kind(
        r"Connection (?:closed|reset) by (?P<address>\S+)" + _PREAUTH,
        "ssh_connection_closed", _NETWORK, _CONNECTION_END,
    ),
    _kind(
        r"Disconnected from " + _WHOSE + r"(?P<address>\S+) port (?P<port>\d+)" + _PREAUTH,
        "ssh_disconnect", _NETWORK, _CONNECTION_END,
    ),
    _kind(
        r"PAM \d+ more authentication failures?;.*? rhost=(?P<address>\S*)"
        r"(?:\s+user=(?P<user>.*))?$",
        "pam_more_auth_failures", _AUTH, ("info",), "failure",
    ),
    _kind(
        r"Accepted (?P<method>\S+) for (?P<user>.*) from (?P<address>\S+) port (?P<port>\d+)"
        r"(?: ssh\d)?(?:: (?P<signature>.+))?$",
        "ssh_login", _AUTH, ("start",), "success", "Accepted",
    ),
    _kind(
        r"Did not receive identification string from (?P<dropped>\S+)(?: port (?P<port>\d+))?$",
        "no_identification_string", _NETWORK, _CONNECTION_END,
    ),
    _kind(
        r"error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*)"
        r" from (?P<address>\S+) port (?P<port>\d+)(?: ssh\d)?" + _PREAUTH,
        "max_auth_attempts_exceeded", _AUTH, ("info",), "failure",
    ),
    _kind(
        r"Disconnecting: Too many authentication failures(?: for (?:invalid user )?"
        r"(?P<user>.*?))?" + _PREAUTH,
        "max_auth_attempts_exceeded", _AUTH, ("info",), "failure",
    ),
    _kind(
        r"Disconnecting " + _WHOSE + r"(?P<address>\S+) port (?P<port>\d+):"
        r" Too many authentication failures" + _PREAUTH,
        "max_auth_attempts_exceeded", _AUTH, ("info",), "failure",
    ),
    _kind(
        r"pam_unix\(sshd:session\): session opened for user (?P<user>[^\s(]+)"
        r"(?:\(uid=(?P<uid>\d+)\))?(?: by .*)?$",
        "session_opened", ("session",), ("start",),
    ),
    _kind(
        r"pam_unix\(sshd:session\): session closed for user (?P<user>[^\s(]+)"
        r"(?:\(uid=(?P<uid>\d+)\))?$",
        "session_closed", ("session",), ("end",),
    ),
)  # fmt: skip

# syslogd folds repeats into one line: classify what was repeated.
_REPEATED = re.compile(r"message repeated \d+ times: \[ ?(.*)\]$")
# sshd writes bytes outside printable ASCII as octal escapes (strnvis), so a user name typed in
# Vietnamese reaches syslog as "nguy\341\273\205n"; user.name gets the UTF-8 text back.
_OCTAL_ESCAPES = re.compile(r"(?:\\[0-3][0-7]{2})+")


def parse_sshd(raw: RawRecord, tz: str = DEFAULT_TIMEZONE) -> EcsEvent:
    """Parse an sshd syslog line into an ECS event; raise RecordError saying why it is not one.

    ``tz`` is the zone of a line whose timestamp has none (``event.timezone`` then names it).
    """
    if raw.message is None:
        raise RecordError(f"{_where(raw)}: not an sshd line: the record carries data, not a line")
    try:
        line = parse_syslog(raw.message, raw.received, tz)
    except RecordError as exc:
        raise RecordError(f"{_where(raw)}: {exc}") from exc
    if line.program not in SSHD_PROGRAMS:
        found = f"program is {line.program!r}" if line.program else "the line names no program"
        raise RecordError(f"{_where(raw)}: not an sshd line: {found}")
    return EcsEvent.model_validate(_ecs_document(raw, line, tz))


def _ecs_document(raw: RawRecord, line: SyslogLine, tz: str) -> dict[str, Any]:
    # A plain dict, validated once by EcsEvent: cheaper than building each part as a model.
    hostname = line.hostname or raw.host
    event: dict[str, Any] = {
        "id": raw.id,
        "kind": "event",
        "action": GENERIC_ACTION,
        "dataset": "system.auth",
        "module": "system",
        "original": raw.message,
        "created": raw.received,
    }
    if line.zone_assumed:
        event["timezone"] = tz
    doc: dict[str, Any] = {
        "@timestamp": line.timestamp,
        "message": line.message,
        "event": event,
        "host": {"name": hostname, "hostname": hostname},
        "process": {"name": line.program, "pid": line.pid},
        "organization": {"id": raw.agency.id, "name": raw.agency.name},
        "labels": {"tier": raw.agency.tier.value},
        "log": _log_fields(raw, line),
    }
    related: dict[str, list[str]] = {"hosts": [hostname]}

    # Trailing blanks are common (pam_unix ends "rhost=1.2.3.4 " when it knows no user).
    message = line.message.rstrip()
    repeated = _REPEATED.match(message)
    if repeated:
        message = repeated.group(1)
    for kind in _KINDS:
        match = kind.pattern.match(message)
        if match:
            _classify(doc, related, kind, match.groupdict())
            break

    doc["related"] = related
    return doc


def _classify(
    doc: dict[str, Any], related: dict[str, list[str]], kind: _Kind, found: dict[str, str | None]
) -> None:
    event = doc["event"]
    event["action"] = kind.action
    event["category"] = list(kind.category)
    event["type"] = list(kind.type)
    if kind.outcome:
        event["outcome"] = kind.outcome

    source: dict[str, Any] = {}
    address = found.get("address") or found.get("dropped")
    if address:
        if _is_ip(address):
            source["ip"] = address
            related["ip"] = [address]
        else:
            # sshd with UseDNS logs a name where the address would be (Elastic does the same).
            source["domain"] = address
            related["hosts"].append(address)
    domain = found.get("domain")
    if domain:
        source["domain"] = domain
        related["hosts"].append(domain)
    port = found.get("port")
    if port:
        source["port"] = int(port)
    if source:
        doc["source"] = source

    user_name = found.get("user")
    if user_name:
        user_name = _unescape_octal(user_name)
        doc["user"] = {"name": user_name, "id": found.get("uid")}
        related["user"] = [user_name]

    ssh: dict[str, str] = {}
    if kind.ssh_event:
        ssh["event"] = kind.ssh_event
    for key in ("method", "signature"):
        value = found.get(key)
        if value:
            ssh[key] = value
    dropped = found.get("dropped")
    if dropped and "ip" in source:
        ssh["dropped_ip"] = dropped
    if ssh:
        doc["system"] = {"auth": {"ssh": ssh}}


def _log_fields(raw: RawRecord, line: SyslogLine) -> dict[str, Any]:
    log: dict[str, Any] = {"offset": raw.position}
    if raw.source.path:
        log["file"] = {"path": raw.source.path}
    if line.priority is not None:
        facility, severity = line.priority >> 3, line.priority & 7
        log["syslog"] = {
            "priority": line.priority,
            "facility": {"code": facility, "name": _SYSLOG_FACILITIES[facility]},
            "severity": {"code": severity, "name": _SYSLOG_SEVERITIES[severity]},
        }
        if line.msgid:
            log["syslog"]["msgid"] = line.msgid
    return log


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _unescape_octal(text: str) -> str:
    if "\\" not in text:
        return text

    def decode(match: re.Match[str]) -> str:
        escaped = match.group(0)
        data = bytes(int(escaped[i + 1 : i + 4], 8) for i in range(0, len(escaped), 4))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return escaped  # not UTF-8 after all: keep what sshd wrote

    return _OCTAL_ESCAPES.sub(decode, text)


def _where(raw: RawRecord) -> str:
    source = raw.source.path or f"{raw.source.type}:{raw.source.port or '?'}"
    return f"{source} at {raw.position} (agency {raw.agency.id}, record {raw.id})"
