"""The request id in every log line of a request.

The app's middleware binds the request's id (:func:`bind_request_id`) in a context variable;
the context is copied into the tasks and worker threads that serve the request, so every record
logged on its behalf, by any logger, gets ``record.request_id`` from :class:`RequestIdFilter`
(None outside a request). The filter sits on the handlers (:func:`install_request_id_filter`),
not on a logger: a logger's filters do not see what its children propagate. The JSON formatter
(``socpipe.logjson``) writes the attribute as ``request_id``.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from typing import Final

REQUEST_ID: Final[ContextVar[str | None]] = ContextVar("socpipe_request_id", default=None)


def bind_request_id(request_id: str) -> Token[str | None]:
    """Make ``request_id`` the id of what is logged from this context on."""
    return REQUEST_ID.set(request_id)


def current_request_id() -> str | None:
    """The id bound in this context, if any."""
    return REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` from the context (a value given in ``extra`` stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def install_request_id_filter(logger: logging.Logger | None = None) -> int:
    """Put a :class:`RequestIdFilter` on each handler of ``logger`` (the root logger by default)
    that has none yet; the number of handlers given one. Idempotent."""
    target = logger if logger is not None else logging.getLogger()
    added = 0
    for handler in target.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
            added += 1
    return added


__all__ = [
    "REQUEST_ID",
    "RequestIdFilter",
    "bind_request_id",
    "current_request_id",
    "install_request_id_filter",
]
