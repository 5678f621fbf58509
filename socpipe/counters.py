"""Stage counters for completeness accounting: what each stage did, per agency and UTC hour.

A stage process keeps a :class:`StageCounters` and calls ``add(agency, measure, n)`` as it works;
a :class:`CounterPublisher` sends the process's counts to ``soc.heartbeats`` every few seconds,
keyed ``stage/<stage>/<instance>`` with the header ``socpipe-kind: stage-counters``, where the
completeness aggregator (``alerting.completeness``, run by ``socpipe watch``) turns them into
documents per agency, hour and emitter.

The hour is the UTC hour in which the stage counted (processing time, not event time), so every
stage buckets the same way whatever clocks the agencies keep. Values are cumulative since the
process started (``started``, which with the instance names one incarnation): a message says
"this process has counted n so far in this hour", never "n more", so a message read twice or
resent changes nothing, and ``seq`` (one more per message) lets the newest one win.

Measures (see docs/completeness.md): ``received`` raw records a detector read, by the agency of
the records (of the topic for a message that is not a readable batch); ``parsed`` and
``unparsed`` the events made of them; ``detected`` detections produced, by the detection's
agency; ``indexed`` detections folded into alerts in Elasticsearch; ``events_indexed`` events
indexed for hunting; ``dead_lettered`` what the stage sent to the DLQ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from kafka import KafkaProducer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeInt

from socpipe.records import KIND_HEADER, Record

log = logging.getLogger(__name__)

Measure = Literal[
    "received", "parsed", "unparsed", "detected", "indexed", "events_indexed", "dead_lettered"
]
MEASURES: Final[tuple[Measure, ...]] = get_args(Measure)
# The KIND_HEADER value of a stage-counters message on soc.heartbeats (collector heartbeats,
# passed on by the detectors, carry records.HEARTBEAT_KIND).
STAGE_COUNTERS_KIND: Final = b"stage-counters"
HOUR_S: Final = 3600


def hour_start(moment: float) -> int:
    """The start of the UTC hour of ``moment`` (seconds since the epoch), in the same unit."""
    return int(moment // HOUR_S) * HOUR_S


def emitter_key(stage: str, instance: str) -> str:
    """The Kafka key (and completeness emitter) of one stage instance's counters."""
    return f"stage/{stage}/{instance}"


