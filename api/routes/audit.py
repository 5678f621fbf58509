"""``/audit``: read the audit trail (audit:read, soc_admin only); nothing here writes it, and
reading it is not recorded (``api/audit.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.audit import AuditQuery
from api.deps import AuditDep, AuditReader
from api.params import ApiTime, check_range

router = APIRouter(prefix="/audit", tags=["audit"])

Outcome = Literal["success", "failure"]


class AuditEntryPublic(BaseModel):
    """One request that changed (or tried to change) something: who, from where, what,
    with what outcome."""

    at: datetime
    id: str
    action: str
    outcome: str
    reason: str | None = None
    user: str | None = None
    roles: list[str] = []
    agency: str | None = None
    source_ip: str | None = None
    method: str | None = None
    path: str | None = None
    status_code: int | None = None
    request_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    detail: dict[str, Any] | list[Any] | str | None = None

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> AuditEntryPublic:
        """The public view of a stored (ECS-shaped) entry."""
        event = entry.get("event", {})
        user = entry.get("user", {})
        http = entry.get("http", {})
        target = entry.get("target", {})
        return cls(
            at=entry["@timestamp"],
            id=str(event.get("id", "")),
            action=str(event.get("action", "")),
            outcome=str(event.get("outcome", "")),
            reason=event.get("reason"),
            user=user.get("name"),
            roles=list(user.get("roles", [])),
            agency=user.get("agency"),
            source_ip=entry.get("source", {}).get("ip") or entry.get("source", {}).get("address"),
            method=http.get("request", {}).get("method"),
            path=entry.get("url", {}).get("path"),
            status_code=http.get("response", {}).get("status_code"),
            request_id=http.get("request", {}).get("id"),
            target_type=target.get("type"),
            target_id=target.get("id"),
            detail=entry.get("detail"),
        )


class AuditPage(BaseModel):
    """Entries, newest first."""

    data: list[AuditEntryPublic]


@router.get("", response_model=AuditPage)
def read_audit(
    audit: AuditDep,
    _caller: AuditReader,
    user: Annotated[str | None, Query(max_length=64, description="who")] = None,
    action: Annotated[
        str | None, Query(max_length=128, description="the route's name, e.g. update_alert")
    ] = None,
    outcome: Outcome | None = None,
    since: ApiTime | None = None,
    until: ApiTime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Entries of the trail matching every filter given, newest first."""
    check_range(since, until)
    query = AuditQuery(
        user=user, action=action, outcome=outcome, since=since, until=until, limit=limit
    )
    return AuditPage(data=[AuditEntryPublic.from_entry(e) for e in audit.search(query)])
