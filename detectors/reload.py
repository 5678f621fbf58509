"""Hot reload: detectors follow the rule set in force on ``soc.rules`` without stopping.

``RuleSetWatcher`` reads the compacted ``soc.rules`` topic (``socpipe rules publish`` writes it)
in a thread of its own. Each new bundle is unpacked into a folder per version, loaded and
compiled there, in the background, while the detector goes on with the rules it has. A bundle
that loads is handed over by :meth:`RuleSetWatcher.take`, which the detector calls between
batches: a batch is judged by one rule set from its first record to its last, so no event is
lost or matched twice by a swap, and every detection carries the version that judged it. A
bundle that fails to load (a load error, a rule that does not compile) is rejected with its
errors; the previous set keeps running.

At start the detector waits for the rule set in force (the last record of ``soc.rules``), if
there is one; only when the topic holds none does it run ``detector.rules_paths``. Each state
change (running a version, rejecting one) is published on ``soc.heartbeats`` under the
detector's id, which ``socpipe rules status`` reads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from detectors.sigma.bundle import BundleError, prune, refusals, unpack
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.hunt import build_hunter
from socpipe.kafka import client_options
from socpipe.records import utcnow
from socpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

STATUS_KIND = "detector-rules"
# A bundle is one record of up to bundle.MAX_BUNDLE_BYTES.
_FETCH_BYTES = 64 * 1024 * 1024


@dataclass
class RuleSetState:
    """What a detector runs, and what it last refused."""

    version: str | None = None
    source: str = "none"  # "soc.rules", "rules_paths" or "none"
    rules: int = 0
    rejected: dict[str, Any] = field(default_factory=dict)


class CompactedFollower:
    """Reads a compacted one-partition topic from its start, then follows it in a thread of its
    own, handing each polled stretch of records to :meth:`arrived` (subclasses load them)."""

    thread_name = "topic-follower"

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        publish_status: Callable[[dict[str, Any]], None] | None = None,
        poll_timeout_ms: int = 1000,
    ) -> None:
        self.kafka = kafka
        self.publish_status = publish_status
        self.poll_timeout_ms = poll_timeout_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._partition = TopicPartition(topic, 0)

    def start(self) -> None:
        """Follow the topic from here on, in a daemon thread."""
        self._thread = threading.Thread(target=self._follow, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the thread ends within a poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._consumer is not None:
            self._consumer.close()

    def arrived(self, records: list[Any]) -> None:
        """Records read by the thread, in order (tombstones included)."""
        raise NotImplementedError

    def report(self, status: dict[str, Any]) -> None:
        """Publish ``status`` (with this process's host, pid and the time) through
        ``publish_status``; a failure is logged: status is for people, the work goes on."""
        if self.publish_status is None:
            return
        try:
            self.publish_status(
                {**status, "host": os.uname().nodename, "pid": os.getpid(), "at": _now()}
            )
        except Exception:
            log.exception("could not publish the status of %s", self._partition.topic)

    def _open(self) -> KafkaConsumer:
        if self._consumer is None:
            options = client_options(self.kafka)
            options.update(
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=_FETCH_BYTES,
                fetch_max_bytes=_FETCH_BYTES,
            )
            consumer = KafkaConsumer(**options)
            consumer.assign([self._partition])
            consumer.seek_to_beginning(self._partition)
            self._consumer = consumer
        return self._consumer

    def read_to_end(self, timeout_s: float) -> list[Any]:
        """Every record from the start of the topic to its end now (compaction keeps the last
        one per key)."""
        consumer = self._open()
        end = consumer.end_offsets([self._partition])[self._partition]
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while consumer.position(self._partition) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self._partition.topic} not read to its end within {timeout_s:.0f}s"
                )
            for records in consumer.poll(timeout_ms=self.poll_timeout_ms).values():
                found.extend(records)
        return found

    def _follow(self) -> None:
        consumer = self._open()
        while not self._stop.is_set():
            try:
                batches = consumer.poll(timeout_ms=self.poll_timeout_ms)
            except Exception:  # a broker hiccup must not kill the watcher: try again
                log.exception("reading %s failed; retrying", self._partition.topic)
                self._stop.wait(5.0)
                continue
            records = [record for batch in batches.values() for record in batch]
            if records:
                self.arrived(records)


class RuleSetWatcher(CompactedFollower):
    """Follows ``soc.rules``; loads bundles in the background; swaps between batches."""

    thread_name = "rules-watcher"

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        unpack_dir: Path,
        publish_status: Callable[[dict[str, Any]], None] | None = None,
        poll_timeout_ms: int = 1000,
    ) -> None:
        super().__init__(
            kafka,
            kafka.topics.rules,
            publish_status=publish_status,
            poll_timeout_ms=poll_timeout_ms,
        )
        self.unpack_dir = unpack_dir
        self.state = RuleSetState()
        self._lock = threading.Lock()
        self._pending: SigmaDetector | None = None

    # --- the detector's side ------------------------------------------------------------------

    def initial(self, timeout_s: float = 60.0) -> SigmaDetector | None:
        """The rule set in force, if ``soc.rules`` holds one (waiting for it to load), else
        None; rejected when it does not load (the caller then runs its configured rules)."""
        latest = _last_value(self.read_to_end(timeout_s))
        if latest is None:
            return None
        return self.load(latest)

    def take(self) -> SigmaDetector | None:
        """The newly loaded rule set, once; None when there is none since the last call."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def running(self, version: str, source: str, rules: int) -> None:
        """Record (and publish) that the detector now runs ``version``."""
        self.state.version, self.state.source, self.state.rules = version, source, rules
        self._publish()

    # --- the watcher's thread -----------------------------------------------------------------

    def arrived(self, records: list[Any]) -> None:
        latest = _last_value(records)
        if latest is not None:
            self.offer(latest)

    def offer(self, data: bytes) -> None:
        """Load a bundle and, when it loads, queue it for :meth:`take` (the thread's step)."""
        detector = self.load(data)
        if detector is not None:
            with self._lock:
                self._pending = detector

    def load(self, data: bytes) -> SigmaDetector | None:
        """Unpack, load and compile a bundle; None (and a published rejection) if it fails."""
        started = time.monotonic()
        try:
            unpacked = unpack(data, self.unpack_dir)
        except BundleError as error:
            self._reject("unknown", [str(error)])
            return None
        if unpacked.version == self.state.version:
            return None  # the set already running (a restart of the watcher re-reads it)
        try:
            hunter = build_hunter(unpacked.rules, unpacked.placeholders, unpacked.pipelines)
        except Exception as error:  # a pipeline file that does not load, among others
            self._reject(unpacked.version, [f"{type(error).__name__}: {error}"])
            return None
        report = hunter.report
        problems = refusals(report)
        if problems:
            self._reject(unpacked.version, problems)
            return None
        prune(self.unpack_dir, {unpacked.version, self.state.version or ""})
        log.info(
            "rule set %s loaded in %.1fs: %d rules compiled, %d left out (placeholders)",
            unpacked.version,
            time.monotonic() - started,
            report.compiled,
            report.failed,
        )
        return SigmaDetector(hunter.engine, unpacked.version, hunter.correlations, hunter.keys)

    def _reject(self, version: str, errors: list[str]) -> None:
        log.error(
            "rule set %s rejected, %s keeps running: %s",
            version,
            self.state.version or "the configured set",
            "; ".join(errors[:5]),
        )
        self.state.rejected = {"version": version, "errors": errors[:50], "at": _now()}
        self._publish()

    def _publish(self) -> None:
        self.report(
            {
                "kind": STATUS_KIND,
                "version": self.state.version,
                "source": self.state.source,
                "rules": self.state.rules,
                "rejected": self.state.rejected or None,
            }
        )


def _last_value(records: list[Any]) -> bytes | None:
    """The value of the last record that has one (the bundle in force)."""
    for record in reversed(records):
        if record.value is not None:
            return bytes(record.value)
    return None


def rules_in(detector: SigmaDetector) -> int:
    """How many rules a detector's engine holds."""
    return detector.engine.rule_count


def _now() -> str:
    return utcnow().isoformat()


def status_value(name: str, status: dict[str, Any], *, role: str = "detector") -> bytes:
    """A status record's value: the status with the name of the process that sends it, under
    ``role`` (``detector``, ``scorer``)."""
    return orjson.dumps({role: name, **status})


__all__ = [
    "STATUS_KIND",
    "CompactedFollower",
    "RuleSetState",
    "RuleSetWatcher",
    "rules_in",
    "status_value",
]
