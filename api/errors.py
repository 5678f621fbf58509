"""The refusals every route may answer with, as the OpenAPI document describes them."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel


class ErrorPublic(BaseModel):
    """What every refusal says: why, in words."""

    detail: str | list[dict[str, Any]]


_ERROR: Final = {"model": ErrorPublic}
# The answers any authenticated route may give besides its own, in the OpenAPI document.
ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: _ERROR | {"description": "A parameter is malformed (a bad cursor, say)"},
    401: _ERROR | {"description": "No valid credential"},
    403: _ERROR | {"description": "The role may not do this, or not for this agency"},
    404: _ERROR | {"description": "No such thing (or not for this agency)"},
    409: _ERROR | {"description": "The change conflicts with the current state"},
    413: _ERROR | {"description": "The body is too large"},
    429: _ERROR | {"description": "Too many attempts; see Retry-After"},
    503: _ERROR | {"description": "Elasticsearch is unavailable; see Retry-After"},
}

__all__ = ["ERRORS", "ErrorPublic"]
