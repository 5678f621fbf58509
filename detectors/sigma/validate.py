"""Checking rule files: every problem in every file at once, and the fields no pipeline maps.

:func:`validate` loads the given files and directories as the detector would
(:func:`detectors.sigma.loader.load_rules`) and reports

- every problem the loader found (malformed YAML, duplicate keys, unknown modifiers, conditions
  naming missing selections, pipeline failures: errors; rules of log sources socpipe has no
  events for: warnings), with file and line;
- per loaded rule, the fields that no pipeline mapped to a socpipe field (warnings): such a
  field is looked up under the name the rule wrote, which no socpipe event has, so its test is
  never true (and a ``not`` of it always is).

What "mapped" means follows from the pipeline itself: a field is mapped when its name after
the pipeline is one a mapping of the pipeline produces (``process.command_line``,
``winlog.event_id``, the guards' ``event.dataset``...) or lies under a prefix the pipeline adds
(``winlog.event_data.`` and ``winlog.user_data.`` for Windows, ``auditd.log.`` for auditd,
``fortinet.firewall.`` for FortiGate). So for Windows only the System fields socpipe keeps in
another form (``Level``, ``Keywords``...) can be unmapped: every other name is an event data
field by definition, whether or not the event type has it. For Linux, web, proxy, firewall and
DNS rules a field is unmapped unless the pipeline names it (``LogonId``, ``cs-cookie``,
``blocked``...). Keyword detections have no field; they search ``message`` or
``event.original`` as the pipeline says, or the whole event for the matcher.

``ValidationReport.exit_code`` is 1 when there is any error, else 0; warnings do not fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sigma.processing.pipeline import ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    AddFieldnamePrefixTransformation,
    FieldMappingTransformation,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaFieldReference

from detectors.sigma.loader import LoadedRule, LoadResult, Problem, load_rules
from detectors.sigma.pipelines import resolve_pipelines


@dataclass(frozen=True, slots=True)
class UnmappedField:
    """A field of a loaded rule that no pipeline maps to a socpipe field."""

    path: Path
    line: int | None
    field: str
    rule_id: str | None = None
    title: str | None = None

    @property
    def location(self) -> str:
        """``path:line``, or the path alone when the line is not known."""
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)

    def __str__(self) -> str:
        about = f" [{self.title or self.rule_id}]" if self.title or self.rule_id else ""
        return f"{self.location}: warning: field {self.field} is not mapped{about}"


@dataclass(frozen=True)
class ValidationReport:
    """Every problem and unmapped field of a set of rule files."""

    problems: list[Problem]
    unmapped: list[UnmappedField] = field(default_factory=list)
    files: int = 0
    rules: int = 0
    correlations: int = 0
    unsupported: int = 0

    @property
    def errors(self) -> list[Problem]:
        """The problems that are errors."""
        return [problem for problem in self.problems if problem.severity == "error"]

    @property
    def warnings(self) -> int:
        """How many warnings: problems that are not errors, and unmapped fields."""
        return len(self.problems) - len(self.errors) + len(self.unmapped)

    @property
    def exit_code(self) -> int:
        """1 when any file has an error, else 0."""
        return 1 if self.errors else 0

    def format_report(self) -> list[str]:
        """``path:line: error: message`` and ``path: warning: ...`` lines, then a summary."""
        entries: list[tuple[str, int, int, str]] = [
            (str(problem.path), problem.line or 0, 0, str(problem)) for problem in self.problems
        ]
        entries += [(str(item.path), item.line or 0, 1, str(item)) for item in self.unmapped]
        lines = [text for *_, text in sorted(entries)]
        lines.append(
            f"{self.files} files: {self.rules} rules loaded, {self.correlations} correlations, "
            f"{self.unsupported} of unsupported log sources; {len(self.errors)} errors, "
            f"{self.warnings} warnings"
        )
        return lines


def validate(
    paths: Iterable[Path], *, pipeline: ProcessingPipeline | None = None
) -> ValidationReport:
    """Load ``paths`` as the detector would and report every problem and unmapped field."""
    pipeline = pipeline or resolve_pipelines()
    result = load_rules(paths, pipeline=pipeline)
    return report(result, pipeline)


def report(result: LoadResult, pipeline: ProcessingPipeline) -> ValidationReport:
    """The validation report of rules loaded with ``pipeline``."""
    targets, prefixes = mapped_fields(pipeline)
    unmapped: list[UnmappedField] = []
    for loaded in result.loaded:
        for name in sorted(rule_fields(loaded.rule)):
            if name not in targets and not name.startswith(prefixes) and not _ecs_path(name):
                unmapped.append(_unmapped(loaded, name))
    return ValidationReport(
        problems=list(result.problems),
        unmapped=unmapped,
        files=result.files,
        rules=len(result.loaded),
        correlations=len(result.correlations),
        unsupported=len(result.unsupported),
    )


def mapped_fields(pipeline: ProcessingPipeline) -> tuple[frozenset[str], tuple[str, ...]]:
    """The field names the pipeline's mappings and conditions produce, and the prefixes it adds."""
    targets: set[str] = set()
    prefixes: set[str] = set()
    for item in pipeline.items:
        transformation = item.transformation
        if isinstance(transformation, FieldMappingTransformation):
            for value in transformation.mapping.values():
                targets.update([value] if isinstance(value, str) else value)
        elif isinstance(transformation, AddConditionTransformation):
            targets.update(transformation.conditions)
        elif isinstance(transformation, AddFieldnamePrefixTransformation):
            prefixes.add(transformation.prefix)
    # A mapping may produce a Sigma name a later mapping renames (pySigma's Channel condition).
    renamed = {
        str(source)
        for item in pipeline.items
        if isinstance(item.transformation, FieldMappingTransformation)
        for source in item.transformation.mapping
        if source is not None
    }
    return frozenset(targets - renamed), tuple(sorted(prefixes))


