"""Parameter types the API shares: what its OpenAPI document promises, it enforces."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator


def _iso_text(value: Any) -> Any:
    # pydantic would also read a number ("0.5") as seconds since 1970: the schema says
    # date-time, so only RFC 3339 / ISO 8601 text is taken.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) < 10 or value[4] != "-":
        raise ValueError("a date-time in ISO 8601 with its zone, like 2026-11-28T09:00:00+07:00")
    return value


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
"""An aware date-time given as ISO 8601 text (with its zone), never as a number."""
