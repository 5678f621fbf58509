"""The console over the real services, for the browser tests and for looking at it by hand.

:func:`seed` fills a deployment's indices (a prefix of its own) the way the pipeline would:
each matching example line of the province's rules (``rules/socpipe/**/*.tests.yml``) is parsed
by the real normalizer and judged by the real Sigma engine, as if sent by one of several
agencies over the last hours, and the detections (through their JSON form, as read from Kafka)
are folded into alerts by the Elasticsearch alert store. One anomaly detection is added with
the explanation the anomaly detector gives (issue 10 writes those). Users of each role are
made in the user store. Collectors' heartbeats and the stages' counters of the last hours go
to the deployment's own ``soc.heartbeats`` on Kafka and are folded by the watch's aggregator
(``alerting.completeness.aggregate``), so the collectors page shows what ``socpipe watch`` makes:
one collector has gone silent, one agency's detector received fewer records than were sent.
:class:`ConsoleServer` runs ``socpipe api``'s app with uvicorn in a thread.

By hand, with the local services up (``socpipe services up``)::

    .venv/bin/python -m tests.support.console        # prints the URL and the users

(``SOCPIPE_CONSOLE_PORT`` fixes the port, ``SOCPIPE_CONSOLE_PREFIX`` the indices' prefix.)
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
import yaml
from elasticsearch import Elasticsearch

from alerting.completeness import aggregate
from alerting.store import ElasticsearchAlertStore, SourcedDetection
from api.app import create_app
from api.users import ElasticsearchUserStore
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_hunter
from socpipe.counters import (
    STAGE_COUNTERS_KIND,
    HourCounts,
    StageCountersMessage,
    emitter_key,
    hour_start,
)
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import ensure_topics, make_producer
from socpipe.records import (
    HEARTBEAT_KIND,
    KIND_HEADER,
    AgencyRef,
    AnomalyDetail,
    CollectorRef,
    Detection,
    DetectorRef,
    Entities,
    RawRecord,
    RuleRef,
    Severity,
    SourceRef,
    stable_id,
)
from socpipe.settings import Role, Settings, Tier, load_settings
from tests.support.factories import collector_heartbeat

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules" / "socpipe"
PASSWORD = "mật-khẩu-thử-nghiệm-2026"
# name: (role, agency)
USERS: dict[str, tuple[Role, str | None]] = {
    "quan.tri": (Role.SOC_ADMIN, None),
    "lan.nguyen": (Role.ANALYST, None),
    "tac.gia": (Role.RULE_AUTHOR, None),
    "can.bo.px": (Role.AGENCY_VIEWER, "phuong-phuc-xa"),
}
AGENCIES: tuple[tuple[str, Tier], ...] = (
    ("so-tttt", Tier.PROVINCE),
    ("phuong-phuc-xa", Tier.COMMUNE),
    ("so-noi-vu", Tier.PROVINCE),
    ("xa-tan-lap", Tier.COMMUNE),
)
ANOMALY_RULE = "anomaly-user-1h"


def settings_for(es_url: str, prefix: str, *, kafka: str = "127.0.0.1:9092") -> Settings:
    """Settings of a console deployment on the given services: indices under ``prefix``, and
    topics of its own (``<prefix>.soc.<name>``)."""
    topics = {name: f"{prefix}.soc.{name}" for name in ("heartbeats", "rules", "raw")}
    return load_settings(
        elasticsearch={"hosts": [es_url], "index_prefix": prefix},
        kafka={"bootstrap_servers": [kafka], "topics": topics},
        alerting={"group_id": f"{prefix}-alert"},
        detector={
            "rules_paths": [str(ROOT / "rules" / "socpipe")],
            "agencies_file": str(ROOT / "deploy" / "config" / "agencies.yaml"),
        },
        api={"jwt_secret": "console-test-secret-" + "x" * 24, "signin_per_minute": 1000},
    )


@cache
def _detector() -> SigmaDetector:
    hunter = build_hunter([RULES], correlations=False)
    return SigmaDetector(hunter.engine, "console-seed")


def _example_lines() -> Iterator[tuple[str, str]]:
    """(format, raw line) of each single-event case of the rules that should match."""
    for path in sorted(RULES.rglob("*.tests.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for case in document.get("tests") or []:
            raw = case.get("raw")
            if case.get("match") and isinstance(raw, str) and case.get("format"):
                yield case["format"], raw


def detections(now: datetime) -> list[Detection]:
    """The detections of the rules' example lines, sent by the agencies in turn over the last
    hours (restamped so that the queue's time filters see them), and one anomaly."""
    normalizer = Normalizer()
    found: list[Detection] = []
    for n, (fmt, line) in enumerate(_example_lines()):
        agency, tier = AGENCIES[n % len(AGENCIES)]
        at = now - timedelta(minutes=7 * n + 1)
        raw = RawRecord(
            id=f"console-{n:04d}",
            agency=AgencyRef(id=agency, tier=tier),
            collector=CollectorRef(id="console-seed", version="1"),
            host=f"{agency}-srv",
            source=SourceRef(type="file", path="/var/log/seed.log", format=fmt),
            received=at,
            position=n,
            message=line,
        )
        normalized = normalizer.normalize(raw)
        document = dict(normalized.document)
        document["@timestamp"] = at
        for detection in _detector().evaluate(normalized.event, document):
            restamped = detection.model_copy(update={"timestamp": at})
            # Through JSON, as the alert worker reads detections from Kafka.
            found.append(Detection.from_json(restamped.to_json()))
    found.append(anomaly(now - timedelta(minutes=3)))
    return found


def anomaly(at: datetime) -> Detection:
    """An anomaly detection with the explanation the anomaly detector gives."""
    features = [
        {"feature": "authentication.failure", "value": 45, "low": 0, "high": 2, "weight": 0.46},
        {"feature": "distinct.host", "value": 40, "low": 1, "high": 3, "weight": 0.31},
        {"feature": "off_hours.share", "value": 1.0, "low": 0.0, "high": 0.05, "weight": 0.17},
    ]
    return Detection(
        id=stable_id("console-anomaly", at.isoformat()),
        timestamp=at,
        detector=DetectorRef(type="anomaly", id=ANOMALY_RULE, version="model-1"),
        rule=RuleRef(
            id=ANOMALY_RULE,
            title="Hoạt động bất thường của tài khoản (1 giờ)",
            level=Severity.HIGH,
            tags=["attack.credential_access", "attack.lateral_movement"],
            tactics=["credential_access", "lateral_movement"],
            techniques=["T1110", "T1021"],
        ),
        severity=Severity.HIGH,
        risk_score=Severity.HIGH.risk_score,
        entities=Entities(agency="so-noi-vu", tier=Tier.PROVINCE, user="trần.thị.bình"),
        dedup_key=stable_id(ANOMALY_RULE, "so-noi-vu", "trần.thị.bình"),
        event_ids=["console-anomaly-window"],
        events=[
            {
                "@timestamp": at.isoformat(),
                "message": "45 lần đăng nhập thất bại trên 40 máy lúc 02:00",
                "event": {"kind": "metric", "dataset": "socpipe.anomaly"},
                "user": {"name": "trần.thị.bình"},
                "organization": {"id": "so-noi-vu"},
            }
        ],
        anomaly=AnomalyDetail(score=0.71, threshold=0.58, features=features),
    )


# (agency, collector, minutes since its last heartbeat): the commune's has gone silent.
COLLECTORS: tuple[tuple[str, str, int], ...] = (
    ("so-tttt", "tttt-syslog-01", 0),
    ("so-noi-vu", "snv-winlog-01", 0),
    ("phuong-phuc-xa", "px-files-01", 0),
    ("xa-tan-lap", "tl-files-01", 47),
)
SILENT_COLLECTOR = "tl-files-01"
SHORT_AGENCY = "phuong-phuc-xa"  # its detector received less than its collector sent
BEAT_S = 600
HOURS = 6


def _heartbeat(agency: str, collector: str, at: datetime, started: datetime, sent: int) -> bytes:
    source = {"name": "file:/var/log/auth.log", "read": sent, "sent": sent}
    return orjson.dumps(
        collector_heartbeat(
            agency,
            collector,
            at,
            started=started,
            sources=[source],
            tier=dict(AGENCIES)[agency].value,
            interval_s=BEAT_S,
            host=f"{collector}.{agency}.gov.vn",
        )
    )


def seed_collectors(settings: Settings, client: Elasticsearch, now: datetime) -> None:
    """Heartbeats of :data:`COLLECTORS` every 10 minutes over the last hours and the detect
    stage's counters, through Kafka, folded by the watch's aggregator."""
    topic = settings.kafka.topics.heartbeats
    ensure_topics(settings.kafka, ["heartbeats"])
    started = now - timedelta(hours=HOURS, minutes=5)
    per_beat = 120
    hours: dict[tuple[str, int], int] = {}
    producer = make_producer(settings.kafka)
    try:
        for agency, collector, quiet_min in COLLECTORS:
            sent = 0
            at = started + timedelta(minutes=5)
            while at <= now - timedelta(minutes=quiet_min):
                sent += per_beat
                hour = hour_start(at.timestamp())
                hours[agency, hour] = hours.get((agency, hour), 0) + per_beat
                producer.send(
                    topic,
                    key=f"collector/{agency}/{collector}".encode(),
                    value=_heartbeat(agency, collector, at, started, sent),
                    headers=[(KIND_HEADER, HEARTBEAT_KIND)],
                    timestamp_ms=int(at.timestamp() * 1000),
                )
                at += timedelta(seconds=BEAT_S)
        counts = []
        for (agency, hour), collected in sorted(hours.items()):
            short = agency == SHORT_AGENCY and hour == max(h for a, h in hours if a == agency)
            received = collected - (37 if short else 0)
            unparsed = received // 50
            counts.append(
                HourCounts(
                    agency=agency,
                    hour=datetime.fromtimestamp(hour, UTC),
                    counts={"received": received, "parsed": received - unparsed,
                            "unparsed": unparsed, "detected": received // 40},
                )
            )  # fmt: skip
        # The alert worker indexed every detection and every parsed event.
        indexed = [
            HourCounts(
                agency=c.agency,
                hour=c.hour,
                counts={"indexed": c.counts["detected"], "events_indexed": c.counts["parsed"]},
            )
            for c in counts
        ]
        for stage, hours_of in (("detect", counts), ("alert", indexed)):
            message = StageCountersMessage(
                stage=stage, instance=f"{stage}-1", started=started, seq=1, at=now, hours=hours_of
            )
            producer.send(
                topic,
                key=emitter_key(stage, f"{stage}-1").encode(),
                value=message.to_json(),
                headers=[(KIND_HEADER, STAGE_COUNTERS_KIND)],
                timestamp_ms=int(now.timestamp() * 1000),
            )
        producer.flush(timeout=60)
    finally:
        producer.close()
    aggregate(settings, threading.Event(), client, until_end=True)
    prefix = settings.elasticsearch.index_prefix
    client.indices.refresh(index=f"{prefix}-collectors,{prefix}-completeness")


@dataclass
class Seeded:
    """What :func:`seed` made."""

    alerts: int
    detections: int


def seed(settings: Settings, now: datetime | None = None) -> Seeded:
    """Users of each role, the alerts of :func:`detections` and the collectors of
    :func:`seed_collectors`, in ``settings``' indices."""
    es = settings.elasticsearch
    now = now or datetime.now(UTC)
    client = make_elasticsearch(es)
    try:
        seed_collectors(settings, client, now)
        users = ElasticsearchUserStore(client, es.index_prefix)
        users.ensure_ready()
        for name, (role, agency) in USERS.items():
            if users.get(name) is None:
                users.add(name, PASSWORD, role, agency)
        store = ElasticsearchAlertStore(client, es.index_prefix, settings.alerting.dedup_window_s)
        store.ensure_ready()
        found = detections(now)
        batch = [SourcedDetection(d, "soc.detections:0", n) for n, d in enumerate(found, 1)]
        result = store.apply(batch)
        if result.failed:
            raise RuntimeError(f"alerts not written: {result.failed[:3]}")
        client.indices.refresh(index=f"{store.alias}-*")
        total = client.count(index=store.alias)["count"]
        return Seeded(alerts=int(total), detections=len(found))
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ConsoleServer:
    """``socpipe api``'s app under uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="console", daemon=True)

    def __enter__(self) -> ConsoleServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the API did not answer at {self.url}")

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    local = load_settings()
    url = local.elasticsearch.hosts[0]
    settings = settings_for(url, os.environ.get("SOCPIPE_CONSOLE_PREFIX", "console-dev"))
    seeded = seed(settings)
    port = os.environ.get("SOCPIPE_CONSOLE_PORT")
    with ConsoleServer(settings, port=int(port) if port else None) as server:
        print(f"console: {server.url}  ({seeded.alerts} alerts)")
        for name, (role, agency) in USERS.items():
            print(f"  {name:12} {role.value:14} {agency or ''}  password: {PASSWORD}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
