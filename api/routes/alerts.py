"""``/alerts``: list and read alerts; agency-scoped users see only their agency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel

from alerting.store import AlertQuery
from api.deps import AlertsReader, StoreDep
from socpipe.records import Alert, AlertStatus, DetectorRef, Entities, RuleRef, Severity

router = APIRouter(prefix="/alerts", tags=["alerts"])


class AlertPublic(BaseModel):
    """An alert as the API shows it."""

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
    events: list[dict[str, Any]] = []

    @classmethod
    def from_alert(cls, alert: Alert, *, with_events: bool = False) -> AlertPublic:
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
            events=alert.events if with_events else [],
        )


class AlertsPublic(BaseModel):
    """A page of alerts and how many matched."""

    data: list[AlertPublic]
    total: int


@router.get("", response_model=AlertsPublic)
def list_alerts(
    store: StoreDep,
    user: AlertsReader,
    status_: Annotated[AlertStatus | None, Query(alias="status")] = None,
    severity: Severity | None = None,
    agency: str | None = None,
    rule_id: str | None = None,
    host: str | None = None,
    q: Annotated[str | None, Query(max_length=200, description="free text")] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AlertsPublic:
    """Alerts matching the filters, most recently seen first."""
    query = AlertQuery(
        status=status_,
        severity=severity,
        agency=user.scope_agency(agency),
        rule_id=rule_id,
        host=host,
        text=q,
        since=since,
        until=until,
        limit=limit,
    )
    page = store.search(query)
    return AlertsPublic(data=[AlertPublic.from_alert(a) for a in page.alerts], total=page.total)


@router.get("/{alert_id}", response_model=AlertPublic)
def read_alert(alert_id: str, store: StoreDep, user: AlertsReader) -> AlertPublic:
    """One alert with copies of its triggering events."""
    alert = store.get(alert_id)
    # An agency-scoped user gets the same 404 for another agency's alert as for none at all.
    if alert is None or (user.agency is not None and alert.entities.agency != user.agency):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no alert {alert_id}")
    return AlertPublic.from_alert(alert, with_events=True)
