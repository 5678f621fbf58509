"""``/alerts``: search, read and triage alerts; agency-scoped users see only their agency.

- ``GET /alerts`` (alerts:read): filters, a sort, and pages cut by an opaque cursor.
- ``GET /alerts/{id}`` (alerts:read): one alert with its triggering events, notes and history.
- ``PATCH /alerts/{id}`` (alerts:triage): status, assignee, comment (``api/triage.py`` says
  which transitions are allowed).
- ``POST /alerts/bulk`` (alerts:triage): one action on many alerts, a result per alert.

An agency-scoped caller's agency is part of every store query; another agency's alert is a 404,
as if it did not exist. Changes are written with optimistic concurrency (``AlertStore.update``),
so a fold of new detections and an analyst's change never undo each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerting.queries import AlertSort, SortOrder
from alerting.store import AlertQuery, AlertUpdate, UpdateOutcome
from api.cursors import CursorsDep, InvalidCursor, fingerprint
from api.deps import AlertsReader, AlertsTriager, StoreDep
from api.params import (
    ALERT_ID_PATTERN,
    AddressOrNetwork,
    AgencyId,
    AlertId,
    ApiTime,
    NoteText,
    Reason,
    Tactic,
    Technique,
    UserName,
    check_range,
)
from api.triage import TriageChange, Verdict, cases_of, closing_problem, status_for
from socpipe.records import (
    Alert,
    AlertStatus,
    AnomalyDetail,
    DetectorRef,
    Entities,
    HistoryEntry,
    Note,
    RuleRef,
    Severity,
    utcnow,
)
from socpipe.settings import Tier

router = APIRouter(prefix="/alerts", tags=["alerts"])

MAX_BULK: Final = 500
_CURSOR_VERSION: Final = 1
_PathId = Annotated[str, Path(pattern=ALERT_ID_PATTERN, description="the alert's id")]


# --- models -------------------------------------------------------------------------------------


class AlertPublic(BaseModel):
    """An alert as the API shows it; a list leaves out its events, notes and history."""

    id: str
    status: AlertStatus
    severity: Severity
    risk_score: int
    count: int
    first_seen: datetime
    last_seen: datetime
    rule: RuleRef
    # Which detector judged (sigma, check...) and the version of its rule set.
    detector: DetectorRef
    entities: Entities
    assignee: str | None = None
    verdict: str | None = None
    cases: list[str] = []
    events: list[dict[str, Any]] = []
    # The anomaly detector's alerts: score, threshold and the features that drove the score.
    anomaly: AnomalyDetail | None = None
    notes: list[Note] = []
    history: list[HistoryEntry] = []

    @classmethod
    def from_alert(cls, alert: Alert, *, with_events: bool = False) -> AlertPublic:
        """The public view of ``alert``; ``with_events`` adds events, notes and history."""
        return cls(
            id=alert.id,
            status=alert.status,
            severity=alert.severity,
            risk_score=alert.risk_score,
            count=alert.count,
            first_seen=alert.first_seen,
            last_seen=alert.last_seen,
            rule=alert.rule,
            detector=alert.detector,
            entities=alert.entities,
            assignee=alert.assignee,
            verdict=alert.verdict,
            cases=cases_of(alert),
            events=alert.events if with_events else [],
            anomaly=alert.anomaly,
            notes=alert.notes if with_events else [],
            history=alert.history if with_events else [],
        )


class AlertsPage(BaseModel):
    """A page of alerts, how many matched in all, and the cursor of the next page (None on the
    last one)."""

    data: list[AlertPublic]
    total: int
    # False when ``total`` is a floor ("10,000 or more"): counting a million matches exactly
    # would cost more than the page.
    total_exact: bool = True
    next_cursor: str | None = None


class AlertPatch(BaseModel):
    """Changes to one alert, applied in this order: ``assignee`` (null unassigns), ``status``
    (closing needs ``verdict`` and ``reason``; reopening, to in_progress, a ``reason``),
    ``comment``. At least one is needed."""

    model_config = ConfigDict(extra="forbid")

    status: AlertStatus | None = None
    verdict: Verdict | None = None
    reason: Reason | None = None
    assignee: UserName | None = None
    comment: NoteText | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AlertPatch:
        if self.status is None and self.comment is None and "assignee" not in self.model_fields_set:
            raise ValueError("say what to change: status, assignee or comment")
        problem = closing_problem(self.status, self.verdict, self.reason)
        if problem is not None:
            raise ValueError(problem)
        if self.verdict is not None and self.status not in (
            AlertStatus.RESOLVED,
            AlertStatus.FALSE_POSITIVE,
        ):
            raise ValueError("a verdict goes only with the status resolved or false_positive")
        return self

    def change(self, by: str, at: datetime) -> TriageChange:
        """The change this patch asks of an alert."""
        return TriageChange(
            by=by,
            at=at,
            status=self.status,
            verdict=self.verdict,
            reason=self.reason,
            assign="assignee" in self.model_fields_set,
            assignee=self.assignee,
            comment=self.comment,
        )


_Ids = Annotated[
    list[AlertId],
    Field(min_length=1, max_length=MAX_BULK, description=f"1 to {MAX_BULK} alert ids"),
]


class BulkAcknowledge(BaseModel):
    """Acknowledge each alert (those already further along are refused, per alert)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["acknowledge"]
    ids: _Ids


