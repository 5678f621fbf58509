"""Opaque page cursors: where a page ended, bound to the query it belongs to, and signed.

A cursor is ``<payload>.<mac>``, both base64url without padding: the payload is JSON, the mac
the first 16 bytes of an HMAC-SHA256 of it under the app's cursor key. :meth:`CursorCodec.decode`
checks the mac, then the JSON; the route then checks that the cursor belongs to the query it
comes with (same filters and agency scope, same sort). Anything wrong is :class:`InvalidCursor`,
which the routes answer with a 400 saying what, never a 500. The signature keeps callers from
crafting positions; a cursor never widens what a caller may read, since the filters and the
agency scope are applied again on every page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Mapping
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from socpipe.settings import ApiSettings, read_secret_file

_MAC_BYTES: Final = 16
_PURPOSE: Final = b"socpipe page cursors v1"
_lock = threading.Lock()


class InvalidCursor(ValueError):  # noqa: N818 (a bad input, named as the caller sees it)
    """A cursor that is not one of ours, was altered, or belongs to another query."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # validate: a character outside the alphabet is an error, not skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class CursorCodec:
    """Signs and checks cursors with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, payload: Mapping[str, Any]) -> str:
        """The cursor carrying ``payload`` (JSON-ready)."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def decode(self, cursor: str) -> dict[str, Any]:
        """The payload of a cursor this codec made; InvalidCursor for anything else."""
        head, dot, tail = cursor.partition(".")
        if not dot or not head or not tail:
            raise InvalidCursor("the cursor is not one this API gave (no signature)")
        try:
            body, mac = _b64decode(head), _b64decode(tail)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor("the cursor is not valid base64url") from exc
        if not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidCursor(
                "the cursor was altered or signed by another key: start again from the first page"
            )
        try:
            payload = json.loads(body)
        except ValueError as exc:  # signed by us, so only after a change of format
            raise InvalidCursor("the cursor is not readable: start again") from exc
        if not isinstance(payload, dict):
            raise InvalidCursor("the cursor is not readable: start again")
        return payload


def fingerprint(values: Mapping[str, Any]) -> str:
    """A short digest of ``values`` (JSON-ready): what a cursor is bound to."""
    text = json.dumps(values, separators=(",", ":"), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cursor_key(settings: ApiSettings) -> bytes:
    """A key derived from the token signing key, so that every API process agrees; a random
    one when there is none (the tokens then die with the process, and so do the cursors)."""
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
    elif settings.jwt_secret_file is not None:
        secret = read_secret_file(settings.jwt_secret_file, "api.jwt_secret_file")
    else:
        return secrets.token_bytes(32)
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def get_cursors(request: Request) -> CursorCodec:
    """The app's cursor codec, made on first use (``app.state.cursors``)."""
    state = request.app.state
    codec: CursorCodec | None = getattr(state, "cursors", None)
    if codec is None:
        with _lock:
            codec = getattr(state, "cursors", None)
            if codec is None:
                codec = CursorCodec(cursor_key(state.settings.api))
                state.cursors = codec
    return codec


CursorsDep = Annotated[CursorCodec, Depends(get_cursors)]


__all__ = ["CursorCodec", "CursorsDep", "InvalidCursor", "fingerprint", "get_cursors"]