class HourCounts(BaseModel):
    """One agency's counts in one hour, cumulative for the process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: str
    hour: AwareDatetime
    counts: dict[Measure, NonNegativeInt]


class StageCountersMessage(Record):
    """What a stage instance has counted so far, for the hours that changed since its last
    message (each hour's counts whole, not a difference)."""

    v: int = 1
    kind: Literal["stage-counters"] = "stage-counters"
    stage: str = Field(min_length=1)
    instance: str = Field(min_length=1)
    started: AwareDatetime
    seq: int = Field(ge=1)
    at: AwareDatetime
    hours: list[HourCounts]


class StageCounters:
    """Counts per (agency, UTC hour, measure) for one stage instance; thread-safe.

    ``add`` is called from the stage's loop, ``snapshot`` from the publisher's thread. Hours
    older than ``keep_hours`` are forgotten once published (a stage only adds to the current
    hour, so an hour that ended is final once sent).
    """

    def __init__(
        self,
        stage: str,
        instance: str,
        clock: Callable[[], float] = time.time,
        *,
        keep_hours: int = 3,
    ) -> None:
        self.stage = stage
        self.instance = instance
        self.clock = clock
        self.keep_hours = keep_hours
        self.started = datetime.fromtimestamp(clock(), UTC)
        self._lock = threading.Lock()
        # (agency, hour start) -> measure -> count; plain dicts, this is on the hot path.
        self._counts: dict[tuple[str, int], dict[Measure, int]] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._seq = 0

    @property
    def key(self) -> str:
        """``stage/<stage>/<instance>``."""
        return emitter_key(self.stage, self.instance)

    def add(self, agency: str, measure: Measure, n: int = 1) -> None:
        """Count ``n`` more of ``measure`` for ``agency`` in the current UTC hour."""
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; known: {', '.join(MEASURES)}")
        if n < 0:
            raise ValueError(f"{measure} for {agency}: counts only grow, not by {n}")
        if n == 0:
            return
        slot = (agency, hour_start(self.clock()))
        with self._lock:
            counts = self._counts.get(slot)
            if counts is None:
                counts = self._counts[slot] = {}
            counts[measure] = counts.get(measure, 0) + n
            self._dirty.add(slot)

    def value(self, agency: str, measure: Measure, hour: datetime | None = None) -> int:
        """The count so far of ``measure`` for ``agency`` in ``hour`` (default: the current
        one)."""
        start = hour_start(hour.timestamp() if hour is not None else self.clock())
        with self._lock:
            return self._counts.get((agency, start), {}).get(measure, 0)

    def snapshot(self, *, everything: bool = False) -> StageCountersMessage | None:
        """The message to publish: every hour changed since the last snapshot (all kept hours
        with ``everything``); None when there is nothing to say. The hours it holds count as
        sent: call :meth:`unsent` with it if it could not be."""
        with self._lock:
            slots = sorted(self._counts) if everything else sorted(self._dirty)
            self._dirty.clear()
            if not slots:
                self._forget_old()
                return None
            self._seq += 1
            seq = self._seq
            hours = [
                HourCounts(
                    agency=agency,
                    hour=datetime.fromtimestamp(start, UTC),
                    counts=dict(self._counts[agency, start]),
                )
                for agency, start in slots
            ]
            self._forget_old()
        return StageCountersMessage(
            stage=self.stage,
            instance=self.instance,
            started=self.started,
            seq=seq,
            at=datetime.fromtimestamp(self.clock(), UTC),
            hours=hours,
        )

    def unsent(self, message: StageCountersMessage) -> None:
        """The hours of ``message`` were not delivered: include them in the next snapshot."""
        with self._lock:
            for entry in message.hours:
                slot = (entry.agency, int(entry.hour.timestamp()))
                if slot in self._counts:
                    self._dirty.add(slot)

    def _forget_old(self) -> None:
        # Called with the lock held.
        oldest = hour_start(self.clock()) - (self.keep_hours - 1) * HOUR_S
        for slot in [s for s in self._counts if s[1] < oldest and s not in self._dirty]:
            del self._counts[slot]


class CounterPublisher:
    """Sends a :class:`StageCounters`' changes to ``soc.heartbeats`` every ``interval_s``.

    Use ``start()``/``stop()`` for a background thread (``stop`` publishes a last time and waits
    for Kafka's acknowledgement), or call ``publish_if_due()`` from the stage's own loop. A
    message Kafka did not acknowledge is sent again, whole, with the next one. A process killed
    without ``stop`` loses at most ``interval_s`` of counts; one that crashes after publishing
    but before committing its offsets counts the replayed records again (at least once, as the
    records themselves).
    """

    def __init__(
        self,
        counters: StageCounters,
        producer: KafkaProducer,
        topic: str,
        *,
        interval_s: float = 10.0,
        ack_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = counters
        self.producer = producer
        self.topic = topic
        self.interval_s = interval_s
        self.ack_timeout_s = ack_timeout_s
        self.clock = clock
        self.published = 0
        self._next = clock() + interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, *, everything: bool = False) -> bool:
        """Send what changed and wait for the acknowledgement; False if Kafka did not take it
        (it is sent again next time)."""
        with self._lock:
            message = self.counters.snapshot(everything=everything)
            if message is None:
                return True
            headers = [(KIND_HEADER, STAGE_COUNTERS_KIND)]
            try:
                future: Any = self.producer.send(
                    self.topic,
                    key=self.counters.key.encode(),
                    value=message.to_json(),
                    headers=headers,
                )
                future.get(timeout=self.ack_timeout_s)
            except Exception as exc:  # Kafka away or slow: the counts wait for the next round
                self.counters.unsent(message)
                log.warning(
                    "stage counters of %s not published to %s (sent again next time): %s",
                    self.counters.key,
                    self.topic,
                    exc,
                )
                return False
            self.published += 1
            return True

    def publish_if_due(self) -> bool:
        """``publish()`` when ``interval_s`` has passed since the last time; True otherwise."""
        if self.clock() < self._next:
            return True
        self._next = self.clock() + self.interval_s
        return self.publish()

    def start(self) -> None:
        """Publish from a daemon thread every ``interval_s``."""
        self._thread = threading.Thread(
            target=self._run, name=f"counters-{self.counters.stage}", daemon=True
        )
        self._thread.start()

    def stop(self) -> bool:
        """Stop the thread and publish what is left; False if that last message was not
        acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ack_timeout_s + 5)
        return self.publish()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.interval_s)):
            self.publish_if_due()


__all__ = [
    "HOUR_S",
    "MEASURES",
    "STAGE_COUNTERS_KIND",
    "CounterPublisher",
    "HourCounts",
    "Measure",
    "StageCounters",
    "StageCountersMessage",
    "emitter_key",
    "hour_start",
]
