"""The audit trail: who did what, when, from where, with what outcome; read-only through the
API, stored in ``<prefix>-audit-YYYY.MM`` (ECS-shaped, ``alerting/templates.AUDIT_PROPERTIES``).

The app's middleware records every request that changes something (POST, PUT, PATCH, DELETE,
sign-ins included), whatever its outcome, with the caller (``request.state.principal``), the
address, the route and its path parameters, the status and the request id. A route adds what it
changed in ``request.state.audit`` (a dict: ``target_type``, ``target_id``, ``detail``).
Reads are not recorded. A failure to write the trail is logged and does not fail the request
(the request has happened); it is retried once.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from alerting.indices import Indices
from socpipe.elastic import time_range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditQuery:
    """Filters for reading the trail, newest first."""

    user: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


class AuditLog(ABC):
    """Where the trail is kept."""

    @abstractmethod
    def record(self, entry: dict[str, Any]) -> None:
        """Keep one entry (an ECS-shaped document with ``@timestamp`` and ``event.id``)."""

    @abstractmethod
    def search(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Entries matching ``query``, newest first."""


def _matches(entry: dict[str, Any], query: AuditQuery) -> bool:
    moment = datetime.fromisoformat(entry["@timestamp"])
    return (
        (query.user is None or entry.get("user", {}).get("name") == query.user)
        and (query.action is None or entry["event"]["action"] == query.action)
        and (query.outcome is None or entry["event"]["outcome"] == query.outcome)
        and (query.since is None or moment >= query.since)
        and (query.until is None or moment <= query.until)
    )


class InMemoryAuditLog(AuditLog):
    """The test double."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def search(self, query: AuditQuery) -> list[dict[str, Any]]:
        found = [entry for entry in reversed(self.entries) if _matches(entry, query)]
        return found[: query.limit]


class ElasticsearchAuditLog(AuditLog):
    """The trail in monthly indices behind ``<prefix>-audit``."""

    def __init__(self, client: Elasticsearch, indices: Indices) -> None:
        self.client = client
        self.indices = indices
        self.alias = indices.alias("audit")
        self._template_put = False

    def _ensure_template(self) -> None:
        """Put the audit template before the first entry: an index made without it would have
        no alias (so no search finds it) and guessed field types. The API may be the first
        process to write there (the alert worker puts every template, but may start later)."""
        if not self._template_put:
            self.indices.ensure_templates(["audit"])
            self._template_put = True

    def record(self, entry: dict[str, Any]) -> None:
        try:
            self._ensure_template()
        except (ApiError, TransportError) as error:  # the write below reports it
            log.warning("audit template not put: %s", error)
        index = self.indices.index_for("audit", datetime.fromisoformat(entry["@timestamp"]))
        entry_id = entry["event"].setdefault("id", uuid.uuid4().hex)
        for attempt in (1, 2):
            try:
                self.client.index(index=index, id=entry_id, document=entry)
                return
            except (ApiError, TransportError) as error:
                if attempt == 2:
                    log.error("audit entry %s not written: %s", entry_id, error)

    def search(self, query: AuditQuery) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        for field, value in (
            ("user.name", query.user),
            ("event.action", query.action),
            ("event.outcome", query.outcome),
        ):
            if value is not None:
                filters.append({"term": {field: value}})
        if (period := time_range("@timestamp", query.since, query.until)) is not None:
            filters.append(period)
        try:
            hits = self.client.search(
                index=self.alias,
                query={"bool": {"filter": filters}},
                sort=[{"@timestamp": "desc"}],
                size=query.limit,
            )["hits"]["hits"]
        except NotFoundError:
            return []
        return [hit["_source"] for hit in hits]


__all__ = ["AuditLog", "AuditQuery", "ElasticsearchAuditLog", "InMemoryAuditLog"]
