"""Tests of the portal's JSON application log parser, with the examples of its format document."""

from __future__ import annotations

import contextlib
import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import DataParser, NotMine, ParseContext
from detectors.parsers.portal import PORTAL_PARSER, PortalParser

DOC = Path(__file__).resolve().parents[4] / "docs" / "portal-log-format.md"
CONTEXT = ParseContext(received=datetime(2024, 11, 5, 1, 0, tzinfo=UTC))
ICT = timezone(timedelta(hours=7))
ECS_CATEGORIES = {
    "api", "authentication", "configuration", "database", "driver", "email", "file", "host",
    "iam", "intrusion_detection", "library", "malware", "network", "package", "process",
    "registry", "session", "threat", "vulnerability", "web",
}  # fmt: skip
ECS_TYPES = {
    "access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied",
    "device", "end", "error", "group", "indicator", "info", "installation", "protocol", "start",
    "user",
}  # fmt: skip


def doc_blocks() -> list[str]:
    """The ```json blocks of docs/portal-log-format.md: the examples, then the ECS rendering."""
    return re.findall(r"```json\n(.*?)\n```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def examples() -> dict[str, dict[str, Any]]:
    """The document's example records, by event name."""
    records = [json.loads(block) for block in doc_blocks()[:-1]]
    return {record["event"]: record for record in records}


def parse(record: dict[str, Any]) -> dict[str, Any]:
    fragment = PORTAL_PARSER.parse(record, CONTEXT)
    event = fragment["event"]
    assert set(event["category"]) <= ECS_CATEGORIES
    assert set(event["type"]) <= ECS_TYPES
    assert event.get("outcome") in (None, "success", "failure")
    if "@timestamp" in fragment:
        assert fragment["@timestamp"].tzinfo is not None
    orjson.dumps(fragment)
    return fragment


def test_every_document_example_is_one_json_line() -> None:
    records = examples()
    assert len(records) == len(doc_blocks()) - 1 == 9
    for record in records.values():
        assert "\n" not in json.dumps(record, ensure_ascii=False)
        assert PORTAL_PARSER.sniff(record)


def test_document_rendering_of_the_first_example_is_what_we_produce() -> None:
    blocks = doc_blocks()
    fragment = parse(json.loads(blocks[0]))
    rendered = json.loads(blocks[-1])
    assert datetime.fromisoformat(rendered.pop("@timestamp")) == fragment.pop("@timestamp")
    assert fragment == rendered


def test_login_success() -> None:
    fragment = parse(examples()["login.success"])
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, 123000, tzinfo=ICT)
    assert fragment["event"]["category"] == ["authentication"]
    assert fragment["event"]["type"] == ["start"]
    assert fragment["event"]["outcome"] == "success"
    assert fragment["user"]["full_name"] == "Nguyễn Văn An"
    assert fragment["message"] == "Đăng nhập thành công bằng VNeID"
    assert fragment["portal"] == {"auth": {"method": "vneid"}}


def test_login_failure() -> None:
    fragment = parse(examples()["login.failure"])
    assert fragment["event"]["outcome"] == "failure"
    assert fragment["event"]["reason"] == "bad_password"
    assert fragment["event"]["duration"] == 95_400_000
    assert fragment["user"] == {"name": "tranthibich"}
    assert fragment["source"] == {"address": "14.232.10.8", "ip": "14.232.10.8", "port": 61012}
    assert fragment["http"]["response"]["status_code"] == 401
    assert fragment["message"] == "Đăng nhập thất bại: sai mật khẩu (lần 3)"
    assert fragment["log"]["level"] == "warn"


def test_otp_failure() -> None:
    fragment = parse(examples()["otp.failure"])
    assert fragment["event"]["category"] == ["authentication"]
    assert fragment["event"]["type"] == ["info"]
    assert fragment["event"]["outcome"] == "failure"
    assert fragment["message"] == "Mã OTP không đúng"
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 1, 17, 3, tzinfo=UTC)


def test_dossier_submit_and_view() -> None:
    submit = parse(examples()["dossier.submit"])
    assert submit["event"]["category"] == ["web"]
    assert submit["event"]["type"] == ["access"]
    assert submit["event"]["outcome"] == "success"
    assert submit["portal"]["dossier"] == {
        "id": "000.00.12.H55-241105-0001",
        "procedure": "1.001234",
        "status": "cho_tiep_nhan",
    }
    assert submit["message"] == "Nộp hồ sơ đăng ký khai sinh"
    view = parse(examples()["dossier.view"])
    assert view["user"]["roles"] == ["officer"]
    assert view["portal"]["user"] == {"agency": "ubnd-huyen-a"}
    assert view["service"] == {"name": "dvc-admin", "environment": "prod"}


