"""Who is calling and what they may do: API keys, socpipe's own signed tokens, and the role
matrix, all enforced on the server.

A caller presents ``Authorization: Bearer <credential>``; the credential is either an API key
of ``api.tokens`` (automation; compared in constant time with every key, never logged) or an
access token this API issued (:class:`TokenIssuer`: HS256 JWTs, ``typ`` access or refresh,
short-lived) after a password or OIDC sign-in (``api/routes/auth.py``). Every route but
``/health`` depends on :func:`require` with the :class:`Permission` it needs; :data:`GRANTS`
says which roles hold which permission. An agency-scoped principal (agency_viewer, collector)
carries its agency, and every query it makes is confined to it on the server
(:meth:`Principal.scope_agency`).
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from socpipe.settings import SCOPED_ROLES, ApiSettings, ApiToken, Role, read_secret_file

Method = Literal["api_key", "password", "oidc"]
TokenType = Literal["access", "refresh"]
_ISSUER: Final = "socpipe"


class Permission(StrEnum):
    """What a route needs."""

    ALERTS_READ = "alerts:read"
    ALERTS_TRIAGE = "alerts:triage"
    CASES_READ = "cases:read"
    CASES_WRITE = "cases:write"
    STATS_READ = "stats:read"
    RULES_READ = "rules:read"
    RULES_WRITE = "rules:write"
    EXCEPTIONS_WRITE = "exceptions:write"
    COLLECTORS_READ = "collectors:read"
    COLLECTORS_ENROLL = "collectors:enroll"
    AUDIT_READ = "audit:read"
    USERS_MANAGE = "users:manage"
    METRICS_READ = "metrics:read"
    INGEST = "ingest"


_READ_TRIAGE: Final = {Permission.ALERTS_READ, Permission.STATS_READ}
GRANTS: Final[dict[Role, frozenset[Permission]]] = {
    Role.SOC_ADMIN: frozenset(Permission) - {Permission.INGEST},
    Role.RULE_AUTHOR: frozenset(
        _READ_TRIAGE
        | {Permission.RULES_READ, Permission.RULES_WRITE, Permission.EXCEPTIONS_WRITE}
        | {Permission.CASES_READ}
    ),
    Role.ANALYST: frozenset(
        _READ_TRIAGE
        | {Permission.ALERTS_TRIAGE, Permission.CASES_READ, Permission.CASES_WRITE}
        | {Permission.RULES_READ, Permission.COLLECTORS_READ}
    ),
    Role.AGENCY_VIEWER: frozenset(_READ_TRIAGE | {Permission.COLLECTORS_READ}),
    Role.COLLECTOR: frozenset({Permission.INGEST}),
}
"""Which roles hold which permission: the matrix the role tests check on every route."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: name, role, the agency a scoped role is confined to, and how they
    proved it."""

    name: str
    role: Role
    agency: str | None
    method: Method = "api_key"

    def can(self, permission: Permission) -> bool:
        """Whether the role holds ``permission``."""
        return permission in GRANTS[self.role]

    def scope_agency(self, requested: str | None) -> str | None:
        """The agency filter to apply: a scoped principal sees only its own agency (asking
        for another is a 403), others what they ask for (None: all)."""
        if self.agency is None:
            return requested
        if requested is not None and requested != self.agency:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this account may only read agency {self.agency}"
            )
        return self.agency


def principal_of(role: Role, name: str, agency: str | None, method: Method) -> Principal:
    """A principal, its agency kept only for the scoped roles (an analyst is never confined)."""
    return Principal(name, role, agency if role in SCOPED_ROLES else None, method)


class TokenIssuer:
    """Issues and checks socpipe's own access and refresh tokens (HS256 JWTs)."""

    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._secret = secret
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> TokenIssuer:
        """The issuer of ``settings``; a random key (tokens die with the process) without one."""
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value()
        elif settings.jwt_secret_file is not None:
            secret = read_secret_file(settings.jwt_secret_file, "api.jwt_secret_file")
        else:
            secret = secrets.token_urlsafe(48)
        return cls(secret, settings.access_ttl_s, settings.refresh_ttl_s)

    def issue(self, principal: Principal, kind: TokenType, *, now: float | None = None) -> str:
        """A signed token of ``kind`` for ``principal``."""
        issued = int(now if now is not None else time.time())
        ttl = self.access_ttl_s if kind == "access" else self.refresh_ttl_s
        claims: dict[str, Any] = {
            "iss": _ISSUER,
            "sub": principal.name,
            "role": principal.role.value,
            "amr": principal.method,
            "typ": kind,
            "iat": issued,
            "exp": issued + ttl,
            "jti": uuid.uuid4().hex,
        }
        if principal.agency is not None:
            claims["agency"] = principal.agency
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, kind: TokenType) -> Principal | None:
        """The principal of a valid, unexpired token of ``kind``; None for anything else."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=_ISSUER,
                options={"require": ["exp", "iat", "sub", "typ", "role"]},
            )
            if claims["typ"] != kind:
                return None
            role = Role(claims["role"])
        except (jwt.InvalidTokenError, ValueError, KeyError):
            return None
        method: Method = "oidc" if claims.get("amr") == "oidc" else "password"
        return principal_of(role, str(claims["sub"]), claims.get("agency"), method)


class Authenticator:
    """Maps a presented bearer credential to its principal: an API key, else an access
    token."""

    def __init__(self, tokens: list[ApiToken], issuer: TokenIssuer) -> None:
        self._keys = [(t.token.get_secret_value().encode(), t) for t in tokens]
        self.issuer = issuer

    def authenticate(self, presented: str) -> Principal | None:
        """The principal for ``presented``, or None. Checks every key to keep timing flat."""
        found: ApiToken | None = None
        candidate = presented.encode()
        for secret, token in self._keys:
            if hmac.compare_digest(secret, candidate):
                found = token
        if found is not None:
            return principal_of(found.role, found.name, found.agency, "api_key")
        if presented.count(".") == 2:  # a JWT's shape
            return self.issuer.verify(presented, "access")
        return None


_bearer = HTTPBearer(
    auto_error=False, description="An API key, or an access token from POST /auth/token"
)


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller; 401 without a valid credential."""
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing, invalid or expired bearer credential",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.principal = principal  # for the audit trail
    return principal


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency: the caller, if its role holds ``permission``; else 403."""

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role.value} may not {permission.value}",
            )
        return principal

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


__all__ = [
    "GRANTS",
    "Authenticator",
    "Permission",
    "Principal",
    "TokenIssuer",
    "get_principal",
    "principal_of",
    "require",
]
