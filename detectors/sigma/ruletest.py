"""Rule tests: example events kept beside each rule, run through the parsers and the engine.

:func:`run_tests` (``socpipe rules test PATH...``) finds every rule file under the paths
(``*.yml``/``*.yaml``, recursively; tests files themselves are not rules) and runs the cases of
its tests file, ``<rule stem>.tests.yml`` (or ``.tests.yaml``) beside it::

    tests:
      - name: failed root password from outside    # required, unique in the file
        match: true                                # required: should the rule match?
        format: syslog                             # with raw only: a parser format, or auto
        raw: "<38>Nov 27 10:00:01 web01 sshd[123]: Failed password for root from ..."
      - name: a flat Windows event                 # raw as a mapping: winlog.json, winlog.evtx
        match: true
        format: winlog.json
        raw: {EventID: 1, Channel: Microsoft-Windows-Sysmon/Operational, Image: 'C:\\x.exe'}
      - name: an ECS event given directly
        match: false
        event: {event: {dataset: system.auth}, process: {name: sshd}, message: "..."}
        rule: 1b2c...                              # only for files of several rules: id or title
        agency: so-tttt                            # with raw only: the agency that ships it

A case has exactly one of ``raw`` and ``event``. ``raw`` (a line, or a mapping for the JSON
formats) becomes a raw record as a collector would ship it (fixed agency, collector, host
``ruletest``, received 2025-06-01 00:00 UTC) and goes through the real ``Normalizer``, so the
case covers parsing too; ``format`` defaults to ``auto``. ``event`` is matched as written. YAML
turns unquoted times into datetimes: they are given back as text (``str``), but quoting is
safer. With no ``rule``, a case is about every rule of the file: ``match: true`` passes when one
of them matches, ``match: false`` when none does. Correlation rules have no per-event verdict
and are not tested.

How a case runs: the rules of every file are loaded at once (:func:`load_rules`, one pipeline),
compiled (:func:`compile_rule`) and put in one :class:`SigmaEngine` with a log-source router, as
:func:`~detectors.sigma.hunt.build_engine` does. A case's verdict is the engine's answer, so a
rule whose condition holds for the event but that the router never offers the event fails.

Problems are ``path:line: error: message``: the loader's own (errors and warnings), a rule that
does not compile, a tests file that is missing (a warning, an error with ``require_tests``),
malformed or holds a bad case (no ``name`` or ``match``, both or neither of ``raw``/``event``,
an unknown ``format``, a ``rule`` the file does not have). A bad case is not run; the others
are. A ``raw`` no parser recognises is a warning: no log source admits such an event, so the
case tests nothing. ``RuleTestReport.exit_code`` is 0 when every case passed and there is no
error, else 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from sigma.processing.pipeline import ProcessingPipeline

from detectors.normalize import Normalizer
from detectors.sigma.engine import EngineRule, SigmaEngine
from detectors.sigma.hunt import compile_loaded, engine_of
from detectors.sigma.loader import (
    RULE_SUFFIXES,
    TESTS_SUFFIXES,
    LoadedRule,
    LoadResult,
    Problem,
    filter_targets,
    is_tests_file,
    load_rules,
    read_documents,
)
from detectors.sigma.logsource import LogsourceKey
from detectors.sigma.pipelines import resolve_pipelines
from detectors.sigma.values import FailureReason
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef, stable_id
from socpipe.settings import Tier

SourceType = Literal["file", "syslog", "evtx", "http"]
RECEIVED: Final = datetime(2025, 6, 1, tzinfo=UTC)
_CASE_KEYS: Final = frozenset({"name", "match", "format", "raw", "event", "rule", "agency"})
# Fields every event has that say nothing about why a rule did or did not match.
_NOISE: Final = frozenset(
    {"v", "@timestamp", "event.id", "event.kind", "event.original", "event.created", "log.offset"}
)
_NOISE_PREFIXES: Final = ("agent.", "organization.", "labels.", "related.")
# The modifier a compile failure most likely comes from, to point at its line.
_REASON_MODIFIERS: Final = {
    FailureReason.UNFILLED_PLACEHOLDER: "expand",
    FailureReason.UNSUPPORTED_REGEX: "re",
}
_SOURCE_TYPES: Final[dict[str, SourceType]] = {"syslog": "syslog", "winlog.evtx": "evtx"}
_SUMMARY_FIELDS: Final = 30
_SUMMARY_WIDTH: Final = 100


def find_tests_file(rule_file: Path) -> Path | None:
    """The tests file beside ``rule_file`` (``.tests.yml``, then ``.tests.yaml``), if any."""
    for suffix in TESTS_SUFFIXES:
        candidate = rule_file.with_name(rule_file.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case that ran: where it is, what was expected, what the engine said, and why."""

    path: Path
    line: int
    name: str
    rule: str
    expected: bool
    matched: bool
    details: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether the engine's answer is the expected one."""
        return self.expected == self.matched

    def __str__(self) -> str:
        if self.passed:
            return f"{self.path}:{self.line}: PASS: {self.name} [{self.rule}]"
        why = "expected a match, got none" if self.expected else "matched, but should not"
        return f"{self.path}:{self.line}: FAIL: {self.name} [{self.rule}]: {why}"


