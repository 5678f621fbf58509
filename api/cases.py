"""Cases: alerts an analyst investigates together, with notes and a timeline of every change.

A case is open, in_progress or closed (:data:`CASE_TRANSITIONS`: open → in_progress → closed,
open → closed; a closed case reopens to in_progress; its alerts change only while it is not
closed). Each alert it holds is kept with its agency, so cases can be confined to an agency and
found by alert (``CaseQuery.alert_id``).

Cases live in one Elasticsearch index, ``<prefix>-cases`` (strict mapping
:data:`CASE_PROPERTIES`), written with optimistic concurrency like alerts;
:class:`InMemoryCaseStore` is the double. To implement a store, subclass :class:`CaseStore`
and provide ``ensure_ready``, ``create``, ``get``, ``search`` and ``update`` (read, edit, write
only over the version read, retry on conflict).
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from elasticsearch import BadRequestError, ConflictError, Elasticsearch, NotFoundError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from socpipe.records import Note


class CaseStatus(StrEnum):
    """Where a case stands."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"


CASE_TRANSITIONS: Final[dict[CaseStatus, frozenset[CaseStatus]]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.CLOSED}),
    CaseStatus.IN_PROGRESS: frozenset({CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset({CaseStatus.IN_PROGRESS}),
}
"""Where each status of a case may go."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseAlert(_Part):
    """An alert of a case, with its agency (what confines the case)."""

    id: str
    agency: str


class TimelineEntry(_Part):
    """Who changed what on a case, and when."""

    at: AwareDatetime
    by: str
    action: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Case(_Part):
    """A case as stored."""

    v: int = 1
    id: str
    title: str
    status: CaseStatus = CaseStatus.OPEN
    created_at: AwareDatetime
    created_by: str
    updated_at: AwareDatetime
    closed_at: AwareDatetime | None = None
    alerts: list[CaseAlert] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)

    @property
    def alert_ids(self) -> list[str]:
        """The ids of its alerts, in the order they were added."""
        return [alert.id for alert in self.alerts]

    @property
    def agencies(self) -> list[str]:
        """The agencies its alerts are of."""
        return sorted({alert.agency for alert in self.alerts})


class CaseRefused(Exception):  # noqa: N818 (a refusal, not a failure of the store)
    """A change a case does not take (a forbidden transition); the message says why."""


class CaseConflict(Exception):  # noqa: N818
    """The case kept changing under us: the caller may try again."""


CaseEdit = Callable[[Case], Case]
"""A change of a case: pure (it may run again after a conflict); CaseRefused to refuse."""


@dataclass(frozen=True)
class CaseQuery:
    """Filters for listing cases, most recently updated first."""

    status: CaseStatus | None = None
    alert_id: str | None = None
    agency: str | None = None
    limit: int = 50


@dataclass(frozen=True)
class CasePage:
    """Cases and how many matched in all."""

    cases: list[Case]
    total: int


class CaseStore(ABC):
    """Holds cases; see the module docstring."""

    @abstractmethod
    def ensure_ready(self) -> None:
        """Create what the store needs; idempotent."""

    @abstractmethod
    def create(self, case: Case) -> Case:
        """Keep a new case."""

    @abstractmethod
    def get(self, case_id: str) -> Case | None:
        """One case by id."""

    @abstractmethod
    def search(self, query: CaseQuery) -> CasePage:
        """Cases matching ``query``."""

    @abstractmethod
    def update(self, case_id: str, edit: CaseEdit) -> tuple[Case, Case] | None:
        """The case before and after ``edit``; None when there is no such case. CaseRefused
        from ``edit`` passes through; CaseConflict when the case kept changing."""


def _matches(case: Case, query: CaseQuery) -> bool:
    return (
        (query.status is None or case.status == query.status)
        and (query.alert_id is None or query.alert_id in case.alert_ids)
        and (query.agency is None or query.agency in case.agencies)
    )


class InMemoryCaseStore(CaseStore):
    """The test double: a dict of cases."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def ensure_ready(self) -> None:
        """Nothing to create."""

    def create(self, case: Case) -> Case:
        self.cases[case.id] = case
        return case

    def get(self, case_id: str) -> Case | None:
        return self.cases.get(case_id)

    def search(self, query: CaseQuery) -> CasePage:
        hits = sorted((c for c in self.cases.values() if _matches(c, query)), key=lambda c: c.id)
        hits.sort(key=lambda c: c.updated_at, reverse=True)
        return CasePage(cases=hits[: query.limit], total=len(hits))

    def update(self, case_id: str, edit: CaseEdit) -> tuple[Case, Case] | None:
        before = self.cases.get(case_id)
        if before is None:
            return None
        after = edit(before)
        self.cases[case_id] = after
        return before, after


_KEYWORD: Final = {"type": "keyword", "ignore_above": 1024}
_DATE: Final = {"type": "date"}
CASE_PROPERTIES: Final[dict[str, Any]] = {
    "v": {"type": "short"},
    "id": _KEYWORD,
    "title": {"type": "text", "fields": {"keyword": _KEYWORD}},
    "status": _KEYWORD,
    "created_at": _DATE,
    "created_by": _KEYWORD,
    "updated_at": _DATE,
    "closed_at": _DATE,
    "alerts": {"properties": {"id": _KEYWORD, "agency": _KEYWORD}},
    "notes": {"properties": {"at": _DATE, "by": _KEYWORD, "text": {"type": "text"}}},
    "timeline": {
        "properties": {
            "at": _DATE,
            "by": _KEYWORD,
            "action": _KEYWORD,
            # What changed: shown, not searched.
            "detail": {"type": "object", "enabled": False},
        }
    },
}
"""The strict mapping of ``<prefix>-cases``."""


class ElasticsearchCaseStore(CaseStore):
    """Cases in the index ``<prefix>-cases``."""

    MAX_ATTEMPTS = 8

    def __init__(self, client: Elasticsearch, prefix: str, replicas: int = 0) -> None:
        self.client = client
        self.index = f"{prefix}-cases"
        self.replicas = replicas

    def ensure_ready(self) -> None:
        if self.client.indices.exists(index=self.index):
            return
        try:
            self.client.indices.create(
                index=self.index,
                settings={"number_of_shards": 1, "number_of_replicas": self.replicas},
                mappings={"dynamic": "strict", "properties": CASE_PROPERTIES},
            )
        except BadRequestError as error:  # another API process made it first
            if error.error != "resource_already_exists_exception":
                raise

    def create(self, case: Case) -> Case:
        # wait_for: the analyst lists cases right after making one.
        self.client.create(
            index=self.index, id=case.id, document=_document(case), refresh="wait_for"
        )
        return case

    def get(self, case_id: str) -> Case | None:
        try:
            found = self.client.get(index=self.index, id=case_id)
        except NotFoundError:
            return None
        return Case.model_validate(found["_source"])

    def search(self, query: CaseQuery) -> CasePage:
        filters: list[dict[str, Any]] = []
        for name, value in (
            ("status", query.status),
            ("alerts.id", query.alert_id),
            ("alerts.agency", query.agency),
        ):
            if value is not None:
                filters.append({"term": {name: str(value)}})
        try:
            response = self.client.search(
                index=self.index,
                query={"bool": {"filter": filters}},
                sort=[{"updated_at": "desc"}, {"id": "asc"}],
                size=query.limit,
                track_total_hits=True,
            )
        except NotFoundError:
            return CasePage(cases=[], total=0)
        hits = response["hits"]
        return CasePage(
            cases=[Case.model_validate(hit["_source"]) for hit in hits["hits"]],
            total=hits["total"]["value"],
        )

    def update(self, case_id: str, edit: CaseEdit) -> tuple[Case, Case] | None:
        for attempt in range(self.MAX_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311
            try:
                found = self.client.get(index=self.index, id=case_id)  # real-time, versioned
            except NotFoundError:
                return None
            before = Case.model_validate(found["_source"])
            after = edit(before)
            try:
                self.client.index(
                    index=self.index,
                    id=case_id,
                    document=_document(after),
                    if_seq_no=found["_seq_no"],
                    if_primary_term=found["_primary_term"],
                    refresh="wait_for",
                )
            except ConflictError:
                continue
            return before, after
        raise CaseConflict(f"case {case_id} kept changing under us: try again")


@dataclass(frozen=True)
class CaseChange:
    """An analyst's change of a case, applied as a :data:`CaseEdit`: the title, the status,
    alerts added and removed, notes appended; each a timeline entry by ``by`` at ``at``. Alerts
    of a closed case change only when the same change reopens it. The same case object comes
    back when nothing changes."""

    by: str
    at: datetime
    title: str | None = None
    status: CaseStatus | None = None
    add: tuple[CaseAlert, ...] = ()
    remove: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __call__(self, case: Case) -> Case:
        entries: list[TimelineEntry] = []
        update: dict[str, Any] = {}
        if self.title is not None and self.title != case.title:
            update["title"] = self.title
            entries.append(self._entry("title_changed", {"from": case.title, "to": self.title}))
        if self.status is not None and self.status != case.status:
            if self.status not in CASE_TRANSITIONS[case.status]:
                allowed = ", ".join(sorted(CASE_TRANSITIONS[case.status]))
                raise CaseRefused(
                    f"case {case.id} is {case.status}: it may not become {self.status}; "
                    f"it may become {allowed}"
                )
            update["status"] = self.status
            update["closed_at"] = self.at if self.status == CaseStatus.CLOSED else None
            entries.append(
                self._entry("status_changed", {"from": case.status.value, "to": self.status.value})
            )
        held = case.alert_ids
        added = [a for a in dict((a.id, a) for a in self.add).values() if a.id not in held]
        removed = [i for i in dict.fromkeys(self.remove) if i in held]
        if added or removed:
            if update.get("status", case.status) == CaseStatus.CLOSED:
                raise CaseRefused(f"case {case.id} is closed: reopen it to change its alerts")
            kept = [a for a in case.alerts if a.id not in removed]
            update["alerts"] = [*kept, *added]
            if added:
                entries.append(self._entry("alerts_added", {"ids": [a.id for a in added]}))
            if removed:
                entries.append(self._entry("alerts_removed", {"ids": removed}))
        if self.notes:
            update["notes"] = [
                *case.notes,
                *(Note(at=self.at, by=self.by, text=text) for text in self.notes),
            ]
            entries.extend(self._entry("note_added", {"length": len(t)}) for t in self.notes)
        if not entries:
            return case
        update |= {"updated_at": self.at, "timeline": [*case.timeline, *entries]}
        return case.model_copy(update=update)

    def _entry(self, action: str, detail: dict[str, Any]) -> TimelineEntry:
        return TimelineEntry(at=self.at, by=self.by, action=action, detail=detail)


def _document(case: Case) -> dict[str, Any]:
    return case.model_dump(mode="json", exclude_none=True)


__all__ = [
    "CASE_PROPERTIES",
    "CASE_TRANSITIONS",
    "Case",
    "CaseAlert",
    "CaseChange",
    "CaseConflict",
    "CaseEdit",
    "CasePage",
    "CaseQuery",
    "CaseRefused",
    "CaseStatus",
    "CaseStore",
    "ElasticsearchCaseStore",
    "InMemoryCaseStore",
    "TimelineEntry",
]