def rule_fields(rule: SigmaRule) -> set[str]:
    """Every field a rule's detections test or refer to (``|fieldref``), after the pipeline."""
    found: set[str] = set()
    for detection in rule.detection.detections.values():
        for item in _detection_items(detection):
            if item.field is not None:
                found.add(item.field)
            found.update(
                value.field for value in item.value if isinstance(value, SigmaFieldReference)
            )
    return found


def _detection_items(detection: SigmaDetection) -> Iterator[SigmaDetectionItem]:
    for item in detection.detection_items:
        if isinstance(item, SigmaDetection):
            yield from _detection_items(item)
        else:
            yield item


def _unmapped(loaded: LoadedRule, name: str) -> UnmappedField:
    """The unmapped field at the line of the detection key that names it, when there is one."""
    line = loaded.line
    for key_path, key_line in loaded.keys.items():
        if len(key_path) > 2 and key_path[0] == "detection" and _field_name(key_path[-1]) == name:
            line = key_line
            break
    rule = loaded.rule
    return UnmappedField(
        loaded.path, line, name, str(rule.id) if rule.id else None, rule.title or None
    )


# ECS field sets, and those of socpipe's own events: a rule may name their fields directly
# (``event.outcome``), as socpipe's rules in rules/socpipe/ do; no pipeline maps them.
_FIELD_SETS: Final = frozenset({
    "agent", "as", "client", "cloud", "container", "destination", "device", "dll", "dns",
    "email", "error", "event", "file", "group", "host", "http", "log", "network", "observer",
    "organization", "package", "process", "registry", "related", "rule", "server", "service",
    "source", "threat", "tls", "url", "user", "user_agent", "vulnerability", "labels",
    "socpipe", "winlog", "auditd", "fortinet", "powershell",
})  # fmt: skip


def _ecs_path(name: str) -> bool:
    """A dotted name under a field set socpipe's events have: the rule addresses it as is."""
    head, dot, _ = name.partition(".")
    return bool(dot) and head in _FIELD_SETS


def _field_name(key: str) -> str:
    return key.split("|", 1)[0]
