"""Folding detections into alerts by dedup key and time window.

Pure logic, shared by every store. An alert's id is derived from its dedup key and window, so
whichever worker or replay folds a detection in, it lands on the same document.

Which key and window a detection gets is the alerting's choice (:class:`AlertPolicies`): the
first ``alerting.policies`` entry that matches its rule and agency, else the detector's key
(rule, agency and host for rules; the group for correlations) and ``dedup_window_s``. Windows
are fixed, aligned to the epoch: every writer computes the same one without asking anyone, and a
storm within one window is one alert with its count. A storm that crosses a window's end is two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from socpipe.records import Alert, AnomalyDetail, Detection, HistoryEntry, stable_id
from socpipe.settings import AlertPolicy

# An alert keeps a bounded sample of what made it: the count says how many there were.
MAX_DETECTION_IDS = 100
MAX_EVENTS = 10


@dataclass(frozen=True, slots=True)
class Grouping:
    """The key and window a detection folds by, and the policy that chose them."""

    key: str
    window_s: int
    policy: str | None = None


class AlertPolicies:
    """``alerting.policies`` in order, over a default window (see the module docstring)."""

    def __init__(self, policies: Sequence[AlertPolicy], default_window_s: int) -> None:
        self.policies = list(policies)
        self.default_window_s = default_window_s

    def grouping(self, detection: Detection) -> Grouping:
        """The key and window of ``detection``."""
        rule, entities = detection.rule.id, detection.entities
        for policy in self.policies:
            if policy.rules and rule not in policy.rules:
                continue
            if policy.agencies and entities.agency not in policy.agencies:
                continue
            key = detection.dedup_key
            if policy.entity is not None:
                parts = [getattr(entities, name) or "" for name in policy.entity]
                key = stable_id(rule, entities.agency, *parts)
            return Grouping(key, policy.window_s, policy.name)
        return Grouping(detection.dedup_key, self.default_window_s)


def window_start(moment: datetime, window_s: int) -> datetime:
    """The start of the fixed window of ``window_s`` seconds that holds ``moment``."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_s, tz=UTC)


def alert_id(detection: Detection, grouping: Grouping) -> str:
    """The id of the alert a detection belongs to."""
    start = window_start(detection.timestamp, grouping.window_s)
    return stable_id(grouping.key, start.isoformat())


def fold(
    existing: Alert | None,
    detection: Detection,
    *,
    grouping: Grouping,
    source: str,
    offset: int,
) -> Alert | None:
    """The alert after adding ``detection``, or None when it was already folded in.

    ``source``/``offset`` name where the detection was read (topic:partition and offset).
    Detections of one alert share a key, hence a partition, and arrive in offset order, so an
    offset at or below the last one folded in is a replay and changes nothing.
    """
    if existing is not None:
        if existing.source_offset.get(source, -1) >= offset:
            return None
        if detection.id in existing.detection_ids:
            return None
        ids = [*existing.detection_ids, detection.id][-MAX_DETECTION_IDS:]
        events = existing.events
        if len(events) < MAX_EVENTS:
            events = [*events, *detection.events][:MAX_EVENTS]
        return existing.model_copy(
            update={
                "count": existing.count + 1,
                "first_seen": min(existing.first_seen, detection.timestamp),
                "last_seen": max(existing.last_seen, detection.timestamp),
                "detection_ids": ids,
                "events": events,
                "anomaly": _most_anomalous(existing.anomaly, detection.anomaly),
                "source_offset": {**existing.source_offset, source: offset},
            }
        )
    start = window_start(detection.timestamp, grouping.window_s)
    created = {"detection": detection.id} | ({"policy": grouping.policy} if grouping.policy else {})
    return Alert(
        id=stable_id(grouping.key, start.isoformat()),
        dedup_key=grouping.key,
        count=1,
        first_seen=detection.timestamp,
        last_seen=detection.timestamp,
        window_start=start,
        detector=detection.detector,
        rule=detection.rule,
        severity=detection.severity,
        risk_score=detection.risk_score,
        entities=detection.entities,
        detection_ids=[detection.id],
        events=detection.events[:MAX_EVENTS],
        anomaly=detection.anomaly,
        history=[
            HistoryEntry(
                at=detection.timestamp,
                by="socpipe",
                action="created",
                detail=created,
            )
        ],
        source_offset={source: offset},
    )


def _most_anomalous(kept: AnomalyDetail | None, new: AnomalyDetail | None) -> AnomalyDetail | None:
    """The explanation an alert shows: its highest-scoring detection's."""
    if kept is None or (new is not None and new.score > kept.score):
        return new
    return kept
