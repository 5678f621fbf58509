"""Correlation rules compiled for :mod:`detectors.sigma.correlation`: one :class:`CorrelationSpec`
per rule (how to read its events' groups and values, window them and decide), the records the
engine gives (:class:`CorrelationHit`), and the linking of chained correlations.

The semantics are described in :mod:`detectors.sigma.correlation`'s docstring.
"""

from __future__ import annotations

import hashlib
import math
import operator
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson
from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionItem,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.rule import SigmaRule

from detectors.sigma.correlation_state import (
    DistinctState,
    Kind,
    Shape,
    State,
    hashable,
    plain,
    to_datetime,
)
from detectors.sigma.fields import MISSING, field_getter, iter_scalars
from detectors.sigma.loader import Problem, ProblemKind
from detectors.sigma.new_value import options_of
from detectors.sigma.values import as_number

_HIT_NAMESPACE: Final = uuid.UUID("6f1d8f4e-2b7a-4f0e-9d1c-5a3e8b7c9d20")
_Op = SigmaCorrelationConditionOperator
_Type = SigmaCorrelationType
_TESTS: Final[dict[_Op, Callable[[Any, Any], bool]]] = dict(
    zip(
        _Op,
        (operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne),
        strict=True,
    )
)
_KINDS: Final[dict[_Type, Kind]] = {
    _Type.EVENT_COUNT: "count",
    _Type.VALUE_COUNT: "distinct",
    _Type.TEMPORAL: "distinct",
    _Type.TEMPORAL_ORDERED: "ordered",
    _Type.VALUE_SUM: "sum",
    _Type.VALUE_AVG: "avg",
    _Type.VALUE_MEDIAN: "percentile",
    _Type.VALUE_PERCENTILE: "percentile",
}
_TEMPORAL: Final = (_Type.TEMPORAL, _Type.TEMPORAL_ORDERED)
# Whose gt/gte more events only bring closer: decided on a sliding window as events come.
_GROWING: Final = ("count", "distinct", "ordered", "sum")
Group = tuple[Hashable, ...]
Expression = Callable[[frozenset[Hashable]], bool]


class CorrelationError(Exception):
    """A correlation the engine cannot run: which (file, line, id, title) and why."""

    def __init__(
        self, correlation: SigmaCorrelationRule, message: str, kind: ProblemKind = "rule"
    ) -> None:
        self.kind: ProblemKind = kind  # "reference": a rule it references is the trouble
        source = correlation.source
        self.path = Path(source.path) if source is not None and source.path else None
        self.line = source.line if source is not None else None
        self.rule_id = str(correlation.id) if correlation.id is not None else None
        self.title = str(correlation.title or "")
        self.message = message
        where = f"{self.path or '<no file>'}" + (f":{self.line}" if self.line else "")
        named = self.rule_id or correlation.name or "no id"
        super().__init__(f"{where}: correlation {self.title!r} ({named}): {message}")

    def problem(self) -> Problem:
        """The error as the loader reports problems."""
        path = self.path or Path("<no file>")
        return Problem(path, self.line, self.message, self.rule_id, self.title, kind=self.kind)


@dataclass(frozen=True, slots=True)
class CorrelationHit:
    """A correlation that fired: which, for which group, over which window, on which events.

    ``orjson.dumps(hit)`` gives its JSON (times as RFC 3339 text).
    """

    correlation_id: str | None
    key: str  # the correlation's rule_key (its id, else its name; may be empty)
    title: str
    level: str | None
    tags: tuple[str, ...]
    type: str
    group: dict[str, Any]  # group-by field (or alias) -> value
    window_start: datetime
    window_end: datetime
    value: int | float  # the count, distinct count, chain length, sum... that satisfied it
    event_ids: tuple[str, ...]  # of the last max_event_ids events, oldest first
    event_count: int  # exact
    rules: tuple[str, ...]  # keys of the referenced rules involved

    @property
    def id(self) -> str:
        """A stable id: the same correlation, group and window give the same id (replays)."""
        group = orjson.dumps(self.group, option=orjson.OPT_SORT_KEYS, default=str).decode()
        text = f"{self.key}|{self.title}|{group}|{self.window_start.isoformat()}|"
        return str(uuid.uuid5(_HIT_NAMESPACE, text + self.window_end.isoformat()))


