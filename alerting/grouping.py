"""Folding detections into alerts by dedup key and time window.

Pure logic, shared by every store. An alert's id is derived from its dedup key and window, so
whichever worker or replay folds a detection in, it lands on the same document.
"""

from __future__ import annotations

from datetime import UTC, datetime

from socpipe.records import Alert, Detection, HistoryEntry, stable_id

# An alert keeps a bounded sample of what made it: the count says how many there were.
MAX_DETECTION_IDS = 100
MAX_EVENTS = 10


def window_start(moment: datetime, window_s: int) -> datetime:
    """The start of the fixed window of ``window_s`` seconds that holds ``moment``."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_s, tz=UTC)


def alert_id(detection: Detection, window_s: int) -> str:
    """The id of the alert a detection belongs to."""
    start = window_start(detection.timestamp, window_s)
    return stable_id(detection.dedup_key, start.isoformat())


def fold(
    existing: Alert | None,
    detection: Detection,
    *,
    window_s: int,
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
                "source_offset": {**existing.source_offset, source: offset},
            }
        )
    start = window_start(detection.timestamp, window_s)
    return Alert(
        id=stable_id(detection.dedup_key, start.isoformat()),
        dedup_key=detection.dedup_key,
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
        history=[
            HistoryEntry(
                at=detection.timestamp,
                by="socpipe",
                action="created",
                detail={"detection": detection.id},
            )
        ],
        source_offset={source: offset},
    )
