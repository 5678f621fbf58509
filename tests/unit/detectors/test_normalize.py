from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.enrich import AgencyRegistry, AssetRegistry
from detectors.normalize import Normalizer
from detectors.parsers.base import LineParser, ParseContext
from detectors.parsers.registry import ParserSet, default_parsers
from socpipe.records import RawRecord, SourceRef

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "config"
RECEIVED = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def raw(
    line: str | None = None,
    fmt: str = "syslog",
    *,
    data: dict[str, Any] | None = None,
    agency: str = "phuong-phuc-xa",
    tier: str = "commune",
    host: str = "ubnd-phucxa-srv",
) -> RawRecord:
    source = SourceRef(type="file", path="/var/log/x.log", format=fmt)
    return RawRecord.model_validate(
        {
            "id": RawRecord.make_id("c1", source, "1:1", 0),
            "agency": {"id": agency, "tier": tier, "name": "tên do collector tự khai"},
            "collector": {"id": "c1", "version": "0.1.0"},
            "host": host,
            "source": source,
            "received": RECEIVED,
            "position": 0,
            "message": line,
            "data": data,
        }
    )


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    return Normalizer(
        agencies=AgencyRegistry.load(CONFIG / "agencies.yaml"),
        assets=AssetRegistry.load(CONFIG / "assets.yaml"),
    )


SSHD = (
    "Nov 27 09:59:01 ubnd-phucxa-srv sshd[811]: Failed password for nguyễn.văn.a from "
    "203.0.113.9 port 4242 ssh2"
)


def test_sshd_line_is_parsed_with_utc_time_and_source_zone(normalizer: Normalizer) -> None:
    result = normalizer.normalize(raw(SSHD))
    event = result.event.to_dict()
    assert result.status == "parsed"
    assert event["@timestamp"] == "2026-11-27T02:59:01Z"
    assert event["event"]["timezone"] == "Asia/Ho_Chi_Minh"
    assert event["event"]["original"] == SSHD
    assert event["event"]["outcome"] == "failure"
    assert event["user"]["name"] == "nguyễn.văn.a"
    assert event["process"] == {"name": "sshd", "pid": 811}
    assert event["related"]["ip"] == ["203.0.113.9"]
    assert event["event"]["dataset"] == "system.auth"


def test_iso_offset_is_kept_as_the_zone(normalizer: Normalizer) -> None:
    line = (
        "2026-11-27T09:59:01.5+02:00 web-01 sshd[5]: "
        "Accepted publickey for an from 10.0.0.5 port 22 ssh2"
    )
    event = normalizer.normalize(raw(line)).event.to_dict()
    assert event["@timestamp"] == "2026-11-27T07:59:01.500000Z"
    assert event["event"]["timezone"] == "+02:00"
    assert event["host"]["name"] == "web-01"


def test_registry_names_the_agency_and_its_tier(normalizer: Normalizer) -> None:
    event = normalizer.normalize(raw(SSHD, tier="province")).event.to_dict()
    assert event["organization"] == {"id": "phuong-phuc-xa", "name": "UBND phường Phúc Xá"}
    assert event["labels"]["tier"] == "commune"
    assert "agency_tier_mismatch" in event["tags"]


def test_unknown_agency_is_tagged_not_dropped(normalizer: Normalizer) -> None:
    event = normalizer.normalize(raw(SSHD, agency="xa-khong-ton-tai")).event.to_dict()
    assert "unknown_agency" in event["tags"]
    assert event["organization"]["id"] == "xa-khong-ton-tai"


def test_unrecognised_line_is_an_unparsed_event(normalizer: Normalizer) -> None:
    line = "!!! máy chủ gặp sự cố không xác định ###"
    result = normalizer.normalize(raw(line, fmt="auto"))
    event = result.event.to_dict()
    assert result.status == "unparsed"
    assert event["tags"] == ["unparsed"]
    assert event["event"]["original"] == line and event["message"] == line
    assert event["host"]["name"] == "ubnd-phucxa-srv"
    assert event["organization"]["id"] == "phuong-phuc-xa"
    assert event["@timestamp"] == "2026-11-27T03:00:00Z"


