"""The FastAPI application, built by ``create_app(settings)``; nothing is created at import.

Around every route: a request id (``X-Request-ID``, taken from the caller when it is sane,
else made), a bound on the body size (413), security headers, CORS for the configured
origins only, the audit trail of every request that changes something (``api/audit.py``),
and a 503 with ``Retry-After`` when Elasticsearch is away.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from elasticsearch import ApiError, TransportError
from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Scope

from alerting.indices import Indices
from alerting.store import AlertStore, ElasticsearchAlertStore
from api import metrics
from api.audit import AuditLog, ElasticsearchAuditLog
from api.deps import CurrentUser
from api.errors import ERRORS
from api.logcontext import bind_request_id, install_request_id_filter
from api.params import known_query
from api.routes import (
    agencies,
    alerts,
    auth,
    cases,
    collectors,
    exceptions,
    health,
    ingest,
    rules,
    stats,
)
from api.routes import (
    audit as audit_routes,
)
from api.routes.auth import OidcVerifier, SignInLimiter
from api.security import Authenticator, Principal, TokenIssuer
from api.users import ElasticsearchUserStore, UserStore
from socpipe import __version__
from socpipe.elastic import make_elasticsearch
from socpipe.settings import Settings, load_settings

log = logging.getLogger("socpipe.api")


STATIC_DIR = Path(__file__).resolve().parent / "static"
_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Everything the console needs is served from here: no other origin, no inline script.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
}


def create_app(
    settings: Settings,
    store: AlertStore | None = None,
    *,
    users: UserStore | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """The API for ``settings``; ``store``, ``users`` and ``audit`` replace the Elasticsearch
    ones in unit tests."""
    es_settings = settings.elasticsearch
    if store is None or users is None or audit is None:
        client = make_elasticsearch(es_settings)
        indices = Indices(client, es_settings.index_prefix, es_settings.index_replicas)
        if store is None:
            store = ElasticsearchAlertStore(
                client,
                es_settings.index_prefix,
                settings.alerting.dedup_window_s,
                policies=settings.alerting.policies,
            )
        if users is None:
            users = ElasticsearchUserStore(client, es_settings.index_prefix)
        if audit is None:
            audit = ElasticsearchAuditLog(client, indices)
    # Swagger UI loads its assets from a CDN, which the SOC network does not reach. The OpenAPI
    # document is served at /openapi.json to authenticated callers only, like every route but
    # /health.
    app = FastAPI(
        title="socpipe",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # An unknown query parameter, or one given twice where one value is taken, is a 422.
        dependencies=[Depends(known_query)],
    )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_user: CurrentUser) -> dict[str, Any]:
        return app.openapi()

    @app.exception_handler(TransportError)
    @app.exception_handler(ApiError)
    async def store_unavailable(_request: Request, error: Exception) -> JSONResponse:
        # Elasticsearch unreachable, or its shards not ready (a new index, a restart): the
        # caller may try again; a 4xx of Elasticsearch is a bug of ours, shown as such.
        status = getattr(error, "status_code", None) if isinstance(error, ApiError) else None
        if status is not None and status < 500 and status != 429:
            raise error
        detail = f"Elasticsearch is unavailable, try again shortly ({type(error).__name__})"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "2"})

    issuer = TokenIssuer.from_settings(settings.api)
    app.state.settings = settings
    app.state.store = store
    app.state.users = users
    app.state.audit = audit
    app.state.issuer = issuer
    app.state.authenticator = Authenticator(list(settings.api.tokens), issuer)
    app.state.signin_limiter = SignInLimiter(settings.api.signin_per_minute)
    app.state.oidc = OidcVerifier(settings.api.oidc) if settings.api.oidc else None

    @app.middleware("http")
    async def around(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = request_id
        bind_request_id(request_id)
        started = time.monotonic()
        length, limit = request.headers.get("content-length"), settings.api.max_body_bytes
        if any(not name for name, _ in request.query_params.multi_items()):
            response: Response = JSONResponse(
                {"detail": "a query parameter has no name"}, status_code=400
            )
        elif (length is not None and (not length.isdigit() or int(length) > limit)) or (
            # A body without a length (chunked) is read here, so that it is bounded too.
            length is None and request.method in _CHANGES and len(await request.body()) > limit
        ):
            response = JSONResponse(
                {"detail": f"the body is larger than {limit} bytes"}, status_code=413
            )
        else:
            response = await call_next(request)
        if response.status_code == 405:  # every method of the path, not one route's
            response.headers["Allow"] = ", ".join(_allowed(app, request.scope))
        response.headers["X-Request-ID"] = request_id
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if request.method in _CHANGES:  # the trail's write is blocking I/O: off the loop
            await run_in_threadpool(_audit, request, response, audit, time.monotonic() - started)
        log.info(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,
            response.status_code,
            (time.monotonic() - started) * 1000,
            extra={"request_id": request_id},
        )
        return response

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.include_router(health.router)
    app.include_router(auth.router, responses=ERRORS)
    routers = (alerts, agencies, cases, stats, rules, exceptions, collectors, audit_routes, ingest)
    for module in routers:
        app.include_router(module.router, responses=ERRORS)
    metrics.install(app, token=settings.api.metrics_token)
    install_request_id_filter()
    if settings.api.agency_bootstrap_servers:
        app.state.agency_bootstrap = list(settings.api.agency_bootstrap_servers)
    console = StaticFiles(directory=STATIC_DIR, html=True)
    app.routes.append(ConsoleMount("/", console, name="console", api=list(app.routes)))
    return app


def _allowed(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some API route answers on the path of ``scope``."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


class ConsoleMount(Mount):
    """The console's files at ``/``, for GET and HEAD of paths no API route has: a request the
    API knows but not with that method is the API's 405 (with its ``Allow``), never the static
    files' answer."""

    def __init__(self, path: str, app: ASGIApp, *, name: str, api: list[BaseRoute]) -> None:
        super().__init__(path, app, name=name)
        self.api = api

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http":
            if scope.get("method") not in ("GET", "HEAD"):
                return Match.NONE, {}
            if any(route.matches(scope)[0] is not Match.NONE for route in self.api):
                return Match.NONE, {}
        return super().matches(scope)


