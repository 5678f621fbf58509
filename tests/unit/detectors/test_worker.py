from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from detectors.checks import FailedPasswordCheck
from detectors.metrics import DetectorMetrics
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_engine
from detectors.worker import RawRecordHandler
from socpipe.deadletter import DeadLetterWriter
from socpipe.records import (
    AgencyRef,
    DeadLetter,
    Detection,
    EcsEvent,
    RawBatch,
    RawRecord,
    SourceRef,
)
from socpipe.settings import Tier
from tests.support.kafka_double import InMemoryProducer, Message


def raw_record(position: int, line: str) -> RawRecord:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    return RawRecord(
        id=RawRecord.make_id("c1", source, "1:2", position),
        agency={"id": "phuong-phuc-xa", "tier": "commune", "name": "UBND phường Phúc Xá"},  # type: ignore[arg-type]
        collector={"id": "c1", "version": "0.1.0"},  # type: ignore[arg-type]
        host="ubnd-phucxa-srv",
        source=source,
        received=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
        position=position,
        message=line,
    )


def handler(producer: InMemoryProducer, metrics: DetectorMetrics | None = None) -> RawRecordHandler:
    return RawRecordHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "detect"),  # type: ignore[arg-type]
        events_topic="events",
        detections_topic="detections",
        checks=[FailedPasswordCheck()],
        normalizer=Normalizer(),
        metrics=metrics,
    )


PREFIX = "Nov 27 09:59:01 ubnd-phucxa-srv sshd[811]: "
LINES = [
    PREFIX + "Failed password for root from 203.0.113.9 port 4242 ssh2",
    PREFIX + "Accepted publickey for nguyễn.văn.a from 10.0.0.5 port 5000 ssh2",
    "this line is not syslog at all",
    "Nov 27 09:59:03 ubnd-phucxa-srv CRON[12]: (root) CMD (run-parts /etc/cron.hourly)",
]


def test_every_record_becomes_an_event_and_failures_become_detections() -> None:
    producer = InMemoryProducer()
    metrics = DetectorMetrics()
    batch = RawBatch(records=[raw_record(i * 100, line) for i, line in enumerate(LINES)])
    futures = handler(producer, metrics)([Message("soc.raw", 3, 41, b"k", batch.to_json())])

    assert len(futures) == 5  # 4 events, 1 detection
    events = [EcsEvent.from_json(m.value) for m in producer.sent["events"]]
    assert [e.event.outcome for e in events] == ["failure", "success", None, None]
    assert events[1].user and events[1].user.name == "nguyễn.văn.a"
    assert events[2].tags == ["unparsed"] and events[2].event.original == LINES[2]
    assert events[3].process and events[3].process.name == "CRON"
    (detection,) = [Detection.from_json(m.value) for m in producer.sent["detections"]]
    assert detection.entities.source_ip == "203.0.113.9"
    assert detection.entities.agency == "phuong-phuc-xa"
    assert producer.sent["detections"][0].key == detection.dedup_key.encode()
    assert "dlq" not in producer.sent
    assert metrics.value("phuong-phuc-xa", "syslog", "parsed") == 3
    assert metrics.value("phuong-phuc-xa", "syslog", "unparsed") == 1


def test_undecodable_message_goes_to_the_dlq_whole() -> None:
    producer = InMemoryProducer()
    metrics = DetectorMetrics()
    futures = handler(producer, metrics)(
        [
            Message("soc.raw", 0, 7, None, b"\xff\xfe garbage"),
            Message("soc.raw", 0, 8, None, orjson.dumps({"v": 1, "records": []})),
        ]
    )
    assert len(futures) == 2
    letters = [DeadLetter.from_json(m.value) for m in producer.sent["dlq"]]
    assert "soc.raw/0@7: not valid JSON" in letters[0].reason
    assert letters[0].offset == 7 and letters[1].offset == 8
    assert "records" in letters[1].reason
    assert "events" not in producer.sent
    assert metrics.value("unknown", "unknown", "dead_lettered") == 2


def test_same_input_gives_same_ids() -> None:
    first, second = InMemoryProducer(), InMemoryProducer()
    batch = RawBatch(records=[raw_record(0, LINES[0])]).to_json()
    handler(first)([Message("soc.raw", 0, 1, None, batch)])
    handler(second)([Message("soc.raw", 0, 1, None, batch)])
    assert first.sent["detections"][0].value == second.sent["detections"][0].value


class _PublishedSets:
    """A stand-in for RuleSetWatcher: hands over a queued rule set, records what runs."""

    def __init__(self) -> None:
        self.queued: list[SigmaDetector] = []
        self.running_versions: list[str] = []

    def take(self) -> SigmaDetector | None:
        return self.queued.pop(0) if self.queued else None

    def running(self, version: str, source: str, rules: int) -> None:
        self.running_versions.append(version)


