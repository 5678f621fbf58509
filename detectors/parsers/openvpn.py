"""OpenVPN server messages about authentication and client connections, into ECS.

OpenVPN prefixes a client's messages with who it is: ``203.0.113.5:51234`` before the client has
authenticated, ``nguyen.van.a/203.0.113.5:51234`` after (common name, or user name with
``--username-as-common-name``). What is classified, as ``event.action``:

- ``vpn-auth-success``: ``TLS: Username/Password authentication succeeded for username '...'``,
  and pfSense's own ``user '...' authenticated``;
- ``vpn-auth-failure``: ``TLS Auth Error: ...``, a failed ``--auth-user-pass-verify`` script or
  auth plugin, ``AUTH-PAM: BACKGROUND: user '...' failed to authenticate``, pfSense's
  ``user '...' could not authenticate.``;
- ``vpn-connect``: ``[name] Peer Connection Initiated with ...``, pfSense's ``... - connected``;
- ``vpn-ip-assigned``: ``MULTI_sva: pool returned IPv4=...``, ``MULTI: primary virtual IP ...``;
- ``vpn-disconnect``: ``SIGTERM[soft,remote-exit] received, client-instance exiting``, a reset
  TCP connection, pfSense's ``... - disconnected``;
- ``vpn-cert-error``: ``VERIFY ERROR: depth=0, error=certificate has expired: CN=...``, a revoked
  certificate (``VERIFY CRL``), and the other ``VERIFY ... ERROR`` checks.

Every other message gives None. The address OpenVPN gives the client inside the tunnel goes to
``openvpn.client.ip`` and, as Elastic's pfSense integration does, ``source.nat.ip``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from detectors.parsers.base import Fragment, ParseContext, ProgramParser, is_ip
from detectors.syslog import SyslogLine

# "name/address:port " or "address:port "; the address may be "[AF_INET6]..." or bracketed.
_WHO = re.compile(
    r"(?:(?P<name>[^\s/]+)/)?(?:\[AF_INET6?\])?\[?(?P<ip>[0-9A-Fa-f:.]+)\]?:(?P<port>[0-9]{1,5})"
    r"(?: |$)"
)
_AUTH_OK = re.compile(
    r"TLS: Username/Password authentication succeeded for username '(?P<user>.*)'"
    r"(?: \[CN SET\])?\s*$"
)
_PFSENSE_AUTH = re.compile(
    r"user '(?P<user>.*)' (?P<what>authenticated|could not authenticate)\.?\s*$"
)
_PFSENSE_SESSION = re.compile(
    r"openvpn server '[^']*' user (?:cert CN )?'(?P<user>.*)' address '(?P<address>[^']*)'"
    r" - (?P<what>connected|disconnected)\s*$"
)
_AUTH_FAILED = re.compile(
    r"TLS Auth Error: (?P<detail>.*)"
    r"|TLS Error: Auth Username/Password was not provided by peer"
    r"|WARNING: Failed running command \(--auth-user-pass-verify\)(?P<script>.*)"
    r"|PLUGIN_CALL: plugin function PLUGIN_AUTH_USER_PASS_VERIFY failed(?P<plugin>.*)"
    r"|AUTH-PAM: BACKGROUND: user '(?P<pam_user>.*)' failed to authenticate(?:: (?P<pam>.*))?",
    re.DOTALL,
)
_NAMED_IN_DETAIL = re.compile(r"(?:username|common name) '([^']*)'")
_CONNECTED = re.compile(r"\[(?P<user>[^\]]*)\] Peer Connection Initiated with ")
_POOL = re.compile(r"MULTI_sva: pool returned IPv4=(?P<v4>[^,\s]*)(?:, IPv6=(?P<v6>\S*))?")
_PRIMARY = re.compile(r"MULTI: primary virtual IP for (?P<who>\S+): (?P<ip>\S+)\s*$")
_DISCONNECTED = re.compile(
    r"SIG[A-Z0-9]+\[[^\]]*\] received, client-instance (?:exiting|restarting)"
    r"|Connection reset, restarting"
)
_VERIFY = re.compile(
    r"VERIFY (?:[A-Z0-9]+ )*ERROR: (?P<detail>.*)"
    r"|VERIFY CRL: (?P<revoked>certificate serial number \S+ is revoked)",
    re.DOTALL,
)
_VERIFY_DETAIL = re.compile(r"depth=(?P<depth>[0-9]+), error=(?P<error>[^:]*): (?P<subject>.*)")
_CN = re.compile(r"(?:^|[,/] ?)CN=([^,/]+)")
# A common name OpenVPN has not learnt yet.
_NO_NAME = frozenset({"UNDEF", ""})

_AUTH = (["authentication"], ["start"])
_SESSION_START = (["network", "session"], ["connection", "start"])
_SESSION_END = (["network", "session"], ["connection", "end"])
_SESSION_INFO = (["network", "session"], ["info"])


class OpenvpnParser(ProgramParser):
    """OpenVPN server messages (and pfSense's OpenVPN scripts) about users and connections."""

    programs: ClassVar[frozenset[str]] = frozenset({"openvpn", "ovpn-server", "openvpn-server"})
    dataset: ClassVar[str] = "openvpn.log"

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The ECS fragment for one OpenVPN message, or None if it is not one classified here."""
        message = line.message
        source: dict[str, Any] = {}
        user: str | None = None
        who = _WHO.match(message)
        if who and _put_address(source, who["ip"], who["port"]):
            user = who["name"]
            message = message[who.end() :]
        found = _classify(message, source)
        if found is None:
            return None
        fragment, named = found
        user = named or user
        if user and user not in _NO_NAME:
            fragment["user"] = {"name": user}
        if source:
            fragment["source"] = source
        fragment["network"] = {"protocol": "openvpn"}
        return fragment


# An event and the user name its message gives, if any.
_Found = tuple[Fragment, str | None]


def _classify(message: str, source: dict[str, Any]) -> _Found | None:
    """The event for the message after the client prefix, and the user it names."""
    if message.startswith("TLS: Username"):
        ok = _AUTH_OK.match(message)
        return (_event("vpn-auth-success", *_AUTH, "success"), ok["user"]) if ok else None
    failed = _AUTH_FAILED.match(message)
    if failed:
        detail = failed["detail"] or failed["script"] or failed["plugin"] or failed["pam"]
        user = failed["pam_user"]
        if user is None and failed["detail"]:
            named = _NAMED_IN_DETAIL.search(failed["detail"])
            user = named.group(1) if named else None
        fragment = _event("vpn-auth-failure", *_AUTH, "failure")
        if detail and detail.strip(" :"):
            fragment["error"] = {"message": detail.strip(" :")}
        return fragment, user
    connected = _CONNECTED.match(message)
    if connected:
        return _event("vpn-connect", *_SESSION_START, "success"), connected["user"]
    pool = _POOL.match(message)
    primary = None if pool else _PRIMARY.match(message)
    if pool or primary:
        return _assigned(pool, primary, source)
    if _DISCONNECTED.match(message):
        return _event("vpn-disconnect", *_SESSION_END), None
    verify = _VERIFY.match(message)
    if verify:
        return _certificate_error(verify)
    pfsense = _PFSENSE_AUTH.match(message)
    if pfsense:
        outcome = "success" if pfsense["what"] == "authenticated" else "failure"
        return _event(f"vpn-auth-{outcome}", *_AUTH, outcome), pfsense["user"]
    session = _PFSENSE_SESSION.match(message)
    if session:
        address, _colon, port = session["address"].rpartition(":")
        if not (address and _put_address(source, address, port)):
            _put_address(source, session["address"], "")
        if session["what"] == "connected":
            return _event("vpn-connect", *_SESSION_START, "success"), session["user"]
        return _event("vpn-disconnect", *_SESSION_END), session["user"]
    return None


def _assigned(
    pool: re.Match[str] | None, primary: re.Match[str] | None, source: dict[str, Any]
) -> _Found | None:
    addresses = [pool["v4"], pool["v6"] or ""] if pool else [primary["ip"] if primary else ""]
    assigned = [address for address in addresses if is_ip(address)]
    if not assigned:
        return None  # "IPv4=(Not enabled)": nothing was handed out
    user = None
    if primary and not source:
        who = _WHO.match(primary["who"] + " ")
        if who and _put_address(source, who["ip"], who["port"]):
            user = who["name"]
    fragment = _event("vpn-ip-assigned", *_SESSION_INFO, "success")
    fragment["openvpn"] = {"client": {"ip": assigned if len(assigned) > 1 else assigned[0]}}
    source["nat"] = {"ip": assigned[0]}
    return fragment, user


def _certificate_error(verify: re.Match[str]) -> _Found:
    fragment = _event("vpn-cert-error", *_AUTH, "failure")
    detail = verify["detail"]
    if detail is None:
        fragment["error"] = {"message": verify["revoked"]}
        return fragment, None
    parts = _VERIFY_DETAIL.match(detail)
    fragment["error"] = {"message": parts["error"] if parts else detail}
    if parts:
        common_name = _CN.search(parts["subject"])
        if common_name:
            name = common_name.group(1).strip()
            fragment["tls"] = {"client": {"x509": {"subject": {"common_name": [name]}}}}
            if parts["depth"] == "0":
                return fragment, name  # the client's own certificate names the user
    return fragment, None


def _event(
    action: str, categories: list[str], types: list[str], outcome: str | None = None
) -> Fragment:
    # Copies: the normalizer may extend an event's lists, and these come from shared constants.
    event: dict[str, Any] = {"action": action, "category": list(categories), "type": list(types)}
    if outcome:
        event["outcome"] = outcome
    return {"event": event}


def _put_address(source: dict[str, Any], address: str, port: str) -> bool:
    """Put the client's address (and port) in ``source``; False if it is not an address."""
    if address.lower().startswith("::ffff:") and "." in address:
        address = address[7:]  # an IPv4 client on a dual-stack socket
    if not is_ip(address):
        return False
    source["ip"] = address
    if port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535:
        source["port"] = int(port)
    return True
