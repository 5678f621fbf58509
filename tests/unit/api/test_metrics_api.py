"""Operations: ``/metrics`` (who may read it, what it counts) and the request id in every log
line of a request."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from alerting.store import InMemoryAlertStore
from api import metrics
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.logcontext import (
    REQUEST_ID,
    RequestIdFilter,
    bind_request_id,
    install_request_id_filter,
)
from api.users import InMemoryUserStore
from socpipe.settings import Role, load_settings

ADMIN = "admin-key-0123456789abcdef"
ANALYST = "analyst-key-0123456789abcdef"
SCRAPE = "prometheus-scrape-token-0123456789"


@pytest.fixture
def app() -> FastAPI:
    users = InMemoryUserStore()
    users.add("lan.nguyen", "mật khẩu đủ dài 2026", Role.ANALYST)
    settings = load_settings(
        api={
            "tokens": [
                {"name": "admin", "token": ADMIN, "role": "soc_admin"},
                {"name": "an", "token": ANALYST, "role": "analyst"},
            ],
            "metrics_token": SCRAPE,
        }
    )
    return create_app(settings, store=InMemoryAlertStore(), users=users, audit=InMemoryAuditLog())


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_metrics_need_the_scrape_token_or_a_soc_admin(app: FastAPI) -> None:
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth("wrong-token-0123456789abc")).status_code == 401
    assert client.get("/metrics", headers=auth(ANALYST)).status_code == 403
    for token in (ADMIN, SCRAPE):
        answer = client.get("/metrics", headers=auth(token))
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
    # The scrape token is no API credential.
    assert client.get("/alerts", headers=auth(SCRAPE)).status_code == 401


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = client.get("/metrics", headers=auth(SCRAPE)).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_requests_are_counted_by_route_template_and_status(app: FastAPI) -> None:
    client = TestClient(app)
    for alert_id in ("a1", "b2", "c3"):
        assert client.get(f"/alerts/{alert_id}", headers=auth(ANALYST)).status_code == 404
    client.get("/alerts", headers=auth(ANALYST))
    client.get("/no-such-page-" + uuid.uuid4().hex)
    found = samples(client)

    def count(route: str, status: str, method: str = "GET") -> float:
        labels = frozenset({"method": method, "route": route, "status": status}.items())
        return found.get(("socpipe_api_requests_total", labels), 0.0)

    assert count("/alerts/{alert_id}", "404") == 3
    assert count("/alerts", "200") == 1
    assert count("other", "404") == 1
    labels = frozenset({"method": "GET", "route": "/alerts/{alert_id}"}.items())
    assert found[("socpipe_api_request_duration_seconds_count", labels)] == 3
    # The path as sent never becomes a label.
    assert not any("a1" in value for _, labels in found for _, value in labels)


def test_sign_in_failures_are_counted(app: FastAPI) -> None:
    client = TestClient(app)
    wrong = {"username": "lan.nguyen", "password": "không đúng"}
    for _ in range(2):
        assert client.post("/auth/token", json=wrong).status_code == 401
    right = {"username": "lan.nguyen", "password": "mật khẩu đủ dài 2026"}
    assert client.post("/auth/token", json=right).status_code == 200
    api_metrics: metrics.ApiMetrics = app.state.metrics
    failures = "socpipe_api_signin_failures_total"
    assert api_metrics.value(failures, {"route": "/auth/token", "status": "401"}) == 2
    assert api_metrics.value(failures, {"route": "/auth/token", "status": "200"}) == 0


def test_a_body_refused_by_the_apps_middleware_is_counted(app: FastAPI) -> None:
    client = TestClient(app)
    big = b"x" * (app.state.settings.api.max_body_bytes + 1)
    assert client.post("/ingest", content=big, headers=auth(ANALYST)).status_code == 413
    api_metrics: metrics.ApiMetrics = app.state.metrics
    labels = {"method": "POST", "route": "other", "status": "413"}
    assert api_metrics.value("socpipe_api_requests_total", labels) == 1


def test_install_is_idempotent(app: FastAPI) -> None:
    first, middleware, routes = app.state.metrics, len(app.user_middleware), len(app.routes)
    assert metrics.install(app) is first
    assert (len(app.user_middleware), len(app.routes)) == (middleware, routes)
    assert TestClient(app).get("/metrics", headers=auth(SCRAPE)).status_code == 200


def test_without_a_token_only_a_soc_admin_reads_metrics() -> None:
    settings = load_settings(api={"tokens": [{"name": "a", "token": ADMIN, "role": "soc_admin"}]})
    app = create_app(
        settings, store=InMemoryAlertStore(), users=InMemoryUserStore(), audit=InMemoryAuditLog()
    )
    metrics.install(app)
    client = TestClient(app)
    assert client.get("/metrics", headers=auth(SCRAPE)).status_code == 401
    assert client.get("/metrics", headers=auth(ADMIN)).status_code == 200


# --- the request id in the logs -----------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("socpipe.test.requests")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    install_request_id_filter(logger)
    yield handler
    logger.removeHandler(handler)


def test_every_line_logged_for_a_request_carries_its_id(captured: Captured) -> None:
    """What the app's middleware does with ``bind_request_id``: the id reaches the lines of a
    sync route (in a worker thread) and of an async one, and only those."""
    app = FastAPI()
    log = logging.getLogger("socpipe.test.requests.route")

    @app.middleware("http")
    async def around(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        bind_request_id(request.headers["x-request-id"])
        log.info("before")
        return await call_next(request)

    @app.get("/sync")
    def sync_route() -> dict[str, str]:
        log.info("in a worker thread")
        return {}

    @app.get("/async")
    async def async_route() -> dict[str, str]:
        log.info("on the loop")
        return {}

    client = TestClient(app)
    client.get("/sync", headers={"X-Request-ID": "req-sync-0001"})
    client.get("/async", headers={"X-Request-ID": "req-async-0002"})
    log.info("outside any request")

    seen = [(r.getMessage(), getattr(r, "request_id", "absent")) for r in captured.records]
    assert seen == [
        ("before", "req-sync-0001"),
        ("in a worker thread", "req-sync-0001"),
        ("before", "req-async-0002"),
        ("on the loop", "req-async-0002"),
        ("outside any request", None),
    ]


def test_an_id_given_in_extra_stays_and_the_filter_is_installed_once(
    captured: Captured,
) -> None:
    logger = logging.getLogger("socpipe.test.requests")
    assert install_request_id_filter(logger) == 0
    assert sum(isinstance(f, RequestIdFilter) for f in captured.filters) == 1
    token = bind_request_id("bound-0001")
    try:
        logger.info("given", extra={"request_id": "given-0002"})
        logger.info("bound")
    finally:
        REQUEST_ID.reset(token)
    assert [r.request_id for r in captured.records[-2:]] == ["given-0002", "bound-0001"]
