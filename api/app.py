"""The FastAPI application, built by ``create_app(settings)``; nothing is created at import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elasticsearch import ApiError, TransportError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from alerting.store import AlertStore, ElasticsearchAlertStore
from api.auth import TokenAuthenticator
from api.deps import CurrentUser
from api.routes import alerts, health
from socpipe import __version__
from socpipe.elastic import make_elasticsearch
from socpipe.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings, store: AlertStore | None = None) -> FastAPI:
    """The API for ``settings``; ``store`` replaces the Elasticsearch store in unit tests."""
    if store is None:
        store = ElasticsearchAlertStore(
            make_elasticsearch(settings.elasticsearch),
            settings.elasticsearch.index_prefix,
            settings.alerting.dedup_window_s,
            policies=settings.alerting.policies,
        )
    # Swagger UI loads its assets from a CDN, which the SOC network does not reach. The OpenAPI
    # document is served at /openapi.json to authenticated callers only, like every route but
    # /health.
    app = FastAPI(
        title="socpipe", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
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
        detail = f"the alert store is unavailable, try again shortly ({type(error).__name__})"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "2"})

    app.state.store = store
    app.state.authenticator = TokenAuthenticator(list(settings.api.tokens))
    app.include_router(health.router)
    app.include_router(alerts.router)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="console")
    return app
