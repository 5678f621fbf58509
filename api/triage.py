"""Triage of an alert: the statuses it goes through, and the changes an analyst makes to it
(status, assignee, comment, escalation into a case), each one recorded in its history.

The statuses and the transitions allowed between them::

    new ──► acknowledged ──► in_progress ──► resolved | false_positive
     │           │                               │
     │           └──────────────► resolved | false_positive
     └──────────────────────────► (any of the three above)
    resolved | false_positive ──► in_progress            (reopening)

- ``new`` may go to any other status; ``acknowledged`` to in_progress, resolved or
  false_positive; ``in_progress`` to resolved or false_positive. Nothing goes back to ``new`` or
  ``acknowledged``.
- Closing (``resolved``, ``false_positive``) needs a :class:`Verdict` and a reason; the verdict
  ``false_positive`` goes with the status false_positive, every other verdict with resolved.
- A closed alert only reopens, to ``in_progress``, with a reason; its verdict is cleared (the
  history keeps it).
- Asking an open alert for the status it has changes nothing (a retried request is harmless);
  asking a closed alert to close again is refused: reopen it first.

A refused transition raises :class:`TransitionRefused` (the API answers 409). The changes are
pure functions of the alert (``alerting.store.AlertEdit``): the store may apply one again after
a concurrent write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from alerting.store import AlertEdit, UpdateRefused
from socpipe.records import Alert, AlertStatus, HistoryEntry, Note

CLOSED: Final = frozenset({AlertStatus.RESOLVED, AlertStatus.FALSE_POSITIVE})
TRANSITIONS: Final[dict[AlertStatus, frozenset[AlertStatus]]] = {
    AlertStatus.NEW: frozenset(
        {
            AlertStatus.ACKNOWLEDGED,
            AlertStatus.IN_PROGRESS,
            AlertStatus.RESOLVED,
            AlertStatus.FALSE_POSITIVE,
        }
    ),
    AlertStatus.ACKNOWLEDGED: frozenset(
        {AlertStatus.IN_PROGRESS, AlertStatus.RESOLVED, AlertStatus.FALSE_POSITIVE}
    ),
    AlertStatus.IN_PROGRESS: frozenset({AlertStatus.RESOLVED, AlertStatus.FALSE_POSITIVE}),
    AlertStatus.RESOLVED: frozenset({AlertStatus.IN_PROGRESS}),
    AlertStatus.FALSE_POSITIVE: frozenset({AlertStatus.IN_PROGRESS}),
}
"""Where each status may go (see the module docstring)."""


class Verdict(StrEnum):
    """Why an alert was closed."""

    TRUE_POSITIVE = "true_positive"  # malicious or unwanted activity, confirmed
    BENIGN_POSITIVE = "benign_positive"  # the activity was real and authorized (a pentest)
    FALSE_POSITIVE = "false_positive"  # the rule matched what it should not have
    DUPLICATE = "duplicate"  # already handled under another alert or case


class TransitionRefused(UpdateRefused):
    """A status change the transitions do not allow; the message says what is allowed."""


def closing_problem(
    status: AlertStatus | None, verdict: Verdict | None, reason: str | None
) -> str | None:
    """What is missing or contradictory for a move to ``status``; None when nothing is."""
    if status not in CLOSED:
        return None
    if verdict is None or not (reason or "").strip():
        return f"closing an alert as {status} needs a verdict and a reason"
    if (status == AlertStatus.FALSE_POSITIVE) != (verdict == Verdict.FALSE_POSITIVE):
        return (
            f"the verdict {verdict} does not go with the status {status}: the verdict "
            "false_positive closes as false_positive, every other verdict as resolved"
        )
    return None


def status_for(verdict: Verdict) -> AlertStatus:
    """The closed status a verdict goes with."""
    return AlertStatus.FALSE_POSITIVE if verdict == Verdict.FALSE_POSITIVE else AlertStatus.RESOLVED


@dataclass(frozen=True)
class TriageChange:
    """An analyst's change of one alert, applied as an ``AlertEdit``: the assignee (when
    ``assign``; None unassigns), then the status, then a comment, each a history entry by ``by``
    at ``at``. The same alert object comes back when nothing changes."""

    by: str
    at: datetime
    status: AlertStatus | None = None
    verdict: Verdict | None = None
    reason: str | None = None
    assign: bool = False
    assignee: str | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        problem = closing_problem(self.status, self.verdict, self.reason)
        if problem is not None:
            raise ValueError(problem)
        if self.verdict is not None and self.status not in CLOSED:
            raise ValueError("a verdict goes only with the status resolved or false_positive")

    def __call__(self, alert: Alert) -> Alert:
        history: list[HistoryEntry] = []
        update: dict[str, Any] = {}
        if self.assign and self.assignee != alert.assignee:
            update["assignee"] = self.assignee
            action = "assigned" if self.assignee is not None else "unassigned"
            history.append(self._entry(action, {"from": alert.assignee, "to": self.assignee}))
        if self.status is not None:
            moved = self._move(alert)
            if moved:
                update.update(moved)
                detail = {"from": alert.status.value, "to": self.status.value}
                if self.verdict is not None:
                    detail["verdict"] = self.verdict.value
                elif alert.verdict is not None:
                    detail["previous_verdict"] = alert.verdict
                if self.reason:
                    detail["reason"] = self.reason
                history.append(self._entry("status_changed", detail))
        notes = alert.notes
        if self.comment:
            notes = [*notes, Note(at=self.at, by=self.by, text=self.comment)]
            update["notes"] = notes
            history.append(self._entry("commented", {"length": len(self.comment)}))
        if not history:
            return alert
        return alert.model_copy(update=update | {"history": [*alert.history, *history]})

    def _move(self, alert: Alert) -> dict[str, Any]:
        """The fields a move to ``self.status`` sets; empty when it is a harmless repeat."""
        assert self.status is not None
        current = alert.status
        if self.status == current and current not in CLOSED:
            return {}
        if self.status not in TRANSITIONS[current]:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
            hint = " (reopen it to in_progress first)" if current in CLOSED else ""
            raise TransitionRefused(
                f"alert {alert.id} is {current}: it may not become {self.status}{hint}; "
                f"it may become {allowed}"
            )
        if current in CLOSED and not (self.reason or "").strip():
            raise TransitionRefused(f"reopening alert {alert.id} needs a reason")
        verdict = self.verdict.value if self.verdict is not None else None
        return {"status": self.status, "verdict": verdict}

    def _entry(self, action: str, detail: dict[str, Any]) -> HistoryEntry:
        return HistoryEntry(at=self.at, by=self.by, action=action, detail=detail)


# --- cases ------------------------------------------------------------------------------------

ESCALATED: Final = "escalated"
REMOVED_FROM_CASE: Final = "removed_from_case"


def cases_of(alert: Alert) -> list[str]:
    """The cases an alert is in, as its history tells (escalations not undone)."""
    cases: dict[str, None] = {}
    for entry in alert.history:
        case = entry.detail.get("case")
        if not isinstance(case, str):
            continue
        if entry.action == ESCALATED:
            cases[case] = None
        elif entry.action == REMOVED_FROM_CASE:
            cases.pop(case, None)
    return list(cases)


def escalation(case_id: str, title: str, *, by: str, at: datetime) -> AlertEdit:
    """The edit that marks an alert as escalated into ``case_id`` (once)."""

    def edit(alert: Alert) -> Alert:
        if case_id in cases_of(alert):
            return alert
        entry = HistoryEntry(
            at=at, by=by, action=ESCALATED, detail={"case": case_id, "title": title}
        )
        return alert.model_copy(update={"history": [*alert.history, entry]})

    return edit


def removal(case_id: str, *, by: str, at: datetime) -> AlertEdit:
    """The edit that records an alert's removal from ``case_id``."""

    def edit(alert: Alert) -> Alert:
        if case_id not in cases_of(alert):
            return alert
        entry = HistoryEntry(at=at, by=by, action=REMOVED_FROM_CASE, detail={"case": case_id})
        return alert.model_copy(update={"history": [*alert.history, entry]})

    return edit


__all__ = [
    "CLOSED",
    "TRANSITIONS",
    "TransitionRefused",
    "TriageChange",
    "Verdict",
    "cases_of",
    "closing_problem",
    "escalation",
    "removal",
    "status_for",
]
