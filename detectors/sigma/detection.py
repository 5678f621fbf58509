"""Detections from Sigma matches: what the streaming detector sends to soc.detections."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from detectors.checks import entities_of
from detectors.sigma.bundle import bundle_files, version_of
from detectors.sigma.compiler import CompiledRule
from detectors.sigma.correlation import CorrelationEngine
from detectors.sigma.engine import SigmaEngine
from socpipe.errors import RecordError
from socpipe.records import Detection, DetectorRef, EcsEvent, RuleRef, Severity, stable_id

_LEVELS = {level.value: level for level in Severity}


def ruleset_version(
    paths: Iterable[Path], placeholders: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The version that judged a detection: the digest a bundle of these files would have
    (``bundle.version_of``: every rule and pipeline file, and the placeholder values), so the
    same rules name the same version whether configured or published."""
    present = [path for path in paths if path.exists()]  # a missing one is the loader's to report
    return version_of(bundle_files(present), placeholders or {})


def rule_ref(rule: CompiledRule) -> RuleRef:
    """The rule as a detection names it, with ATT&CK tactics and techniques from its tags."""
    return rule_ref_of(rule.id, rule.title, rule.level, rule.tags)


def rule_ref_of(rule_id: str | None, title: str, level: str | None, tags: Sequence[str]) -> RuleRef:
    """A rule or correlation as a detection names it; tactics and techniques from its tags."""
    tactics: list[str] = []
    techniques: list[str] = []
    for tag in tags:
        name = tag.lower()
        if not name.startswith("attack."):
            continue
        value = name.removeprefix("attack.")
        if value[:1] == "t" and value[1:2].isdigit():
            techniques.append(value.upper())
        elif not (value[:1] in ("g", "s") and value[1:2].isdigit()):  # groups and software
            tactics.append(value.replace("-", "_"))
    return RuleRef(
        id=rule_id or stable_id(title),
        title=title,
        level=_LEVELS.get((level or "medium").lower(), Severity.MEDIUM),
        tags=list(tags),
        tactics=tactics,
        techniques=techniques,
    )


class SigmaDetector:
    """Runs the engine on each event and turns its matches into detections; with correlation
    rules, also names the correlation states each event feeds (:meth:`candidates`)."""

    def __init__(
        self,
        engine: SigmaEngine,
        version: str,
        correlations: CorrelationEngine | None = None,
        keys: Mapping[CompiledRule, str] | None = None,
    ) -> None:
        self.engine = engine
        self.version = version
        self.correlations = correlations
        self.keys = dict(keys or {})
        # Rules that feed only correlations with generate: false give no detection of their own.
        self.quiet = correlations.quiet_rules if correlations is not None else frozenset()
        self._refs: dict[int, RuleRef] = {}
        self._matched: list[CompiledRule] = []

    def evaluate(self, event: EcsEvent, document: dict[str, Any] | None = None) -> list[Detection]:
        """The detections of ``event``; ``document`` is its dict form if the caller has it."""
        event_id = event.event.id
        if not event_id:
            raise RecordError("the event has no event.id to detect on")
        matched = self._matched = self.engine.match(
            document if document is not None else event.to_dict()
        )
        if not matched:
            return []
        entities = entities_of(event)
        detections = []
        for rule in matched:
            if self.quiet and self.keys.get(rule) in self.quiet:
                continue
            ref = self._refs.get(id(rule))
            if ref is None:
                ref = self._refs[id(rule)] = rule_ref(rule)
            detections.append(
                Detection(
                    id=stable_id(ref.id, event_id),
                    timestamp=event.timestamp,
                    detector=DetectorRef(type="sigma", id=ref.id, version=self.version),
                    rule=ref,
                    severity=ref.level,
                    risk_score=ref.level.risk_score,
                    entities=entities,
                    dedup_key=stable_id(ref.id, entities.agency, entities.host),
                    event_ids=[event_id],
                    events=[document if document is not None else event.to_dict()],
                )
            )
        return detections

    def candidates(self, document: Mapping[str, Any]) -> list[tuple[bytes, bytes]]:
        """For the event :meth:`evaluate` just judged: one (key, value) for ``soc.correlate``
        per correlation state it feeds. The key is the correlation and its group, so one
        correlator owns each state; the value carries the rules matched and the fields the
        correlations read, with the agency and host (``CorrelationEngine.projection``)."""
        correlations = self.correlations
        if correlations is None or not self._matched:
            return []
        keys = [self.keys[rule] for rule in self._matched if rule in self.keys]
        routes = correlations.route(keys, document) if keys else []
        if not routes:
            return []
        projected = correlations.projection(document)
        messages = []
        for state_key, group in routes:
            key = orjson.dumps([state_key, group], default=str)
            value = {"c": state_key, "rules": keys, "event": projected, "v": self.version}
            messages.append((key, orjson.dumps(value, default=str)))
        return messages
