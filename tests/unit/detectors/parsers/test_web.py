"""Tests of the web server log parsers: Elastic's fixtures, loghub's Apache error log,
hand-written lines for every format and log_format field, and odd input."""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext
from detectors.parsers.web import (
    WEB_LINE_PARSERS,
    ApacheAccessParser,
    ApacheErrorParser,
    ApacheLogFormatParser,
    LogFormatParser,
    NginxAccessParser,
    NginxErrorParser,
    NginxLogFormatParser,
)
from socpipe.errors import ConfigError

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
FIXTURES = DATA / "ecs-fixtures"
LOGHUB_APACHE = DATA / "loghub" / "Apache"
CONTEXT = ParseContext(received=datetime(2024, 11, 5, 1, 0, tzinfo=UTC))
ICT = timezone(timedelta(hours=7))
# 05/Nov/2024:08:15:02 +0700, the time of most hand-written lines.
T0 = datetime(2024, 11, 5, 1, 15, 2, tzinfo=UTC)

NGINX_ACCESS = NginxAccessParser()
APACHE_ACCESS = ApacheAccessParser()
NGINX_ERROR = NginxErrorParser()
APACHE_ERROR = ApacheErrorParser()

# ECS 8 allowed values of event.category and event.type.
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

# Fields of Elastic's expected documents that are bookkeeping, enrichment, or set by our
# normalizer rather than the parser (see the ecs-fixtures README).
IGNORED = {
    "event.ingested", "event.created", "ecs.version", "fileset.name", "input.type", "log.offset",
    "log.file.path", "log.flags", "service.type", "event.module", "event.dataset", "host.name",
    "tags", "event.timezone", "event.original", "event.kind",
}  # fmt: skip
IGNORED_PREFIXES = ("agent.", "source.geo.", "source.as.", "user_agent.", "related.")
# Vendor fields we keep under Elastic's own names, and so compare.
ADOPTED = {"nginx.access.remote_ip_list", "nginx.error.connection_id", "apache.error.module"}


