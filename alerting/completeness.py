"""Completeness accounting: per agency and UTC hour, what each stage of the pipeline handled.

The aggregator reads ``soc.heartbeats``, where two kinds of messages say what was done:

- collectors' heartbeats (key ``collector/<agency>/<collector>``, passed on by the detectors),
  whose sources' ``sent`` counters are cumulative since the collector started: ``collected`` is
  the growth of their sum between heartbeats, put in the hour of the later heartbeat (its Kafka
  timestamp, the SOC's time). A collector restarted (its ``started`` changed, or a counter went
  down) begins a new incarnation counted from zero; one met in mid-life (a first heartbeat long
  after its start, nothing known of it) is counted from that heartbeat on;
- stage counters (key ``stage/<stage>/<instance>``, ``socpipe.counters``): each instance's counts
  per agency and hour, cumulative since the process started.

It writes one document per (agency, hour, emitter, incarnation) into the monthly index
``<prefix>-completeness-YYYY.MM`` of the hour, behind the alias ``<prefix>-completeness``;
:func:`completeness` sums them per agency and hour for the API.

Idempotent under replay (a restarted aggregator, or two watches, reading the same heartbeats):

- document ids are ``stable_id(agency, hour, emitter, incarnation)``;
- values are cumulative, not increments: a stage document holds what its instance had counted
  in that hour so far; a collector document holds ``base_sent`` (the incarnation's cumulative
  ``sent`` when the hour began for it) and ``last_sent`` (at its last heartbeat in the hour),
  and ``collected`` is their difference: functions of the heartbeats, not of how often they
  were read;
- writes carry external versions (``version_type=external_gte``: a stage document's ``seq``, a
  collector document's ``last_sent``), so an older message read again never overwrites a newer
  value (Elasticsearch answers 409, taken as done);
- what the aggregator remembers of each collector (incarnation, cumulative values, the offset of
  its last heartbeat) is read back from the latest documents when it starts, so heartbeats
  already folded are skipped and deltas go on from where they stood;
- heartbeat offsets are committed only after Elasticsearch acknowledged the documents; while it
  is down the aggregator keeps the documents and retries, reading nothing further.

The same loop keeps the collectors' registry: each collector's latest heartbeat (version, host,
per-source counters and last errors, Kafka state, spool, stopping) as one document in
``<prefix>-collectors`` (:data:`COLLECTOR_PROPERTIES`, strict), id ``stable_id("collector",
agency, collector)``, written with the heartbeat's Kafka timestamp as external version
(``external_gte``): a replay or an older heartbeat read late never replaces a newer state.
:class:`CollectorStore` is what the API reads: those documents, and :func:`completeness`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict

from socpipe.counters import (
    HOUR_S,
    MEASURES,
    STAGE_COUNTERS_KIND,
    StageCountersMessage,
    emitter_key,
    hour_start,
)
from socpipe.errors import RecordError, ServiceError
from socpipe.kafka import client_options, ensure_topics
from socpipe.records import message_kind, stable_id
from socpipe.settings import Settings

log = logging.getLogger(__name__)

# The summed fields of a document: the collectors' and the stages' measures.
COUNTS: Final[tuple[str, ...]] = ("collected", *MEASURES)
_LONG = {"type": "long"}
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
# Collectors not heard of for longer are not remembered on start (soc.heartbeats keeps 3 days).
RESTORE_DAYS: Final = 8

COMPLETENESS_PROPERTIES: Final[dict[str, Any]] = {
    "v": {"type": "short"},
    "agency": _KEYWORD,
    "hour": {"type": "date"},
    # collector/<agency>/<collector> or stage/<stage>/<instance>
    "emitter": _KEYWORD,
    "stage": _KEYWORD,
    "instance": _KEYWORD,
    "incarnation": _KEYWORD,
    "started": _KEYWORD,  # as the emitter wrote it: an agency's clock may write anything
    "updated": {"type": "date"},
    **{name: _LONG for name in COUNTS},
    "seq": _LONG,
    "base_sent": _LONG,
    "last_sent": _LONG,
    "source_partition": {"type": "integer"},
    "source_offset": _LONG,
}


def completeness_template(alias: str, replicas: int = 0) -> dict[str, Any]:
    """The index template for ``<alias>-*`` (monthly ``<alias>-YYYY.MM``), joined to ``alias``."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": "5s",
            },
            "aliases": {alias: {}},
            "mappings": {"dynamic": "strict", "properties": COMPLETENESS_PROPERTIES},
        },
    }


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


