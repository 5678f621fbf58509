"""Compile a (pipeline-processed) pySigma rule into a fast Python matcher.

pySigma parses the rule and its processing pipeline renames its fields; this module compiles
what results. :func:`compile_rule` reads each condition's tree
(``rule.detection.parsed_condition[i].parse()``: ``ConditionAND``/``OR``/``NOT`` over
``ConditionFieldEqualsValueExpression`` and, for keywords, ``ConditionValueExpression``; pySigma
has already expanded ``1 of``/``all of``/``them``, ``all`` and ``neq``), turns it into a small
tree of its own, simplifies it (one field lookup for all values ORed on a field, cheap tests
first), and closes it over into one ``matches(event)`` function. Several conditions in a rule's
list are ORed.

It also derives :attr:`CompiledRule.required_literals`, for a prefilter that skips rules whose
literals are absent from an event: see :class:`LiteralGroup`.

Errors: every failure is a :class:`SigmaCompileError` naming the rule's file and a
:class:`~detectors.sigma.values.FailureReason`; compilation never defers an error to match time,
and ``matches`` never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaLogSource, SigmaRule, SigmaRuleBase

from detectors.sigma.fields import field_getter, keyword_texts
from detectors.sigma.values import (
    CidrTest,
    FailureReason,
    FieldRefTest,
    PresenceTest,
    ScalarTest,
    TextPattern,
    ValueCompileError,
    ValueTest,
    compile_value,
    field_predicate,
    fieldref_predicate,
    keyword_predicate,
)

Matcher = Callable[[Mapping[str, Any]], bool]

KEYWORDS: Final = None
"""The "field" of a :class:`LiteralGroup` alternative that stands for keyword search: the
literal is in ``event.original`` or ``message`` (see ``fields.keyword_texts``)."""


class SigmaCompileError(Exception):
    """A rule the matcher cannot compile: where it is, why (``reason``), and what was wrong."""

    def __init__(
        self,
        reason: FailureReason,
        message: str,
        *,
        path: Path | None = None,
        rule_id: str | None = None,
        title: str = "",
    ) -> None:
        self.reason = reason
        self.message = message
        self.path = path
        self.rule_id = rule_id
        self.title = title
        where = str(path) if path is not None else f"rule {rule_id or title or '<unnamed>'}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class LogSource:
    """The rule's log source, as the rule wrote it (pipelines turn it into conditions)."""

    product: str | None = None
    category: str | None = None
    service: str | None = None


@dataclass(frozen=True, slots=True)
class LiteralGroup:
    """A disjunction a matching event satisfies: some ``literal`` is in some text of ``field``.

    ``alternatives`` pairs a field (a dotted path, or :data:`KEYWORDS` for keyword search) with
    literals, casefolded (``str.casefold``, which is ``str.lower`` for ASCII). "In" means: a
    substring of the casefolded text of one of the field's values, as
    :func:`~detectors.sigma.fields.field_texts` gives them (numbers in decimal, booleans as
    ``true``/``false``; for keywords :func:`~detectors.sigma.fields.keyword_texts`).
    """

    alternatives: tuple[tuple[str | None, frozenset[str]], ...]

    @property
    def literals(self) -> frozenset[str]:
        """Every literal of the group, whatever its field."""
        return frozenset(literal for _, literals in self.alternatives for literal in literals)

    def satisfied_by(self, texts_of: Callable[[str | None], Iterable[str]]) -> bool:
        """Whether a literal is in a text, given a field's casefolded texts by ``texts_of``."""
        for name, literals in self.alternatives:
            for text in texts_of(name):
                if any(literal in text for literal in literals):
                    return True
        return False


@dataclass(frozen=True, slots=True)
class NumberGroup:
    """A field every matching event has a value of that equals one of ``numbers``.

    "Equals" as the rule's numeric test has it: :func:`~detectors.sigma.values.as_number` of a
    value (of each element of a list) is one of them (``4688``, ``"4688"`` and ``4688.0`` alike).
    """

    field: str
    numbers: frozenset[int | float]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """A Sigma rule compiled into a matcher; ``matches(event)`` is the whole of its logic.

    ``required_literals`` is a conjunction of :class:`LiteralGroup`: every event the rule matches
    satisfies each group (an empty tuple promises nothing). NOT subtrees, regexes, numbers and
    other non-literal tests contribute nothing, so the promise is sound, not complete.
    ``required_numbers`` likewise promises numeric equalities the whole condition ANDs (the
    ``EventID`` of most Windows rules).
    """

    id: str | None
    title: str
    level: str | None
    tags: tuple[str, ...]
    logsource: LogSource
    matches: Matcher = field(repr=False)
    required_literals: tuple[LiteralGroup, ...] = ()
    path: Path | None = None
    required_numbers: tuple[NumberGroup, ...] = ()


