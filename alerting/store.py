"""Where alerts live: an Elasticsearch store and an in-memory double with the same contract.

To implement a store, subclass ``AlertStore`` and provide ``ensure_ready`` (create what the store
needs, idempotently), ``apply`` (fold a batch of detections in; nothing may be counted twice when
the same batch is applied again), ``search``, ``get``, ``update_many`` and ``stats``. ``fold`` in
``alerting.grouping`` does the arithmetic of detections, ``alerting.queries`` the reading of
queries, and the caller of ``update_many`` the change of an analyst; a store only reads, writes
and retries.

Two writers meet on one alert: the alerting worker folding detections in (``apply``) and an
analyst triaging it (``update_many``). Both read the alert with its version, change it, and write
it only if the version is still the one read (``if_seq_no``/``if_primary_term``); the loser of a
race reads again and re-applies its change, so neither loses the other's. ``fold`` copies the
alert it is given, so the triage fields (status, assignee, verdict, notes, history) survive it.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from alerting.grouping import AlertPolicies, Grouping, alert_id, fold, window_start
from alerting.indices import Indices
from alerting.queries import (
    AlertQuery,
    AlertStats,
    SortKey,
    StatsQuery,
    compute_stats,
    es_aggregations,
    es_query,
    es_sort,
    page_of,
    sort_value,
    stats_from_response,
)
from alerting.templates import alert_document, alert_from_document
from socpipe.records import Alert, Detection
from socpipe.settings import AlertPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourcedDetection:
    """A detection with where it was read: ``source`` is ``topic:partition``."""

    detection: Detection
    source: str
    offset: int


@dataclass(frozen=True)
class AlertChange:
    """An alert as a batch left it: ``new`` when the batch created it, ``added`` the
    detections the batch folded in (what notifications and counters are told)."""

    alert: Alert
    new: bool
    added: int


@dataclass
class ApplyResult:
    """What ``apply`` did: alerts written, detections skipped as replays, and failures."""

    written: int = 0
    replays: int = 0
    failed: list[tuple[SourcedDetection, str]] = field(default_factory=list)
    changes: list[AlertChange] = field(default_factory=list)


# Matches Elasticsearch counts exactly for a search; past it, the total is a floor.
TOTAL_CAP: Final = 10_000


@dataclass(frozen=True)
class AlertPage:
    """A page of alerts in the query's order, how many matched in all, and where the page ended
    when more follow (``next_after``: pass it as ``AlertQuery.after`` for the next page)."""

    alerts: list[Alert]
    total: int
    next_after: SortKey | None = None
    # False when ``total`` is a floor: Elasticsearch stops counting at TOTAL_CAP matches (an
    # exact count of a million alerts costs more than the page itself).
    total_exact: bool = True


class UpdateRefused(Exception):  # noqa: N818 (a refusal, not a failure of the store)
    """Raised by a change given to ``update_many`` that does not apply to an alert (a forbidden
    transition); its message says why, and the alert is left as it is."""


UpdateOutcome = Literal["updated", "unchanged", "not_found", "refused", "failed"]
AlertEdit = Callable[[Alert], Alert]
"""A change of one alert: the alert after it, the same object when nothing changes, or
UpdateRefused. It may be called more than once (after a conflict), so it must be pure."""


@dataclass(frozen=True)
class AlertUpdate:
    """What ``update_many`` did to one alert: ``alert`` as it now is (None when not found),
    ``reason`` why it was refused or failed."""

    alert_id: str
    outcome: UpdateOutcome
    alert: Alert | None = None
    reason: str | None = None


class AlertStore(ABC):
    """Holds alerts; see the module docstring for how to implement one. ``window_s`` and
    ``policies``: how detections fold (``alerting.grouping.AlertPolicies``)."""

    def __init__(self, window_s: int, policies: Sequence[AlertPolicy] = ()) -> None:
        self.window_s = window_s
        self.policies = AlertPolicies(policies, window_s)

    @abstractmethod
    def ensure_ready(self) -> None:
        """Create indices, templates or tables the store needs; idempotent."""

    @abstractmethod
    def apply(self, batch: list[SourcedDetection]) -> ApplyResult:
        """Fold detections into alerts; applying the same batch twice changes nothing."""

    @abstractmethod
    def search(self, query: AlertQuery) -> AlertPage:
        """The page of alerts ``query`` asks for, in its order (most recently seen first)."""

    @abstractmethod
    def get(self, alert_id: str, *, agency: str | None = None) -> Alert | None:
        """One alert by id; None also when ``agency`` is given and the alert is another's."""

    @abstractmethod
    def update_many(
        self, alert_ids: Sequence[str], edit: AlertEdit, *, agency: str | None = None
    ) -> list[AlertUpdate]:
        """Apply ``edit`` to each alert (once per distinct id, in order), without losing a
        concurrent write; an alert of another agency than ``agency`` is not found."""

    def update(self, alert_id: str, edit: AlertEdit, *, agency: str | None = None) -> AlertUpdate:
        """``update_many`` of one alert."""
        return self.update_many([alert_id], edit, agency=agency)[0]

    @abstractmethod
    def stats(self, query: StatsQuery) -> AlertStats:
        """Counts of the alerts ``query.where`` selects, per facet and over time."""

    @abstractmethod
    def ping(self) -> bool:
        """Whether the store answers."""


