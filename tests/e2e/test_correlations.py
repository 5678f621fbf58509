"""Correlations across workers, on the real Kafka: two detector processes each see part of one
attacker's failed logins, re-key them onto soc.correlate, and the correlator (killed and
restarted in the middle of the window) fires exactly once, with every event counted."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from kafka import TopicPartition

from socpipe.kafka import ensure_topics, make_admin, make_producer
from socpipe.records import Detection, RawBatch, RawRecord, SourceRef
from socpipe.settings import Settings
from tests.support.stages import Stages, detections_of

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "detectors" / "sigma" / "data"
ATTACKER = "113.160.12.9"


def _batch(first: int, count: int, host: str, at: datetime) -> bytes:
    failures = [
        (n, at + timedelta(seconds=n), f"Failed password for root from {ATTACKER} port {40000 + n}")
        for n in range(first, first + count)
    ]
    return _syslog_batch(failures, host)


def _syslog_batch(lines: list[tuple[int, datetime, str]], host: str) -> bytes:
    """Raw records of sshd lines (number, time, text) as a collector ships them."""
    zone = ZoneInfo("Asia/Ho_Chi_Minh")
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    records = []
    for n, at, text in lines:
        moment = at.astimezone(zone)
        line = f"{moment:%b} {moment.day:>2} {moment:%H:%M:%S} {host} sshd[{900 + n}]: {text} ssh2"
        records.append(
            RawRecord(
                id=f"e2e-corr-{n}",
                agency={"id": "phuong-phuc-xa", "tier": "commune"},  # type: ignore[arg-type]
                collector={"id": "e2e", "version": "0"},  # type: ignore[arg-type]
                host=host,
                source=source,
                received=datetime.now(UTC),
                position=n,
                message=line,
            )
        )
    return RawBatch(records=records).to_json()


def _consumed(settings: Settings, group: str, topic: str, wanted: int, running: Stages) -> None:
    """Wait until ``group`` committed ``wanted`` records of ``topic`` (all partitions)."""
    admin = make_admin(settings.kafka)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running.check()
            offsets = admin.list_group_offsets(group)[group]
            done = sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)
            if done >= wanted:
                return
            time.sleep(0.5)
    finally:
        admin.close()
    raise AssertionError(f"{group} did not consume {wanted} records of {topic}")


def test_two_detectors_and_a_restarted_correlator_fire_once(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("base_rules.yml", "sshd_brute_force.yml"):  # >= 5 failures per source.ip in 5m
        (rules / name).write_bytes((FIXTURES / "correlation" / name).read_bytes())
    values: dict[str, Any] = pipeline_settings.model_dump(mode="json")
    values["detector"]["rules_paths"] = [str(rules)]
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    running = Stages(config, tmp_path)
    topics = settings.kafka.topics
    group = f"{settings.detector.group_id}-correlate"
    try:
        running.start("detect-a", "detect", env={"SOCPIPE_DETECTOR__ID": "detector-a"})
        running.start("detect-b", "detect", env={"SOCPIPE_DETECTOR__ID": "detector-b"})
        running.start("correlate", "correlate")
        producer = make_producer(settings.kafka)
        start = datetime.now(UTC) - timedelta(seconds=30)
        # Partitions 0 and 5 of soc.raw go to different detectors (range assignment of six).
        producer.send(topics.raw, value=_batch(0, 3, "ubnd-phucxa-srv", start), partition=0)
        producer.flush()
        _consumed(settings, group, topics.correlate, 3, running)  # the correlator has them

        running.kill("correlate")  # in the middle of the window, with 3 of the 5 counted
        running.start("correlate", "correlate")
        producer.send(topics.raw, value=_batch(3, 2, "ubnd-phucxa-srv", start), partition=5)
        producer.send(topics.raw, value=_batch(10, 1, "dvc-portal-01", start), partition=5)
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 90
        hits: list[Detection] = []
        while time.monotonic() < deadline and not hits:
            running.check()
            hits = detections_of(settings, "correlation")
        assert len(hits) == 1, hits
        (hit,) = hits
        assert hit.rule.title == "SSH brute force from one source"
        assert hit.entities.source_ip == ATTACKER
        assert hit.entities.agency == "phuong-phuc-xa"
        assert sorted(hit.event_ids) == [f"e2e-corr-{n}" for n in range(5)]

        # The two detectors shared the work: each committed some of soc.raw.
        admin = make_admin(settings.kafka)
        try:
            raw = admin.list_group_offsets(settings.detector.group_id)[settings.detector.group_id]
        finally:
            admin.close()
        assert raw[TopicPartition(topics.raw, 0)].offset == 1
        assert raw[TopicPartition(topics.raw, 5)].offset == 2

        # Restarted again after the hit: the replay does not send it a second time.
        running.kill("correlate")
        running.start("correlate", "correlate")
        time.sleep(8)
        running.check()
        assert [d.id for d in detections_of(settings, "correlation")] == [hit.id]
    finally:
        running.stop_all()


NEW_ADDRESS = """
title: Login from an address new to the account
id: 7a3c1e52-4d0b-4c1e-9f21-000000000201
correlation:
  type: new_value
  rules: [ssh_success]
  group-by: [user.name]
  timespan: 30d
  condition:
    field: source.ip
    learning: 7d
