"""Detections from Sigma matches: what the streaming detector sends to soc.detections."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from detectors.checks import entities_of
from detectors.sigma.compiler import CompiledRule
from detectors.sigma.engine import SigmaEngine
from socpipe.errors import RecordError
from socpipe.records import Detection, DetectorRef, EcsEvent, RuleRef, Severity, stable_id

_LEVELS = {level.value: level for level in Severity}


def ruleset_version(
    paths: Iterable[Path], placeholders: Mapping[str, Sequence[str]] | None = None
) -> str:
    """A digest of every rule file's bytes and the placeholder values: the version that judged
    a detection."""
    digest = hashlib.blake2b(digest_size=8)
    if placeholders:
        digest.update(orjson.dumps(placeholders, option=orjson.OPT_SORT_KEYS))
    files = sorted(
        file for path in paths for file in ([path] if path.is_file() else path.rglob("*.yml"))
    )
    for file in files:
        digest.update(str(file).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def rule_ref(rule: CompiledRule) -> RuleRef:
    """The rule as a detection names it, with ATT&CK tactics and techniques from its tags."""
    tactics: list[str] = []
    techniques: list[str] = []
    for tag in rule.tags:
        name = tag.lower()
        if not name.startswith("attack."):
            continue
        value = name.removeprefix("attack.")
        if value[:1] == "t" and value[1:2].isdigit():
            techniques.append(value.upper())
        elif not (value[:1] in ("g", "s") and value[1:2].isdigit()):  # groups and software
            tactics.append(value.replace("-", "_"))
    return RuleRef(
        id=rule.id or stable_id(rule.title),
        title=rule.title,
        level=_LEVELS.get((rule.level or "medium").lower(), Severity.MEDIUM),
        tags=list(rule.tags),
        tactics=tactics,
        techniques=techniques,
    )


class SigmaDetector:
    """Runs the engine on each event and turns its matches into detections."""

    def __init__(self, engine: SigmaEngine, version: str) -> None:
        self.engine = engine
        self.version = version
        self._refs: dict[int, RuleRef] = {}

    def evaluate(self, event: EcsEvent, document: dict[str, Any] | None = None) -> list[Detection]:
        """The detections of ``event``; ``document`` is its dict form if the caller has it."""
        event_id = event.event.id
        if not event_id:
            raise RecordError("the event has no event.id to detect on")
        matched = self.engine.match(document if document is not None else event.to_dict())
        if not matched:
            return []
        entities = entities_of(event)
        detections = []
        for rule in matched:
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