@dataclass(frozen=True)
class RuleTestReport:
    """The cases run, the problems found, and the rule files without tests."""

    results: list[CaseResult]
    problems: list[Problem]
    rules: int = 0  # rule files found
    untested: list[Path] = field(default_factory=list)
    not_run: int = 0  # well-formed cases whose rule did not load or compile

    @property
    def cases(self) -> int:
        """Well-formed cases: passed + failed + not run."""
        return len(self.results) + self.not_run

    @property
    def passed(self) -> int:
        """How many cases passed."""
        return sum(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        """How many cases failed."""
        return len(self.results) - self.passed

    @property
    def errors(self) -> list[Problem]:
        """The problems that are errors."""
        return [problem for problem in self.problems if problem.severity == "error"]

    @property
    def warnings(self) -> int:
        """How many problems are warnings."""
        return len(self.problems) - len(self.errors)

    @property
    def exit_code(self) -> int:
        """1 when a case failed or there is an error, else 0."""
        return 1 if self.failed or self.errors else 0

    def format_report(self, *, verbose: bool = False) -> list[str]:
        """Problems and failed cases (with their details, indented) by file and line, passed
        cases too when ``verbose``, then a summary."""
        entries: list[tuple[str, int, list[str]]] = [
            (str(problem.path), problem.line or 0, [str(problem)]) for problem in self.problems
        ]
        entries += [
            (str(result.path), result.line, [str(result), *(f"    {d}" for d in result.details)])
            for result in self.results
            if verbose or not result.passed
        ]
        lines = [text for *_, texts in sorted(entries) for text in texts]
        lines.append(
            f"{self.rules} rules, {self.cases} cases: {self.passed} passed, {self.failed} failed, "
            f"{self.not_run} not run; {len(self.errors)} errors, {self.warnings} warnings; "
            f"{len(self.untested)} rules without tests"
        )
        return lines


@dataclass(frozen=True, slots=True)
class _Case:
    """A well-formed case of a tests file."""

    name: str
    line: int
    expected: bool
    raw: str | dict[str, Any] | None
    event: dict[str, Any] | None
    format: str
    rule: str | None
    agency: str = "ruletest"


def run_tests(
    paths: Iterable[Path],
    *,
    require_tests: bool = False,
    pipeline: ProcessingPipeline | None = None,
    normalizer: Normalizer | None = None,
) -> RuleTestReport:
    """Run the tests file of every rule file under ``paths``; see the module docstring.

    ``normalizer`` defaults to ``Normalizer()``; pass the detector's to test with its options.
    """
    pipeline = pipeline or resolve_pipelines()
    normalizer = normalizer or Normalizer()
    problems: list[Problem] = []
    rule_files = list(dict.fromkeys(_rule_files(paths, problems)))
    result = load_rules(rule_files, pipeline=pipeline)
    problems.extend(result.problems)
    engine, by_file = _engine(result, pipeline, problems)
    formats = frozenset(normalizer.parsers.formats())
    results: list[CaseResult] = []
    untested: list[Path] = []
    not_run = 0
    for rule_file in rule_files:
        tests_path = find_tests_file(rule_file)
        if tests_path is None:
            untested.append(rule_file)
            problems.append(
                Problem(
                    rule_file, None, f"no tests file ({rule_file.stem}{TESTS_SUFFIXES[0]})",
                    severity="error" if require_tests else "warning", kind="file",
                )
            )  # fmt: skip
            continue
        cases, tests_line = _read_cases(tests_path, formats, problems)
        rules = by_file.get(rule_file) or _filtered(rule_file, result, by_file)
        if not rules:
            if cases:
                not_run += len(cases)
                count = f"{len(cases)} case{'s' if len(cases) > 1 else ''}"
                problems.append(
                    Problem(
                        tests_path, tests_line, f"{count} not run: no rule of {rule_file} "
                        "loaded and compiled (see its problems)", kind="rule",
                    )
                )  # fmt: skip
            continue
        for case in cases:
            targets = _targets(case, rules, tests_path, problems)
            if targets:
                results.append(_run(case, targets, tests_path, engine, normalizer, problems))
    return RuleTestReport(results, problems, len(rule_files), untested, not_run)


def _rule_files(paths: Iterable[Path], problems: list[Problem]) -> Iterator[Path]:
    """Rule files under ``paths``; a tests file given by name stands for its rule."""
    for path in map(Path, paths):
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
            yield from sorted(p for p in found if not is_tests_file(p))
        elif path.is_file() and is_tests_file(path):
            stem = path.name.removesuffix(".yml").removesuffix(".yaml").removesuffix(".tests")
            rules = [path.with_name(stem + suffix) for suffix in RULE_SUFFIXES]
            rule = next((candidate for candidate in rules if candidate.is_file()), None)
            if rule is None:
                problems.append(Problem(path, None, f"no rule {stem}.yml beside it", kind="file"))
            else:
                yield rule
        elif path.is_file():
            yield path
        else:
            problems.append(Problem(path, None, "no such file or directory", kind="file"))


def _engine(
    result: LoadResult, pipeline: ProcessingPipeline, problems: list[Problem]
) -> tuple[SigmaEngine, dict[Path, list[EngineRule]]]:
    """Compile the loaded rules and index them as ``build_engine`` does; by rule file too."""
    compiled, failures = compile_loaded(result)
    for loaded, error in failures:
        rule = loaded.rule
        rule_id = str(rule.id) if rule.id else None
        message = f"cannot compile ({error.reason}): {error.message}"
        line = failure_line(loaded, error.reason)
        problems.append(Problem(loaded.path, line, message, rule_id, rule.title))
    by_file: dict[Path, list[EngineRule]] = {}
    for loaded, entry in compiled:
        by_file.setdefault(loaded.path, []).append(entry)
    return engine_of((entry for _, entry in compiled), pipeline), by_file


def _filtered(
    path: Path, result: LoadResult, by_file: dict[Path, list[EngineRule]]
) -> list[EngineRule]:
    """For a filter's file: the rules of this run it applies to (its cases test them, as the
    filter left them)."""
    for sigma_filter in result.filters:
        source = sigma_filter.source.path if sigma_filter.source is not None else None
        if source is None or Path(str(source)) != path:
            continue
        names = filter_targets(sigma_filter)
        return [
            entry
            for entries in by_file.values()
            for entry in entries
            if names is None or entry.rule.id in names or entry.rule.title in names
        ]
    return []


def failure_line(loaded: LoadedRule, reason: FailureReason) -> int | None:
    """The line a compile failure is likely about: the first detection key with the modifier
    that causes such failures (``|expand`` for placeholders, ``|re``), else the rule's line."""
    modifier = _REASON_MODIFIERS.get(reason)
    for path, line in loaded.keys.items():
        if path[0] == "detection" and modifier in path[-1].split("|")[1:]:
            return line
    return loaded.line


def _read_cases(
    path: Path, formats: frozenset[str], problems: list[Problem]
) -> tuple[list[_Case], int]:
    """The well-formed cases of a tests file, and the line of its ``tests`` key."""
    before = len(problems)
    documents = [doc for doc in read_documents(path, problems) if doc.data is not None]
    if len(problems) > before:
        return [], 1  # unreadable, invalid YAML, or a key given twice: fix that first

    def error(line: int | None, message: str) -> None:
        problems.append(Problem(path, line, message, kind="yaml"))

    if len(documents) != 1:
        error(documents[1].line if documents else 1, "a tests file is one YAML document")
        return [], 1
    document = documents[0]
    data, keys = document.data, document.keys
    items = data.get("tests") if isinstance(data, dict) else None
    tests_line = keys.get(("tests",), document.line)
    if not isinstance(items, list):
        error(tests_line, "a tests file is a mapping with a list under 'tests'")
        return [], tests_line
    if not items:
        problems.append(Problem(path, tests_line, "no cases", severity="warning", kind="yaml"))
    others = sorted(set(data) - {"tests"}, key=str)
    if others:
        error(keys.get((str(others[0]),)), f"unknown keys {others}: only 'tests' is known")
    cases: list[_Case] = []
    first_line: dict[str, int] = {}
    for number, item in enumerate(items):
        prefix = ("tests", str(number))
        lines = {path[2]: ln for path, ln in keys.items() if len(path) == 3 and path[:2] == prefix}
        line = min(lines.values(), default=tests_line)
        if not isinstance(item, dict):
            error(line, f"case {number + 1} is not a mapping")
            continue
        bad = len(problems)
        name, expected = item.get("name"), item.get("match")
        unknown = sorted(set(map(str, item)) - _CASE_KEYS)
        if unknown:
            error(lines.get(unknown[0], line), f"unknown keys {unknown} in case; known: "
                  f"{', '.join(sorted(_CASE_KEYS))}")  # fmt: skip
        if not isinstance(name, str) or not name.strip():
            error(line, f"case {number + 1} has no name")
        elif name in first_line:
            error(lines["name"], f"case name {name!r} is used twice (first at line "
                  f"{first_line[name]})")  # fmt: skip
        if not isinstance(expected, bool):
            error(lines.get("match", line), "'match' must be given, true or false")
        if ("raw" in item) == ("event" in item):
            error(line, "a case has exactly one of 'raw' and 'event'")
        elif "event" in item and not isinstance(item["event"], dict):
            error(lines["event"], "'event' must be a mapping (an ECS event)")
        elif "raw" in item and not isinstance(item["raw"], str | dict):
            error(lines["raw"], "'raw' must be a string (a line) or a mapping (a JSON event)")
        fmt = item.get("format", "auto")
        if "format" in item and "event" in item:
            error(lines["format"], "'format' applies to 'raw' only")
        elif not isinstance(fmt, str) or fmt not in formats:
            error(lines.get("format", line), f"unknown format {fmt!r}; known: "
                  f"{', '.join(sorted(formats))}")  # fmt: skip
        rule = item.get("rule")
        if rule is not None and not isinstance(rule, str):
            error(lines["rule"], "'rule' names a rule of the file by its id or title")
        if isinstance(name, str):
            first_line.setdefault(name, lines.get("name", line))
        if len(problems) > bad:
            continue
        assert isinstance(name, str) and isinstance(expected, bool)
        raw, event = _plain(item.get("raw")), _plain(item.get("event"))
        agency = item.get("agency", "ruletest")
        if not isinstance(agency, str) or not agency:
            error(lines.get("agency", line), "'agency' is the id of the agency the raw record "
                  "comes from")  # fmt: skip
            continue
        cases.append(_Case(name, line, expected, raw, event, str(fmt), rule, agency))
    return cases, tests_line


def _plain(value: Any) -> Any:
    """YAML's value as JSON would have it: times (YAML reads them unquoted) back to text."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, date | datetime):
        return str(value)
    return value


def _targets(
    case: _Case, rules: list[EngineRule], path: Path, problems: list[Problem]
) -> list[EngineRule]:
    """The rules of the file the case is about; [] (and a problem) when it names none of them."""
    if case.rule is None:
        return rules
    chosen = [entry for entry in rules if case.rule in (entry.rule.id, entry.rule.title)]
    if not chosen:
        named = "; ".join(f"{entry.rule.id} ({entry.rule.title})" for entry in rules)
        problems.append(
            Problem(path, case.line, f"case {case.name!r}: no rule {case.rule!r} in the "
                    f"file; it has {named}", kind="rule")
        )  # fmt: skip
    return chosen


def _run(
    case: _Case,
    targets: list[EngineRule],
    path: Path,
    engine: SigmaEngine,
    normalizer: Normalizer,
    problems: list[Problem],
) -> CaseResult:
    """Match the case's event through the engine; on failure, say why."""
    event, origin = _event(case, path, normalizer, problems)
    matched_rules = {id(rule) for rule in engine.match(event)}
    matched = any(id(entry.rule) in matched_rules for entry in targets)
    title = " | ".join(entry.rule.title for entry in targets)
    details: tuple[str, ...] = ()
    if matched != case.expected:
        details = (*origin, *_why(targets, event, engine, case.expected), *_summary(event))
    return CaseResult(path, case.line, case.name, title, case.expected, matched, details)


def _event(
    case: _Case, path: Path, normalizer: Normalizer, problems: list[Problem]
) -> tuple[dict[str, Any], list[str]]:
    """The event to match, and how it was made (for failure details)."""
    if case.event is not None:
        return case.event, ["event: given directly"]
    source = SourceRef(type=_SOURCE_TYPES.get(case.format, "file"), format=case.format)
    payload: dict[str, Any] = {"data" if isinstance(case.raw, dict) else "message": case.raw}
    raw = RawRecord(
        id=stable_id(path, case.line),
        agency=AgencyRef(id=case.agency, tier=Tier.PROVINCE),
        collector=CollectorRef(id="socpipe-ruletest", version="1"),
        host="ruletest",
        source=source,
        received=RECEIVED,
        position=0,
        **payload,
    )
    normalized = normalizer.normalize(raw)
    event: dict[str, Any] = normalized.document  # what the streaming detector matches
    origin = f"raw: {normalized.status} as {normalized.format} (format {case.format})"
    if normalized.status != "parsed":
        # No guard admits an unparsed event: a "match: false" case would pass vacuously.
        problems.append(
            Problem(path, case.line, f"case {case.name!r}: no parser recognised the raw "
                    f"record (format {case.format}); the case tests no rule", severity="warning")
        )  # fmt: skip
    error_message = (event.get("error") or {}).get("message")
    return event, [origin, *([f"parse error: {error_message}"] if error_message else [])]


def _why(
    targets: list[EngineRule], event: Mapping[str, Any], engine: SigmaEngine, expected: bool
) -> Iterator[str]:
    """Per rule: whether the event is of its log source, and whether its condition holds."""
    sources = engine.router.keys_for(event)
    yield f"event log sources: {', '.join(map(_named, sorted(sources, key=str))) or 'none'}"
    for entry in targets:
        rule = entry.rule
        routed = bool(entry.keys & sources)
        holds = rule.matches(event)
        if expected and holds and not routed:
            why = "its condition holds, but the engine never offers this event to it (routing)"
        elif not routed:
            why = "the event is not of its log source"
        else:
            why = "its condition holds" if holds else "its condition does not hold"
        where = ", ".join(map(_named, sorted(entry.keys, key=str)))
        yield f"rule {rule.title!r} ({where}): {why}"


def _named(key: LogsourceKey) -> str:
    names = zip(("product", "category", "service"), key, strict=True)
    return "{" + ", ".join(f"{name}: {value}" for name, value in names if value) + "}"


def _summary(event: Mapping[str, Any]) -> list[str]:
    """The event's dataset and fields, one ``path: value`` each, without the ever-present ones."""
    fields = [
        (path, value)
        for path, value in _flatten(event, "")
        if path not in _NOISE and not path.startswith(_NOISE_PREFIXES)
    ]
    lines = [f"event.dataset: {(event.get('event') or {}).get('dataset', '(none)')}", "fields:"]
    for path, value in fields[:_SUMMARY_FIELDS]:
        text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
        cut = text if len(text) <= _SUMMARY_WIDTH else text[: _SUMMARY_WIDTH - 1] + "…"
        lines.append(f"  {path}: {cut}")
    if len(fields) > _SUMMARY_FIELDS:
        lines.append(f"  ... and {len(fields) - _SUMMARY_FIELDS} more")
    return lines


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


__all__ = [
    "TESTS_SUFFIXES",
    "CaseResult",
    "RuleTestReport",
    "failure_line",
    "find_tests_file",
    "is_tests_file",
    "run_tests",
]
