"""The processing pipeline that makes Sigma rules address socpipe's ECS events.

A Sigma rule names a log source (``product: windows``, ``category: process_creation``) and the
fields of that source as Sigma's taxonomy spells them (``CommandLine``). pySigma adapts a rule to
an environment once, by transforming the rule, not the events: a processing pipeline adds the
conditions a log source means (``EventID: 1`` and the Sysmon channel) and renames fields
(``CommandLine`` to ``winlog.event_data.CommandLine``). The matcher then reads the dotted paths
from each event.

The pipeline is, in order of priority:

- 10: pySigma's ``sysmon`` (Windows categories to Sysmon event ids) and ``windows-logsources``
  (Windows services to channels; PowerShell categories to event ids), from
  pysigma-pipeline-sysmon and pysigma-pipeline-windows;
- 20 and up: socpipe's own YAML pipelines in ``rules/pipelines/`` (one per family of log
  sources: Windows field paths, Linux, web server, proxy, firewall, DNS).

Every log source socpipe has events for gets a *guard*: a processing item that adds a condition
on the event's own fields (its channel and event id, its ``event.dataset``...), so that a rule
sees only the events of its log source whatever matcher runs it. A rule that no guard applied
to is of a log source socpipe has no events for, and is not loaded (:func:`process_rule` says
so). Guards are pySigma's ``windows_logsource_*`` items and socpipe's ``socpipe_logsource_*``.

socpipe's YAML can use the rule condition ``socpipe_logsource``: like pySigma's ``logsource``,
but the rule's log source must be exactly the one named (``product: linux`` alone does not match
a rule with a category), so that each guard belongs to one log source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaConfigurationError, SigmaError
from sigma.pipelines.sysmon.sysmon import sysmon_pipeline
from sigma.pipelines.windows.windows import windows_logsource_pipeline
from sigma.processing.conditions import RuleProcessingCondition, rule_conditions
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import ValueListPlaceholderTransformation
from sigma.rule import SigmaLogSource, SigmaRule

# rules/pipelines/ of the source tree (detectors/sigma/ is two levels below its root).
PIPELINE_DIR: Final = Path(__file__).resolve().parents[2] / "rules" / "pipelines"
# Identifiers of the processing items that add a log source's condition.
GUARD_PREFIXES: Final = ("windows_logsource_", "socpipe_logsource_")
EXACT_LOGSOURCE: Final = "socpipe_logsource"


class PipelineError(SigmaConfigurationError):
    """A pipeline file that cannot be read or is not a valid pySigma pipeline."""


@dataclass
class ExactLogsourceCondition(RuleProcessingCondition):
    """The rule's log source is exactly this one: fields not given here must be absent too."""

    product: str | None = None
    category: str | None = None
    service: str | None = None

    def match(self, rule: SigmaRule | SigmaCorrelationRule) -> bool:
        """Whether the rule's product, category and service are these (case-insensitive)."""
        if not isinstance(rule, SigmaRule):
            return False
        source = rule.logsource
        return (
            _fold(source.product) == _fold(self.product)
            and _fold(source.category) == _fold(self.category)
            and _fold(source.service) == _fold(self.service)
        )


def _fold(value: str | None) -> str | None:
    return value.casefold() if value is not None else None


def register_conditions() -> None:
    """Make ``socpipe_logsource`` known to pySigma's YAML reader; idempotent.

    pySigma finds condition types in a module-level registry (the way its plugins add theirs);
    this runs before a pipeline file is read, not at import.
    """
    registry = cast(dict[str, type[RuleProcessingCondition]], rule_conditions)
    registry.setdefault(EXACT_LOGSOURCE, ExactLogsourceCondition)


def builtin_pipelines() -> list[ProcessingPipeline]:
    """pySigma's Windows pipelines: Sysmon event ids per category, then channels per service.

    Sysmon's items turn ``category: process_creation`` into ``EventID: 1`` and the log source
    into ``service: sysmon``, which the windows-logsources items then turn into the Sysmon
    channel: the order matters, both have priority 10.
    """
    return [sysmon_pipeline(), windows_logsource_pipeline()]


