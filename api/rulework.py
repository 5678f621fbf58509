"""What the ``/rules`` and ``/exceptions`` routes do, apart from HTTP: check and save a rule as
its next version, flip its flag, run its test cases, backtest it. Errors become the API's
answers here: 422 with each problem and its line, 404, 409."""

from __future__ import annotations

from typing import Any, Final

from fastapi import HTTPException, Request, status

from alerting.grouping import AlertPolicies
from api.backtest import BacktestError, EventSource, Judge, Scan, Tally, run_backtest
from api.rulecheck import RuleCheckError, RuleProblem, RuleWorkspace, context_of
from api.rulemodels import (
    AgencyTally,
    BacktestPublic,
    CorrelationTally,
    RulePublic,
    RuleTestIn,
    RuleTestResult,
    RuleTestsPublic,
    RuleVersionPublic,
    RuleVersionSummary,
    ScanPublic,
    SuppressionTally,
)
from api.rulestore import RuleMeta, RuleStore, RuleVersion, VersionConflictError
from api.security import Principal
from detectors.normalize import Normalizer
from socpipe.records import utcnow
from socpipe.settings import Settings

_HISTORY: Final = 100


def rejected(problems: list[RuleProblem]) -> HTTPException:
    """The 422 of a rule with errors: ``detail`` is the list of problems, each with its line."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[p.model_dump() for p in problems]
    )


def found(store: RuleStore, rule_id: str) -> RuleVersion:
    """The latest version of a rule; 404 when there is none."""
    version = store.get(rule_id)
    if version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no rule {rule_id}")
    return version


def public(store: RuleStore, version: RuleVersion) -> RulePublic:
    """A rule with its history."""
    history, total = store.history(version.rule_id, _HISTORY)
    versions = [
        RuleVersionSummary(
            version=v.version, enabled=v.enabled, author=v.author, created=v.created,
            comment=v.comment,
        )
        for v in history
    ]  # fmt: skip
    return RulePublic(
        **RuleVersionPublic.of(version).model_dump(), versions=versions, versions_total=total
    )


def parsed(workspace: RuleWorkspace, text: str, rule_id: str | None = None) -> RuleMeta:
    """Parse a candidate; 422 when it is not one rule, or its id is not ``rule_id``."""
    try:
        meta = workspace.parse(text)
    except RuleCheckError as error:
        raise rejected(error.problems) from error
    if rule_id is not None and meta.rule_id != rule_id:
        line = workspace.keys.get(("id",))
        message = f"the id in the YAML ({meta.rule_id}) is not the rule's ({rule_id})"
        raise rejected([RuleProblem(line=line, message=message)])
    return meta


def checked(workspace: RuleWorkspace) -> list[RuleProblem]:
    """Check the candidate; 422 with its errors; else its warnings."""
    try:
        _, warnings = workspace.check()
    except RuleCheckError as error:
        raise rejected(error.problems) from error
    return warnings


def save(
    store: RuleStore,
    settings: Settings,
    text: str,
    comment: str,
    author: Principal,
    *,
    rule_id: str | None = None,
    new: bool = False,
    exception: dict[str, Any] | None = None,
) -> tuple[RuleVersion, list[RuleProblem]]:
    """Check a rule's YAML and store it as the rule's next version; 409 for ``new`` when the
    rule exists, or when another change got that version first."""
    with RuleWorkspace(settings.detector.placeholders) as workspace:
        meta = parsed(workspace, text, rule_id)
        workspace.add(context_of(meta, store, filters=False), meta.rule_id)
        warnings = checked(workspace)
        for version in workspace.versions:
            if meta.kind == "correlation" and not version.enabled and version.kind != "filter":
                message = (
                    f"it counts {version.kind} {version.rule_id}, which is disabled: the rule "
                    "set will not load (publish refuses it) until that is enabled"
                )
                warnings.append(RuleProblem(message=message, severity="warning"))
    previous = store.get(meta.rule_id)
    if new and previous is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"rule {meta.rule_id} exists: PUT /rules/{{id}}"
        )
    version = RuleVersion(
        **meta.model_dump(),
        version=previous.version + 1 if previous else 1,
        enabled=previous.enabled if previous else True,
        yaml=text,
        author=author.name,
        created=utcnow(),
        comment=comment,
        exception=exception,
    )
    stored(store, version)
    return version, warnings


def stored(store: RuleStore, version: RuleVersion) -> None:
    """Add a version; 409 when another change wrote that version first."""
    try:
        store.add(version)
    except VersionConflictError as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"rule {version.rule_id} changed meanwhile: read it again and retry",
        ) from error


def audit(request: Request, target_type: str, target_id: str, **detail: Any) -> None:
    """What this request changed, for the audit trail."""
    request.state.audit = {"target_type": target_type, "target_id": target_id, "detail": detail}


def backtest(
    workspace: RuleWorkspace,
    meta: RuleMeta,
    settings: Settings,
    source: EventSource,
    days: int,
    cap: int,
) -> BacktestPublic:
    """Backtest the workspace's checked candidate (see ``api/backtest.py``); a filter is
    judged by what it suppresses of its target rules' matches."""
    policies = AlertPolicies(settings.alerting.policies, settings.alerting.dedup_window_s)
    filters = [v.rule_id for v in workspace.versions if v.kind == "filter"]
    targets = [v.rule_id for v in workspace.versions if v.kind == "rule"]
    if meta.kind == "filter" and not targets:
        raise rejected([RuleProblem(message="the filter applies to no rule of the set")])
    try:
        if meta.kind == "filter":
            before = Judge(workspace.load(candidate=False), workspace.pipeline, policies,
                           rule_ids=targets, keep_ids=True)  # fmt: skip
            judge = Judge(workspace.load(), workspace.pipeline, policies, rule_ids=targets,
                          keep_ids=True)  # fmt: skip
            judges = [before, judge]
        elif meta.kind == "correlation":
            judge = Judge(workspace.load(), workspace.pipeline, policies,
                          correlation_id=meta.rule_id)  # fmt: skip
            judges = [judge]
        else:
            judge = Judge(workspace.load(), workspace.pipeline, policies, rule_ids=[meta.rule_id])
            judges = [judge]
    except BacktestError as error:
        raise rejected([RuleProblem(message=str(error))]) from error
    scan = run_backtest(source, judges, days, cap, utcnow())
    tally = judge.tally
    answer = BacktestPublic(
        rule_id=meta.rule_id,
        title=meta.title,
        kind=meta.kind,
        scan=ScanPublic.of(scan, days),
        matches=tally.matches,
        alerts=len(tally.alerts),
        alert_window_s=settings.alerting.dedup_window_s,
        by_agency=[
            AgencyTally(agency=agency, matches=counts[0], alerts=counts[1])
            for agency, counts in sorted(tally.by_agency.items())
        ],
        sample_event_ids=tally.samples,
        unreadable_events=tally.unreadable,
        filters_applied=filters,
        note=_note(meta, scan),
    )
    if meta.kind == "correlation":
        answer.correlation = CorrelationTally(base_matches=judge.base_matches, hits=tally.matches)
    if meta.kind == "filter":
        answer.suppression = _suppression(targets, judges[0].tally, tally)
    return answer


