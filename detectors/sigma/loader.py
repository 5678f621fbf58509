"""Loading Sigma rule files: every rule that can be loaded is, every problem is reported.

:func:`load_rules` reads files and directories (``*.yml``/``*.yaml``, recursively), parses each
YAML document with pySigma (``collect_errors``: a bad rule is reported, not raised), checks its
condition, applies the processing pipeline (:mod:`detectors.sigma.pipelines`) and sorts the
result into

- ``loaded``: rules ready for the matcher, their fields socpipe's dotted paths, each with its
  log source as written and where it came from;
- ``correlations``: correlation rules, references resolved to the loaded rules (their group-by
  fields mapped by the same pipeline);
- ``unsupported``: valid rules of log sources socpipe has no events for (cloud services, macOS,
  ...), each also reported as a warning;
- ``problems``: what went wrong, each with file, line (where the YAML tells), rule id and title.

Nothing stops the other rules from loading: malformed YAML loses its file, a bad rule loses
itself. The YAML is read here, not by pySigma, to know the line of every key and to report
duplicate keys, which YAML itself silently resolves to the last one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import (
    SigmaAuthorError,
    SigmaConditionError,
    SigmaCorrelationConditionError,
    SigmaCorrelationRuleError,
    SigmaCorrelationTypeError,
    SigmaDateError,
    SigmaDescriptionError,
    SigmaDetectionError,
    SigmaError,
    SigmaFalsePositivesError,
    SigmaFieldsError,
    SigmaIdentifierError,
    SigmaLevelError,
    SigmaLicenseError,
    SigmaLogsourceError,
    SigmaModifiedError,
    SigmaModifierError,
    SigmaNameError,
    SigmaReferencesError,
    SigmaRelatedError,
    SigmaRuleLocation,
    SigmaRuleNotFoundError,
    SigmaScopeError,
    SigmaStatusError,
    SigmaTagError,
    SigmaTimespanError,
    SigmaTitleError,
)
from sigma.filters import SigmaFilter
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaLogSource, SigmaRule

from detectors.sigma.new_value import translate as translate_new_value
from detectors.sigma.pipelines import process_rule, resolve_pipelines

Severity = Literal["error", "warning"]
# What a problem is about: the file, its YAML, a rule's content, its condition, the pipeline,
# its log source, a correlation's references, or an identifier given twice.
ProblemKind = Literal[
    "file", "yaml", "duplicate-key", "rule", "condition", "pipeline", "unsupported-logsource",
    "reference", "duplicate-id",
]  # fmt: skip
KeyPath = tuple[str, ...]

RULE_SUFFIXES: Final = (".yml", ".yaml")
# A rule's example events (``socpipe rules test``, detectors.sigma.ruletest): not rules.
TESTS_SUFFIXES: Final = (".tests.yml", ".tests.yaml")
_QUOTED = re.compile(r"'([^']{1,200})'")
# The key of a rule document that each kind of pySigma error is about (most specific first).
_ERROR_KEYS: Final[tuple[tuple[type[SigmaError], KeyPath], ...]] = (
    (SigmaTimespanError, ("correlation", "timespan")),
    (SigmaCorrelationConditionError, ("correlation", "condition")),
    (SigmaCorrelationTypeError, ("correlation", "type")),
    (SigmaRuleNotFoundError, ("correlation", "rules")),
    (SigmaCorrelationRuleError, ("correlation",)),
    (SigmaConditionError, ("detection", "condition")),
    (SigmaModifierError, ("detection",)),
    (SigmaDetectionError, ("detection",)),
    (SigmaLogsourceError, ("logsource",)),
    (SigmaIdentifierError, ("id",)),
    (SigmaTitleError, ("title",)),
    (SigmaNameError, ("name",)),
    (SigmaStatusError, ("status",)),
    (SigmaLevelError, ("level",)),
    (SigmaDateError, ("date",)),
    (SigmaModifiedError, ("modified",)),
    (SigmaTagError, ("tags",)),
    (SigmaFieldsError, ("fields",)),
    (SigmaFalsePositivesError, ("falsepositives",)),
    (SigmaReferencesError, ("references",)),
    (SigmaAuthorError, ("author",)),
    (SigmaDescriptionError, ("description",)),
    (SigmaRelatedError, ("related",)),
    (SigmaLicenseError, ("license",)),
    (SigmaScopeError, ("scope",)),
)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a rule file, where it is, and how bad."""

    path: Path
    line: int | None
    message: str
    rule_id: str | None = None
    title: str | None = None
    severity: Severity = "error"
    kind: ProblemKind = "rule"

    @property
    def location(self) -> str:
        """``path:line``, or the path alone when the line is not known."""
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)

    def __str__(self) -> str:
        about = f" [{self.title or self.rule_id}]" if self.title or self.rule_id else ""
        return f"{self.location}: {self.severity}: {self.message}{about}"