def load_pipeline_file(path: Path) -> ProcessingPipeline:
    """One pySigma pipeline from a YAML file; PipelineError names the file on any problem."""
    register_conditions()
    try:
        text = path.read_text(encoding="utf-8")
        pipeline = ProcessingPipeline.from_yaml(text, source_path=str(path))
    except (OSError, UnicodeDecodeError, SigmaError) as error:
        raise PipelineError(f"{path}: {error}") from error
    except Exception as error:  # a YAML error, or pySigma's TypeError on a bad parameter
        raise PipelineError(f"{path}: {type(error).__name__}: {error}") from error
    if not pipeline.name:
        pipeline.name = path.stem
    return pipeline


def yaml_pipelines(directory: Path = PIPELINE_DIR) -> list[ProcessingPipeline]:
    """Every ``*.yml`` pipeline in ``directory``, by file name."""
    return [load_pipeline_file(path) for path in sorted(directory.glob("*.yml"))]


def combine(pipelines: Iterable[ProcessingPipeline]) -> ProcessingPipeline:
    """One pipeline running the given ones by priority, lowest first; ties keep their order.

    As pySigma's resolver does, except that ties are not re-sorted by name: sysmon must run
    before windows-logsources.
    """
    ordered = sorted(pipelines, key=lambda pipeline: pipeline.priority)
    combined = sum(ordered, ProcessingPipeline())
    combined.name = " + ".join(p.name or "?" for p in ordered)
    return combined


def placeholder_pipeline(values: Mapping[str, Sequence[str | int]]) -> ProcessingPipeline:
    """Fills ``%name%`` placeholders of ``|expand`` values from ``values`` (pipeline vars).

    Only the named placeholders are filled; a rule with another stays unfilled, and the compiler
    reports it (``unfilled placeholder``) instead of guessing. Each placeholder becomes the list
    of its values, ORed, as pySigma's ``value_placeholders`` transformation does.
    """
    names = sorted(values)
    return ProcessingPipeline(
        name="placeholders",
        priority=5,
        items=[
            ProcessingItem(
                ValueListPlaceholderTransformation(include=names), identifier="socpipe_placeholders"
            )
        ],
        vars={name: [str(value) for value in values[name]] for name in names},
    )


def resolve_pipelines(
    directory: Path | None = None, placeholders: Mapping[str, Sequence[str | int]] | None = None
) -> ProcessingPipeline:
    """The whole pipeline: pySigma's Windows pipelines and socpipe's YAML ones, and the values
    of the deployment's placeholders (``detector.placeholders``) when there are any."""
    pipelines = [*builtin_pipelines(), *yaml_pipelines(directory or PIPELINE_DIR)]
    if placeholders:
        pipelines.append(placeholder_pipeline(placeholders))
    return combine(pipelines)


@dataclass(frozen=True, slots=True)
class ProcessedRule:
    """A rule after the pipeline, with what the pipeline did to it."""

    rule: SigmaRule
    # The log source as the rule wrote it (the pipeline may change rule.logsource: Sysmon adds
    # service sysmon).
    logsource: SigmaLogSource
    applied: frozenset[str]

    @property
    def guarded(self) -> bool:
        """Whether a guard gave the rule its log source's condition, i.e. socpipe has its events."""
        return any(item.startswith(GUARD_PREFIXES) for item in self.applied)


def process_rule(rule: SigmaRule, pipeline: ProcessingPipeline) -> ProcessedRule:
    """Apply ``pipeline`` to ``rule`` in place, as pySigma's backends do; SigmaError if it fails.

    A pipeline keeps per-rule state while it runs: do not share one between threads.
    """
    logsource = SigmaLogSource(
        category=rule.logsource.category,
        product=rule.logsource.product,
        service=rule.logsource.service,
        definition=rule.logsource.definition,
    )
    try:
        pipeline.apply(rule)
    except SigmaError:
        raise
    except Exception as error:  # a transformation that fails on an odd rule is still the rule's
        raise SigmaError(f"processing pipeline failed: {type(error).__name__}: {error}") from error
    return ProcessedRule(rule, logsource, frozenset(pipeline.applied_ids))
