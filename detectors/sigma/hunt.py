"""``socpipe hunt``: the engine offline over EVTX files, JSON lines or raw records.

For forensics on a seized machine, as Hayabusa or Chainsaw are used: the same loader, pipelines,
compiler and engine as the streaming detector, over files. Events go through the same
``Normalizer`` first, so a rule sees the same ECS event offline as in the stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sigma.processing.pipeline import ProcessingPipeline

from detectors.normalize import Normalizer
from detectors.parsetool import records_from_file
from detectors.sigma.compiler import SigmaCompileError, compile_rule
from detectors.sigma.engine import EngineRule, SigmaEngine
from detectors.sigma.loader import LoadedRule, LoadResult, Problem, load_rules
from detectors.sigma.logsource import LogsourceRouter, logsource_key
from detectors.sigma.pipelines import resolve_pipelines
from socpipe.records import AgencyRef, CollectorRef, RawRecord
from socpipe.settings import Tier


@dataclass
class EngineReport:
    """What loading and compiling a rule set gave."""

    compiled: int = 0
    failed: int = 0
    problems: int = 0
    correlations: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)


def build_engine(
    paths: Iterable[Path],
    placeholders: Mapping[str, Sequence[str]] | None = None,
    pipelines: Path | None = None,
) -> tuple[SigmaEngine, EngineReport]:
    """Load (pySigma, pipelines), compile and index every rule under ``paths``.

    ``placeholders`` fills ``%name%`` placeholders (see ``pipelines.placeholder_pipeline``);
    ``pipelines`` is the folder of YAML pipelines (default ``rules/pipelines``). Rules that
    cannot be loaded or compiled are counted and described in the report; the others are in
    the engine.
    """
    pipeline = resolve_pipelines(pipelines, placeholders=placeholders)
    result = load_rules(list(paths), pipeline=pipeline)
    report = EngineReport(problems=len(result.errors), correlations=len(result.correlations))
    report.messages.extend(str(problem) for problem in result.errors)
    compiled, failures = compile_loaded(result)
    for _, error in failures:
        report.failed += 1
        report.reasons[str(error.reason)] += 1
        report.messages.append(str(error))
    report.compiled = len(compiled)
    return engine_of((entry for _, entry in compiled), pipeline), report


def compile_loaded(
    result: LoadResult,
) -> tuple[list[tuple[LoadedRule, EngineRule]], list[tuple[LoadedRule, SigmaCompileError]]]:
    """Each loaded rule compiled and filed under its log-source keys (as written and as the
    pipeline left it), or its compile error."""
    compiled: list[tuple[LoadedRule, EngineRule]] = []
    failures: list[tuple[LoadedRule, SigmaCompileError]] = []
    for loaded in result.loaded:
        try:
            rule = compile_rule(loaded.rule)
        except SigmaCompileError as error:
            failures.append((loaded, error))
            continue
        keys = frozenset({logsource_key(loaded.logsource), logsource_key(loaded.rule.logsource)})
        compiled.append((loaded, EngineRule(rule, keys)))
    return compiled, failures


def engine_of(
    entries: Iterable[EngineRule], pipeline: ProcessingPipeline | None = None
) -> SigmaEngine:
    """An engine of compiled rules, with a router built from the same pipeline as the rules."""
    rules = list(entries)
    keys = {key for entry in rules for key in entry.keys}
    return SigmaEngine(rules, LogsourceRouter.build(pipeline, keys=keys))


def raw_records_of(path: Path) -> Iterator[RawRecord]:
    """Raw records from a file: .evtx events, our RawBatch/RawRecord JSON, or JSON lines/text."""
    return records_from_file(
        path,
        "auto",
        agency=AgencyRef(id="hunt", tier=Tier.PROVINCE),
        collector=CollectorRef(id="socpipe-hunt", version="1"),
        host=path.stem,
        accept_raw_json=True,
    )


@dataclass(frozen=True, slots=True)
class Hit:
    """One match: which rule, on which event."""

    rule_id: str | None
    title: str
    level: str | None
    tags: tuple[str, ...]
    event_id: str
    timestamp: str
    host: str | None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "rule": {
                    "id": self.rule_id,
                    "title": self.title,
                    "level": self.level,
                    "tags": list(self.tags),
                },
                "event": {"id": self.event_id, "@timestamp": self.timestamp, "host": self.host},
            }
        )


def hunt(
    engine: SigmaEngine, records: Iterable[RawRecord], normalizer: Normalizer | None = None
) -> Iterator[tuple[int, list[Hit]]]:
    """For each record: 1 and its hits (so a caller can count events and show progress)."""
    normalizer = normalizer or Normalizer()
    for raw in records:
        normalized = normalizer.normalize(raw)
        event: dict[str, Any] = normalized.document
        matched = engine.match(event)
        if not matched:
            yield 1, []
            continue
        timestamp = orjson.dumps(normalized.event.timestamp, option=orjson.OPT_UTC_Z).decode()
        host = normalized.event.host.name if normalized.event.host is not None else None
        hits = [
            Hit(rule.id, rule.title, rule.level, rule.tags, raw.id, timestamp.strip('"'), host)
            for rule in matched
        ]
        yield 1, hits


__all__ = [
    "EngineReport",
    "Hit",
    "Problem",
    "build_engine",
    "compile_loaded",
    "engine_of",
    "hunt",
    "raw_records_of",
]
