"""Messages about alerts, rendered from the Jinja2 templates in ``templates/<language>/``.

Each language has ``alert.txt.j2`` (one new alert), ``digest.txt.j2`` (alerts held over a
channel's rate) and ``words.j2`` (severity and tier names). A template sets ``subject`` at its
top level and renders the body, so one render gives both (``Template.make_module``). Every
string a reader sees lives in the templates: a translator edits them and no Python.

Times are shown in the configured zone as ``28/11/2026 09:15 (GMT+7)``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from alerting.notify.base import Message
from socpipe.errors import ConfigError
from socpipe.records import Alert, Severity
from socpipe.settings import Language

TEMPLATES = Path(__file__).resolve().parent / "templates"
LANGUAGES: tuple[str, ...] = get_args(Language)

# informational < low < medium < high < critical: Severity lists its members in that order.
SEVERITY_RANK = {severity.value: rank for rank, severity in enumerate(Severity)}


def alert_url(console_url: str | None, alert_id: str) -> str | None:
    """The alert's page in the console, or None without a console URL."""
    if not console_url:
        return None
    return f"{console_url.rstrip('/')}/#/alerts/{alert_id}"


def alert_summary(alert: Alert, console_url: str | None = None) -> dict[str, Any]:
    """The facts of an alert a notification carries, JSON-ready (what a webhook receives)."""
    entities = alert.entities
    return {
        "id": alert.id,
        "url": alert_url(console_url, alert.id),
        "rule": {"id": alert.rule.id, "title": alert.rule.title},
        "severity": alert.severity.value,
        "risk_score": alert.risk_score,
        "agency": entities.agency,
        "tier": entities.tier.value if entities.tier else None,
        "host": entities.host,
        "user": entities.user,
        "source_ip": entities.source_ip,
        "count": alert.count,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "tactics": list(alert.rule.tactics),
        "techniques": list(alert.rule.techniques),
        "detector": alert.detector.type,
    }


def format_time(moment: datetime, zone: ZoneInfo) -> str:
    """``28/11/2026 09:15 (GMT+7)``: day first, as Vietnam writes dates, with the offset."""
    local = moment.astimezone(zone)
    return f"{local:%d/%m/%Y %H:%M} ({_gmt(local.utcoffset() or timedelta(0))})"


def _gmt(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    if minutes == 0:
        return "GMT"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"GMT{sign}{hours}" + (f":{rest:02d}" if rest else "")


def by_severity(alerts: Sequence[Alert]) -> list[Alert]:
    """Most severe first; within a severity, the earliest first."""
    return sorted(alerts, key=lambda a: (-SEVERITY_RANK[a.severity.value], a.first_seen, a.id))


class MessageRenderer:
    """Renders a new alert, or a digest of alerts, as a ``Message`` in Vietnamese or English."""

    # A digest lists this many alerts, most severe first, then says how many more there were.
    DIGEST_LISTED = 20

    def __init__(
        self, *, console_url: str | None = None, timezone: str = "Asia/Ho_Chi_Minh"
    ) -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"alerting.notifications.timezone: unknown time zone {timezone!r} "
                "(an IANA name like Asia/Ho_Chi_Minh)"
            ) from exc
        self.console_url = console_url
        # Sandboxed, though the templates are ours: an operator who edits one cannot reach
        # Python through it. Autoescape off: these are plain text, not HTML, and escaping would
        # show "&amp;" in "ATT&CK". StrictUndefined: a misspelt name fails the test suite
        # instead of rendering as nothing.
        self._env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._env.filters["when"] = self.when

    def when(self, moment: datetime) -> str:
        """A time as messages show it, in the configured zone."""
        return format_time(moment, self.zone)

    def alert(self, alert: Alert, language: Language) -> Message:
        """The message of one new alert."""
        summary = alert_summary(alert, self.console_url)
        subject, text = self._render(language, "alert", alert=self._view(alert, summary))
        return Message(
            subject=subject,
            text=text,
            payload={"kind": "alert", "language": language, "alert": summary},
        )

    def digest(
        self,
        alerts: Sequence[Alert],
        language: Language,
        *,
        total: int | None = None,
        counts: Mapping[str, int] | None = None,
    ) -> Message:
        """The message of alerts held over a channel's rate.

        ``alerts`` are those kept for listing (at most ``DIGEST_LISTED`` are listed, most severe
        first); ``total`` and ``counts`` (per severity) tell about all that were held, when more
        were held than kept. Both default to what ``alerts`` holds.
        """
        listed = by_severity(alerts)[: self.DIGEST_LISTED]
        total = len(alerts) if total is None else total
        counts = dict(Counter(a.severity.value for a in alerts) if counts is None else counts)
        # Most severe first, leaving out severities none had.
        ordered = [
            (severity.value, counts[severity.value])
            for severity in reversed(Severity)
            if counts.get(severity.value)
        ]
        summaries = [alert_summary(a, self.console_url) for a in listed]
        subject, text = self._render(
            language,
            "digest",
            alerts=[self._view(a, s) for a, s in zip(listed, summaries, strict=True)],
            total=total,
            more=max(total - len(listed), 0),
            counts=ordered,
        )
        return Message(
            subject=subject,
            text=text,
            payload={
                "kind": "digest",
                "language": language,
                "total": total,
                "counts": dict(ordered),
                "alerts": summaries,
                "more": max(total - len(listed), 0),
            },
        )

    def _view(self, alert: Alert, summary: dict[str, Any]) -> dict[str, Any]:
        # The summary, with times as datetimes for the `when` filter.
        return {
            **summary,
            "title": alert.rule.title,
            "rule_id": alert.rule.id,
            "first_seen": alert.first_seen,
            "last_seen": alert.last_seen,
        }

    def _render(self, language: Language, kind: str, **context: Any) -> tuple[str, str]:
        if language not in LANGUAGES:
            raise ValueError(f"no templates for language {language!r}; known: {LANGUAGES}")
        template = self._env.get_template(f"{language}/{kind}.txt.j2")
        module = template.make_module(context)
        # The module's attributes are the template's top-level assignments.
        subject = " ".join(str(vars(module)["subject"]).split())
        return subject, str(module).strip() + "\n"