def flat(fragment: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fragment with dotted keys, as Elastic's fixtures write documents."""
    out: dict[str, Any] = {}
    for key, value in fragment.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out |= flat(value, name)
        else:
            out[name] = value
    return out


def check_ecs_values(fragment: Fragment) -> None:
    """event.category/type only from ECS's lists; @timestamp aware; the fragment JSON-ready."""
    event = fragment["event"]
    assert set(event["category"]) <= ECS_CATEGORIES
    assert set(event["type"]) <= ECS_TYPES
    if "@timestamp" in fragment:
        assert fragment["@timestamp"].tzinfo is not None
    orjson.dumps(fragment)


# --- Elastic's fixtures ------------------------------------------------------------------------


def fixture_cases(subdir: str) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(file, offset, first line of the event, expected doc) for each doc of the fixtures."""
    folder = FIXTURES / subdir
    if not folder.is_dir():
        return []
    cases = []
    for expected in sorted(folder.glob("*.log-expected.json")):
        raw = expected.with_name(expected.name.removesuffix("-expected.json")).read_bytes()
        for doc in json.loads(expected.read_text()):
            line = raw[doc["log.offset"] :].split(b"\n", 1)[0].decode()
            cases.append((expected.name, doc["log.offset"], line, doc))
    return cases


def harness_zone(doc: dict[str, Any]) -> str:
    """The zone Elastic's harness read zone-less times in: -02:00, or UTC in older files."""
    return "Etc/GMT+2" if doc.get("event.timezone") == "-02:00" else "UTC"


def compare(doc: dict[str, Any], fragment: Fragment) -> list[str]:
    """Mismatches between Elastic's expected document and our fragment, one line each."""
    got = flat(fragment)
    problems = []
    for key, want in doc.items():
        if key in IGNORED or key.startswith(IGNORED_PREFIXES):
            continue
        if key.split(".")[0] in ("nginx", "apache") and key not in ADOPTED:
            continue
        value = got.get(key)
        if key == "@timestamp":
            expected_time = datetime.fromisoformat(want)
            ours = value.replace(microsecond=value.microsecond // 1000 * 1000)  # Elastic: ms
            ok = ours == expected_time
        elif want == "-" and key in ("user.name", "http.request.referrer"):
            # Elastic's apache pipeline keeps "-"; it means "none", so we leave the field out.
            ok = value is None
        elif isinstance(want, list) or isinstance(value, list):
            want_set = set(want) if isinstance(want, list) else {want}
            ok = isinstance(value, list) and set(map(str, value)) == set(map(str, want_set))
        else:
            # darwin-2.4.23 has "get"; destination.port is "80" there and 80 here.
            ok = str(value).lower() == str(want).lower()
        if not ok:
            problems.append(f"{key}: expected {want!r}, got {value!r}")
    return problems


ACCESS_CASES = [
    pytest.param(NGINX_ACCESS, *case, id=f"nginx-{case[0]}-{case[1]}")
    for case in fixture_cases("nginx/access")
] + [
    pytest.param(APACHE_ACCESS, *case, id=f"apache-{case[0]}-{case[1]}")
    for case in fixture_cases("apache/access")
]


@pytest.mark.skipif(not ACCESS_CASES, reason=f"ecs-fixtures not found under {FIXTURES}")
@pytest.mark.parametrize(("parser", "name", "offset", "line", "doc"), ACCESS_CASES)
def test_access_matches_elastic(
    parser: LineParser, name: str, offset: int, line: str, doc: dict[str, Any]
) -> None:
    assert parser.sniff(line)
    fragment = parser.parse(line, CONTEXT)
    assert compare(doc, fragment) == []
    check_ecs_values(fragment)
    assert fragment["event"]["category"] == ["web"]
    assert fragment["event"]["type"] == ["access"]


def test_access_fixture_counts() -> None:
    if not ACCESS_CASES:
        pytest.skip(f"ecs-fixtures not found under {FIXTURES}")
    assert len(ACCESS_CASES) == 34 + 15


ERROR_CASES = [
    pytest.param(NGINX_ERROR, *case, id=f"nginx-{case[0]}-{case[1]}")
    for case in fixture_cases("nginx/error")
] + [
    pytest.param(APACHE_ERROR, *case, id=f"apache-{case[0]}-{case[1]}")
    for case in fixture_cases("apache/error")
]


@pytest.mark.skipif(not ERROR_CASES, reason=f"ecs-fixtures not found under {FIXTURES}")
@pytest.mark.parametrize(("parser", "name", "offset", "line", "doc"), ERROR_CASES)
def test_error_matches_elastic(
    parser: LineParser, name: str, offset: int, line: str, doc: dict[str, Any]
) -> None:
    context = ParseContext(timezone=harness_zone(doc))
    assert parser.sniff(line)
    fragment = parser.parse(line, context)
    if "multiline" in doc.get("log.flags", []):
        # One line of a multi-line event: everything but the continuation lines matches.
        assert doc["message"].startswith(fragment["message"])
        doc = {k: v for k, v in doc.items() if k != "message"}
    assert compare(doc, fragment) == []
    assert fragment["event"]["timezone"] == context.timezone
    check_ecs_values(fragment)


def test_nginx_multiline_event_joined_keeps_every_line() -> None:
    path = FIXTURES / "nginx" / "error" / "error.log"
    if not path.is_file():
        pytest.skip(f"ecs-fixtures not found under {FIXTURES}")
    docs = json.loads(path.with_name("error.log-expected.json").read_text())
    doc = next(d for d in docs if "multiline" in d.get("log.flags", []))
    raw = path.read_bytes()[doc["log.offset"] :].decode()
    lines = raw.split("\n")
    event = "\n".join([lines[0], *[x for x in lines[1:4] if x.startswith("PHP message:")]])
    fragment = NGINX_ERROR.parse(event, ParseContext(timezone="Etc/GMT+2"))
    assert fragment["message"] == doc["message"]
    # Each continuation line alone is not an nginx error line.
    for continuation in lines[1:3]:
        with pytest.raises(NotMine):
            NGINX_ERROR.parse(continuation, CONTEXT)


# --- loghub Apache error log ------------------------------------------------------------------


def test_loghub_apache_2k_every_line_parses() -> None:
    log = LOGHUB_APACHE / "Apache_2k.log"
    structured = LOGHUB_APACHE / "Apache_2k.log_structured.csv"
    if not log.is_file() or not structured.is_file():
        pytest.skip(f"loghub Apache data not found under {LOGHUB_APACHE}")
    lines = log.read_text(encoding="utf-8").splitlines()
    with structured.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(lines) == len(rows) == 2000
    with_client = 0
    for line, row in zip(lines, rows, strict=True):
        assert APACHE_ERROR.sniff(line), line
        fragment = APACHE_ERROR.parse(line, CONTEXT)
        expected_time = datetime.strptime(row["Time"], "%a %b %d %H:%M:%S %Y")
        assert fragment["@timestamp"] == expected_time.replace(tzinfo=fragment["@timestamp"].tzinfo)
        assert fragment["log"]["level"] == row["Level"]
        # loghub's Content keeps "[client ip] "; Elastic's message (ours) does not.
        if "source" in fragment:
            with_client += 1
            content = f"[client {fragment['source']['address']}] {fragment['message']}"
        else:
            content = fragment["message"]
        assert content == row["Content"]
        check_ecs_values(fragment)
    assert with_client > 0


# --- access logs by hand ----------------------------------------------------------------------

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


def test_nginx_combined() -> None:
    line = (
        f'113.161.72.45 - nva [05/Nov/2024:08:15:02 +0700] "POST /dang-nhap?next=%2Fho-so HTTP/1.1"'
        f' 302 154 "https://dichvucong.example.gov.vn/" "{UA}"'
    )
    fragment = NGINX_ACCESS.parse(line, CONTEXT)
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, tzinfo=ICT)
    assert fragment["@timestamp"].utcoffset() == timedelta(hours=7)  # the log's own zone kept
    assert "timezone" not in fragment["event"]
    assert fragment["source"] == {"address": "113.161.72.45", "ip": "113.161.72.45"}
    assert fragment["user"] == {"name": "nva"}
    assert fragment["http"] == {
        "request": {"method": "POST", "referrer": "https://dichvucong.example.gov.vn/"},
        "response": {"status_code": 302, "body": {"bytes": 154}},
        "version": "1.1",
    }
    assert fragment["url"] == {
        "original": "/dang-nhap?next=%2Fho-so",
        "path": "/dang-nhap",
        "query": "next=/ho-so",
    }
    assert fragment["user_agent"] == {"original": UA}
    assert fragment["event"]["outcome"] == "success"


def test_common_format_and_failure_outcome() -> None:
    line = '::1 - - [26/Dec/2016:16:16:29 +0200] "GET /favicon.ico HTTP/1.1" 404 209'
    for parser in (NGINX_ACCESS, APACHE_ACCESS):
        fragment = parser.parse(line, CONTEXT)
        assert fragment["source"]["ip"] == "::1"
        assert fragment["url"]["extension"] == "ico"
        assert fragment["event"]["outcome"] == "failure"
        assert "user" not in fragment
        assert "referrer" not in fragment["http"]["request"]


def test_nginx_main_format_trailing_forwarded_for() -> None:
    line = (
        '10.0.0.5 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 612 "-" "curl/8.5"'
        ' "203.0.113.9, 10.0.0.1"'
    )
    fragment = NGINX_ACCESS.parse(line, CONTEXT)
    assert fragment["source"] == {"address": "203.0.113.9", "ip": "203.0.113.9"}
    assert fragment["nginx"]["access"]["remote_ip_list"] == ["203.0.113.9", "10.0.0.1", "10.0.0.5"]


def test_trailing_quoted_field_that_is_not_addresses_is_ignored() -> None:
    line = (
        '10.0.0.5 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 612 "-" "curl/8.5"'
        ' "session=abc; lang=vi"'
    )
    fragment = NGINX_ACCESS.parse(line, CONTEXT)
    assert fragment["source"] == {"address": "10.0.0.5", "ip": "10.0.0.5"}
    assert fragment["nginx"]["access"]["remote_ip_list"] == ["10.0.0.5"]


def test_private_only_list_takes_the_first_address() -> None:
    line = '10.0.0.2, 10.0.0.1, 127.0.0.1 - - [07/Dec/2016:11:05:07 +0100] "GET / HTTP/1.1" 200 5'
    assert NGINX_ACCESS.parse(line, CONTEXT)["source"]["ip"] == "10.0.0.2"
    line = 'unknown, 10.9.8.7 - - [07/Dec/2016:11:05:07 +0100] "GET / HTTP/1.1" 200 5'
    assert NGINX_ACCESS.parse(line, CONTEXT)["source"]["ip"] == "10.9.8.7"


def test_vhost_prefixes() -> None:
    line = (
        'portal.example.gov.vn:443 2001:db8::7 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/2.0"'
        " 200 1"
    )
    fragment = APACHE_ACCESS.parse(line, CONTEXT)
    assert fragment["destination"] == {"domain": "portal.example.gov.vn", "port": 443}
    assert fragment["url"]["domain"] == "portal.example.gov.vn"
    assert fragment["source"]["ip"] == "2001:db8::7"
    line = '192.0.2.10 198.51.100.4 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 1'
    fragment = NGINX_ACCESS.parse(line, CONTEXT)
    assert fragment["destination"] == {"ip": "192.0.2.10"}
    assert fragment["source"]["ip"] == "198.51.100.4"


@pytest.mark.parametrize(
    ("request_text", "kept"),
    [
        ("-", None),
        ("", None),
        ("hello", "hello"),
        ("\\x16\\x03\\x01\\x00\\xA5\\x01\\x00\\x00\\xA1\\x03\\x03", "\\x16\\x03\\x01\\x00\\xA5"),
        ("GET", "GET"),
        ("quit now", "quit now"),
        ('GET /a\\"b HTTP/1.1', None),
    ],
)
def test_requests_that_are_not_http_are_kept(request_text: str, kept: str | None) -> None:
    line = f'203.0.113.50 - - [05/Nov/2024:08:15:02 +0700] "{request_text}" 400 157 "-" "-"'
    for parser, vendor in ((NGINX_ACCESS, "nginx"), (APACHE_ACCESS, "apache")):
        fragment = parser.parse(line, CONTEXT)
        assert fragment["http"]["response"]["status_code"] == 400
        assert fragment["source"]["ip"] == "203.0.113.50"
        if kept is None:
            assert fragment.get(vendor, {}).get("access", {}).get("request") is None
        else:
            assert "url" not in fragment
            assert fragment[vendor]["access"]["request"].startswith(kept)
            assert "method" not in fragment["http"].get("request", {})
    if request_text.startswith("GET /a"):
        assert NGINX_ACCESS.parse(line, CONTEXT)["url"]["original"] == '/a\\"b'


def test_absolute_and_connect_targets() -> None:
    line = (
        '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET http://evil.example:8080/x.php?a=1'
        ' HTTP/1.1" 404 1'
    )
    url = NGINX_ACCESS.parse(line, CONTEXT)["url"]
    assert url["domain"] == "evil.example"
    assert url["port"] == 8080
    assert url["path"] == "/x.php"
    assert url["extension"] == "php"
    assert url["scheme"] == "http"
    line = '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "CONNECT mail.example:25 HTTP/1.1" 405 1'
    fragment = NGINX_ACCESS.parse(line, CONTEXT)
    assert fragment["http"]["request"]["method"] == "CONNECT"
    assert fragment["url"] == {"original": "mail.example:25", "domain": "mail.example", "port": 25}


def test_apache_ssl_request_log() -> None:
    line = (
        "[05/Nov/2024:08:15:02 +0700] 113.161.72.45 TLSv1.3 TLS_AES_256_GCM_SHA384"
        ' "GET /ho-so HTTP/1.1" 5120'
    )
    fragment = APACHE_ACCESS.parse(line, CONTEXT)
    assert fragment["tls"] == {
        "version": "1.3",
        "version_protocol": "tls",
        "cipher": "TLS_AES_256_GCM_SHA384",
    }
    assert fragment["http"]["response"]["body"]["bytes"] == 5120
    with pytest.raises(NotMine):
        NGINX_ACCESS.parse(line, CONTEXT)


def test_access_not_mine() -> None:
    for line in (
        "",
        "Nov  5 08:15:02 web1 sshd[1]: Accepted password for a from 1.2.3.4 port 22 ssh2",
        '- - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 1',
        '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 2000 1',
        "2016/10/25 14:49:34 [error] 54053#0: *1 open() failed",
    ):
        for parser in (NGINX_ACCESS, APACHE_ACCESS):
            with pytest.raises(NotMine):
                parser.parse(line, CONTEXT)


@pytest.mark.parametrize(
    "stamp",
    ["31/Feb/2024:08:15:02 +0700", "05/Foo/2024:08:15:02 +0700", "05/Nov/2024:25:15:02 +0700",
     "05/Nov/2024:08:15:02 +9999", "00/Nov/0000:08:15:02 +0700"],
)  # fmt: skip
def test_impossible_access_time_gives_fragment_without_timestamp(stamp: str) -> None:
    line = f'1.2.3.4 - - [{stamp}] "GET / HTTP/1.1" 200 1'
    fragment = NGINX_ACCESS.parse(line, CONTEXT)
    assert "@timestamp" not in fragment
    assert "invalid time" in fragment["error"]["message"]
    assert fragment["source"]["ip"] == "1.2.3.4"


def test_byte_order_mark_on_a_first_line() -> None:
    line = '\ufeff1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 1'
    assert NGINX_ACCESS.parse(line, CONTEXT)["source"]["ip"] == "1.2.3.4"
    assert (
        APACHE_ERROR.parse("\ufeff[Tue Nov 05 08:15:02 2024] [error] x", CONTEXT)["message"] == "x"
    )
    assert NGINX_ERROR.parse("\ufeff2024/11/05 08:15:02 [error] 1#1: x", CONTEXT)["message"] == "x"


def test_leap_second_and_fraction() -> None:
    line = '1.2.3.4 - - [31/Dec/2016:23:59:60 +0000] "GET / HTTP/1.1" 200 1'
    assert NGINX_ACCESS.parse(line, CONTEXT)["@timestamp"] == datetime(
        2016, 12, 31, 23, 59, 59, tzinfo=UTC
    )


# --- configured formats -----------------------------------------------------------------------

NGINX_LINE_VALUES = {
    # variable: (text in the line, dotted field, value in the fragment)
    "remote_addr": ("198.51.100.4", "source.ip", "198.51.100.4"),
    "remote_user": ("nva", "user.name", "nva"),
    "time_local": ("05/Nov/2024:08:15:02 +0700", "@timestamp", T0),
    "time_iso8601": ("2024-11-05T08:15:02+07:00", "@timestamp", T0),
    "msec": ("1730769302.250", "@timestamp", T0.replace(microsecond=250000)),
    "request": ("GET /a.php?x=1 HTTP/1.1", "url.path", "/a.php"),
    "status": ("503", "http.response.status_code", 503),
    "body_bytes_sent": ("1234", "http.response.body.bytes", 1234),
    "bytes_sent": ("1500", "http.response.bytes", 1500),
    "request_time": ("0.125", "event.duration", 125_000_000),
    "http_referer": ("https://a.example/", "http.request.referrer", "https://a.example/"),
    "http_user_agent": ("curl/8.5", "user_agent.original", "curl/8.5"),
    "http_x_forwarded_for": ("203.0.113.9", "source.ip", "203.0.113.9"),
    "host": ("dichvucong.example.gov.vn", "url.domain", "dichvucong.example.gov.vn"),
    "server_name": ("portal.local", "destination.domain", "portal.local"),
    "upstream_response_time": ("0.004", "nginx.access.upstream_response_time", 0.004),
    "request_length": ("980", "http.request.bytes", 980),
    "scheme": ("https", "url.scheme", "https"),
    "request_method": ("PUT", "http.request.method", "PUT"),
    "request_uri": ("/ho-so/1?tab=2", "url.original", "/ho-so/1?tab=2"),
    "uri": ("/ho-so/1", "url.path", "/ho-so/1"),
    "args": ("tab=2", "url.query", "tab=2"),
    "server_protocol": ("HTTP/2.0", "http.version", "2.0"),
    "remote_port": ("52344", "source.port", 52344),
    "server_port": ("443", "destination.port", 443),
    "server_addr": ("10.0.0.80", "destination.ip", "10.0.0.80"),
    "ssl_protocol": ("TLSv1.2", "tls.version", "1.2"),
    "ssl_cipher": ("ECDHE-RSA-AES128-GCM-SHA256", "tls.cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
    "request_id": ("f1e2d3c4", "http.request.id", "f1e2d3c4"),
    "pid": ("4242", "process.pid", 4242),
    "geoip_country_code": ("VN", "nginx.access.geoip_country_code", "VN"),
}  # fmt: skip


@pytest.mark.parametrize("variable", sorted(NGINX_LINE_VALUES))
def test_nginx_log_format_each_variable(variable: str) -> None:
    text, field, value = NGINX_LINE_VALUES[variable]
    parser = LogFormatParser(f'$remote_addr [$time_local] "${variable}" end', "nginx")
    line = f'192.0.2.1 [05/Nov/2024:08:15:02 +0700] "{text}" end'
    if variable in ("remote_addr", "time_local", "time_iso8601", "msec"):
        parser = LogFormatParser(f"${variable} end", "nginx")
        line = f"{text} end"
    fragment = flat(parser.parse(line, CONTEXT))
    assert fragment[field] == value, fragment


APACHE_LINE_VALUES = {
    # directive: (text in the line, dotted field, value in the fragment)
    "%h": ("198.51.100.4", "source.ip", "198.51.100.4"),
    "%a": ("198.51.100.5", "source.ip", "198.51.100.5"),
    "%{c}a": ("198.51.100.6", "source.ip", "198.51.100.6"),
    "%A": ("10.0.0.80", "destination.ip", "10.0.0.80"),
    "%u": ("nva", "user.name", "nva"),
    "%t": ("[05/Nov/2024:08:15:02 +0700]", "@timestamp", T0),
    "%{sec}t": ("1730769302", "@timestamp", T0),
    "%{msec}t": ("1730769302250", "@timestamp", T0.replace(microsecond=250000)),
    "%{%Y-%m-%dT%H:%M:%S%z}t": ("2024-11-05T08:15:02+0700", "@timestamp", T0),
    "%r": ("GET /a.php?x=1 HTTP/1.1", "url.query", "x=1"),
    "%>s": ("404", "http.response.status_code", 404),
    "%s": ("302", "http.response.status_code", 302),
    "%b": ("1234", "http.response.body.bytes", 1234),
    "%B": ("0", "http.response.body.bytes", 0),
    "%D": ("1500", "event.duration", 1_500_000),
    "%T": ("2", "event.duration", 2_000_000_000),
    "%{ms}T": ("2345", "event.duration", 2_345_000_000),
    "%{Referer}i": ("https://a.example/", "http.request.referrer", "https://a.example/"),
    "%{User-Agent}i": ("curl/8.5", "user_agent.original", "curl/8.5"),
    "%{X-Forwarded-For}i": ("203.0.113.9, 10.0.0.1", "source.ip", "203.0.113.9"),
    "%{X-Request-Id}i": ("abc-1", "http.request.id", "abc-1"),
    "%{Cookie}i": ("a=b", "apache.access.http_cookie", "a=b"),
    "%{Content-Type}o": ("text/html", "http.response.mime_type", "text/html"),
    "%v": ("portal.example.gov.vn", "destination.domain", "portal.example.gov.vn"),
    "%V": ("dvc.example.gov.vn", "url.domain", "dvc.example.gov.vn"),
    "%p": ("443", "destination.port", 443),
    "%{remote}p": ("52344", "source.port", 52344),
    "%P": ("4242", "process.pid", 4242),
    "%{tid}P": ("777", "process.thread.id", 777),
    "%m": ("DELETE", "http.request.method", "DELETE"),
    "%U": ("/ho-so/1", "url.path", "/ho-so/1"),
    "%q": ("?tab=2", "url.query", "tab=2"),
    "%H": ("HTTP/1.0", "http.version", "1.0"),
    "%f": ("/var/www/html/index.php", "file.path", "/var/www/html/index.php"),
    "%I": ("980", "http.request.bytes", 980),
    "%O": ("1500", "http.response.bytes", 1500),
    "%X": ("+", "apache.access.connection_status", "+"),
    "%{SSL_PROTOCOL}x": ("TLSv1.3", "tls.version", "1.3"),
    "%{SSL_CIPHER}x": ("TLS_AES_128_GCM_SHA256", "tls.cipher", "TLS_AES_128_GCM_SHA256"),
    "%{UNIQUE_ID}e": ("ZyXw", "apache.access.unique_id", "ZyXw"),
    "%l": ("ident1", "apache.access.ident", "ident1"),
}  # fmt: skip


@pytest.mark.parametrize("directive", sorted(APACHE_LINE_VALUES))
def test_apache_log_format_each_directive(directive: str) -> None:
    text, field, value = APACHE_LINE_VALUES[directive]
    parser = LogFormatParser(f'%h %t "{directive}" end', "apache")
    line = f'192.0.2.1 [05/Nov/2024:08:15:02 +0700] "{text}" end'
    if directive in ("%h", "%a", "%{c}a", "%t") or directive.endswith("t"):
        parser = LogFormatParser(f"{directive} end", "apache")
        line = f"{text} end"
    fragment = flat(parser.parse(line, CONTEXT))
    assert fragment[field] == value, fragment


def test_nginx_log_format_directive_as_pasted_from_nginx_conf() -> None:
    directive = (
        "log_format main '$remote_addr - $remote_user [$time_local] \"$request\" '\n"
        "                '$status $body_bytes_sent \"$http_referer\" '\n"
        '                \'"$http_user_agent" "$http_x_forwarded_for" $request_time '
        "$upstream_response_time';"
    )
    parser = LogFormatParser(directive, "nginx")
    assert isinstance(parser, NginxLogFormatParser)
    assert parser.name == parser.dataset == "nginx.access"
    line = (
        '10.0.0.5 - - [05/Nov/2024:08:15:02 +0700] "GET /tra-cuu?ma=H55 HTTP/1.1" 200 5120 "-"'
        ' "Mozilla/5.0" "113.161.72.45" 0.250 0.200, 0.040'
    )
    fragment = parser.parse(line, CONTEXT)
    assert fragment["source"]["ip"] == "113.161.72.45"
    assert fragment["event"]["duration"] == 250_000_000
    assert fragment["nginx"]["access"]["upstream_response_time"] == 0.24


def test_apache_log_format_as_pasted_from_httpd_conf() -> None:
    directive = (
        'LogFormat "%v:%p %a %l %u %{%d/%b/%Y:%H:%M:%S}t.%{msec_frac}t %{%z}t \\"%r\\" %>s %O'
        ' \\"%{Referer}i\\" \\"%{User-Agent}i\\"" vhost_custom'
    )
    parser = LogFormatParser(directive, "apache.access")
    assert isinstance(parser, ApacheLogFormatParser)
    assert parser.name == parser.dataset == "apache.access"
    line = (
        'dvc.example.gov.vn:443 113.161.72.45 - - 05/Nov/2024:08:15:02.345 +0700 "GET / HTTP/1.1"'
        ' 200 900 "-" "Mozilla/5.0 \\"quoted\\" agent"'
    )
    fragment = parser.parse(line, CONTEXT)
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, 345000, tzinfo=ICT)
    assert fragment["user_agent"]["original"] == 'Mozilla/5.0 \\"quoted\\" agent'
    assert fragment["destination"] == {"domain": "dvc.example.gov.vn", "port": 443}


def test_strftime_without_zone_reads_the_context_zone() -> None:
    parser = LogFormatParser("%h [%{%Y-%m-%d %H:%M:%S}t] %>s", "apache")
    fragment = parser.parse("1.2.3.4 [2024-11-05 08:15:02] 200", CONTEXT)
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, tzinfo=ICT)
    assert fragment["event"]["timezone"] == CONTEXT.timezone


