"""Dependencies shared by the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from alerting.store import AlertStore
from api.auth import Principal, TokenAuthenticator

_bearer = HTTPBearer(auto_error=False, description="An API token from the api.tokens setting")


def get_store(request: Request) -> AlertStore:
    """The app's alert store."""
    store: AlertStore = request.app.state.store
    return store


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated caller; 401 without a valid bearer token."""
    authenticator: TokenAuthenticator = request.app.state.authenticator
    principal = authenticator.authenticate(credentials.credentials) if credentials else None
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


StoreDep = Annotated[AlertStore, Depends(get_store)]
CurrentUser = Annotated[Principal, Depends(get_principal)]