@dataclass(frozen=True, slots=True)
class CompileReport:
    """What :func:`compile_rules` made of a collection."""

    compiled: tuple[CompiledRule, ...]
    failures: tuple[SigmaCompileError, ...]
    skipped: tuple[SigmaRuleBase, ...]  # correlation rules and filters: not per-event rules


def compile_rule(rule: SigmaRule, *, logsource: SigmaLogSource | None = None) -> CompiledRule:
    """Compile one (pipeline-processed) Sigma rule; raises :class:`SigmaCompileError`.

    ``logsource``: the log source to report, when the pipeline changed the rule's own (pySigma's
    Sysmon pipeline adds ``service: sysmon``); by default the rule's, as it is now.
    """
    path = rule.source.path if rule.source is not None else None
    rule_id = str(rule.id) if rule.id is not None else None
    title = str(getattr(rule, "title", "") or "")

    def fail(reason: FailureReason, message: str) -> SigmaCompileError:
        return SigmaCompileError(reason, message, path=path, rule_id=rule_id, title=title)

    if not isinstance(rule, SigmaRule):
        kind = getattr(rule, "type", None) or type(rule).__name__
        raise fail(FailureReason.NOT_A_DETECTION_RULE, f"{kind} rules are not matched per event")
    if rule.errors:
        raise fail(FailureReason.INVALID_RULE, str(rule.errors[0]))
    branches: list[_Node] = []
    try:
        for condition in rule.detection.parsed_condition:
            tree = condition.parse()
            if tree is None:
                raise fail(
                    FailureReason.INVALID_CONDITION,
                    f"condition {condition.condition!r} is empty after processing",
                )
            branches.append(_tree(tree))
    except ValueCompileError as error:
        raise fail(error.reason, error.message) from None
    except SigmaError as problem:  # another name: compiled (mypyc), one name has one type
        raise fail(FailureReason.INVALID_CONDITION, str(problem)) from None
    if not branches:
        raise fail(FailureReason.INVALID_CONDITION, "the rule has no condition")
    root = _simplify(branches[0] if len(branches) == 1 else _Or(branches))
    try:
        matches = _matcher(root)
    except ValueCompileError as error:
        raise fail(error.reason, error.message) from None
    source = logsource if logsource is not None else rule.logsource
    return CompiledRule(
        id=rule_id,
        title=title,
        level=str(rule.level) if rule.level is not None else None,
        tags=tuple(str(tag) for tag in rule.tags),
        logsource=LogSource(source.product, source.category, source.service),
        matches=matches,
        required_literals=_required(root),
        path=path,
        required_numbers=_required_numbers(root),
    )


def compile_rules(rules: Iterable[SigmaRuleBase]) -> CompileReport:
    """Compile every detection rule; collect failures; skip correlation rules and filters."""
    compiled: list[CompiledRule] = []
    failures: list[SigmaCompileError] = []
    skipped: list[SigmaRuleBase] = []
    for rule in rules:
        if not isinstance(rule, SigmaRule):
            skipped.append(rule)
            continue
        try:
            compiled.append(compile_rule(rule))
        except SigmaCompileError as error:
            failures.append(error)
    return CompileReport(tuple(compiled), tuple(failures), tuple(skipped))


# --- the rule's own tree -----------------------------------------------------------------------
# Plain classes: built once per rule at compile time, never touched when matching.


class _Node:
    cost: int = 1


class _Field(_Node):
    """The field passes any of ``tests``."""

    def __init__(self, name: str, tests: list[ValueTest]) -> None:
        self.name = name
        self.tests = tests
        self.cost = 1 + sum(test.cost for test in tests[:8])


class _FieldAll(_Node):
    """The field passes every one of ``groups`` (each an OR of tests); fetched once."""

    def __init__(self, name: str, groups: list[_Field]) -> None:
        self.name = name
        self.groups = groups
        self.cost = sum(group.cost for group in groups)


class _Keywords(_Node):
    """A keyword text passes any of ``tests``."""

    def __init__(self, tests: list[ValueTest]) -> None:
        self.tests = tests
        self.cost = 20 + sum(test.cost for test in tests[:8])