@dataclass(frozen=True, slots=True)
class LoadedRule:
    """A rule after the pipeline, with its log source as written and where it came from."""

    rule: SigmaRule
    logsource: SigmaLogSource
    path: Path
    line: int | None
    # The line of every key of the rule's YAML document, by its path from the document's root.
    keys: Mapping[KeyPath, int] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LoadResult:
    """Loaded rules, correlation rules, valid rules of unsupported log sources, and problems."""

    loaded: list[LoadedRule]
    correlations: list[SigmaCorrelationRule]
    problems: list[Problem]
    unsupported: list[SigmaRule] = field(default_factory=list)
    files: int = 0
    # Sigma filters (exceptions): already applied to the rules they name; kept for tools.
    filters: list[SigmaFilter] = field(default_factory=list)

    @property
    def rules(self) -> list[SigmaRule]:
        """The loaded rules, processed: their fields are socpipe's dotted paths."""
        return [loaded.rule for loaded in self.loaded]

    @property
    def errors(self) -> list[Problem]:
        """The problems that are errors."""
        return [problem for problem in self.problems if problem.severity == "error"]


@dataclass(frozen=True, slots=True)
class _Document:
    """One YAML document of a rule file: its content, first line and the line of each key."""

    data: Any
    line: int
    keys: dict[KeyPath, int]
    # Whether a key is given twice: the rule is then ambiguous, and not loaded.
    duplicates: bool = False


@dataclass
class _Parsed:
    """A rule or correlation parsed from one document, before the pipeline."""

    item: SigmaRule | SigmaCorrelationRule
    path: Path
    document: _Document


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (the C one when available); documents are composed, then built."""


def load_rules(
    paths: Iterable[Path],
    *,
    collect_errors: bool = True,
    pipeline: ProcessingPipeline | None = None,
) -> LoadResult:
    """Load every rule under ``paths`` (files or directories), applying ``pipeline``.

    ``pipeline`` defaults to :func:`detectors.sigma.pipelines.resolve_pipelines`. With
    ``collect_errors`` false the first error is raised (as SigmaError) instead of reported.
    """
    if pipeline is None:
        pipeline = resolve_pipelines()
    problems: list[Problem] = []
    parsed: list[_Parsed] = []
    filters: list[SigmaFilter] = []
    files = 0
    for path in _rule_files(paths, problems):
        files += 1
        for document in read_documents(path, problems):
            _parse_document(path, document, parsed, filters, problems)
    if not collect_errors and problems:
        raise SigmaError(str(problems[0]))
    result = _process(parsed, filters, pipeline, problems, files)
    if not collect_errors and result.errors:
        raise SigmaError(str(result.errors[0]))
    return result


def is_tests_file(path: Path) -> bool:
    """Whether ``path`` is a rule's tests file (``*.tests.yml``), not a rule."""
    return path.name.endswith(TESTS_SUFFIXES)


