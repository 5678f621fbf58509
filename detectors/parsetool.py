"""``socpipe parse``: what the normalizer makes of lines, files or .evtx files, as ECS JSON lines.

Rule authors use it as Wazuh users use wazuh-logtest: paste a line, see the event a rule will
see. Each input line (or each event of an .evtx file) becomes a raw record exactly as a collector
would ship it, and goes through the same ``Normalizer`` as the detector.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from detectors.evtxfile import read_evtx
from detectors.normalize import Normalized, Normalizer
from socpipe import __version__
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef, utcnow
from socpipe.settings import Settings


def raw_records(
    path: Path | None, fmt: str, settings: Settings, stdin: IO[bytes] | None = None
) -> Iterator[RawRecord]:
    """Raw records for each line of ``path`` (stdin when None), or each event of an .evtx file."""
    agency = AgencyRef(
        id=settings.agency.id, tier=settings.agency.tier, name=settings.agency.name or None
    )
    collector = CollectorRef(id="socpipe-parse", version=__version__)
    host = settings.collector.host
    name = str(path) if path is not None else "-"
    if path is not None and path.suffix.lower() == ".evtx":
        source = SourceRef(type="evtx", path=name, format="winlog.evtx")
        for number, event in enumerate(read_evtx(path)):
            yield RawRecord(
                id=RawRecord.make_id(collector.id, source, "parse", number),
                agency=agency,
                collector=collector,
                host=host,
                source=source,
                received=utcnow(),
                position=number,
                data=event,
            )
        return
    source = SourceRef(type="file", path=name, format=fmt)
    stream = stdin if path is None else path.open("rb")
    assert stream is not None
    try:
        position = 0
        for raw_line in stream:
            start = position
            position += len(raw_line)
            text = raw_line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
            if not text.strip():
                continue
            yield RawRecord(
                id=RawRecord.make_id(collector.id, source, "parse", start),
                agency=agency,
                collector=collector,
                host=host,
                source=source,
                received=utcnow(),
                position=start,
                message=text,
            )
    finally:
        if path is not None:
            stream.close()


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
            out.write(orjson.dumps(result.event.to_dict()) + b"\n")
    out.flush()
    return counts
