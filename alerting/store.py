"""Where alerts live: an Elasticsearch store and an in-memory double with the same contract.

To implement a store, subclass ``AlertStore`` and provide ``ensure_ready`` (create what the store
needs, idempotently), ``apply`` (fold a batch of detections in; nothing may be counted twice when
the same batch is applied again), ``search`` and ``get``. ``fold`` in ``alerting.grouping`` does
the arithmetic; a store only reads, writes and retries.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from alerting.grouping import AlertPolicies, Grouping, alert_id, fold, window_start
from alerting.indices import Indices
from alerting.templates import alert_document, alert_from_document
from socpipe.records import Alert, AlertStatus, Detection, Severity
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


@dataclass(frozen=True)
class AlertQuery:
    """Filters for listing alerts. ``agency`` also carries an agency-scoped user's restriction."""

    status: AlertStatus | None = None
    severity: Severity | None = None
    agency: str | None = None
    rule_id: str | None = None
    host: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50


@dataclass(frozen=True)
class AlertPage:
    """A page of alerts, newest last_seen first, and how many matched in all."""

    alerts: list[Alert]
    total: int


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
        """Alerts matching ``query``, newest first."""

    @abstractmethod
    def get(self, alert_id: str) -> Alert | None:
        """One alert by id."""

    @abstractmethod
    def ping(self) -> bool:
        """Whether the store answers."""


def _matches(alert: Alert, query: AlertQuery) -> bool:
    checks = (
        query.status is None or alert.status == query.status,
        query.severity is None or alert.severity == query.severity,
        query.agency is None or alert.entities.agency == query.agency,
        query.rule_id is None or alert.rule.id == query.rule_id,
        query.host is None or alert.entities.host == query.host,
        query.since is None or alert.last_seen >= query.since,
        query.until is None or alert.last_seen <= query.until,
        query.text is None
        or query.text.casefold()
        in " ".join(
            str(v)
            for v in (
                alert.rule.title,
                alert.entities.host,
                alert.entities.user,
                alert.entities.source_ip,
            )
        ).casefold(),
    )
    return all(checks)


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
        hits = sorted(
            (a for a in self.alerts.values() if _matches(a, query)),
            key=lambda a: a.last_seen,
            reverse=True,
        )
        return AlertPage(alerts=hits[: query.limit], total=len(hits))

    def get(self, alert_id: str) -> Alert | None:
        return self.alerts.get(alert_id)

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
        filters: list[dict[str, Any]] = []
        for field_name, value in (
            ("status", query.status),
            ("severity", query.severity),
            ("entities.agency", query.agency),
            ("rule.id", query.rule_id),
            ("entities.host", query.host),
        ):
            if value is not None:
                filters.append({"term": {field_name: str(value)}})
        if query.since or query.until:
            bounds = {}
            if query.since:
                bounds["gte"] = query.since.isoformat()
            if query.until:
                bounds["lte"] = query.until.isoformat()
            filters.append({"range": {"last_seen": bounds}})
        must: list[dict[str, Any]] = []
        if query.text:
            must.append(
                {
                    "simple_query_string": {
                        "query": query.text,
                        "fields": [
                            "rule.title",
                            "entities.host",
                            "entities.user",
                            "entities.agency",
                        ],
                        "default_operator": "and",
                    }
                }
            )
        try:
            response = self.client.search(
                index=self.alias,
                query={"bool": {"filter": filters, "must": must}},
                sort=[{"last_seen": "desc"}, {"id": "asc"}],
                size=query.limit,
                track_total_hits=True,
            )
        except NotFoundError:
            return AlertPage(alerts=[], total=0)
        hits = response["hits"]
        return AlertPage(
            alerts=[alert_from_document(hit["_source"]) for hit in hits["hits"]],
            total=hits["total"]["value"],
        )

    def get(self, alert_id: str) -> Alert | None:
        try:
            response = self.client.search(
                index=self.alias, query={"ids": {"values": [alert_id]}}, size=1
            )
        except NotFoundError:
            return None
        hits = response["hits"]["hits"]
        return alert_from_document(hits[0]["_source"]) if hits else None
