"""Builders of records for tests (plain functions, not fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from socpipe.records import Detection, DetectorRef, Entities, RuleRef, Severity, stable_id
from socpipe.settings import Tier

BASE_TIME = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def make_detection(
    n: int,
    *,
    agency: str = "so-tttt",
    dedup_key: str = "key-1",
    at: datetime | None = None,
    source_ip: str = "173.234.31.186",
) -> Detection:
    """The n-th failed-password detection of one source against one host."""
    return Detection(
        id=stable_id("det", agency, dedup_key, n),
        timestamp=at or BASE_TIME + timedelta(seconds=n),
        detector=DetectorRef(type="check", id="failed-password", version="1"),
        rule=RuleRef(
            id="rule-ssh",
            title="SSH authentication failure",
            level=Severity.MEDIUM,
            tags=["attack.credential_access", "attack.t1110"],
            tactics=["credential_access"],
            techniques=["T1110"],
        ),
        severity=Severity.MEDIUM,
        risk_score=Severity.MEDIUM.risk_score,
        entities=Entities(
            agency=agency,
            tier=Tier.PROVINCE,
            host="dvc-portal-01",
            user="nguyễn.văn.a",
            source_ip=source_ip,
        ),
        dedup_key=dedup_key,
        event_ids=[f"event-{n}"],
        events=[{"message": f"Failed password for nguyễn.văn.a #{n}"}],
    )


def collector_heartbeat(
    agency: str,
    collector: str,
    at: datetime,
    *,
    started: datetime,
    sources: list[dict[str, Any]],
    tier: str = "province",
    interval_s: int = 30,
    host: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A collector's heartbeat as ``socpipe collect`` sends it (``extra`` overrides fields)."""
    return {
        "v": 1,
        "kind": "collector",
        "time": at.isoformat(),
        "started": started.isoformat(),
        "interval_s": interval_s,
        "agency": {"id": agency, "tier": tier},
        "collector": {"id": collector, "version": "0.9.1"},
        "host": host or f"{collector}.local",
        "topic": f"soc.raw.{agency}",
        "stopping": False,
        "kafka": {"state": "up"},
        "spool": {"bytes": 0, "entries": 0, "max_bytes": 1 << 30},
        "queued_bytes": 0,
        "sources": sources,
        **extra,
    }