@pytest.mark.parametrize(
    ("flavour", "name"),
    [("nginx", "combined"), ("nginx", "common"), ("nginx", "main"), ("nginx", ""),
     ("apache", "combined"), ("apache", "common"), ("apache", "vhost_combined"),
     ("apache", "ssl_request")],
)  # fmt: skip
def test_presets(flavour: str, name: str) -> None:
    parser = LogFormatParser(name, flavour)
    lines = {
        "ssl_request": '[05/Nov/2024:08:15:02 +0700] 1.2.3.4 TLSv1.2 AES "GET / HTTP/1.1" 10',
        "vhost_combined": 'h.example:80 1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1"'
        ' 200 10 "-" "ua"',
        "common": '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 10',
    }
    line = lines.get(name, lines["common"] + ' "-" "ua" "-"')
    fragment = parser.parse(line, CONTEXT)
    assert fragment["source"]["ip"] == "1.2.3.4"
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, tzinfo=ICT)


def test_configured_format_from_context_options_with_fallback() -> None:
    log_format = '$remote_addr|$time_iso8601|"$request"|$status|$request_time|$http_x_real_ip'
    context = ParseContext(options={"nginx.access": {"log_format": log_format}})
    line = '192.0.2.7|2024-11-05T08:15:02+07:00|"GET /x HTTP/1.1"|200|0.010|203.0.113.1'
    fragment = NGINX_ACCESS.parse(line, context)
    assert fragment["event"]["duration"] == 10_000_000
    assert fragment["nginx"]["access"]["http_x_real_ip"] == "203.0.113.1"
    # A line from before the format changed still parses, in the stock format.
    old = '192.0.2.7 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 1 "-" "ua"'
    assert NGINX_ACCESS.parse(old, context)["source"]["ip"] == "192.0.2.7"
    with pytest.raises(NotMine):
        NGINX_ACCESS.parse("nothing like it", context)
    # A context without options, or an empty format, means the stock format.
    empty = ParseContext(options={"nginx.access": {"log_format": None}})
    assert NGINX_ACCESS.parse(old, empty)["source"]["ip"] == "192.0.2.7"


