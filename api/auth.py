"""Bearer-token authentication and server-side roles.

Tokens come from settings (``api.tokens``; in production from the environment or a config file
outside the repo). They are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, status

from socpipe.settings import ApiToken, Role


@dataclass(frozen=True)
class Principal:
    """Who is calling: name, role, and the agency an agency-scoped user is confined to."""

    name: str
    role: Role
    agency: str | None

    def scope_agency(self, requested: str | None) -> str | None:
        """The agency filter to apply: an agency-scoped user sees only its own agency."""
        if self.agency is None:
            return requested
        if requested is not None and requested != self.agency:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this account may only read agency {self.agency}"
            )
        return self.agency


class TokenAuthenticator:
    """Maps a presented bearer token to its Principal."""

    def __init__(self, tokens: list[ApiToken]) -> None:
        self._tokens = [(t.token.get_secret_value().encode(), t) for t in tokens]

    def authenticate(self, presented: str) -> Principal | None:
        """The principal for ``presented``, or None. Checks every token to keep timing flat."""
        found: ApiToken | None = None
        candidate = presented.encode()
        for secret, token in self._tokens:
            if hmac.compare_digest(secret, candidate):
                found = token
        if found is None:
            return None
        agency = found.agency if found.role == Role.AGENCY or found.agency else None
        return Principal(name=found.name, role=found.role, agency=agency)