def _suppression(targets: list[str], before: Tally, after: Tally) -> SuppressionTally:
    kept = set(after.ids or [])
    suppressed = [event_id for event_id in before.ids or [] if event_id not in kept]
    return SuppressionTally(
        rule_ids=targets,
        matches_without=before.matches,
        alerts_without=len(before.alerts),
        suppressed_matches=before.matches - after.matches,
        suppressed_alerts=len(before.alerts - after.alerts),
        suppressed_sample_event_ids=suppressed[:10],
    )


def _note(meta: RuleMeta, scan: Scan) -> str:
    notes = []
    if scan.capped:
        notes.append(
            f"only the newest {scan.events_scanned:,} of the period's {scan.events_in_period:,} "
            f"events were read (cap {scan.cap:,}): counts are for those"
        )
    if meta.kind == "correlation":
        notes.append(
            "correlation: its rules' matches were replayed oldest first through the "
            "correlation engine; windows still open at the end of the period are closed then"
        )
    if meta.kind == "filter":
        notes.append("filter: matches and alerts are its target rules' with it applied")
    return "; ".join(notes) or "every event of the period was read"


def flag(
    store: RuleStore, rule_id: str, enabled: bool, comment: str, user: Principal
) -> RuleVersion:
    """A new version of the rule with ``enabled``; none when it already is so."""
    latest = found(store, rule_id)
    if latest.enabled == enabled:
        return latest
    version = latest.model_copy(
        update={
            "version": latest.version + 1,
            "enabled": enabled,
            "author": user.name,
            "created": utcnow(),
            "comment": comment or ("enabled" if enabled else "disabled"),
            "origin": "api",
        }
    )
    stored(store, version)
    return version


def preview(
    store: RuleStore,
    settings: Settings,
    source: EventSource,
    text: str,
    rule_id: str | None,
    days: int,
    cap: int,
) -> BacktestPublic:
    """Check a rule's YAML with its context, enabled filters included, and backtest it."""
    with RuleWorkspace(settings.detector.placeholders) as workspace:
        meta = parsed(workspace, text, rule_id)
        workspace.add(context_of(meta, store, filters=True), meta.rule_id)
        checked(workspace)
        return backtest(workspace, meta, settings, source, days, cap)


def run_cases(
    store: RuleStore,
    settings: Settings,
    normalizer: Normalizer,
    text: str,
    body: RuleTestIn,
    rule_id: str | None,
) -> RuleTestsPublic:
    """Check a rule's YAML with its context and run the cases on it."""
    cases = [case.model_dump(exclude_none=True) for case in body.cases]
    with RuleWorkspace(settings.detector.placeholders) as workspace:
        meta = parsed(workspace, text, rule_id)
        workspace.add(context_of(meta, store, filters=body.filters), meta.rule_id)
        warnings = checked(workspace)
        ran, problems = workspace.run_cases(cases, normalizer)
        filters = [v.rule_id for v in workspace.versions if v.kind == "filter"]
    results = []
    for index, result in ran:
        if result.passed:
            why = "matched, as expected" if result.matched else "did not match, as expected"
        else:
            why = str(result).rsplit("]: ", 1)[-1]
        results.append(
            RuleTestResult(
                case=index, name=result.name, rule=result.rule, expected=result.expected,
                matched=result.matched, passed=result.passed, hits=result.hits,
                count=result.count, why=why, details=list(result.details),
            )
        )  # fmt: skip
    passed = sum(result.passed for result in results)
    return RuleTestsPublic(
        passed=passed,
        failed=len(results) - passed,
        results=results,
        problems=problems,
        warnings=warnings,
        filters=filters,
    )


__all__ = [
    "audit",
    "backtest",
    "checked",
    "flag",
    "found",
    "parsed",
    "preview",
    "public",
    "rejected",
    "run_cases",
    "save",
    "stored",
]
