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
        rule: 1b2c...                              # for files of several rules: id, name, title
        agency: so-tttt                            # with raw only: the agency that ships it

A case has exactly one of ``raw``, ``event`` and ``stream``. ``raw`` (a line, or a mapping for
the JSON formats) becomes a raw record as a collector would ship it (fixed agency, collector,
host ``ruletest``, received 2025-06-01 00:00 UTC) and goes through the real ``Normalizer``, so
the case covers parsing too; ``format`` defaults to ``auto``. ``event`` is matched as written.
YAML turns unquoted times into datetimes: they are given back as text (``str``), but quoting is
safer. With no ``rule``, a case is about every rule of the file: ``match: true`` passes when one
of them matches, ``match: false`` when none does.

Correlation rules are tested with a stream of events; the case is about the correlations of its
file (``rule`` picks one by id, name or title)::

      - name: six failures from one address in two minutes
        match: true             # the correlation fires (at least once) over the stream
        count: 1                # optional, with match: true: exactly how many hits
        format: syslog          # optional: format and agency of the items that give none
        stream:
          - {raw: "<38>Nov 27 10:00:01 srv sshd[1]: Failed password for root from ..."}
          - {format: syslog, raw: "...", agency: so-tttt}
          - {event: {"@timestamp": "2024-11-27T10:00:30+07:00", event: {...}, ...}}

Each item is made as a single case's ``raw`` or ``event`` (same keys: ``format``, ``raw``,
``event``, ``agency``) and the stream goes, in the order written, through the engine of every
rule of the run (a correlation's base rules may sit in its file, as other YAML documents, or in
another file of the paths) and through the correlations of the run, on each event's
``@timestamp``; :mod:`detectors.sigma.ruletest_stream` has the details. A syslog line carries no
year: it is given the one that puts it within a year before 2025-06-01 (``Nov 27`` is 2024), so
lines of formats that write their year (FortiGate, web access logs) must use that year to share
a window with them. The case passes when the hits of its correlations, summed, number at least
one (``match: true``), exactly ``count``, or none (``match: false``).

How a case runs: the rules of every file are loaded at once (:func:`load_rules`, one pipeline),
compiled (:func:`compile_rule`) and put in one :class:`SigmaEngine` with a log-source router, as
:func:`~detectors.sigma.hunt.build_engine` does. A case's verdict is the engine's answer, so a
rule whose condition holds for the event but that the router never offers the event fails.

Problems are ``path:line: error: message``: the loader's own (errors and warnings), a rule that
does not compile or a correlation that cannot run, a tests file that is missing (a warning, an
error with ``require_tests``), malformed or holds a bad case (no ``name`` or ``match``, not
exactly one of ``raw``/``event``/``stream``, an unknown ``format``, a ``rule`` the file does not
have, a ``stream`` that is not a list of items each with one of ``raw``/``event``, a ``count``
that is not a whole number of at least 1 with ``match: true``, one event for a file with only
correlations or a stream for one without). A bad case is not run; the others are. A ``raw`` no
parser recognises, and a stream with late or untimed events, are warnings: the case does not
test what it says. ``RuleTestReport.exit_code`` is 0 when every case passed and there is no
error, else 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
from sigma.correlations import SigmaCorrelationRule
from sigma.processing.pipeline import ProcessingPipeline

from detectors.normalize import Normalizer
from detectors.sigma.compiler import CompiledRule
from detectors.sigma.correlation import keys_by_compiled
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
from detectors.sigma.ruletest_stream import (
    ITEM_KEYS,
    CaseEvent,
    StreamOutcome,
    StreamRunner,
    make_event,
    names,
    read_event,
    read_stream,
)
from detectors.sigma.values import FailureReason

_Rule = TypeVar("_Rule", EngineRule, SigmaCorrelationRule)
# A rule's names, as a case's ``rule`` may give it: id, name, title (those it has).
_Names = Callable[[EngineRule], tuple[str, ...]]
_CASE_KEYS: Final = ITEM_KEYS | {"name", "match", "count", "stream", "rule"}
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
    """One case that ran: where it is, what was expected, what the engine said, and why.

    A stream's case also has its correlations' ``hits``, and the ``count`` it expects if any.
    """

    path: Path
    line: int
    name: str
    rule: str
    expected: bool
    matched: bool
    details: tuple[str, ...] = ()
    hits: int | None = None
    count: int | None = None

    @property
    def passed(self) -> bool:
        """Whether the engine's answer is the expected one."""
        if self.count is not None:
            return self.hits == self.count
        return self.expected == self.matched

    def __str__(self) -> str:
        if self.passed:
            return f"{self.path}:{self.line}: PASS: {self.name} [{self.rule}]"
        if self.hits is None:
            why = "expected a match, got none" if self.expected else "matched, but should not"
        elif self.count is not None:
            why = f"expected {self.count} hits, got {self.hits}"
        else:
            why = (
                "expected a hit, got none" if self.expected else f"{self.hits} hits, expected none"
            )
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
    """A well-formed case of a tests file: one event, or a stream of them."""

    name: str
    line: int
    expected: bool
    rule: str | None
    events: tuple[CaseEvent, ...]
    stream: bool = False
    count: int | None = None


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
    engine, by_file, keys, rule_names = _engine(result, pipeline, problems)
    streams = StreamRunner(result.correlations, engine, keys, normalizer, problems)
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
        correlations = streams.of_file(rule_file)
        if not rules and not correlations:
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
            if not (correlations if case.stream else rules):
                not_run += 1
                problems.append(_wrong_kind(case, rule_file, tests_path))
            elif case.stream:
                chosen = _targets(case, correlations, names, tests_path, problems)
                if chosen:
                    outcome = streams.run(case.name, case.line, case.events, chosen, tests_path,
                                          problems)  # fmt: skip
                    results.append(_stream_result(case, chosen, tests_path, outcome))
            else:
                targets = _targets(case, rules, rule_names, tests_path, problems)
                if targets:
                    results.append(_run(case, targets, tests_path, engine, normalizer, problems))
    return RuleTestReport(results, problems, len(rule_files), untested, not_run)


