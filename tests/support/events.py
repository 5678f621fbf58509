"""Events into the real Elasticsearch as the event indexer writes them (plain functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch

from alerting.indices import Indices
from detectors.normalize import Normalizer
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef
from socpipe.settings import Settings, Tier

_NORMALIZER = Normalizer()


def ssh_event(
    number: int,
    at: datetime,
    *,
    agency: str,
    host: str,
    ip: str,
    failed: bool = True,
    prefix: str = "evt",
) -> dict[str, Any]:
    """An SSH login as the detectors make it (the real normalizer), at ``at``, with the id
    ``<prefix>-<number>``."""
    verb = "Failed password" if failed else "Accepted password"
    line = f"<38>Nov 27 10:00:01 {host} sshd[{4000 + number}]: {verb} for root from {ip} port 5{number:04d} ssh2"  # noqa: E501
    raw = RawRecord(
        id=f"{prefix}-{number:05d}",
        agency=AgencyRef(id=agency, tier=Tier.PROVINCE),
        collector=CollectorRef(id="c1", version="1"),
        host=host,
        source=SourceRef(type="syslog", format="syslog"),
        received=at,
        position=number,
        message=line,
    )
    document: dict[str, Any] = _NORMALIZER.normalize(raw).document
    document["@timestamp"] = at.isoformat()
    return document


def index_events(es: Elasticsearch, settings: Settings, events: list[dict[str, Any]]) -> None:
    """Into ``<prefix>-events-<day>``, by event id, then refreshed."""
    indices = Indices(es, settings.elasticsearch.index_prefix)
    indices.ensure_templates(["events"])
    operations: list[dict[str, Any]] = []
    for event in events:
        index = indices.index_for("events", datetime.fromisoformat(event["@timestamp"]))
        operations += [{"index": {"_index": index, "_id": event["event"]["id"]}}, event]
    for start in range(0, len(operations), 10_000):
        answer = es.bulk(operations=operations[start : start + 10_000])
        assert not answer["errors"], [i for i in answer["items"] if i["index"].get("error")][:3]
    es.indices.refresh(index=f"{indices.alias('events')}-*")