def app_from_environment() -> FastAPI:
    """The app of the settings in the environment (``SOCPIPE_CONFIG`` and ``SOCPIPE_*``): what
    each of several uvicorn workers builds."""
    return create_app(load_settings())


def _source(request: Request) -> dict[str, Any]:
    """Where a request came from, as ECS puts it: ``source.ip`` for an address, else
    ``source.address`` (a Unix socket's name, a test client's): the trail's strict mapping
    would refuse a name in an ``ip`` field, and the entry with it."""
    if request.client is None or not request.client.host:
        return {}
    host = request.client.host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return {"address": host}
    return {"ip": host}


def _audit(request: Request, response: Response, audit: AuditLog, elapsed_s: float) -> None:
    """Record a request that (tried to) change something."""
    principal: Principal | None = getattr(request.state, "principal", None)
    extra: dict[str, Any] = getattr(request.state, "audit", None) or {}
    route = request.scope.get("route")
    action = getattr(route, "name", None) or f"{request.method} {request.url.path}"
    status_code = response.status_code
    entry: dict[str, Any] = {
        "@timestamp": datetime.now(UTC).isoformat(),
        "event": {
            "id": uuid.uuid4().hex,
            "kind": "event",
            "category": ["iam"] if request.url.path.startswith("/auth") else ["configuration"],
            "type": ["change"],
            "action": action,
            "outcome": "success" if status_code < 400 else "failure",
            "duration": int(elapsed_s * 1e9),
        },
        "source": _source(request),
        "user_agent": {"original": request.headers.get("user-agent", "")[:1024]},
        "http": {
            "request": {"method": request.method, "id": request.state.request_id},
            "response": {"status_code": status_code},
        },
        "url": {"path": request.url.path},
    }
    if principal is not None:
        entry["user"] = {"name": principal.name, "roles": [principal.role.value]}
        if principal.agency:
            entry["user"]["agency"] = principal.agency
    if status_code >= 400:
        entry["event"]["reason"] = f"HTTP {status_code}"
    if extra.get("target_type"):
        entry["target"] = {"type": extra["target_type"], "id": str(extra.get("target_id", ""))}
    if extra.get("detail") is not None:
        entry["detail"] = extra["detail"]
    if not entry["source"]:
        del entry["source"]
    audit.record(entry)
