"""Parsing to ECS per format on one core, next to orjson decode alone in the same run.

For each format with real or sample input, the normalizer's events/s (parse, enrich, validate as
EcsEvent, encode to JSON) and the ratio to orjson decoding of the same number of small JSON
documents, the floor of any stage. The last line printed is a JSON summary.

Inputs: loghub OpenSSH, Linux and Apache samples and the SigmaHQ regression events from
../shared/data when present; hand-written lines for formats without public samples.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from detectors.enrich import AgencyRegistry, AssetRegistry
from detectors.normalize import Normalizer
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef
from socpipe.samples import REPO_ROOT, shared_data_dir

SAMPLE_LINES: dict[str, list[str]] = {
    "nginx.access": [
        '203.0.113.7 - - [27/Nov/2026:09:30:01 +0700] "GET /dich-vu-cong/ho-so?id=42 HTTP/1.1" '
        '200 5120 "https://dichvucong.example.gov.vn/" "Mozilla/5.0 (X11; Linux x86_64)"',
    ],
    "fortigate": [
        'date=2026-11-27 time=09:30:01 logid="0000000013" type="traffic" subtype="forward" '
        'level="notice" vd="root" srcip=10.10.1.15 srcport=58012 srcintf="port1" '
        'dstip=203.0.113.80 dstport=443 dstintf="wan1" sessionid=1234 proto=6 action="deny" '
        'policyid=7 service="HTTPS" sentbyte=0 rcvdbyte=0 devname="FGT-SO-TTTT" devid="FG100F"',
    ],
    "nginx.error": [
        '2026/11/27 09:30:01 [error] 54053#0: *1 open() "/srv/dvc/favicon.ico" failed '
        "(2: No such file or directory), client: 203.0.113.7, server: dichvucong, "
        'request: "GET /favicon.ico HTTP/1.1", host: "dichvucong.example.gov.vn"',
    ],
    "portal.json": [
        '{"ts": "2026-11-27T09:30:01.123+07:00", "level": "warn", "app": "dvc-portal", '
        '"env": "prod", "request_id": "a8d2c0f4e6b1", "event": "login.failure", '
        '"user": {"name": "tranthibich"}, "client": {"ip": "14.232.10.8", "port": 61012}, '
        '"http": {"method": "POST", "path": "/dang-nhap", "status": 401, "duration_ms": 95}, '
        '"message": "Đăng nhập thất bại: sai mật khẩu (lần 3)"}',
    ],
    "syslog:network": [
        "Nov 27 09:30:01 pfsense filterlog[4242]: 5,,,1000000103,igb1,match,block,in,4,0x0,,"
        "64,0,0,DF,6,tcp,60,198.51.100.7,10.10.0.10,41234,22,0,S,123456,,29200,,mss",
        "Nov 27 09:30:01 ns1 named[811]: client @0x7f64bc0a0f10 10.100.0.5#53412 "
        "(www.example.com): query: www.example.com IN A +E(0)K (10.10.0.53)",
        "Nov 27 09:30:01 vpn-gw-01 openvpn[900]: 203.0.113.5:51234 TLS: Username/Password "
        "authentication succeeded for username 'nguyen.van.a'",
        "Nov 27 09:30:01 fw kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:11:22:33:44:55:66:77:88:99:"
        "aa:bb:08:00 SRC=8.8.8.8 DST=10.100.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=1 DF "
        "PROTO=TCP SPT=4242 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0",
    ],
    "auditd": [
        "type=USER_AUTH msg=audit(1795806623.243:24287): pid=3538 uid=0 auid=4294967295 "
        'ses=4294967295 msg=\'op=PAM:authentication grantors=? acct="root" exe="/usr/sbin/sshd" '
        "hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'",
    ],
}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []


def _evtx_events(root: Path, limit: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for path in sorted(root.rglob("*.json")):
        text = path.read_text(encoding="utf-8", errors="replace")
        index = 0
        while index < len(text) and len(events) < limit:
            while index < len(text) and text[index].isspace():
                index += 1
            if index >= len(text):
                break
            value, index = decoder.raw_decode(text, index)
            events.extend(value if isinstance(value, list) else [value])
        if len(events) >= limit:
            break
    return events[:limit]


def _records(fmt: str, items: list[str] | list[dict[str, Any]], count: int) -> list[RawRecord]:
    """``count`` raw records cycling through ``items``: lines, or structured events (evtx)."""
    structured = bool(items) and isinstance(items[0], dict)
    source = (
        SourceRef(type="evtx", path="bench.evtx", format=fmt)
        if structured
        else SourceRef(type="file", path=f"/var/log/{fmt}.log", format=fmt)
    )
    agency = AgencyRef(id="so-tttt", tier="province")  # type: ignore[arg-type]
    collector = CollectorRef(id="bench", version="0")
    received = datetime(2026, 11, 27, 3, tzinfo=UTC)
    payload = "data" if structured else "message"
    return [
        RawRecord(
            id=f"r{i}",
            agency=agency,
            collector=collector,
            host="bench-host",
            source=source,
            received=received,
            position=i,
            **{payload: items[i % len(items)]},
        )
        for i in range(count)
    ]


def _rate(work: Callable[[], int], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        done = work()
        best = max(best, done / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = shared_data_dir()
    config = REPO_ROOT / "deploy" / "config"
    normalizer = Normalizer(
        agencies=AgencyRegistry.load(config / "agencies.yaml"),
        assets=AssetRegistry.load(config / "assets.yaml"),
    )
    inputs: dict[str, list[RawRecord]] = {}
    for fmt, path in (
        ("syslog:sshd", data / "loghub/OpenSSH/OpenSSH_2k.log"),
        ("syslog:linux", data / "loghub/Linux/Linux_2k.log"),
        ("apache.error", data / "loghub/Apache/Apache_2k.log"),
    ):
        lines = _lines(path)
        if lines:
            inputs[fmt] = _records(fmt.split(":")[0], lines, args.records)
    for fmt, lines in SAMPLE_LINES.items():
        inputs[fmt] = _records(fmt.split(":")[0], lines, args.records)
    events = _evtx_events(data / "sigma" / "regression_data", 2000)
    if events:
        inputs["winlog.evtx"] = _records("winlog.evtx", events, args.records)

    documents = [
        orjson.dumps({"message": r.message or "", "n": i})
        for i, r in enumerate(next(iter(inputs.values())))
    ]
    baseline = _rate(lambda: sum(1 for d in documents if orjson.loads(d)), args.repeat)

    print(f"one core, best of {args.repeat} runs of {args.records} records each")
    print(f"{'format':<16} {'events/s':>12} {'÷ baseline':>11} {'parsed %':>9}")
    print(f"{'orjson decode':<16} {baseline:>12,.0f} {1.0:>11.3f} {'-':>9}")
    summary: dict[str, Any] = {"baseline_orjson_decode_per_s": round(baseline)}
    for fmt, records in inputs.items():
        parsed = sum(normalizer.normalize(r).status == "parsed" for r in records)

        def work(records: list[RawRecord] = records) -> int:
            for record in records:
                normalizer.normalize(record).event.to_json()
            return len(records)

        rate = _rate(work, args.repeat)
        share = 100.0 * parsed / len(records)
        print(f"{fmt:<16} {rate:>12,.0f} {rate / baseline:>11.4f} {share:>8.1f}%")
        summary[fmt] = {
            "events_per_s": round(rate),
            "ratio_to_baseline": round(rate / baseline, 4),
            "parsed_percent": round(share, 2),
        }
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