def _rule_files(paths: Iterable[Path], problems: list[Problem]) -> Iterator[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
            yield from sorted(p for p in found if not is_tests_file(p))
        elif path.is_file():
            yield path
        else:
            problems.append(Problem(path, None, "no such file or directory", kind="file"))


def read_documents(path: Path, problems: list[Problem]) -> list[_Document]:
    """The documents of a YAML file; none when it cannot be read or parsed (a problem then)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(path, None, f"cannot read: {error}", kind="file"))
        return []
    documents: list[_Document] = []
    loader = _LineLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            keys: dict[KeyPath, int] = {}
            before = len(problems)
            _index(node, (), keys, path, problems)
            data = loader.construct_document(node)
            if len(problems) > before and isinstance(data, dict):
                rule_id, title = _text(data.get("id")), _text(data.get("title"))
                problems[before:] = [
                    replace(problem, rule_id=rule_id, title=title) for problem in problems[before:]
                ]
            line = node.start_mark.line + 1
            documents.append(_Document(data, line, keys, duplicates=len(problems) > before))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        problems.append(Problem(path, line, f"invalid YAML: {_yaml_message(error)}", kind="yaml"))
        return []
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        problems.append(Problem(path, None, f"invalid YAML: {error}", kind="yaml"))
        return []
    finally:
        loader.dispose()
    return documents


def _yaml_message(error: yaml.MarkedYAMLError) -> str:
    parts = [error.context or "", error.problem or ""]
    return " ".join(part for part in parts if part) or type(error).__name__


def _index(
    node: yaml.Node, path: KeyPath, keys: dict[KeyPath, int], file: Path, problems: list[Problem]
) -> None:
    """Record the line of each mapping key below ``node``; report keys given twice."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen and key != "<<":
                where = ".".join((*path, key))
                problems.append(
                    Problem(
                        file, line, f"duplicate key {where!r} (first at line {seen[key]}); YAML "
                        "keeps only the last", kind="duplicate-key",
                    )
                )  # fmt: skip
            seen.setdefault(key, line)
            keys.setdefault((*path, key), line)
            _index(value_node, (*path, key), keys, file, problems)
    elif isinstance(node, yaml.SequenceNode):
        for number, item in enumerate(node.value):
            _index(item, (*path, str(number)), keys, file, problems)


def _parse_document(
    path: Path,
    document: _Document,
    parsed: list[_Parsed],
    filters: list[SigmaFilter],
    problems: list[Problem],
) -> None:
    data = document.data
    if data is None or document.duplicates:  # an empty document (a trailing ---), or reported
        return
    if not isinstance(data, dict):
        kind = type(data).__name__
        problems.append(Problem(path, document.line, f"a rule must be a YAML mapping, not {kind}"))
        return
    if "action" in data:
        problems.append(
            Problem(
                path, document.line, "collection actions (action: global/repeat/reset) are not "
                "supported: write each rule whole", _text(data.get("id")), _text(data.get("title")),
            )
        )  # fmt: skip
        return
    data, errors = translate_new_value(data)  # socpipe's new_value correlation type
    if errors:
        for key, message in errors:
            line = document.keys.get(key, document.line)
            problems.append(
                Problem(path, line, message, _text(data.get("id")), _text(data.get("title")))
            )
        return
    source = SigmaRuleLocation(path, document.line)
    try:
        collection = SigmaCollection.from_dicts(
            [data], collect_errors=True, source=source, collect_filters=True,
            resolve_references=False,
        )  # fmt: skip
    except SigmaError as error:
        problems.append(_problem(error, path, document, data))
        return
    except Exception as error:  # pySigma assumes shapes odd YAML does not have
        message = f"cannot parse rule: {type(error).__name__}: {error}"
        problems.append(_problem(SigmaError(message), path, document, data))
        return
    if collection.errors:
        problems.extend(_problem(error, path, document, data) for error in collection.errors)
        return
    filters.extend(collection.filters)
    for item in collection.rules:
        parsed.append(_Parsed(item, path, document))


def _process(
    parsed: list[_Parsed],
    filters: list[SigmaFilter],
    pipeline: ProcessingPipeline,
    problems: list[Problem],
    files: int,
) -> LoadResult:
    loaded: list[LoadedRule] = []
    unsupported: list[SigmaRule] = []
    correlations: list[_Parsed] = []
    by_id: dict[str, _Parsed] = {}
    for entry in parsed:
        rule, document = entry.item, entry.document
        if rule.id is not None:
            first = by_id.setdefault(str(rule.id), entry)
            if first is not entry:
                problems.append(
                    _problem(
                        SigmaIdentifierError(
                            f"rule id {rule.id} is also the id of "
                            f"{first.path}:{first.document.line}"
                        ),
                        entry.path, document, document.data, "duplicate-id",
                    )
                )  # fmt: skip
                continue
        if isinstance(rule, SigmaCorrelationRule):
            correlations.append(entry)
            continue
        try:
            for sigma_filter in filters:
                filtered = sigma_filter.apply_on_rule(rule)
                rule = filtered if isinstance(filtered, SigmaRule) else rule
            for condition in rule.detection.parsed_condition:
                condition.parsed  # noqa: B018 - parsing is what checks the condition
        except SigmaError as error:
            problems.append(_problem(error, entry.path, document, document.data, "condition"))
            continue
        try:
            processed = process_rule(rule, pipeline)
            for condition in rule.detection.parsed_condition:
                condition.parsed  # noqa: B018 - the conditions the pipeline added must parse too
        except SigmaError as error:
            problems.append(_problem(error, entry.path, document, document.data, "pipeline"))
            continue
        if processed.guarded:
            loaded.append(
                LoadedRule(rule, processed.logsource, entry.path, document.line, document.keys)
            )
        else:
            unsupported.append(rule)
            problems.append(_unsupported(processed.logsource, entry.path, document))
    ready = _correlations(correlations, loaded, unsupported, pipeline, problems)
    problems.extend(_idle_filters(filters, parsed))
    return LoadResult(loaded, ready, problems, unsupported, files, filters)


def filter_targets(sigma_filter: SigmaFilter) -> list[str] | None:
    """The rule ids, names or titles a filter names; None when it applies to any rule."""
    rules = sigma_filter.filter.rules
    if isinstance(rules, str):
        return None
    return [str(reference.reference) for reference in rules]


def _idle_filters(filters: list[SigmaFilter], parsed: list[_Parsed]) -> list[Problem]:
    """A filter naming no rule of the set never applies: likely a mistyped id, so say so."""
    names: set[str] = set()
    for entry in parsed:
        rule = entry.item
        names.update(str(value) for value in (rule.id, rule.name, rule.title) if value)
    idle = []
    for sigma_filter in filters:
        targets = filter_targets(sigma_filter)
        if targets is not None and not names.intersection(targets):
            where = sigma_filter.source.path if sigma_filter.source is not None else None
            idle.append(
                Problem(
                    Path(str(where)) if where is not None else Path("<filter>"), None,
                    f"filter applies to no rule of the set: it names {', '.join(targets)}",
                    str(sigma_filter.id) if sigma_filter.id else None, sigma_filter.title,
                    severity="warning", kind="reference",
                )
            )  # fmt: skip
    return idle


def _unsupported(logsource: SigmaLogSource, path: Path, document: _Document) -> Problem:
    named = ", ".join(
        f"{key}: {value}"
        for key, value in (
            ("product", logsource.product),
            ("category", logsource.category),
            ("service", logsource.service),
        )
        if value
    )
    return _problem(
        SigmaLogsourceError(
            f"no socpipe events for log source {{{named or 'empty'}}}: rule not loaded"
        ),
        path, document, document.data, "unsupported-logsource", "warning",
    )  # fmt: skip


def _correlations(
    entries: list[_Parsed],
    loaded: list[LoadedRule],
    unsupported: list[SigmaRule],
    pipeline: ProcessingPipeline,
    problems: list[Problem],
) -> list[SigmaCorrelationRule]:
    """Correlations whose every referenced rule is loaded, their references resolved."""
    members: list[SigmaRule | SigmaCorrelationRule | SigmaFilter] = [i.rule for i in loaded]
    members += [entry.item for entry in entries]
    collection = SigmaCollection(members, collect_filters=True, resolve_references=False)
    not_loaded = {str(rule.id) for rule in unsupported} | {r.name for r in unsupported if r.name}
    ready: list[SigmaCorrelationRule] = []
    for entry in entries:
        correlation = entry.item
        assert isinstance(correlation, SigmaCorrelationRule)
        document = entry.document
        unsupported_refs = [
            str(ref.reference)
            for ref in correlation.rules or []
            if str(ref.reference) in not_loaded
        ]
        if unsupported_refs:
            message = f"references rules of unsupported log sources: {', '.join(unsupported_refs)}"
            problems.append(
                _problem(
                    SigmaRuleNotFoundError(message), entry.path, document, document.data,
                    "unsupported-logsource", "warning",
                )
            )  # fmt: skip
            continue
        try:
            correlation.resolve_rule_references(collection)
            pipeline.apply(correlation)
        except SigmaError as error:
            problems.append(_problem(error, entry.path, document, document.data, "reference"))
            continue
        except Exception as error:  # a transformation pySigma did not expect a correlation in
            failed = SigmaError(f"processing pipeline failed: {type(error).__name__}: {error}")
            problems.append(_problem(failed, entry.path, document, document.data, "pipeline"))
            continue
        ready.append(correlation)
    return ready


def _problem(
    error: SigmaError,
    path: Path,
    document: _Document,
    data: Mapping[str, Any],
    kind: ProblemKind = "rule",
    severity: Severity = "error",
) -> Problem:
    """A problem from a pySigma error, at the line of the key the error is about."""
    message = str(error.args[0]) if error.args else type(error).__name__
    return Problem(
        path=path,
        line=_line_of(error, message, document),
        message=message,
        rule_id=_text(data.get("id")),
        title=_text(data.get("title")),
        severity=severity,
        kind=kind,
    )


def _line_of(error: SigmaError, message: str, document: _Document) -> int:
    """The line of the YAML key an error is about, else the line of the rule's document."""
    source = getattr(error, "source", None)
    if isinstance(source, SigmaRuleLocation) and source.line and source.line != document.line:
        return source.line
    section: KeyPath = ()
    for kind, keys in _ERROR_KEYS:
        if isinstance(error, kind):
            section = keys
            break
    # A modifier or detection the message quotes ('containz'): the detection key that has it.
    if section == ("detection",):
        for token in _QUOTED.findall(message):
            for path, line in document.keys.items():
                if path[0] == "detection" and len(path) > 1:
                    key = path[-1]
                    if key == token or f"|{token}" in key:
                        return line
    for length in range(len(section), 0, -1):
        found = document.keys.get(section[:length])
        if found is not None:
            return found
    return document.line


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None
