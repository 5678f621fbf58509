"""The collector's shipper: sources' records to Kafka, through the disk spool while Kafka is away.

Sources ``offer`` records (``collectors.base.Sink``). The offer encodes them at once into RawBatch
messages of at most ``batch_max_bytes`` and queues them; one thread ships the queue in order.

- **Direct**: each message is sent (acks=all, idempotent producer, lz4 or zstd); when Kafka
  acknowledged it, the source's ``on_durable`` runs (a file source moves its checkpoint then).
- **Away**: a message not acknowledged within ``ack_timeout_s``, or failed, means Kafka is away.
  The producer is closed at once (so it cannot deliver late what is about to be spooled), the
  unacknowledged messages and all that follow are appended to the spool (``on_durable`` runs once
  they are on disk), and the spool is drained, oldest first, whenever Kafka answers again. New
  messages keep going to the spool until it is empty, so the topic sees them in the order read.
- **Full**: while the spool cannot take more, the queue stops emptying; ``offer`` then waits (file
  sources stop reading: backpressure) or, with ``timeout=0``, refuses (UDP counts a drop).

Delivery is at-least-once: a message whose acknowledgement was lost with the connection is sent
again from the spool. Its records keep their ids, so the repeat is recognisable downstream.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaConfigurationError, MessageSizeTooLargeError

from collectors.base import DurableCallback, RecordDict, SourceStats
from collectors.spool import Spool, SpoolEntry
from socpipe.records import KIND_HEADER, RAW_KIND

log = logging.getLogger(__name__)

SOURCE_HEADER = "socpipe-source"
COUNT_HEADER = "socpipe-records"
_BATCH_PREFIX = b'{"v":1,"records":'

ProducerFactory = Callable[[], KafkaProducer]


@dataclass(slots=True)
class _Message:
    """One Kafka message waiting to be shipped, and whom to tell when it is durable."""

    value: bytes
    headers: list[tuple[str, bytes]]
    stats: SourceStats | None
    records: int
    callbacks: list[DurableCallback] = field(default_factory=list)


@dataclass(slots=True)
class _InFlight:
    message: _Message
    future: Any
    sent_at: float


def _batch(records: list[RecordDict], common: RecordDict | None) -> bytes:
    """A RawBatch message: the records, and what they share stated once (``common``)."""
    if common is None:
        return _BATCH_PREFIX + orjson.dumps(records) + b"}"
    return orjson.dumps({"v": 1, "common": common, "records": records})


def force_close(producer: KafkaProducer) -> None:
    """Close ``producer`` without letting it send anything more.

    kafka-python's ``close(timeout=0)`` flushes first and raises while records are pending, which
    leaves its sender thread running: it could still deliver, late, what the shipper is about to
    spool, and that would be sent twice. So its sender is stopped without sending (its pending
    records fail), and only then is the producer closed.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(5)
    try:
        producer.close(timeout=0)
    except Exception as exc:
        log.debug("closing the producer after stopping its sender: %s", exc)
        # Closed as far as it matters: keep its __del__ from trying (and failing) again.
        producer._closed = True