def test_addresses_get_scopes_and_a_direction(normalizer: Normalizer) -> None:
    line = (
        "Nov 27 09:59:01 fw kernel: [UFW BLOCK] IN=eth0 OUT= "
        "MAC=00:11:22:33:44:55:66:77:88:99:aa:bb:08:00 "
        "SRC=8.8.8.8 DST=10.100.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=1 DF PROTO=TCP "
        "SPT=4242 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0"
    )
    event = normalizer.normalize(raw(line)).event.to_dict()
    assert event["socpipe"]["address_scope"] == {"source": "public", "destination": "private"}
    assert event["network"]["direction"] == "inbound"
    assert event["host"]["asset"]["criticality"] == "low_impact"  # the commune network


def test_asset_criticality_by_host(normalizer: Normalizer) -> None:
    event = normalizer.normalize(raw(SSHD.replace("ubnd-phucxa-srv", "dvc-portal-01"))).event
    assert event.to_dict()["host"]["asset"]["criticality"] == "extreme_impact"


class _BrokenParser(LineParser):
    name = "broken"
    dataset = "broken.log"

    def sniff(self, line: str) -> bool:
        return True

    def parse(self, line: str, context: ParseContext) -> dict[str, Any]:
        raise ZeroDivisionError("a bug")


def test_a_failing_parser_keeps_the_record_unparsed_with_the_error() -> None:
    base = default_parsers()
    broken = _BrokenParser()
    parsers = ParserSet(
        lines={**base.lines, "broken": broken},
        line_order=base.line_order,
        programs=base.programs,
        data=base.data,
        data_order=base.data_order,
    )
    result = Normalizer(parsers=parsers).normalize(raw("x", fmt="broken"))
    assert result.status == "unparsed"
    assert "ZeroDivisionError: a bug" in result.event.to_dict()["error"]["message"]


def test_structured_record_of_no_known_shape_is_unparsed_with_its_json() -> None:
    result = Normalizer().normalize(raw(fmt="auto", data={"xin chào": "thế giới", "n": 1}))
    event = result.event.to_dict()
    assert result.status == "unparsed"
    assert "thế giới" in event["event"]["original"]


def test_windows_event_from_evtx_json_is_parsed() -> None:
    data = {
        "Event": {
            "System": {
                "EventID": 4625,
                "Channel": "Security",
                "Computer": "dc01.tinh.local",
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
                "TimeCreated": {"#attributes": {"SystemTime": "2026-11-27T02:00:00.000000Z"}},
                "EventRecordID": 77,
            },
            "EventData": {
                "TargetUserName": "nguyễn.văn.a",
                "IpAddress": "10.10.0.9",
                "LogonType": 3,
                "Status": "0xc000006d",
            },
        }
    }
    result = Normalizer().normalize(raw(fmt="winlog.evtx", data=data))
    event = result.event.to_dict()
    assert result.status == "parsed"
    assert event["winlog"]["event_data"]["TargetUserName"] == "nguyễn.văn.a"
    assert event["event"]["code"] == "4625"
    assert event["host"]["name"].startswith("dc01")


@given(
    st.text(max_size=400),
    st.sampled_from(
        [
            "auto",
            "syslog",
            "nginx.access",
            "apache.error",
            "fortigate",
            "auditd",
            "json",
            "portal.json",
            "winlog.json",
            "nonexistent-format",
        ]
    ),
)
@settings(max_examples=400, deadline=None)
def test_normalize_never_raises(line: str, fmt: str) -> None:
    result = Normalizer().normalize(raw(line, fmt=fmt))
    assert result.event.event.id
    assert result.event.event.original == line


def test_a_format_can_have_its_own_zone() -> None:
    line = "Nov 27 09:59:01 ubnd-phucxa-srv sshd[811]: Connection closed by 10.0.0.1 port 22"
    per_format = Normalizer(options={"syslog": {"timezone": "UTC"}})
    event = per_format.normalize(raw(line)).event.to_dict()
    assert event["@timestamp"] == "2026-11-27T09:59:01Z"
    assert event["event"]["timezone"] == "UTC"
