"""The messages sshd logs, after Elastic's ``system.auth`` fileset.

Messages about authentication and connections are classified into ``event.action``
(``ssh_login``, ``invalid_user``, ``ssh_disconnect``, ...), ``event.category``/``event.type`` and
``event.outcome``, with the user, source address and port pulled out, and Elastic's
``system.auth.ssh.*`` (event, method, signature, dropped_ip). PAM lines (``pam_unix(sshd:auth):
...``, or ``sshd(pam_unix)`` tags) are classified by ``detectors.parsers.linux.parse_pam``.
"""

from __future__ import annotations

import re
from typing import ClassVar

from detectors.parsers.base import Fragment, ParseContext, ProgramParser
from detectors.parsers.linux import (
    AUTH_DATASET,
    MessageKind,
    classify,
    endpoint,
    fragment_of,
    kind,
    parse_pam,
    unwrap_repeated,
)
from detectors.syslog import SyslogLine

# OpenSSH 9.8 moved per-connection work, and its logging, into sshd-session; 10.0 added sshd-auth.
SSHD_PROGRAMS = frozenset({"sshd", "sshd-session", "sshd-auth"})

_AUTH = ("authentication",)
_NETWORK = ("network",)
_CONNECTION_END = ("connection", "end")
_PREAUTH = r"(?: \[preauth\])?$"
# "invalid user X" / "authenticating user X" / "user X" before an address, as OpenSSH 7.5+ logs.
_WHOSE = r"(?:(?:invalid |authenticating )?user (?P<user>.*) )?"
# A user name is whatever the client sent, " from 6.6.6.6 port 1" included: user patterns are
# greedy so that the address is the one sshd wrote last, after the name, not one inside it.

# Most frequent first: the patterns are tried in order and each fails on its first characters.
# ``detail`` is Elastic's system.auth.ssh.event.
_KINDS: tuple[MessageKind, ...] = (
    kind(
        r"Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*) from (?P<address>\S+)"
        r" port (?P<port>\d+)(?: ssh\d)?(?:: (?P<signature>.+))?$",
        "ssh_login", _AUTH, ("start",), "failure", "Failed",
    ),
    kind(
        r"(?:error: )?Received disconnect from (?P<address>\S+) port (?P<port>\d+):\s?\d+: .*$",
        "ssh_disconnect", _NETWORK, _CONNECTION_END,
    ),
    # OpenSSH before 7.3 logged no port: "Received disconnect from 1.2.3.4: 11: Bye Bye".
    kind(
        r"(?:error: )?Received disconnect from (?P<address>\S+): \d+: .*$",
        "ssh_disconnect", _NETWORK, _CONNECTION_END,
    ),
    kind(
        r"Invalid user (?P<user>.*) from (?P<address>\S+)(?: port (?P<port>\d+))?$",
        "invalid_user", _AUTH, ("info",), "failure", "Invalid",
    ),
    kind(
        r"input_userauth_request: invalid user (?P<user>.*?)" + _PREAUTH,
        "invalid_user_auth_request", _AUTH, ("info",), "failure",
    ),
    kind(
        r"reverse mapping checking getaddrinfo for (?P<domain>\S+) \[(?P<address>[^\]]+)\]"
        r" failed(?: - POSSIBLE BREAK-IN ATTEMPT!)?$",
        "reverse_mapping_failed", _NETWORK, ("info",),
    ),
    kind(
        r"Address (?P<address>\S+) maps to (?P<domain>\S+), but this does not map back to the"
        r" address(?: - POSSIBLE BREAK-IN ATTEMPT!)?$",
        "reverse_mapping_failed", _NETWORK, ("info",),
    ),
    kind(
        r"Connection (?:closed|reset) by " + _WHOSE + r"(?P<address>\S+) port (?P<port>\d+)"
        + _PREAUTH,
        "ssh_connection_closed", _NETWORK, _CONNECTION_END,
    ),
    # OpenSSH before 7.3: "Connection closed by 1.2.3.4 [preauth]".
    kind(
        r"Connection (?:closed|reset) by (?P<address>\S+)" + _PREAUTH,
        "ssh_connection_closed", _NETWORK, _CONNECTION_END,
    ),
    kind(
        r"Disconnected from " + _WHOSE + r"(?P<address>\S+) port (?P<port>\d+)" + _PREAUTH,
        "ssh_disconnect", _NETWORK, _CONNECTION_END,
    ),
    kind(
        r"Accepted (?P<method>\S+) for (?P<user>.*) from (?P<address>\S+) port (?P<port>\d+)"
        r"(?: ssh\d)?(?:: (?P<signature>.+))?$",
        "ssh_login", _AUTH, ("start",), "success", "Accepted",
    ),
    kind(
        r"Did not receive identification string from (?P<address>\S+)(?: port (?P<port>\d+))?$",
        "no_identification_string", _NETWORK, _CONNECTION_END,
    ),
    kind(
        r"error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*)"
        r" from (?P<address>\S+) port (?P<port>\d+)(?: ssh\d)?" + _PREAUTH,
        "max_auth_attempts_exceeded", _AUTH, ("info",), "failure",
    ),
    kind(
        r"Disconnecting: Too many authentication failures(?: for (?:invalid user )?"
        r"(?P<user>.*?))?" + _PREAUTH,
        "max_auth_attempts_exceeded", _AUTH, ("info",), "failure",
    ),
    kind(
        r"Disconnecting " + _WHOSE + r"(?P<address>\S+) port (?P<port>\d+):"
        r" Too many authentication failures" + _PREAUTH,
        "max_auth_attempts_exceeded", _AUTH, ("info",), "failure",
    ),
    kind(
        r"User (?P<user>.*) from (?P<address>\S+) not allowed because (?P<reason>.+)$",
        "user_not_allowed", _AUTH, ("info",), "failure",
    ),
    kind(
        r"Unable to negotiate with (?P<address>\S+) port (?P<port>\d+): (?P<reason>.+?)"
        + _PREAUTH,
        "ssh_negotiation_failed", _NETWORK, _CONNECTION_END,
    ),
    kind(
        r"(?:fatal: )?Timeout before authentication for (?P<address>\S+) port (?P<port>\d+)$",
        "ssh_login_timeout", _AUTH, ("info",), "failure",
    ),
    kind(
        r"Connection from (?P<address>\S+) port (?P<port>\d+) on (?P<local>\S+) port"
        r" (?P<local_port>\d+)(?: rdomain \S*)?$",
        "ssh_connection", _NETWORK, ("connection", "start"),
    ),
)  # fmt: skip