def test_bad_formats_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="flavour"):
        LogFormatParser("$remote_addr", "iis")
    with pytest.raises(ConfigError, match="no fields"):
        LogFormatParser("just text", "nginx")
    with pytest.raises(ConfigError, match="no fields"):
        LogFormatParser("100%% literal", "apache")


def test_configured_format_not_mine() -> None:
    parser = LogFormatParser("combined", "nginx")
    assert not parser.sniff("garbage")
    with pytest.raises(NotMine):
        parser.parse("garbage", CONTEXT)


# --- error logs by hand -----------------------------------------------------------------------


def test_apache_24_late_client_and_ah_code() -> None:
    line = (
        "[Tue Nov 05 08:15:02.123456 2024] [proxy_fcgi:error] [pid 1234:tid 140001] (70007)The"
        " timeout specified has expired: [client 113.161.72.45:52344] AH01075: Error dispatching"
        " request to : (polling), referer: https://dvc.example.gov.vn/"
    )
    fragment = APACHE_ERROR.parse(line, CONTEXT)
    assert fragment["source"] == {"address": "113.161.72.45", "ip": "113.161.72.45", "port": 52344}
    assert fragment["error"] == {"code": "AH01075"}
    assert fragment["message"].startswith("(70007)The timeout")
    assert fragment["http"]["request"]["referrer"] == "https://dvc.example.gov.vn/"
    assert fragment["apache"]["error"]["module"] == "proxy_fcgi"
    assert fragment["process"] == {"pid": 1234, "thread": {"id": 140001}}
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, 123456, tzinfo=ICT)
    assert fragment["event"]["timezone"] == "Asia/Ho_Chi_Minh"


