"""``GET /agencies``: the SOC's agencies by id, name and tier (``detector.agencies_file``), for
clients to show "Sở Thông tin và Truyền thông" where records carry ``so-tttt``. Every role that
reads alerts may read it; an agency-scoped account sees its own agency only."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import AlertsReader
from api.routes.collectors import AgenciesDep, AgencyPublic

router = APIRouter(prefix="/agencies", tags=["agencies"])


class AgenciesPublic(BaseModel):
    """The registry's agencies, ordered by id."""

    data: list[AgencyPublic]
    total: int


@router.get("", response_model=AgenciesPublic)
def list_agencies(agencies: AgenciesDep, user: AlertsReader) -> AgenciesPublic:
    """The agencies of the SOC's registry (the caller's own only, for an agency account)."""
    scope = user.scope_agency(None)
    found = [
        AgencyPublic(id=agency.id, name=agency.name, tier=agency.tier)
        for agency in sorted(agencies.agencies.values(), key=lambda a: a.id)
        if scope in (None, agency.id)
    ]
    return AgenciesPublic(data=found, total=len(found))
