"""The processing pipeline: Sigma rules come out addressing socpipe's events.

Real SigmaHQ rules (read in place from /work/shared/data/sigma) and the regression events that
SigmaHQ keeps beside them show that the Windows mapping lines up with what socpipe's Windows
parser makes of those events.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sigma.processing.transformations import AddConditionTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaFieldReference

from detectors.parsers.base import ParseContext
from detectors.parsers.windows import WinlogEvtxParser
from detectors.sigma.loader import load_rules
from detectors.sigma.pipelines import (
    PIPELINE_DIR,
    PipelineError,
    load_pipeline_file,
    resolve_pipelines,
)

SIGMA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sigma"


def _sigma() -> Path:
    if not (SIGMA / "rules").is_dir():
        pytest.skip(f"SigmaHQ rules not found at {SIGMA}")
    return SIGMA


def _items(detection: SigmaDetection) -> list[SigmaDetectionItem]:
    found: list[SigmaDetectionItem] = []
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            found += _items(item)
        else:
            found.append(item)
    return found


def _fields(rule: SigmaRule) -> set[str]:
    fields: set[str] = set()
    for detection in rule.detection.detections.values():
        for item in _items(detection):
            if item.field is not None:
                fields.add(item.field)
            fields.update(v.field for v in item.value if isinstance(v, SigmaFieldReference))
    return fields


def _values(rule: SigmaRule, field: str) -> set[str]:
    return {
        str(value)
        for detection in rule.detection.detections.values()
        for item in _items(detection)
        if item.field == field
        for value in item.value
    }


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _load_one(path: Path) -> SigmaRule:
    result = load_rules([path])
    assert not result.problems, [str(p) for p in result.problems]
    assert len(result.rules) == 1
    return result.rules[0]


def test_pipeline_runs_sysmon_then_channels_then_socpipe_yaml() -> None:
    pipeline = resolve_pipelines()
    ids = [item.identifier or "" for item in pipeline.items]
    first = {
        prefix: next(i for i, name in enumerate(ids) if name.startswith(prefix))
        for prefix in ("sysmon_", "windows_logsource_", "socpipe_")
    }
    assert first["sysmon_"] < first["windows_logsource_"] < first["socpipe_"]
    assert {path.stem for path in PIPELINE_DIR.glob("*.yml")} >= {
        "windows", "linux", "webserver", "proxy", "firewall", "dns",
    }  # fmt: skip


def test_every_yaml_pipeline_loads_on_its_own() -> None:
    for path in sorted(PIPELINE_DIR.glob("*.yml")):
        pipeline = load_pipeline_file(path)
        assert pipeline.items, path
        assert pipeline.priority > 10, path  # after pySigma's Windows pipelines


def test_a_broken_pipeline_file_names_itself(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.yml", "transformations:\n  - type: no_such_transformation\n")
    with pytest.raises(PipelineError, match=r"bad\.yml"):
        load_pipeline_file(bad)
    worse = _write(tmp_path, "worse.yml", "transformations: [\n")
    with pytest.raises(PipelineError, match=r"worse\.yml"):
        load_pipeline_file(worse)


# (rule file under rules/windows, event id, channel, a field the rule tests)
WINDOWS_RULES = [
    (
        "process_creation/proc_creation_win_renamed_whoami.yml",
        "1", "Microsoft-Windows-Sysmon/Operational", "winlog.event_data.OriginalFileName",
    ),
    (
        "registry/registry_set/registry_set_asep_reg_keys_modification_currentversion.yml",
        "13", "Microsoft-Windows-Sysmon/Operational", "winlog.event_data.TargetObject",
    ),
    (
        "network_connection/net_connection_win_susp_binary_no_cmdline.yml",
        "3", "Microsoft-Windows-Sysmon/Operational", "winlog.event_data.Image",
    ),
    (
        "builtin/security/account_management/win_security_successful_external_remote_rdp_login.yml",
        "4624", "Security", "winlog.event_data.LogonType",
    ),
    (
        "powershell/powershell_script/posh_ps_susp_keywords.yml",
        "4104", "Microsoft-Windows-PowerShell/Operational", "winlog.event_data.ScriptBlockText",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "event_id", "channel", "field"), WINDOWS_RULES)
def test_windows_rules_address_winlog_paths(
    name: str, event_id: str, channel: str, field: str
) -> None:
    path = _sigma() / "rules" / "windows" / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this SigmaHQ snapshot")
    rule = _load_one(path)
    fields = _fields(rule)
    assert field in fields
    assert {"winlog.event_id", "winlog.channel"} <= fields
    assert all(f.startswith("winlog.") for f in fields), fields
    assert event_id in _values(rule, "winlog.event_id")
    assert channel in _values(rule, "winlog.channel")
    # The log source's conditions wrap the rule's own: "_cond_x and (selection and ...)".
    assert rule.detection.parsed_condition[0].condition.startswith("_cond_")


def test_linux_process_creation_is_ecs_and_sees_only_linux_process_starts(tmp_path: Path) -> None:
    rule = _load_one(
        _write(
            tmp_path,
            "lnx.yml",
            """
