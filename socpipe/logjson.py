"""Log records as JSON lines (``log_format: json``), for journald and log shippers.

Each line is one object: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` (the
formatted message, UTF-8, Vietnamese kept as is), ``process`` and ``thread``, and ``exception``
(the formatted traceback) when there is one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    """Formats a log record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        request_id = getattr(record, "request_id", None)  # the API's requests (api/logcontext)
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")
