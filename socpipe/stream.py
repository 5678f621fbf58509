"""The consume → handle → acknowledge → commit loop that every Kafka-fed stage runs.

At-least-once: offsets are committed only after everything the batch produced (to the next topic,
to the DLQ, or to Elasticsearch) was acknowledged. A crash before the commit replays the batch;
deterministic ids downstream make the replay harmless.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError

log = logging.getLogger(__name__)

# A batch handler gets the polled records (kafka-python ConsumerRecord objects) and returns the
# send futures it created; the loop waits for all of them before committing.
BatchHandler = Callable[[Sequence[Any]], list[Any]]


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a worker finishes its batch and stops cleanly."""
    stop = threading.Event()

    def _handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


class StreamLoop:
    """Polls a consumer, hands batches to a handler, waits for acks, then commits."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        handler: BatchHandler,
        *,
        max_records: int = 500,
        poll_timeout_ms: int = 500,
        ack_timeout_s: float = 60.0,
        idle: Callable[[], list[Any]] | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.handler = handler
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.ack_timeout_s = ack_timeout_s
        # Called when a poll brings nothing (a stage whose work also depends on the clock, as
        # windows closing when their agency falls silent); its sends are waited for as well.
        self.idle = idle
        self.batches = 0
        self.records = 0

    def run_once(self) -> int:
        """One poll-handle-ack-commit round; returns how many records it handled."""
        polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
        records = [record for batch in polled.values() for record in batch]
        if not records:
            if self.idle is not None:
                self._wait(self.idle())
            return 0
        self._wait(self.handler(records))
        try:
            self.consumer.commit()
        except CommitFailedError as error:
            # The group moved the partitions on while the handler waited (a long outage of
            # what it writes to): whoever owns them now reads the batch again, harmlessly.
            log.warning("offsets not committed, the group rebalanced: %s", error)
            return len(records)
        self.batches += 1
        self.records += len(records)
        return len(records)

    def _wait(self, futures: list[Any]) -> None:
        """Flush, then wait for every send: raises the KafkaError of a failed one (the batch
        is then not committed)."""
        self.producer.flush(timeout=self.ack_timeout_s)
        for future in futures:
            future.get(timeout=self.ack_timeout_s)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; closes the consumer and producer on the way out."""
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            log.info("stopping: %d records in %d batches", self.records, self.batches)
            self.consumer.close(autocommit=False)
            self.producer.flush(timeout=self.ack_timeout_s)
            self.producer.close(timeout=self.ack_timeout_s)
