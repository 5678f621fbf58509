"""``/exceptions``: known-good activity a rule must no longer alert on, as Sigma filters.

An exception is a Sigma filter in the project's format (``rules/README.md``, "Filters") made
from a simple body: the rule, the agency (``organization.id``) or none for every agency, a few
field conditions (all must hold; a condition's values are alternatives) and the reason. Its YAML
is kept in the rule set as a filter (kind ``filter``, versioned like every rule), so it is
checked by the detectors' loader, published with the rules and applied as a detector applies
filters: to the rule, before the pipeline, so its fields are written as the rule writes them.

Creating one first previews it: how many of the rule's matches (and alerts) over the last days
of events it would have suppressed, by the backtest of ``/rules/{id}/preview``; with
``preview_only`` nothing is saved. ``DELETE`` disables it (a new version), nothing is erased.
Like every rule change, it takes effect at the next ``POST /rules/publish``.

Permissions: listing needs ``rules:read``; creating, previewing and disabling need
``exceptions:write`` (rule authors, admins).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.backtest import EVENT_CAP
from api.deps import ExceptionsWriter, RulesReader
from api.routes.rules import RuleId
from api.rulecheck import RuleProblem, RuleWorkspace, context_of
from api.ruledeps import EventsDep, RuleStoreDep, SettingsDep
from api.rulemodels import BacktestPublic, RuleProblems
from api.rulestore import RULE_ID_PATTERN, RuleQuery, RuleVersion
from api.rulework import audit, backtest, checked, flag, found, parsed, rejected, save
from socpipe.records import utcnow

router = APIRouter(prefix="/exceptions", tags=["exceptions"])

Operator = Literal["equals", "contains", "startswith", "endswith", "cidr"]
Value = Annotated[str, StringConstraints(min_length=1, max_length=512)]
_AGENCY = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_FIELD = r"^[A-Za-z_@][A-Za-z0-9_.@-]{0,127}$"
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "the exception has errors", "model": RuleProblems}
}


class ExceptionCondition(BaseModel):
    """A field (as the rule names it: ``User``, ``source.ip``), how to compare, and the values
    (any of them)."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(pattern=_FIELD)
    operator: Operator = "equals"
    values: list[Value] = Field(min_length=1, max_length=50)


class ExceptionCreate(BaseModel):
    """An exception to make (and preview) for one rule."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(pattern=RULE_ID_PATTERN)
    agency: str | None = Field(default=None, pattern=_AGENCY, description="none: every agency")
    conditions: list[ExceptionCondition] = Field(default_factory=list, max_length=10)
    reason: str = Field(min_length=3, max_length=2000)
    title: str | None = Field(default=None, min_length=3, max_length=200)
    preview_only: bool = False
    days: int = Field(default=7, ge=1, le=30, description="the preview's period")
    max_events: int = Field(default=EVENT_CAP, ge=1, le=EVENT_CAP)

    @model_validator(mode="after")
    def _scoped(self) -> ExceptionCreate:
        if not self.conditions and self.agency is None:
            raise ValueError("give an agency or at least one condition: else disable the rule")
        keys = [(c.field, c.operator) for c in self.conditions]
        keys += [("organization.id", "equals")] if self.agency else []
        if len(keys) != len(set(keys)):
            raise ValueError("a field and operator given twice: give them once with all values")
        return self


class ExceptionPublic(BaseModel):
    """An exception (a filter of the rule set): which rules, which agencies, why."""

    id: str
    title: str
    rule_ids: list[str]  # "*": every rule of its log source
    agencies: list[str]  # none: every agency
    reason: str | None
    conditions: list[ExceptionCondition] | None  # as made through this API (else see yaml)
    enabled: bool
    version: int
    author: str
    created: AwareDatetime
    origin: str

    @classmethod
    def of(cls, version: RuleVersion) -> ExceptionPublic:
        """The public form of a filter's version."""
        made = version.exception or {}
        return cls(
            id=version.rule_id,
            title=version.title,
            rule_ids=version.targets,
            agencies=version.agencies,
            reason=version.description,
            conditions=made.get("conditions"),
            enabled=version.enabled,
            version=version.version,
            author=version.author,
            created=version.created,
            origin=version.origin,
        )


class ExceptionsPublic(BaseModel):
    """A page of exceptions and how many matched."""

    data: list[ExceptionPublic]
    total: int
    limit: int
    offset: int


class ExceptionCreated(BaseModel):
    """The exception (unless ``preview_only``), its YAML, and its preview."""

    saved: bool
    exception: ExceptionPublic | None
    yaml: str
    preview: BacktestPublic
    warnings: list[RuleProblem]


