"""The engine's prefilters change no answer: keyword search over events shipped as JSON, long
texts that meet RE2 before the automaton, and the router's memory of guard values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.normalize import Normalizer
from detectors.sigma.engine import SigmaEngine, _Scanner
from detectors.sigma.fields import field_texts, keyword_texts
from detectors.sigma.hunt import build_engine
from socpipe.records import RawRecord, SourceRef, encode_document

KEYWORD_RULE = r"""
title: Mimikatz keywords
id: 5f5e9d5a-0000-4000-8000-000000000001
logsource:
  product: windows
detection:
  keywords:
    - '\mimilib.dll'
    - 'sekurlsa::'
  condition: keywords
level: high
"""

COMMAND_RULE = """
title: Long command line
id: 5f5e9d5a-0000-4000-8000-000000000002
logsource:
  product: windows
  category: process_creation
detection:
  selection:
    CommandLine|contains:
      - 'Invoke-Mimikatz'
      - 'straße'
  condition: selection
level: high
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> SigmaEngine:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "keywords.yml").write_text(KEYWORD_RULE, encoding="utf-8")
    (folder / "command.yml").write_text(COMMAND_RULE, encoding="utf-8")
    built, report = build_engine([folder])
    assert report.compiled == 2, report.messages
    return built


def _sysmon(number: int, **fields: Any) -> dict[str, Any]:
    data = {
        "EventID": number,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "SourceName": "Microsoft-Windows-Sysmon",
        "Hostname": "ubnd-pc-07.tinh.gov.vn",
        "UtcTime": "2026-11-27 02:00:00.000",
        **fields,
    }
    raw = RawRecord.model_validate(
        {
            "id": f"r{number}",
            "agency": {"id": "so-tttt", "tier": "province"},
            "collector": {"id": "c", "version": "0"},
            "host": "h",
            "source": SourceRef(type="file", path="x.json", format="winlog.json"),
            "received": datetime(2026, 11, 27, tzinfo=UTC),
            "position": number,
            "data": data,
        }
    )
    return Normalizer().normalize(raw).document


def _titles(engine: SigmaEngine, event: dict[str, Any]) -> list[str]:
    indexed = [rule.title for rule in engine.match(event)]
    assert indexed == [rule.title for rule in engine.match_naive(event)]
    return indexed


def test_keywords_of_a_json_original_are_its_decoded_strings() -> None:
    event = _sysmon(7, ImageLoaded="C:\\Windows\\Temp\\mimilib.dll")
    assert event["event"]["original"].count("\\\\") >= 2  # JSON doubles each backslash
    assert "C:\\Windows\\Temp\\mimilib.dll" in keyword_texts(event)
    assert event["event"]["original"] not in keyword_texts(event)


def test_a_keyword_with_a_backslash_matches_an_event_shipped_as_json(engine: SigmaEngine) -> None:
    hit = _sysmon(7, ImageLoaded="C:\\Windows\\Temp\\MIMILIB.DLL")
    assert _titles(engine, hit) == ["Mimikatz keywords"]
    quoted = _sysmon(1, CommandLine='mimikatz.exe "sekurlsa::logonpasswords" exit')
    assert "Mimikatz keywords" in _titles(engine, quoted)
    miss = _sysmon(7, ImageLoaded="C:\\Windows\\System32\\mimilib.dll.bak\\x")
    assert _titles(engine, miss) == ["Mimikatz keywords"]  # contains, as keywords do
    assert _titles(engine, _sysmon(7, ImageLoaded="C:\\Windows\\System32\\kernel32.dll")) == []


def test_a_json_original_with_unicode_escapes_is_decoded_for_keywords(
    engine: SigmaEngine,
) -> None:
    event = _sysmon(7, ImageLoaded="C:\\Windows\\Temp\\mimilib.dll")
    # A shipper that escapes every character it can (json.dumps with ensure_ascii does é so).
    event["event"]["original"] = event["event"]["original"].replace("mimilib", "\\u006dimilib")
    assert _titles(engine, event) == ["Mimikatz keywords"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("powershell -nop -c " + "A" * 600 + " ; iNvOkE-mImIkAtZ -DumpCreds", True),
        ("powershell -c 'Xin chào Sở Thông tin' " + "ạ" * 400 + " INVOKE-MIMIKATZ", True),
        ("cmd /c echo " + "b" * 800 + " STRASSE", True),  # casefold: ß is ss
        ("cmd /c echo " + "Điều hành " * 60 + " STRAẞE", True),
        ("powershell -nop -c " + "A" * 600 + " ; Invoke-Mimi katz", False),
        ("powershell -c 'Xin chào' " + "ạ" * 400, False),
    ],
)
def test_long_command_lines_match_as_short_ones_do(
    engine: SigmaEngine, command: str, expected: bool
) -> None:
    assert len(command) > 256  # long enough to meet the RE2 prefilter first
    event = _sysmon(1, CommandLine=command, Image="C:\\Windows\\System32\\cmd.exe")
    assert ("Long command line" in _titles(engine, event)) is expected
    short = _sysmon(1, CommandLine=command[-40:], Image="C:\\Windows\\System32\\cmd.exe")
    assert ("Long command line" in _titles(engine, short)) is expected


