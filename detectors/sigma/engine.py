"""The Sigma engine: which compiled rules an event matches, at a cost that does not grow with
the number of rules.

Two indexes stand between an event and the rules' matchers:

1. **Log source.** Each rule is filed under its log source; ``LogsourceRouter`` names the log
   sources an event is of (by the same guards the pipeline put in the rules), so an event is
   never offered to rules of other sources.
2. **Literals.** Each rule promises, through ``required_literals``, groups of literal substrings
   of which one must appear in a field for it to match. The engine picks each rule's most
   selective group as its *anchor* and builds, per log source and field, one Aho–Corasick
   automaton (pyahocorasick) of all anchors' literals. An event's field texts run through the
   automaton once; only rules whose anchor fired, plus the few with no anchor, are evaluated.
   A rule without a literal anchor may have a numeric one (``EventID: 4624`` and nothing
   longer): such rules are looked up by the event's number in a dict.

``match_naive`` skips the literal index (it evaluates every rule of the event's log sources):
the reference the benchmark compares against, and a cross-check in tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import ahocorasick
import hyperscan
import orjson

from detectors.sigma.compiler import KEYWORDS, CompiledRule, LiteralGroup, NumberGroup
from detectors.sigma.fields import (
    MISSING,
    field_getter,
    is_structured,
    iter_scalars,
    keyword_texts,
    texts_of,
)
from detectors.sigma.logsource import LogsourceKey, LogsourceRouter
from detectors.sigma.values import as_number

# A literal shorter than this is a poor anchor (it fires on almost every event).
_MIN_USEFUL_LITERAL = 3
_ORIGINAL: Final = field_getter("event.original")
# Fields of the log-source guards the pipeline adds: every event of the source has those
# literals, so they select nothing within a bucket and make poor anchors.
_GUARD_FIELDS = frozenset(
    {"winlog.channel", "winlog.provider_name", "event.dataset", "event.module", "event.category"}
)


@dataclass(frozen=True, slots=True)
class EngineRule:
    """A compiled rule and the log-source keys it is filed under."""

    rule: CompiledRule
    keys: frozenset[LogsourceKey]


class _Scanner:
    """The literals of one field's anchors: which fire in a text, and for which rules.

    Short texts (most field values) go through a pyahocorasick automaton of the casefolded
    literals. Long texts (command lines, script blocks, a whole event for keywords) go through
    Hyperscan, which finds every literal of a few kilobytes in about a microsecond where the
    automaton takes 7 ns a character; its database is compiled on the first long text, so
    scanners that never see one cost nothing. Hyperscan's caseless mode folds ASCII only: an
    ASCII text (most) is scanned as it is, any other casefolded first, so that a literal in the
    casefolded text is always found. A database Hyperscan refuses leaves the automaton alone,
    which is as exact, only slower.
    """

    __slots__ = ("_automaton", "_database", "_literals", "_rules")

    # From this length Hyperscan's call costs less than the automaton's pass.
    LONG_TEXT: Final = 256

    def __init__(self, by_literal: Mapping[str, list[int]]) -> None:
        automaton = ahocorasick.Automaton()
        for literal, indexes in by_literal.items():
            automaton.add_word(literal, indexes)
        automaton.make_automaton()
        self._automaton = automaton
        self._literals = list(by_literal)
        self._rules = [by_literal[literal] for literal in self._literals]
        self._database: hyperscan.Database | Literal[False] | None = None  # False: refused

    def fire(self, text: str, found: set[int]) -> None:
        """Add to ``found`` the rules of every literal in ``text`` (as the event has it)."""
        if len(text) >= self.LONG_TEXT:
            database = self._database if self._database is not None else self._compile()
            if database is not False:
                data = text.encode() if text.isascii() else text.casefold().encode()
                hits: list[int] = []
                database.scan(data, match_event_handler=_collect, context=hits)
                for literal in hits:
                    found.update(self._rules[literal])
                return
        for _end, indexes in self._automaton.iter(text.casefold()):
            found.update(indexes)

    def _compile(self) -> hyperscan.Database | Literal[False]:
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        flags = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH
        try:
            database.compile(
                expressions=[literal.encode() for literal in self._literals],
                ids=list(range(len(self._literals))),
                elements=len(self._literals),
                flags=[flags] * len(self._literals),
                literal=True,
            )
        except hyperscan.error:
            self._database = False
            return False
        self._database = database
        return database


def _collect(literal: int, _start: int, _end: int, _flags: int, hits: object) -> None:
    """Hyperscan's match handler: note which literal was found (once each: SINGLEMATCH)."""
    cast("list[int]", hits).append(literal)


