"""The shipper with a scripted producer and the real disk spool: direct shipping, Kafka going away
and coming back, a full spool, acknowledgements that never come, batching by bytes, stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from collectors.base import SourceStats
from collectors.shipper import Shipper
from collectors.spool import Spool


class Future:
    """The part of kafka-python's FutureRecordMetadata the shipper uses."""

    def __init__(self) -> None:
        self.is_done = False
        self.exception: BaseException | None = None
        self._event = threading.Event()

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def resolve(self, exception: BaseException | None = None) -> None:
        self.exception = exception
        self.is_done = True
        self._event.set()

    def get(self, timeout: float | None = None) -> None:
        if not self._event.wait(timeout):
            raise KafkaTimeoutError("not yet")
        if self.exception is not None:
            raise self.exception


class Broker:
    """What the fake Kafka holds, and how it behaves: up, down (sends fail), or silent (sends are
    taken and never acknowledged)."""

    def __init__(self) -> None:
        self.state = "up"
        self.values: list[bytes] = []
        self.headers: list[dict[str, bytes]] = []
        self.producers = 0
        # Messages larger than this are refused as Kafka refuses them (MessageSizeTooLarge).
        self.max_message = 1 << 30

    def factory(self) -> Producer:
        if self.state == "down":
            raise KafkaTimeoutError("no broker answers")
        self.producers += 1
        return Producer(self)


class Producer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes, headers: list[Any]) -> Future:
        if len(value) > self.broker.max_message:
            raise MessageSizeTooLargeError(f"{len(value)} bytes")
        future = Future()
        if self.closed:
            future.resolve(KafkaTimeoutError("closed"))
        elif self.broker.state == "up":
            self.broker.values.append(value)
            self.broker.headers.append(dict(headers))
            future.resolve()
        elif self.broker.state == "down":
            future.resolve(KafkaTimeoutError("broker down"))
        return future  # silent: never resolved

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def records(start: int, count: int, text: str = "dòng") -> list[dict[str, Any]]:
    return [{"id": f"r{n}", "message": f"{text} {n}"} for n in range(start, start + count)]


def shipped(broker: Broker) -> list[str]:
    out = []
    for value in broker.values:
        batch = orjson.loads(value)
        out.extend(r["message"] for r in batch["records"])
    return out


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.fixture
def make(tmp_path: Path) -> Any:
    made: list[tuple[Shipper, Spool]] = []

    def build(broker: Broker, **options: Any) -> Shipper:
        spool = Spool(
            tmp_path / "spool",
            max_bytes=options.pop("spool_bytes", 64 * 1024 * 1024),
            segment_bytes=1024 * 1024,
        )
        shipper = Shipper(
            producer_factory=broker.factory,
            spool=spool,
            topic="soc.raw.x",
            key=b"x/host",
            batch_max_bytes=options.pop("batch_max_bytes", 900 * 1024),
            ack_timeout_s=options.pop("ack_timeout_s", 5.0),
            retry_s=0.05,
            **options,
        )
        shipper.start()
        made.append((shipper, spool))
        return shipper

    yield build
    for shipper, spool in made:
        shipper.stop(5)
        spool.close()


def test_records_ship_in_order_and_are_durable_after_the_ack(make: Any) -> None:
    broker = Broker()
    shipper = make(broker)
    stats = SourceStats(name="file:/var/log/auth.log")
    durable: list[int] = []
    for n in range(5):
        shipper.offer(stats, records(n * 100, 100), lambda n=n: durable.append(n))
    wait_until(lambda: len(durable) == 5)
    assert durable == [0, 1, 2, 3, 4]
    assert shipped(broker) == [f"dòng {n}" for n in range(500)]
    assert stats.sent == 500
    assert stats.spooled == 0
    assert broker.headers[0]["socpipe-kind"] == b"raw"
    assert broker.headers[0]["socpipe-records"] == b"100"


def test_kafka_away_spools_in_order_and_drains_when_it_returns(make: Any) -> None:
    broker = Broker()
    shipper = make(broker)
    stats = SourceStats(name="file:/var/log/auth.log")
    durable: list[int] = []
    shipper.offer(stats, records(0, 10), lambda: durable.append(0))
    wait_until(lambda: durable == [0])
    broker.state = "down"
    for n in range(1, 6):
        shipper.offer(stats, records(n * 10, 10), lambda n=n: durable.append(n))
    # Durable once on disk: a file source may move its checkpoint while Kafka is away.
    wait_until(lambda: len(durable) == 6)
    assert shipper.away
    assert stats.spooled == 50
    assert not shipper.spool.empty
    assert shipped(broker) == [f"dòng {n}" for n in range(10)]

    broker.state = "up"
    shipper.offer(stats, records(60, 10), lambda: durable.append(6))
    wait_until(lambda: not shipper.away and len(shipped(broker)) == 70)
    assert shipped(broker) == [f"dòng {n}" for n in range(70)]
    assert shipper.spool.empty
    assert stats.sent == 70