def _wrong_kind(case: _Case, rule_file: Path, tests_path: Path) -> Problem:
    """A case whose file has no rule of its kind: a stream tests correlations, one event tests
    per-event rules."""
    if case.stream:
        has = "no correlation that loaded and can run, and a stream tests correlations"
    else:
        has = ("no per-event rule that loaded and compiled, and one event tests those (a "
               "correlation's case gives a 'stream')")  # fmt: skip
    message = f"case {case.name!r} not run: {rule_file} has {has}"
    return Problem(tests_path, case.line, message, kind="rule")


def _stream_result(
    case: _Case, targets: list[SigmaCorrelationRule], path: Path, outcome: StreamOutcome
) -> CaseResult:
    """A stream case's result: details (each event, the hits) only when it failed."""
    title = " | ".join(str(target.title) for target in targets)
    result = CaseResult(path, case.line, case.name, title, case.expected, outcome.hits > 0,
                        (), outcome.hits, case.count)  # fmt: skip
    return result if result.passed else replace(result, details=outcome.details)


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
) -> tuple[SigmaEngine, dict[Path, list[EngineRule]], dict[CompiledRule, str], _Names]:
    """Compile the loaded rules and index them as ``build_engine`` does; by rule file too. Each
    compiled rule's key as correlations name it, and its names as a case's ``rule`` may."""
    compiled, failures = compile_loaded(result)
    for loaded, error in failures:
        rule = loaded.rule
        rule_id = str(rule.id) if rule.id else None
        message = f"cannot compile ({error.reason}): {error.message}"
        line = failure_line(loaded, error.reason)
        problems.append(Problem(loaded.path, line, message, rule_id, rule.title))
    by_file: dict[Path, list[EngineRule]] = {}
    names: dict[CompiledRule, tuple[str, ...]] = {}
    for loaded, entry in compiled:
        by_file.setdefault(loaded.path, []).append(entry)
        found = (loaded.rule.id, loaded.rule.name, loaded.rule.title)
        names[entry.rule] = tuple(str(name) for name in found if name)
    engine = engine_of((entry for _, entry in compiled), pipeline)
    return engine, by_file, keys_by_compiled(compiled), lambda entry: names[entry.rule]


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
        name, expected, count = item.get("name"), item.get("match"), item.get("count")
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
        if "count" in item and not (
            "stream" in item and expected is True and type(count) is int and count >= 1
        ):
            error(lines["count"], "'count' is how many hits a stream gives: a whole number of "
                  "at least 1, with 'match: true'")  # fmt: skip
        rule = item.get("rule")
        if rule is not None and not isinstance(rule, str):
            error(lines["rule"], "'rule' names a rule of the file by its id, name or title")
        if isinstance(name, str):
            first_line.setdefault(name, lines.get("name", line))
        events: tuple[CaseEvent, ...] = ()
        if sum(key in item for key in ("raw", "event", "stream")) != 1:
            error(line, "a case has exactly one of 'raw', 'event' and 'stream'")
        elif (source := read_event(item, lines, line, formats, error)) and "stream" in item:
            events = read_stream(item["stream"], keys, (*prefix, "stream"), source, formats, error)
        elif source:
            events = (source,)
        if len(problems) > bad:
            continue
        assert isinstance(name, str) and isinstance(expected, bool)
        stream = "stream" in item
        cases.append(_Case(name, line, expected, rule, events, stream, count if stream else None))
    return cases, tests_line


def _targets(
    case: _Case,
    rules: list[_Rule],
    named: Callable[[_Rule], tuple[str, ...]],
    path: Path,
    problems: list[Problem],
) -> list[_Rule]:
    """The rules of the file the case is about; [] (and a problem) when it names none of them.
    ``named`` gives a rule's names (id, name, title: those it has)."""
    if case.rule is None:
        return rules
    chosen = [rule for rule in rules if case.rule in named(rule)]
    if not chosen:
        has = "; ".join(_described(named(rule)) for rule in rules)
        problems.append(
            Problem(path, case.line, f"case {case.name!r}: no rule {case.rule!r} in the "
                    f"file; it has {has}", kind="rule")
        )  # fmt: skip
    return chosen


def _described(names: tuple[str, ...]) -> str:
    """``id / name (title)`` of a rule's names (id, name, title: those it has)."""
    return f"{' / '.join(names[:-1])} ({names[-1]})" if len(names) > 1 else names[0]


def _run(
    case: _Case,
    targets: list[EngineRule],
    path: Path,
    engine: SigmaEngine,
    normalizer: Normalizer,
    problems: list[Problem],
) -> CaseResult:
    """Match the case's event through the engine; on failure, say why."""
    event, origin = make_event(case.events[0], case.name, path, normalizer, problems)
    matched_rules = {id(rule) for rule in engine.match(event)}
    matched = any(id(entry.rule) in matched_rules for entry in targets)
    title = " | ".join(entry.rule.title for entry in targets)
    details: tuple[str, ...] = ()
    if matched != case.expected:
        details = (*origin, *_why(targets, event, engine, case.expected), *_summary(event))
    return CaseResult(path, case.line, case.name, title, case.expected, matched, details)


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
