"""``socpipe alert``: soc.detections folded into alerts, soc.events indexed for hunting.

Two consumer groups in one process, each its own thread and :class:`~socpipe.stream.StreamLoop`:

- ``alerting.group_id`` reads ``soc.detections``: :class:`AlertIndexer` folds each batch into
  alerts (``alerting.store``), then notifications are offered the alerts the batch created;
- ``alerting.events_group_id`` (when ``alerting.index_events``) reads ``soc.events``:
  :class:`EventIndexer` bulk-indexes them into ``<prefix>-events-YYYY.MM.DD`` with the event's
  id as the document id.

Offsets are committed only after Elasticsearch acknowledged. When Elasticsearch cannot be
reached, or answers 429/502/503/504, the batch is retried with exponential backoff (up to
``_MAX_DELAY_S`` apart) until it can, or until the stage is asked to stop (then nothing is
committed and the batch is read again at the next start). Replays are harmless: alerts skip
detections already folded in (their source offsets) and events overwrite themselves by id. A
document Elasticsearch refuses (a mapping conflict, a bad address in an ``ip`` field) goes to
``soc.dlq`` with Elasticsearch's reason, and the stream goes on. A retention thread deletes
expired indices every ``alerting.retention.interval_s``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, TypeVar

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError

from alerting.indices import Indices
from alerting.store import AlertChange, AlertStore, ElasticsearchAlertStore, SourcedDetection
from socpipe.counters import CounterPublisher, Measure, StageCounters
from socpipe.deadletter import DeadLetterWriter
from socpipe.elastic import make_elasticsearch
from socpipe.errors import RecordError
from socpipe.kafka import make_consumer, make_producer
from socpipe.records import Detection, stable_id
from socpipe.settings import Settings
from socpipe.stream import StreamLoop

log = logging.getLogger(__name__)

T = TypeVar("T")
_RETRY_STATUS: Final = frozenset({429, 502, 503, 504})
_FIRST_DELAY_S: Final = 0.5
_MAX_DELAY_S: Final = 30.0


class StoppedError(Exception):
    """The stage was asked to stop while Elasticsearch was away: the batch is not committed."""


def acknowledged(action: Callable[[], T], stop: threading.Event, what: str) -> T:
    """``action()``'s result once Elasticsearch answers; retried with backoff while it cannot
    be reached or is overloaded. Raises :class:`StoppedError` if ``stop`` is set meanwhile, and any
    other error of Elasticsearch (a bad request is not retried)."""
    delay, failures = _FIRST_DELAY_S, 0
    while True:
        try:
            result = action()
        except ApiError as error:
            if error.status_code not in _RETRY_STATUS:
                raise
            problem: Exception = error
        except TransportError as error:  # refused, reset, timed out
            problem = error
        else:
            if failures:
                log.info("%s: Elasticsearch answers again after %d failures", what, failures)
            return result
        failures += 1
        if stop.is_set():
            raise StoppedError(f"{what}: stopping while Elasticsearch is unavailable") from problem
        log.warning("%s: Elasticsearch unavailable (%s); retry in %.1f s", what, problem, delay)
        stop.wait(delay)
        delay = min(delay * 2, _MAX_DELAY_S)


ChangesHook = Callable[[Sequence[AlertChange]], None]


class AlertIndexer:
    """The batch handler of soc.detections: decode, fold into the store, dead-letter the rest,
    and tell ``on_changes`` (notifications, counters) what the batch changed."""

    def __init__(
        self,
        store: AlertStore,
        dlq: DeadLetterWriter,
        *,
        stop: threading.Event | None = None,
        on_changes: ChangesHook | None = None,
        counters: StageCounters | None = None,
    ) -> None:
        self.store = store
        self.dlq = dlq
        self.stop = stop or threading.Event()
        self.on_changes = on_changes
        self.counters = counters  # indexed and dead_lettered, per agency (completeness)

    def __call__(self, records: Sequence[Any]) -> list[Any]:
        futures: list[Any] = []
        batch: list[SourcedDetection] = []
        for record in records:
            where = f"{record.topic}/{record.partition}@{record.offset}"
            try:
                detection = Detection.from_json(record.value, where=where)
            except RecordError as exc:
                futures.append(
                    self.dlq.send(
                        str(exc),
                        record.value,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                )
                self._count("unknown", "dead_lettered", 1)
                continue
            batch.append(
                SourcedDetection(detection, f"{record.topic}:{record.partition}", record.offset)
            )
        if not batch:
            return futures
        result = acknowledged(lambda: self.store.apply(batch), self.stop, "alerts")
        for item, reason in result.failed:
            futures.append(
                self.dlq.send(
                    reason,
                    item.detection.to_json(),
                    topic=item.source.rsplit(":", 1)[0],
                    partition=int(item.source.rsplit(":", 1)[1]),
                    offset=item.offset,
                    agency=item.detection.entities.agency,
                    record_id=item.detection.id,
                )
            )
            self._count(item.detection.entities.agency, "dead_lettered", 1)
        for change in result.changes:
            self._count(change.alert.entities.agency, "indexed", change.added)
        if result.changes and self.on_changes is not None:
            self.on_changes(result.changes)
        log.debug(
            "alerts written %d, replays skipped %d, failed %d",
            result.written,
            result.replays,
            len(result.failed),
        )
        return futures

    def _count(self, agency: str, measure: Measure, n: int) -> None:
        if self.counters is not None:
            self.counters.add(agency, measure, n)


class EventIndexer:
    """The batch handler of soc.events: bulk-index each event by its id into its day's index;
    what Elasticsearch refuses goes to the DLQ with its reason."""

    def __init__(
        self,
        client: Elasticsearch,
        indices: Indices,
        dlq: DeadLetterWriter,
        *,
        stop: threading.Event | None = None,
        on_indexed: Callable[[str, int], None] | None = None,
    ) -> None:
        self.client = client
        self.indices = indices
        self.dlq = dlq
        self.stop = stop or threading.Event()
        self.on_indexed = on_indexed  # (agency, count) per batch, for completeness counters
        self.indexed = 0

    def __call__(self, records: Sequence[Any]) -> list[Any]:
        futures: list[Any] = []
        pending: list[tuple[Any, str, str, dict[str, Any]]] = []  # record, index, id, document
        for record in records:
            where = f"{record.topic}/{record.partition}@{record.offset}"
            try:
                document = orjson.loads(record.value)
                if not isinstance(document, dict):
                    raise TypeError(f"an event is a JSON object, not {type(document).__name__}")
                index, doc_id = self._placement(document, record)
            except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                futures.append(self._dead(f"{where}: not an event: {exc}", record, None))
                continue
            pending.append((record, index, doc_id, document))
        while pending:
            operations: list[dict[str, Any]] = []
            for _, index, doc_id, document in pending:
                operations += [{"index": {"_index": index, "_id": doc_id}}, document]
            bulk = partial(self.client.bulk, operations=operations, refresh=False)
            response = acknowledged(bulk, self.stop, "events")
            retry: list[tuple[Any, str, str, dict[str, Any]]] = []
            done: dict[str, int] = {}
            for entry, item in zip(pending, response["items"], strict=True):
                outcome = item["index"]
                status = outcome.get("status", 500)
                if status in (200, 201):
                    agency = _agency_of(entry[3])
                    done[agency] = done.get(agency, 0) + 1
                elif status in _RETRY_STATUS:
                    retry.append(entry)
                else:
                    error = outcome.get("error", {})
                    reason = f"Elasticsearch refused event {entry[2]}: {error.get('type', status)}"
                    reason += f": {error.get('reason', '')}"
                    futures.append(self._dead(reason, entry[0], entry[3]))
            for agency, count in done.items():
                self.indexed += count
                if self.on_indexed is not None:
                    self.on_indexed(agency, count)
            if retry:
                log.warning("events: %d refused for load (429/503); retrying them", len(retry))
                if self.stop.wait(_FIRST_DELAY_S):
                    raise StoppedError("events: stopping with events Elasticsearch did not take")
            pending = retry
        return futures

    def _placement(self, document: dict[str, Any], record: Any) -> tuple[str, str]:
        """The index (by the event's time, else the message's) and id (the event's, else one
        derived from where the message was read, the same on a replay)."""
        stamp = document.get("@timestamp")
        if isinstance(stamp, str):
            moment = datetime.fromisoformat(stamp)
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        else:
            moment = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
        event = document.get("event")
        doc_id = event.get("id") if isinstance(event, dict) else None
        if not isinstance(doc_id, str) or not doc_id:
            doc_id = stable_id(record.topic, record.partition, record.offset)
        return self.indices.index_for("events", moment), doc_id

    def _dead(self, reason: str, record: Any, document: dict[str, Any] | None) -> Any:
        return self.dlq.send(
            reason,
            record.value,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            agency=_agency_of(document) if document is not None else None,
            record_id=_event_id(document),
        )


def _agency_of(document: dict[str, Any]) -> str:
    organization = document.get("organization")
    agency = organization.get("id") if isinstance(organization, dict) else None
    return agency if isinstance(agency, str) else ""


def _event_id(document: dict[str, Any] | None) -> str | None:
    event = document.get("event") if document is not None else None
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else None


def retention_loop(indices: Indices, settings: Settings, stop: threading.Event) -> None:
    """Delete expired indices now and every ``retention.interval_s`` until ``stop``."""
    retention = settings.alerting.retention
    while not stop.is_set():
        try:
            indices.apply_retention(retention, datetime.now(UTC))
        except (ApiError, TransportError) as error:
            log.warning("retention: %s; trying again in %d s", error, retention.interval_s)
        stop.wait(retention.interval_s)


def _run_loop(name: str, loop: StreamLoop, stop: threading.Event) -> None:
    try:
        loop.run(stop)
    except StoppedError as stopped:
        log.info("%s: %s", name, stopped)
    except Exception:
        log.exception("%s failed; stopping the stage", name)
        stop.set()
        raise


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the alerting stage until ``stop`` is set."""
    es_settings, alerting = settings.elasticsearch, settings.alerting
    es = make_elasticsearch(es_settings)
    store = ElasticsearchAlertStore(
        es,
        es_settings.index_prefix,
        alerting.dedup_window_s,
        es_settings.index_replicas,
        alerting.policies,
    )
    indices = store.indices
    acknowledged(lambda: indices.ensure_templates(), stop, "templates")
    topics = settings.kafka.topics
    # Completeness counts of this stage, published to soc.heartbeats with a producer of its
    # own (the stream loops close theirs on the way out; the last counts go after that).
    counters = StageCounters("alert", f"alert-{socket.gethostname()}-{os.getpid()}")
    publisher = CounterPublisher(
        counters, make_producer(settings.kafka, max_block_ms=10_000), topics.heartbeats
    )
    threads: list[threading.Thread] = []
    if alerting.index_events:
        producer = make_producer(settings.kafka)
        consumer = make_consumer(settings.kafka, alerting.events_group_id, [topics.events])
        events = EventIndexer(
            es,
            indices,
            DeadLetterWriter(producer, topics.dlq, "index"),
            stop=stop,
            on_indexed=lambda agency, n: counters.add(agency or "unknown", "events_indexed", n),
        )
        loop = StreamLoop(consumer, producer, events, max_records=alerting.events_batch_size)
        threads.append(
            threading.Thread(target=_run_loop, args=("events", loop, stop), name="events")
        )
        log.info("indexing %s into %s", topics.events, indices.alias("events"))
    threads.append(
        threading.Thread(
            target=retention_loop, args=(indices, settings, stop), name="retention", daemon=True
        )
    )
    notifications = alerting.notifications
    center = None
    if notifications.enabled and notifications.routes:
        from alerting.notify import NotificationCenter  # templates and senders only when used

        center = NotificationCenter(notifications)
        center.start()
        log.info("notifications: %d routes to %d channels", len(notifications.routes),
                 len(notifications.channels))  # fmt: skip
    producer = make_producer(settings.kafka)
    consumer = make_consumer(settings.kafka, alerting.group_id, [topics.detections])
    dlq = DeadLetterWriter(producer, topics.dlq, "alert")
    indexer = AlertIndexer(
        store,
        dlq,
        stop=stop,
        on_changes=center.offer if center is not None else None,
        counters=counters,
    )
    loop = StreamLoop(consumer, producer, indexer, max_records=alerting.batch_size)
    log.info("alerting from %s into %s", topics.detections, store.alias)
    for thread in threads:
        thread.start()
    publisher.start()
    try:
        _run_loop("alerts", loop, stop)
    finally:
        stop.set()
        for thread in threads:
            if not thread.daemon:
                thread.join()
        if center is not None:
            center.close(timeout_s=10.0)
        publisher.stop()
        publisher.producer.close(timeout=10)
