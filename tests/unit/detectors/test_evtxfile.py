"""Reading .evtx files: the SigmaHQ regression files against the JSON beside them, and files
that are damaged or not EVTX at all."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from evtx import PyEvtxParser

import detectors.evtxfile as evtxfile
from detectors.evtxfile import read_evtx
from detectors.parsers.base import ParseContext
from detectors.parsers.windows import WinlogEvtxParser
from socpipe.errors import RecordError

SIGMA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sigma" / "regression_data"


def evtx_files() -> list[Path]:
    if not SIGMA.is_dir():
        pytest.skip(f"SigmaHQ regression data not found at {SIGMA}")
    return sorted(SIGMA.rglob("*.evtx"))


def json_events(path: Path) -> list[dict[str, Any]]:
    """The events of the .json beside an .evtx: an array, or objects back to back."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return events
        value, index = decoder.raw_decode(text, index)
        events.extend(value if isinstance(value, list) else [value])


def loosely(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: loosely(value) for key, value in data.items()}
    return data.strip().lower() if isinstance(data, str) else data


def identity(event: dict[str, Any]) -> tuple[int, int]:
    system = event["Event"]["System"]
    event_id = system["EventID"]
    if isinstance(event_id, dict):
        event_id = event_id["#text"]
    return int(system["EventRecordID"]), int(event_id)


def test_evtx_files_hold_the_events_of_their_json() -> None:
    files = evtx_files()
    assert len(files) >= 150
    events = 0
    for path in files:
        read = list(read_evtx(path))
        expected = json_events(path.with_suffix(".json"))
        assert [identity(e) for e in read] == [identity(e) for e in expected], path
        # The same fields with the same values, but for what an editor changed in the .json
        # files: trailing spaces trimmed (90 values) and one "Explorer.EXE" lower-cased.
        for got, want in zip(read, expected, strict=True):
            got_data, want_data = got["Event"].get("EventData"), want["Event"].get("EventData")
            assert loosely(got_data) == loosely(want_data), path
        events += len(read)
    assert events >= 200


def test_evtx_events_parse_to_ecs() -> None:
    parser = WinlogEvtxParser()
    for path in evtx_files()[:20]:
        for event in read_evtx(str(path)):
            fragment = parser.parse(event, ParseContext())
            assert fragment["winlog"]["record_id"] == str(event["Event"]["System"]["EventRecordID"])


# --- damaged files --------------------------------------------------------------------------


def _largest(files: list[Path]) -> Path:
    return max(files, key=lambda p: len(list(read_evtx(p))))


def _record_offsets(data: bytes, record_ids: list[int]) -> list[int]:
    """Where each record starts: the magic 0x2a2a, its size, then its 64-bit record id."""
    offsets = []
    for offset in range(4096, len(data) - 24):
        if data[offset : offset + 4] != b"\x2a\x2a\x00\x00":
            continue
        size, record_id = struct.unpack_from("<IQ", data, offset + 4)
        if record_id in record_ids and 24 < size < 65536:
            offsets.append(offset)
    return offsets


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, list[int]]:
    """A copy of the regression file with the most records, and the numbers its record headers
    carry (the file's own numbering, which the package's errors name; EventRecordID inside the
    event is the original log's)."""
    source = _largest(evtx_files())
    copy = tmp_path / "sample.evtx"
    shutil.copyfile(source, copy)
    records = PyEvtxParser(str(copy)).records_json()
    numbers = [record["event_record_id"] for record in records if record is not None]
    assert len(numbers) >= 5
    return copy, numbers


def test_a_corrupt_record_is_skipped_with_a_warning(
    sample: tuple[Path, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    path, ids = sample
    data = bytearray(path.read_bytes())
    offsets = _record_offsets(bytes(data), ids)
    assert len(offsets) == len(ids)
    bad = 2  # the third record: its BinXML body overwritten with an invalid token
    data[offsets[bad] + 24 : offsets[bad] + 104] = b"\xff" * 80
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="detectors.evtxfile"):
        read = [identity(e)[0] for e in read_evtx(path)]
    expected = [identity(e)[0] for e in json_events(_largest(evtx_files()).with_suffix(".json"))]
    assert read == expected[:bad] + expected[bad + 1 :]
    (warning,) = caplog.records
    assert str(path) in warning.getMessage()
    assert f"record {ids[bad]}" in warning.getMessage()


def test_a_truncated_file_yields_what_it_holds(sample: tuple[Path, list[int]]) -> None:
    path, ids = sample
    data = path.read_bytes()
    offsets = _record_offsets(data, ids)
    path.write_bytes(data[: offsets[3] + 40])
    assert len(list(read_evtx(path))) <= 3  # no exception; the records before the cut, if any


def test_a_file_that_is_not_evtx_raises_record_error(tmp_path: Path) -> None:
    for name, content in (("text.evtx", b"not an event log\n" * 100), ("empty.evtx", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(RecordError, match=name):
            read_evtx(path)


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_evtx(tmp_path / "missing.evtx")


class _Records:
    """A stand-in for the package's iterator: exceptions in it are raised, as the package does."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items: Iterator[Any] = iter(items)

    def __iter__(self) -> _Records:
        return self

    def __next__(self) -> Any:
        item = next(self.items)
        if isinstance(item, Exception):
            raise item
        return item


class _Parser:
    items: Iterable[Any] = ()

    def __init__(self, path: str) -> None:
        pass

    def records_json(self) -> _Records:
        return _Records(self.items)


def test_undecodable_records_are_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"event_record_id": 3, "data": '{"Event": {"System": {"EventID": 1}}}'}
    _Parser.items = [
        RuntimeError("Failed to parse chunk number 0: bad header"),
        {"event_record_id": 1, "data": "{not json"},
        {"event_record_id": 2, "data": "[1, 2]"},
        good,
    ]
    monkeypatch.setattr(evtxfile, "PyEvtxParser", _Parser)
    with caplog.at_level(logging.WARNING, logger="detectors.evtxfile"):
        read = list(read_evtx("fake.evtx"))
    assert read == [{"Event": {"System": {"EventID": 1}}}]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all(m.startswith("fake.evtx: skipped") for m in messages)
    assert "data at the start" in messages[0] and "record 1" in messages[1]


def test_endless_failures_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A package version that kept failing without moving on must not hang the collector.
    _Parser.items = itertools.repeat(RuntimeError("Failed to parse record number 9: x"))
    monkeypatch.setattr(evtxfile, "PyEvtxParser", _Parser)
    monkeypatch.setattr(evtxfile, "MAX_CONSECUTIVE_ERRORS", 10)
    assert list(read_evtx("fake.evtx")) == []
