"""What an analyst asks of the alerts, as values, and the two readings of each.

:class:`AlertQuery` (filters, a sort and a page's position) and :class:`StatsQuery` (counts per
facet and over time) are read twice: as Elasticsearch query DSL (:func:`es_query`,
:func:`es_sort`, :func:`es_aggregations`, :func:`stats_from_response`) by the Elasticsearch store,
and as plain Python (:func:`matches`, :func:`page_of`, :func:`compute_stats`) by the in-memory
double. Both readings sit side by side so that a filter added to one is added to the other.

Pages are cut with ``search_after``: a page ends on a :data:`SortKey` (the sort value and the
alert id, which breaks ties), and the next page starts strictly after it. Sort values are
integers in both readings: dates as epoch milliseconds (what Elasticsearch returns for a
``date``), severity as its rank 1-5 (``event.severity`` of the ECS view).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo

from socpipe.elastic import time_range
from socpipe.records import Alert, AlertStatus, Severity
from socpipe.settings import Tier

AlertSort = Literal["last_seen", "first_seen", "severity", "risk_score", "count"]
SortOrder = Literal["asc", "desc"]
SortKey = tuple[int, str]
"""Where a page ended: the sort value of its last alert, and that alert's id."""
Facet = Literal[
    "severity", "status", "agency", "tier", "rule", "tactic", "host", "user", "source_ip"
]
Interval = Literal["1h", "1d"]

_T = TypeVar("_T")
SEVERITY_RANK: Final = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SORT_FIELDS: Final[dict[AlertSort, str]] = {
    "last_seen": "last_seen",
    "first_seen": "first_seen",
    # The keyword `severity` would sort alphabetically; the ECS view carries its rank.
    "severity": "event.severity",
    "risk_score": "risk_score",
    "count": "count",
}
_TEXT_FIELDS: Final = (
    "rule.title",
    "rule.id",
    "entities.host",
    "entities.user",
    "entities.agency",
    "notes.text",
)


@dataclass(frozen=True)
class AlertQuery:
    """Filters, sort and position of a page of alerts. ``agency`` also carries an agency-scoped
    user's restriction. ``status`` and ``severity`` take one value or several (any of them);
    ``source_ip`` an address or a CIDR network; ``technique`` matches its sub-techniques too
    (T1110 finds T1110.001); ``after`` is where the previous page ended."""

    status: AlertStatus | tuple[AlertStatus, ...] | None = None
    severity: Severity | tuple[Severity, ...] | None = None
    agency: str | None = None
    rule_id: str | None = None
    host: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    tier: Tier | None = None
    tactic: str | None = None
    technique: str | None = None
    user: str | None = None
    source_ip: str | None = None
    ids: tuple[str, ...] = ()
    sort: AlertSort = "last_seen"
    order: SortOrder = "desc"
    after: SortKey | None = None

    def statuses(self) -> tuple[AlertStatus, ...]:
        """The statuses asked for; empty: any."""
        return _many(self.status)

    def severities(self) -> tuple[Severity, ...]:
        """The severities asked for; empty: any."""
        return _many(self.severity)

    def filters(self) -> dict[str, Any]:
        """The filters alone (no sort, limit or position), JSON-ready: what a cursor is bound
        to."""
        values: dict[str, Any] = {
            "status": sorted(self.statuses()),
            "severity": sorted(self.severities()),
            "agency": self.agency,
            "rule_id": self.rule_id,
            "host": self.host,
            "text": self.text,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "tier": self.tier,
            "tactic": self.tactic,
            "technique": self.technique,
            "user": self.user,
            "source_ip": self.source_ip,
            "ids": sorted(self.ids),
        }
        return {k: str(v) if isinstance(v, Tier) else v for k, v in values.items() if v}


def _many(value: _T | tuple[_T, ...] | None) -> tuple[_T, ...]:
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def sort_value(alert: Alert, sort: AlertSort) -> int:
    """The value ``alert`` sorts by, as Elasticsearch gives it in a hit's ``sort``."""
    if sort == "last_seen":
        return _millis(alert.last_seen)
    if sort == "first_seen":
        return _millis(alert.first_seen)
    if sort == "severity":
        return SEVERITY_RANK[alert.severity.value]
    if sort == "risk_score":
        return alert.risk_score
    return alert.count


# --- the in-memory reading -------------------------------------------------------------------


