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

``match_naive`` skips the literal index (it evaluates every rule of the event's log sources):
the reference the benchmark compares against, and a cross-check in tests.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ahocorasick

from detectors.sigma.compiler import KEYWORDS, CompiledRule, LiteralGroup
from detectors.sigma.fields import field_texts, keyword_texts
from detectors.sigma.logsource import LogsourceKey, LogsourceRouter

# A literal shorter than this is a poor anchor (it fires on almost every event).
_MIN_USEFUL_LITERAL = 3
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


@dataclass
class _Bucket:
    """Rules with their literal index: those of one set of log sources an event can be of."""

    rules: list[CompiledRule] = field(default_factory=list)
    unanchored: list[int] = field(default_factory=list)
    # field path (or KEYWORDS) -> automaton whose values are lists of rule indexes
    automata: dict[str | None, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[CompiledRule]) -> _Bucket:
        bucket = cls()
        pending: dict[str | None, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for rule in rules:
            index = len(bucket.rules)
            bucket.rules.append(rule)
            anchor = _anchor(rule.required_literals)
            if anchor is None:
                bucket.unanchored.append(index)
                continue
            for path, literals in anchor.alternatives:
                for literal in literals:
                    pending[path][literal].append(index)
        for path, by_literal in pending.items():
            automaton = ahocorasick.Automaton()
            for literal, indexes in by_literal.items():
                automaton.add_word(literal, indexes)
            automaton.make_automaton()
            bucket.automata[path] = automaton
        return bucket

    def candidates(self, event: Mapping[str, Any]) -> set[int]:
        """Indexes of the rules whose anchor fired on ``event``, and of those with none."""
        found = set(self.unanchored)
        for path, automaton in self.automata.items():
            texts = (
                [text.casefold() for text in keyword_texts(event)]
                if path is KEYWORDS
                else field_texts(event, path)
            )
            for text in texts:
                for _end, indexes in automaton.iter(text):
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
        """The share of rules that have a literal anchor (for reports)."""
        rules = {id(rule): rule for rules in self._by_key.values() for rule in rules}
        if not rules:
            return 0.0
        return sum(_anchor(r.required_literals) is not None for r in rules.values()) / len(rules)

    def match(self, event: Mapping[str, Any]) -> list[CompiledRule]:
        """The rules ``event`` matches, each once."""
        bucket = self._bucket(self.router.keys_for(event))
        rules = bucket.rules
        return [rules[i] for i in sorted(bucket.candidates(event)) if rules[i].matches(event)]

    def match_naive(self, event: Mapping[str, Any]) -> list[CompiledRule]:
        """The same answer without the literal index: every rule of the event's log sources."""
        bucket = self._bucket(self.router.keys_for(event))
        return [rule for rule in bucket.rules if rule.matches(event)]


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
