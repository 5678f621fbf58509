"""Checking, testing and publishing the API's rules with the detectors' own code.

That code (``detectors.sigma``: loader, compiler, rule tests, bundles) works on files, so each
request writes what it needs into a scratch folder, a :class:`RuleWorkspace`: the *candidate*
(a rule as submitted, saved or not) and its *context*, the rules it cannot be judged without
(:func:`context_of`): a correlation's referenced rules (and theirs), a filter's target rules,
and, for tests and backtests, the enabled filters that apply to a rule, as a detector applies
them. The candidate's problems keep the lines of the YAML as submitted.

Publishing writes the latest version of every enabled rule, correlation and filter into a folder
(:func:`write_ruleset`) and hands it to a :class:`RulePublisher`: :class:`KafkaRulePublisher`
runs ``detectors.sigma.publish.publish`` (pack, check as a detector would, refuse a set with
errors, write to ``soc.rules``); :class:`InMemoryRulePublisher` packs and checks the same way and
keeps the bundles, for tests.
"""

from __future__ import annotations

import re
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import yaml
from pydantic import BaseModel
from sigma.processing.pipeline import ProcessingPipeline

from api.rulestore import ANY_RULE, RULE_ID_PATTERN, RuleMeta, RuleStore, RuleVersion, describe
from detectors.normalize import Normalizer
from detectors.sigma.bundle import bundle_files, check, pack, refusals, unpack
from detectors.sigma.hunt import compile_loaded
from detectors.sigma.loader import KeyPath, LoadResult, Problem, load_rules, read_documents
from detectors.sigma.pipelines import resolve_pipelines
from detectors.sigma.publish import PublishResult, publish
from detectors.sigma.ruletest import CaseResult, failure_line, run_tests
from detectors.sigma.validate import report
from socpipe.settings import Settings

MAX_YAML_BYTES: Final = 256 * 1024
_RULE_ID: Final = re.compile(RULE_ID_PATTERN)
_STEM: Final = "rule"


class RuleProblem(BaseModel):
    """What is wrong with a rule (or a test case), and the line of its YAML when known."""

    line: int | None = None
    message: str
    severity: Literal["error", "warning"] = "error"
    # For test runs: the index of the case it is about, when it is about one.
    case: int | None = None
    # For a whole rule set (publishing): the rule it is about, when known.
    rule_id: str | None = None