def test_apache_24_empty_module_ipv6_client_and_iso_time() -> None:
    line = "[2024-11-05 08:15:02.5] [:error] [pid 99] [client 2001:db8::5:41234] PHP Warning: x"
    fragment = APACHE_ERROR.parse(line, CONTEXT)
    assert "apache" not in fragment
    assert fragment["source"] == {"address": "2001:db8::5", "ip": "2001:db8::5", "port": 41234}
    assert fragment["message"] == "PHP Warning: x"
    assert fragment["@timestamp"] == datetime(2024, 11, 5, 8, 15, 2, 500000, tzinfo=ICT)


@pytest.mark.parametrize(
    "message",
    ['AH01617: user admin: authentication failure for "/quan-tri": Password Mismatch',
     "AH01618: user admin not found: /quan-tri",
     'user admin: authentication failure for "/": Password Mismatch'],
)  # fmt: skip
def test_apache_basic_auth_failures(message: str) -> None:
    line = f"[Tue Nov 05 08:15:02 2024] [auth_basic:error] [pid 1] [client 6.6.6.6:1] {message}"
    fragment = APACHE_ERROR.parse(line, CONTEXT)
    assert fragment["user"] == {"name": "admin"}
    assert fragment["event"]["action"] == "http_auth_failure"
    assert fragment["event"]["category"] == ["web", "authentication"]
    assert fragment["event"]["outcome"] == "failure"
    check_ecs_values(fragment)