def _in_network(address: str | None, wanted: str) -> bool:
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


def _has_technique(techniques: Iterable[str], wanted: str) -> bool:
    return any(t == wanted or t.startswith(wanted + ".") for t in techniques)


def _has_text(alert: Alert, text: str) -> bool:
    # Every word must appear somewhere, as Elasticsearch's default_operator "and" wants.
    haystack = " ".join(
        str(v)
        for v in (
            alert.rule.title,
            alert.rule.id,
            alert.entities.host,
            alert.entities.user,
            alert.entities.agency,
            alert.entities.source_ip,
            *(note.text for note in alert.notes),
        )
        if v is not None
    ).casefold()
    return all(word in haystack for word in text.casefold().split())


def matches(alert: Alert, query: AlertQuery) -> bool:
    """Whether ``alert`` passes the filters of ``query`` (its position aside)."""
    statuses, severities = query.statuses(), query.severities()
    entities = alert.entities
    checks = (
        not statuses or alert.status in statuses,
        not severities or alert.severity in severities,
        query.agency is None or entities.agency == query.agency,
        query.rule_id is None or alert.rule.id == query.rule_id,
        query.host is None or entities.host == query.host,
        query.user is None or entities.user == query.user,
        query.tier is None or entities.tier == query.tier,
        query.tactic is None or query.tactic in alert.rule.tactics,
        query.technique is None or _has_technique(alert.rule.techniques, query.technique),
        query.source_ip is None or _in_network(entities.source_ip, query.source_ip),
        not query.ids or alert.id in query.ids,
        query.since is None or alert.last_seen >= query.since,
        query.until is None or alert.last_seen <= query.until,
        query.text is None or _has_text(alert, query.text),
    )
    return all(checks)


def page_of(alerts: Iterable[Alert], query: AlertQuery) -> tuple[list[Alert], int, bool]:
    """The page ``query`` asks for among ``alerts``: its alerts, how many match in all, and
    whether more follow."""
    hits = sorted((a for a in alerts if matches(a, query)), key=lambda a: a.id)
    # Python's sort is stable also when reversed: equal values keep the ids' ascending order,
    # which is Elasticsearch's tie-break here.
    hits.sort(key=lambda a: sort_value(a, query.sort), reverse=query.order == "desc")
    total = len(hits)
    if query.after is not None:
        value, last_id = query.after
        if query.order == "desc":
            hits = [a for a in hits if (-sort_value(a, query.sort), a.id) > (-value, last_id)]
        else:
            hits = [a for a in hits if (sort_value(a, query.sort), a.id) > (value, last_id)]
    return hits[: query.limit], total, len(hits) > query.limit


# --- the Elasticsearch reading ---------------------------------------------------------------


