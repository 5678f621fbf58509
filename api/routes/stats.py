"""``/stats``: counts of alerts for the dashboards (stats:read), confined to an agency-scoped
caller's own agency.

Counts per severity, status, agency, tier, rule and ATT&CK tactic; the most frequent hosts, users
and source addresses; and a histogram of when alerts were last seen, per hour or per day (days
from midnight in ``tz``), between ``since`` and ``until`` (the last 7 days per hour, or the last
30 per day, unless given). Each count is of alerts, and of the detections folded into them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel

from alerting.queries import AlertQuery, AlertStats, Bucket, Facet, Interval, StatsQuery
from api.deps import StatsReader, StoreDep
from api.params import AgencyId, ApiTime, TimeZone, check_range, invalid
from socpipe.records import AlertStatus, Severity, utcnow
from socpipe.settings import Tier

router = APIRouter(prefix="/stats", tags=["stats"])

MAX_BUCKETS: Final = 1000
_STEP: Final[dict[Interval, timedelta]] = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
_DEFAULT_SPAN: Final[dict[Interval, timedelta]] = {
    "1h": timedelta(days=7),
    "1d": timedelta(days=30),
}


class CountPublic(BaseModel):
    """One key of a count: alerts, and detections folded into them (``label``: a rule's
    title)."""

    key: str
    alerts: int
    detections: int
    label: str | None = None


class TimeCountPublic(BaseModel):
    """Alerts last seen in the interval starting at ``start``."""

    start: datetime
    alerts: int
    detections: int


class StatsPublic(BaseModel):
    """The counts of the alerts last seen between ``since`` and ``until``."""

    since: datetime
    until: datetime
    interval: Interval
    timezone: str
    alerts: int
    detections: int
    by_severity: list[CountPublic]
    by_status: list[CountPublic]
    by_agency: list[CountPublic]
    by_tier: list[CountPublic]
    by_rule: list[CountPublic]
    by_tactic: list[CountPublic]
    top_hosts: list[CountPublic]
    top_users: list[CountPublic]
    top_source_ips: list[CountPublic]
    histogram: list[TimeCountPublic]


@router.get("", response_model=StatsPublic)
def read_stats(
    store: StoreDep,
    caller: StatsReader,
    agency: AgencyId | None = None,
    tier: Tier | None = None,
    status_: Annotated[
        list[AlertStatus] | None, Query(alias="status", max_length=5, description="any of")
    ] = None,
    severity: Annotated[list[Severity] | None, Query(max_length=5, description="any of")] = None,
    rule_id: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[ApiTime | None, Query(description="last seen at or after")] = None,
    until: Annotated[ApiTime | None, Query(description="last seen at or before")] = None,
    interval: Interval = "1h",
    tz: TimeZone = "Asia/Ho_Chi_Minh",
    top: Annotated[int, Query(ge=1, le=100, description="how many hosts, users, rules")] = 10,
) -> StatsPublic:
    """Counts per facet and over time; at most 1000 intervals in the histogram."""
    until = until or utcnow()
    since = since or until - _DEFAULT_SPAN[interval]
    check_range(since, until)
    # +2: the partial intervals at either end.
    if (until - since) / _STEP[interval] + 2 > MAX_BUCKETS:
        hint = " or ask interval=1d" if interval == "1h" else ""
        raise invalid(
            "query",
            "since",
            f"more than {MAX_BUCKETS} intervals of {interval}: narrow since/until{hint}",
            since.isoformat(),
        )
    where = AlertQuery(
        status=tuple(status_ or ()),
        severity=tuple(severity or ()),
        agency=caller.scope_agency(agency),
        tier=tier,
        rule_id=rule_id,
        since=since,
        until=until,
    )
    stats = store.stats(StatsQuery(where=where, interval=interval, timezone=tz, top=top))
    return _public(stats, since, until, interval, tz)


def _counts(stats: AlertStats, facet: Facet) -> list[CountPublic]:
    return [_count(bucket) for bucket in stats.facets.get(facet, [])]


def _count(bucket: Bucket) -> CountPublic:
    return CountPublic(
        key=bucket.key, alerts=bucket.alerts, detections=bucket.detections, label=bucket.label
    )


def _public(
    stats: AlertStats, since: datetime, until: datetime, interval: Interval, tz: str
) -> StatsPublic:
    return StatsPublic(
        since=since,
        until=until,
        interval=interval,
        timezone=tz,
        alerts=stats.alerts,
        detections=stats.detections,
        by_severity=_counts(stats, "severity"),
        by_status=_counts(stats, "status"),
        by_agency=_counts(stats, "agency"),
        by_tier=_counts(stats, "tier"),
        by_rule=_counts(stats, "rule"),
        by_tactic=_counts(stats, "tactic"),
        top_hosts=_counts(stats, "host"),
        top_users=_counts(stats, "user"),
        top_source_ips=_counts(stats, "source_ip"),
        histogram=[
            TimeCountPublic(start=b.start, alerts=b.alerts, detections=b.detections)
            for b in stats.histogram
        ],
    )