class RuleCheckError(Exception):
    """A rule with errors: each with its line; the API answers 422 with them."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


def _reject(line: int | None, message: str) -> RuleCheckError:
    return RuleCheckError([RuleProblem(line=line, message=message)])


def _problem(problem: Problem, case: int | None = None) -> RuleProblem:
    return RuleProblem(
        line=problem.line, message=problem.message, severity=problem.severity, case=case
    )


class RuleWorkspace:
    """A scratch folder with a candidate rule and its context as files (module docstring).

    Use it in a ``with`` block: the folder is removed at its end. Its pipeline is its own (a
    pipeline keeps per-rule state and is not to be shared between threads).
    """

    def __init__(self, placeholders: Mapping[str, Sequence[str]] | None = None) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="socpipe-api-rules-")
        self.root = Path(self._scratch.name)
        self.pipeline: ProcessingPipeline = resolve_pipelines(placeholders=placeholders)
        self.candidate = self.root / "candidate" / f"{_STEM}.yml"
        self.context: list[Path] = []
        self.versions: list[RuleVersion] = []  # the context's versions
        self.keys: dict[KeyPath, int] = {}
        self.meta: RuleMeta | None = None  # the candidate's, once parsed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._scratch.cleanup()

    def parse(self, text: str) -> RuleMeta:
        """Write ``text`` as the candidate and read it: one YAML mapping with a usable ``id``;
        RuleCheckError (with the line) otherwise."""
        if len(text.encode("utf-8")) > MAX_YAML_BYTES:
            raise _reject(None, f"the rule is larger than {MAX_YAML_BYTES // 1024} KiB")
        alias = _first_alias(text)
        if alias is not None:
            # A rule never needs them, and they are how a small YAML expands into a huge one.
            raise _reject(alias, "YAML anchors and aliases (&name, *name) are not accepted")
        self.candidate.parent.mkdir(parents=True, exist_ok=True)
        self.candidate.write_text(text, encoding="utf-8")
        problems: list[Problem] = []
        documents = [d for d in read_documents(self.candidate, problems) if d.data is not None]
        if problems:
            raise RuleCheckError([_problem(problem) for problem in problems])
        if len(documents) != 1:
            line = documents[1].line if len(documents) > 1 else 1
            raise _reject(line, f"give exactly one rule, as one YAML document ({len(documents)})")
        document = documents[0]
        data, self.keys = document.data, document.keys
        if not isinstance(data, dict):
            raise _reject(document.line, f"a rule is a YAML mapping, not {type(data).__name__}")
        rule_id = data.get("id")
        if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
            raise _reject(
                self.keys.get(("id",), document.line),
                "the rule needs an 'id' (a UUID: letters, digits, '.', '_', '-')",
            )
        if "action" in data:
            raise _reject(document.line, "collection actions (action: ...) are not supported")
        self.meta = describe(data)
        return self.meta

    def add(self, versions: Iterable[RuleVersion], candidate_id: str) -> None:
        """Write ``versions`` as context (the candidate's own id is left out)."""
        folder = self.root / "context"
        folder.mkdir(exist_ok=True)
        for version in versions:
            path = folder / f"{version.rule_id}.yml"
            if version.rule_id != candidate_id and path not in self.context:
                path.write_text(version.yaml, encoding="utf-8")
                self.context.append(path)
                self.versions.append(version)

    def load(self, *, candidate: bool = True) -> LoadResult:
        """The candidate and its context (or the context alone), loaded as a detector would."""
        paths = [self.candidate, *self.context] if candidate else self.context
        return load_rules(paths, pipeline=self.pipeline)

    def check(self) -> tuple[LoadResult, list[RuleProblem]]:
        """Load and compile the candidate: RuleCheckError with every error and its line, else
        the load result and the warnings (unsupported log source, unmapped fields...)."""
        result = self.load()
        filtering = self.meta is not None and self.meta.kind == "filter"
        errors: list[RuleProblem] = []
        warnings: list[RuleProblem] = []
        for problem in result.problems:
            if problem.path == self.candidate:
                (errors if problem.severity == "error" else warnings).append(_problem(problem))
            elif filtering and problem.severity == "error" and problem.kind == "condition":
                # A filter fails when applied to its target: the problem is the filter's.
                line = self.keys.get(("filter", "condition"), self.keys.get(("filter",)))
                message = f"applied to rule {problem.rule_id}: {problem.message}"
                errors.append(RuleProblem(line=line, message=message))
        _, failures = compile_loaded(result)
        for loaded, failure in failures:
            if loaded.path == self.candidate:
                line = failure_line(loaded, failure.reason)
                message = f"cannot compile ({failure.reason}): {failure.message}"
                errors.append(RuleProblem(line=line, message=message))
        if errors:
            raise RuleCheckError(errors)
        for unmapped in report(result, self.pipeline).unmapped:
            if unmapped.path == self.candidate:
                message = f"field {unmapped.field} is not mapped: no socpipe event has it"
                warnings.append(
                    RuleProblem(line=unmapped.line, message=message, severity="warning")
                )
        return result, warnings

    def run_cases(
        self, cases: list[dict[str, Any]], normalizer: Normalizer
    ) -> tuple[list[tuple[int, CaseResult]], list[RuleProblem]]:
        """Run ``cases`` (tests-file cases) on the candidate with ``detectors.sigma.ruletest``:
        each result with the index of its case, and the problems of the cases."""
        tests = self.candidate.with_name(f"{_STEM}.tests.yml")
        tests.write_text(
            yaml.safe_dump({"tests": cases}, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        found = read_documents(tests, [])
        starts = sorted(
            (line, int(path[1]))
            for path, line in (found[0].keys.items() if found else ())
            if len(path) == 3 and path[0] == "tests"
        )

        def case_at(line: int | None) -> int | None:
            before = [index for start, index in starts if line is not None and start <= line]
            return before[-1] if before else None

        run = run_tests([self.candidate, *self.context], pipeline=self.pipeline,
                        normalizer=normalizer)  # fmt: skip
        results = [(case_at(r.line) or 0, r) for r in run.results if r.path == tests]
        problems = [_problem(p, case_at(p.line)) for p in run.problems if p.path == tests]
        return results, problems


def _first_alias(text: str) -> int | None:
    """The line of the first YAML anchor or alias, if any (bad YAML is the loader's to say)."""
    try:
        for token in yaml.scan(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(token, yaml.AliasToken | yaml.AnchorToken):
                return int(token.start_mark.line) + 1
    except yaml.YAMLError:
        return None
    return None


def context_of(meta: RuleMeta, store: RuleStore, *, filters: bool) -> list[RuleVersion]:
    """The rules ``meta``'s rule cannot be judged without (module docstring); with
    ``filters``, also the enabled filters that apply to it or, for a correlation, to its
    rules."""
    versions: dict[str, RuleVersion] = {}
    if meta.kind == "correlation":
        pending, seen = set(meta.references), set(meta.references)
        while pending:  # a correlation may reference correlations
            found = store.lookup(pending)
            pending = set()
            for version in found:
                if version.rule_id != meta.rule_id and version.rule_id not in versions:
                    versions[version.rule_id] = version
                    pending |= set(version.references) - seen
                    seen |= set(version.references)
    elif meta.kind == "filter":
        if ANY_RULE in meta.targets:
            targets: Iterable[RuleVersion] = (
                version
                for version in store.latest_all(enabled=True)
                if version.kind == "rule" and _within(version.logsource, meta.logsource)
            )
        else:
            targets = (v for v in store.lookup(meta.targets) if v.kind == "rule")
        versions.update((version.rule_id, version) for version in targets)
    if filters:
        # A filter's fellow filters of its targets run beside it, as in the published set.
        names = set() if meta.kind == "filter" else {meta.rule_id, meta.title}
        names |= {meta.name} if meta.name and meta.kind != "filter" else set()
        for version in versions.values():
            if version.kind == "rule":
                names |= version.names
        for sigma_filter in store.filters_for(names):
            versions.setdefault(sigma_filter.rule_id, sigma_filter)
    versions.pop(meta.rule_id, None)
    return list(versions.values())


def _within(rule: Mapping[str, str], scope: Mapping[str, str]) -> bool:
    """Whether a rule's log source is within a filter's (pySigma: what the filter names)."""
    return all(rule.get(key) == value for key, value in scope.items())


def write_ruleset(versions: Iterable[RuleVersion], folder: Path) -> Counter[str]:
    """Write each version as ``<kind>/<rule id>.yml`` under ``folder``; how many of each kind."""
    kinds: Counter[str] = Counter()
    for version in versions:
        path = folder / version.kind / f"{version.rule_id}.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(version.yaml, encoding="utf-8")
        kinds[version.kind] += 1
    return kinds


class RulePublisher(ABC):
    """Puts a rule set in force (module docstring)."""

    @abstractmethod
    def publish(self, folder: Path) -> PublishResult:
        """Pack, check and (when the check passes) publish the rules under ``folder``."""


class KafkaRulePublisher(RulePublisher):
    """Publishes to ``soc.rules`` with ``detectors.sigma.publish``, as ``socpipe rules publish``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def publish(self, folder: Path) -> PublishResult:
        return publish([folder], self.settings)


class InMemoryRulePublisher(RulePublisher):
    """The test double: packs and checks as publishing does, and keeps what passed."""

    def __init__(self, placeholders: Mapping[str, Sequence[str]] | None = None) -> None:
        self.placeholders = dict(placeholders or {})
        self.published: list[PublishResult] = []

    def publish(self, folder: Path) -> PublishResult:
        bundle = pack(bundle_files([folder]), placeholders=self.placeholders, publisher="test")
        with tempfile.TemporaryDirectory(prefix="socpipe-bundle-") as scratch:
            checked = check(unpack(bundle.data, Path(scratch)))
        result = PublishResult(bundle, checked, refusals(checked))
        if not result.errors:
            result.published = True
            self.published.append(result)
        return result


__all__ = [
    "MAX_YAML_BYTES",
    "InMemoryRulePublisher",
    "KafkaRulePublisher",
    "RuleCheckError",
    "RuleProblem",
    "RulePublisher",
    "RuleWorkspace",
    "context_of",
    "write_ruleset",
]