def test_payment_success() -> None:
    fragment = parse(examples()["payment.success"])
    assert fragment["event"]["outcome"] == "success"
    assert fragment["portal"]["payment"]["amount"] == 50000
    assert fragment["message"] == "Thanh toán lệ phí thành công"


def test_admin_permission_change() -> None:
    fragment = parse(examples()["admin.permission_change"])
    assert fragment["event"]["category"] == ["iam"]
    assert fragment["event"]["type"] == ["user", "change"]
    assert fragment["user"]["name"] == "quantri"
    assert fragment["user"]["target"] == {
        "id": "cb-0042",
        "name": "le.van.cuong",
        "roles": ["agency_admin"],
    }
    assert fragment["portal"]["target"] == {"role_old": "officer"}
    assert fragment["message"] == "Cấp quyền quản trị đơn vị cho tài khoản le.van.cuong"


def test_file_upload() -> None:
    fragment = parse(examples()["file.upload"])
    assert fragment["event"]["category"] == ["file"]
    assert fragment["event"]["type"] == ["creation"]
    assert fragment["file"] == {
        "name": "Giấy chứng sinh.PDF",
        "extension": "pdf",
        "mime_type": "application/pdf",
        "size": 248113,
        "hash": {"sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    }


def test_error_record() -> None:
    fragment = parse(examples()["dossier.sync_failed"])
    assert fragment["error"]["type"] == "UpstreamTimeout"
    assert fragment["error"]["message"] == "Hệ thống một cửa không phản hồi"
    assert fragment["error"]["stack_trace"].startswith("Traceback")
    assert fragment["event"]["outcome"] == "failure"  # from the 502
    assert fragment["event"]["duration"] == 30_012_000_000
    assert fragment["log"]["level"] == "error"


@pytest.mark.parametrize(
    ("event", "category", "type_", "outcome"),
    [
        ("logout", ["authentication"], ["end"], None),
        ("session.expired", ["authentication", "session"], ["end"], None),
        ("sso.failure", ["authentication"], ["start"], "failure"),
        ("otp.sent", ["authentication"], ["info"], "success"),
        ("password.change", ["iam"], ["user", "change"], None),
        ("account.locked", ["iam"], ["user", "change"], None),
        ("admin.user_create", ["iam"], ["user", "creation"], None),
        ("admin.user_delete", ["iam"], ["user", "deletion"], None),
        ("admin.settings_change", ["iam"], ["admin"], None),
        ("file.download", ["file"], ["access"], None),
        ("file.delete", ["file"], ["deletion"], None),
        ("dossier.update", ["web"], ["access"], None),
        ("report.export", ["web"], ["info"], None),
        ("report.export.denied", ["web"], ["info"], "failure"),
    ],
)
def test_event_catalogue(
    event: str, category: list[str], type_: list[str], outcome: str | None
) -> None:
    record = {"ts": "2024-11-05T08:00:00+07:00", "app": "dvc-portal", "event": event}
    fragment = parse(record)
    assert fragment["event"]["action"] == event
    assert fragment["event"]["category"] == category
    assert fragment["event"]["type"] == type_
    assert fragment["event"].get("outcome") == outcome


def test_unknown_error_event_and_levels() -> None:
    record = {"ts": "2024-11-05T08:00:00+07:00", "app": "a", "event": "x", "level": "FATAL"}
    fragment = parse(record)
    assert fragment["event"]["type"] == ["error"]
    assert fragment["log"]["level"] == "critical"
    record["level"] = "Warning"
    assert parse(record)["log"]["level"] == "warn"


def test_sniff() -> None:
    assert PORTAL_PARSER.sniff({"ts": 1, "event": 2, "app": 3})
    assert not PORTAL_PARSER.sniff({"ts": "x", "event": "login.success"})
    assert not PORTAL_PARSER.sniff({"EventID": 4625, "Channel": "Security"})
    assert isinstance(PORTAL_PARSER, PortalParser)
    assert isinstance(PORTAL_PARSER, DataParser)
    assert (PortalParser.name, PortalParser.dataset) == ("portal.json", "portal.app")


@pytest.mark.parametrize(
    "record",
    [{}, {"ts": "2024-11-05T08:00:00+07:00", "app": "a"},
     {"ts": "2024-11-05T08:00:00+07:00", "app": "a", "event": ""},
     {"ts": "2024-11-05T08:00:00+07:00", "app": "a", "event": None},
     {"ts": "2024-11-05T08:00:00+07:00", "app": "a", "event": ["login.success"]}],
)  # fmt: skip
def test_not_mine(record: dict[str, Any]) -> None:
    with pytest.raises(NotMine):
        PORTAL_PARSER.parse(record, CONTEXT)


def test_naive_and_invalid_times() -> None:
    record: dict[str, Any] = {"ts": "2024-11-05T08:00:00", "app": "a", "event": "x"}
    fragment = parse(record)
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 0, tzinfo=ICT)
    assert fragment["event"]["timezone"] == "Asia/Ho_Chi_Minh"
    for bad in ("2024-02-30T08:00:00+07:00", "2024-13-01T00:00:00Z", "hôm qua", "+99:00"):
        record["ts"] = bad
        fragment = parse(record)
        assert "@timestamp" not in fragment
        assert "invalid ts" in fragment["error"]["message"]
    record["error"] = {"message": "Lỗi ứng dụng"}  # the application's own error wins
    assert parse(record)["error"] == {"message": "Lỗi ứng dụng"}
    record["ts"] = 1730768400
    assert "@timestamp" not in parse(record)


def test_odd_value_types() -> None:
    record: dict[str, Any] = {
        "ts": "2024-11-05T08:00:00Z",
        "app": "dvc-portal",
        "event": "login.failure",
        "user": "nguyenvana",
        "client": {"ip": "không phải IP", "port": 10**30, "user_agent": ["a"]},
        "http": {"status": "401", "duration_ms": math.inf, "method": None, "bytes": -1},
        "error": "boom",
        "target": ["not", "a", "mapping"],
        "file": {"size": 1.5, "name": "."},
        "trạng_thái": "bỏ qua",
        "a.b": 1,
        "x" * 65: 1,
        "extra_field": {"nested": [1, 2, {"k": "v", "bad key": 1}], "big": 10**30, "f": math.nan},
        "deep": [[[[[[[[[[[[[[[[[[[["too deep"]]]]]]]]]]]]]]]]]]]],
    }
    fragment = parse(record)
    assert fragment["user"] == {"name": "nguyenvana"}
    assert fragment["source"] == {"address": "không phải IP"}
    assert "user_agent" not in fragment
    assert fragment["http"] == {"response": {"status_code": 401}}
    assert "duration" not in fragment["event"]
    assert fragment["error"] == {"message": "boom"}
    assert fragment["file"] == {"name": "."}
    # Only identifier keys are copied: they become Elasticsearch field names.
    assert fragment["portal"]["extra_field"] == {
        "nested": [1, 2, {"k": "v"}],
        "big": None,
        "f": None,
    }
    assert "too deep" not in json.dumps(fragment["portal"]["deep"])
    assert set(fragment["portal"]) == {"extra_field", "deep"}


def test_path_with_query_and_numeric_ids() -> None:
    record = {
        "ts": "2024-11-05T08:00:00+07:00",
        "app": "dvc-portal",
        "event": "dossier.view",
        "request_id": 123456,
        "trace_id": "t-1",
        "user": {"id": 42},
        "http": {"path": "/ho-so?ma=H55", "method": "get", "duration_ms": 0},
    }
    fragment = parse(record)
    assert fragment["url"] == {"path": "/ho-so", "query": "ma=H55", "original": "/ho-so?ma=H55"}
    assert fragment["http"]["request"]["method"] == "GET"
    assert fragment["transaction"] == {"id": "123456"}
    assert fragment["trace"] == {"id": "t-1"}
    assert fragment["user"] == {"id": "42"}
    assert fragment["event"]["duration"] == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
PORTAL_KEYS = st.sampled_from(
    ["ts", "level", "app", "env", "event", "request_id", "trace_id", "user", "client", "http",
     "message", "error", "target", "file", "auth", "dossier", "payment"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(PORTAL_KEYS | st.text(), JSON_VALUES, max_size=12))
def test_arbitrary_records(record: dict[str, Any]) -> None:
    with contextlib.suppress(NotMine):
        parse(record)


@settings(max_examples=300, deadline=None)
@given(
    st.text(),
    st.text(),
    st.dictionaries(st.sampled_from(["id", "name", "role", "agency", "ip", "port", "path",
                                     "status", "duration_ms", "method", "size", "sha256"]),
                    JSON_VALUES),
)  # fmt: skip
def test_arbitrary_shapes_under_known_keys(ts: str, event: str, inner: dict[str, Any]) -> None:
    record = {"ts": ts, "app": "a", "event": event or "x"}
    for key in ("user", "client", "http", "target", "file", "error", "auth"):
        record[key] = inner
    parse(record)


@settings(max_examples=300, deadline=None)
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_invalid_utf8_replaced(text: str) -> None:
    record = {"ts": text, "app": text, "event": text or "x", "message": text, "user": text}
    parse(record)


def test_one_mebibyte_values() -> None:
    big = "Đ" * (1 << 20)
    record = {"ts": big, "app": big, "event": big, "message": big, "http": {"path": big}}
    fragment = parse(record)
    assert fragment["message"] == big