title: Curl pipe to shell
logsource: {product: linux, category: process_creation}
detection:
    selection:
        Image|endswith: /curl
        CommandLine|contains: '| sh'
        ParentImage|endswith: /bash
        User: root
    condition: selection
""",
        )
    )
    assert _fields(rule) == {
        "process.executable", "process.command_line", "process.parent.executable", "user.name",
        "event.dataset", "event.category", "event.type",
    }  # fmt: skip
    assert _values(rule, "event.dataset") == {"auditd.log", "system.auth", "system.syslog"}
    assert _values(rule, "event.category") == {"process"}


def test_linux_keyword_rules_search_the_message_and_see_only_their_service(
    tmp_path: Path,
) -> None:
    rule = _load_one(
        _write(
            tmp_path,
            "sshd.yml",
            """
title: sshd keywords
logsource: {product: linux, service: sshd}
detection:
    keywords: ['error in libcrypto']
    condition: keywords
""",
        )
    )
    assert _values(rule, "message") == {"*error in libcrypto*"}
    assert _values(rule, "process.name") == {"sshd", "sshd-session", "sshd-auth"}
    assert _values(rule, "event.dataset") == {"system.auth"}


def test_product_only_linux_rule_gets_only_the_product_guard(tmp_path: Path) -> None:
    rule = _load_one(
        _write(
            tmp_path,
            "any.yml",
            "title: t\nlogsource: {product: linux}\n"
            "detection: {keywords: [x], condition: keywords}\n",
        )
    )
    assert _fields(rule) == {"message", "event.module"}
    assert _values(rule, "event.module") == {"system", "auditd"}


def test_auditd_fields_are_the_record_keys(tmp_path: Path) -> None:
    rule = _load_one(
        _write(
            tmp_path,
            "auditd.yml",
            """
title: memfd
logsource: {product: linux, service: auditd}
detection:
    selection: {type: SYSCALL, SYSCALL: memfd_create, a0|contains: x, key: k}
    condition: selection
""",
        )
    )
    assert _fields(rule) == {
        "auditd.log.record_type", "auditd.log.syscall_name", "auditd.log.a0", "auditd.log.key",
        "event.dataset",
    }  # fmt: skip


def test_web_proxy_firewall_dns_fields(tmp_path: Path) -> None:
    web = _load_one(
        _write(
            tmp_path,
            "web.yml",
            """
title: web
logsource: {category: webserver}
detection:
    selection:
        cs-method: POST
        cs-uri-query|contains: '../'
        sc-status: 200
        c-useragent|contains: sqlmap
        cs-user-agent|contains: nikto
        cs-referer: x
        cs-host: h
        c-ip: 1.2.3.4
        cs-uri: /a
    condition: selection
