"""``/auth``: sign in with a password or through the province's identity provider (OIDC), refresh,
and who am I. Sign-ins are rate-limited per client address and recorded in the audit trail.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Literal

import httpx
import jwt
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentUser, UsersDep
from api.security import Principal, TokenIssuer, principal_of
from socpipe.settings import Language, OidcSettings, Role

router = APIRouter(prefix="/auth", tags=["auth"])


class PasswordSignIn(BaseModel):
    """A local user's name and password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    """A refresh token from an earlier sign-in."""

    refresh_token: str = Field(min_length=10, max_length=4096)


class OidcSignIn(BaseModel):
    """An ID token the identity provider gave the console."""

    id_token: str = Field(min_length=10, max_length=16384)


class TokenPair(BaseModel):
    """socpipe's tokens: send the access token as ``Authorization: Bearer``."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth type name, no secret)
    expires_in: int
    role: Role
    agency: str | None = None


class Me(BaseModel):
    """The caller as the server sees it; ``language`` is a local user's chosen one (None for
    API keys and single sign-on users, whose console remembers it in the browser)."""

    name: str
    role: Role
    agency: str | None
    method: str
    language: Language | None = None


class MePatch(BaseModel):
    """What a user may change about themselves."""

    model_config = ConfigDict(extra="forbid")
    language: Language


class SignInLimiter:
    """At most ``per_minute`` sign-in attempts per client address in any 60 s."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str, now: float | None = None) -> None:
        """Count an attempt; 429 with Retry-After when over the limit."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            attempts = self._attempts.setdefault(address, deque())
            while attempts and attempts[0] <= moment - 60:
                attempts.popleft()
            if len(attempts) >= self.per_minute:
                wait = int(attempts[0] + 60 - moment) + 1
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    detail="too many sign-in attempts from this address; wait and try again",
                    headers={"Retry-After": str(wait)},
                )
            attempts.append(moment)
            if len(self._attempts) > 100_000:  # addresses that stopped trying
                self._attempts = {k: v for k, v in self._attempts.items() if v}


def _limited(request: Request) -> None:
    limiter: SignInLimiter = request.app.state.signin_limiter
    limiter.check(request.client.host if request.client else "unknown")


SignInLimited = Depends(_limited)


def _pair(request: Request, principal: Principal) -> TokenPair:
    issuer: TokenIssuer = request.app.state.issuer
    request.state.principal = principal
    return TokenPair(
        access_token=issuer.issue(principal, "access"),
        refresh_token=issuer.issue(principal, "refresh"),
        expires_in=issuer.access_ttl_s,
        role=principal.role,
        agency=principal.agency,
    )


_REFUSED = HTTPException(
    status.HTTP_401_UNAUTHORIZED,
    detail="wrong user name or password",
    headers={"WWW-Authenticate": "Bearer"},
)


@router.post("/token", response_model=TokenPair, dependencies=[SignInLimited])
def sign_in(body: PasswordSignIn, request: Request, users: UsersDep) -> TokenPair:
    """Sign a local user in: an access token (short-lived) and a refresh token."""
    request.state.audit = {"target_type": "user", "target_id": body.username}
    user = users.verify(body.username, body.password)
    if user is None:
        raise _REFUSED
    return _pair(request, principal_of(user.role, user.username, user.agency, "password"))


@router.post("/refresh", response_model=TokenPair, dependencies=[SignInLimited])
def refresh(body: RefreshRequest, request: Request, users: UsersDep) -> TokenPair:
    """New tokens for a valid refresh token of a user who still exists and is enabled (with
    the role the user has now)."""
    issuer: TokenIssuer = request.app.state.issuer
    old = issuer.verify(body.refresh_token, "refresh")
    if old is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid or expired token")
    if old.method == "password":
        user = users.get(old.name)
        if user is None or user.disabled:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="the user is gone or disabled")
        old = principal_of(user.role, user.username, user.agency, "password")
    return _pair(request, old)


class OidcVerifier:
    """Checks ID tokens of the configured issuer and maps their claims to a principal."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._client: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _keys(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._client is None:
                uri = self.settings.jwks_uri or self._discover()
                self._client = jwt.PyJWKClient(uri, cache_keys=True, lifespan=3600, timeout=10)
            return self._client

    def _discover(self) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        verify: Any = str(self.settings.ca_file) if self.settings.ca_file else True
        answer = httpx.get(url, timeout=10, verify=verify)
        answer.raise_for_status()
        return str(answer.json()["jwks_uri"])

    def verify(self, token: str) -> Principal:
        """The principal of a valid ID token; 401 or 403 saying why not."""
        try:
            key = self._keys().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=self.settings.algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except (jwt.InvalidTokenError, jwt.PyJWKClientError, httpx.HTTPError) as error:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail=f"ID token refused: {error}"
            ) from error
        name = claims.get(self.settings.username_claim) or claims.get("sub")
        role = self._role(claims.get(self.settings.role_claim))
        if not isinstance(name, str) or role is None:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail="the identity provider gives this user no role"
            )
        agency = claims.get(self.settings.agency_claim)
        return principal_of(role, name, agency if isinstance(agency, str) else None, "oidc")

    def _role(self, value: Any) -> Role | None:
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        mapped = [self.settings.role_map.get(n) or _as_role(n) for n in names if isinstance(n, str)]
        roles = [role for role in mapped if role is not None]
        order = list(Role)  # the most powerful first, as Role lists them
        return min(roles, key=order.index) if roles else None


def _as_role(name: str) -> Role | None:
    try:
        return Role(name)
    except ValueError:
        return None


@router.post("/oidc", response_model=TokenPair, dependencies=[SignInLimited])
def sign_in_oidc(body: OidcSignIn, request: Request) -> TokenPair:
    """Sign in with an ID token of the province's identity provider (``api.oidc``)."""
    verifier: OidcVerifier | None = request.app.state.oidc
    if verifier is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="OIDC sign-in is not configured")
    principal = verifier.verify(body.id_token)
    if principal.role in (Role.AGENCY_VIEWER, Role.COLLECTOR) and principal.agency is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="no agency for a scoped role")
    request.state.audit = {"target_type": "user", "target_id": principal.name}
    return _pair(request, principal)


def _me(principal: Principal, language: Language | None) -> Me:
    return Me(
        name=principal.name,
        role=principal.role,
        agency=principal.agency,
        method=principal.method,
        language=language,
    )


@router.get("/me", response_model=Me)
def me(principal: CurrentUser, users: UsersDep) -> Me:
    """Who the credential belongs to, and a local user's language."""
    user = users.get(principal.name) if principal.method == "password" else None
    return _me(principal, user.language if user is not None else None)


@router.patch(
    "/me",
    response_model=Me,
    responses={409: {"description": "the credential has no user record here (API key, OIDC)"}},
)
def update_me(body: MePatch, principal: CurrentUser, users: UsersDep, request: Request) -> Me:
    """Remember a local user's language for the console."""
    request.state.audit = {
        "target_type": "user",
        "target_id": principal.name,
        "detail": {"language": body.language},
    }
    if principal.method != "password" or users.get(principal.name) is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="only local users have a record to keep a language in; the console keeps it",
        )
    user = users.update(principal.name, language=body.language)
    return _me(principal, user.language)


__all__ = ["OidcVerifier", "SignInLimiter", "router"]
