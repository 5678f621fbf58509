"""Stage counters: hour buckets, cumulative messages, what is sent again, thread safety."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.checks import FailedPasswordCheck
from detectors.correlator import CorrelateHandler
from detectors.normalize import Normalizer
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_hunter
from detectors.worker import RawRecordHandler
from socpipe.counters import (
    STAGE_COUNTERS_KIND,
    CounterPublisher,
    StageCounters,
    StageCountersMessage,
    hour_start,
)
from socpipe.deadletter import DeadLetterWriter
from socpipe.records import KIND_HEADER, AgencyRef, CollectorRef, RawBatch, RawRecord, SourceRef
from socpipe.settings import Tier
from tests.support.kafka_double import InMemoryProducer, Message

H0 = 1_795_000_000 // 3600 * 3600  # the start of an hour
A, B = "so-tai-chinh", "phuong-phuc-xa"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counts_of(message: StageCountersMessage) -> dict[tuple[str, int], dict[str, int]]:
    return {(e.agency, int(e.hour.timestamp())): dict(e.counts) for e in message.hours}


def test_counts_fall_in_the_utc_hour_they_were_made() -> None:
    clock = Clock(H0 + 3599)
    counters = StageCounters("detect", "d1", clock)
    counters.add(A, "received", 3)
    clock.now = H0 + 3600  # the next hour begins
    counters.add(A, "received")
    counters.add(B, "parsed", 2)

    assert counters.value(A, "received", datetime.fromtimestamp(H0, UTC)) == 3
    assert counters.value(A, "received") == 1
    assert counters.value(B, "parsed") == 2
    message = counters.snapshot()
    assert message is not None
    assert counts_of(message) == {
        (A, H0): {"received": 3},
        (A, H0 + 3600): {"received": 1},
        (B, H0 + 3600): {"parsed": 2},
    }
    assert all(e.hour.tzinfo is not None and e.hour.minute == 0 for e in message.hours)
    assert hour_start(H0 + 1234.5) == H0


def test_messages_are_cumulative_and_hold_only_what_changed() -> None:
    clock = Clock(H0 + 10)
    counters = StageCounters("detect", "d1", clock)
    counters.add(A, "received", 5)
    counters.add(B, "received", 1)
    first = counters.snapshot()
    assert first is not None and first.seq == 1
    assert counters.snapshot() is None  # nothing changed since

    counters.add(A, "received", 2)
    counters.add(A, "detected")
    second = counters.snapshot()
    assert second is not None and second.seq == 2
    # A's hour whole (7, not 2 more); B's hour did not change, so it is not sent again.
    assert counts_of(second) == {(A, H0): {"received": 7, "detected": 1}}
    everything = counters.snapshot(everything=True)
    assert everything is not None
    assert counts_of(everything) == {
        (A, H0): {"received": 7, "detected": 1},
        (B, H0): {"received": 1},
    }
    assert second.started == first.started and second.instance == "d1" and second.stage == "detect"


def test_hours_not_delivered_go_out_again_and_old_hours_are_forgotten_once_sent() -> None:
    clock = Clock(H0 + 10)
    counters = StageCounters("detect", "d1", clock, keep_hours=2)
    counters.add(A, "received", 4)
    lost = counters.snapshot()
    assert lost is not None
    counters.unsent(lost)
    clock.now = H0 + 3 * 3600  # three hours later: the old hour is kept until it is sent
    again = counters.snapshot()
    assert again is not None and counts_of(again) == {(A, H0): {"received": 4}}
    assert counters.snapshot(everything=True) is None  # sent, then forgotten
    assert counters.value(A, "received", datetime.fromtimestamp(H0, UTC)) == 0


def test_unknown_measures_and_negative_counts_are_refused() -> None:
    counters = StageCounters("detect", "d1")
    with pytest.raises(ValueError, match="unknown measure"):
        counters.add(A, "collected")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only grow"):
        counters.add(A, "received", -1)
    counters.add(A, "received", 0)
    assert counters.snapshot() is None


def test_adds_from_many_threads_while_another_snapshots_lose_nothing() -> None:
    counters = StageCounters("detect", "d1", Clock(H0 + 5))
    seen: list[StageCountersMessage] = []
    done = threading.Event()

    def publish() -> None:
        while not done.is_set():
            message = counters.snapshot()
            if message is not None:
                seen.append(message)

    def work(agency: str) -> None:
        for _ in range(20_000):
            counters.add(agency, "received")

    publisher = threading.Thread(target=publish)
    publisher.start()
    workers = [threading.Thread(target=work, args=(agency,)) for agency in (A, B, A, B)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    publisher.join()
    last = counters.snapshot(everything=True)
    assert last is not None
    assert counts_of(last) == {(A, H0): {"received": 40_000}, (B, H0): {"received": 40_000}}
    # Every message was cumulative: counts never went down from one to the next.
    latest: dict[str, int] = {}
    for message in seen:
        for entry in message.hours:
            assert entry.counts["received"] >= latest.get(entry.agency, 0)
            latest[entry.agency] = entry.counts["received"]


class FailingProducer(InMemoryProducer):
    failures: int = 1

    def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("Kafka is away")
        return super().send(topic, *args, **kwargs)


def test_the_publisher_sends_on_soc_heartbeats_with_its_key_and_kind_and_resends() -> None:
    counters = StageCounters("correlate", "correlator-1", Clock(H0 + 5))
    producer = FailingProducer()
    tick = Clock(0.0)
    publisher = CounterPublisher(counters, producer, "soc.heartbeats", interval_s=10, clock=tick)  # type: ignore[arg-type]
    counters.add(A, "detected", 2)
    assert publisher.publish_if_due()  # not due yet: nothing sent
    assert "soc.heartbeats" not in producer.sent
    tick.now = 10.0
    assert not publisher.publish_if_due()  # due, but Kafka did not take it
    counters.add(A, "detected")
    assert publisher.publish()
    (message,) = producer.sent["soc.heartbeats"]
    assert message.key == b"stage/correlate/correlator-1"
    assert (KIND_HEADER, STAGE_COUNTERS_KIND) in message.headers
    decoded = StageCountersMessage.from_json(message.value)
    assert counts_of(decoded) == {(A, H0): {"detected": 3}}  # what failed went with it
    assert publisher.published == 1


def test_stopping_the_publisher_thread_sends_what_is_left() -> None:
    counters = StageCounters("detect", "d1", Clock(H0 + 5))
    producer = InMemoryProducer()
    publisher = CounterPublisher(counters, producer, "hb", interval_s=3600)  # type: ignore[arg-type]
    publisher.start()
    counters.add(B, "dead_lettered")
    assert publisher.stop()
    (message,) = producer.sent["hb"]
    assert counts_of(StageCountersMessage.from_json(message.value)) == {
        (B, H0): {"dead_lettered": 1}
    }


# --- the stages' hooks (detectors.worker, detectors.correlator) ---------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "detectors" / "sigma" / "data" / "correlation"
LINE = "Nov 27 09:59:01 ubnd-phucxa-srv sshd[811]: "


def raw(agency: str, position: int, line: str) -> RawRecord:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    return RawRecord(
        id=RawRecord.make_id("c1", source, "1:2", position),
        agency=AgencyRef(id=agency, tier=Tier.COMMUNE),
        collector=CollectorRef(id="c1", version="0.1.0"),
        host="ubnd-phucxa-srv",
        source=source,
        received=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
        position=position,
        message=line,
    )


def test_the_detector_counts_what_it_received_parsed_detected_and_dead_lettered() -> None:
    producer = InMemoryProducer()
    counters = StageCounters("detect", "d1", Clock(H0 + 5))
    handler = RawRecordHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "detect"),  # type: ignore[arg-type]
        events_topic="events",
        detections_topic="detections",
        checks=[FailedPasswordCheck()],
        normalizer=Normalizer(),
        counters=counters,
    )
    topic = f"soc.raw.{B}"
    good = RawBatch(
        records=[
            raw(B, 0, LINE + "Failed password for root from 203.0.113.9 port 4242 ssh2"),
            raw(B, 1, LINE + "Accepted publickey for an from 10.0.0.5 port 5000 ssh2"),
            raw(B, 2, "this line is not syslog at all"),
        ]
    )
    unreadable = orjson.dumps({"records": [{"id": 1}, {"id": 2}]})  # two records, both broken
    spoofed = RawBatch(records=[raw(A, 3, LINE + "Accepted password for x")])
    beat = orjson.dumps({"agency": {"id": B}, "collector": {"id": "c1"}, "sources": []})
    handler(
        [
            Message(topic, 0, 1, b"k", good.to_json()),
            Message(topic, 0, 2, b"k", unreadable),
            Message(topic, 0, 3, b"k", spoofed.to_json()),
            Message(topic, 0, 4, b"k", beat, ((KIND_HEADER, b"heartbeat"),)),
        ]
    )
    message = counters.snapshot()
    assert message is not None
    # The spoofed record counts for the agency whose topic it came on, not the one it claims.
    assert counts_of(message) == {
        (B, H0): {
            "received": 3 + 2 + 1,
            "parsed": 2,
            "unparsed": 1,
            "detected": 1,
            "dead_lettered": 2 + 1,
        }
    }
    (passed,) = producer.sent["soc.heartbeats"]
    assert (KIND_HEADER, b"heartbeat") in passed.headers


def test_the_correlator_counts_the_detections_it_sends_and_what_it_dead_letters(
    tmp_path: Path,
) -> None:
    for name in ("base_rules.yml", "sshd_brute_force.yml"):
        (tmp_path / name).write_bytes((FIXTURES / name).read_bytes())
    hunter = build_hunter([tmp_path])
    detector = SigmaDetector(hunter.engine, "v1", hunter.correlations, hunter.keys)
    normalizer = Normalizer()
    messages = []
    for n in range(5):
        line = (
            f"Nov 27 10:00:{n:02d} h sshd[1]: Failed password for root from 203.0.113.5 port 1 ssh2"
        )
        normalized = normalizer.normalize(raw("so-tttt", n, line))
        detector.evaluate(normalized.event, normalized.document)  # which candidates it makes
        for key, value in detector.candidates(normalized.document):
            messages.append(Message("soc.correlate", 0, len(messages), key, value))
    broken = orjson.dumps({"c": "x", "event": {"organization": {"id": "so-tttt"}}})
    messages.append(Message("soc.correlate", 0, len(messages), b"k", broken))
    producer = InMemoryProducer()
    counters = StageCounters("correlate", "c1", Clock(H0 + 5))
    CorrelateHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "correlate"),  # type: ignore[arg-type]
        detections_topic="detections",
        detector=detector,
        counters=counters,
    )(messages)
    assert len(producer.sent["detections"]) == 1
    assert counters.value("so-tttt", "detected") == 1
    assert counters.value("so-tttt", "dead_lettered") == 1