class InMemoryAlertStore(AlertStore):
    """The test double: a dict of alerts, same folding and replay rules."""

    def __init__(self, window_s: int = 3600, policies: Sequence[AlertPolicy] = ()) -> None:
        super().__init__(window_s, policies)
        self.alerts: dict[str, Alert] = {}

    def ensure_ready(self) -> None:
        """Nothing to create."""

    def apply(self, batch: list[SourcedDetection]) -> ApplyResult:
        result = ApplyResult()
        for item in batch:
            grouping = self.policies.grouping(item.detection)
            key = alert_id(item.detection, grouping)
            folded = fold(
                self.alerts.get(key),
                item.detection,
                grouping=grouping,
                source=item.source,
                offset=item.offset,
            )
            if folded is None:
                result.replays += 1
            else:
                new = key not in self.alerts
                self.alerts[key] = folded
                result.written += 1
                result.changes.append(AlertChange(folded, new, 1))
        return result

    def search(self, query: AlertQuery) -> AlertPage:
        alerts, total, more = page_of(self.alerts.values(), query)
        next_after: SortKey | None = None
        if more and alerts:
            next_after = (sort_value(alerts[-1], query.sort), alerts[-1].id)
        return AlertPage(alerts=alerts, total=total, next_after=next_after)

    def get(self, alert_id: str, *, agency: str | None = None) -> Alert | None:
        alert = self.alerts.get(alert_id)
        if alert is None or (agency is not None and alert.entities.agency != agency):
            return None
        return alert

    def update_many(
        self, alert_ids: Sequence[str], edit: AlertEdit, *, agency: str | None = None
    ) -> list[AlertUpdate]:
        results = []
        for key in dict.fromkeys(alert_ids):
            current = self.get(key, agency=agency)
            if current is None:
                results.append(AlertUpdate(key, "not_found"))
                continue
            outcome = _edited(key, current, edit)
            if outcome.outcome == "updated" and outcome.alert is not None:
                self.alerts[key] = outcome.alert
            results.append(outcome)
        return results

    def stats(self, query: StatsQuery) -> AlertStats:
        return compute_stats(self.alerts.values(), query)

    def ping(self) -> bool:
        return True


