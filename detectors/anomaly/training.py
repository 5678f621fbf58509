"""Where a baseline comes from (``socpipe model train``): ECS events from a JSON-lines file (what
``socpipe parse`` prints) or from the indexed events (``<prefix>-events-*``), and the analysts'
false-positive verdicts on earlier anomaly alerts, which training leaves out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
from elasticsearch import Elasticsearch, NotFoundError, helpers

from detectors.anomaly.windows import Entity
from socpipe.errors import ConfigError

_SPAN: Final = re.compile(r"^(\d+)([mhd])$")
_UNIT_S: Final = {"m": 60, "h": 3600, "d": 86400}
# The alert field holding each entity.
ENTITY_FIELD: Final[dict[str, str]] = {
    "user": "entities.user",
    "host": "entities.host",
    "source_ip": "entities.source_ip",
    "agency": "entities.agency",
}


def span(text: str) -> timedelta:
    """``14d``, ``12h``, ``90m`` as a duration; ConfigError otherwise."""
    found = _SPAN.match(text.strip())
    if found is None or int(found[1]) == 0:
        raise ConfigError(f"a period is a number and m, h or d (14d, 12h), not {text!r}")
    return timedelta(seconds=int(found[1]) * _UNIT_S[found[2]])


def events_from_file(path: Path) -> Iterator[dict[str, Any]]:
    """The ECS events of a JSON-lines file; a line that is not a JSON object is a ConfigError
    naming its line number."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise ConfigError(f"{path}:{number}: not JSON ({error})") from error
            if not isinstance(event, dict):
                raise ConfigError(f"{path}:{number}: an ECS event is a JSON object")
            yield event


def events_from_elasticsearch(
    client: Elasticsearch, prefix: str, since: datetime, until: datetime
) -> Iterator[dict[str, Any]]:
    """The indexed events of ``[since, until)``, in no particular order (a scroll)."""
    query = {"range": {"@timestamp": {"gte": since.isoformat(), "lt": until.isoformat()}}}
    try:
        for hit in helpers.scan(
            client, index=f"{prefix}-events-*", query={"query": query}, size=5000, scroll="5m"
        ):
            yield hit["_source"]
    except NotFoundError:
        return


def _moment(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def false_positives(
    client: Elasticsearch, prefix: str, entity: Entity, since: datetime
) -> list[tuple[str, str, datetime, datetime]]:
    """(agency, entity, first, last) of the anomaly alerts since ``since`` that analysts closed
    as false positives (status false_positive: the verdict false_positive): the windows of that
    agency's entity starting from ``first`` to ``last`` (an anomaly detection is stamped with
    its window's start, and an alert folds those of its dedup window)."""
    field = ENTITY_FIELD[entity]
    query = {
        "bool": {
            "filter": [
                {"term": {"detector.type": "anomaly"}},
                {"term": {"status": "false_positive"}},
                {"range": {"last_seen": {"gte": since.isoformat()}}},
                {"exists": {"field": field}},
            ]
        }
    }
    found = []
    try:
        for hit in helpers.scan(
            client, index=f"{prefix}-alerts", query={"query": query}, size=1000
        ):
            source = hit["_source"]
            entities = source.get("entities", {})
            who, agency = entities.get(field.split(".", 1)[1]), entities.get("agency")
            if isinstance(who, str) and isinstance(agency, str):
                first, last = _moment(source["first_seen"]), _moment(source["last_seen"])
                found.append((agency, who, first, last))
    except NotFoundError:
        return []
    return found
