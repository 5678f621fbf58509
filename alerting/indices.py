"""Time-based indices behind aliases, their templates, and retention.

Each family (alerts, events, audit, completeness) lives in indices named
``<prefix>-<family>-<period>`` (``soc-alerts-2026.11``, ``soc-events-2026.11.28``), all joined to
the alias ``<prefix>-<family>`` by their template, so readers search the alias and writers pick
the index of a document's time. The local Elasticsearch (the integ-test distribution) has no
index lifecycle management, so :meth:`Indices.apply_retention` deletes whole indices whose
period ended more than the family's days ago (``alerting.retention``); ``socpipe alert`` runs it
every ``retention.interval_s`` and ``socpipe indices retention`` on demand. A cluster with ILM
can leave the days high and use its own policies.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from alerting.templates import alert_template, audit_template, event_template
from socpipe.settings import RetentionSettings

log = logging.getLogger(__name__)

Family = Literal["alerts", "events", "audit", "completeness"]
Template = Callable[[str, int], dict[str, Any]]


@dataclass(frozen=True)
class FamilySpec:
    """How a family's indices are cut (by month or day) and mapped."""

    period: Literal["month", "day"]
    template: Template


def _completeness_template(alias: str, replicas: int) -> dict[str, Any]:
    from alerting.completeness import completeness_template  # its own module owns the shape

    return completeness_template(alias, replicas)


FAMILIES: Final[dict[Family, FamilySpec]] = {
    "alerts": FamilySpec("month", alert_template),
    "events": FamilySpec("day", event_template),
    "audit": FamilySpec("month", audit_template),
    "completeness": FamilySpec("month", _completeness_template),
}
_SUFFIX: Final = re.compile(r"^(\d{4})\.(\d{2})(?:\.(\d{2}))?$")


class Indices:
    """Names, templates and retention of one deployment's indices (``prefix``)."""

    def __init__(self, client: Elasticsearch, prefix: str, replicas: int = 0) -> None:
        self.client = client
        self.prefix = prefix
        self.replicas = replicas

    def alias(self, family: Family) -> str:
        """What readers search: every index of the family."""
        return f"{self.prefix}-{family}"

    def index_for(self, family: Family, moment: datetime) -> str:
        """The index a document of ``moment`` (UTC) goes to."""
        moment = moment.astimezone(UTC)
        period = "%Y.%m" if FAMILIES[family].period == "month" else "%Y.%m.%d"
        return f"{self.alias(family)}-{moment:{period}}"

    def ensure_templates(self, families: Iterable[Family] = tuple(FAMILIES)) -> None:
        """Put each family's index template (idempotent; new indices take the new version)."""
        for family in families:
            alias = self.alias(family)
            template = FAMILIES[family].template(alias, self.replicas)
            self.client.indices.put_index_template(name=alias, **template)
            # Indices already made (this month's alerts) take fields a newer version added: a
            # strict mapping would refuse documents carrying them until the next period.
            properties = template["template"]["mappings"].get("properties")
            if properties:
                try:
                    self.client.indices.put_mapping(
                        index=f"{alias}-*", properties=properties, allow_no_indices=True
                    )
                except BadRequestError as error:  # a field whose type changed: new indices only
                    log.warning("indices of %s keep their mapping: %s", alias, error)

    def period_end(self, family: Family, index: str) -> datetime | None:
        """When the period of ``index`` ends; None for a name not of the family's shape."""
        head = f"{self.alias(family)}-"
        match = _SUFFIX.match(index[len(head) :]) if index.startswith(head) else None
        if match is None:
            return None
        year, month, day = int(match[1]), int(match[2]), match[3]
        try:
            if FAMILIES[family].period == "day":
                if day is None:
                    return None
                return datetime(year, month, int(day), tzinfo=UTC) + timedelta(days=1)
            if day is not None:
                return None
            return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        except ValueError:
            return None

    def expired(self, family: Family, days: int, now: datetime) -> list[str]:
        """The family's indices whose whole period is more than ``days`` days before ``now``."""
        try:
            names = self.client.indices.get(index=f"{self.alias(family)}-*", allow_no_indices=True)
        except NotFoundError:
            return []
        limit = now - timedelta(days=days)
        old = []
        for name in sorted(names):
            end = self.period_end(family, name)
            if end is not None and end <= limit:
                old.append(name)
        return old

    def apply_retention(
        self, retention: RetentionSettings, now: datetime, *, dry_run: bool = False
    ) -> list[str]:
        """Delete (unless ``dry_run``) every expired index; the names, oldest first per family."""
        days: dict[Family, int] = {
            "alerts": retention.alerts_days,
            "events": retention.events_days,
            "audit": retention.audit_days,
            "completeness": retention.completeness_days,
        }
        deleted: list[str] = []
        for family, keep in days.items():
            for name in self.expired(family, keep, now):
                if not dry_run:
                    self.client.indices.delete(index=name, ignore_unavailable=True)
                    log.info("retention: deleted %s (%s kept %d days)", name, family, keep)
                deleted.append(name)
        return deleted


__all__ = ["FAMILIES", "Family", "FamilySpec", "Indices"]