""",
        )
    )
    assert _fields(web) == {
        "http.request.method", "url.query", "url.original", "http.response.status_code",
        "c-useragent", "user_agent.original", "http.request.referrer", "url.domain",
        "source.ip", "event.dataset",
    }  # fmt: skip
    assert _values(web, "event.dataset") == {"nginx.access", "apache.access", "portal.app"}
    proxy = _load_one(
        _write(
            tmp_path,
            "proxy.yml",
            "title: p\nlogsource: {category: proxy}\ndetection:\n  selection:\n"
            "    c-uri|contains: x\n    c-useragent: y\n    cs-host: z\n  condition: selection\n",
        )
    )
    assert _fields(proxy) >= {"url.original", "user_agent.original", "url.domain"}
    firewall = _load_one(
        _write(
            tmp_path,
            "fw.yml",
            "title: f\nlogsource: {category: firewall}\ndetection:\n  selection:\n"
            "    src_ip: 1.2.3.4\n    dst_ip: 5.6.7.8\n    src_port: 1\n    dst_port: 22\n"
            "    action: accept\n  condition: selection\n",
        )
    )
    assert _fields(firewall) == {
        "source.ip", "destination.ip", "source.port", "destination.port", "event.action",
        "event.dataset", "event.category",
    }  # fmt: skip
    dns = _load_one(
        _write(
            tmp_path,
            "dns.yml",
            "title: d\nlogsource: {category: dns}\n"
            "detection: {selection: {query|endswith: .onion}, condition: selection}\n",
        )
    )
    assert _fields(dns) == {"dns.question.name", "event.dataset"}


def test_windows_fieldref_values_are_mapped_too(tmp_path: Path) -> None:
    rule = _load_one(
        _write(
            tmp_path,
            "ref.yml",
            "title: r\nlogsource: {product: windows, category: process_creation}\n"
            "detection: {selection: {User|fieldref: ParentUser}, condition: selection}\n",
        )
    )
    assert {"winlog.event_data.User", "winlog.event_data.ParentUser"} <= _fields(rule)


def test_every_guard_names_only_plain_values() -> None:
    # The router reads guards as equality tests; a wildcard would only widen routes, but ours
    # should not need one.
    for item in resolve_pipelines().items:
        transformation = item.transformation
        if isinstance(transformation, AddConditionTransformation):
            for value in transformation.conditions.values():
                values = value if isinstance(value, list) else [value]
                assert not any(isinstance(v, str) and "*" in v for v in values), item.identifier


# --- the regression data: real events of the rules, through socpipe's Windows parser ---------


_RULE_ID = re.compile(r"^id: ([0-9a-f-]{36})\s*$", re.MULTILINE)


def _events(path: Path) -> list[dict[str, Any]]:
    """The events of a regression .json: one object, or several written one after another."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    events, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return events
        event, position = decoder.raw_decode(text, position)
        events.append(event)


def _has(event: dict[str, Any], path: str) -> bool:
    node: Any = event
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_regression_events_have_every_winlog_field_their_rule_tests() -> None:
    sigma = _sigma()
    infos = sorted((sigma / "regression_data").glob("**/info.yml"))
    if not infos:
        pytest.skip("no SigmaHQ regression data")
    # Rule files by id (some were renamed after their regression data was written).
    files_by_id = {
        match.group(1): path
        for folder in ("rules", "rules-emerging-threats", "rules-threat-hunting")
        for path in (sigma / folder).rglob("*.yml")
        if (match := _RULE_ID.search(path.read_text(encoding="utf-8")))
    }
    cases = []
    for info in infos:
        events = sorted(info.parent.glob("*.json"))
        if events:
            rule_id = str(yaml.safe_load(info.read_text())["rule_metadata"][0]["id"])
            cases.append((info.parent.name, rule_id, events[0]))
    result = load_rules([files_by_id[rule_id] for _, rule_id, _ in cases if rule_id in files_by_id])
    assert not result.errors, [str(p) for p in result.errors]
    by_id = {str(rule.id): rule for rule in result.rules}
    parser = WinlogEvtxParser()
    aligned, mismatches = 0, []
    for name, rule_id, events_path in cases:
        rule = by_id.get(rule_id)
        if rule is None:
            mismatches.append(f"{name}: rule {rule_id} not loaded")
            continue
        parsed = [parser.parse(event, ParseContext()) for event in _events(events_path)]
        fields = _fields(rule)
        missing = sorted(
            f for f in fields if f.startswith("winlog.") and not any(_has(e, f) for e in parsed)
        )
        other = sorted(f for f in fields if not f.startswith("winlog."))
        if missing or other:
            mismatches.append(f"{name}: missing {missing}, not winlog {other}")
        else:
            aligned += 1
    print(f"\nregression data: {aligned} of {len(cases)} rules line up with their events")
    for mismatch in mismatches:
        print("  ", mismatch)
    assert len(cases) >= 202
    assert not mismatches
