"""Sigma matches become detections the alerting stage can fold: ids, entities, ATT&CK."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector, rule_ref, ruleset_version
from detectors.sigma.hunt import build_engine
from detectors.worker import RawRecordHandler
from socpipe.deadletter import DeadLetterWriter
from socpipe.records import Detection, RawBatch, RawRecord, SourceRef
from tests.support.kafka_double import InMemoryProducer, Message

RULE = """
title: Certutil downloads a file
id: 6a7c4b0e-5d1f-4b8e-9c2a-1f3e5d7b9a01
status: test
level: high
tags:
    - attack.defense-evasion
    - attack.command-and-control
    - attack.t1105
    - attack.s0160
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        Image|endswith: '\\certutil.exe'
        CommandLine|contains: 'urlcache'
    condition: selection
"""


def sysmon_event(command_line: str) -> dict[str, object]:
    return {
        "Event": {
            "System": {
                "EventID": 1,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "pc-01.so-tttt.local",
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                "TimeCreated": {"#attributes": {"SystemTime": "2026-11-27T02:00:00.000000Z"}},
                "EventRecordID": 7,
            },
            "EventData": {
                "Image": "C:\\\\Windows\\\\System32\\\\certutil.exe",
                "CommandLine": command_line,
                "User": "SO-TTTT\\\\nguyễn.văn.a",
                "ParentImage": "C:\\\\Windows\\\\explorer.exe",
            },
        }
    }


def raw(data: dict[str, object], position: int) -> RawRecord:
    source = SourceRef(type="evtx", path="Sysmon.evtx", format="winlog.evtx")
    return RawRecord.model_validate(
        {
            "id": f"r{position}",
            "agency": {"id": "so-tttt", "tier": "province"},
            "collector": {"id": "c", "version": "0"},
            "host": "pc-01",
            "source": source,
            "received": datetime(2026, 11, 27, 2, 0, 1, tzinfo=UTC),
            "position": position,
            "data": data,
        }
    )


def detector(tmp_path: Path) -> SigmaDetector:
    (tmp_path / "certutil.yml").write_text(RULE, encoding="utf-8")
    engine, report = build_engine([tmp_path])
    assert report.compiled == 1
    return SigmaDetector(engine, ruleset_version([tmp_path]))


def test_a_match_is_a_detection_with_attack_fields(tmp_path: Path) -> None:
    sigma = detector(tmp_path)
    event = Normalizer().normalize(raw(sysmon_event("certutil -urlcache -f http://x/a.exe"), 0))
    (found,) = sigma.evaluate(event.event)
    assert found.detector.type == "sigma" and found.detector.version == sigma.version
    assert found.rule.techniques == ["T1105"]
    assert found.rule.tactics == ["defense_evasion", "command_and_control"]
    assert found.severity.value == "high" and found.risk_score == 73
    assert found.entities.agency == "so-tttt" and found.entities.host == "pc-01.so-tttt.local"
    assert found.event_ids == ["r0"]
    # Deterministic: the same event always makes the same detection.
    assert sigma.evaluate(event.event)[0].id == found.id


def test_no_match_no_detection(tmp_path: Path) -> None:
    sigma = detector(tmp_path)
    event = Normalizer().normalize(raw(sysmon_event("certutil -hashfile a.exe"), 0))
    assert sigma.evaluate(event.event) == []


def test_ruleset_version_follows_the_files(tmp_path: Path) -> None:
    before = detector(tmp_path).version
    (tmp_path / "certutil.yml").write_text(RULE.replace("level: high", "level: low"))
    assert ruleset_version([tmp_path]) != before


def test_rule_ref_keeps_the_rule_level(tmp_path: Path) -> None:
    sigma = detector(tmp_path)
    (rule,) = sigma.engine.match(
        Normalizer().normalize(raw(sysmon_event("certutil -urlcache x"), 0)).event.to_dict()
    )
    assert rule_ref(rule).level.value == "high"


def test_the_worker_sends_sigma_detections(tmp_path: Path) -> None:
    producer = InMemoryProducer()
    handler = RawRecordHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "detect"),  # type: ignore[arg-type]
        events_topic="events",
        detections_topic="detections",
        checks=[],
        normalizer=Normalizer(),
        sigma=detector(tmp_path),
    )
    batch = RawBatch(
        records=[
            raw(sysmon_event("certutil -urlcache -f http://x"), 0),
            raw(sysmon_event("notepad"), 1),
        ]
    )
    handler([Message("soc.raw", 0, 0, None, batch.to_json())])
    assert len(producer.sent["events"]) == 2
    (message,) = producer.sent["detections"]
    assert Detection.from_json(message.value).rule.title == "Certutil downloads a file"
