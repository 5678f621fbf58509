"""``GET /health``: the one route without authentication, for load balancers and the demo."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from api.deps import StoreDep

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    """Whether the API can reach its store."""

    status: Literal["ok", "degraded"]
    store: Literal["ok", "unreachable"]


@router.get("/health", response_model=HealthPublic)
def health(store: StoreDep, response: Response) -> HealthPublic:
    """Answers 200 when the alert store answers, 503 otherwise; says nothing else."""
    if store.ping():
        return HealthPublic(status="ok", store="ok")
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthPublic(status="degraded", store="unreachable")