def es_query(query: AlertQuery) -> dict[str, Any]:
    """The query DSL of the filters of ``query``."""
    filters: list[dict[str, Any]] = []
    for name, values in (("status", query.statuses()), ("severity", query.severities())):
        if values:
            filters.append({"terms": {name: [str(v) for v in values]}})
    for name, value in (
        ("entities.agency", query.agency),
        ("rule.id", query.rule_id),
        ("entities.host", query.host),
        ("entities.user", query.user),
        ("entities.tier", query.tier),
        ("rule.tactics", query.tactic),
        # An ip field takes an address or a CIDR network in a term query.
        ("entities.source_ip", query.source_ip),
    ):
        if value is not None:
            filters.append({"term": {name: str(value)}})
    if query.technique is not None:
        filters.append(
            {
                "bool": {
                    "should": [
                        {"term": {"rule.techniques": query.technique}},
                        {"prefix": {"rule.techniques": query.technique + "."}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    if query.ids:
        filters.append({"ids": {"values": list(query.ids)}})
    if (period := time_range("last_seen", query.since, query.until)) is not None:
        filters.append(period)
    must: list[dict[str, Any]] = []
    if query.text:
        must.append(
            {
                "simple_query_string": {
                    "query": query.text,
                    "fields": list(_TEXT_FIELDS),
                    "default_operator": "and",
                    "lenient": True,
                }
            }
        )
    return {"bool": {"filter": filters, "must": must}}


def es_sort(query: AlertQuery) -> list[dict[str, Any]]:
    """The sort of ``query``, the id breaking ties so that ``search_after`` is exact."""
    return [{_SORT_FIELDS[query.sort]: {"order": query.order}}, {"id": {"order": "asc"}}]


# --- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsQuery:
    """Counts of the alerts ``where`` selects (its sort and position ignored): per facet (the
    ``top`` most frequent keys of rules, hosts, users and addresses; every key of the others)
    and per ``interval`` of ``last_seen`` between ``where.since`` and ``where.until``, days
    starting at midnight in ``timezone``."""

    where: AlertQuery = field(default_factory=AlertQuery)
    interval: Interval = "1h"
    timezone: str = "UTC"
    top: int = 10


@dataclass(frozen=True)
class Bucket:
    """One key of a facet: alerts, and detections folded into them; ``label`` names a rule."""

    key: str
    alerts: int
    detections: int
    label: str | None = None


@dataclass(frozen=True)
class TimeBucket:
    """Alerts last seen within one interval starting at ``start``."""

    start: datetime
    alerts: int
    detections: int


@dataclass(frozen=True)
class AlertStats:
    """What :class:`StatsQuery` asks for."""

    alerts: int
    detections: int
    facets: dict[Facet, list[Bucket]]
    histogram: list[TimeBucket]


# Each facet: its field, and its size (None: the query's ``top``). 165 agencies fit.
FACET_FIELDS: Final[dict[Facet, tuple[str, int | None]]] = {
    "severity": ("severity", 10),
    "status": ("status", 10),
    "agency": ("entities.agency", 500),
    "tier": ("entities.tier", 10),
    "rule": ("rule.id", None),
    "tactic": ("rule.tactics", 50),
    "host": ("entities.host", None),
    "user": ("entities.user", None),
    "source_ip": ("entities.source_ip", None),
}


def _facet_keys(alert: Alert, facet: Facet) -> list[str]:
    entities = alert.entities
    if facet == "severity":
        return [alert.severity.value]
    if facet == "status":
        return [alert.status.value]
    if facet == "agency":
        return [entities.agency]
    if facet == "rule":
        return [alert.rule.id]
    if facet == "tactic":
        return list(dict.fromkeys(alert.rule.tactics))
    value = {
        "tier": entities.tier.value if entities.tier else None,
        "host": entities.host,
        "user": entities.user,
        "source_ip": _normal_ip(entities.source_ip),
    }[facet]
    return [] if value is None else [value]


def _normal_ip(address: str | None) -> str | None:
    # As Elasticsearch writes an ip field's key (IPv6 compressed); the mapping refuses others.
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _key_order(facet: Facet, key: str) -> tuple[int, bytes]:
    # Elasticsearch breaks ties of counts by key: addresses by their bytes (10.0.0.9 before
    # 10.0.0.17), keywords by their UTF-8 bytes.
    if facet == "source_ip":
        try:
            address = ipaddress.ip_address(key)
        except ValueError:
            return (2, key.encode())
        # An ip field holds IPv4 as IPv4-mapped IPv6: every IPv4 sorts before real IPv6.
        return (0 if address.version == 4 else 1, address.packed)
    return (0, key.encode())


def _bucket_start(moment: datetime, interval: Interval, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    if interval == "1h":
        local = local.replace(minute=0, second=0, microsecond=0)
    else:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC)


def _next_bucket(start: datetime, interval: Interval, zone: ZoneInfo) -> datetime:
    if interval == "1h":
        return start + timedelta(hours=1)
    # A calendar day: midnight to midnight on the wall clock, whatever the offset does.
    local = start.astimezone(zone)
    following = datetime.combine(local.date() + timedelta(days=1), local.time(), tzinfo=zone)
    return following.astimezone(UTC)


def histogram_starts(
    first: datetime, last: datetime, interval: Interval, timezone: str
) -> list[datetime]:
    """The starts of the intervals from the one holding ``first`` to the one holding ``last``."""
    zone = ZoneInfo(timezone)
    start, end = _bucket_start(first, interval, zone), _bucket_start(last, interval, zone)
    starts = []
    while start <= end:
        starts.append(start)
        start = _next_bucket(start, interval, zone)
    return starts


def compute_stats(alerts: Iterable[Alert], query: StatsQuery) -> AlertStats:
    """:class:`AlertStats` of ``alerts`` in Python, as Elasticsearch's aggregations give them."""
    selected = [a for a in alerts if matches(a, query.where)]
    facets: dict[Facet, list[Bucket]] = {}
    for facet, (_field, size) in FACET_FIELDS.items():
        alerts_by: Counter[str] = Counter()
        detections_by: Counter[str] = Counter()
        labels: dict[str, str] = {}
        for alert in selected:
            for key in _facet_keys(alert, facet):
                alerts_by[key] += 1
                detections_by[key] += alert.count
                if facet == "rule":
                    labels.setdefault(key, alert.rule.title)
        ordered = sorted(alerts_by, key=lambda k: (-alerts_by[k], _key_order(facet, k)))
        ordered = ordered[: size or query.top]
        facets[facet] = [Bucket(k, alerts_by[k], detections_by[k], labels.get(k)) for k in ordered]
    zone = ZoneInfo(query.timezone)
    first = query.where.since or min((a.last_seen for a in selected), default=None)
    last = query.where.until or max((a.last_seen for a in selected), default=None)
    histogram: list[TimeBucket] = []
    if first is not None and last is not None:
        alerts_at: Counter[datetime] = Counter()
        detections_at: Counter[datetime] = Counter()
        for alert in selected:
            start = _bucket_start(alert.last_seen, query.interval, zone)
            alerts_at[start] += 1
            detections_at[start] += alert.count
        histogram = [
            TimeBucket(start, alerts_at[start], detections_at[start])
            for start in histogram_starts(first, last, query.interval, query.timezone)
        ]
    return AlertStats(
        alerts=len(selected),
        detections=sum(a.count for a in selected),
        facets=facets,
        histogram=histogram,
    )


def es_aggregations(query: StatsQuery) -> dict[str, Any]:
    """The aggregations of ``query``, to run with ``size=0`` over :func:`es_query`."""
    detections: dict[str, Any] = {"detections": {"sum": {"field": "count"}}}
    aggs: dict[str, Any] = {"all_detections": {"sum": {"field": "count"}}}
    for facet, (name, size) in FACET_FIELDS.items():
        sub: dict[str, Any] = dict(detections)
        if facet == "rule":
            sub["title"] = {"terms": {"field": "rule.title.keyword", "size": 1}}
        aggs[facet] = {"terms": {"field": name, "size": size or query.top}, "aggs": sub}
    histogram: dict[str, Any] = {
        "field": "last_seen",
        "calendar_interval": query.interval,
        "time_zone": query.timezone,
        "min_doc_count": 0,
    }
    where = query.where
    if where.since is not None and where.until is not None:
        histogram["extended_bounds"] = {"min": _millis(where.since), "max": _millis(where.until)}
    aggs["histogram"] = {"date_histogram": histogram, "aggs": detections}
    return aggs


def stats_from_response(response: dict[str, Any], query: StatsQuery) -> AlertStats:
    """:class:`AlertStats` from the answer to a search with :func:`es_aggregations`."""
    aggs = response.get("aggregations", {})
    facets: dict[Facet, list[Bucket]] = {}
    for facet in FACET_FIELDS:
        buckets = []
        for bucket in aggs.get(facet, {}).get("buckets", []):
            titles = bucket.get("title", {}).get("buckets", [])
            buckets.append(
                Bucket(
                    key=str(bucket.get("key_as_string", bucket["key"])),
                    alerts=int(bucket["doc_count"]),
                    detections=round(bucket["detections"]["value"] or 0),
                    label=str(titles[0]["key"]) if titles else None,
                )
            )
        facets[facet] = buckets
    histogram = [
        TimeBucket(
            start=datetime.fromtimestamp(bucket["key"] / 1000, tz=UTC),
            alerts=int(bucket["doc_count"]),
            detections=round(bucket["detections"]["value"] or 0),
        )
        for bucket in aggs.get("histogram", {}).get("buckets", [])
    ]
    return AlertStats(
        alerts=int(response["hits"]["total"]["value"]),
        detections=round(aggs.get("all_detections", {}).get("value") or 0),
        facets=facets,
        histogram=histogram,
    )


__all__ = [
    "FACET_FIELDS",
    "SEVERITY_RANK",
    "AlertQuery",
    "AlertSort",
    "AlertStats",
    "Bucket",
    "Facet",
    "Interval",
    "SortKey",
    "SortOrder",
    "StatsQuery",
    "TimeBucket",
    "compute_stats",
    "es_aggregations",
    "es_query",
    "es_sort",
    "histogram_starts",
    "matches",
    "page_of",
    "sort_value",
]
