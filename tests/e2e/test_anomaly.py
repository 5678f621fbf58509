"""The anomaly scorer in the running pipeline, on the real Kafka and Elasticsearch: a model
trained on parsed sshd logons is published with `socpipe model publish`; sshd lines shipped as
a collector ships them go through the detector, the scorer (killed and restarted in the middle
of the window) and alerting, and come out as one alert with the score, the threshold and the
failed logons in its features; a second model published while everything runs judges the next
hour without a restart; `socpipe model status` tells who runs what, and a withdrawn model stops.
"""

from __future__ import annotations

import random
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from detectors.anomaly.model import save, train
from detectors.anomaly.windows import WindowSpec
from detectors.normalize import Normalizer
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import ensure_topics, make_admin, make_producer
from socpipe.records import RawBatch, RawRecord, SourceRef
from socpipe.settings import Settings
from tests.support.cli import run_socpipe
from tests.support.stages import Stages, detections_of

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.slow]

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
AGENCY = {"id": "phuong-phuc-xa", "tier": "commune"}
HOST = "ubnd-phucxa-srv"


def _record(n: int, at: datetime, text: str) -> RawRecord:
    moment = at.astimezone(ZONE)
    line = f"{moment:%b} {moment.day:>2} {moment:%H:%M:%S} {HOST} sshd[{900 + n % 5000}]: {text}"
    return RawRecord(
        id=f"e2e-anomaly-{n}",
        agency=AGENCY,  # type: ignore[arg-type]
        collector={"id": "e2e", "version": "0"},  # type: ignore[arg-type]
        host=HOST,
        source=SourceRef(type="file", path="/var/log/auth.log", format="syslog"),
        received=datetime.now(UTC),
        position=n,
        message=line,
    )


def _logon(n: int, user: str, at: datetime, *, failed: bool = False) -> RawRecord:
    verb = "Failed" if failed else "Accepted"
    return _record(
        n,
        at,
        f"{verb} password for {user} from 10.20.0.{n % 200 + 1} port {40000 + n % 20000} ssh2",
    )


def _model(path: Path, start: datetime, seed: int) -> str:
    """A user model of 14 working days of parsed sshd logons (a failure now and then)."""
    rng = random.Random(seed)
    normalizer = Normalizer()
    events = []
    n = 0
    for day in range(14):
        for user in range(8):
            for hour in range(8):
                for minute in range(rng.randint(1, 4)):
                    at = start + timedelta(days=day, hours=hour, minutes=7 * minute)
                    normalized = normalizer.normalize(
                        _logon(n, f"user{user}", at, failed=rng.random() < 0.1)
                    )
                    assert normalized.status == "parsed"
                    events.append(normalized.document)
                    n += 1
    model = train(events, WindowSpec("user", 3600), trained_from=f"e2e seed {seed}")
    save(model, path)
    return model.meta.version


def _burst(first: int, user: str, at: datetime, count: int = 45) -> list[RawRecord]:
    return [
        _logon(first + k, user, at + timedelta(seconds=20 * k), failed=True) for k in range(count)
    ]


def _ship(settings: Settings, records: list[RawRecord]) -> None:
    producer = make_producer(settings.kafka)
    producer.send(settings.kafka.topics.raw, value=RawBatch(records=records).to_json())
    producer.flush()
    producer.close()


def _wait(what: str, running: Stages, check: Any, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running.check()
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"waited {timeout_s:.0f}s for {what}")


def _committed(settings: Settings) -> int:
    group = settings.anomaly.group_id
    admin = make_admin(settings.kafka)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(
        m.offset
        for tp, m in offsets.items()
        if tp.topic == settings.kafka.topics.events and m.offset > 0
    )


def _said(done: subprocess.CompletedProcess[str]) -> str:
    """What a command said on its terminal (stderr), lines joined as rich wrapped them."""
    return " ".join(done.stderr.split())


