"""``socpipe hunt``: the engine offline over EVTX files, JSON lines or raw records.

For forensics on a seized machine, as Hayabusa or Chainsaw are used: the same loader, pipelines,
compiler and engine as the streaming detector, over files. Events go through the same
``Normalizer`` first, so a rule sees the same ECS event offline as in the stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sigma.processing.pipeline import ProcessingPipeline

from detectors.normalize import Normalizer
from detectors.parsetool import records_from_file
from detectors.sigma.compiler import CompiledRule, SigmaCompileError, compile_rule
from detectors.sigma.correlation import (
    CorrelationEngine,
    CorrelationHit,
    build_correlations,
    keys_by_compiled,
)
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
    the engine. Correlation rules are left to :func:`build_hunter`.
    """
    hunter = build_hunter(paths, placeholders, pipelines, correlations=False)
    return hunter.engine, hunter.report


@dataclass
class Hunter:
    """The engine of a rule set, and the engine of its correlation rules (if it has any)."""

    engine: SigmaEngine
    report: EngineReport
    correlations: CorrelationEngine | None = None
    # Each compiled rule's key, as correlations name their rules (id, else name).
    keys: dict[CompiledRule, str] = field(default_factory=dict)


def build_hunter(
    paths: Iterable[Path],
    placeholders: Mapping[str, Sequence[str]] | None = None,
    pipelines: Path | None = None,
    *,
    correlations: bool = True,
) -> Hunter:
    """:func:`build_engine`, and the correlation rules of the set compiled for streaming."""
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
    hunter = Hunter(engine_of((entry for _, entry in compiled), pipeline), report)
    if correlations and result.correlations:
        hunter.correlations, problems = build_correlations(result.correlations)
        report.problems += sum(problem.severity == "error" for problem in problems)
        report.messages.extend(str(problem) for problem in problems)
        hunter.keys = keys_by_compiled(compiled)
    return hunter


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
    """One match: which rule, on which event; or a correlation, over which events."""

    rule_id: str | None
    title: str
    level: str | None
    tags: tuple[str, ...]
    event_id: str
    timestamp: str
    host: str | None
    correlation: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "rule": {
                "id": self.rule_id,
                "title": self.title,
                "level": self.level,
                "tags": list(self.tags),
            },
            "event": {"id": self.event_id, "@timestamp": self.timestamp, "host": self.host},
        }
        if self.correlation is not None:
            body["correlation"] = self.correlation
        return orjson.dumps(body)


def hunt(
    engine: SigmaEngine | Hunter,
    records: Iterable[RawRecord],
    normalizer: Normalizer | None = None,
) -> Iterator[tuple[int, list[Hit]]]:
    """For each record: 1 and its hits (so a caller can count events and show progress);
    with correlations, a last (0, hits) for the windows the end of the input closes.

    Correlations run exactly as in the stream (``detectors.sigma.correlation``), on event time;
    rules a correlation with ``generate: false`` references give no hits of their own.
    """
    hunter = engine if isinstance(engine, Hunter) else Hunter(engine, EngineReport())
    correlations, keys = hunter.correlations, hunter.keys
    quiet = correlations.quiet_rules if correlations is not None else frozenset()
    normalizer = normalizer or Normalizer()
    for raw in records:
        normalized = normalizer.normalize(raw)
        event: dict[str, Any] = normalized.document
        matched = hunter.engine.match(event)
        if not matched:
            yield 1, []
            continue
        timestamp = _text(normalized.event.timestamp)
        host = normalized.event.host.name if normalized.event.host is not None else None
        hits = [
            Hit(rule.id, rule.title, rule.level, rule.tags, raw.id, timestamp, host)
            for rule in matched
            if keys.get(rule) not in quiet
        ]
        if correlations is not None:
            fired = correlations.observe([keys[rule] for rule in matched if rule in keys], event)
            hits.extend(map(_correlation_hit, fired))
        yield 1, hits
    if correlations is not None:
        closing = correlations.advance(datetime.max.replace(tzinfo=UTC))
        yield 0, [_correlation_hit(hit) for hit in closing]


def _text(moment: datetime) -> str:
    return orjson.dumps(moment, option=orjson.OPT_UTC_Z).decode().strip('"')


def _correlation_hit(hit: CorrelationHit) -> Hit:
    return Hit(
        hit.correlation_id,
        hit.title,
        hit.level,
        hit.tags,
        hit.id,
        _text(hit.window_end),
        None,
        {
            "type": hit.type,
            "group": hit.group,
            "window": {"start": _text(hit.window_start), "end": _text(hit.window_end)},
            "value": hit.value,
            "event_count": hit.event_count,
            "event_ids": list(hit.event_ids),
            "rules": list(hit.rules),
        },
    )


__all__ = [
    "EngineReport",
    "Hit",
    "Hunter",
    "Problem",
    "build_engine",
    "build_hunter",
    "compile_loaded",
    "engine_of",
    "hunt",
    "raw_records_of",
]
