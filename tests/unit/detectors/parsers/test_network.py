"""The network parsers inside the normalizer: registered, detected, merged into valid events.

Every line here is a HAND-WRITTEN EXAMPLE (there is no real network-device data in
/work/shared/data); the per-format files hold the detailed cases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from detectors.parsers.base import LineParser, ProgramParser
from detectors.parsers.network import NETWORK_LINE_PARSERS, NETWORK_PROGRAM_PARSERS
from socpipe.records import EcsEvent, RawRecord

normalize = pytest.importorskip("detectors.normalize", reason="the normalizer does not import")

RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)

FORTIGATE = (
    '<189>date=2024-12-10 time=21:45:33 devname="FGT60F-STTTT" devid="FGT60FTK2209A1B2"'
    ' eventtime=1733841933 tz="+0700" logid="0101039426" type="event" subtype="vpn"'
    ' level="alert" vd="root" logdesc="SSL VPN login fail" action="ssl-login-fail"'
    ' tunneltype="ssl-web" tunnelid=0 remip=198.51.100.200 user="nguyễn.văn.an" group="N/A"'
    ' dst_host="N/A" reason="sslvpn_login_permission_denied" msg="SSL user failed to logged in"'
)
FILTERLOG = (
    "<134>Dec 10 06:55:46 fw01 filterlog[72237]: 5,,,1000000103,igb1,match,block,in,4,0x0,,64,"
    "0,0,DF,6,tcp,60,198.51.100.7,10.10.2.8,41234,22,0,S,123456,,29200,,mss;sackOK;TS;nop;wscale"
)
NAMED = (
    "Dec 10 06:55:46 ns1 named[812]: client @0x7f64bc0a0f10 192.168.1.10#53412"
    " (www.example.com): query: www.example.com IN A +E(0)K (192.168.1.1)"
)
BIND_FILE = (
    "10-Dec-2024 06:55:46.123 queries: info: client @0x7f64bc0a0f10 192.168.1.10#53412"
    " (www.example.com): query: www.example.com IN A +E(0)K (192.168.1.1)"
)
OPENVPN = (
    "Dec 10 21:46:10 vpn01 ovpn-server[1432]: 203.0.113.5:51234 TLS: Username/Password"
    " authentication succeeded for username 'trần.thị.bích'"
)


def _raw(message: str, fmt: str) -> RawRecord:
    return RawRecord.model_validate(
        {
            "id": "raw-1",
            "agency": {"id": "so-tttt", "tier": "province", "name": "Sở Thông tin và Truyền thông"},
            "collector": {"id": "collector-1", "version": "0.1.0"},
            "host": "collector-host",
            "source": {"type": "syslog", "port": 514, "format": fmt},
            "received": RECEIVED,
            "position": 0,
            "message": message,
        }
    )


def _event(message: str, fmt: str) -> dict[str, Any]:
    normalized = normalize.Normalizer().normalize(_raw(message, fmt))
    assert normalized.status == "parsed", normalized.event.to_dict().get("error")
    assert isinstance(normalized.event, EcsEvent)
    return normalized.event.to_dict()


def test_exports_are_instances_of_the_right_kind() -> None:
    assert NETWORK_LINE_PARSERS
    assert NETWORK_PROGRAM_PARSERS
    assert all(isinstance(p, LineParser) for p in NETWORK_LINE_PARSERS)
    assert all(isinstance(p, ProgramParser) for p in NETWORK_PROGRAM_PARSERS)
    programs = [name for p in NETWORK_PROGRAM_PARSERS for name in p.programs]
    assert len(programs) == len(set(programs))


@pytest.mark.parametrize("fmt", ["fortigate", "auto"])
def test_fortigate_line(fmt: str) -> None:
    event = _event(FORTIGATE, fmt)
    assert event["event"]["dataset"] == "fortinet.firewall"
    assert event["event"]["action"] == "ssl-login-fail"
    assert event["event"]["outcome"] == "failure"
    assert event["@timestamp"] == "2024-12-10T14:45:33Z"
    assert event["event"]["timezone"] == "+07:00"
    assert event["user"]["name"] == "nguyễn.văn.an"
    assert "nguyễn.văn.an" in event["related"]["user"]
    assert event["source"]["ip"] == "198.51.100.200"


@pytest.mark.parametrize("fmt", ["syslog", "auto"])
def test_filterlog_through_syslog(fmt: str) -> None:
    event = _event(FILTERLOG, fmt)
    assert event["event"]["dataset"] == "pfsense.log"
    assert event["event"]["type"] == ["connection", "denied"]
    assert event["network"]["direction"] == "inbound"  # judged from the addresses
    assert event["observer"]["ingress"]["interface"]["name"] == "igb1"


def test_named_through_syslog() -> None:
    event = _event(NAMED, "syslog")
    assert event["event"]["dataset"] == "bind.query"
    assert event["dns"]["question"]["name"] == "www.example.com"
    assert event["network"]["direction"] == "internal"


@pytest.mark.parametrize("fmt", ["bind.query", "auto"])
def test_bind_query_file(fmt: str) -> None:
    event = _event(BIND_FILE, fmt)
    assert event["event"]["dataset"] == "bind.query"
    assert event["@timestamp"] == "2024-12-09T23:55:46.123000Z"
    assert event["event"]["timezone"] == "Asia/Ho_Chi_Minh"


def test_openvpn_through_syslog() -> None:
    event = _event(OPENVPN, "syslog")
    assert event["event"]["dataset"] == "openvpn.log"
    assert event["event"]["action"] == "vpn-auth-success"
    assert event["user"]["name"] == "trần.thị.bích"
