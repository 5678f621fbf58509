"""``/rules``: the rule set analysts read and rule authors change, test, backtest and publish.

The rules live in the rule store (``api/rulestore.py``), seeded from ``detector.rules_paths`` on
first use; every change is a new version, never an overwrite. A rule is checked with the
detectors' own loader and compiler before it is saved (``api/rulecheck.py``): errors are a 422
listing each problem with its line. A change takes effect when the set is published
(``POST /rules/publish``), not before: publishing is deliberate, after a rule's tests and
backtest, and one publish carries several edits (a rule and its exception) at once.

A rule's YAML can be checked without saving it (``POST /rules/validate``): the same checks as
saving, answered 200 with ``valid``, the errors and the warnings, each with its line, so that an
editor can check as one types.

Permissions: reading, ``POST /rules/validate`` and ``POST .../test`` (they change nothing; a test
runs a few events) need ``rules:read`` (analysts, rule authors, admins); changing, backtesting
(it reads up to ``api.backtest.EVENT_CAP`` events) and publishing need ``rules:write`` (rule
authors, admins).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from kafka.errors import KafkaError

from api.backtest import EVENT_CAP
from api.deps import RulesReader, RulesWriter
from api.rulecheck import RuleProblem, RuleWorkspace, context_of, write_ruleset
from api.ruledeps import EventsDep, NormalizerDep, PublisherDep, RuleStoreDep, SettingsDep
from api.rulemodels import (
    BacktestPublic,
    PreviewIn,
    PreviewUnsavedIn,
    RuleChange,
    RuleFlagIn,
    RuleIn,
    RuleOutline,
    RuleProblems,
    RulePublic,
    RuleSetPublished,
    RulesPublic,
    RuleSummary,
    RuleTestIn,
    RuleTestsPublic,
    RuleTestUnsavedIn,
    RuleValidateIn,
    RuleValidation,
    RuleVersionPublic,
)
from api.rulestore import RULE_ID_PATTERN, RuleKind, RuleMeta, RuleQuery
from api.rulework import (
    audit,
    checked,
    flag,
    found,
    parsed,
    preview,
    public,
    rejected,
    run_cases,
    save,
)

router = APIRouter(prefix="/rules", tags=["rules"])

RuleId = Annotated[str, PathParam(pattern=RULE_ID_PATTERN, description="the rule's id (UUID)")]
Days = Annotated[int, Query(ge=1, le=30, description="how many days back to read")]
MaxEvents = Annotated[int, Query(ge=1, le=EVENT_CAP, description="the most events to read")]
_INVALID: Final[dict[int | str, dict[str, Any]]] = {
    422: {"description": "the rule has errors, each with its line", "model": RuleProblems}
}

# A check's message: <scratch>/rules/0/<kind>/<rule id>.yml:<line>: error: <message>
_SET_PROBLEM: Final = re.compile(
    r"^\S*?/rules/\d+/\w+/(?P<id>[^/\s]+)\.yml(?::(?P<line>\d+))?: (?:error: )?(?P<text>.*)$",
    re.DOTALL,
)


def _set_problem(message: str) -> RuleProblem:
    """A refusal of the rule set, with the rule and line it is about when the check says."""
    found = _SET_PROBLEM.match(message)
    if found is None:
        return RuleProblem(message=message)
    line = int(found["line"]) if found["line"] else None
    return RuleProblem(line=line, message=found["text"], rule_id=found["id"])


def _problems_of(refusal: HTTPException) -> list[RuleProblem]:
    """The problems of a rule's 422 (``api.rulework.rejected``)."""
    detail = refusal.detail if isinstance(refusal.detail, list) else [refusal.detail]
    return [
        RuleProblem.model_validate(item)
        if isinstance(item, dict)
        else RuleProblem(message=str(item))
        for item in detail
    ]


@router.get("", response_model=RulesPublic)
def list_rules(
    store: RuleStoreDep,
    _user: RulesReader,
    q: Annotated[str | None, Query(max_length=200, description="title, text, id")] = None,
    level: Annotated[
        str | None, Query(pattern="^(informational|low|medium|high|critical)$")
    ] = None,
    tactic: Annotated[str | None, Query(pattern="^[a-z_-]{3,64}$")] = None,
    enabled: bool | None = None,
    kind: RuleKind | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=9_500)] = 0,
) -> RulesPublic:
    """The latest version of each rule, by title, filtered."""
    query = RuleQuery(
        text=q, level=level, tactic=tactic.replace("-", "_") if tactic else None,
        enabled=enabled, kind=kind, limit=limit, offset=offset,
    )  # fmt: skip
    page = store.search(query)
    data = [RuleSummary.of(version) for version in page.versions]
    return RulesPublic(data=data, total=page.total, limit=limit, offset=offset)


