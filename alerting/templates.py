"""Index templates with explicit mappings: what analysts search is typed, nothing guessed."""

from __future__ import annotations

from typing import Any

_KEYWORD = {"type": "keyword", "ignore_above": 1024}


def _text_and_keyword() -> dict[str, Any]:
    return {"type": "text", "fields": {"keyword": _KEYWORD}}


ALERT_PROPERTIES: dict[str, Any] = {
    "v": {"type": "short"},
    "id": _KEYWORD,
    "dedup_key": _KEYWORD,
    "status": _KEYWORD,
    "assignee": _KEYWORD,
    "verdict": _KEYWORD,
    "count": {"type": "long"},
    "first_seen": {"type": "date"},
    "last_seen": {"type": "date"},
    "window_start": {"type": "date"},
    "detector": {"properties": {"type": _KEYWORD, "id": _KEYWORD, "version": _KEYWORD}},
    "rule": {
        "properties": {
            "id": _KEYWORD,
            "title": _text_and_keyword(),
            "level": _KEYWORD,
            "tags": _KEYWORD,
            "tactics": _KEYWORD,
            "techniques": _KEYWORD,
        }
    },
    "severity": _KEYWORD,
    "risk_score": {"type": "integer"},
    "entities": {
        "properties": {
            "agency": _KEYWORD,
            "tier": _KEYWORD,
            "host": _KEYWORD,
            "user": _KEYWORD,
            "source_ip": {"type": "ip"},
        }
    },
    "detection_ids": _KEYWORD,
    # Copies of the triggering events are shown, not searched: stored, not indexed.
    "events": {"type": "object", "enabled": False},
    "notes": {"properties": {"at": {"type": "date"}, "by": _KEYWORD, "text": {"type": "text"}}},
    "history": {
        "properties": {
            "at": {"type": "date"},
            "by": _KEYWORD,
            "action": _KEYWORD,
            "detail": {"type": "object", "enabled": False},
        }
    },
    "source_offset": {"type": "object", "enabled": False},
}


def alert_template(alias: str, replicas: int = 0) -> dict[str, Any]:
    """The index template for ``<alias>-*`` indices, all joined to ``alias``."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": "1s",
            },
            "aliases": {alias: {}},
            "mappings": {"dynamic": "strict", "properties": ALERT_PROPERTIES},
        },
    }