class BulkAssign(BaseModel):
    """Assign each alert to ``assignee`` (null unassigns)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["assign"]
    ids: _Ids
    assignee: UserName | None


class BulkResolve(BaseModel):
    """Close each alert with ``verdict`` and ``reason``: as false_positive for the verdict
    false_positive, else as resolved."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["resolve"]
    ids: _Ids
    verdict: Verdict
    reason: Reason


class BulkComment(BaseModel):
    """Add the comment ``text`` to each alert."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["comment"]
    ids: _Ids
    text: NoteText


AlertsBulk = Annotated[
    BulkAcknowledge | BulkAssign | BulkResolve | BulkComment, Field(discriminator="action")
]


class BulkItemResult(BaseModel):
    """What happened to one alert of a bulk action; ``detail`` says why it was refused or
    failed."""

    id: str
    outcome: UpdateOutcome
    status: AlertStatus | None = None
    detail: str | None = None


class AlertsBulkResult(BaseModel):
    """A result per alert, in the order asked, and how many of each outcome."""

    results: list[BulkItemResult]
    counts: dict[UpdateOutcome, int]


# --- routes -------------------------------------------------------------------------------------


@router.get(
    "",
    response_model=AlertsPage,
    responses={400: {"description": "the cursor is not valid for this query"}},
)
def list_alerts(
    store: StoreDep,
    caller: AlertsReader,
    cursors: CursorsDep,
    status_: Annotated[
        list[AlertStatus] | None, Query(alias="status", max_length=5, description="any of")
    ] = None,
    severity: Annotated[list[Severity] | None, Query(max_length=5, description="any of")] = None,
    agency: AgencyId | None = None,
    tier: Tier | None = None,
    rule_id: Annotated[str | None, Query(max_length=200)] = None,
    tactic: Tactic | None = None,
    technique: Technique | None = None,
    host: Annotated[str | None, Query(max_length=255)] = None,
    user: Annotated[str | None, Query(max_length=255)] = None,
    source_ip: Annotated[
        AddressOrNetwork | None, Query(description="an address or a CIDR network")
    ] = None,
    since: Annotated[ApiTime | None, Query(description="last seen at or after")] = None,
    until: Annotated[ApiTime | None, Query(description="last seen at or before")] = None,
    q: Annotated[str | None, Query(max_length=200, description="free text")] = None,
    sort: AlertSort = "last_seen",
    order: SortOrder = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="next_cursor of the previous page")
    ] = None,
) -> AlertsPage:
    """Alerts matching every filter given, sorted (most recently seen first by default, the id
    breaking ties), a page at a time: pass ``next_cursor`` as ``cursor`` with the same filters
    and sort for the next page."""
    check_range(since, until)
    query = AlertQuery(
        status=tuple(status_ or ()),
        severity=tuple(severity or ()),
        agency=caller.scope_agency(agency),
        rule_id=rule_id,
        host=host,
        text=q,
        since=since,
        until=until,
        limit=limit,
        tier=tier,
        tactic=tactic,
        technique=technique,
        user=user,
        source_ip=source_ip,
        sort=sort,
        order=order,
    )
    bound = fingerprint(query.filters())
    if cursor is not None:
        query = _resume(query, cursor, bound, cursors.decode)
    page = store.search(query)
    next_cursor = None
    if page.next_after is not None:
        value, last_id = page.next_after
        next_cursor = cursors.encode(
            {"v": _CURSOR_VERSION, "s": sort, "o": order, "f": bound, "k": [value, last_id]}
        )
    return AlertsPage(
        data=[AlertPublic.from_alert(a) for a in page.alerts],
        total=page.total,
        total_exact=page.total_exact,
        next_cursor=next_cursor,
    )


def _resume(
    query: AlertQuery, cursor: str, bound: str, decode: Callable[[str], dict[str, Any]]
) -> AlertQuery:
    """``query`` from where ``cursor`` left it; 400 when the cursor is not for this query."""
    try:
        payload = decode(cursor)
        if payload.get("v") != _CURSOR_VERSION:
            raise InvalidCursor("the cursor is of another version of this API: start again")
        if payload.get("s") != query.sort or payload.get("o") != query.order:
            raise InvalidCursor("the cursor belongs to another sort: start again")
        if payload.get("f") != bound:
            raise InvalidCursor("the cursor belongs to other filters: start again")
        key = payload.get("k")
        if not (
            isinstance(key, list)
            and len(key) == 2
            and isinstance(key[0], int)
            and isinstance(key[1], str)
        ):
            raise InvalidCursor("the cursor is not readable: start again")
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"bad cursor: {exc}") from exc
    return replace(query, after=(key[0], key[1]))


@router.get("/{alert_id}", response_model=AlertPublic)
def read_alert(alert_id: _PathId, store: StoreDep, caller: AlertsReader) -> AlertPublic:
    """One alert with copies of its triggering events, its notes and its history."""
    # An agency-scoped user gets the same 404 for another agency's alert as for none at all.
    alert = store.get(alert_id, agency=caller.agency)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no alert {alert_id}")
    return AlertPublic.from_alert(alert, with_events=True)


@router.patch(
    "/{alert_id}",
    response_model=AlertPublic,
    responses={
        404: {"description": "no such alert"},
        409: {"description": "a transition the triage rules do not allow"},
    },
)
def update_alert(
    alert_id: _PathId,
    patch: AlertPatch,
    store: StoreDep,
    caller: AlertsTriager,
    request: Request,
) -> AlertPublic:
    """Change an alert's status, assignee or comments; each change is a history entry by the
    caller. Transitions: new → acknowledged → in_progress → resolved | false_positive (new and
    acknowledged may skip ahead); closing needs a verdict and a reason; a closed alert only
    reopens to in_progress, with a reason. A refused transition is a 409 saying what is
    allowed."""
    request.state.audit = {"target_type": "alert", "target_id": alert_id, "detail": _said(patch)}
    result = store.update(alert_id, patch.change(caller.name, utcnow()), agency=caller.agency)
    if result.outcome == "not_found":
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no alert {alert_id}")
    if result.outcome == "refused":
        raise HTTPException(status.HTTP_409_CONFLICT, detail=result.reason)
    if result.outcome == "failed" or result.alert is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"alert {alert_id} not changed: {result.reason}"
        )
    request.state.audit["detail"]["outcome"] = result.outcome
    return AlertPublic.from_alert(result.alert, with_events=True)


@router.post(
    "/bulk",
    response_model=AlertsBulkResult,
    responses={200: {"description": "a result per alert, whatever each outcome"}},
)
def bulk_alerts(
    body: AlertsBulk,
    store: StoreDep,
    caller: AlertsTriager,
    request: Request,
) -> AlertsBulkResult:
    """One action on up to 500 alerts: acknowledge, assign, resolve (with verdict and reason)
    or comment. Each alert gets its own outcome (updated, unchanged, not_found, refused,
    failed); the answer is 200 whatever they are."""
    by, at = caller.name, utcnow()
    if isinstance(body, BulkAcknowledge):
        change = TriageChange(by=by, at=at, status=AlertStatus.ACKNOWLEDGED)
    elif isinstance(body, BulkAssign):
        change = TriageChange(by=by, at=at, assign=True, assignee=body.assignee)
    elif isinstance(body, BulkResolve):
        change = TriageChange(
            by=by, at=at, status=status_for(body.verdict), verdict=body.verdict, reason=body.reason
        )
    else:
        change = TriageChange(by=by, at=at, comment=body.text)
    updates = store.update_many(body.ids, change, agency=caller.agency)
    results = [_result(update) for update in updates]
    counts: dict[UpdateOutcome, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    request.state.audit = {
        "target_type": "alert",
        "target_id": "bulk",
        "detail": {"action": body.action, "ids": [r.id for r in results], "counts": counts},
    }
    return AlertsBulkResult(results=results, counts=counts)


def _result(update: AlertUpdate) -> BulkItemResult:
    return BulkItemResult(
        id=update.alert_id,
        outcome=update.outcome,
        status=update.alert.status if update.alert is not None else None,
        detail=update.reason,
    )


def _said(patch: AlertPatch) -> dict[str, Any]:
    """What a patch asked, for the audit trail (a comment's length, not its text)."""
    said: dict[str, Any] = patch.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    if patch.comment is not None:
        said["comment_length"] = len(patch.comment)
    return said
