"""``/cases``: group alerts into cases, with notes and a timeline of every change.

- ``POST /cases`` (cases:write): a case from a title, alert ids and notes; each alert is marked
  escalated (a history entry naming the case, so ``GET /alerts/{id}`` lists its cases).
- ``GET /cases`` (cases:read): filter by status, alert or agency, most recently updated first.
- ``GET /cases/{id}`` (cases:read): one case with its notes and timeline.
- ``PATCH /cases/{id}`` (cases:write): title, status (open → in_progress → closed; a closed case
  reopens to in_progress), notes, alerts added and removed (marked on the alerts as well).

Only unscoped roles hold the case permissions today; the routes still confine an agency-scoped
caller to cases holding its agency's alerts, should the matrix ever grant them one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerting.store import AlertEdit, AlertQuery, AlertStore, ElasticsearchAlertStore
from api.cases import (
    Case,
    CaseAlert,
    CaseChange,
    CaseConflict,
    CaseQuery,
    CaseRefused,
    CaseStatus,
    CaseStore,
    ElasticsearchCaseStore,
    InMemoryCaseStore,
    TimelineEntry,
)
from api.deps import CasesReader, CasesWriter, StoreDep
from api.params import AgencyId, AlertId, NoteText, invalid
from api.security import Principal
from api.triage import escalation, removal
from socpipe.records import Note, utcnow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/cases", tags=["cases"])

MAX_ALERTS: Final = 500
_lock = threading.Lock()
_CaseId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the case's id")]


def get_cases(request: Request) -> CaseStore:
    """The app's case store: ``app.state.cases`` when the app was given one, else made on first
    use beside the alert store (in Elasticsearch when the alerts are, in memory when the alert
    store is a double)."""
    state = request.app.state
    cases: CaseStore | None = getattr(state, "cases", None)
    if cases is None:
        with _lock:
            cases = getattr(state, "cases", None)
            if cases is None:
                alerts = state.store
                if isinstance(alerts, ElasticsearchAlertStore):
                    replicas = state.settings.elasticsearch.index_replicas
                    cases = ElasticsearchCaseStore(alerts.client, alerts.prefix, replicas)
                else:
                    cases = InMemoryCaseStore()
                cases.ensure_ready()  # an error here is retried on the next request
                state.cases = cases
    return cases


CaseStoreDep = Annotated[CaseStore, Depends(get_cases)]


# --- models -------------------------------------------------------------------------------------

_Title = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
_AlertIds = Annotated[list[AlertId], Field(max_length=MAX_ALERTS)]
_Notes = Annotated[list[NoteText], Field(max_length=20)]


class CaseCreate(BaseModel):
    """A new case: its title, the alerts it starts with, and first notes."""

    model_config = ConfigDict(extra="forbid")

    title: _Title
    alert_ids: _AlertIds = []
    notes: _Notes = []


class CasePatch(BaseModel):
    """Changes to a case; at least one. Alerts already in the case (to add) or not in it (to
    remove) are left as they are."""

    model_config = ConfigDict(extra="forbid")

    title: _Title | None = None
    status: CaseStatus | None = None
    notes: _Notes = []
    add_alerts: _AlertIds = []
    remove_alerts: _AlertIds = []

    @model_validator(mode="after")
    def _something(self) -> CasePatch:
        if (
            self.title is None
            and self.status is None
            and not (self.notes or self.add_alerts or self.remove_alerts)
        ):
            raise ValueError("say what to change: title, status, notes, add_alerts, remove_alerts")
        both = set(self.add_alerts) & set(self.remove_alerts)
        if both:
            raise ValueError(f"alerts both added and removed: {', '.join(sorted(both))}")
        return self


class CasePublic(BaseModel):
    """A case as the API shows it."""

    id: str
    title: str
    status: CaseStatus
    created_at: datetime
    created_by: str
    updated_at: datetime
    closed_at: datetime | None = None
    alert_ids: list[str]
    agencies: list[str]
    notes: list[Note]
    timeline: list[TimelineEntry]

    @classmethod
    def from_case(cls, case: Case) -> CasePublic:
        """The public view of ``case``."""
        return cls(
            id=case.id,
            title=case.title,
            status=case.status,
            created_at=case.created_at,
            created_by=case.created_by,
            updated_at=case.updated_at,
            closed_at=case.closed_at,
            alert_ids=case.alert_ids,
            agencies=case.agencies,
            notes=case.notes,
            timeline=case.timeline,
        )


class CasesPage(BaseModel):
    """Cases, most recently updated first, and how many matched in all."""

    data: list[CasePublic]
    total: int


# --- routes -------------------------------------------------------------------------------------


@router.post(
    "",
    response_model=CasePublic,
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "an alert id that does not exist"}},
)
def create_case(
    body: CaseCreate,
    cases: CaseStoreDep,
    store: StoreDep,
    caller: CasesWriter,
    request: Request,
) -> CasePublic:
    """Open a case with its alerts and notes; each alert is marked escalated into it."""
    now = utcnow()
    case_id = uuid.uuid4().hex
    request.state.audit = {
        "target_type": "case",
        "target_id": case_id,
        "detail": {"title": body.title, "alert_ids": body.alert_ids, "notes": len(body.notes)},
    }
    alerts = _existing_alerts(store, body.alert_ids, caller, "alert_ids")
    created = TimelineEntry(
        at=now,
        by=caller.name,
        action="created",
        detail={"title": body.title, "alert_ids": [a.id for a in alerts]},
    )
    case = cases.create(
        Case(
            id=case_id,
            title=body.title,
            created_at=now,
            created_by=caller.name,
            updated_at=now,
            alerts=alerts,
            notes=[Note(at=now, by=caller.name, text=text) for text in body.notes],
            timeline=[created],
        )
    )
    _mark(store, case.alert_ids, escalation(case.id, case.title, by=caller.name, at=now))
    return CasePublic.from_case(case)


@router.get("", response_model=CasesPage)
def list_cases(
    cases: CaseStoreDep,
    caller: CasesReader,
    status_: Annotated[CaseStatus | None, Query(alias="status")] = None,
    alert_id: AlertId | None = None,
    agency: AgencyId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CasesPage:
    """Cases matching the filters (``alert_id``: the cases holding that alert)."""
    query = CaseQuery(
        status=status_, alert_id=alert_id, agency=caller.scope_agency(agency), limit=limit
    )
    page = cases.search(query)
    return CasesPage(data=[CasePublic.from_case(c) for c in page.cases], total=page.total)


@router.get("/{case_id}", response_model=CasePublic)
def read_case(case_id: _CaseId, cases: CaseStoreDep, caller: CasesReader) -> CasePublic:
    """One case with its notes and timeline."""
    return CasePublic.from_case(_visible(cases, case_id, caller))


@router.patch(
    "/{case_id}",
    response_model=CasePublic,
    responses={
        404: {"description": "no such case"},
        409: {"description": "a change the case's status does not allow"},
        422: {"description": "an alert id that does not exist"},
    },
)
def update_case(
    case_id: _CaseId,
    body: CasePatch,
    cases: CaseStoreDep,
    store: StoreDep,
    caller: CasesWriter,
    request: Request,
) -> CasePublic:
    """Change a case's title or status, add notes, add or remove alerts; each change is a
    timeline entry, and added or removed alerts are marked on the alerts too. Open →
    in_progress → closed (open may close at once); a closed case reopens to in_progress, and its
    alerts change only with a reopening. A refused change is a 409 saying why."""
    request.state.audit = {
        "target_type": "case",
        "target_id": case_id,
        "detail": body.model_dump(mode="json", exclude_defaults=True, exclude={"notes"})
        | ({"notes": len(body.notes)} if body.notes else {}),
    }
    _visible(cases, case_id, caller)
    now = utcnow()
    change = CaseChange(
        by=caller.name,
        at=now,
        title=body.title,
        status=body.status,
        add=tuple(_existing_alerts(store, body.add_alerts, caller, "add_alerts")),
        remove=tuple(body.remove_alerts),
        notes=tuple(body.notes),
    )
    try:
        result = cases.update(case_id, change)
    except (CaseRefused, CaseConflict) as refusal:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(refusal)) from refusal
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no case {case_id}")
    before, after = result
    added = [i for i in after.alert_ids if i not in before.alert_ids]
    removed = [i for i in before.alert_ids if i not in after.alert_ids]
    _mark(store, added, escalation(case_id, after.title, by=caller.name, at=now))
    _mark(store, removed, removal(case_id, by=caller.name, at=now))
    return CasePublic.from_case(after)


def _visible(cases: CaseStore, case_id: str, caller: Principal) -> Case:
    """The case, if it exists and ``caller`` may see it; else 404 (the same for both)."""
    case = cases.get(case_id)
    if case is None or (caller.agency is not None and caller.agency not in case.agencies):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no case {case_id}")
    return case


def _existing_alerts(
    store: AlertStore, ids: Sequence[str], caller: Principal, field: str
) -> list[CaseAlert]:
    """The alerts of ``ids`` with their agencies, in order; 422 naming those that do not
    exist (or that ``caller`` may not see)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    page = store.search(AlertQuery(ids=tuple(wanted), agency=caller.agency, limit=len(wanted)))
    agencies = {alert.id: alert.entities.agency for alert in page.alerts}
    missing = [i for i in wanted if i not in agencies]
    if missing:
        shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
        raise invalid("body", field, f"no alert {shown}", missing[:20])
    return [CaseAlert(id=i, agency=agencies[i]) for i in wanted]


def _mark(store: AlertStore, alert_ids: list[str], edit: AlertEdit) -> None:
    """Record on each alert its escalation into (or removal from) a case. The case is the
    record of truth: a mark that fails is logged, not an error of the request."""
    if not alert_ids:
        return
    for update in store.update_many(alert_ids, edit):
        if update.outcome in ("failed", "not_found", "refused"):
            log.warning(
                "alert %s not marked for its case: %s", update.alert_id, update.reason or "gone"
            )
