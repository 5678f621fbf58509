"""The role matrix: on every route of the API, each role can do exactly what api.security.GRANTS
says, an unauthenticated caller nothing (but /health and the sign-in routes).

The routes are read from the app itself, so a route added later is checked too: one without a
permission (or at least an authenticated caller) fails this test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from alerting.store import InMemoryAlertStore
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.security import GRANTS, Permission
from api.users import InMemoryUserStore
from socpipe.settings import SCOPED_ROLES, Role, load_settings

AGENCY = "phuong-phuc-xa"
KEYS = {role: f"{role.value}-key-0123456789abcdef" for role in Role}
PUBLIC = {"/health", "/auth/token", "/auth/refresh", "/auth/oidc"}


def _app() -> Any:
    tokens = [
        {"name": role.value, "token": KEYS[role], "role": role.value}
        | ({"agency": AGENCY} if role in SCOPED_ROLES else {})
        for role in Role
    ]
    settings = load_settings(api={"tokens": tokens, "jwt_secret": "k" * 40})
    return create_app(
        settings, store=InMemoryAlertStore(), users=InMemoryUserStore(), audit=InMemoryAuditLog()
    )


APP = _app()


def _walk(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _walk(sub)


def _permission(route: APIRoute) -> Permission | str | None:
    """The permission a route requires; "authenticated" when any caller will do; None: none."""
    names = [getattr(call, "__name__", "") for call in _walk(route.dependant)]
    for name in names:
        if name.startswith("require_"):
            return Permission[name.removeprefix("require_").upper()]
    return "authenticated" if "get_principal" in names else None


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also those of included routers (FastAPI 0.165 wraps them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(included.routes)


ROUTES = [
    (method, route)
    for route in _api_routes(APP.routes)
    for method in sorted(route.methods - {"HEAD", "OPTIONS"})
]


def _path(route: APIRoute) -> str:
    # Path parameters: the scoped roles' own agency where one is named, else a name that
    # exists nowhere (the answer may be 404, never 401/403 for a permitted role).
    return re.sub(
        r"\{(\w+)(?::\w+)?\}",
        lambda m: AGENCY if m[1] == "agency" else "no-such-thing",
        route.path,
    )


def test_every_route_but_the_public_ones_needs_a_caller() -> None:
    unguarded = [
        f"{method} {route.path}"
        for method, route in ROUTES
        if route.path not in PUBLIC and _permission(route) is None
    ]
    assert unguarded == []
    assert len(ROUTES) >= 6


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r.path}" for m, r in ROUTES])
def test_each_role_can_do_exactly_what_the_matrix_grants(method: str, route: APIRoute) -> None:
    client = TestClient(APP)
    needed = _permission(route)
    path = _path(route)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    anonymous = client.request(method, path, json=body)
    if route.path in PUBLIC:
        assert anonymous.status_code not in (401, 403) or route.path.startswith("/auth")
        return
    assert anonymous.status_code == 401, anonymous.text
    for role in Role:
        answer = client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {KEYS[role]}"}
        )
        allowed = needed == "authenticated" or needed in GRANTS[role]
        if allowed:
            assert answer.status_code not in (401, 403), (role, answer.status_code, answer.text)
        else:
            assert answer.status_code == 403, (role, answer.status_code, answer.text)


def test_the_matrix_sees_every_route_of_the_openapi_document() -> None:
    described = {
        (method.upper(), path)
        for path, operations in APP.openapi()["paths"].items()
        for method in operations
    }
    checked = {(method, route.path) for method, route in ROUTES}
    assert described and described <= checked