def test_an_ack_that_never_comes_sends_kafka_away_without_losing_the_message(make: Any) -> None:
    broker = Broker()
    shipper = make(broker, ack_timeout_s=0.2)
    stats = SourceStats(name="syslog:udp:0.0.0.0:514")
    broker.state = "silent"
    done = threading.Event()
    shipper.offer(stats, records(0, 3), done.set)
    assert done.wait(30)
    assert shipper.away
    assert stats.spooled == 3
    broker.state = "up"
    wait_until(lambda: not shipper.away)
    assert shipped(broker) == ["dòng 0", "dòng 1", "dòng 2"]


def test_a_full_spool_refuses_offers_that_cannot_wait(make: Any) -> None:
    broker = Broker()
    broker.state = "down"
    shipper = make(broker, spool_bytes=1024 * 1024, max_queue_bytes=256 * 1024)
    stats = SourceStats(name="syslog:udp:0.0.0.0:514")
    big = "x" * 2000
    taken = 0
    refused = 0
    for n in range(2000):
        if shipper.offer(stats, records(n * 10, 10, big), timeout=0):
            taken += 1
        else:
            refused += 1
        if refused > 5:
            break
    assert refused > 0
    assert not shipper.accepting()
    # Nothing taken is lost: once Kafka is back, all of it arrives, in order.
    broker.state = "up"
    wait_until(lambda: len(shipped(broker)) == taken * 10, timeout_s=60)
    assert shipped(broker) == [f"{big} {n}" for n in range(taken * 10)]


def test_batches_are_cut_by_bytes(make: Any) -> None:
    broker = Broker()
    shipper = make(broker, batch_max_bytes=64 * 1024)
    stats = SourceStats(name="file:/srv/app.log")
    done = threading.Event()
    shipper.offer(stats, records(0, 1000, "y" * 500), done.set)
    assert done.wait(30)
    assert len(broker.values) > 1
    assert all(len(v) <= 64 * 1024 for v in broker.values)
    assert shipped(broker) == [f"{'y' * 500} {n}" for n in range(1000)]


def test_stop_ships_what_was_offered(make: Any) -> None:
    broker = Broker()
    shipper = make(broker)
    stats = SourceStats(name="file:/srv/app.log")
    for n in range(20):
        shipper.offer(stats, records(n * 10, 10))
    assert shipper.stop(10)
    assert len(shipped(broker)) == 200


def test_stop_while_away_leaves_everything_in_the_spool_for_the_next_start(
    make: Any, tmp_path: Path
) -> None:
    broker = Broker()
    broker.state = "down"
    shipper = make(broker)
    stats = SourceStats(name="file:/srv/app.log")
    shipper.offer(stats, records(0, 30))
    assert shipper.stop(10)
    assert shipper.spool.entries >= 1
    shipper.spool.close()

    broker.state = "up"
    again = make(broker)
    wait_until(lambda: len(shipped(broker)) == 30)
    assert shipped(broker) == [f"dòng {n}" for n in range(30)]
    assert again.spool.empty


def test_a_message_kafka_finds_too_large_is_split_and_a_lone_record_cut_not_an_outage(
    make: Any,
) -> None:
    broker = Broker()
    broker.max_message = 100 * 1024
    shipper = make(broker)
    stats = SourceStats(name="file:/srv/app.log")
    huge = {"id": "big", "message": "z" * 300_000, "raw": "AAAA"}
    done = threading.Event()
    shipper.offer(
        stats, [*records(0, 50, "a" * 1000), huge, *records(50, 50, "a" * 1000)], done.set
    )
    assert done.wait(30)
    assert not shipper.away
    got = [r for v in broker.values for r in orjson.loads(v)["records"]]
    assert [r["id"] for r in got] == [f"r{n}" for n in range(50)] + ["big"] + [
        f"r{n}" for n in range(50, 100)
    ]
    (cut,) = [r for r in got if r["id"] == "big"]
    assert len(cut["message"]) == 64 * 1024
    assert "raw" not in cut
    assert cut["truncated"] > 300_000
    assert stats.truncated == 1
    assert stats.last_error is not None and "larger than Kafka takes" in stats.last_error
    assert stats.sent == 101