class _And(_Node):
    def __init__(self, children: list[_Node]) -> None:
        self.children = children
        self.cost = sum(child.cost for child in children)


class _Or(_Node):
    def __init__(self, children: list[_Node]) -> None:
        self.children = children
        self.cost = sum(child.cost for child in children)


class _Not(_Node):
    def __init__(self, child: _Node) -> None:
        self.child = child
        self.cost = child.cost


def _tree(node: object) -> _Node:
    """Our tree from pySigma's condition tree (values compiled on the way)."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _Field(node.field, compile_value(node.value))
    if isinstance(node, ConditionValueExpression):
        return _Keywords(compile_value(node.value, keyword=True))
    if isinstance(node, ConditionAND | ConditionOR | ConditionNOT):
        children = [_tree(arg) for arg in node.args if arg is not None]
        if not children:
            raise ValueCompileError(
                FailureReason.INVALID_CONDITION, "an operator lost its operands"
            )
        if isinstance(node, ConditionNOT):
            return _Not(children[0])
        if len(children) == 1:
            return children[0]
        return _And(children) if isinstance(node, ConditionAND) else _Or(children)
    raise ValueCompileError(
        FailureReason.INVALID_CONDITION, f"unexpected condition element {type(node).__name__}"
    )


def _simplify(node: _Node) -> _Node:
    """Flatten nested AND/OR, fuse an OR's tests of one field, fetch an AND's field once."""
    if isinstance(node, _Not):
        child = _simplify(node.child)
        return child.child if isinstance(child, _Not) else _Not(child)
    if isinstance(node, _Or):
        flat: list[_Node] = []
        for child in map(_simplify, node.children):
            flat.extend(child.children if isinstance(child, _Or) else [child])
        fields: dict[str, _Field] = {}
        keywords: _Keywords | None = None
        others: list[_Node] = []
        for child in flat:
            if isinstance(child, _Field):
                if child.name in fields:
                    fields[child.name] = _Field(child.name, fields[child.name].tests + child.tests)
                else:
                    fields[child.name] = child
            elif isinstance(child, _Keywords):
                keywords = child if keywords is None else _Keywords(keywords.tests + child.tests)
            else:
                others.append(child)
        merged: list[_Node] = [*fields.values(), *([keywords] if keywords else []), *others]
        return merged[0] if len(merged) == 1 else _Or(merged)
    if isinstance(node, _And):
        flat = []
        for child in map(_simplify, node.children):
            flat.extend(child.children if isinstance(child, _And) else [child])
        by_field: dict[str, list[_Field]] = {}
        rest: list[_Node] = []
        for child in flat:
            if isinstance(child, _Field) and not _has_fieldref(child):
                by_field.setdefault(child.name, []).append(child)
            else:
                rest.append(child)
        grouped: list[_Node] = [
            groups[0] if len(groups) == 1 else _FieldAll(name, groups)
            for name, groups in by_field.items()
        ]
        children = grouped + rest
        return children[0] if len(children) == 1 else _And(children)
    return node


def _has_fieldref(node: _Field) -> bool:
    return any(isinstance(test, FieldRefTest) for test in node.tests)


# --- closures ----------------------------------------------------------------------------------


def _matcher(node: _Node) -> Matcher:
    """The closure that evaluates ``node`` on an event; cheaper children are tried first."""
    if isinstance(node, _Field):
        return _field_matcher(node)
    if isinstance(node, _FieldAll):
        get = field_getter(node.name)
        checks = tuple(
            _value_predicate(group) for group in sorted(node.groups, key=lambda g: g.cost)
        )

        def field_all(event: Mapping[str, Any]) -> bool:
            value = get(event)
            for check in checks:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
                if not check(value):
                    return False
            return True

        return field_all
    if isinstance(node, _Keywords):
        scalar_tests: list[TextPattern | ScalarTest | CidrTest] = []
        for test in node.tests:
            if isinstance(test, PresenceTest | FieldRefTest):
                raise ValueCompileError(
                    FailureReason.UNSUPPORTED_VALUE, f"a keyword cannot be a {type(test).__name__}"
                )
            scalar_tests.append(test)
        on_texts = keyword_predicate(scalar_tests)
        return lambda event: on_texts(keyword_texts(event))
    if isinstance(node, _Not):
        inner = _matcher(node.child)
        return lambda event: not inner(event)
    if isinstance(node, _And | _Or):
        children = [_matcher(child) for child in sorted(node.children, key=lambda c: c.cost)]
        return _all_of(children) if isinstance(node, _And) else _any_of(children)
    raise ValueCompileError(FailureReason.INVALID_CONDITION, f"unknown node {type(node).__name__}")


def _value_predicate(node: _Field) -> Callable[[Any], bool]:
    return field_predicate([test for test in node.tests if not isinstance(test, FieldRefTest)])


def _field_matcher(node: _Field) -> Matcher:
    get = field_getter(node.name)
    refs = tuple(fieldref_predicate(t) for t in node.tests if isinstance(t, FieldRefTest))
    if len(refs) == len(node.tests):
        (first, *rest) = refs

        def only_refs(event: Mapping[str, Any]) -> bool:
            value = get(event)
            return first(event, value) or any(ref(event, value) for ref in rest)

        return only_refs
    check = _value_predicate(node)
    if not refs:
        return lambda event: check(get(event))

    def with_refs(event: Mapping[str, Any]) -> bool:
        value = get(event)
        return check(value) or any(ref(event, value) for ref in refs)

    return with_refs


def _all_of(matchers: Sequence[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda event: first(event) and second(event)
    fixed = tuple(matchers)

    def all_of(event: Mapping[str, Any]) -> bool:
        for matcher in fixed:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
            if not matcher(event):
                return False
        return True

    return all_of


def _any_of(matchers: Sequence[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda event: first(event) or second(event)
    fixed = tuple(matchers)

    def any_of(event: Mapping[str, Any]) -> bool:
        for matcher in fixed:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
            if matcher(event):
                return True
        return False

    return any_of


# --- required literals -------------------------------------------------------------------------
# A group here is a frozenset of (field, literal) pairs: at least one must hold.

_Group = frozenset[tuple[str | None, str]]


def _required(root: _Node) -> tuple[LiteralGroup, ...]:
    groups = _groups(root)
    # A group that contains another is implied by it: keep the smaller.
    unique = sorted(set(groups), key=len)
    kept: list[_Group] = []
    for group in unique:
        if not any(other <= group for other in kept):
            kept.append(group)
    return tuple(_literal_group(group) for group in kept)


def _required_numbers(root: _Node) -> tuple[NumberGroup, ...]:
    """Numeric equalities the whole condition ANDs: a field whose every test is ``= n``."""
    conjuncts = root.children if isinstance(root, _And) else [root]
    groups = []
    fields = [
        child
        for node in conjuncts
        for child in (node.groups if isinstance(node, _FieldAll) else [node])
        if isinstance(child, _Field) and child.tests
    ]
    for node in fields:
        numbers = [test.number if isinstance(test, ScalarTest) else None for test in node.tests]
        if all(number is not None for number in numbers):
            groups.append(NumberGroup(node.name, frozenset(n for n in numbers if n is not None)))
    return tuple(groups)


def _literal_group(group: _Group) -> LiteralGroup:
    by_field: dict[str | None, set[str]] = {}
    for name, literal in group:
        by_field.setdefault(name, set()).add(literal)
    ordered = sorted(by_field.items(), key=lambda item: (item[0] is not None, item[0] or ""))
    return LiteralGroup(tuple((name, frozenset(literals)) for name, literals in ordered))


def _groups(node: _Node) -> list[_Group]:
    """Groups every event matching ``node`` satisfies (AND of ORs); [] promises nothing."""
    if isinstance(node, _Field):
        group = _tests_group(node.name, node.tests)
        return [group] if group else []
    if isinstance(node, _Keywords):
        group = _tests_group(KEYWORDS, node.tests)
        return [group] if group else []
    if isinstance(node, _FieldAll):
        return [group for child in node.groups for group in _groups(child)]
    if isinstance(node, _And):
        return [group for child in node.children for group in _groups(child)]
    if isinstance(node, _Or):
        union: set[tuple[str | None, str]] = set()
        for child in node.children:
            options = _groups(child)
            if not options:
                return []  # this branch can match without any literal
            union |= _best(options)
        return [frozenset(union)]
    return []  # NOT: a literal's absence is no literal


def _tests_group(name: str | None, tests: Sequence[ValueTest]) -> _Group | None:
    pairs = set()
    for test in tests:
        literal = test.literal() if isinstance(test, TextPattern) else None
        if not literal:
            return None  # a value without a literal can match anything
        pairs.add((name, literal))
    return frozenset(pairs)


def _best(options: Sequence[_Group]) -> _Group:
    """The most selective group: longest shortest literal, then fewest alternatives."""
    return max(options, key=lambda group: (min(len(lit) for _, lit in group), -len(group)))