def rule_key(rule: SigmaRule | SigmaCorrelationRule) -> str:
    """How a rule is known to the engine: its id, else its name (empty if it has neither)."""
    return str(rule.id) if rule.id is not None else str(rule.name or "")


class CorrelationSpec:
    """One correlation compiled: how to read its events, window them and decide."""

    def __init__(self, rule: SigmaCorrelationRule, max_ids: int, max_values: int) -> None:
        def fail(message: str) -> CorrelationError:
            return CorrelationError(rule, message)

        self.rule, self.key, self.fail = rule, rule_key(rule), fail
        kind = _KINDS.get(rule.type) if isinstance(rule.type, _Type) else None
        new_value = options_of(rule)
        kind = "new" if new_value is not None else kind
        if rule.errors or kind is None:
            raise fail(str(rule.errors[0]) if rule.errors else f"type {rule.type!r} unsupported")
        self.refs = list(rule.referenced_rules or rule.rules or [])
        self.members: list[SigmaRule | SigmaCorrelationRule] = []
        for ref in self.refs:
            target = getattr(ref, "rule", None)
            if not isinstance(target, SigmaRule | SigmaCorrelationRule):
                message = f"rule {ref.reference!r} is not resolved (load it with load_rules)"
                raise CorrelationError(rule, message, "reference")
            self.members.append(target)
        if not self.members:
            raise fail("the correlation references no rules")
        self.member_keys = tuple(rule_key(member) for member in self.members)
        aliases = {alias.alias: alias.mapping for alias in rule.aliases}
        self.group_names = tuple(rule.group_by or ())
        self.group_paths = [self._paths(self.group_names, aliases, i) for i in self._indexes]
        self.groupers = [tuple(map(field_getter, paths)) for paths in self.group_paths]
        self.span = int(rule.timespan.seconds) * 1_000_000
        self.expression: Expression | None = None
        self.value_paths: list[tuple[str, ...]] = []
        self.value_names: tuple[str, ...] = ()
        condition, rank = rule.condition, 50.0
        if isinstance(condition, SigmaExtendedCorrelationCondition):
            if rule.type is not _Type.TEMPORAL:
                raise fail("temporal_ordered defines no order over a boolean condition")
            self.expression, sliding = self._compile(condition.parsed)
            self.test, self.threshold, self.describe = operator.ge, 0, condition.expression
        else:
            self.test, self.threshold = _TESTS[condition.op], int(condition.count)
            self.describe = f"{condition.op.name} {condition.count}"
            sliding = condition.op in (_Op.GT, _Op.GTE) and kind in _GROWING
            if rule.type not in _TEMPORAL and rule.type is not _Type.EVENT_COUNT:
                fields = condition.fieldref
                names = (fields,) if isinstance(fields, str) else tuple(fields or ())
                self.value_names = names
                if not names or (kind not in ("distinct", "new") and len(names) != 1):
                    raise fail(f"{rule.type.name.lower()} aggregates one field, not {names!r}")
                self.value_paths = [self._paths(names, aliases, i) for i in self._indexes]
            if sliding and kind in ("count", "distinct") and self.threshold >= max_values:
                raise fail(f"threshold {self.threshold} not below max_values ({max_values})")
            if rule.type is _Type.VALUE_PERCENTILE:
                if condition.percentile is None or not 0 <= condition.percentile <= 100:
                    raise fail("value_percentile needs a percentile from 0 to 100")
                rank = float(condition.percentile)
        # new_value: the history a group needs (µs) and the members whose events fire
        self.learning, self.alert_on = 0, frozenset(self._indexes)
        if new_value is not None:
            self.learning, self.describe = new_value.learning_s * 1_000_000, "new value"
            if new_value.alert_on:
                self.alert_on = frozenset(self._index_of(ref) for ref in new_value.alert_on)
        self.valuers = [tuple(map(field_getter, paths)) for paths in self.value_paths]
        bounded = kind == "distinct" and not sliding and self.expression is None
        cap = self.threshold + 1 if bounded else max_values  # past it, lt/lte/eq/neq are known
        self.sliding, self.per_member = sliding, rule.type in _TEMPORAL
        self.shape = Shape(kind, sliding, self.span, len(self.members), max_ids, cap, rank)
        self.groups: dict[Group, State] = {}
        self.dependents: list[tuple[int, int]] = []  # outer correlations: (index, member)
        self.quiet, self.state_key = False, self.key
        parts = [rule.type.name, self.describe, self.span, sliding, rank, self.group_names]
        parts += [self.learning, sorted(self.alert_on)] if kind == "new" else []
        parts += [self.member_keys, self.group_paths, self.value_paths]
        self.fingerprint = hashlib.sha256(orjson.dumps(parts)).hexdigest()

    @property
    def _indexes(self) -> range:
        return range(len(self.members))

    def _index_of(self, reference: str) -> int:
        index = self._member(reference)
        if index is None:
            raise self.fail(f"{reference!r} is not among the referenced rules")
        return index

    def _member(self, reference: str) -> int | None:
        for index, (ref, member) in enumerate(zip(self.refs, self.members, strict=True)):
            if reference in (ref.reference, member.name, str(member.id)):
                return index
        return None

    def _paths(
        self, names: Iterable[str], aliases: Mapping[str, Mapping[Any, str]], member: int
    ) -> tuple[str, ...]:
        """The fields ``names`` are for events of the member rule, aliases resolved."""
        paths = []
        for name in names:
            path = name
            for ref, field in aliases.get(name, {}).items():
                index = self._member(ref.reference)
                if index is None:
                    raise self.fail(f"alias {name!r} names {ref.reference!r}, not referenced")
                path = field if index == member else path
            paths.append(path)
        return tuple(paths)

    def _compile(self, node: Any) -> tuple[Expression, bool]:
        """A boolean condition as a test of the set of rules seen, and whether it is monotone."""
        if isinstance(node, SigmaRuleReference):
            index = self._member(node.reference)
            if index is None:
                raise self.fail(f"the condition names {node.reference!r}, not referenced")
            return (lambda seen: index in seen), True
        if not isinstance(node, CorrelationConditionItem):
            raise self.fail(f"cannot read the condition's {type(node).__name__}")
        parts = [self._compile(arg) for arg in node.args]
        tests, monotone = [test for test, _ in parts], all(flag for _, flag in parts)
        if isinstance(node, CorrelationConditionNOT):
            return (lambda seen: not tests[0](seen)), False
        if isinstance(node, CorrelationConditionAND):
            return (lambda seen: all(test(seen) for test in tests)), monotone
        if isinstance(node, CorrelationConditionOR):
            return (lambda seen: any(test(seen) for test in tests)), monotone
        raise self.fail(f"cannot read the condition's {type(node).__name__}")

    def group_of(self, member: int, source: Mapping[str, Any]) -> Group:
        """The group of an event the member rule matched."""
        return tuple([hashable(getter(source)) for getter in self.groupers[member]])

    def items_of(self, member: int, source: Mapping[str, Any]) -> list[Any]:
        """value_count: the values (or combinations); else the finite numbers, of the field(s)."""
        getters = self.valuers[member]
        if len(getters) > 1:
            combination = tuple(hashable(getter(source)) for getter in getters)
            return [combination] if any(v is not None for v in combination) else []
        value = getters[0](source)
        if value is MISSING or value is None:
            return []
        values = iter_scalars(value) if type(value) is list or type(value) is tuple else (value,)
        if self.shape.kind in ("distinct", "new"):
            return [hashable(item) for item in values if item is not None]
        numbers = (as_number(item) for item in values)
        return [number for number in numbers if number is not None and math.isfinite(number)]

    def decide(self, state: State) -> int | float | None:
        """The value when the condition holds on ``state``, else None."""
        if self.expression is not None:
            assert isinstance(state, DistinctState)
            return state.value() if self.expression(state.keys()) else None
        value = state.value()
        return value if value is not None and self.test(value, self.threshold) else None

    def hit(
        self, group: Group, value: float, first: int, last: int, state: State, max_ids: int
    ) -> CorrelationHit:
        """The hit of ``state``'s window, from ``first`` to ``last`` (µs)."""
        entries, ids = state.made_of(), dict[str, None]()
        for entry in reversed(entries):
            ids.update(dict.fromkeys(reversed(entry[3])))
            if len(ids) >= max_ids:
                break
        rule = self.rule
        return CorrelationHit(
            str(rule.id) if rule.id is not None else None,
            self.key,
            str(rule.title or ""),
            str(rule.level) if rule.level else None,
            tuple(str(tag) for tag in rule.tags),
            rule.type.name.lower(),
            dict(zip(self.group_names, map(plain, group), strict=True)),
            to_datetime(first),
            to_datetime(last),
            value,
            tuple(reversed(list(ids)[:max_ids])),
            state.weight(),
            tuple(self.member_keys[m] for m in sorted({e[2] for e in entries})),
        )

    def new_hit(
        self, group: Group, item: Any, member: int, time: int, ids: tuple[str, ...], known: int
    ) -> CorrelationHit:
        """new_value: the hit of an event that brought ``item`` to ``group``, which knew
        ``known`` other values; its window is the history it was judged against."""
        named = dict(zip(self.group_names, map(plain, group), strict=True))
        parts = item if len(self.value_names) > 1 else (item,)
        named |= dict(zip(self.value_names, map(plain, parts), strict=True))
        rule = self.rule
        return CorrelationHit(
            str(rule.id) if rule.id is not None else None,
            self.key,
            str(rule.title or ""),
            str(rule.level) if rule.level else None,
            tuple(str(tag) for tag in rule.tags),
            "new_value",
            named,
            to_datetime(time - self.span),
            to_datetime(time),
            known,
            ids,
            1,
            (self.member_keys[member],),
        )