# --- the collectors' registry: each collector's latest heartbeat --------------------------------

SOURCE_COUNTERS: Final[tuple[str, ...]] = (
    "read",
    "sent",
    "spooled",
    "dropped",
    "unreadable",
    "malformed",
    "refused",
    "invalid_utf8",
    "truncated",
    "lag",
)
# Strings a collector writes (names, errors, its own clock's times) are cut to this length: a
# heartbeat is the agency's data and must not grow the SOC's index without bound.
_MAX_TEXT = 1024
_MAX_SOURCES = 64
COLLECTOR_PROPERTIES: Final[dict[str, Any]] = {
    "v": {"type": "short"},
    "agency": _KEYWORD,
    "tier": _KEYWORD,  # as the collector claims it; the SOC's registry has the truth
    "collector": _KEYWORD,
    "version": _KEYWORD,
    "host": _KEYWORD,
    "topic": _KEYWORD,
    # The collector's own clock, kept as written (an agency's clock may write anything).
    "started": _KEYWORD,
    "sent_at": _KEYWORD,
    # The SOC's time: the heartbeat's Kafka timestamp, set when a detector passed it on.
    "last_heartbeat": {"type": "date"},
    "interval_s": {"type": "float"},
    "stopping": {"type": "boolean"},
    "kafka": {"properties": {"state": _KEYWORD, "error": _KEYWORD}},
    "spool": {"properties": {"bytes": _LONG, "entries": _LONG, "max_bytes": _LONG}},
    "queued_bytes": _LONG,
    "sources": {
        "properties": {
            "name": _KEYWORD,
            **{name: _LONG for name in SOURCE_COUNTERS},
            "last_error": _KEYWORD,
            "last_error_at": _KEYWORD,
        }
    },
    "source_partition": {"type": "integer"},
    "source_offset": _LONG,
}


def collectors_template(index: str, replicas: int = 0) -> dict[str, Any]:
    """The index template of the one index ``index`` (``<prefix>-collectors``)."""
    return {
        "index_patterns": [index],
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": "5s",
            },
            "mappings": {"dynamic": "strict", "properties": COLLECTOR_PROPERTIES},
        },
    }


@dataclass(frozen=True)
class CollectorStateDoc:
    """One collector's latest state: its id, its external version (Kafka timestamp, ms)."""

    id: str
    version: int
    body: dict[str, Any]


def collector_doc_id(agency: str, collector: str) -> str:
    """The id of a collector's document in ``<prefix>-collectors``."""
    return stable_id("collector", agency, collector)


def collector_states(messages: Sequence[Any]) -> list[CollectorStateDoc]:
    """The latest state of each collector heard in ``messages`` (kafka-python records)."""
    latest: dict[str, CollectorStateDoc] = {}
    for message in messages:
        key = (message.key or b"").decode("utf-8", "replace")
        if not key.startswith("collector/"):
            continue  # stage counters and the rule-set status share the topic
        doc = collector_state(message)
        if doc is None:
            continue
        before = latest.get(doc.id)
        if before is None or doc.version >= before.version:
            latest[doc.id] = doc
    return list(latest.values())