def test_the_router_remembers_answers_per_guard_values_only(engine: SigmaEngine) -> None:
    router = engine.router
    sysmon = _sysmon(1, CommandLine="whoami")
    other_host = _sysmon(1, CommandLine="hostname", Hostname="another")
    registry = _sysmon(13, TargetObject="HKLM\\Software\\x")
    first = router.keys_for(sysmon)
    assert router.keys_for(other_host) == first  # same guard values: the same log sources
    assert ("windows", "process_creation", None) in first
    assert router.keys_for(registry) != first
    assert ("windows", "process_creation", None) not in router.keys_for(registry)
    dotted = {"winlog.channel": "Microsoft-Windows-Sysmon/Operational", "winlog.event_id": "1"}
    assert router.keys_for(dotted) == first  # dotted keys are read as the rules read them
    assert router.keys_for({"winlog": {"channel": {"odd": ["dict"]}}}) == frozenset()


def test_times_in_a_document_read_as_json_text() -> None:
    document = _sysmon(1, CommandLine="x")
    assert isinstance(document["@timestamp"], datetime)
    as_json = orjson.loads(encode_document(document))
    for path in ("@timestamp", "event.created"):
        assert field_texts(document, path) == [as_json_text(as_json, path).casefold()]
    assert field_texts(document, "@timestamp") == ["2026-11-27t02:00:00z"]


def as_json_text(document: dict[str, Any], path: str) -> str:
    node: Any = document
    for part in path.split("."):
        node = node[part]
    assert isinstance(node, str)
    return node


def test_rules_anchored_by_an_event_id_are_looked_up_by_number(tmp_path: Path) -> None:
    (tmp_path / "rdp.yml").write_text(
        """
title: RDP logon
id: 5f5e9d5a-0000-4000-8000-000000000003
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4624
    LogonType: 10
  condition: selection
level: medium
""",
        encoding="utf-8",
    )
    built, _ = build_engine([tmp_path])
    (rule,) = [rule for rules in built._by_key.values() for rule in rules][:1]
    assert [(g.field, set(g.numbers)) for g in rule.required_numbers if g.numbers == {4624}] == [
        ("winlog.event_id", {4624})
    ]

    def security(event_id: Any, logon_type: Any) -> dict[str, Any]:
        return {
            "winlog": {
                "channel": "Security",
                "event_id": event_id,
                "event_data": {"LogonType": logon_type},
            },
            "event": {"code": str(event_id)},
        }

    bucket = built._bucket(built.router.keys_for(security("4624", "10")))
    assert bucket.unanchored == []  # found through the number, not tried on every event
    for event_id, logon_type, expected in [
        ("4624", "10", True),
        (4624, 10, True),
        ("4624.0", " 10", True),
        ("4625", "10", False),
        ("4624", "3", False),
    ]:
        event = security(event_id, logon_type)
        titles = [r.title for r in built.match(event)]
        assert titles == [r.title for r in built.match_naive(event)]
        assert (titles == ["RDP logon"]) is expected, (event_id, logon_type)


PLACEHOLDER_RULE = """
title: Logon from an admin workstation
id: 5f5e9d5a-0000-4000-8000-000000000004
logsource:
  product: windows
  service: security
detection:
  selection:
    EventID: 4624
    WorkstationName|expand: '%admin_workstations%'
  condition: selection
level: low
"""


def test_placeholders_are_filled_from_the_deployments_values(tmp_path: Path) -> None:
    (tmp_path / "admins.yml").write_text(PLACEHOLDER_RULE, encoding="utf-8")
    _, report = build_engine([tmp_path])
    assert report.compiled == 0
    assert dict(report.reasons) == {"unfilled placeholder": 1}
    assert "%admin_workstations%" in report.messages[0]
    filled, report = build_engine([tmp_path], {"admin_workstations": ["QTV-PC01", "QTV-PC02"]})
    assert report.compiled == 1, report.messages

    def logon(workstation: str) -> dict[str, Any]:
        return {
            "winlog": {
                "channel": "Security",
                "event_id": "4624",
                "event_data": {"WorkstationName": workstation},
            }
        }

    assert [r.title for r in filled.match(logon("qtv-pc02"))] == ["Logon from an admin workstation"]
    assert filled.match(logon("KETOAN-PC07")) == []


LITERALS = ["invoke-mimikatz", "\\mimilib.dll", "sekurlsa::", "điều hành", "strasse", "ab"]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.text(min_size=0, max_size=120),
            st.sampled_from(
                ["Invoke-MIMIKATZ", "\\MimiLib.DLL", "SEKURLSA::", "ĐIỀU HÀNH", "STRAßE", "AB"]
            ),
        ),
        max_size=12,
    ),
    padding=st.integers(min_value=0, max_value=600),
)
def test_long_and_short_texts_fire_the_same_literals(parts: list[str], padding: int) -> None:
    """Hyperscan (long texts) and the automaton (short ones) find the same literals as a plain
    substring test of the casefolded text, whatever the case, script or length."""
    scanner = _Scanner({literal: [index] for index, literal in enumerate(LITERALS)})
    text = "".join(parts) + "x" * padding
    expected = {index for index, literal in enumerate(LITERALS) if literal in text.casefold()}
    found: set[int] = set()
    scanner.fire(text, found)
    assert found == expected