@router.post("", response_model=RuleChange, status_code=201, responses=_INVALID)
def create_rule(
    body: RuleIn, request: Request, store: RuleStoreDep, settings: SettingsDep, user: RulesWriter
) -> RuleChange:
    """A new rule (its id from the YAML) as version 1; 409 if the id exists."""
    version, warnings = save(store, settings, body.yaml, body.comment, user, new=True)
    audit(request, "rule", version.rule_id, version=version.version, comment=body.comment)
    return RuleChange(rule=public(store, version), warnings=warnings)


@router.post("/validate", response_model=RuleValidation)
def validate_rule(
    body: RuleValidateIn, store: RuleStoreDep, settings: SettingsDep, _user: RulesReader
) -> RuleValidation:
    """Check a rule's YAML as ``POST /rules`` and ``PUT /rules/{id}`` do (parse, then load and
    compile with the rules it needs), without saving it: 200 with its errors and warnings, each
    with its line; a 422 only for a request outside the schema."""
    meta: RuleMeta | None = None
    with RuleWorkspace(settings.detector.placeholders) as workspace:
        try:
            meta = parsed(workspace, body.yaml, body.rule_id)
            workspace.add(context_of(meta, store, filters=False), meta.rule_id)
            warnings = checked(workspace)
        except HTTPException as refusal:  # api.rulework.rejected: the rule's errors
            if refusal.status_code != status.HTTP_422_UNPROCESSABLE_CONTENT:
                raise
            outline = RuleOutline.of(meta) if meta is not None else None
            return RuleValidation(
                valid=False, problems=_problems_of(refusal), warnings=[], rule=outline
            )
        warnings += _disabled_references(meta, workspace)
    problems = []
    if body.new and store.get(meta.rule_id) is not None:  # POST /rules would answer 409
        message = f"a rule with the id {meta.rule_id} exists: change that one, or give a new id"
        problems.append(RuleProblem(line=workspace.keys.get(("id",)), message=message))
    return RuleValidation(
        valid=not problems, problems=problems, warnings=warnings, rule=RuleOutline.of(meta)
    )


def _disabled_references(meta: RuleMeta, workspace: RuleWorkspace) -> list[RuleProblem]:
    """The warnings saving gives a correlation (``api.rulework.save``) that counts a disabled
    rule: the rule set will not load until that rule is enabled."""
    if meta.kind != "correlation":
        return []
    return [
        RuleProblem(
            message=f"it counts {version.kind} {version.rule_id}, which is disabled: the rule "
            "set will not load (publish refuses it) until that is enabled",
            severity="warning",
        )
        for version in workspace.versions
        if not version.enabled and version.kind != "filter"
    ]


@router.post("/test", response_model=RuleTestsPublic, responses=_INVALID)
def test_unsaved_rule(
    body: RuleTestUnsavedIn,
    store: RuleStoreDep,
    settings: SettingsDep,
    normalizer: NormalizerDep,
    _user: RulesReader,
) -> RuleTestsPublic:
    """Run example events through parsers and engine on a rule's YAML that is not saved."""
    return run_cases(store, settings, normalizer, body.yaml, body, None)


@router.post("/preview", response_model=BacktestPublic, responses=_INVALID)
def preview_unsaved_rule(
    body: PreviewUnsavedIn,
    store: RuleStoreDep,
    settings: SettingsDep,
    source: EventsDep,
    _user: RulesWriter,
    days: Days = 7,
    max_events: MaxEvents = EVENT_CAP,
) -> BacktestPublic:
    """Backtest a rule's YAML that is not saved over the last ``days`` days of events."""
    return preview(store, settings, source, body.yaml, None, days, max_events)