def _status(config: Path) -> str:
    shown = run_socpipe(config, "model", "status")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_a_published_model_scores_the_stream_and_a_new_one_takes_over_without_restart(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    values: dict[str, Any] = pipeline_settings.model_dump(mode="json")
    values["anomaly"]["idle_s"] = 3600  # windows here close by event time only
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    # Midnight in Hà Nội, two days ago: the events are in the past, as a backlog would be.
    now = datetime.now(UTC)
    night = (now - timedelta(days=2)).replace(hour=17, minute=0, second=0, microsecond=0)
    baseline_start = (night - timedelta(days=20)).replace(hour=1)  # 08:00 there
    first = tmp_path / "user-1h-a.skops"
    version_a = _model(first, baseline_start, seed=3)
    published = run_socpipe(config, "model", "publish", str(first))
    assert published.returncode == 0, published.stderr
    assert f"published model user-1h = {version_a}" in _said(published)

    running = Stages(config, tmp_path)
    try:
        running.start("detect", "detect")
        running.start("anomaly", "anomaly")
        running.start("alert", "alert")
        _wait(
            "the scorer to run the model",
            running,
            lambda: f"runs user-1h {version_a}" in _status(config),
        )

        # Half of user3's night of failures, then the scorer dies with its window open.
        burst = _burst(0, "user3", night)
        _ship(
            settings,
            [
                *burst[:25],
                *(_logon(100 + k, "user5", night + timedelta(minutes=3 * k)) for k in range(3)),
            ],
        )
        _wait("the scorer to commit the first events", running, lambda: _committed(settings) >= 28)
        running.kill("anomaly")
        running.start("anomaly", "anomaly")
        # The rest of the hour, and an ordinary logon past its end (and the lateness).
        _ship(settings, [*burst[25:], _logon(200, "user5", night + timedelta(hours=1, minutes=6))])

        es = make_elasticsearch(settings.elasticsearch)
        index = f"{settings.elasticsearch.index_prefix}-alerts-*"

        def anomaly_alerts() -> list[dict[str, Any]]:
            if not es.indices.exists(index=index):
                return []
            es.indices.refresh(index=index)
            hits = es.search(index=index, query={"term": {"detector.type": "anomaly"}})["hits"][
                "hits"
            ]
            return [hit["_source"] for hit in hits]

        (alert,) = _wait("the anomaly alert", running, anomaly_alerts)
        assert (
            alert["entities"]["user"] == "user3" and alert["entities"]["agency"] == "phuong-phuc-xa"
        )
        assert alert["entities"]["tier"] == "commune"
        anomaly = alert["anomaly"]
        assert anomaly["score"] > anomaly["threshold"]
        failures = {f["feature"]: f for f in anomaly["features"]}.get("authentication.failure")
        # The restarted scorer rebuilt the window from the replay: all 45 failures counted.
        assert failures is not None and failures["value"] == 45 and failures["high"] < 45
        (detection,) = detections_of(settings, "anomaly")
        assert detection.detector.version == version_a and detection.timestamp == night

        # A second model, published while everything runs, judges the next hour.
        second = tmp_path / "user-1h-b.skops"
        version_b = _model(second, baseline_start, seed=11)
        assert version_b != version_a or second.read_bytes() != first.read_bytes()
        assert run_socpipe(config, "model", "publish", str(second)).returncode == 0
        _wait("the scorer to swap", running, lambda: f"runs user-1h {version_b}" in _status(config))
        later = night + timedelta(hours=2)
        _ship(
            settings,
            [
                *_burst(300, "user4", later),
                _logon(400, "user5", later + timedelta(hours=1, minutes=6)),
            ],
        )
        found = _wait(
            "the second detection",
            running,
            lambda: [d for d in detections_of(settings, "anomaly") if d.entities.user == "user4"],
        )
        assert [d.detector.version for d in found] == [version_b]
        assert [d.id for d in detections_of(settings, "anomaly") if d.entities.user == "user3"] == [
            detection.id
        ]

        status = _status(config)
        assert f"in force: user-1h = {version_b}" in status
        withdrawn = run_socpipe(config, "model", "withdraw", "user-1h")
        assert withdrawn.returncode == 0, withdrawn.stderr
        _wait("the scorer to drop the model", running, lambda: "runs no model" in _status(config))
        refused = run_socpipe(config, "model", "withdraw", "user-1h")
        assert refused.returncode == 1 and "no model 'user-1h' is in force" in _said(refused)
        es.close()
    finally:
        running.stop_all()


def test_a_file_that_is_not_a_model_is_not_published(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(pipeline_settings.model_dump(mode="json")), encoding="utf-8")
    fake = tmp_path / "model.skops"
    fake.write_bytes(b"PK\x03\x04 not a model")
    refused = run_socpipe(config, "model", "publish", str(fake))
    assert refused.returncode == 1 and "model.skops: not a skops model file" in _said(refused)
    bad_name = run_socpipe(config, "model", "publish", str(fake), "--name", "Users 1h")
    assert bad_name.returncode == 1
    assert "no model published on soc.models" in _status(config)
