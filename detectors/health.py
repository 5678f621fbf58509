"""``socpipe watch``: notices collectors that go silent, from their heartbeats.

Collectors send a heartbeat every ``interval_s`` (``collectors.worker``); the detectors check it
against the agency's topic and pass it on to ``soc.heartbeats``, keyed
``collector/<agency>/<collector>``. The watch reads that topic (on start, from
``lookback_s`` back, so a restart knows every collector again) and, when a collector has sent
nothing for ``silence_factor`` of its intervals (and at least ``min_silence_s``) without saying it
was stopping, writes a health record (format ``socpipe.health``, ``detectors/parsers/health.py``)
to ``soc.raw``; when it is heard again, another. The detectors turn them into events and the rule
``rules/socpipe/health/collector_silent.yml`` into an alert.

The watch also runs the completeness aggregator (``alerting.completeness``), in a thread of its
own with its own consumer of ``soc.heartbeats``: collectors' heartbeats and the stages' counters
become per agency and hour documents in Elasticsearch, and each collector's latest heartbeat one
document of the collectors' registry ``<prefix>-collectors``, which ``GET /collectors`` serves
(silent by :func:`is_silent`). When Elasticsearch is away the aggregator waits and retries
without committing, while the watch goes on judging silences.

Time is the SOC's: a heartbeat's Kafka timestamp is set when a detector passed it on, so an
agency's clock being wrong does not make its collector look silent. Record ids come from the
collector and its last heartbeat, so two watches (or a restarted one) write the same record and
alerting folds it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition

from socpipe import __version__
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import client_options, ensure_topics, make_producer
from socpipe.records import (
    KIND_HEADER,
    RAW_KIND,
    AgencyRef,
    CollectorRef,
    RawBatch,
    RawRecord,
    SourceRef,
)
from socpipe.settings import Settings, Tier

log = logging.getLogger(__name__)

WATCH_ID = "socpipe-health"
# A collector is silent after this many of its heartbeat intervals without one.
SILENCE_FACTOR: Final = 3.0
_SOURCE = SourceRef(type="socpipe", path="soc.heartbeats", format="socpipe.health")


def is_silent(
    last_seen: float,
    interval_s: float,
    stopping: bool,
    now: float,
    *,
    factor: float = SILENCE_FACTOR,
    min_silence_s: float = 0.0,
) -> bool:
    """Whether a collector last heard at ``last_seen`` (SOC time, seconds) is silent at
    ``now``: no heartbeat for ``factor`` of its intervals (and at least ``min_silence_s``), and
    it did not say it was stopping (a collector shut down on purpose is not missing)."""
    if stopping:
        return False
    return now - last_seen >= max(min_silence_s, factor * interval_s)


@dataclass(slots=True)
class _Collector:
    agency: str
    tier: str
    collector: str
    version: str | None
    host: str | None
    interval_s: float
    last_seen: float  # SOC time (seconds since the epoch) of its last heartbeat
    stopping: bool
    silent: bool = False


class HealthWatch:
    """The collectors' last heartbeats, and the health records their silences call for."""

    def __init__(
        self, *, silence_factor: float = SILENCE_FACTOR, min_silence_s: float = 120.0
    ) -> None:
        self.silence_factor = silence_factor
        self.min_silence_s = min_silence_s
        self.collectors: dict[str, _Collector] = {}

    def heartbeat(self, key: str, beat: dict[str, Any], seen: float) -> RawRecord | None:
        """Take one heartbeat (``seen``: its SOC time); returns a ``collector-resumed`` record
        when the collector had been reported silent."""
        if beat.get("check"):
            return None  # `socpipe collect check`'s test heartbeat: not a running collector
        try:
            agency = beat["agency"]
            collector = beat["collector"]
            entry = _Collector(
                agency=str(agency["id"]),
                tier=str(agency.get("tier", "province")),
                collector=str(collector["id"]),
                version=collector.get("version"),
                host=beat.get("host"),
                interval_s=float(beat.get("interval_s") or 30.0),
                last_seen=seen,
                stopping=bool(beat.get("stopping")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("heartbeat %s skipped: %s", key, exc)
            return None
        before = self.collectors.get(key)
        if before is not None and seen < before.last_seen:
            return None  # an older one, read late
        self.collectors[key] = entry
        if before is not None and before.silent:
            return self._record(entry, "collector-resumed", seen, seen - before.last_seen)
        return None

    def silences(self, now: float) -> list[RawRecord]:
        """A ``collector-silent`` record for each collector newly silent at ``now``."""
        found = []
        for entry in self.collectors.values():
            if entry.silent:
                continue
            if is_silent(
                entry.last_seen,
                entry.interval_s,
                entry.stopping,
                now,
                factor=self.silence_factor,
                min_silence_s=self.min_silence_s,
            ):
                entry.silent = True
                silent_s = now - entry.last_seen
                found.append(self._record(entry, "collector-silent", now, silent_s))
        return found

    def _record(self, entry: _Collector, check: str, now: float, silent_s: float) -> RawRecord:
        last = datetime.fromtimestamp(entry.last_seen, UTC)
        noticed = datetime.fromtimestamp(now, UTC)
        what = "sent no heartbeat" if check == "collector-silent" else "is heard again after"
        health = {
            "check": check,
            "noticed": noticed.isoformat(),
            "collector": {"id": entry.collector, "version": entry.version},
            "agency": {"id": entry.agency, "tier": entry.tier},
            "host": entry.host,
            "last_heartbeat": last.isoformat(),
            "interval_s": entry.interval_s,
            "silent_s": round(silent_s, 1),
            "message": (
                f"collector {entry.collector} of agency {entry.agency} {what} "
                f"{silent_s:.0f} s (heartbeat every {entry.interval_s:.0f} s; last at "
                f"{last:%Y-%m-%d %H:%M:%S} UTC)"
            ),
        }
        stream = f"{entry.agency}/{entry.collector}/{check}"
        return RawRecord(
            id=RawRecord.make_id(WATCH_ID, _SOURCE, stream, int(entry.last_seen * 1000)),
            agency=AgencyRef(id=entry.agency, tier=Tier(entry.tier)),
            collector=CollectorRef(id=WATCH_ID, version=__version__),
            host=entry.host or entry.collector,
            source=_SOURCE,
            received=noticed,
            position=int(entry.last_seen * 1000),
            data={"socpipe_health": health},
        )


def run(
    settings: Settings,
    stop: threading.Event,
    *,
    watch: HealthWatch | None = None,
    check_every_s: float = 10.0,
    lookback_s: float = 24 * 3600.0,
    clock: Callable[[], float] = time.time,
    client: Elasticsearch | None = None,
    completeness: bool = True,
) -> None:
    """Watch ``soc.heartbeats`` until ``stop`` is set, writing health records to ``soc.raw``,
    and (unless ``completeness`` is off) fold it into completeness documents through
    ``client`` (default: one made from ``settings.elasticsearch``)."""
    topics = settings.kafka.topics
    ensure_topics(settings.kafka, ["raw", "heartbeats"])
    watch = watch or HealthWatch()
    consumer = KafkaConsumer(
        **client_options(settings.kafka), enable_auto_commit=False, group_id=None
    )
    producer = make_producer(settings.kafka)
    partitions = [
        TopicPartition(topics.heartbeats, p)
        for p in sorted(consumer.partitions_for_topic(topics.heartbeats) or {0})
    ]
    consumer.assign(partitions)
    since = int((clock() - lookback_s) * 1000)
    offsets = consumer.offsets_for_times(dict.fromkeys(partitions, since))
    for partition in partitions:
        found = offsets.get(partition)
        if found is None:
            consumer.seek_to_end(partition)
        else:
            consumer.seek(partition, found.offset)
    log.info("watching %s for silent collectors", topics.heartbeats)
    halt = threading.Event()  # set when the watch ends, so that the aggregator ends with it
    aggregator = _start_completeness(settings, halt, client) if completeness else None
    next_check = clock() + check_every_s
    try:
        while not stop.is_set():
            records: list[RawRecord] = []
            for batch in consumer.poll(timeout_ms=500).values():
                for message in batch:
                    key = (message.key or b"").decode("utf-8", "replace")
                    if not key.startswith("collector/"):
                        continue  # the rule-set status and stage counters share the topic
                    try:
                        beat = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(beat, dict):
                        record = watch.heartbeat(key, beat, message.timestamp / 1000)
                        if record is not None:
                            records.append(record)
            if clock() >= next_check:
                records.extend(watch.silences(clock()))
                next_check = clock() + check_every_s
            for record in records:
                log.warning("%s", record.data["socpipe_health"]["message"] if record.data else "")
                producer.send(
                    topics.raw,
                    key=f"{record.agency.id}/{record.host}".encode(),
                    value=RawBatch(records=[record]).to_json(),
                    headers=[(KIND_HEADER, RAW_KIND)],
                ).get(timeout=60)
    finally:
        halt.set()
        consumer.close()
        producer.close(timeout=10)
        if aggregator is not None:
            aggregator.join(timeout=60)


def _start_completeness(
    settings: Settings, halt: threading.Event, client: Elasticsearch | None
) -> threading.Thread:
    """The completeness aggregator's thread (``alerting.completeness.aggregate``)."""
    from alerting.completeness import aggregate

    es = client if client is not None else make_elasticsearch(settings.elasticsearch)

    def _run() -> None:
        try:
            while not halt.is_set():
                try:
                    aggregate(settings, halt, es)
                except Exception:
                    # Started again from its committed offsets, which re-reading makes no worse.
                    log.exception("the completeness aggregator failed; restarting it in 30 s")
                    halt.wait(30)
        finally:
            if client is None:
                es.close()

    thread = threading.Thread(target=_run, name="completeness", daemon=True)
    thread.start()
    return thread