@router.post("/publish", response_model=RuleSetPublished, responses=_INVALID)
def publish_rules(
    request: Request, store: RuleStoreDep, publisher: PublisherDep, _user: RulesWriter
) -> RuleSetPublished:
    """Check and publish the enabled rule set (latest versions, with the pipelines) to
    soc.rules; 422 with its problems when a detector would refuse it."""
    with tempfile.TemporaryDirectory(prefix="socpipe-api-ruleset-") as scratch:
        folder = Path(scratch)
        kinds = write_ruleset(store.latest_all(enabled=True), folder)
        if not kinds["rule"]:
            # Detectors would take it and judge nothing: surely not what anybody meant.
            raise HTTPException(
                status.HTTP_409_CONFLICT, detail="no rule is enabled: nothing to publish"
            )
        try:
            result = publisher.publish(folder)
        except KafkaError as error:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"soc.rules cannot be written, try again shortly ({type(error).__name__})",
                headers={"Retry-After": "5"},
            ) from error
        errors = result.errors
    if errors:
        raise rejected([_set_problem(message) for message in errors])
    manifest = result.bundle.manifest
    audit(request, "ruleset", result.bundle.version, **dict(kinds))
    return RuleSetPublished(
        version=result.bundle.version,
        published=result.published,
        rules=kinds["rule"],
        correlations=kinds["correlation"],
        filters=kinds["filter"],
        files=len(manifest.get("files") or []),
        compiled=result.report.compiled,
        failed=result.report.failed,
        created=str(manifest.get("created", "")),
        publisher=str(manifest.get("publisher", "")),
    )


@router.get("/{rule_id}", response_model=RulePublic)
def read_rule(rule_id: RuleId, store: RuleStoreDep, _user: RulesReader) -> RulePublic:
    """A rule: its latest version's YAML and metadata, and its versions."""
    return public(store, found(store, rule_id))


@router.get("/{rule_id}/versions/{number}", response_model=RuleVersionPublic)
def read_rule_version(
    rule_id: RuleId,
    number: Annotated[int, PathParam(ge=1)],
    store: RuleStoreDep,
    _user: RulesReader,
) -> RuleVersionPublic:
    """One version of a rule."""
    version = store.get(rule_id, number)
    if version is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no version {number} of {rule_id}")
    return RuleVersionPublic.of(version)


@router.put("/{rule_id}", response_model=RuleChange, responses=_INVALID)
def put_rule(
    rule_id: RuleId,
    body: RuleIn,
    request: Request,
    store: RuleStoreDep,
    settings: SettingsDep,
    user: RulesWriter,
) -> RuleChange:
    """Create or update a rule from its YAML (whose id must be the path's): a new version."""
    version, warnings = save(store, settings, body.yaml, body.comment, user, rule_id=rule_id)
    audit(request, "rule", rule_id, version=version.version, comment=body.comment)
    return RuleChange(rule=public(store, version), warnings=warnings)


@router.post("/{rule_id}/enable", response_model=RulePublic)
def enable_rule(
    rule_id: RuleId,
    request: Request,
    store: RuleStoreDep,
    user: RulesWriter,
    body: Annotated[RuleFlagIn | None, Body()] = None,
) -> RulePublic:
    """Enable a rule (a new version, unless it is enabled already)."""
    version = flag(store, rule_id, True, body.comment if body else "", user)
    audit(request, "rule", rule_id, version=version.version, enabled=True)
    return public(store, version)


@router.post("/{rule_id}/disable", response_model=RulePublic)
def disable_rule(
    rule_id: RuleId,
    request: Request,
    store: RuleStoreDep,
    user: RulesWriter,
    body: Annotated[RuleFlagIn | None, Body()] = None,
) -> RulePublic:
    """Disable a rule (a new version, unless it is disabled already)."""
    version = flag(store, rule_id, False, body.comment if body else "", user)
    audit(request, "rule", rule_id, version=version.version, enabled=False)
    return public(store, version)


@router.post("/{rule_id}/test", response_model=RuleTestsPublic, responses=_INVALID)
def test_rule(
    rule_id: RuleId,
    body: RuleTestIn,
    store: RuleStoreDep,
    settings: SettingsDep,
    normalizer: NormalizerDep,
    _user: RulesReader,
) -> RuleTestsPublic:
    """Run example events through parsers and engine on the saved rule."""
    return run_cases(store, settings, normalizer, found(store, rule_id).yaml, body, rule_id)


@router.post("/{rule_id}/preview", response_model=BacktestPublic, responses=_INVALID)
def preview_rule(
    rule_id: RuleId,
    store: RuleStoreDep,
    settings: SettingsDep,
    source: EventsDep,
    _user: RulesWriter,
    days: Days = 7,
    max_events: MaxEvents = EVENT_CAP,
    body: Annotated[PreviewIn | None, Body()] = None,
) -> BacktestPublic:
    """Backtest the saved rule (or an unsaved version of it, same id) over the last ``days``
    days of events: matches, and the alerts they would have made."""
    text = body.yaml if body is not None and body.yaml else found(store, rule_id).yaml
    return preview(store, settings, source, text, rule_id, days, max_events)