def _sigma_value(value: str, operator: Operator) -> str:
    """The value as Sigma reads it literally: ``*`` and ``?`` are wildcards in Sigma, and a
    backslash escapes them, so all three are escaped (a network is not a string)."""
    if operator == "cidr":
        return value
    return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")


def exception_yaml(body: ExceptionCreate, rule: RuleVersion, author: str, filter_id: str) -> str:
    """The Sigma filter of an exception (``rules/README.md``, "Filters")."""
    selection: dict[str, Any] = {}
    if body.agency is not None:
        selection["organization.id"] = body.agency
    for condition in body.conditions:
        key = condition.field if condition.operator == "equals" else (
            f"{condition.field}|{condition.operator}"
        )  # fmt: skip
        values = [_sigma_value(value, condition.operator) for value in condition.values]
        selection[key] = values[0] if len(values) == 1 else values
    scope = f"agency {body.agency}" if body.agency else "every agency"
    title = body.title or f"Exception to {rule.title} ({scope})"
    document: dict[str, Any] = {
        "title": title[:200],
        "id": filter_id,
        "status": "stable",
        "description": body.reason,
        "author": author,
        "date": utcnow().date().isoformat(),
    }
    if rule.logsource:
        # A filter applies to rules within its log source: the rule's own.
        document["logsource"] = dict(rule.logsource)
    document["filter"] = {
        "rules": [rule.rule_id],
        "exception": selection,
        "condition": "not exception",
    }
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100)


@router.get("", response_model=ExceptionsPublic)
def list_exceptions(
    store: RuleStoreDep,
    _user: RulesReader,
    rule_id: Annotated[str | None, Query(pattern=RULE_ID_PATTERN)] = None,
    agency: Annotated[str | None, Query(pattern=_AGENCY)] = None,
    enabled: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=9_500)] = 0,
) -> ExceptionsPublic:
    """The exceptions (every filter of the rule set), for a rule or an agency if told."""
    query = RuleQuery(
        kind="filter", target=rule_id, agency=agency, enabled=enabled, limit=limit, offset=offset
    )
    page = store.search(query)
    data = [ExceptionPublic.of(version) for version in page.versions]
    return ExceptionsPublic(data=data, total=page.total, limit=limit, offset=offset)


@router.post("", response_model=ExceptionCreated, status_code=201, responses=_INVALID)
def create_exception(
    body: ExceptionCreate,
    request: Request,
    store: RuleStoreDep,
    settings: SettingsDep,
    source: EventsDep,
    user: ExceptionsWriter,
) -> ExceptionCreated:
    """Make an exception for a rule, preview what it would have suppressed over the last
    ``days`` days, and (unless ``preview_only``) add it to the rule set."""
    rule = found(store, body.rule_id)
    if rule.kind != "rule":
        message = (
            f"{body.rule_id} is a {rule.kind}: exceptions apply to per-event rules (for a "
            "correlation, make them for the rules it counts)"
        )
        raise rejected([RuleProblem(message=message)])
    text = exception_yaml(body, rule, user.name, str(uuid.uuid4()))
    with RuleWorkspace(settings.detector.placeholders) as workspace:
        meta = parsed(workspace, text)
        workspace.add(context_of(meta, store, filters=True), meta.rule_id)
        warnings = checked(workspace)
        preview = backtest(workspace, meta, settings, source, body.days, body.max_events)
    if body.preview_only:
        return ExceptionCreated(
            saved=False, exception=None, yaml=text, preview=preview, warnings=warnings
        )
    made = body.model_dump(exclude={"preview_only", "days", "max_events"})
    version, _ = save(store, settings, text, body.reason, user, new=True, exception=made)
    audit(request, "exception", version.rule_id, rule_id=body.rule_id, agency=body.agency)
    return ExceptionCreated(
        saved=True,
        exception=ExceptionPublic.of(version),
        yaml=text,
        preview=preview,
        warnings=warnings,
    )


@router.delete("/{exception_id}", response_model=ExceptionPublic)
def delete_exception(
    exception_id: RuleId, request: Request, store: RuleStoreDep, user: ExceptionsWriter
) -> ExceptionPublic:
    """Disable an exception: a new version, disabled; its history stays."""
    if found(store, exception_id).kind != "filter":
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no exception {exception_id}")
    version = flag(store, exception_id, False, "exception withdrawn", user)
    audit(request, "exception", exception_id, version=version.version, enabled=False)
    return ExceptionPublic.of(version)