class ElasticsearchAlertStore(AlertStore):
    """Alerts in monthly ``<prefix>-alerts-YYYY.MM`` indices behind the ``<prefix>-alerts`` alias.

    Writes use deterministic ids and optimistic concurrency (``if_seq_no``/``if_primary_term``)
    instead of scripts, which the local Elasticsearch does not have. Documents carry the ECS
    view of the alert (``alerting.templates.alert_document``).
    """

    MAX_ATTEMPTS = 8

    def __init__(
        self,
        client: Elasticsearch,
        prefix: str,
        window_s: int,
        replicas: int = 0,
        policies: Sequence[AlertPolicy] = (),
    ) -> None:
        super().__init__(window_s, policies)
        self.replicas = replicas
        self.client = client
        self.prefix = prefix
        self.indices = Indices(client, prefix, replicas)
        self.alias = self.indices.alias("alerts")

    def ping(self) -> bool:
        # Not client.ping(): that asks GET /, which the integ-test distribution does not serve.
        try:
            health = self.client.options(request_timeout=3).cluster.health()
        except (ApiError, TransportError):
            return False
        return health.get("status") in ("green", "yellow")

    def index_for(self, detection: Detection, grouping: Grouping) -> str:
        """The index an alert lives in, fixed by its window so every writer agrees."""
        start = window_start(detection.timestamp, grouping.window_s)
        return self.indices.index_for("alerts", start)

    def ensure_ready(self) -> None:
        self.indices.ensure_templates(["alerts"])

    def apply(self, batch: list[SourcedDetection]) -> ApplyResult:
        result = ApplyResult()
        pending: dict[str, list[SourcedDetection]] = {}
        for item in batch:
            grouping = self.policies.grouping(item.detection)
            pending.setdefault(alert_id(item.detection, grouping), []).append(item)
        for attempt in range(self.MAX_ATTEMPTS):
            if not pending:
                break
            if attempt:
                # Another writer (a second worker after a rebalance, or an analyst's update)
                # changed these alerts; back off a little, with jitter, before re-reading.
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311
            pending = self._apply_round(pending, result)
        for items in pending.values():
            for item in items:
                result.failed.append((item, "alert kept changing under us (version conflicts)"))
        return result

    def _apply_round(
        self, pending: dict[str, list[SourcedDetection]], result: ApplyResult
    ) -> dict[str, list[SourcedDetection]]:
        """Read current versions, fold, write conditionally; returns what conflicted."""
        keys = list(pending)
        groupings = {key: self.policies.grouping(pending[key][0].detection) for key in keys}
        indices = {key: self.index_for(pending[key][0].detection, groupings[key]) for key in keys}
        docs = self.client.mget(docs=[{"_index": indices[k], "_id": k} for k in keys])["docs"]
        operations: list[dict[str, Any]] = []
        planned: list[tuple[str, Alert, bool, int]] = []
        for key, doc in zip(keys, docs, strict=True):
            current = alert_from_document(doc["_source"]) if doc.get("found") else None
            alert, added = current, 0
            for item in pending[key]:
                folded = fold(
                    alert,
                    item.detection,
                    grouping=groupings[key],
                    source=item.source,
                    offset=item.offset,
                )
                if folded is None:
                    result.replays += 1
                else:
                    alert, added = folded, added + 1
            if alert is None or alert is current:
                continue
            index = indices[key]
            if current is None:
                operations.append({"create": {"_index": index, "_id": key}})
            else:
                operations.append(
                    {
                        "index": {
                            "_index": index,
                            "_id": key,
                            "if_seq_no": doc["_seq_no"],
                            "if_primary_term": doc["_primary_term"],
                        }
                    }
                )
            operations.append(alert_document(alert))
            planned.append((key, alert, current is None, added))
        if not operations:
            return {}
        response = self.client.bulk(operations=operations, refresh=False)
        retry: dict[str, list[SourcedDetection]] = {}
        for (key, alert, new, added), item in zip(planned, response["items"], strict=True):
            outcome = next(iter(item.values()))
            status = outcome.get("status", 500)
            if status in (200, 201):
                result.written += 1
                result.changes.append(AlertChange(alert, new, added))
            elif status == 409:
                retry[key] = pending[key]
            else:
                reason = outcome.get("error", {}).get("reason", f"status {status}")
                for sourced in pending[key]:
                    result.failed.append((sourced, f"Elasticsearch refused alert {key}: {reason}"))
        return retry

    def search(self, query: AlertQuery) -> AlertPage:
        extra: dict[str, Any] = {}
        if query.after is not None:
            extra["search_after"] = list(query.after)
        try:
            response = self.client.search(
                index=self.alias,
                query=es_query(query),
                sort=es_sort(query),
                # One more than the page: whether another page follows, without a second query.
                size=query.limit + 1,
                track_total_hits=TOTAL_CAP,
                **extra,
            )
        except NotFoundError:
            return AlertPage(alerts=[], total=0)
        hits = response["hits"]["hits"]
        page = hits[: query.limit]
        next_after: SortKey | None = None
        if len(hits) > query.limit and page:
            value, last_id = page[-1]["sort"]
            next_after = (int(value), str(last_id))
        return AlertPage(
            alerts=[alert_from_document(hit["_source"]) for hit in page],
            total=response["hits"]["total"]["value"],
            next_after=next_after,
            total_exact=response["hits"]["total"]["relation"] == "eq",
        )

    def get(self, alert_id: str, *, agency: str | None = None) -> Alert | None:
        filters: list[dict[str, Any]] = [{"ids": {"values": [alert_id]}}]
        if agency is not None:
            filters.append({"term": {"entities.agency": agency}})
        try:
            response = self.client.search(
                index=self.alias, query={"bool": {"filter": filters}}, size=1
            )
        except NotFoundError:
            return None
        hits = response["hits"]["hits"]
        return alert_from_document(hits[0]["_source"]) if hits else None

    def stats(self, query: StatsQuery) -> AlertStats:
        try:
            response = self.client.search(
                index=self.alias,
                query=es_query(query.where),
                aggs=es_aggregations(query),
                size=0,
                track_total_hits=True,
            )
        except NotFoundError:
            return compute_stats([], query)
        return stats_from_response(dict(response), query)

    def update_many(
        self, alert_ids: Sequence[str], edit: AlertEdit, *, agency: str | None = None
    ) -> list[AlertUpdate]:
        ids = list(dict.fromkeys(alert_ids))
        results: dict[str, AlertUpdate] = {}
        pending = self._locate(ids, agency)
        for key in ids:
            if key not in pending:
                results[key] = AlertUpdate(key, "not_found")
        for attempt in range(self.MAX_ATTEMPTS):
            if not pending:
                break
            if attempt:
                # A fold (or another analyst) wrote in between: back off, read again.
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311
            pending = self._update_round(pending, edit, agency, results)
        for key in pending:
            results[key] = AlertUpdate(
                key, "failed", reason="the alert kept changing under us (version conflicts)"
            )
        return [results[key] for key in ids]

    def _locate(self, ids: list[str], agency: str | None) -> dict[str, str]:
        """The index of each alert that exists (and is of ``agency``). A search, so an alert
        written in the last refresh interval (500 ms) is not found yet: nobody has seen it."""
        if not ids:
            return {}
        filters: list[dict[str, Any]] = [{"ids": {"values": ids}}]
        if agency is not None:
            filters.append({"term": {"entities.agency": agency}})
        try:
            hits = self.client.search(
                index=self.alias,
                query={"bool": {"filter": filters}},
                source=False,
                size=len(ids),
            )["hits"]["hits"]
        except NotFoundError:
            return {}
        return {hit["_id"]: hit["_index"] for hit in hits}

    def _read_current(self, located: dict[str, str]) -> list[dict[str, Any]]:
        """The current documents with their versions: mget is real-time, search is not."""
        docs: list[dict[str, Any]] = self.client.mget(
            docs=[{"_index": index, "_id": key} for key, index in located.items()]
        )["docs"]
        return docs

    def _update_round(
        self,
        located: dict[str, str],
        edit: AlertEdit,
        agency: str | None,
        results: dict[str, AlertUpdate],
    ) -> dict[str, str]:
        """Read, edit, write conditionally; returns the alerts that conflicted."""
        operations: list[dict[str, Any]] = []
        planned: list[tuple[str, Alert]] = []
        for (key, index), doc in zip(located.items(), self._read_current(located), strict=True):
            current = alert_from_document(doc["_source"]) if doc.get("found") else None
            if current is None or (agency is not None and current.entities.agency != agency):
                results[key] = AlertUpdate(key, "not_found")  # retention dropped it
                continue
            outcome = _edited(key, current, edit)
            if outcome.outcome != "updated" or outcome.alert is None:
                results[key] = outcome
                continue
            operations.append(
                {
                    "index": {
                        "_index": index,
                        "_id": key,
                        "if_seq_no": doc["_seq_no"],
                        "if_primary_term": doc["_primary_term"],
                    }
                }
            )
            operations.append(alert_document(outcome.alert))
            planned.append((key, outcome.alert))
        if not operations:
            return {}
        # An analyst lists again right after a change: wait until the change is searchable.
        response = self.client.bulk(operations=operations, refresh="wait_for")
        retry: dict[str, str] = {}
        for (key, alert), item in zip(planned, response["items"], strict=True):
            answer = next(iter(item.values()))
            status = answer.get("status", 500)
            if status in (200, 201):
                results[key] = AlertUpdate(key, "updated", alert)
            elif status == 409:
                retry[key] = located[key]
            else:
                reason = answer.get("error", {}).get("reason", f"status {status}")
                results[key] = AlertUpdate(
                    key, "failed", reason=f"Elasticsearch refused alert {key}: {reason}"
                )
        return retry


def _edited(key: str, current: Alert, edit: AlertEdit) -> AlertUpdate:
    """The outcome of ``edit`` on ``current``, before it is written."""
    try:
        changed = edit(current)
    except UpdateRefused as refusal:
        return AlertUpdate(key, "refused", current, str(refusal))
    if changed is current:
        return AlertUpdate(key, "unchanged", current)
    return AlertUpdate(key, "updated", changed)


__all__ = [
    "AlertChange",
    "AlertEdit",
    "AlertPage",
    "AlertQuery",
    "AlertStore",
    "AlertUpdate",
    "ApplyResult",
    "ElasticsearchAlertStore",
    "InMemoryAlertStore",
    "SourcedDetection",
    "UpdateOutcome",
    "UpdateRefused",
]