def test_a_published_rule_set_takes_over_between_batches() -> None:
    rules = Path(__file__).resolve().parents[3] / "rules" / "socpipe"
    engine, _ = build_engine([rules])
    producer = InMemoryProducer()
    published = _PublishedSets()
    worker = RawRecordHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "detect"),  # type: ignore[arg-type]
        events_topic="events",
        detections_topic="detections",
        checks=[FailedPasswordCheck()],
        normalizer=Normalizer(),
        rules=published,  # type: ignore[arg-type]
    )
    batch = RawBatch(records=[raw_record(0, LINES[0])])
    worker([Message("soc.raw", 0, 1, b"k", batch.to_json())])
    (first,) = [Detection.from_json(m.value) for m in producer.sent["detections"]]
    assert first.detector.type == "check"  # nothing published yet: the foundation's check

    published.queued.append(SigmaDetector(engine, "v2"))
    worker([Message("soc.raw", 0, 2, b"k", batch.to_json())])
    second = Detection.from_json(producer.sent["detections"][-1].value)
    assert (second.detector.type, second.detector.version) == ("sigma", "v2")
    assert second.rule.title == "SSH authentication failure"
    assert published.running_versions == ["v2"]
    assert len(producer.sent["detections"]) == 2  # one rule set per batch: not matched twice


# --- agency identity: a topic speaks for one agency ---------------------------------------------


def test_records_claiming_another_agency_than_their_topic_go_to_the_dlq_whole() -> None:
    producer = InMemoryProducer()
    metrics = DetectorMetrics()
    honest = RawBatch(records=[raw_record(0, LINES[0])])
    spoofed_record = raw_record(100, LINES[0]).model_copy(
        update={"agency": AgencyRef(id="so-tai-chinh", tier=Tier.PROVINCE)}
    )
    spoofed = RawBatch(records=[raw_record(200, LINES[1]), spoofed_record])

    handler(producer, metrics)(
        [
            Message("soc.raw.phuong-phuc-xa", 0, 1, b"k", honest.to_json()),
            Message("soc.raw.phuong-phuc-xa", 0, 2, b"k", spoofed.to_json()),
        ]
    )

    # The honest batch is judged; nothing of the spoofed one is, not even its honest record.
    assert len(producer.sent["events"]) == 1
    (letter,) = [DeadLetter.from_json(m.value) for m in producer.sent["dlq"]]
    assert "so-tai-chinh" in letter.reason
    assert "soc.raw.phuong-phuc-xa" in letter.reason
    assert letter.agency == "phuong-phuc-xa"
    assert letter.offset == 2
    assert metrics.value("phuong-phuc-xa", "unknown", "spoofed") == 1


def test_records_on_the_socs_own_raw_topic_may_name_any_agency() -> None:
    producer = InMemoryProducer()
    batch = RawBatch(records=[raw_record(0, LINES[0])])
    handler(producer)([Message("soc.raw", 0, 1, b"k", batch.to_json())])
    assert len(producer.sent["events"]) == 1
    assert "dlq" not in producer.sent


def heartbeat(agency: str) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "kind": "collector",
            "agency": {"id": agency, "tier": "commune"},
            "collector": {"id": "c1", "version": "0.1.0"},
            "sources": [{"name": "file:/var/log/auth.log", "read": 5, "sent": 5}],
        }
    )


def test_heartbeats_are_passed_on_only_for_the_topics_agency() -> None:
    producer = InMemoryProducer()
    kind = (("socpipe-kind", b"heartbeat"),)
    handler(producer)(
        [
            Message("soc.raw.phuong-phuc-xa", 0, 1, b"k", heartbeat("phuong-phuc-xa"), kind),
            Message("soc.raw.phuong-phuc-xa", 0, 2, b"k", heartbeat("so-tai-chinh"), kind),
            Message("soc.raw.phuong-phuc-xa", 0, 3, b"k", b"{not json", kind),
        ]
    )
    (passed,) = producer.sent["soc.heartbeats"]
    assert passed.key == b"collector/phuong-phuc-xa/c1"
    beat = orjson.loads(passed.value)
    assert beat["via"] == "soc.raw.phuong-phuc-xa"
    assert beat["sources"][0]["sent"] == 5
    reasons = [DeadLetter.from_json(m.value).reason for m in producer.sent["dlq"]]
    assert len(reasons) == 2
    assert "claims agency so-tai-chinh" in reasons[0]
    assert "not a collector heartbeat" in reasons[1]
    assert "events" not in producer.sent
