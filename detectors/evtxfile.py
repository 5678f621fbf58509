"""Read the events of a Windows .evtx file as the JSON dicts ``WinlogEvtxParser`` takes.

``read_evtx(path)`` opens the file with the ``evtx`` package (a Rust parser) and yields each
record's ``{"Event": {"System": ..., "EventData": ...}}`` dict, in file order. A record the
package cannot parse, or whose JSON does not decode, is skipped with a warning naming the file
and the record number; one bad record never ends the iteration. A file that is not EVTX at all
raises ``RecordError`` when ``read_evtx`` is called.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import orjson
from evtx import PyEvtxParser

from socpipe.errors import RecordError

log = logging.getLogger(__name__)

# The package names the record in its error: "Failed to parse record number 3: ...".
_RECORD_NUMBER = re.compile(r"record number (\d+)")
# After this many failures in a row the rest of the file is taken to be unreadable: a package
# version that kept raising without moving on would otherwise loop for ever.
MAX_CONSECUTIVE_ERRORS = 10_000


def read_evtx(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The events of the .evtx file at ``path``; raises RecordError if it is not an EVTX file.

    A missing or unreadable file raises the OSError that says so (FileNotFoundError, ...).
    """
    name = os.fspath(path)
    try:
        parser = PyEvtxParser(name)
        records = parser.records_json()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # the package raises OSError or RuntimeError for a bad header
        raise RecordError(f"{name}: not an EVTX file: {exc}") from exc
    return _events(name, records)


def _events(name: str, records: Iterator[Any]) -> Iterator[dict[str, Any]]:
    failures = 0
    last: object = None  # the number of the last record read, to place a failure
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as exc:  # one bad record (or chunk) must not end the file
            failures += 1
            found = _RECORD_NUMBER.search(str(exc))
            if found is not None:
                where = f"record {found.group(1)}"
            else:
                where = f"data after record {last}" if last is not None else "data at the start"
            log.warning("%s: skipped %s: %s", name, where, exc)
            if failures >= MAX_CONSECUTIVE_ERRORS:
                log.warning("%s: %d unreadable records in a row, stopped", name, failures)
                return
            continue
        failures = 0
        number = record.get("event_record_id") if isinstance(record, dict) else None
        last = number
        try:
            event = orjson.loads(record["data"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("%s: skipped record %s: its JSON does not decode: %s", name, number, exc)
            continue
        if isinstance(event, dict):
            yield event
        else:
            log.warning("%s: skipped record %s: its JSON is not an object", name, number)
