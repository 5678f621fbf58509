"""ECS's allowed values, for tests that check what parsers put in event.category and event.type
(https://www.elastic.co/guide/en/ecs/current/ecs-allowed-values-event-category.html)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

ECS_CATEGORIES = frozenset({
    "api", "authentication", "configuration", "database", "driver", "email", "file", "host",
    "iam", "intrusion_detection", "library", "malware", "network", "package", "process",
    "registry", "session", "threat", "vulnerability", "web",
})  # fmt: skip
ECS_TYPES = frozenset({
    "access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied",
    "device", "end", "error", "group", "indicator", "info", "installation", "protocol", "start",
    "user",
})  # fmt: skip


def assert_program_fragment(fragment: dict[str, Any], received: datetime) -> None:
    """A syslog program parser's fragment: ECS's allowed values, none of the fields the
    normalizer owns (the time comes from the syslog header), and valid as an event."""
    from socpipe.records import EcsEvent

    event: dict[str, Any] = fragment.get("event", {})
    assert set(event.get("category", [])) <= ECS_CATEGORIES
    assert set(event.get("type", [])) <= ECS_TYPES
    for owned in ("organization", "labels", "related", "host", "@timestamp"):
        assert owned not in fragment
    EcsEvent.model_validate({**fragment, "@timestamp": received, "event": dict(event)})