@dataclass
class _Bucket:
    """Rules with their literal index: those of one set of log sources an event can be of."""

    rules: list[CompiledRule] = field(default_factory=list)
    unanchored: list[int] = field(default_factory=list)
    # (getter of a field's casefolded texts, its scanner); keyword search apart
    scanners: list[tuple[Callable[[Mapping[str, Any]], Any], _Scanner]] = field(
        default_factory=list
    )
    keywords: _Scanner | None = None
    # (getter, rules by number): rules without a literal anchor but a numeric one (EventID)
    numbers: list[tuple[Callable[[Mapping[str, Any]], Any], dict[Any, list[int]]]] = field(
        default_factory=list
    )

    @classmethod
    def build(cls, rules: Iterable[CompiledRule]) -> _Bucket:
        bucket = cls()
        pending: dict[str | None, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        by_number: dict[str, dict[Any, list[int]]] = defaultdict(lambda: defaultdict(list))
        for rule in rules:
            index = len(bucket.rules)
            bucket.rules.append(rule)
            anchor = _anchor(rule.required_literals)
            if anchor is None:
                numeric = _number_anchor(rule.required_numbers)
                if numeric is None:
                    bucket.unanchored.append(index)
                else:
                    for number in numeric.numbers:
                        by_number[numeric.field][number].append(index)
                continue
            for path, literals in anchor.alternatives:
                for literal in literals:
                    pending[path][literal].append(index)
        for path, by_literal in pending.items():
            if path is KEYWORDS:
                bucket.keywords = _Scanner(_with_json_forms(by_literal))
            else:
                bucket.scanners.append((field_getter(path), _Scanner(by_literal)))
        for path, rules_by in by_number.items():
            bucket.numbers.append((field_getter(path), dict(rules_by)))
        return bucket

    def candidates(self, event: Mapping[str, Any]) -> set[int]:
        """Indexes of the rules whose anchor fired on ``event``, and of those with none."""
        found = set(self.unanchored)
        for getter, scanner in self.scanners:
            value = getter(event)
            if value is MISSING:
                continue
            if type(value) is str:
                scanner.fire(value, found)
            else:
                for text in texts_of(value):
                    scanner.fire(text, found)
        if self.keywords is not None:
            self.keywords.fire(_keyword_haystack(event), found)
        for getter, by_number in self.numbers:
            value = getter(event)
            if value is MISSING:
                continue
            for item in iter_scalars(value) if type(value) is list else (value,):
                number = as_number(item)
                if number is not None:
                    indexes = by_number.get(number)
                    if indexes is not None:
                        found.update(indexes)
        return found


class SigmaEngine:
    """Matches events against compiled rules through the log-source and literal indexes."""

    def __init__(self, rules: Iterable[EngineRule], router: LogsourceRouter) -> None:
        self.router = router
        self._by_key: dict[LogsourceKey, list[CompiledRule]] = defaultdict(list)
        self.rule_count = 0
        for entry in rules:
            self.rule_count += 1
            for key in entry.keys:
                self._by_key[key].append(entry.rule)
        # One bucket per distinct set of log sources the router names (few: built on first
        # use), so that a rule filed under two of an event's keys is indexed and tried once.
        self._buckets: dict[frozenset[LogsourceKey], _Bucket] = {}

    def _bucket(self, keys: frozenset[LogsourceKey]) -> _Bucket:
        bucket = self._buckets.get(keys)
        if bucket is None:
            unique: dict[int, CompiledRule] = {}
            for key in sorted(keys, key=lambda k: tuple(part or "" for part in k)):
                for rule in self._by_key.get(key, ()):
                    unique.setdefault(id(rule), rule)
            bucket = self._buckets[keys] = _Bucket.build(unique.values())
        return bucket

    @property
    def anchored_share(self) -> float:
        """The share of rules that have an anchor, literal or numeric (for reports)."""
        rules = {id(rule): rule for rules in self._by_key.values() for rule in rules}
        if not rules:
            return 0.0
        anchored = sum(
            _anchor(rule.required_literals) is not None
            or _number_anchor(rule.required_numbers) is not None
            for rule in rules.values()
        )
        return anchored / len(rules)

    def match(self, event: Mapping[str, Any]) -> list[CompiledRule]:
        """The rules ``event`` matches, each once."""
        bucket = self._bucket(self.router.keys_for(event))
        rules = bucket.rules
        return [rules[i] for i in sorted(bucket.candidates(event)) if rules[i].matches(event)]

    def match_naive(self, event: Mapping[str, Any]) -> list[CompiledRule]:
        """The same answer without the literal index: every rule of the event's log sources."""
        bucket = self._bucket(self.router.keys_for(event))
        return [rule for rule in bucket.rules if rule.matches(event)]


def _keyword_haystack(event: Mapping[str, Any]) -> str:
    """One text holding every keyword text of ``event``, for the keyword prefilter.

    An original that is a JSON object is scanned as it is, without decoding it: each string it
    holds is there in JSON's escaped form, which ``_with_json_forms`` adds to the literals.
    That holds for JSON's short escapes only (backslash, quote, ``/``, ``\\n``...), which have
    no case; an original with ``\\u`` escapes is decoded. Elsewhere the texts are joined: a
    literal across a seam only widens the candidates.
    """
    original = _ORIGINAL(event)
    if is_structured(original) and "\\u" not in original:
        return original  # type: ignore[no-any-return]
    return "\n".join(keyword_texts(event))


def _with_json_forms(by_literal: Mapping[str, list[int]]) -> dict[str, list[int]]:
    """The keyword literals, and each as a JSON string holds it (see ``_keyword_haystack``)."""
    forms: dict[str, list[int]] = defaultdict(list)
    for literal, indexes in by_literal.items():
        escaped = orjson.dumps(literal).decode()[1:-1]
        variants = {literal, escaped, escaped.replace("/", "\\/")}
        for variant in variants:
            forms[variant].extend(index for index in indexes if index not in forms[variant])
    return dict(forms)


def _number_anchor(groups: Sequence[NumberGroup]) -> NumberGroup | None:
    """The numeric equality with fewest numbers, outside the log-source guards."""
    usable = [group for group in groups if group.field not in _GUARD_FIELDS and group.numbers]
    return min(usable, key=lambda group: len(group.numbers), default=None)


def _anchor(groups: Sequence[LiteralGroup]) -> LiteralGroup | None:
    """The group whose shortest literal is longest: the one that fires on fewest events."""
    best: LiteralGroup | None = None
    best_score = 0
    for group in groups:
        if any(path in _GUARD_FIELDS for path, _ in group.alternatives):
            continue
        literals = group.literals
        if not literals:
            continue
        score = min(len(literal) for literal in literals)
        if score >= _MIN_USEFUL_LITERAL and score > best_score:
            best, best_score = group, score
    return best
