"""``GET /metrics``: the API's own Prometheus metrics, in a registry of the app's own.

- ``socpipe_api_requests_total{method, route, status}``: requests answered;
- ``socpipe_api_request_duration_seconds{method, route}``: how long they took (a histogram);
- ``socpipe_api_signin_failures_total{route, status}``: sign-ins refused (401, 403) or
  rate-limited (429) on ``/auth/token``, ``/auth/refresh`` and ``/auth/oidc``.

``route`` is the route's template (``/collectors/{agency}/{collector}``), never the path as sent,
and ``other`` for what no API route matched (the console's files, a scanner's guesses): the
number of series stays bounded whatever callers send.

Only ``/health`` is open (the issue names ``/metrics`` without saying so); ``/metrics`` answers a
soc_admin's credential, or the metrics token given to :func:`install` (``api.metrics_token``):
a credential that reads metrics and nothing else, which is what belongs in Prometheus' scrape
configuration rather than an administrator's key.

``install(app)`` adds the middleware that measures, the route, and ``app.state.metrics``.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ERRORS
from api.security import Permission, get_principal

SIGN_IN_ROUTES: Final = frozenset({"/auth/token", "/auth/refresh", "/auth/oidc"})
OTHER_ROUTE: Final = "other"
# From a cached read (a few ms) to an enrollment or a large ingest (seconds).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    """The API's counters and histogram, in a registry of their own (no import-time globals)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "socpipe_api_requests",
            "Requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "socpipe_api_request_duration_seconds",
            "Time to answer a request, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.signin_failures = Counter(
            "socpipe_api_signin_failures",
            "Sign-ins refused or rate-limited, by route and status",
            ["route", "status"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status_code: int, elapsed_s: float) -> None:
        """Count one answered request."""
        self.requests.labels(method=method, route=route, status=str(status_code)).inc()
        self.latency.labels(method=method, route=route).observe(elapsed_s)
        if route in SIGN_IN_ROUTES and status_code in (401, 403, 429):
            self.signin_failures.labels(route=route, status=str(status_code)).inc()

    def value(self, name: str, labels: dict[str, str]) -> float:
        """A sample's current value (0 when absent), for tests."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The template of the API route that handled ``scope``, else ``other``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else OTHER_ROUTE


class MetricsMiddleware:
    """Measures every HTTP request (pure ASGI: it sees the status and the route the router
    put in the scope, and a failure as the 500 the server answers)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # unless the app answers: an exception becomes the server's 500

        async def sending(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(
                scope["method"], route_template(scope), status_code, time.perf_counter() - started
            )


_bearer = HTTPBearer(auto_error=False, description="a soc_admin credential or the metrics token")


def require_metrics_read(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Lets the metrics token or a holder of ``metrics:read`` (soc_admin) through: 401 without
    a credential, 403 for another role. (Named as ``api.security.require``'s dependencies are,
    so the role-matrix test knows the permission.)"""
    token: bytes | None = getattr(request.app.state, "metrics_token", None)
    presented = credentials.credentials.encode() if credentials is not None else None
    if presented is not None and token is not None and hmac.compare_digest(presented, token):
        return
    principal = get_principal(request, credentials)
    if not principal.can(Permission.METRICS_READ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"role {principal.role.value} may not read metrics",
        )


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_read)],
    responses={**ERRORS, 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def read_metrics(request: Request) -> Response:
    """The API's metrics in Prometheus' text format."""
    metrics: ApiMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, *, token: SecretStr | None = None) -> ApiMetrics:
    """Measure ``app`` and serve ``/metrics`` (to ``token`` or a soc_admin); idempotent.

    Call it after the app's own middleware, so that this one is outermost and also counts what
    that middleware answers itself (a 413)."""
    found: ApiMetrics | None = getattr(app.state, "metrics", None)
    if found is not None:
        return found
    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.state.metrics_token = token.get_secret_value().encode() if token is not None else None
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(router)
    # The console is mounted at "/" and would answer /metrics first: the route goes before it.
    routes: list[Any] = app.router.routes
    mounts = [route for route in routes if getattr(route, "path", None) == ""]
    for mount in mounts:
        routes.remove(mount)
        routes.append(mount)
    return metrics


__all__ = ["ApiMetrics", "MetricsMiddleware", "install", "require_metrics_read", "route_template"]
