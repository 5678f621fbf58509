"""socpipe's own health events (format ``socpipe.health``), as the health watch writes them.

``detectors/health.py`` watches the collectors' heartbeats; when one stops (no heartbeat for
several of its intervals, without saying it was stopping) it writes a record whose data is
``{"socpipe_health": {...}}`` to ``soc.raw``, and this parser turns it into an ECS event that Sigma
rules (product ``socpipe``, service ``health``) judge like any other:

- ``event.action``: ``collector-silent`` (or ``collector-resumed`` when it is heard again),
  ``event.category`` host, ``event.provider`` socpipe, ``@timestamp`` when it was noticed;
- ``agent.*``: the collector (id, version, type ``socpipe-collector``); ``host.name`` its host;
- ``socpipe.health.*``: the last heartbeat's time, the interval it promised and the silence in
  seconds; ``message`` says it in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Final

from detectors.parsers.base import DataParser, Fragment, NotMine, ParseContext

_ACTIONS: Final = frozenset({"collector-silent", "collector-resumed"})


class HealthParser(DataParser):
    """A health record of socpipe's own: ``{"socpipe_health": {"check": ..., ...}}``."""

    name: ClassVar[str] = "socpipe.health"
    dataset: ClassVar[str] = "socpipe.health"

    def sniff(self, data: Mapping[str, Any]) -> bool:
        """A mapping with a ``socpipe_health`` object."""
        return isinstance(data.get("socpipe_health"), Mapping)

    def parse(self, data: Mapping[str, Any], context: ParseContext) -> Fragment:
        """The ECS fragment; NotMine without a known check, its collector and its time."""
        health = data.get("socpipe_health")
        if not isinstance(health, Mapping):
            raise NotMine("not a socpipe health record")
        check = health.get("check")
        collector = health.get("collector")
        noticed = _time(health.get("noticed"))
        if check not in _ACTIONS or not isinstance(collector, Mapping) or noticed is None:
            raise NotMine("a health record needs a known check, its collector and noticed")
        collector_id = _text(collector.get("id"))
        if collector_id is None:
            raise NotMine("a health record needs the collector's id")
        fragment: Fragment = {
            "@timestamp": noticed,
            "event": {
                "kind": "event",
                "category": ["host"],
                "type": ["end" if check == "collector-silent" else "start"],
                "action": check,
                "provider": "socpipe",
            },
            "agent": {"id": collector_id, "type": "socpipe-collector"},
        }
        version = _text(collector.get("version"))
        if version:
            fragment["agent"]["version"] = version
        host = _text(health.get("host"))
        if host:
            fragment["host"] = {"name": host}
        details: dict[str, Any] = {}
        last = _time(health.get("last_heartbeat"))
        if last is not None:
            details["last_heartbeat"] = last.isoformat()
        for key in ("interval_s", "silent_s"):
            value = health.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                details[key] = float(value)
        if details:
            fragment["socpipe"] = {"health": details}
        message = _text(health.get("message"))
        if message:
            fragment["message"] = message
        return fragment


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


HEALTH_PARSER: Final = HealthParser()