level: medium
"""


def test_a_restarted_correlator_rebuilds_a_new_value_history_from_the_topic(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    """The history of a new_value correlation (weeks of it) is rebuilt by replaying
    soc.correlate: after a restart, a known address stays known, the account stays learned,
    and a new address fires once."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "base_rules.yml").write_bytes(
        (FIXTURES / "correlation" / "base_rules.yml").read_bytes()
    )
    (rules / "new_address.yml").write_text(NEW_ADDRESS, encoding="utf-8")
    values: dict[str, Any] = pipeline_settings.model_dump(mode="json")
    values["detector"]["rules_paths"] = [str(rules)]
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    running = Stages(config, tmp_path)
    topics = settings.kafka.topics
    group = f"{settings.detector.group_id}-correlate"
    now = datetime.now(UTC).replace(microsecond=0)
    known, new = "10.20.1.15", "198.51.100.9"

    def login(n: int, days: float, address: str) -> tuple[int, datetime, str]:
        text = f"Accepted password for nguyen.van.a from {address} port {50000 + n}"
        return n, now - timedelta(days=days), text

    try:
        running.start("detect", "detect")
        running.start("correlate", "correlate")
        producer = make_producer(settings.kafka)
        history = [login(0, 16, known), login(1, 9, known), login(2, 1, known)]
        producer.send(topics.raw, value=_syslog_batch(history, "so-tttt-srv"))
        producer.flush()
        _consumed(settings, group, topics.correlate, 3, running)
        assert detections_of(settings, "correlation") == []

        running.kill("correlate")  # its history is only in soc.correlate now
        running.start("correlate", "correlate")
        later = [login(3, 0.01, known), login(4, 0.005, new), login(5, 0.001, new)]
        producer.send(topics.raw, value=_syslog_batch(later, "so-tttt-srv"))
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 90
        hits: list[Detection] = []
        while time.monotonic() < deadline and not hits:
            running.check()
            hits = detections_of(settings, "correlation")
        assert len(hits) == 1, hits
        (hit,) = hits
        assert hit.rule.title == "Login from an address new to the account"
        assert hit.entities.source_ip == new
        assert hit.event_ids == ["e2e-corr-4"]

        running.kill("correlate")
        running.start("correlate", "correlate")
        _consumed(settings, group, topics.correlate, 6, running)
        time.sleep(5)
        running.check()
        assert [d.id for d in detections_of(settings, "correlation")] == [hit.id]
    finally:
        running.stop_all()
