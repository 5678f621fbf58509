"""Events into the real Elasticsearch as the event indexer writes them (plain functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch

from alerting.indices import Indices
from socpipe.settings import Settings


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