def collector_state(message: Any) -> CollectorStateDoc | None:
    """The registry document of one heartbeat; None for a test heartbeat or a broken one.

    Only the fields of :data:`COLLECTOR_PROPERTIES` are taken, each coerced to its type, so a
    collector of another version (or a hostile one) cannot make the strict mapping refuse it.
    """
    where = f"{message.topic}/{message.partition}@{message.offset}"
    try:
        beat = orjson.loads(message.value)
        agency, collector = beat["agency"]["id"], beat["collector"]["id"]
        if not isinstance(agency, str) or not isinstance(collector, str):
            raise TypeError("agency.id and collector.id must be strings")
        if beat.get("check"):
            return None  # `socpipe collect check`'s test heartbeat: not a running collector
        interval = float(beat.get("interval_s") or 30.0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning(
            "%s: heartbeat not kept in the registry: %s: %s", where, type(exc).__name__, exc
        )
        return None
    kafka = beat.get("kafka") if isinstance(beat.get("kafka"), dict) else {}
    spool = beat.get("spool") if isinstance(beat.get("spool"), dict) else {}
    sources = beat.get("sources") if isinstance(beat.get("sources"), list) else []
    body: dict[str, Any] = {
        "v": 1,
        "agency": agency,
        "tier": _text(beat["agency"].get("tier")),
        "collector": collector,
        "version": _text(beat["collector"].get("version")),
        "host": _text(beat.get("host")),
        "topic": _text(beat.get("topic")),
        "started": _text(beat.get("started")),
        "sent_at": _text(beat.get("time")),
        "last_heartbeat": _iso(message.timestamp / 1000),
        "interval_s": interval if interval > 0 else 30.0,
        "stopping": bool(beat.get("stopping")),
        "kafka": {"state": _text(kafka.get("state")), "error": _text(kafka.get("error"))},
        "spool": {name: _count(spool.get(name)) for name in ("bytes", "entries", "max_bytes")},
        "queued_bytes": _count(beat.get("queued_bytes")),
        "sources": [_source(s) for s in sources[:_MAX_SOURCES] if isinstance(s, dict)],
        "source_partition": message.partition,
        "source_offset": message.offset,
    }
    return CollectorStateDoc(collector_doc_id(agency, collector), int(message.timestamp), body)


def _source(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = {"name": _text(snapshot.get("name"))}
    source.update({name: _count(snapshot.get(name)) for name in SOURCE_COUNTERS})
    source["last_error"] = _text(snapshot.get("last_error"))
    source["last_error_at"] = _text(snapshot.get("last_error_at"))
    return source


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:_MAX_TEXT]


def _count(value: Any) -> int:
    """A counter as a long: 0 for what is not a whole number, clamped to the long's range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    try:
        return max(-(2**63), min(2**63 - 1, int(value)))
    except (OverflowError, ValueError):  # inf, nan
        return 0


# --- folding heartbeats into documents ----------------------------------------------------------


@dataclass(frozen=True)
class CompletenessDoc:
    """One document to write: its id, its hour (which picks the index), its external version."""

    id: str
    hour: datetime
    version: int
    body: dict[str, Any]


@dataclass(slots=True)
class _Collector:
    incarnation: str
    started: str | None
    hour: int  # start of the hour of its last heartbeat, seconds since the epoch
    base: int  # cumulative `sent` when that hour began for the incarnation
    last: int  # cumulative `sent` at its last heartbeat
    partition: int
    offset: int


class CompletenessAggregator:
    """Folds ``soc.heartbeats`` messages into completeness documents (see the module
    docstring); remembers per collector what the next heartbeat's delta starts from."""

    def __init__(self) -> None:
        self.collectors: dict[str, _Collector] = {}

    def restore(self, latest: Iterable[Mapping[str, Any]]) -> None:
        """Take up where the documents stand: ``latest`` is each collector's latest document
        (``CompletenessSink.latest_collectors``)."""
        for doc in latest:
            try:
                self.collectors[str(doc["emitter"])] = _Collector(
                    incarnation=str(doc["incarnation"]),
                    started=doc.get("started"),
                    hour=hour_start(datetime.fromisoformat(str(doc["hour"])).timestamp()),
                    base=int(doc["base_sent"]),
                    last=int(doc["last_sent"]),
                    partition=int(doc["source_partition"]),
                    offset=int(doc["source_offset"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("completeness document of %s not restored: %s", doc.get("emitter"), exc)

    def fold(self, messages: Sequence[Any]) -> list[CompletenessDoc]:
        """The documents ``messages`` (kafka-python records, in order) call for, one per id."""
        docs: dict[str, CompletenessDoc] = {}
        for message in messages:
            key = (message.key or b"").decode("utf-8", "replace")
            if message_kind(message.headers) == STAGE_COUNTERS_KIND or key.startswith("stage/"):
                found = self._stage(message)
            elif key.startswith("collector/"):
                found = self._collector(message)
            else:
                continue  # the detectors' rule-set status shares the topic
            for doc in found:
                before = docs.get(doc.id)
                if before is None or doc.version >= before.version:
                    docs[doc.id] = doc
        return list(docs.values())

    def _stage(self, message: Any) -> list[CompletenessDoc]:
        where = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            counts = StageCountersMessage.from_json(message.value, where=where)
        except RecordError as exc:
            log.warning("stage counters skipped: %s", exc)
            return []
        emitter = emitter_key(counts.stage, counts.instance)
        incarnation = counts.started.astimezone(UTC).isoformat()
        docs = []
        for entry in counts.hours:
            hour = hour_start(entry.hour.timestamp())
            body: dict[str, Any] = {
                "v": 1,
                "agency": entry.agency,
                "hour": _iso(hour),
                "emitter": emitter,
                "stage": counts.stage,
                "instance": counts.instance,
                "incarnation": incarnation,
                "started": incarnation,
                "updated": counts.at.astimezone(UTC).isoformat(),
                "seq": counts.seq,
            }
            body.update({str(name): n for name, n in entry.counts.items()})
            docs.append(_doc(entry.agency, hour, emitter, incarnation, counts.seq, body))
        return docs

    def _collector(self, message: Any) -> list[CompletenessDoc]:
        where = f"{message.topic}/{message.partition}@{message.offset}"
        try:
            beat = orjson.loads(message.value)
            agency, collector = beat["agency"]["id"], beat["collector"]["id"]
            if not isinstance(agency, str) or not isinstance(collector, str):
                raise TypeError("agency.id and collector.id must be strings")
            if beat.get("check"):
                return []  # `socpipe collect check`'s test heartbeat: not a running collector
            sent = sum(int(source.get("sent") or 0) for source in beat.get("sources") or [])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("%s: heartbeat skipped: %s: %s", where, type(exc).__name__, exc)
            return []
        started = beat.get("started") if isinstance(beat.get("started"), str) else None
        emitter = f"collector/{agency}/{collector}"
        partition, offset = message.partition, message.offset
        hour = hour_start(message.timestamp / 1000)
        state = self.collectors.get(emitter)
        if state is not None and state.partition == partition and offset <= state.offset:
            return []  # folded before: a replay, or what the documents already hold
        if state is None:
            incarnation = started or f"@{partition}:{offset}"
            base = 0 if _fresh(beat) else sent
        else:
            hour = max(hour, state.hour)  # a detector's clock a little behind another's
            if started != state.started or sent < state.last:
                # Restarted: a new incarnation, counting from zero.
                if started and started != state.started:
                    incarnation = started
                else:  # same start, counters down: name it by where that was seen
                    incarnation = f"{started}@{partition}:{offset}"
                base = 0
            else:
                incarnation = state.incarnation
                base = state.last if hour > state.hour else state.base
        self.collectors[emitter] = _Collector(
            incarnation, started, hour, base, sent, partition, offset
        )
        body: dict[str, Any] = {
            "v": 1,
            "agency": agency,
            "hour": _iso(hour),
            "emitter": emitter,
            "stage": "collect",
            "instance": collector,
            "incarnation": incarnation,
            "updated": _iso(message.timestamp / 1000),
            "collected": sent - base,
            "base_sent": base,
            "last_sent": sent,
            "source_partition": partition,
            "source_offset": offset,
        }
        if started is not None:
            body["started"] = started
        return [_doc(agency, hour, emitter, incarnation, sent, body)]


def _doc(
    agency: str, hour: int, emitter: str, incarnation: str, version: int, body: dict[str, Any]
) -> CompletenessDoc:
    moment = datetime.fromtimestamp(hour, UTC)
    doc_id = stable_id("completeness", agency, moment.isoformat(), emitter, incarnation)
    return CompletenessDoc(doc_id, moment, version, body)


def _fresh(beat: Mapping[str, Any]) -> bool:
    """Whether a heartbeat is one of its collector's first (by the collector's own clock): a
    collector first met later is counted from that heartbeat, not from its start."""
    try:
        sent_at = datetime.fromisoformat(str(beat["time"]))
        started = datetime.fromisoformat(str(beat["started"]))
        interval = float(beat.get("interval_s") or 30.0)
        return (sent_at - started).total_seconds() <= 2 * interval + 60
    except (KeyError, TypeError, ValueError):
        return True  # a collector that does not say: counted from zero


# --- where documents go -------------------------------------------------------------------------


class CompletenessSink(ABC):
    """Holds completeness documents and the collectors' registry. ``write`` and
    ``write_collectors`` must keep the newer of two versions of a document (external_gte) and
    raise ``ServiceError`` (or the client's error) when they could not write, so the caller
    retries; ``latest_collectors`` gives each collector's latest completeness document since a
    time."""

    @abstractmethod
    def ensure_ready(self) -> None:
        """Create what the sink needs (idempotent)."""

    @abstractmethod
    def latest_collectors(self, since: datetime) -> list[dict[str, Any]]:
        """Each collector emitter's document of its last folded heartbeat, hours from
        ``since``."""

    @abstractmethod
    def write(self, docs: Sequence[CompletenessDoc]) -> None:
        """Write ``docs``; raises when they are not all written."""

    @abstractmethod
    def write_collectors(self, docs: Sequence[CollectorStateDoc]) -> None:
        """Write the collectors' latest states; raises when they are not all written."""


@dataclass
class InMemoryCompletenessSink(CompletenessSink):
    """The test double: documents by id with their versions; ``failures`` writes fail first."""

    docs: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    collectors: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    failures: int = 0
    writes: int = 0

    def ensure_ready(self) -> None:
        """Nothing to create."""

    def latest_collectors(self, since: datetime) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for _, body in self.docs.values():
            if body["stage"] != "collect" or datetime.fromisoformat(body["hour"]) < since:
                continue
            before = latest.get(body["emitter"])
            if before is None or body["source_offset"] > before["source_offset"]:
                latest[body["emitter"]] = body
        return list(latest.values())

    def write(self, docs: Sequence[CompletenessDoc]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ServiceError("in-memory completeness sink: failing as told")
        self.writes += 1
        for doc in docs:
            before = self.docs.get(doc.id)
            if before is None or doc.version >= before[0]:
                self.docs[doc.id] = (doc.version, dict(doc.body))

    def write_collectors(self, docs: Sequence[CollectorStateDoc]) -> None:
        for doc in docs:
            before = self.collectors.get(doc.id)
            if before is None or doc.version >= before[0]:
                self.collectors[doc.id] = (doc.version, dict(doc.body))

    def rows(
        self, *, agency: str | None = None, since: datetime, until: datetime
    ) -> list[CompletenessRow]:
        """What :func:`completeness` answers, from these documents."""
        low, high = _bounds(since, until)
        sums: dict[tuple[str, datetime, str], dict[str, float]] = {}
        for _, body in self.docs.values():
            hour = datetime.fromisoformat(body["hour"])
            if not low <= hour < high or agency not in (None, body["agency"]):
                continue
            bucket = sums.setdefault((body["agency"], hour, body["stage"]), {})
            for name in COUNTS:
                bucket[name] = bucket.get(name, 0.0) + body.get(name, 0)
        return rows_from_buckets((a, h, s, v) for (a, h, s), v in sums.items())


class ElasticsearchCompletenessSink(CompletenessSink):
    """Documents in ``<prefix>-completeness-YYYY.MM`` (month of the hour) behind the alias."""

    def __init__(self, client: Elasticsearch, prefix: str, replicas: int = 0) -> None:
        self.client = client
        self.alias = f"{prefix}-completeness"
        self.collectors_index = f"{prefix}-collectors"
        self.replicas = replicas

    def index_for(self, hour: datetime) -> str:
        """The monthly index of an hour (UTC)."""
        return f"{self.alias}-{hour.astimezone(UTC):%Y.%m}"

    def ensure_ready(self) -> None:
        self.client.indices.put_index_template(
            name=self.alias, **completeness_template(self.alias, self.replicas)
        )
        self.client.indices.put_index_template(
            name=self.collectors_index,
            **collectors_template(self.collectors_index, self.replicas),
        )

    def latest_collectors(self, since: datetime) -> list[dict[str, Any]]:
        try:
            response = self.client.search(
                index=self.alias,
                query={
                    "bool": {
                        "filter": [
                            {"term": {"stage": "collect"}},
                            {"range": {"hour": {"gte": since.isoformat()}}},
                        ]
                    }
                },
                collapse={"field": "emitter"},
                sort=[{"source_offset": "desc"}],
                size=10_000,
            )
        except NotFoundError:
            return []
        hits = response["hits"]["hits"]
        if len(hits) == 10_000:
            log.warning("completeness: more than 10,000 collectors; some start from scratch")
        return [hit["_source"] for hit in hits]

    def write(self, docs: Sequence[CompletenessDoc]) -> None:
        self._bulk(
            "completeness", [(self.index_for(d.hour), d.id, d.version, d.body) for d in docs]
        )

    def write_collectors(self, docs: Sequence[CollectorStateDoc]) -> None:
        self._bulk("collector", [(self.collectors_index, d.id, d.version, d.body) for d in docs])

    def _bulk(self, what: str, docs: Sequence[tuple[str, str, int, dict[str, Any]]]) -> None:
        """Index (index, id, external version, body) documents, keeping newer versions."""
        if not docs:
            return
        operations: list[dict[str, Any]] = []
        for index, doc_id, version, body in docs:
            operations.append(
                {
                    "index": {
                        "_index": index,
                        "_id": doc_id,
                        "version": version,
                        "version_type": "external_gte",
                    }
                }
            )
            operations.append(body)
        response = self.client.bulk(operations=operations, refresh=False)
        retry = 0
        for (_, _, _, body), item in zip(docs, response["items"], strict=True):
            outcome = next(iter(item.values()))
            status = outcome.get("status", 500)
            if status in (200, 201, 409):  # 409: a newer version is there already
                continue
            reason = outcome.get("error", {}).get("reason", f"status {status}")
            if status == 429 or status >= 500:
                retry += 1
            else:
                # Refused for good (a document the mapping does not take): retrying cannot help.
                log.error("%s document %s refused: %s", what, body, reason)
        if retry:
            raise ServiceError(f"Elasticsearch did not take {retry} {what} documents")


# --- the loop `socpipe watch` runs --------------------------------------------------------------


class CompletenessLoop:
    """Poll heartbeats → fold → write until acknowledged → commit. Elasticsearch away: the
    documents are kept and written again with a growing pause (up to ``retry_max_s``), and
    nothing more is read, so nothing is committed that is not written."""

    def __init__(
        self,
        consumer: Any,
        sink: CompletenessSink,
        aggregator: CompletenessAggregator | None = None,
        *,
        poll_timeout_ms: int = 500,
        max_records: int = 1000,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
        clock: Any = time.time,
    ) -> None:
        self.consumer = consumer
        self.sink = sink
        self.aggregator = aggregator or CompletenessAggregator()
        self.poll_timeout_ms = poll_timeout_ms
        self.max_records = max_records
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.folded = 0

    def run(self, stop: threading.Event, *, until_end: bool = False) -> None:
        """Until ``stop`` is set (with ``until_end``: until what the topic held when this was
        called is written and committed)."""
        ends = self.consumer.end_offsets(list(self.consumer.assignment())) if until_end else None
        if not self._retry(stop, "restoring the collectors' state", self._restore):
            return
        while not stop.is_set():
            if ends is not None and all(self.consumer.position(p) >= e for p, e in ends.items()):
                return
            polled = self.consumer.poll(
                timeout_ms=self.poll_timeout_ms, max_records=self.max_records
            )
            messages = [message for batch in polled.values() for message in batch]
            if not messages:
                continue
            docs = self.aggregator.fold(messages)
            states = collector_states(messages)
            if not self._retry(
                stop, "writing completeness", functools.partial(self.sink.write, docs)
            ):
                return  # stopped before Elasticsearch took them: not committed, read again
            if not self._retry(
                stop,
                "writing the collectors' registry",
                functools.partial(self.sink.write_collectors, states),
            ):
                return  # the completeness documents are written: read again, they change nothing
            try:
                self.consumer.commit()
            except KafkaError as exc:  # written: reading them again changes nothing
                log.warning("completeness: heartbeat offsets not committed: %s", exc)
            self.folded += len(messages)

    def _restore(self) -> None:
        self.sink.ensure_ready()
        since = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=RESTORE_DAYS)
        self.aggregator.restore(self.sink.latest_collectors(since))

    def _retry(self, stop: threading.Event, what: str, action: Any) -> bool:
        """Run ``action`` until it succeeds (True) or ``stop`` is set (False)."""
        delay = self.retry_min_s
        while not stop.is_set():
            try:
                action()
                return True
            except (ApiError, TransportError, ServiceError) as exc:
                log.warning("completeness: %s failed (%s); again in %.0f s", what, exc, delay)
            stop.wait(delay)
            delay = min(max(delay * 2, 0.1), self.retry_max_s)
        return False


def aggregate(
    settings: Settings, stop: threading.Event, client: Elasticsearch, *, until_end: bool = False
) -> None:
    """Fold ``soc.heartbeats`` into completeness documents until ``stop`` is set (see
    :class:`CompletenessLoop`); offsets in the group ``<alerting.group_id>-completeness``."""
    topic = settings.kafka.topics.heartbeats
    ensure_topics(settings.kafka, ["heartbeats"])
    consumer = KafkaConsumer(
        **client_options(settings.kafka),
        group_id=f"{settings.alerting.group_id}-completeness",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        # Assigned, not subscribed: no rebalance can take a partition away mid-retry.
        consumer.assign(
            [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        )
        sink = ElasticsearchCompletenessSink(
            client, settings.elasticsearch.index_prefix, settings.elasticsearch.index_replicas
        )
        log.info("counting completeness from %s into %s", topic, sink.alias)
        CompletenessLoop(consumer, sink).run(stop, until_end=until_end)
    finally:
        consumer.close(autocommit=False)


# --- what the API serves ------------------------------------------------------------------------


class CompletenessGaps(BaseModel):
    """What one stage passed on that the next did not account for (0 when none)."""

    model_config = ConfigDict(frozen=True)

    # collected − received: sent by collectors, not (yet) read by a detector.
    not_received: int = 0
    # received − parsed − unparsed − dead-lettered by the detectors: read, then lost.
    unaccounted: int = 0
    # detected − indexed − dead-lettered by the alert stage: not (yet) in an alert.
    not_indexed: int = 0


class CompletenessRow(BaseModel):
    """One agency's counts in one UTC hour (processing time), every emitter summed."""

    model_config = ConfigDict(frozen=True)

    agency: str
    hour: datetime
    collected: int = 0
    received: int = 0
    parsed: int = 0
    unparsed: int = 0
    detected: int = 0
    indexed: int = 0
    events_indexed: int = 0
    dead_lettered: int = 0
    dead_lettered_by_stage: dict[str, int] = {}
    gaps: CompletenessGaps = CompletenessGaps()


def rows_from_buckets(
    buckets: Iterable[tuple[str, datetime, str, Mapping[str, float]]],
) -> list[CompletenessRow]:
    """Rows from sums per (agency, hour, stage), ordered by hour then agency."""
    totals: dict[tuple[str, datetime], dict[str, int]] = {}
    dead: dict[tuple[str, datetime], dict[str, int]] = {}
    for agency, hour, stage, sums in buckets:
        row = totals.setdefault((agency, hour), {})
        for name in COUNTS:
            row[name] = row.get(name, 0) + round(sums.get(name) or 0)
        lost = round(sums.get("dead_lettered") or 0)
        if lost:
            dead.setdefault((agency, hour), {})[stage] = lost
    rows = []
    for (agency, hour), row in sorted(totals.items(), key=lambda item: (item[0][1], item[0][0])):
        by_stage = dead.get((agency, hour), {})
        gaps = CompletenessGaps(
            not_received=max(0, row["collected"] - row["received"]),
            unaccounted=max(
                0, row["received"] - row["parsed"] - row["unparsed"] - by_stage.get("detect", 0)
            ),
            not_indexed=max(0, row["detected"] - row["indexed"] - by_stage.get("alert", 0)),
        )
        rows.append(
            CompletenessRow(
                agency=agency, hour=hour, dead_lettered_by_stage=by_stage, gaps=gaps, **row
            )
        )
    return rows


def _bounds(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    low = datetime.fromtimestamp(hour_start(since.timestamp()), UTC)
    return low, until.astimezone(UTC)


def completeness(
    client: Elasticsearch,
    prefix: str,
    *,
    agency: str | None = None,
    since: datetime,
    until: datetime,
) -> list[CompletenessRow]:
    """Per agency and UTC hour, from the hour holding ``since`` to before ``until``: what was
    collected, received, parsed, unparsed, detected, indexed and dead-lettered, and the gaps.

    One composite aggregation (terms on agency, date_histogram per hour, terms on stage, sums),
    paged. ``agency`` limits it to one agency (an agency-scoped caller passes its own).
    """
    low, high = _bounds(since, until)
    filters: list[dict[str, Any]] = [
        {"range": {"hour": {"gte": low.isoformat(), "lt": high.isoformat()}}}
    ]
    if agency is not None:
        filters.append({"term": {"agency": agency}})
    sources = [
        {"agency": {"terms": {"field": "agency"}}},
        {"hour": {"date_histogram": {"field": "hour", "fixed_interval": f"{HOUR_S}s"}}},
        {"stage": {"terms": {"field": "stage"}}},
    ]
    buckets: list[tuple[str, datetime, str, Mapping[str, float]]] = []
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": 1000, "sources": sources}
        if after is not None:
            composite["after"] = after
        try:
            response = client.search(
                index=f"{prefix}-completeness",
                size=0,
                query={"bool": {"filter": filters}},
                aggs={
                    "rows": {
                        "composite": composite,
                        "aggs": {name: {"sum": {"field": name}} for name in COUNTS},
                    }
                },
            )
        except NotFoundError:
            return []
        page = response["aggregations"]["rows"]
        for bucket in page["buckets"]:
            key = bucket["key"]
            hour = datetime.fromtimestamp(key["hour"] / 1000, UTC)
            sums = {name: bucket[name]["value"] for name in COUNTS}
            buckets.append((key["agency"], hour, key["stage"], sums))
        after = page.get("after_key")
        if not page["buckets"] or after is None:
            break
    return rows_from_buckets(buckets)


class CollectorStore(ABC):
    """What the API reads about collectors: their latest states (documents of
    ``<prefix>-collectors``) and the completeness rows."""

    @abstractmethod
    def states(self, agency: str | None = None) -> list[dict[str, Any]]:
        """Every collector's latest state (of ``agency`` only, when given), by agency and id."""

    @abstractmethod
    def state(self, agency: str, collector: str) -> dict[str, Any] | None:
        """One collector's latest state, or None if it was never heard of."""

    @abstractmethod
    def completeness(
        self, *, agency: str | None, since: datetime, until: datetime
    ) -> list[CompletenessRow]:
        """What :func:`completeness` answers."""


def _ordered(states: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(states, key=lambda state: (state["agency"], state["collector"]))


class InMemoryCollectorStore(CollectorStore):
    """The test double: reads what an :class:`InMemoryCompletenessSink` holds."""

    def __init__(self, sink: InMemoryCompletenessSink | None = None) -> None:
        self.sink = sink if sink is not None else InMemoryCompletenessSink()

    def states(self, agency: str | None = None) -> list[dict[str, Any]]:
        found = [body for _, body in self.sink.collectors.values()]
        return _ordered(body for body in found if agency in (None, body["agency"]))

    def state(self, agency: str, collector: str) -> dict[str, Any] | None:
        found = self.sink.collectors.get(collector_doc_id(agency, collector))
        return None if found is None else found[1]

    def completeness(
        self, *, agency: str | None, since: datetime, until: datetime
    ) -> list[CompletenessRow]:
        return self.sink.rows(agency=agency, since=since, until=until)


class ElasticsearchCollectorStore(CollectorStore):
    """Reads ``<prefix>-collectors`` and ``<prefix>-completeness``; an index not made yet
    reads as empty."""

    # About 165 agencies with a few collectors each: far below one page.
    MAX_COLLECTORS: Final = 10_000

    def __init__(self, client: Elasticsearch, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.index = f"{prefix}-collectors"

    def states(self, agency: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"term": {"agency": agency}} if agency else {"match_all": {}}
        try:
            response = self.client.search(
                index=self.index,
                query=query,
                sort=[{"agency": "asc"}, {"collector": "asc"}],
                size=self.MAX_COLLECTORS,
            )
        except NotFoundError:
            return []
        hits = response["hits"]["hits"]
        if len(hits) == self.MAX_COLLECTORS:
            log.warning("more than %d collectors: the registry shows the first", len(hits))
        return [hit["_source"] for hit in hits]

    def state(self, agency: str, collector: str) -> dict[str, Any] | None:
        try:
            found = self.client.get(index=self.index, id=collector_doc_id(agency, collector))
        except NotFoundError:
            return None
        body: dict[str, Any] = found["_source"]
        # The id is a digest: make sure it is this collector's, not a collision's.
        return body if (body["agency"], body["collector"]) == (agency, collector) else None

    def completeness(
        self, *, agency: str | None, since: datetime, until: datetime
    ) -> list[CompletenessRow]:
        return completeness(self.client, self.prefix, agency=agency, since=since, until=until)


__all__ = [
    "COLLECTOR_PROPERTIES",
    "COMPLETENESS_PROPERTIES",
    "COUNTS",
    "SOURCE_COUNTERS",
    "CollectorStateDoc",
    "CollectorStore",
    "CompletenessAggregator",
    "CompletenessDoc",
    "CompletenessGaps",
    "CompletenessLoop",
    "CompletenessRow",
    "CompletenessSink",
    "ElasticsearchCollectorStore",
    "ElasticsearchCompletenessSink",
    "InMemoryCollectorStore",
    "InMemoryCompletenessSink",
    "aggregate",
    "collector_doc_id",
    "collector_state",
    "collector_states",
    "collectors_template",
    "completeness",
    "completeness_template",
    "rows_from_buckets",
]