@pytest.mark.parametrize(
    ("level", "event_type"),
    [("emerg", "error"), ("alert", "error"), ("crit", "error"), ("error", "error"),
     ("warn", "error"), ("notice", "info"), ("info", "info"), ("debug", "info"),
     ("trace8", "info")],
)  # fmt: skip
def test_apache_levels(level: str, event_type: str) -> None:
    line = f"[Tue Nov 05 08:15:02 2024] [core:{level}] [pid 1] something"
    fragment = APACHE_ERROR.parse(line, CONTEXT)
    assert fragment["log"]["level"] == level
    assert fragment["event"]["type"] == [event_type]


def test_nginx_error_context_with_upstream_and_auth() -> None:
    line = (
        "2024/11/05 08:15:02 [error] 1234#1234: *5678 upstream timed out (110: Connection timed"
        " out) while reading response header from upstream, client: 113.161.72.45, server:"
        ' dvc.example.gov.vn, request: "POST /api/ho-so HTTP/1.1", upstream:'
        ' "http://10.0.0.7:8080/api/ho-so", host: "dvc.example.gov.vn", referrer:'
        ' "https://dvc.example.gov.vn/nop"'
    )
    fragment = NGINX_ERROR.parse(line, CONTEXT)
    assert fragment["source"] == {"address": "113.161.72.45", "ip": "113.161.72.45"}
    assert fragment["http"] == {
        "request": {"method": "POST", "referrer": "https://dvc.example.gov.vn/nop"},
        "version": "1.1",
    }
    assert fragment["url"] == {"original": "/api/ho-so", "domain": "dvc.example.gov.vn"}
    assert fragment["nginx"]["error"] == {
        "connection_id": 5678,
        "server": "dvc.example.gov.vn",
        "upstream": "http://10.0.0.7:8080/api/ho-so",
    }
    line = (
        '2024/11/05 08:15:02 [error] 12#12: *3 user "admin": password mismatch, client:'
        ' 6.6.6.6, server: _, request: "GET /quan-tri HTTP/1.1", host: "1.2.3.4"'
    )
    fragment = NGINX_ERROR.parse(line, CONTEXT)
    assert fragment["user"] == {"name": "admin"}
    assert fragment["event"]["outcome"] == "failure"
    assert fragment["source"]["ip"] == "6.6.6.6"


