"""Checks: detectors written in code that judge one event at a time.

They stand in for the Sigma engine until it exists, and will remain for what Sigma cannot say.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from socpipe.errors import RecordError
from socpipe.records import (
    Detection,
    DetectorRef,
    EcsEvent,
    Entities,
    RuleRef,
    Severity,
    stable_id,
)
from socpipe.settings import Tier


class Check(ABC):
    """Base of the checks: one event in, a Detection or None out.

    To implement one, subclass it and:

    - set ``detector`` (type ``"check"``, an id, and a version to bump when the logic changes)
      and ``rule`` (a stable UUID as id, title, level, ATT&CK tags) as class attributes;
    - write ``evaluate`` to return ``self.detection(event, entities_of(event), dedup_parts=...)``
      when the event matches, else None. It runs on every event, so test the cheapest fields
      first, and keep it pure (no I/O, no clock, no state) so a replay makes the same detections.

    ``detection`` takes its id from the rule and ``event.id``, so one event always makes the
    same detection, and its dedup key from the rule and ``dedup_parts``, which choose which
    detections the alerting stage folds into one alert.
    """

    detector: ClassVar[DetectorRef]
    rule: ClassVar[RuleRef]

    @abstractmethod
    def evaluate(self, event: EcsEvent) -> Detection | None:
        """The detection this event raises, or None."""

    def detection(
        self, event: EcsEvent, entities: Entities, *, dedup_parts: tuple[object, ...]
    ) -> Detection:
        """A detection of this check's rule for ``event``, at the rule's level."""
        event_id = event.event.id
        if not event_id:
            # The detection id derives from it, and alerts point back to events by it.
            raise RecordError(f"{self.rule.title}: the event has no event.id to detect on")
        severity = self.rule.level
        return Detection(
            id=stable_id(self.rule.id, event_id),
            timestamp=event.timestamp,
            # Copies, so that no detection shares (and could change) the class's own.
            detector=self.detector.model_copy(),
            rule=self.rule.model_copy(deep=True),
            severity=severity,
            risk_score=severity.risk_score,
            entities=entities,
            dedup_key=stable_id(self.rule.id, *dedup_parts),
            event_ids=[event_id],
            events=[event.to_dict()],
        )


def entities_of(event: EcsEvent) -> Entities:
    """Who and what an event concerns: agency, tier, host, user and source address."""
    tier = (event.labels or {}).get("tier")
    return Entities(
        agency=(event.organization.id or "") if event.organization else "",
        tier=Tier(tier) if tier in _TIERS else None,
        host=(event.host.name or event.host.hostname) if event.host else None,
        user=event.user.name if event.user else None,
        source_ip=event.source.ip if event.source else None,
    )


_TIERS = frozenset(tier.value for tier in Tier)


class FailedPasswordCheck(Check):
    """An SSH login failed: wrong password, key or method, for a real or an invalid user."""

    detector = DetectorRef(type="check", id="failed-password", version="1")
    rule = RuleRef(
        id="0bf5816a-a6b8-4bc5-957a-c74e7ce82d3f",
        title="SSH authentication failure",
        level=Severity.MEDIUM,
        tags=["attack.credential_access", "attack.t1110"],
        tactics=["credential_access"],
        techniques=["T1110"],
    )

    def evaluate(self, event: EcsEvent) -> Detection | None:
        """Fire on ``event.action`` ssh_login with ``event.outcome`` failure."""
        fields = event.event
        if fields.action != "ssh_login" or fields.outcome != "failure":
            return None
        entities = entities_of(event)
        return self.detection(
            event, entities, dedup_parts=(entities.agency, entities.host, entities.source_ip)
        )
