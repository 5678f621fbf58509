"""Real data nobody here wrote: every record becomes an event, and known formats are parsed.

Rates are printed (run with -s to see them) and asserted against the issue's goals: 100%
readable, at least 99% with source-specific fields for known formats.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.normalize import Normalizer
from socpipe.records import RawRecord, SourceRef, encode_document
from socpipe.samples import otrf_lines

RECEIVED = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def records(lines: list[str], fmt: str) -> list[RawRecord]:
    source = SourceRef(type="file", path=f"/data/{fmt}.log", format=fmt)
    return [
        RawRecord.model_validate(
            {
                "id": f"r{i}",
                "agency": {"id": "so-tttt", "tier": "province"},
                "collector": {"id": "c", "version": "0"},
                "host": "h",
                "source": source,
                "received": RECEIVED,
                "position": i,
                "message": line,
            }
        )
        for i, line in enumerate(lines)
    ]


def data_records(events: list[dict[str, Any]], fmt: str) -> list[RawRecord]:
    source = SourceRef(type="evtx", path=f"/data/{fmt}", format=fmt)
    return [
        RawRecord.model_validate(
            {
                "id": f"r{i}",
                "agency": {"id": "so-tttt", "tier": "province"},
                "collector": {"id": "c", "version": "0"},
                "host": "h",
                "source": source,
                "received": RECEIVED,
                "position": i,
                "data": event,
            }
        )
        for i, event in enumerate(events)
    ]


def rates(items: list[RawRecord], action_field: bool = False) -> tuple[int, int, int]:
    normalizer = Normalizer()
    parsed = classified = 0
    for item in items:
        result = normalizer.normalize(item)
        assert result.event.event.original is not None
        # What the stream sends and matches (the document) is what the validated event says.
        assert orjson.loads(encode_document(result.document)) == result.event.to_dict()
        parsed += result.status == "parsed"
        classified += bool(result.event.event.action)
    return len(items), parsed, classified


@pytest.mark.parametrize(
    ("folder", "name", "fmt"),
    [
        ("OpenSSH", "OpenSSH_2k.log", "syslog"),
        ("Linux", "Linux_2k.log", "syslog"),
        ("Apache", "Apache_2k.log", "apache.error"),
    ],
)
def test_loghub_samples_parse(shared_data: Path, folder: str, name: str, fmt: str) -> None:
    lines = (
        (shared_data / "loghub" / folder / name)
        .read_text(encoding="utf-8", errors="replace")
        .splitlines()
    )
    total, parsed, classified = rates(records(lines, fmt))
    print(
        f"\n{name}: {total} lines, parsed {parsed} ({100 * parsed / total:.2f}%), "
        f"with an event.action {classified} ({100 * classified / total:.2f}%)"
    )
    assert total == 2000
    assert parsed / total >= 0.99


def test_loghub_samples_are_detected_without_a_format(shared_data: Path) -> None:
    for folder, name in (("OpenSSH", "OpenSSH_2k.log"), ("Apache", "Apache_2k.log")):
        lines = (
            (shared_data / "loghub" / folder / name)
            .read_text(encoding="utf-8", errors="replace")
            .splitlines()[:200]
        )
        total, parsed, _ = rates(records(lines, "auto"))
        assert parsed == total, name


def _json_objects(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return found
        value, index = decoder.raw_decode(text, index)
        found.extend(value if isinstance(value, list) else [value])


def test_sigma_regression_events_parse(shared_data: Path) -> None:
    events: list[dict[str, Any]] = []
    for path in sorted((shared_data / "sigma" / "regression_data").rglob("*.json")):
        events.extend(_json_objects(path.read_text(encoding="utf-8", errors="replace")))
    total, parsed, classified = rates(data_records(events, "winlog.evtx"))
    print(f"\nSigmaHQ regression: {total} events, parsed {parsed}, with an action {classified}")
    assert total > 200
    assert parsed == total


def test_otrf_events_parse(shared_data: Path) -> None:
    lines = [line.decode("utf-8", "replace") for line in otrf_lines(root=shared_data / "otrf")]
    items = records(lines, "winlog.json")
    normalizer = Normalizer()
    outcomes: Counter[str] = Counter()
    for item in items:
        result = normalizer.normalize(item)
        outcomes[result.status] += 1
        if item.position % 50 == 0:  # all would take a minute; every 50th covers each kind
            assert orjson.loads(encode_document(result.document)) == result.event.to_dict()
    print(f"\nOTRF: {len(items)} events, {dict(outcomes)}")
    assert len(items) > 90_000
    assert outcomes["parsed"] == len(items)
