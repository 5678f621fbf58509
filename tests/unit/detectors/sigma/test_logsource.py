"""Routing events to log sources: the same answer as the guards the pipeline adds to rules.

Events are made by socpipe's own normalizer from real-looking lines and from SigmaHQ's
regression .evtx files, exactly as ``socpipe parse`` shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaLogSource, SigmaRule
from sigma.types import SigmaNull, SigmaNumber, SigmaString

from detectors.normalize import Normalizer
from detectors.parsetool import raw_records
from detectors.sigma.logsource import (
    LogsourceKey,
    LogsourceRouter,
    event_logsource,
    logsource_key,
)
from detectors.sigma.pipelines import process_rule, resolve_pipelines
from socpipe.settings import Settings

SIGMA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sigma"

LINES = {
    "sshd": "<38>Mar  3 10:00:01 web1 sshd[123]: Failed password for root from 203.0.113.9 "
    "port 4242 ssh2",
    "sudo": "<86>Mar  3 10:00:01 web1 sudo: alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
    "COMMAND=/bin/ls -la",
    "cron": "<78>Mar  3 10:00:01 web1 CRON[22]: (root) CMD (run-parts /etc/cron.hourly)",
    "execve": 'type=EXECVE msg=audit(1364481363.243:24287): argc=3 a0="ping" a1="-c" a2="1"',
    "path": 'type=PATH msg=audit(1364481363.243:24287): item=0 name="/etc/shadow" inode=409248 '
    "dev=fc:00 mode=0100640 ouid=0 ogid=42 rdev=00:00 nametype=NORMAL cap_fp=0",
    "nginx": '203.0.113.9 - - [10/Oct/2025:13:55:36 +0700] "GET /index.php?id=1 HTTP/1.1" 200 '
    '2326 "-" "sqlmap/1.0"',
    "apache_error": "[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 1] "
    "[client 72.15.99.187] File does not exist: /favicon.ico",
    "ufw": "<4>Mar  3 10:00:01 fw1 kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00 SRC=203.0.113.9 "
    "DST=10.0.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=1 DF PROTO=TCP SPT=4444 DPT=22 "
    "WINDOW=1 RES=0x00 SYN URGP=0",
    "named": "<30>Mar  3 10:00:01 ns1 named[1]: client @0x7f 10.0.0.5#5353 (evil.example): "
    "query: evil.example IN A +E(0) (10.0.0.1)",
    "fortigate_config": 'date=2024-01-01 time=10:00:00 devname="FGT1" devid="FG100" '
    'logid="0100044547" type="event" subtype="system" level="information" vd="root" '
    'logdesc="Object attribute configured" user="admin" ui="GUI(10.0.0.5)" action="Add" '
    'cfgtid=1 cfgpath="firewall.policy" cfgobj="5" msg="Add firewall.policy 5"',
    "fortigate_web": 'date=2024-01-01 time=10:00:00 devname="FGT1" devid="FG100" '
    'logid="0316013056" type="utm" subtype="webfilter" eventtype="ftgd_blk" level="warning" '
    'vd="root" policyid=1 sessionid=1 srcip=10.0.0.5 srcport=5000 srcintf="lan" '
    'dstip=93.184.216.34 dstport=80 dstintf="wan" proto=6 service="HTTP" '
    'hostname="evil.example" action="blocked" url="http://evil.example/a.php?x=1" '
    'msg="URL belongs to a denied category" agent="curl/7.1" httpmethod="GET"',
}

EXPECTED: dict[str, set[LogsourceKey]] = {
    "sshd": {("linux", None, None), ("linux", None, "syslog"), ("linux", None, "auth"),
             ("linux", None, "sshd")},
    "sudo": {("linux", None, None), ("linux", None, "syslog"), ("linux", None, "auth"),
             ("linux", None, "sudo"), ("linux", "process_creation", None)},
    "cron": {("linux", None, None), ("linux", None, "syslog"), ("linux", None, "cron"),
             ("linux", "process_creation", None)},
    "execve": {("linux", None, None), ("linux", None, "auditd"),
               ("linux", "process_creation", None)},
    "path": {("linux", None, None), ("linux", None, "auditd"), ("linux", "file_event", None)},
    "nginx": {(None, "webserver", None), (None, None, "nginx")},
    "apache_error": {(None, None, "apache")},
    "ufw": {(None, "firewall", None)},
    "named": {(None, "dns", None)},
    "fortigate_config": {("fortigate", None, "event")},
    "fortigate_web": {(None, "proxy", None), (None, "firewall", None)},
}  # fmt: skip


def _normalize(paths: list[Path]) -> list[dict[str, Any]]:
    settings = Settings()
    normalizer = Normalizer()
    return [
        normalizer.normalize(raw).event.to_dict()
        for path in paths
        for raw in raw_records(path, "auto", settings)
    ]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("lines")
    found = {}
    for name, line in LINES.items():
        path = folder / f"{name}.log"
        path.write_text(line + "\n", encoding="utf-8")
        (found[name],) = _normalize([path])
    evtx = sorted((SIGMA / "regression_data").glob("**/*.evtx"))[:40]
    for number, event in enumerate(_normalize(evtx)):
        found[f"evtx{number}"] = event
    return found


@pytest.fixture(scope="module")
def router() -> LogsourceRouter:
    return LogsourceRouter.build()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_events_are_routed_to_their_log_sources(
    name: str, events: dict[str, dict[str, Any]], router: LogsourceRouter
) -> None:
    assert set(router.keys_for(events[name])) == EXPECTED[name]


def test_windows_events_name_their_sysmon_category_and_channel_service(
    events: dict[str, dict[str, Any]], router: LogsourceRouter
) -> None:
    windows = [event for name, event in events.items() if name.startswith("evtx")]
    if not windows:
        pytest.skip("no SigmaHQ regression .evtx files")
    for event in windows:
        keys = router.keys_for(event)
        assert ("windows", None, None) in keys
        if event["winlog"].get("channel") == "Microsoft-Windows-Sysmon/Operational":
            assert ("windows", None, "sysmon") in keys
            # The category as rules write it and as the pipeline leaves it (service sysmon).
            categories = {key[1] for key in keys if key[1] is not None}
            assert len(categories) >= 1
            for category in categories:
                assert ("windows", category, None) in keys
                assert ("windows", category, "sysmon") in keys


def test_unknown_events_have_no_log_source(router: LogsourceRouter) -> None:
    assert router.keys_for({}) == frozenset()
    assert router.keys_for({"event": {"dataset": "tomcat.access"}, "message": "x"}) == frozenset()
    portal = {"event": {"dataset": "portal.app"}, "message": "x"}
    # The portal's application log is its own source and, for its requests, a web server's.
    assert router.keys_for(portal) == frozenset({("portal", None, None), (None, "webserver", None)})
    # Odd shapes do not raise: lists, numbers, None where a mapping was expected.
    odd = {"event": ["x"], "winlog": {"channel": None, "event_id": 4104}}
    assert router.keys_for(odd) == frozenset({("windows", None, None)})


def test_event_logsource_uses_the_default_router(events: dict[str, dict[str, Any]]) -> None:
    assert event_logsource(events["named"]) == frozenset({(None, "dns", None)})


def test_logsource_key_is_lower_case() -> None:
    assert logsource_key(SigmaLogSource("Process_Creation", "Windows", None)) == (
        "windows", "process_creation", None,
    )  # fmt: skip


def test_rules_own_keys_get_routes_too() -> None:
    pipeline = resolve_pipelines()
    odd: LogsourceKey = ("windows", "process_creation", "sysmon")
    built = LogsourceRouter.build(pipeline, keys=[odd, ("aws", None, "cloudtrail")])
    assert odd in built.keys
    assert ("aws", None, "cloudtrail") not in built.keys  # no guard: socpipe has no such events


# --- routing says exactly what the guards say ----------------------------------------------


def _value_matches(value: Any, event_values: list[Any]) -> bool:
    texts = [str(v).lower() for v in event_values]
    if isinstance(value, SigmaNumber):
        return str(value.number) in texts
    assert isinstance(value, SigmaString) and not value.contains_special()
    return str(value).lower() in texts


def _get(event: dict[str, Any], path: str) -> list[Any]:
    node: Any = event
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return []
        node = node[part]
    return node if isinstance(node, list) else [node]


def _guard_holds(rule: SigmaRule, event: dict[str, Any]) -> bool:
    """The added conditions of a processed probe rule, evaluated the way Sigma defines them."""
    condition = rule.detection.parsed_condition[0].condition
    for name, detection in rule.detection.detections.items():
        if name == "selection":
            continue
        assert isinstance(detection, SigmaDetection)
        holds = True
        for item in detection.detection_items:
            assert isinstance(item, SigmaDetectionItem) and item.field
            found = _get(event, item.field)
            if all(isinstance(value, SigmaNull) for value in item.value):
                holds = holds and not found
            else:
                holds = holds and any(_value_matches(v, found) for v in item.value)
        negated = f"not {name} and (" in condition
        if holds == negated:
            return False
    return True


def test_routes_equal_the_guards_for_every_log_source_and_event(
    events: dict[str, dict[str, Any]], router: LogsourceRouter
) -> None:
    pipeline = resolve_pipelines()
    checked = 0
    for key in router.keys:
        product, category, service = key
        logsource = {
            k: v for k, v in (("product", product), ("category", category), ("service", service))
            if v
        }  # fmt: skip
        probe = SigmaRule.from_dict(
            {
                "title": "probe",
                "logsource": logsource,
                "detection": {"selection": {"Probe": "x"}, "condition": "selection"},
            }
        )
        processed = process_rule(probe, pipeline)
        assert processed.guarded, key
        for name, event in events.items():
            assert (key in router.keys_for(event)) == _guard_holds(processed.rule, event), (
                key,
                name,
            )
            checked += 1
    assert checked > 1000