def test_nginx_error_injected_context_is_not_taken() -> None:
    # The client controls the path nginx names in open(): the context taken is the first
    # ", client: " that starts a well-formed tail, so a malformed injected one does not win.
    line = (
        '2024/11/05 08:15:02 [error] 1#1: *1 open() "/var/www/a, client: 9.9.9.9" failed (2: No'
        ' such file or directory), client: 203.0.113.5, server: s, request: "GET /a HTTP/1.1"'
    )
    assert NGINX_ERROR.parse(line, CONTEXT)["source"]["ip"] == "203.0.113.5"


def test_nginx_error_without_connection_or_context() -> None:
    fragment = NGINX_ERROR.parse(
        "2024/11/05 08:15:02 [notice] 1#1: signal process started", CONTEXT
    )
    assert fragment["message"] == "signal process started"
    assert fragment["event"]["type"] == ["info"]
    assert "nginx" not in fragment
    assert "source" not in fragment


@pytest.mark.parametrize(
    "line",
    ["2024/02/30 08:15:02 [error] 1#1: x", "2024/13/01 08:15:02 [error] 1#1: x",
     "2024/11/05 24:15:02 [error] 1#1: x"],
)  # fmt: skip
def test_nginx_error_impossible_dates(line: str) -> None:
    fragment = NGINX_ERROR.parse(line, CONTEXT)
    assert "@timestamp" not in fragment
    assert "invalid time" in fragment["error"]["message"]


def test_apache_error_impossible_dates() -> None:
    fragment = APACHE_ERROR.parse("[Fri Feb 30 08:15:02 2024] [error] x", CONTEXT)
    assert "@timestamp" not in fragment
    with pytest.raises(NotMine):
        APACHE_ERROR.parse("[Fri Foo 30 08:15:02 2024] [error] x", CONTEXT)


def test_error_parsers_not_mine() -> None:
    for line in (
        "",
        "PHP message: PHP Warning: x",
        '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "-" 400 0',
    ):
        for parser in (NGINX_ERROR, APACHE_ERROR):
            with pytest.raises(NotMine):
                parser.parse(line, CONTEXT)
            assert not parser.sniff(line)


def test_exports() -> None:
    names = {(type(p).name, type(p).dataset) for p in WEB_LINE_PARSERS}
    assert names == {
        ("nginx.access", "nginx.access"),
        ("apache.access", "apache.access"),
        ("nginx.error", "nginx.error"),
        ("apache.error", "apache.error"),
    }
    assert all(isinstance(p, LineParser) for p in WEB_LINE_PARSERS)


# --- odd input ---------------------------------------------------------------------------------

ALL_PARSERS: list[LineParser] = [
    *WEB_LINE_PARSERS,
    LogFormatParser("main", "nginx"),
    LogFormatParser("$remote_addr $msec $request_time $upstream_response_time $foo$bar", "nginx"),
    LogFormatParser('%h %{%Y-%m-%d %H:%M:%S}t %{X-Forwarded-For}i "%r" %>s %b %D', "apache"),
    LogFormatParser("ssl_request", "apache"),
]
NASTY_PREFIXES = [
    '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET /',
    '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "',
    "1.2.3.4, " * 3,
    "[Tue Nov 05 08:15:02.123456 2024] [core:error] [pid 1:tid 2] ",
    '2024/11/05 08:15:02 [error] 1#1: *1 x, client: 1.2.3.4, server: s, request: "',
    '[05/Nov/2024:08:15:02 +0700] 1.2.3.4 TLSv1.2 X "',
    "1.2.3.4 2024-11-05 08:15:02 ",
]


