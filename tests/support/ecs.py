"""ECS's allowed values, for tests that check what parsers put in event.category and event.type
(https://www.elastic.co/guide/en/ecs/current/ecs-allowed-values-event-category.html)."""

from __future__ import annotations

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
