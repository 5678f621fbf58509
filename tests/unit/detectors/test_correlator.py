"""The correlator's handler: candidates from detectors become one correlation detection; a
replayed stretch rebuilds state without sending again; a bad record goes to the DLQ."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from detectors.correlator import CorrelateHandler
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_hunter
from socpipe.deadletter import DeadLetterWriter
from socpipe.records import DeadLetter, Detection, RawRecord, SourceRef
from tests.support.kafka_double import InMemoryProducer, Message

FIXTURES = Path(__file__).resolve().parent / "sigma" / "data" / "correlation"


def _detector(tmp_path: Path, correlation: str = "sshd_brute_force.yml") -> SigmaDetector:
    for name in ("base_rules.yml", correlation):
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    hunter = build_hunter([tmp_path])
    assert hunter.correlations is not None
    return SigmaDetector(hunter.engine, "v1", hunter.correlations, hunter.keys)


def _messages(
    detector: SigmaDetector, count: int, *, ip: str = "113.160.12.9", minute: int = 0
) -> list[Message]:
    normalizer = Normalizer()
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    messages = []
    for n in range(count):
        raw = RawRecord(
            id=f"r{n}",
            agency={"id": "so-tttt", "tier": "province"},  # type: ignore[arg-type]
            collector={"id": "c", "version": "0"},  # type: ignore[arg-type]
            host="dvc-portal-01",
            source=source,
            received=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
            position=n,
            message=f"Nov 27 10:{minute:02d}:{n:02d} dvc-portal-01 sshd[{n}]: "
            f"Failed password for root from {ip} port {4000 + n} ssh2",
        )
        normalized = normalizer.normalize(raw)
        assert detector.evaluate(normalized.event, normalized.document) == []  # quiet rule
        for key, value in detector.candidates(normalized.document):
            messages.append(Message("soc.correlate", 0, len(messages), key, value))
    return messages


def _handler(detector: SigmaDetector, producer: InMemoryProducer) -> CorrelateHandler:
    return CorrelateHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "correlate"),  # type: ignore[arg-type]
        detections_topic="detections",
        detector=detector,
    )


def test_candidates_of_five_failures_make_one_correlation_detection(tmp_path: Path) -> None:
    detector = _detector(tmp_path)
    messages = _messages(detector, 6)
    assert len(messages) == 6  # one state per event: the correlation and its group
    producer = InMemoryProducer()
    handler = _handler(detector, producer)
    handler(messages[:3])
    assert "detections" not in producer.sent
    handler(messages[3:])
    (sent,) = producer.sent["detections"]
    detection = Detection.from_json(sent.value)
    assert detection.detector.type == "correlation" and detection.detector.version == "v1"
    assert detection.rule.title == "SSH brute force from one source"
    assert detection.entities.source_ip == "113.160.12.9"
    assert detection.entities.agency == "so-tttt"
    assert detection.event_ids == [f"r{n}" for n in range(5)]


def test_a_replayed_stretch_rebuilds_state_without_sending(tmp_path: Path) -> None:
    detector = _detector(tmp_path)
    messages = _messages(detector, 7)
    producer = InMemoryProducer()
    handler = _handler(detector, producer)
    handler.replay_until[0] = 5  # committed before a restart: its hit was sent already
    handler(messages[:5])
    assert "detections" not in producer.sent
    handler(messages[5:])  # the sixth and seventh start a new window: no hit yet
    assert "detections" not in producer.sent


def test_a_record_that_is_not_a_candidate_goes_to_the_dlq(tmp_path: Path) -> None:
    producer = InMemoryProducer()
    handler = _handler(_detector(tmp_path), producer)
    futures = handler([Message("soc.correlate", 2, 9, b"k", b'{"c": "x"}')])
    assert len(futures) == 1
    letter = DeadLetter.from_json(producer.sent["dlq"][0].value)
    assert letter.stage == "correlate" and "soc.correlate/2@9" in letter.reason


def test_a_window_decided_at_its_end_closes_when_later_events_move_the_clock(
    tmp_path: Path,
) -> None:
    detector = _detector(tmp_path, "exactly_three.yml")
    first = _messages(detector, 3)
    later = _messages(detector, 1, ip="14.232.10.8", minute=20)  # another group, 20 min on
    later = [Message(m.topic, m.partition, 3, m.key, m.value) for m in later]
    producer = InMemoryProducer()
    handler = _handler(detector, producer)
    handler(first)
    assert "detections" not in producer.sent  # eq 3: only known when the window is over
    handler(later)
    (sent,) = producer.sent["detections"]
    detection = Detection.from_json(sent.value)
    assert detection.rule.title == "Exactly three SSH failures"
    assert detection.entities.source_ip == "113.160.12.9"
    assert detection.entities.agency == "so-tttt"  # from the group's own last event