def _try(parser: LineParser, line: str) -> None:
    """Parse must give a fragment or NotMine, and sniff a bool, nothing else."""
    assert isinstance(parser.sniff(line), bool)
    try:
        fragment = parser.parse(line, CONTEXT)
    except NotMine:
        return
    assert isinstance(fragment, dict)
    check_ecs_values(fragment)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    for parser in ALL_PARSERS:
        _try(parser, text)


@settings(max_examples=300, deadline=None)
@given(st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_invalid_utf8_replaced(text: str) -> None:
    for parser in ALL_PARSERS:
        _try(parser, text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NASTY_PREFIXES), st.text(alphabet='"\\ ,:[]-0123456789aGET/.x\t'))
def test_near_misses(prefix: str, tail: str) -> None:
    for parser in ALL_PARSERS:
        _try(parser, prefix + tail)
        _try(parser, prefix + tail + '" 200 1 "-" "ua"')


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 99), st.sampled_from(["Jan", "Feb", "Xyz", "feb"]), st.integers(0, 9999),
    st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(-9999, 9999),
)  # fmt: skip
def test_impossible_dates(
    day: int, month: str, year: int, hour: int, minute: int, second: int, offset: int
) -> None:
    clf = f"{day:02d}/{month}/{year:04d}:{hour:02d}:{minute:02d}:{second:02d} {offset:+05d}"
    lines = [
        f'1.2.3.4 - - [{clf}] "GET / HTTP/1.1" 200 1 "-" "ua"',
        f'[{clf}] 1.2.3.4 TLSv1.2 X "GET / HTTP/1.1" 1',
        f"[Mon {month} {day:02d} {hour:02d}:{minute:02d}:{second:02d} {year:04d}] [error] x",
        f"{year:04d}/{day:02d}/{month[:2]} {hour:02d}:{minute:02d}:{second:02d} [error] 1#1: x",
        f"{year:04d}/{day:02d}/{minute:02d} {hour:02d}:{minute:02d}:{second:02d} [warn] 1#1: x",
        f"1.2.3.4 {year:04d}-{day:02d}-{hour:02d} {hour:02d}:{minute:02d}:{second:02d}"
        ' - "GET / HTTP/1.1" 200 1 9',
        f"1.2.3.4 {year}{day}{hour}.{minute} 0.1 0.2 x",
    ]
    for line in lines:
        for parser in ALL_PARSERS:
            _try(parser, line)


@pytest.mark.parametrize(
    "shape",
    [
        "x" * (1 << 20),
        " " * (1 << 20),
        "[" * (1 << 20),
        '"' * (1 << 20),
        "1.2.3.4, " * (1 << 17),
        '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET /' + "a" * (1 << 20) + ' HTTP/1.1" 200 1',
        '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET /' + "\\" * (1 << 20),
        '1.2.3.4 - - [05/Nov/2024:08:15:02 +0700] "GET / HTTP/1.1" 200 1 "' + "a " * (1 << 19),
        "2024/11/05 08:15:02 [error] 1#1: *1 " + ", client: 1.2.3.4" * (1 << 16),
        '2024/11/05 08:15:02 [error] 1#1: *1 x, client: 1.2.3.4, server: s, request: "'
        + '"' * (1 << 20),
        "[Tue Nov 05 08:15:02 2024] [error] " + "[client 1.2.3.4] " * (1 << 16),
        "[Tue Nov 05 08:15:02 2024] [error] mod.c(1): " + "(1)" * (1 << 18),
    ],
    ids=lambda s: f"{s[:24]!r}...{len(s)}",
)
def test_one_mebibyte_lines(shape: str) -> None:
    started = time.perf_counter()
    for parser in ALL_PARSERS:
        _try(parser, shape)
    assert time.perf_counter() - started < 10.0


FORMAT_PIECES = st.sampled_from(
    ["$remote_addr", "$time_local", "$request", "$status", "${host}", "$upstream_addr", "$x",
     "%h", "%t", "%{%Y-%m-%d}t", "%{%Q}t", "%{msec_frac}t", "%>s", "%{Referer}i", "%U", "%q",
     "%%", " ", '"', "[", "]", ":", ",", "\\", "-", "a", "%", "$", "{", "}"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(FORMAT_PIECES, max_size=12).map("".join) | st.text(),
    st.sampled_from(["nginx", "apache"]),
    st.lists(st.sampled_from(["1.2.3.4", " ", '"', "GET / HTTP/1.1", "200", "-", "2024-11-05",
                              "[05/Nov/2024:08:15:02 +0700]", "/x", "?a=1", "x"]),
             max_size=12).map("".join),
)  # fmt: skip
def test_arbitrary_formats(log_format: str, flavour: str, line: str) -> None:
    try:
        parser = LogFormatParser(log_format, flavour)
    except ConfigError:
        return
    _try(parser, line)


def test_a_format_of_adjacent_fields_reads_a_crafted_line_in_linear_time() -> None:
    """Lazy groups side by side backtracked for minutes on this line under `re`; RE2 does not.

    Found by hypothesis; no timing threshold here: a hang fails by the suite's timeout.
    """
    log_format = (
        "$remote_addr$remote_addr$time_local$remote_addr$remote_addr$remote_addr$remote_addr"
        "$remote_addr$remote_addr$request$remote_addr%h"
    )
    line = (
        "1.2.3.4[05/Nov/2024:08:15:02 +0700] 1.2.3.41.2.3.41.2.3.41.2.3.41.2.3.41.2.3.4"
        '"1.2.3.4[05/Nov/2024:08:15:02 +0700]'
    )
    parser = LogFormatParser(log_format, "nginx")
    for size in (1, 50, 2000):
        parser.sniff(line * size)
