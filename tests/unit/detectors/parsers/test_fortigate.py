"""Tests of detectors.parsers.fortigate: FortiGate key=value lines to ECS fragments.

There is no real FortiGate data in /work/shared/data. Every FortiGate line below is a
HAND-WRITTEN EXAMPLE, written for these tests after the log formats Fortinet documents in its
"FortiOS Log Message Reference" (field names, log ids, value sets); addresses are from the
documentation ranges or private ones, device names and serials are made up, user names are
Vietnamese as this deployment's will be.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, NotMine, ParseContext
from detectors.parsers.fortigate import FortigateParser
from detectors.parsers.network import NETWORK_LINE_PARSERS
from socpipe.records import EcsEvent
from tests.support.ecs import ECS_CATEGORIES, ECS_TYPES

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
CONTEXT = ParseContext(received=datetime(2024, 12, 11, 8, 0, tzinfo=UTC))
PARSER = FortigateParser()
ICT = timezone(timedelta(hours=7))


# --- hand-written example lines (not real device output) --------------------------------------

HEAD = 'devname="FGT60F-STTTT" devid="FGT60FTK2209A1B2" vd="root"'
TRAFFIC_CLOSE = (
    f'<189>date=2024-12-10 time=06:55:46 {HEAD} eventtime=1733788546123456789 tz="+0700"'
    ' logid="0000000013" type="traffic" subtype="forward" level="notice" srcip=10.10.1.23'
    ' srcport=51234 srcintf="port12" srcintfrole="lan" dstip=203.0.113.80 dstport=443'
    ' dstintf="wan1" dstintfrole="wan" srccountry="Reserved" dstcountry="United States"'
    ' sessionid=4521873 proto=6 action="close" policyid=12 policytype="policy"'
    ' poluuid="c1f0a2b4-1d2e-51ef-8f3a-5c2d7e9b0a11" policyname="LAN-ra-Internet" service="HTTPS"'
    ' trandisp="snat" transip=198.51.100.10 transport=61234 appid=40568 app="HTTPS.BROWSER"'
    ' appcat="Web.Client" apprisk="medium" duration=10 sentbyte=2136 rcvdbyte=4580 sentpkt=11'
    ' rcvdpkt=10 user="nguyễn.văn.an" group="phong-cntt" srcmac="00:0c:29:ab:cd:ef"'
)
TRAFFIC_DENY = (
    f'date=2024-12-10 time=07:01:02 {HEAD} eventtime=1733788862 tz="+0700" logid="0000000013"'
    ' type="traffic" subtype="forward" level="notice" srcip=192.0.2.45 srcport=44321'
    ' srcintf="wan1" srcintfrole="wan" dstip=10.10.2.8 dstport=3389 dstintf="port3"'
    ' dstintfrole="dmz" sessionid=4522001 proto=6 action="deny" policyid=0 policytype="policy"'
    ' service="RDP" dstcountry="Reserved" srccountry="Netherlands" trandisp="noop" duration=0'
    ' sentbyte=0 rcvdbyte=0 sentpkt=0 appcat="unscanned" crscore=30 craction=131072'
    ' crlevel="high"'
)
TRAFFIC_LOCAL = (
    f'date=2024-12-10 time=07:03:10 {HEAD} logid="0001000014" type="traffic" subtype="local"'
    ' level="notice" srcip=198.51.100.77 identifier=1 srcintf="wan1" srcintfrole="wan"'
    ' dstip=203.0.113.2 dstintf="root" dstintfrole="undefined" sessionid=4522100 proto=1'
    ' action="accept" policyid=0 policytype="local-in-policy" service="PING" trandisp="noop"'
    ' app="PING" duration=60 sentbyte=84 rcvdbyte=84 sentpkt=1 rcvdpkt=1 appcat="unscanned"'
)
WEBFILTER_BLOCKED = (
    f'date=2024-12-10 time=08:12:40 {HEAD} eventtime=1733793160450000000 tz="+0700"'
    ' logid="0316013056" type="utm" subtype="webfilter" eventtype="ftgd_blk" level="warning"'
    ' policyid=12 sessionid=4523310 user="trần.thị.bích" srcip=10.10.1.41 srcport=52811'
    ' srcintf="port12" srcintfrole="lan" dstip=203.0.113.99 dstport=443 dstintf="wan1"'
    ' dstintfrole="wan" proto=6 service="HTTPS" hostname="casino.example.net"'
    ' profile="web-co-quan" action="blocked" reqtype="direct" url="/dang-ky?ref=ads"'
    ' sentbyte=517 rcvdbyte=0 direction="outgoing" msg="URL belongs to a denied category in'
    ' policy" method="domain" cat=11 catdesc="Gambling"'
)
IPS_DROPPED = (
    f'date=2024-12-10 time=09:20:05 {HEAD} eventtime=1733797205000000000 tz="+0700"'
    ' logid="0419016384" type="utm" subtype="ips" eventtype="signature" level="alert"'
    ' severity="critical" srcip=198.51.100.23 srccountry="Reserved" dstip=10.10.2.15'
    ' srcintf="wan1" srcintfrole="wan" dstintf="port3" dstintfrole="dmz" sessionid=4524001'
    ' action="dropped" proto=6 service="HTTP" policyid=21 attack="Apache.Log4j.Error.Log.Remote'
    '.Code.Execution" srcport=40112 dstport=8080 hostname="cong-dich-vu.example.gov.vn"'
    ' url="/api/login" direction="incoming" attackid=51006 profile="ips-dmz"'
    ' ref="http://www.fortinet.com/ids/VID51006" incidentserialno=188745112'
    ' msg="web_app3: Apache.Log4j.Error.Log.Remote.Code.Execution," crscore=50 craction=4096'
    ' crlevel="critical"'
)
VIRUS_BLOCKED = (
    f'date=2024-12-10 time=10:02:11 {HEAD} eventtime=1733799731 tz="+0700"'
    ' logid="0211008192" type="utm" subtype="virus" eventtype="infected" level="warning"'
    " policyid=12 sessionid=4524550 srcip=10.10.1.52 dstip=192.0.2.200 srcport=53120"
    ' dstport=80 srcintf="port12" srcintfrole="lan" dstintf="wan1" dstintfrole="wan" proto=6'
    ' service="HTTP" direction="incoming" filename="hoa-don-thang-12.exe" filesize=68608'
    ' quarskip="File-was-not-quarantined" virus="W32/Agent.ABCD!tr" dtype="Virus"'
    ' ref="http://www.fortinet.com/ve?vn=W32%2FAgent.ABCD%21tr" virusid=10051234'
    ' url="http://files.example.com/tai-ve/hoa-don-thang-12.exe" profile="av-default"'
    ' user="lê.hoàng.phúc" agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)"'
    ' action="blocked" msg="File is infected."'
)
APP_CTRL_BLOCK = (
    f'date=2024-12-10 time=10:30:00 {HEAD} tz="+0700" logid="1059028705" type="utm"'
    ' subtype="app-ctrl" eventtype="signature" level="warning" appid=16195 srcip=10.10.1.60'
    ' dstip=203.0.113.150 srcport=50022 dstport=443 srcintf="port12" srcintfrole="lan"'
    ' dstintf="wan1" dstintfrole="wan" proto=6 service="P2P" direction="outgoing" policyid=12'
    ' sessionid=4525010 applist="ung-dung-cam" action="block" appcat="P2P" app="BitTorrent"'
    ' incidentserialno=188750001 msg="P2P: BitTorrent," apprisk="critical"'
)
ADMIN_LOGIN_FAILED = (
    f'date=2024-12-10 time=11:15:09 {HEAD} eventtime=1733804109 tz="+0700" logid="0100032002"'
    ' type="event" subtype="system" level="alert" logdesc="Admin login failed" sn="0"'
    ' user="admin" ui="https(192.0.2.77)" method="https" srcip=192.0.2.77 dstip=203.0.113.2'
    ' action="login" status="failed" reason="passwd_invalid" msg="Administrator admin login'
    ' failed from https(192.0.2.77) because of invalid password"'
)
ADMIN_LOGIN_SSH = (
    f'date=2024-12-10 time=11:16:00 {HEAD} tz="+0700" logid="0100032001" type="event"'
    ' subtype="system" level="information" logdesc="Admin login successful" sn="1733804160"'
    ' user="phạm.minh.đức" ui="ssh(10.10.0.5)" method="ssh" srcport=50144 dstip=10.10.0.1'
    ' dstport=22 action="login" status="success" reason="none" profile="super_admin"'
    ' msg="Administrator phạm.minh.đức logged in successfully from ssh(10.10.0.5)"'
)
CONFIG_EDIT = (
    f'date=2024-12-10 time=11:20:00 {HEAD} tz="+0700" logid="0100044547" type="event"'
    ' subtype="system" level="information" logdesc="Object attribute configured"'
    ' user="phạm.minh.đức" ui="ssh(10.10.0.5)" action="Edit" cfgtid=1234567'
    ' cfgpath="firewall.policy" cfgobj="12" cfgattr="action[deny->accept]"'
    ' msg="Edit firewall.policy 12"'
)
SSLVPN_LOGIN_FAIL = (
    f'date=2024-12-10 time=21:45:33 {HEAD} eventtime=1733841933 tz="+0700" logid="0101039426"'
    ' type="event" subtype="vpn" level="alert" logdesc="SSL VPN login fail"'
    ' action="ssl-login-fail" tunneltype="ssl-web" tunnelid=0 remip=198.51.100.200'
    ' user="nguyễn.văn.an" group="N/A" dst_host="N/A" reason="sslvpn_login_permission_denied"'
    ' msg="SSL user failed to logged in"'
)
SSLVPN_TUNNEL_UP = (
    f'date=2024-12-10 time=21:46:10 {HEAD} tz="+0700" logid="0101039947" type="event"'
    ' subtype="vpn" level="information" logdesc="SSL VPN tunnel up" action="tunnel-up"'
    ' tunneltype="ssl-tunnel" tunnelid=1871234 remip=198.51.100.200 tunnelip=10.212.134.200'
    ' user="nguyễn.văn.an" group="vpn-lanh-dao" dst_host="N/A" reason="tunnel established"'
    ' msg="SSL tunnel established"'
)
SSLVPN_TUNNEL_DOWN = (
    f'date=2024-12-10 time=23:02:59 {HEAD} tz="+0700" logid="0101039948" type="event"'
    ' subtype="vpn" level="information" logdesc="SSL VPN tunnel down" action="tunnel-down"'
    ' tunneltype="ssl-tunnel" tunnelid=1871234 remip=198.51.100.200 tunnelip=10.212.134.200'
    ' user="nguyễn.văn.an" group="vpn-lanh-dao" dst_host="N/A" reason="N/A" duration=4609'
    ' sentbyte=1850112 rcvdbyte=31228701 msg="SSL tunnel shutdown"'
)
USER_AUTH_FAILED = (
    f'date=2024-12-10 time=08:00:12 {HEAD} tz="+0700" logid="0102043009" type="event"'
    ' subtype="user" level="notice" logdesc="Authentication failed" srcip=10.10.1.77'
    ' dstip=203.0.113.9 policyid=30 interface="port12" user="vũ.thị.hạnh"'
    ' group="N/A" authproto="HTTPS(10.10.1.77)" action="authentication" status="failure"'
    ' reason="Authentication failed" msg="User vũ.thị.hạnh failed in authentication"'
)
FSSO_LOGON = (
    f'date=2024-12-10 time=07:45:00 {HEAD} tz="+0700" logid="0102043014" type="event"'
    ' subtype="user" level="notice" logdesc="FSSO logon authentication status" srcip=10.10.1.23'
    ' user="nguyễn.văn.an" server="FSSO_dc01" action="FSSO-logon"'
    ' msg="FSSO-logon event from FSSO_dc01: user nguyễn.văn.an logged on 10.10.1.23"'
)
DNS_QUERY = (
    f'date=2024-12-10 time=08:05:00 {HEAD} tz="+0700" logid="1501054802" type="utm"'
    ' subtype="dns" eventtype="dns-response" level="notice" policyid=12 sessionid=4523000'
    ' srcip=10.10.1.23 srcport=53011 srcintf="port12" srcintfrole="lan" dstip=10.10.0.53'
    ' dstport=53 dstintf="port3" dstintfrole="dmz" proto=17 profile="dns-default" xid=41201'
    ' qname="portal.example.gov.vn" qtype="A" qtypeval=1 qclass="IN"'
    ' ipaddr="203.0.113.44, 203.0.113.45" msg="Domain is monitored" action="pass"'
    ' cat=31 catdesc="Government and Legal Organizations"'
)
EXAMPLES = [
    TRAFFIC_CLOSE, TRAFFIC_DENY, TRAFFIC_LOCAL, WEBFILTER_BLOCKED, IPS_DROPPED, VIRUS_BLOCKED,
    APP_CTRL_BLOCK, ADMIN_LOGIN_FAILED, ADMIN_LOGIN_SSH, CONFIG_EDIT, SSLVPN_LOGIN_FAIL,
    SSLVPN_TUNNEL_UP, SSLVPN_TUNNEL_DOWN, USER_AUTH_FAILED, FSSO_LOGON, DNS_QUERY,
]  # fmt: skip


def _parse(line: str, context: ParseContext = CONTEXT) -> Fragment:
    fragment = PARSER.parse(line, context)
    _assert_valid(fragment)
    return fragment


def _assert_valid(fragment: Fragment) -> None:
    """ECS-allowed categories and types, no normalizer-owned fields, and a valid EcsEvent."""
    event: dict[str, Any] = fragment.get("event", {})
    assert set(event.get("category", [])) <= ECS_CATEGORIES
    assert set(event.get("type", [])) <= ECS_TYPES
    for owned in ("id", "original"):
        assert owned not in event
    for owned in ("organization", "labels", "related", "host"):
        assert owned not in fragment
    assert not {"file", "offset"} & set(fragment.get("log", {}))
    stamp = fragment.get("@timestamp", CONTEXT.received)
    assert isinstance(stamp, datetime)
    assert stamp.tzinfo is not None
    EcsEvent.model_validate({**fragment, "@timestamp": stamp, "event": dict(event)})


# --- examples ----------------------------------------------------------------------------------


def test_every_example_sniffs_and_parses() -> None:
    for line in EXAMPLES:
        assert PARSER.sniff(line)
        fragment = _parse(line)
        assert fragment["observer"]["vendor"] == "Fortinet"
        assert fragment["observer"]["name"] == "FGT60F-STTTT"
        assert isinstance(fragment["@timestamp"], datetime)


def test_traffic_close_maps_ecs_fields_like_elastic() -> None:
    fragment = _parse(TRAFFIC_CLOSE)
    assert fragment["@timestamp"] == datetime(2024, 12, 10, 6, 55, 46, tzinfo=ICT)
    assert "timezone" not in fragment["event"]  # the line said +0700; the normalizer keeps it
    assert fragment["observer"] == {
        "vendor": "Fortinet",
        "product": "Fortigate",
        "type": "firewall",
        "name": "FGT60F-STTTT",
        "serial_number": "FGT60FTK2209A1B2",
        "ingress": {"interface": {"name": "port12"}},
        "egress": {"interface": {"name": "wan1"}},
    }
    assert fragment["source"] == {
        "ip": "10.10.1.23",
        "port": 51234,
        "bytes": 2136,
        "packets": 11,
        "nat": {"ip": "198.51.100.10", "port": 61234},
        "mac": "00-0C-29-AB-CD-EF",
        "user": {"name": "nguyễn.văn.an", "group": {"name": "phong-cntt"}},
    }
    assert fragment["destination"] == {
        "ip": "203.0.113.80", "port": 443, "bytes": 4580, "packets": 10,
    }  # fmt: skip
    assert fragment["user"] == {"name": "nguyễn.văn.an"}
    assert fragment["network"] == {
        "iana_number": "6",
        "transport": "tcp",
        "protocol": "https",
        "application": "https.browser",
        "bytes": 6716,
        "packets": 21,
    }
    assert fragment["rule"] == {
        "id": "12",
        "name": "LAN-ra-Internet",
        "uuid": "c1f0a2b4-1d2e-51ef-8f3a-5c2d7e9b0a11",
        "ruleset": "policy",
        "category": "Web-Client",
    }
    event = fragment["event"]
    assert event["action"] == "close"
    assert event["code"] == "0000000013"
    assert event["category"] == ["network"]
    assert event["type"] == ["connection", "end", "protocol", "allowed"]
    assert event["outcome"] == "success"
    assert event["duration"] == 10_000_000_000
    assert fragment["log"] == {"level": "notice"}
    firewall = fragment["fortinet"]["firewall"]
    assert firewall["sessionid"] == "4521873"
    assert firewall["type"] == "traffic"
    assert firewall["dstcountry"] == "United States"
    for moved in ("srcip", "devname", "date", "eventtime", "sentbyte", "policyid", "tz"):
        assert moved not in firewall


def test_traffic_deny_is_denied_and_local_traffic_has_no_ports() -> None:
    deny = _parse(TRAFFIC_DENY)
    assert deny["event"]["type"] == ["connection", "end", "denied"]
    assert deny["network"]["protocol"] == "rdp"
    assert deny["destination"]["port"] == 3389
    assert deny["fortinet"]["firewall"]["crlevel"] == "high"
    local = _parse(TRAFFIC_LOCAL)
    assert local["network"]["transport"] == "icmp"
    assert "port" not in local["source"]
    assert local["event"]["type"] == ["connection", "end", "protocol", "allowed"]
    assert local["rule"]["ruleset"] == "local-in-policy"
    # No tz= key: the time is read in the context's zone and the zone is named.
    assert local["@timestamp"] == datetime(2024, 12, 10, 7, 3, 10, tzinfo=ICT)
    assert local["event"]["timezone"] == "Asia/Ho_Chi_Minh"


def test_utm_subtypes_have_their_category() -> None:
    web = _parse(WEBFILTER_BLOCKED)
    assert web["event"]["category"] == ["web", "network"]
    assert web["event"]["type"] == ["denied"]
    assert web["event"]["action"] == "ftgd_blk"
    assert web["url"] == {"domain": "casino.example.net", "path": "/dang-ky?ref=ads"}
    assert web["rule"]["category"] == "Gambling"
    assert web["rule"]["ruleset"] == "web-co-quan"
    assert web["network"]["direction"] == "outbound"
    assert web["user"]["name"] == "trần.thị.bích"
    assert web["message"] == "URL belongs to a denied category in policy"

    ips = _parse(IPS_DROPPED)
    assert ips["event"]["category"] == ["intrusion_detection", "network"]
    assert ips["event"]["type"] == ["denied"]
    assert ips["network"]["direction"] == "inbound"
    assert ips["fortinet"]["firewall"]["attack"] == "Apache.Log4j.Error.Log.Remote.Code.Execution"
    assert ips["fortinet"]["firewall"]["severity"] == "critical"
    assert ips["log"]["level"] == "alert"

    virus = _parse(VIRUS_BLOCKED)
    assert virus["event"]["category"] == ["malware", "network"]
    assert virus["event"]["action"] == "infected"
    assert virus["file"] == {"name": "hoa-don-thang-12.exe", "size": 68608}
    assert virus["url"] == {
        "original": "http://files.example.com/tai-ve/hoa-don-thang-12.exe",
        "scheme": "http",
        "domain": "files.example.com",
        "path": "/tai-ve/hoa-don-thang-12.exe",
    }
    assert virus["user_agent"] == {"original": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"}
    assert virus["fortinet"]["firewall"]["virus"] == "W32/Agent.ABCD!tr"

    app = _parse(APP_CTRL_BLOCK)
    assert app["event"]["category"] == ["network"]
    assert app["event"]["type"] == ["denied"]
    assert app["network"]["application"] == "bittorrent"
    assert app["rule"]["ruleset"] == "ung-dung-cam"


def test_dns_log_gives_dns_fields() -> None:
    fragment = _parse(DNS_QUERY)
    assert fragment["dns"] == {
        "question": {"name": "portal.example.gov.vn", "type": "A", "class": "IN"},
        "id": "41201",
        "resolved_ip": ["203.0.113.44", "203.0.113.45"],
    }
    assert fragment["event"]["type"] == ["allowed"]
    assert fragment["network"]["transport"] == "udp"


def test_admin_logins_are_authentication_with_outcome() -> None:
    failed = _parse(ADMIN_LOGIN_FAILED)
    assert failed["event"]["category"] == ["authentication"]
    assert failed["event"]["type"] == ["start"]
    assert failed["event"]["outcome"] == "failure"
    assert failed["event"]["action"] == "login"
    assert failed["event"]["reason"] == "passwd_invalid"
    assert failed["user"]["name"] == "admin"
    assert failed["source"]["ip"] == "192.0.2.77"
    assert failed["rule"]["description"] == "Admin login failed"

    ssh = _parse(ADMIN_LOGIN_SSH)
    assert ssh["event"]["outcome"] == "success"
    assert ssh["user"]["name"] == "phạm.minh.đức"
    assert ssh["source"]["ip"] == "10.10.0.5"  # from ui="ssh(10.10.0.5)"


def test_configuration_change() -> None:
    fragment = _parse(CONFIG_EDIT)
    assert fragment["event"]["category"] == ["configuration"]
    assert fragment["event"]["type"] == ["change"]
    assert fragment["fortinet"]["firewall"]["cfgpath"] == "firewall.policy"


def test_vpn_events_take_the_remote_end_as_source() -> None:
    fail = _parse(SSLVPN_LOGIN_FAIL)
    assert fail["event"]["category"] == ["authentication", "network"]
    assert fail["event"]["type"] == ["connection", "start"]
    assert fail["event"]["outcome"] == "failure"
    assert fail["source"]["ip"] == "198.51.100.200"
    assert fail["user"]["name"] == "nguyễn.văn.an"
    assert "group" not in fail["fortinet"]["firewall"]  # N/A is dropped

    up = _parse(SSLVPN_TUNNEL_UP)
    assert up["event"]["action"] == "tunnel-up"
    assert up["event"]["category"] == ["network", "session"]
    assert up["event"]["type"] == ["connection", "start"]
    assert up["event"]["outcome"] == "success"
    assert up["source"]["user"]["group"]["name"] == "vpn-lanh-dao"
    assert up["fortinet"]["firewall"]["tunnelip"] == "10.212.134.200"

    down = _parse(SSLVPN_TUNNEL_DOWN)
    assert down["event"]["type"] == ["connection", "end"]
    assert down["source"]["bytes"] == 1850112
    assert down["event"]["duration"] == 4609 * 10**9


def test_user_events() -> None:
    failed = _parse(USER_AUTH_FAILED)
    assert failed["event"]["category"] == ["authentication"]
    assert failed["event"]["outcome"] == "failure"
    assert failed["user"]["name"] == "vũ.thị.hạnh"
    logon = _parse(FSSO_LOGON)
    assert logon["event"]["type"] == ["start"]
    assert logon["event"]["outcome"] == "success"
    assert logon["source"]["ip"] == "10.10.1.23"


# --- reading the line --------------------------------------------------------------------------


def test_syslog_headers_before_the_pairs_are_skipped() -> None:
    body = TRAFFIC_DENY
    for line in (
        f"<189>Dec 10 07:01:02 FGT60F-STTTT {body}",
        f"<189>1 2024-12-10T07:01:02+07:00 FGT60F-STTTT - - - - {body}",
        f"Dec 10 07:01:02 10.10.0.1 {body}",
    ):
        fragment = _parse(line)
        assert fragment["source"]["ip"] == "192.0.2.45"
        assert fragment["@timestamp"] == datetime(2024, 12, 10, 7, 1, 2, tzinfo=ICT)


def test_quoted_values_keep_spaces_equals_and_escaped_quotes() -> None:
    line = (
        'logid="0100032001" type="event" subtype="system" devname="FGT"'
        r' msg="user \"ad=min\" said: a=b \\ done" empty="" na=N/A'
    )
    fragment = _parse(line)
    assert fragment["message"] == 'user "ad=min" said: a=b \\ done'
    assert "empty" not in fragment.get("fortinet", {}).get("firewall", {})
    assert "na" not in fragment.get("fortinet", {}).get("firewall", {})


def test_time_falls_back_to_eventtime_in_any_unit() -> None:
    base = 'logid="0000000013" type="traffic" devname="FGT" eventtime='
    expected = datetime(2024, 12, 10, 0, 0, 1, tzinfo=UTC)
    for stamp in ("1733788801", "1733788801000", "1733788801000000", "1733788801000000000"):
        assert _parse(base + stamp)["@timestamp"] == expected
    # An impossible date does not stop the line: eventtime, else no time at all.
    impossible = 'date=2024-02-30 time=25:61:00 logid="0000000013" type="traffic" devname="FGT"'
    assert _parse(impossible + " eventtime=1733788801")["@timestamp"] == expected
    assert "@timestamp" not in _parse(impossible)
    assert "@timestamp" not in _parse(base + "99999999999999999999")


def test_tz_forms() -> None:
    line = 'date=2024-12-10 time=06:00:00 logid="0000000013" type="traffic" devname="F" tz='
    assert _parse(line + '"-0500"')["@timestamp"].utcoffset() == timedelta(hours=-5)
    assert _parse(line + '"UTC+7:00"')["@timestamp"].utcoffset() == timedelta(hours=7)
    assert _parse(line + '"+0000"')["@timestamp"].tzinfo is UTC
    bad = _parse(line + '"+9999"')  # not an offset: the context's zone
    assert bad["event"]["timezone"] == "Asia/Ho_Chi_Minh"


def test_out_of_range_numbers_are_left_out() -> None:
    line = (
        'logid="0000000013" type="traffic" devname="F" srcport=70000 dstport=99999999999'
        " sentbyte=99999999999999999999999 rcvdbyte=5 proto=6 srcip=999.1.1.1 duration=9"
        "999999999999999999"
    )
    fragment = _parse(line)
    assert "source" not in fragment or "port" not in fragment["source"]
    assert fragment["destination"] == {"bytes": 5}
    assert "bytes" not in fragment["network"]
    assert "duration" not in fragment["event"]


def test_not_fortigate() -> None:
    assert not PARSER.sniff('127.0.0.1 - - [10/Dec/2024:06:55:46 +0700] "GET / HTTP/1.1" 200 5')
    with pytest.raises(NotMine):
        PARSER.parse("type=traffic but nothing else", CONTEXT)
    with pytest.raises(NotMine):
        PARSER.parse("type=AVC msg=audit(1733788546.123:42): pid=1 logid=", CONTEXT)


def test_registered_as_a_network_line_parser() -> None:
    assert any(isinstance(p, FortigateParser) for p in NETWORK_LINE_PARSERS)
    assert PARSER.name == "fortigate"
    assert PARSER.dataset == "fortinet.firewall"


def test_real_lines_of_other_formats_are_not_taken() -> None:
    logs = sorted((DATA / "loghub").glob("*/*.log")) + sorted(
        (DATA / "ecs-fixtures").rglob("*.log")
    )
    if not logs:
        pytest.skip(f"no shared data at {DATA}")
    taken = []
    for path in logs:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if PARSER.sniff(line):
                try:
                    PARSER.parse(line, CONTEXT)
                except NotMine:
                    continue
                taken.append(line)
    assert taken == []


# --- odd input ---------------------------------------------------------------------------------


def _check_any(line: str) -> None:
    PARSER.sniff(line)
    try:
        fragment = PARSER.parse(line, CONTEXT)
    except NotMine:
        return
    _assert_valid(fragment)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text(line: str) -> None:
    _check_any(line)


@settings(max_examples=300, deadline=None)
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_arbitrary_bytes_decoded_with_replacement(line: str) -> None:
    _check_any(line)


_KEYS = st.sampled_from([
    "date", "time", "tz", "eventtime", "devname", "devid", "logid", "type", "subtype", "action",
    "srcip", "dstip", "srcport", "dstport", "transip", "transport", "proto", "sentbyte",
    "rcvdbyte", "duration", "user", "url", "hostname", "qname", "ipaddr", "srcmac", "ui",
    "remip", "locip", "status", "result", "dir", "app", "service", "filesize", "level", "msg",
])  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from([
        "2024-13-01", "2024-02-30", "25:61:61", "+2400", "-0530", "traffic", "utm", "event",
        "vpn", "user", "system", "deny", "login", "failed", "http://[bad", "http://x:99999/",
        "999.2.3.4", "2001:db8::1", "fe80::1%eth0", "N/A", "", "tunnel-up", "ips", "webfilter",
    ]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["traffic", "utm", "event", "dns", "anomaly", ""]),
    st.sampled_from(["forward", "local", "ips", "virus", "webfilter", "vpn", "user", "system"]),
    st.lists(st.tuples(_KEYS, _VALUES, st.booleans()), max_size=25),
)
def test_fortigate_shaped_lines_with_odd_values(
    log_type: str, subtype: str, pairs: list[tuple[str, str, bool]]
) -> None:
    parts = ['logid="0000000013"', f'type="{log_type}"', f"subtype={subtype}"]
    for key, value, quoted in pairs:
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' if quoted else value
        parts.append(f"{key}={text}")
    _check_any(" ".join(parts))


def test_one_mebibyte_lines() -> None:
    mib = 2**20
    for line in (
        "x" * mib,
        'logid="1" type="traffic" devname="' + "x" * mib,  # unterminated quote
        'logid="1" type="traffic" msg="' + '\\"' * (mib // 2) + '"',
        'logid="1" type="traffic" ' + "a=1 " * (mib // 4),
        'logid="1" type="traffic" srcport=' + "9" * mib,
        'logid="1" type="traffic" devname="' + "\ufffd" * mib + '"',
        " ".join(['k="v'] * (mib // 4)),
    ):
        _check_any(line)