class Shipper:
    """Ships offered records to ``topic`` in order, spooling while Kafka is away (a Sink)."""

    def __init__(
        self,
        *,
        producer_factory: ProducerFactory,
        spool: Spool,
        topic: str,
        key: bytes,
        batch_max_bytes: int,
        ack_timeout_s: float,
        max_queue_bytes: int = 64 * 1024 * 1024,
        max_in_flight: int = 8,
        retry_s: float = 1.0,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        self._factory = producer_factory
        # A quick look whether Kafka could answer at all, before a drain risks blocking on it.
        self._probe = probe
        self._spool = spool
        self.topic = topic
        self.key = key
        self.batch_max_bytes = batch_max_bytes
        self.ack_timeout_s = ack_timeout_s
        self.max_queue_bytes = max_queue_bytes
        self.max_in_flight = max_in_flight
        self.retry_s = retry_s
        self._queue: deque[_Message] = deque()
        self._queue_bytes = 0
        self._cond = threading.Condition()
        self._in_flight: deque[_InFlight] = deque()
        self._producer: KafkaProducer | None = None
        # Direct while the spool is empty and Kafka answers; otherwise everything is spooled.
        self._away = not spool.empty
        self._next_try = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stats_by_name: dict[str, SourceStats] = {}
        self._spool_full = False
        # Bytes per spool append: one fsync each, and always well within the spool's bound.
        self._spool_chunk = min(8 * 1024 * 1024, spool.max_bytes // 4)
        self.kafka_error: str | None = None
        # A producer that cannot even be configured: no outage, a mistake; the collector stops.
        self.fatal: str | None = None

    # --- the Sink side ---------------------------------------------------------------------------

    def offer(
        self,
        stats: SourceStats,
        records: list[RecordDict],
        on_durable: DurableCallback | None = None,
        timeout: float | None = None,
        common: RecordDict | None = None,
    ) -> bool:
        """Queue ``records`` for shipping (see ``collectors.base.Sink.offer``)."""
        if not records:
            if on_durable is not None:
                on_durable()
            return True
        self._stats_by_name.setdefault(stats.name, stats)
        messages = [
            _Message(value, self._headers(stats.name, count), stats, count)
            for value, count in self._encode(records, common)
        ]
        if on_durable is not None:
            messages[-1].callbacks.append(on_durable)
        size = sum(len(m.value) for m in messages)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue_bytes + size > self.max_queue_bytes and self._queue:
                if self._stopping:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))
            self._queue.extend(messages)
            self._queue_bytes += size
            self._cond.notify_all()
        return True

    def accepting(self) -> bool:
        """Whether an offer of a full batch would be taken now without waiting."""
        return self._queue_bytes + self.batch_max_bytes <= self.max_queue_bytes

    def wait_accepting(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until a full batch would be taken; whether it would."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.accepting() and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return self.accepting()

    def send_control(self, kind: bytes, value: bytes) -> bool:
        """Queue a message of another kind (a heartbeat) in order with the records; False if the
        collector is full (a heartbeat is then skipped: the next one says the same and more)."""
        message = _Message(value, [(KIND_HEADER, kind)], None, 0)
        with self._cond:
            if self._queue_bytes + len(value) > self.max_queue_bytes:
                return False
            self._queue.append(message)
            self._queue_bytes += len(value)
            self._cond.notify_all()
        return True

    # --- state -------------------------------------------------------------------------------

    @property
    def away(self) -> bool:
        """Whether Kafka is taken to be away (messages go to the spool)."""
        return self._away

    @property
    def spool(self) -> Spool:
        return self._spool

    def queued_bytes(self) -> int:
        """Bytes offered but not yet sent or spooled."""
        return self._queue_bytes

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the shipping thread."""
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ship or spool everything queued, wait for acknowledgements up to ``timeout``, spool what
        is still unacknowledged, close the producer. True when nothing was left undecided."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            alive = self._thread.is_alive()
        else:
            alive = False
        return not alive and not self._queue and not self._in_flight

    def _run(self) -> None:
        while True:
            with self._cond:
                idle = not self._queue and not self._in_flight
                if idle and self._stopping:
                    break
                if idle or (self._away and self._spool_full):
                    # Nothing to do, or nowhere to put it: wait for an offer or the next try.
                    self._cond.wait(0.05)
            try:
                self._step()
            except Exception:  # never let the thread die: nothing would ship any more
                log.exception("shipper step failed; retrying")
                time.sleep(self.retry_s)
            if self._stopping and self._away and self._spool_full:
                log.warning(
                    "stopping with %d bytes that neither Kafka nor the full spool took; "
                    "file sources read them again after the restart",
                    self._queue_bytes,
                )
                break
        self._close_producer(graceful=not self._away)

    def _step(self) -> None:
        self._collect_acks()
        if self._away:
            # Queued messages join the spool's tail first, so the topic keeps the order read.
            self._spool_queue()
            if time.monotonic() >= self._next_try and not self._stopping:
                self._drain_once()
            return
        while self._queue and len(self._in_flight) < self.max_in_flight:
            message = self._pop()
            if not self._send(message):
                return
        if self._in_flight:
            # Wait briefly on the oldest: acknowledgements come back in order.
            oldest = self._in_flight[0]
            # Its outcome is looked at in _collect_acks.
            with contextlib.suppress(Exception):
                oldest.future.get(timeout=0.005 if self._queue else 0.05)
            self._collect_acks()

    def _pop(self) -> _Message:
        with self._cond:
            message = self._queue.popleft()
            self._queue_bytes -= len(message.value)
            self._cond.notify_all()
            return message

    def _send(self, message: _Message) -> bool:
        producer = self._ensure_producer()
        if producer is None:
            self._go_away([message], self.kafka_error or "cannot connect")
            return False
        try:
            future = producer.send(
                self.topic, key=self.key, value=message.value, headers=message.headers
            )
        except MessageSizeTooLargeError as exc:
            return all(self._send(part) for part in self._shrink(message, exc))
        except Exception as exc:
            self._go_away([message], f"{type(exc).__name__}: {exc}")
            return False
        self._in_flight.append(_InFlight(message, future, time.monotonic()))
        return True

    def _collect_acks(self) -> None:
        now = time.monotonic()
        while self._in_flight:
            head = self._in_flight[0]
            if head.future.is_done:
                if head.future.succeeded():
                    self._in_flight.popleft()
                    self._durable(head.message, sent=True)
                    continue
                error = head.future.exception
                if isinstance(error, MessageSizeTooLargeError):
                    # The topic takes smaller messages than this one: not an outage. Send it
                    # again cut down, with what followed it.
                    self._in_flight.popleft()
                    self._take_back(self._shrink(head.message, error), [])
                    continue
                self._go_away([], f"{type(error).__name__}: {error}")
                return
            if now - head.sent_at > self.ack_timeout_s:
                self._go_away([], f"no acknowledgement within {self.ack_timeout_s:g} s")
            return

    def _take_back(self, first: list[_Message], last: list[_Message]) -> None:
        """Close the producer without letting it send more, and put what it had not had
        acknowledged back at the front of the queue, in order, between ``first`` and ``last``."""
        self._close_producer(graceful=False)
        pending = list(first)
        while self._in_flight:
            flight = self._in_flight.popleft()
            if flight.future.is_done and flight.future.succeeded():
                self._durable(flight.message, sent=True)
            else:
                pending.append(flight.message)
        pending.extend(last)
        with self._cond:
            for message in reversed(pending):
                self._queue.appendleft(message)
                self._queue_bytes += len(message.value)

    def _shrink(self, message: _Message, error: Exception) -> list[_Message]:
        """Messages that carry what ``message`` did within a smaller limit: its records in two
        halves, or its one record cut to 64 KiB (counted and reported as truncated)."""
        batch = orjson.loads(message.value)
        records: list[RecordDict] = batch["records"]
        common: RecordDict | None = batch.get("common")
        if len(records) > 1:
            half = len(records) // 2
            parts = [records[:half], records[half:]]
        else:
            (record,) = records
            size = len(message.value)
            record = dict(record)
            record.pop("raw", None)
            if "message" in record:
                record["message"] = record["message"][: 64 * 1024]
            else:
                head = orjson.dumps(record.get("data"))[: 64 * 1024].decode("utf-8", "ignore")
                record["data"] = {"socpipe_cut": head}
            record["truncated"] = max(int(record.get("truncated") or 0), size)
            parts = [[record]]
            if message.stats is not None:
                message.stats.truncated += 1
                message.stats.error(
                    f"record {record.get('id')} ({size} bytes) is larger than Kafka takes "
                    f"({error}); shipped cut to 64 KiB"
                )
        out = [
            _Message(
                _batch(part, common),
                self._headers(message.stats.name, len(part)) if message.stats else message.headers,
                message.stats,
                len(part),
            )
            for part in parts
        ]
        out[-1].callbacks.extend(message.callbacks)
        return out

    def _durable(self, message: _Message, *, sent: bool) -> None:
        stats = message.stats
        if stats is not None:
            if sent:
                stats.sent += message.records
            else:
                stats.spooled += message.records
        for callback in message.callbacks:
            try:
                callback()
            except Exception:
                log.exception("a source's on_durable callback failed")

    def _go_away(self, extra: list[_Message], reason: str) -> None:
        """Kafka did not take a message: close the producer, spool what was not acknowledged."""
        if not self._away:
            log.warning("Kafka is away (%s): spooling to %s", reason, self._spool.directory)
        self.kafka_error = reason
        self._away = True
        self._next_try = time.monotonic() + self.retry_s
        # Back in front of the queue, in order: _spool_queue writes them first.
        self._take_back([], extra)
        self._spool_queue()

    def _spool_queue(self) -> None:
        """Move queued messages to the spool, in order, as far as it has room."""
        while self._queue:
            with self._cond:
                taken: list[_Message] = []
                size = 0
                for message in self._queue:
                    if taken and size + len(message.value) > self._spool_chunk:
                        break
                    taken.append(message)
                    size += len(message.value)
            entries = [SpoolEntry(self.key, m.value, tuple(m.headers)) for m in taken]
            if not self._spool.append(entries):
                if not self._spool_full:
                    log.warning(
                        "the spool is full (%d bytes): sources wait until Kafka is back",
                        self._spool.size_bytes,
                    )
                self._spool_full = True
                return  # the queue waits, and offers with it
            self._spool_full = False
            with self._cond:
                for _ in taken:
                    self._queue.popleft()
                self._queue_bytes -= size
                self._cond.notify_all()
            for message in taken:
                self._durable(message, sent=False)

    def _drain_once(self) -> bool:
        """Send the spool's oldest messages and acknowledge them in the spool; True if Kafka took
        them. Back to direct shipping when the spool is empty and nothing is queued before it."""
        self._next_try = time.monotonic() + self.retry_s
        if self._spool.empty:
            # Whatever is queued goes out directly, after what the spool held.
            self._back()
            return True
        if self._producer is None and self._probe is not None and not self._probe():
            # Nobody listens: no producer (its start would block), and the queue keeps moving
            # to the spool meanwhile.
            return False
        producer = self._ensure_producer()
        if producer is None:
            return False
        batch = self._spool.peek(max_entries=64, max_bytes=16 * 1024 * 1024)
        futures = []
        try:
            for _position, entry in batch:
                futures.append(
                    producer.send(
                        self.topic, key=entry.key, value=entry.value, headers=list(entry.headers)
                    )
                )
            producer.flush(timeout=self.ack_timeout_s)
            for future in futures:
                future.get(timeout=self.ack_timeout_s)
        except Exception as exc:
            self.kafka_error = f"{type(exc).__name__}: {exc}"
            log.info(
                "Kafka still away (%s); %d bytes spooled", self.kafka_error, self._spool.size_bytes
            )
            self._close_producer(graceful=False)
            return False
        if batch:
            self._spool.ack(batch[-1][0])
            for _position, entry in batch:
                self._count_drained(entry)
        # Keep draining without waiting while Kafka takes it.
        self._next_try = 0.0
        self._spool_full = False
        if self._spool.empty:
            self._back()
        return True

    def _back(self) -> None:
        if self._away:
            log.info("Kafka is back and the spool is drained: shipping directly again")
        self._away = False
        self.kafka_error = None

    def _count_drained(self, entry: SpoolEntry) -> None:
        headers = dict(entry.headers)
        name = headers.get(SOURCE_HEADER)
        count = headers.get(COUNT_HEADER)
        if name is None or count is None:
            return
        stats = self._stats_by_name.get(name.decode("utf-8", "replace"))
        if stats is not None:
            stats.sent += int(count)

    def _ensure_producer(self) -> KafkaProducer | None:
        if self._producer is None:
            try:
                self._producer = self._factory()
            except (ValueError, TypeError, KafkaConfigurationError) as exc:
                self.fatal = f"{type(exc).__name__}: {exc}"
                log.error("the Kafka producer cannot be configured: %s", self.fatal)
                self.kafka_error = self.fatal
                return None
            except Exception as exc:
                self.kafka_error = f"{type(exc).__name__}: {exc}"
                return None
        return self._producer

    def _close_producer(self, *, graceful: bool) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if graceful:
            try:
                producer.close(timeout=self.ack_timeout_s)
            except Exception as exc:
                log.debug("closing the producer: %s", exc)
        else:
            force_close(producer)

    # --- encoding ------------------------------------------------------------------------------

    def _headers(self, name: str, count: int) -> list[tuple[str, bytes]]:
        return [
            (KIND_HEADER, RAW_KIND),
            (SOURCE_HEADER, name.encode("utf-8")),
            (COUNT_HEADER, str(count).encode()),
        ]

    def _encode(
        self, records: list[RecordDict], common: RecordDict | None = None
    ) -> list[tuple[bytes, int]]:
        """RawBatch messages of at most ``batch_max_bytes`` (a single record may exceed it)."""
        value = _batch(records, common)
        if len(value) <= self.batch_max_bytes or len(records) == 1:
            return [(value, len(records))]
        half = len(records) // 2
        return self._encode(records[:half], common) + self._encode(records[half:], common)
