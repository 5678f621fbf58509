"""``socpipe parse``: what the normalizer makes of lines, files or .evtx files, as ECS JSON lines.

Rule authors use it as Wazuh users use wazuh-logtest: paste a line, see the event a rule will
see. Each input line (or each event of an .evtx file) becomes a raw record exactly as a collector
would ship it, and goes through the same ``Normalizer`` as the detector.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from detectors.evtxfile import read_evtx
from detectors.normalize import Normalized, Normalizer
from socpipe import __version__
from socpipe.records import (
    AgencyRef,
    CollectorRef,
    RawBatch,
    RawRecord,
    SourceRef,
    encode_document,
    utcnow,
)
from socpipe.settings import Settings


def raw_records(
    path: Path | None, fmt: str, settings: Settings, stdin: IO[bytes] | None = None
) -> Iterator[RawRecord]:
    """Raw records for each line of ``path`` (stdin when None), or each event of an .evtx file,
    as the agency and host of ``settings`` would ship them."""
    agency = AgencyRef(
        id=settings.agency.id, tier=settings.agency.tier, name=settings.agency.name or None
    )
    collector = CollectorRef(id="socpipe-parse", version=__version__)
    return records_from_file(
        path, fmt, agency=agency, collector=collector, host=settings.collector.host, stdin=stdin
    )


def records_from_file(
    path: Path | None,
    fmt: str,
    *,
    agency: AgencyRef,
    collector: CollectorRef,
    host: str,
    stdin: IO[bytes] | None = None,
    accept_raw_json: bool = False,
) -> Iterator[RawRecord]:
    """Raw records from a file as a collector would make them: an .evtx file's events, else one
    record per non-blank line (ids from source and byte offset). With ``accept_raw_json``, lines
    that are our own RawBatch or RawRecord JSON are taken as the records they hold."""
    name = str(path) if path is not None else "-"

    def record(source: SourceRef, position: int, **payload: Any) -> RawRecord:
        return RawRecord(
            id=RawRecord.make_id(collector.id, source, "file", position),
            agency=agency,
            collector=collector,
            host=host,
            source=source,
            received=utcnow(),
            position=position,
            **payload,
        )

    if path is not None and path.suffix.lower() == ".evtx":
        source = SourceRef(type="evtx", path=name, format="winlog.evtx")
        for number, event in enumerate(read_evtx(path)):
            yield record(source, number, data=event)
        return
    source = SourceRef(type="file", path=name, format=fmt)
    stream = stdin if path is None else path.open("rb")
    assert stream is not None
    try:
        position = 0
        for raw_line in stream:
            start = position
            position += len(raw_line)
            if accept_raw_json and raw_line.startswith(b'{"v"'):
                ours = _our_records(raw_line)
                if ours is not None:
                    yield from ours
                    continue
            text = raw_line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
            if text.strip():
                yield record(source, start, message=text)
    finally:
        if path is not None:
            stream.close()


def _our_records(line: bytes) -> list[RawRecord] | None:
    """The records of a RawBatch or RawRecord JSON line, or None if the line is not one."""
    try:
        data = orjson.loads(line)
        if isinstance(data, dict) and "records" in data:
            return RawBatch.model_validate(data).records
        if isinstance(data, dict) and "agency" in data and "source" in data:
            return [RawRecord.model_validate(data)]
    except ValueError:
        pass  # not ours after all: read as a line
    return None


def run_parse(
    paths: list[Path],
    fmt: str,
    settings: Settings,
    normalizer: Normalizer,
    out: IO[bytes],
    stdin: IO[bytes] | None = None,
) -> dict[str, int]:
    """Write one ECS JSON line per record to ``out``; returns counts by outcome."""
    counts = {"parsed": 0, "unparsed": 0}
    sources: list[Path | None] = list(paths) or [None]
    for path in sources:
        for raw in raw_records(path, fmt, settings, stdin or sys.stdin.buffer):
            result: Normalized = normalizer.normalize(raw)
            counts[result.status] += 1
            out.write(encode_document(result.document) + b"\n")
    out.flush()
    return counts
