"""Dependencies shared by the routes, as ``Annotated`` aliases: the stores, and the caller
holding the permission a route needs (``api.security.require``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from alerting.store import AlertStore
from api.audit import AuditLog
from api.security import Permission, Principal, get_principal, require
from api.users import UserStore


def get_store(request: Request) -> AlertStore:
    """The app's alert store."""
    store: AlertStore = request.app.state.store
    return store


def get_users(request: Request) -> UserStore:
    """The app's user store."""
    users: UserStore = request.app.state.users
    return users


def get_audit(request: Request) -> AuditLog:
    """The app's audit trail."""
    audit: AuditLog = request.app.state.audit
    return audit


StoreDep = Annotated[AlertStore, Depends(get_store)]
UsersDep = Annotated[UserStore, Depends(get_users)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
CurrentUser = Annotated[Principal, Depends(get_principal)]
AlertsReader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]
AlertsTriager = Annotated[Principal, Depends(require(Permission.ALERTS_TRIAGE))]
CasesReader = Annotated[Principal, Depends(require(Permission.CASES_READ))]
CasesWriter = Annotated[Principal, Depends(require(Permission.CASES_WRITE))]
StatsReader = Annotated[Principal, Depends(require(Permission.STATS_READ))]
RulesReader = Annotated[Principal, Depends(require(Permission.RULES_READ))]
RulesWriter = Annotated[Principal, Depends(require(Permission.RULES_WRITE))]
ExceptionsWriter = Annotated[Principal, Depends(require(Permission.EXCEPTIONS_WRITE))]
CollectorsReader = Annotated[Principal, Depends(require(Permission.COLLECTORS_READ))]
CollectorsEnroller = Annotated[Principal, Depends(require(Permission.COLLECTORS_ENROLL))]
AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
UsersManager = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
Ingester = Annotated[Principal, Depends(require(Permission.INGEST))]
