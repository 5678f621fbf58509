"""Tests of detectors.parsers.openvpn: OpenVPN server messages to ECS fragments.

There is no real OpenVPN data in /work/shared/data. Every message below is a HAND-WRITTEN
EXAMPLE, written for these tests after what OpenVPN 2.4 to 2.6 and pfSense's OpenVPN scripts
log; addresses are from documentation or private ranges, user names are Vietnamese.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, ParseContext
from detectors.parsers.network import NETWORK_PROGRAM_PARSERS
from detectors.parsers.openvpn import OpenvpnParser
from detectors.syslog import SyslogLine, parse_syslog
from tests.support.ecs import assert_program_fragment

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)
PARSER = OpenvpnParser()


# --- hand-written example messages (not real server output) -----------------------------------

AUTH_OK = (
    "203.0.113.5:51234 TLS: Username/Password authentication succeeded for username 'nguyễn.văn.an'"
)
AUTH_OK_CN_SET = (
    "203.0.113.6:40000 TLS: Username/Password authentication succeeded for username"
    " 'trần.thị.bích' [CN SET]"
)
AUTH_FAILED = (
    "203.0.113.7:50111 TLS Auth Error: Auth Username/Password verification failed for peer"
)
AUTH_SCRIPT_FAILED = (
    "203.0.113.7:50111 WARNING: Failed running command (--auth-user-pass-verify): external"
    " program exited with error status: 1"
)
AUTH_PLUGIN_FAILED = (
    "203.0.113.7:50111 PLUGIN_CALL: plugin function PLUGIN_AUTH_USER_PASS_VERIFY failed with"
    " status 1: /usr/lib/openvpn/openvpn-plugin-auth-pam.so"
)
AUTH_PAM_FAILED = (
    "AUTH-PAM: BACKGROUND: user 'lê.hoàng.phúc' failed to authenticate: Authentication failure"
)
CCD_FAILED = (
    "203.0.113.8:41000 TLS Auth Error: --client-config-dir authentication failed for common"
    " name 'phạm.minh.đức' file='/etc/openvpn/ccd/phạm.minh.đức'"
)
CONNECTED = (
    "203.0.113.5:51234 [nguyễn.văn.an] Peer Connection Initiated with [AF_INET]203.0.113.5:51234"
)
POOL = "nguyễn.văn.an/203.0.113.5:51234 MULTI_sva: pool returned IPv4=10.8.0.6, IPv6=(Not enabled)"
POOL_DUAL = (
    "trần.thị.bích/203.0.113.6:40000 MULTI_sva: pool returned IPv4=10.8.0.10, IPv6=fd00:8::1000"
)
PRIMARY = "MULTI: primary virtual IP for vũ.thị.hạnh/198.51.100.20:1194: 10.8.0.14"
DISCONNECTED = (
    "nguyễn.văn.an/203.0.113.5:51234 SIGTERM[soft,remote-exit] received, client-instance exiting"
)
PING_RESTART = (
    "trần.thị.bích/203.0.113.6:40000 SIGUSR1[soft,ping-restart] received, client-instance"
    " restarting"
)
TCP_RESET = "vũ.thị.hạnh/198.51.100.20:1194 Connection reset, restarting [0]"
CERT_EXPIRED = (
    "203.0.113.9:37000 VERIFY ERROR: depth=0, error=certificate has expired:"
    " C=VN, ST=Ha Noi, O=So TTTT, CN=đỗ.quang.huy, serial=4"
)
CERT_CA_UNKNOWN = (
    "203.0.113.9:37000 VERIFY ERROR: depth=1, error=unable to get local issuer certificate:"
    " CN=Fake CA"
)
CERT_REVOKED = "203.0.113.9:37000 VERIFY CRL: certificate serial number 4 is revoked"
PFSENSE_OK = "user 'nguyễn.văn.an' authenticated"
PFSENSE_FAILED = "user 'trần.thị.bích' could not authenticate."
PFSENSE_CONNECTED = (
    "openvpn server 'ovpns1' user 'nguyễn.văn.an' address '203.0.113.5:51234' - connected"
)
PFSENSE_DISCONNECTED = (
    "openvpn server 'ovpns1' user cert CN 'nguyễn.văn.an' address '203.0.113.5' - disconnected"
)
IPV6_CONNECTED = (
    "2001:db8:5::7:1194 [đỗ.quang.huy] Peer Connection Initiated with [AF_INET6]2001:db8:5::7:1194"
)
MAPPED_CONNECTED = (
    "::ffff:203.0.113.5:51234 [nguyễn.văn.an] Peer Connection Initiated with"
    " [AF_INET6]::ffff:203.0.113.5:51234"
)


def _line(message: str, program: str = "openvpn") -> SyslogLine:
    return SyslogLine(timestamp=RECEIVED, hostname="vpn", program=program, pid=1, message=message)


def _parse(message: str) -> Fragment:
    fragment = PARSER.parse(_line(message), CONTEXT)
    assert fragment is not None, message
    _assert_valid(fragment)
    return fragment


def _assert_valid(fragment: Fragment) -> None:
    assert_program_fragment(fragment, RECEIVED)


def test_authentication_success() -> None:
    fragment = _parse(AUTH_OK)
    assert fragment == {
        "event": {
            "action": "vpn-auth-success",
            "category": ["authentication"],
            "type": ["start"],
            "outcome": "success",
        },
        "user": {"name": "nguyễn.văn.an"},
        "source": {"ip": "203.0.113.5", "port": 51234},
        "network": {"protocol": "openvpn"},
    }
    assert _parse(AUTH_OK_CN_SET)["user"] == {"name": "trần.thị.bích"}
    assert _parse(PFSENSE_OK)["event"]["action"] == "vpn-auth-success"
    assert _parse(PFSENSE_OK)["user"] == {"name": "nguyễn.văn.an"}


def test_authentication_failures() -> None:
    for message in (AUTH_FAILED, AUTH_SCRIPT_FAILED, AUTH_PLUGIN_FAILED):
        fragment = _parse(message)
        assert fragment["event"]["action"] == "vpn-auth-failure"
        assert fragment["event"]["outcome"] == "failure"
        assert fragment["event"]["category"] == ["authentication"]
        assert fragment["source"] == {"ip": "203.0.113.7", "port": 50111}
        assert "user" not in fragment
        assert fragment["error"]["message"]
    pam = _parse(AUTH_PAM_FAILED)
    assert pam["user"] == {"name": "lê.hoàng.phúc"}
    assert pam["error"] == {"message": "Authentication failure"}
    assert "source" not in pam
    ccd = _parse(CCD_FAILED)
    assert ccd["user"] == {"name": "phạm.minh.đức"}
    pfsense = _parse(PFSENSE_FAILED)
    assert pfsense["event"]["action"] == "vpn-auth-failure"
    assert pfsense["user"] == {"name": "trần.thị.bích"}


def test_connections() -> None:
    connected = _parse(CONNECTED)
    assert connected["event"] == {
        "action": "vpn-connect",
        "category": ["network", "session"],
        "type": ["connection", "start"],
        "outcome": "success",
    }
    assert connected["user"] == {"name": "nguyễn.văn.an"}
    assert connected["source"] == {"ip": "203.0.113.5", "port": 51234}
    v6 = _parse(IPV6_CONNECTED)
    assert v6["source"] == {"ip": "2001:db8:5::7", "port": 1194}
    assert v6["user"] == {"name": "đỗ.quang.huy"}
    mapped = _parse(MAPPED_CONNECTED)
    assert mapped["source"] == {"ip": "203.0.113.5", "port": 51234}
    pfsense = _parse(PFSENSE_CONNECTED)
    assert pfsense["event"]["action"] == "vpn-connect"
    assert pfsense["source"] == {"ip": "203.0.113.5", "port": 51234}


def test_disconnections() -> None:
    for message in (DISCONNECTED, PING_RESTART, TCP_RESET):
        fragment = _parse(message)
        assert fragment["event"]["action"] == "vpn-disconnect"
        assert fragment["event"]["type"] == ["connection", "end"]
        assert fragment["user"]["name"] in {"nguyễn.văn.an", "trần.thị.bích", "vũ.thị.hạnh"}
    pfsense = _parse(PFSENSE_DISCONNECTED)
    assert pfsense["event"]["action"] == "vpn-disconnect"
    assert pfsense["source"] == {"ip": "203.0.113.5"}
    assert pfsense["user"] == {"name": "nguyễn.văn.an"}


def test_address_assigned() -> None:
    pool = _parse(POOL)
    assert pool["event"]["action"] == "vpn-ip-assigned"
    assert pool["openvpn"] == {"client": {"ip": "10.8.0.6"}}
    assert pool["source"] == {"ip": "203.0.113.5", "port": 51234, "nat": {"ip": "10.8.0.6"}}
    assert pool["user"] == {"name": "nguyễn.văn.an"}
    dual = _parse(POOL_DUAL)
    assert dual["openvpn"] == {"client": {"ip": ["10.8.0.10", "fd00:8::1000"]}}
    primary = _parse(PRIMARY)
    assert primary["user"] == {"name": "vũ.thị.hạnh"}
    assert primary["source"] == {"ip": "198.51.100.20", "port": 1194, "nat": {"ip": "10.8.0.14"}}
    nothing = "a/203.0.113.5:1 MULTI_sva: pool returned IPv4=(Not enabled), IPv6=(Not enabled)"
    assert PARSER.parse(_line(nothing), CONTEXT) is None


def test_certificate_errors() -> None:
    expired = _parse(CERT_EXPIRED)
    assert expired["event"]["action"] == "vpn-cert-error"
    assert expired["event"]["outcome"] == "failure"
    assert expired["error"] == {"message": "certificate has expired"}
    assert expired["tls"] == {"client": {"x509": {"subject": {"common_name": ["đỗ.quang.huy"]}}}}
    assert expired["user"] == {"name": "đỗ.quang.huy"}
    issuer = _parse(CERT_CA_UNKNOWN)
    assert "user" not in issuer  # depth 1 is the issuing CA, not the client
    revoked = _parse(CERT_REVOKED)
    assert revoked["error"] == {"message": "certificate serial number 4 is revoked"}


def test_other_messages_give_none() -> None:
    for message in (
        "203.0.113.5:51234 TLS: Initial packet from [AF_INET]203.0.113.5:51234, sid=1a2b3c4d",
        "203.0.113.5:51234 peer info: IV_VER=2.6.12",
        "203.0.113.5:51234 VERIFY OK: depth=0, CN=nguyễn.văn.an",
        "Initialization Sequence Completed",
        "MULTI: Learn: 10.8.0.6 -> nguyễn.văn.an/203.0.113.5:51234",
        "UNDEF/203.0.113.5:51234 TLS: Username/Password authentication deferred",
        "",
    ):
        assert PARSER.parse(_line(message), CONTEXT) is None, message


def test_undefined_common_name_is_not_a_user() -> None:
    fragment = _parse(
        "UNDEF/203.0.113.5:51234 SIGTERM[soft,remote-exit] received, client-instance exiting"
    )
    assert "user" not in fragment


def test_through_the_syslog_header_and_program_names() -> None:
    for program in ("openvpn", "ovpn-server", "openvpn-server"):
        assert program in PARSER.programs
    line = parse_syslog(f"Dec 10 21:46:10 vpn ovpn-server[1432]: {CONNECTED}", RECEIVED)
    fragment = PARSER.parse(line, CONTEXT)
    assert fragment is not None
    assert fragment["user"]["name"] == "nguyễn.văn.an"
    assert any(isinstance(p, OpenvpnParser) for p in NETWORK_PROGRAM_PARSERS)
    assert PARSER.dataset == "openvpn.log"


def test_real_syslog_messages_of_other_programs_give_none() -> None:
    logs = sorted((DATA / "loghub").glob("*/*.log"))
    if not logs:
        pytest.skip(f"no shared data at {DATA}")
    taken = []
    for path in logs:
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if PARSER.parse(_line(text), CONTEXT) is not None:
                taken.append(text)
    assert taken == []


# --- odd input ---------------------------------------------------------------------------------


def _check_any(message: str) -> None:
    fragment = PARSER.parse(_line(message), CONTEXT)
    if fragment is not None:
        _assert_valid(fragment)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text(message: str) -> None:
    _check_any(message)
    _check_any("203.0.113.5:51234 " + message)


@settings(max_examples=300, deadline=None)
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_arbitrary_bytes_decoded_with_replacement(message: str) -> None:
    _check_any(message)
    _check_any("a/203.0.113.5:1 " + message)


_PIECES = st.one_of(
    st.text(max_size=15),
    st.integers(min_value=0, max_value=2**70).map(str),
    st.sampled_from(["203.0.113.5", "2001:db8::1", "::ffff:1.2.3.4", "999.1.1.1", "UNDEF", "'",
                     "/", ":", "[", "]", "CN=", "depth=0", "(Not enabled)", "\ufffd"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "{}/{}:{} MULTI_sva: pool returned IPv4={}, IPv6={}",
            "{}:{} VERIFY ERROR: depth={}, error={}: {}",
            "{}:{} [{}] Peer Connection Initiated with [AF_INET]{}:{}",
            "MULTI: primary virtual IP for {}/{}:{}: {}",
            "openvpn server '{}' user '{}' address '{}:{}' - {}",
            "{}:{} TLS: Username/Password authentication succeeded for username '{}'",
        ]
    ),
    st.lists(_PIECES, min_size=5, max_size=5),
)
def test_templates_with_odd_pieces(template: str, pieces: list[str]) -> None:
    _check_any(template.format(*pieces))


def test_one_mebibyte_lines() -> None:
    mib = 2**20
    for message in (
        "1" * mib,
        "203.0.113.5:" + "9" * mib,
        "a/" + "1." * (mib // 2) + ":1 x",
        "203.0.113.5:1 TLS Auth Error: " + "'" * mib,
        "203.0.113.5:1 VERIFY ERROR: depth=0, error=x: " + "CN=" * (mib // 3),
        "user '" + "x" * mib + "' authenticated",
        "203.0.113.5:1 [" + "]" * mib + " Peer Connection Initiated with ",
    ):
        _check_any(message)
