"""Types of the values callers send the triage routes (query parameters and bodies), so that a
bad one is a 422 that names it, before any store is asked."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from functools import cache
from types import UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin
from zoneinfo import available_timezones

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

_ISO: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
MIN_YEAR: Final = 2000
MAX_YEAR: Final = 2200

ALERT_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
NAME_PATTERN: Final = r"^[A-Za-z0-9._@-]{1,64}$"
AGENCY_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"


def _iso_only(value: Any) -> Any:
    # pydantic would read "0.5" as seconds since 1970; a caller who means that is mistaken.
    if isinstance(value, str) and not _ISO.match(value):
        raise ValueError("a time is ISO 8601 with its offset, as 2026-11-28T09:00:00+07:00")
    return value


def _in_range(value: datetime) -> datetime:
    # Far years overflow the arithmetic of intervals and offsets: refuse them here, clearly.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"a time must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return value.astimezone(UTC)


ApiTime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_only),
    AfterValidator(_in_range),
    Field(description="ISO 8601 with an offset, e.g. 2026-11-28T09:00:00+07:00"),
]
"""A moment a caller names: ISO 8601 with its offset, years 2000-2200, kept in UTC."""


def _address_or_network(value: str) -> str:
    try:
        if "/" in value:
            return str(ipaddress.ip_network(value, strict=False))
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is neither an IP address nor a CIDR network") from exc


AddressOrNetwork = Annotated[str, Field(max_length=64), AfterValidator(_address_or_network)]
"""An IP address, or a network in CIDR notation (10.0.0.0/8); host bits are dropped."""
Technique = Annotated[
    str,
    Field(pattern=r"^[Tt]\d{4}(\.\d{3})?$", description="an ATT&CK technique, T1110 or T1110.001"),
    AfterValidator(str.upper),
]
Tactic = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z_-]{1,63}$", description="an ATT&CK tactic, e.g. credential_access"),
    AfterValidator(lambda value: value.replace("-", "_")),
]


@cache
def _zones() -> frozenset[str]:
    # IANA names only: Elasticsearch (Java) knows those, not the files beside them.
    return frozenset(available_timezones() - {"Factory", "localtime", "posixrules"}) | {"UTC"}


def _zone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"unknown time zone {value!r} (an IANA name like Asia/Ho_Chi_Minh)")
    return value


TimeZone = Annotated[
    str,
    Field(max_length=64, description="an IANA time zone, e.g. Asia/Ho_Chi_Minh"),
    AfterValidator(_zone),
]
AlertId = Annotated[str, Field(pattern=ALERT_ID_PATTERN, description="an alert id")]
UserName = Annotated[str, Field(pattern=NAME_PATTERN, description="a user or key name")]
AgencyId = Annotated[str, Field(pattern=AGENCY_PATTERN, description="an agency id")]
NoteText = Annotated[str, Field(min_length=1, max_length=4000, pattern=r"\S")]
Reason = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"\S")]


def invalid(where: str, name: str, message: str, value: Any = None) -> RequestValidationError:
    """A 422 for a value that passed its type but not a check across values (``since`` after
    ``until``), in the same shape as every other 422 (OpenAPI's HTTPValidationError)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, name), "msg": message, "input": value}]
    )


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's type is a list (``list[str] | None`` included)."""
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    if origin in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    return False


def _query_names(dependant: Any) -> tuple[frozenset[str], frozenset[str]]:
    """The query parameters of a route (and its dependencies): all, and those that take one
    value."""
    names: set[str] = set()
    single: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        for param in current.query_params:
            names.add(param.alias)
            if not _takes_many(param.field_info.annotation):
                single.add(param.alias)
        pending.extend(current.dependencies)
    return frozenset(names), frozenset(single)


_QUERY: dict[int, tuple[frozenset[str], frozenset[str]]] = {}


def known_query(request: Request) -> None:
    """422 for a query parameter the route does not take (``?severty=high`` would otherwise be
    ignored, and every alert listed as if no filter had been asked), or given several times
    where the route takes one value (FastAPI would keep the last one silently). A dependency of
    every route (``create_app``)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    given = request.query_params.multi_items()
    if not given:
        return
    known = _QUERY.get(id(route))
    if known is None:
        known = _QUERY[id(route)] = _query_names(dependant)
    names, single = known
    seen: dict[str, int] = {}
    for name, _ in given:
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if name not in names:
            takes = ", ".join(sorted(names)) or "none"
            raise invalid(
                "query", name, f"unknown query parameter (this route takes: {takes})",
                request.query_params.get(name),
            )  # fmt: skip
        if count > 1 and name in single:
            raise invalid(
                "query",
                name,
                f"given {count} times: this parameter takes one value",
                request.query_params.getlist(name),
            )


def check_range(since: datetime | None, until: datetime | None) -> None:
    """422 when ``since`` is after ``until``."""
    if since is not None and until is not None and since > until:
        raise invalid("query", "until", "until is before since", until.isoformat())


__all__ = [
    "AGENCY_PATTERN",
    "ALERT_ID_PATTERN",
    "NAME_PATTERN",
    "AddressOrNetwork",
    "AgencyId",
    "AlertId",
    "ApiTime",
    "NoteText",
    "Reason",
    "Tactic",
    "Technique",
    "TimeZone",
    "UserName",
    "check_range",
    "invalid",
    "known_query",
]
