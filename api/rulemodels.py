"""The models of ``/rules`` (and the backtest ``/exceptions`` previews with): what a rule
author sends, what the API answers. Bounded: a rule's YAML up to ``MAX_YAML_BYTES``, a test run
up to 100 cases."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.backtest import Scan
from api.rulecheck import MAX_YAML_BYTES, RuleProblem
from api.rulestore import RULE_ID_PATTERN, RuleKind, RuleMeta, RuleVersion


class FieldError(BaseModel):
    """A request that does not fit its schema (FastAPI's own 422): where, and what."""

    loc: list[str | int]
    msg: str
    type: str


class RuleProblems(BaseModel):
    """The body of a 422: a rule's problems, each with its line, or the request's field
    errors."""

    detail: list[RuleProblem | FieldError]


class RuleIn(BaseModel):
    """A rule's YAML (one Sigma rule, correlation or filter) and why it changes."""

    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(min_length=1, max_length=MAX_YAML_BYTES)
    comment: str = Field(default="", max_length=2000)


class RuleFlagIn(BaseModel):
    """Why a rule is enabled or disabled."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class RuleSummary(BaseModel):
    """A rule as listings show it: its latest version."""

    id: str
    title: str
    kind: RuleKind
    level: str | None
    status: str | None
    logsource: dict[str, str]
    tags: list[str]
    tactics: list[str]
    enabled: bool
    version: int
    author: str
    created: AwareDatetime

    @classmethod
    def fields_of(cls, version: RuleVersion) -> dict[str, Any]:
        """This model's fields from a stored version."""
        return {
            "id": version.rule_id,
            **version.model_dump(
                include={"title", "kind", "level", "status", "logsource", "tags", "tactics",
                         "enabled", "version", "author", "created"}
            ),
        }  # fmt: skip

    @classmethod
    def of(cls, version: RuleVersion) -> RuleSummary:
        """The summary of a stored version."""
        return cls(**cls.fields_of(version))


class RulesPublic(BaseModel):
    """A page of rules and how many matched."""

    data: list[RuleSummary]
    total: int
    limit: int
    offset: int


class RuleVersionSummary(BaseModel):
    """One version in a rule's history."""

    version: int
    enabled: bool
    author: str
    created: AwareDatetime
    comment: str


class RuleVersionPublic(RuleSummary):
    """One version of a rule, whole: its YAML and metadata."""

    yaml: str
    name: str | None
    description: str | None
    techniques: list[str]
    references: list[str]  # a correlation's rules
    targets: list[str]  # a filter's rules ("*": every rule of its log source)
    agencies: list[str]  # the agencies a filter is confined to
    comment: str
    origin: str

    @classmethod
    def of(cls, version: RuleVersion) -> RuleVersionPublic:
        """The public form of a stored version."""
        extra = version.model_dump(
            include={"yaml", "name", "description", "techniques", "references", "targets",
                     "agencies", "comment", "origin"}
        )  # fmt: skip
        return cls(**RuleSummary.fields_of(version), **extra)


class RulePublic(RuleVersionPublic):
    """A rule: its latest version whole, and its history (newest first)."""

    versions: list[RuleVersionSummary]
    versions_total: int


class RuleChange(BaseModel):
    """A rule after a change, and the warnings its check gave (it was saved)."""

    rule: RulePublic
    warnings: list[RuleProblem] = []
    published: bool = False  # changes take effect at POST /rules/publish


class StreamItem(BaseModel):
    """One event of a correlation case's stream (as in a tests file)."""

    model_config = ConfigDict(extra="forbid")

    format: str | None = Field(default=None, max_length=64)
    raw: str | dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    agency: str | None = Field(default=None, max_length=128)


class RuleTestCase(StreamItem):
    """An example event (``raw`` + ``format``, or an ECS ``event``) or a ``stream`` of them,
    and whether the rule must match: a case of a ``<rule>.tests.yml`` file."""

    name: str = Field(min_length=1, max_length=200)
    match: bool
    stream: list[StreamItem] | None = Field(default=None, min_length=1, max_length=1000)
    rule: str | None = Field(default=None, max_length=256)
    count: int | None = Field(default=None, ge=1)


class RuleTestIn(BaseModel):
    """Cases to run on a saved rule; ``filters``: with the enabled filters that apply to it."""

    model_config = ConfigDict(extra="forbid")

    cases: list[RuleTestCase] = Field(min_length=1, max_length=100)
    filters: bool = True


class RuleTestUnsavedIn(RuleTestIn):
    """Cases to run on a rule's YAML that is not saved."""

    yaml: str = Field(min_length=1, max_length=MAX_YAML_BYTES)


class RuleTestResult(BaseModel):
    """One case: matched or not, whether that is what it expected, and why."""

    case: int
    name: str
    rule: str
    expected: bool
    matched: bool
    passed: bool
    hits: int | None = None  # correlation cases: the hits over the stream
    count: int | None = None
    why: str
    details: list[str] = []


class RuleTestsPublic(BaseModel):
    """A test run: each case's result, the problems of the cases, the filters applied."""

    passed: int
    failed: int
    results: list[RuleTestResult]
    problems: list[RuleProblem]
    warnings: list[RuleProblem]
    filters: list[str]


class PreviewIn(BaseModel):
    """An unsaved version of the rule to backtest instead of the saved one."""

    model_config = ConfigDict(extra="forbid")

    yaml: str | None = Field(default=None, min_length=1, max_length=MAX_YAML_BYTES)


class PreviewUnsavedIn(BaseModel):
    """A rule's YAML (not saved) to backtest."""

    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(min_length=1, max_length=MAX_YAML_BYTES)


class ScanPublic(BaseModel):
    """The events a backtest read: the period, how many it held, how many were read."""

    since: AwareDatetime
    until: AwareDatetime
    days: int
    events_in_period: int
    events_scanned: int
    event_cap: int
    capped: bool  # the cap left the period's older events unread
    oldest_scanned: AwareDatetime | None

    @classmethod
    def of(cls, scan: Scan, days: int) -> ScanPublic:
        """The public form of a scan."""
        return cls(
            since=scan.since,
            until=scan.until,
            days=days,
            events_in_period=scan.events_in_period,
            events_scanned=scan.events_scanned,
            event_cap=scan.cap,
            capped=scan.capped,
            oldest_scanned=scan.oldest_scanned,
        )


class AgencyTally(BaseModel):
    """Matches and alerts of one agency."""

    agency: str
    matches: int
    alerts: int


class CorrelationTally(BaseModel):
    """For a correlation: what its rules matched, replayed through the correlation engine."""

    base_matches: int
    hits: int


class SuppressionTally(BaseModel):
    """For a filter: the target rules' matches and alerts without it, and what it suppresses."""

    rule_ids: list[str]
    matches_without: int
    alerts_without: int
    suppressed_matches: int
    suppressed_alerts: int
    suppressed_sample_event_ids: list[str]


class BacktestPublic(BaseModel):
    """What a rule would have raised over the period: matches, and alerts as alerting folds
    them (policies, else rule + agency + host, per window)."""

    rule_id: str
    title: str
    kind: RuleKind
    scan: ScanPublic
    matches: int
    alerts: int
    alert_window_s: int
    by_agency: list[AgencyTally]
    sample_event_ids: list[str]
    unreadable_events: int  # matched, but not valid ECS events: not counted
    filters_applied: list[str]
    correlation: CorrelationTally | None = None
    suppression: SuppressionTally | None = None
    note: str


class RuleSetPublished(BaseModel):
    """The rule set put in force on soc.rules."""

    version: str
    published: bool
    rules: int
    correlations: int
    filters: int
    files: int
    compiled: int
    failed: int  # rules left out (placeholders without values)
    created: str
    publisher: str


class RuleValidateIn(BaseModel):
    """A rule's YAML to check without saving it, and what it is to be saved as."""

    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(min_length=1, max_length=MAX_YAML_BYTES)
    rule_id: str | None = Field(
        default=None,
        pattern=RULE_ID_PATTERN,
        description="check it as a new version of this rule (PUT /rules/{id}): its id must be this",
    )
    new: bool = Field(
        default=False,
        strict=True,  # true or false, not 0 or "yes"
        description="check it as a new rule (POST /rules): its id must not exist",
    )


class RuleOutline(BaseModel):
    """What a checked YAML says of its rule (it is not saved: no version, author, date)."""

    id: str
    title: str
    kind: RuleKind
    name: str | None
    description: str | None
    level: str | None
    status: str | None
    logsource: dict[str, str]
    tags: list[str]
    tactics: list[str]
    techniques: list[str]
    references: list[str]  # a correlation's rules
    targets: list[str]  # a filter's rules ("*": every rule of its log source)
    agencies: list[str]  # the agencies a filter is confined to

    @classmethod
    def of(cls, meta: RuleMeta) -> RuleOutline:
        """The outline of a parsed rule."""
        return cls(id=meta.rule_id, **meta.model_dump(exclude={"rule_id"}))


class RuleValidation(BaseModel):
    """A rule's YAML checked as saving checks it: ``valid`` when it has no error; its errors
    (``problems``) and ``warnings``, each with its line when known; and what it says of the
    rule once it parses (null when it does not)."""

    valid: bool
    problems: list[RuleProblem]
    warnings: list[RuleProblem]
    rule: RuleOutline | None


__all__ = [
    "AgencyTally",
    "BacktestPublic",
    "CorrelationTally",
    "FieldError",
    "PreviewIn",
    "PreviewUnsavedIn",
    "RuleChange",
    "RuleFlagIn",
    "RuleIn",
    "RuleOutline",
    "RuleProblems",
    "RulePublic",
    "RuleSetPublished",
    "RuleSummary",
    "RuleTestCase",
    "RuleTestIn",
    "RuleTestResult",
    "RuleTestUnsavedIn",
    "RuleTestsPublic",
    "RuleValidateIn",
    "RuleValidation",
    "RuleVersionPublic",
    "RuleVersionSummary",
    "RulesPublic",
    "ScanPublic",
    "StreamItem",
    "SuppressionTally",
]
