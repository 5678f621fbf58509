from __future__ import annotations

import logging

import orjson

from socpipe.logjson import JsonFormatter


def test_a_record_is_one_json_line_with_its_exception() -> None:
    logger = logging.getLogger("socpipe.test")
    try:
        raise ValueError("hỏng")
    except ValueError:
        record = logger.makeRecord(
            "socpipe.test", logging.ERROR, __file__, 1, "tệp %s: %d dòng", ("auth.log", 3), None
        )
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["message"] == "tệp auth.log: 3 dòng"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "socpipe.test"
    assert "ValueError: hỏng" in entry["exception"]
    assert entry["time"].endswith("+00:00")