# sshd writes bytes outside printable ASCII as octal escapes (strnvis), so a user name typed in
# Vietnamese reaches syslog as "nguy\341\273\205n"; user.name gets the UTF-8 text back.
_OCTAL_ESCAPES = re.compile(r"(?:\\[0-3][0-7]{2})+")


class SshdParser(ProgramParser):
    """sshd: logins, invalid users, disconnects and its PAM lines; None for other messages."""

    programs: ClassVar[frozenset[str]] = SSHD_PROGRAMS
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for an sshd message, or None when it is not one this classifies."""
        message = unwrap_repeated(line.message)
        if message.startswith(("pam_", "PAM ")) or "(pam" in (line.program or ""):
            fragment = parse_pam(line.program, message)
            if fragment is not None:
                _unescape_user(fragment)
                return fragment
        found = classify(_KINDS, message)
        if found is None:
            return None
        found_kind, groups = found
        fragment = fragment_of(found_kind, groups)
        _unescape_user(fragment)

        ssh: dict[str, str] = {}
        if found_kind.detail:
            ssh["event"] = found_kind.detail
        for key in ("method", "signature"):
            value = groups.get(key)
            if value:
                ssh[key] = value
        source = fragment.get("source", {})
        if found_kind.action == "no_identification_string" and "ip" in source:
            ssh["dropped_ip"] = source["ip"]
        if ssh:
            fragment["system"] = {"auth": {"ssh": ssh}}
        if groups.get("local"):
            # "Connection from A port P on B port Q": B is this server's address.
            fragment["destination"] = endpoint(groups["local"], groups.get("local_port"))
        return fragment


def _unescape_user(fragment: Fragment) -> None:
    user = fragment.get("user")
    if user is not None and "\\" in user.get("name", ""):
        user["name"] = unescape_octal(user["name"])


def unescape_octal(text: str) -> str:
    """``text`` with runs of sshd's ``\\ooo`` escapes decoded as UTF-8 where they are UTF-8."""

    def decode(match: re.Match[str]) -> str:
        escaped = match.group(0)
        data = bytes(int(escaped[i + 1 : i + 4], 8) for i in range(0, len(escaped), 4))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return escaped  # not UTF-8 after all: keep what sshd wrote

    return _OCTAL_ESCAPES.sub(decode, text)