def compile_all(
    rules: list[SigmaCorrelationRule], max_ids: int, max_values: int, problems: list[Problem] | None
) -> list[CorrelationSpec]:
    """Compile each correlation and link chained ones; leave out (or raise for) what cannot run,
    which includes a correlation whose inner one is missing, cannot run, or refers back."""
    specs: dict[int, CorrelationSpec] = {}
    errors: dict[int, CorrelationError] = {}
    for index, rule in enumerate(rules):
        try:
            specs[index] = CorrelationSpec(rule, max_ids, max_values)
        except CorrelationError as error:
            errors[index] = error
    position = {id(rule): index for index, rule in enumerate(rules)}
    inner = {  # outer index -> [(inner index or -1 if not given, member)]
        index: [
            (position.get(id(t), -1), m)
            for m, t in enumerate(spec.members)
            if isinstance(t, SigmaCorrelationRule)
        ]
        for index, spec in specs.items()
    }
    ready = {index for index, links in inner.items() if not links}
    while True:  # runnable: its inner correlations are (a cycle never gets there)
        more = {
            i for i, links in inner.items() if i not in ready and all(t in ready for t, _ in links)
        }
        if not more:
            break
        ready |= more
    for index in sorted(set(specs) - ready):
        names = ", ".join(repr(specs[index].members[m].title) for _, m in inner[index])
        message = f"references correlations not given, that cannot run or refer back: {names}"
        errors[index] = CorrelationError(rules[index], message, "reference")
    if errors and problems is None:
        raise errors[min(errors)]
    if problems is not None:
        problems.extend(errors[index].problem() for index in sorted(errors))
    order = sorted(ready)
    renumber = {old: new for new, old in enumerate(order)}
    for index in order:
        for target, member in inner[index]:
            specs[target].dependents.append((renumber[index], member))
    seen: dict[str, int] = {}
    for index in order:  # snapshot keys must be unique: unnamed ones go by title and rank
        spec = specs[index]
        base = spec.key or f"title:{spec.rule.title}"
        seen[base] = seen.get(base, 0) + 1
        spec.state_key = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return [specs[index] for index in order]


__all__ = [
    "CorrelationError",
    "CorrelationHit",
    "CorrelationSpec",
    "Group",
    "compile_all",
    "rule_key",
]
