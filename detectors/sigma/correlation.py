"""Streaming Sigma correlations (Sigma v2 correlation rules), in event time, deterministic.

:class:`CorrelationEngine` is built once from the correlations :func:`load_rules` resolved
(``LoadResult.correlations``). Per event the caller gives the keys of the base rules it matched
(:func:`rule_key`) and the event to :meth:`~CorrelationEngine.observe`; between batches, a
watermark to :meth:`~CorrelationEngine.advance`. Both return the :class:`CorrelationHit` that
fire. No wall clock is read: the same events in the same order give the same hits. The state
survives a restart: :meth:`~CorrelationEngine.snapshot`, :meth:`~CorrelationEngine.restore`.

Semantics (where the specification leaves them to the tool):

- **Rules** are named by id or name (:func:`rule_key`: the id, else the name; ``observe`` takes
  either). A correlation may reference a correlation (the specification's "many failures, then
  a success"): each hit of the inner one is an event of the outer one, at the hit's window end,
  its fields the inner hit's group.
- **Time** is the event's ``@timestamp`` (an aware datetime; naive is UTC; ISO text is read) to
  the microsecond. The clock is the latest time ``observe`` was given for some correlation, or
  the latest watermark. An event older than clock − allowance is *late*: counted, not used.
- **Group**: the tuple of the ``group-by`` fields' values, read by
  :func:`~detectors.sigma.fields.field_getter` as rules read fields. An alias reads, per
  referenced rule, the field it names for that rule (a rule it does not name reads the alias as
  a field). A missing field groups under None. A multi-valued field (a list) groups as the whole
  list: one group per event, not one per value. A mapping groups as its JSON text.
- **Windows** are ``timespan`` long, ends included: events exactly ``timespan`` apart share one,
  a microsecond more do not. A condition more events can only bring true (gt/gte on
  event_count, value_count, temporal, temporal_ordered and value_sum; a boolean temporal
  condition without ``not``) fires *as soon as* it holds on the sliding window ending at the
  group's newest event. The others need the whole window: lt/lte/eq/neq, value_avg, median and
  percentile (the average of a first event alone says little), boolean conditions with ``not``.
  Their window is *anchored*: it opens at the group's first event, closes when ``advance`` moves
  the clock past its end by the allowance or when an event of the group comes after its end,
  and is decided then, on everything in it.
- **Aggregates**: event_count counts matches; value_count distinct values of the condition's
  field (each value of a list; a list of fields counts distinct combinations); temporal the
  distinct referenced rules matched; temporal_ordered the longest prefix of the rules matched in
  the listed order (each later, or at the same time and seen later); value_sum/avg/median/
  percentile the field's numbers (numeric text counts; other values are ignored and counted as
  ``no_value``), percentiles interpolated between ranks, the median as the 50th.
- **Once per window**: after a hit its group starts afresh (the window's events are consumed),
  so a storm fires once per threshold reached, not on every further event. An event whose id is
  one of the group's last hit's is a replay (after a restore, say): dropped, counted.
- **Out of order** events within the allowance are placed by time. One more than ``timespan``
  older than its group's newest cannot share its window: late (only with an allowance above the
  timespan). Which events a hit consumed can depend on arrival order; how many hits a burst
  within one timespan gives does not.
- **Hits** carry the correlation's id, title, level and tags, the group, the window (sliding:
  its first and last event; anchored: the window opened), the value that satisfied the
  condition, the ids of the last ``max_event_ids`` events behind it and their exact count
  (value_count: the latest event of each value; temporal: of each rule), and the rules involved.
  :attr:`CorrelationHit.id` derives from them, the same on a replay.
- **generate**: :attr:`~CorrelationEngine.quiet_rules` are the keys of rules referenced only by
  correlations with ``generate: false`` (the default): their own detections are not reported.
  A quiet inner correlation feeds the outer one; its hits are not returned.
- **Memory** is bounded per group (see :mod:`~detectors.sigma.correlation_state`); sliding
  count thresholds must stay below ``max_values``; ``advance`` drops the groups no event to come
  can join.

Not supported, each a :class:`CorrelationError`: temporal_ordered with a boolean condition (no
order of a boolean expression is defined); value_sum/avg/median/percentile of a list of fields.
Ranges (``gt`` and ``lte`` in one condition) cannot be written: pySigma 1.5 takes one operator.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sigma.correlations import (
    SigmaCorrelationRule,
)
from sigma.rule import SigmaRule

from detectors.sigma.compiler import CompiledRule
from detectors.sigma.correlation_spec import (
    CorrelationError,
    CorrelationHit,
    CorrelationSpec,
    Group,
    compile_all,
    rule_key,
)
from detectors.sigma.correlation_state import (
    STATES,
    Entry,
    NewValueState,
    State,
    freeze,
    micros,
    plain,
)
from detectors.sigma.engine import EngineRule
from detectors.sigma.fields import MISSING, field_getter
from detectors.sigma.loader import LoadedRule, Problem

SNAPSHOT_FORMAT: Final = "socpipe.correlation/1"
_NEVER: Final = -(1 << 62)
_EVENT_ID: Final = field_getter("event.id")
_MALFORMED: Final = (TypeError, ValueError, KeyError, IndexError, AttributeError)
_COUNTERS: Final = ("late", "untimed", "no_value", "duplicates", "hits", "dropped_state")


@dataclass(frozen=True, slots=True)
class CorrelationStats:
    """For metrics: the state held, and cumulative counts of what the engine did not use."""

    groups: int
    entries: int
    late: int
    untimed: int
    no_value: int
    duplicates: int
    hits: int
    dropped_state: int  # correlations whose snapshot state was dropped (changed or malformed)


def keys_by_compiled(pairs: Iterable[tuple[LoadedRule, EngineRule]]) -> dict[CompiledRule, str]:
    """Each compiled rule's key, from :func:`~detectors.sigma.hunt.compile_loaded`'s pairs (a
    compiled rule keeps its id but not its name)."""
    return {entry.rule: rule_key(loaded.rule) for loaded, entry in pairs}


class CorrelationEngine:
    """Sigma correlations over a stream of events (the module docstring has the semantics).

    ``allowance_s``: how late (in event time) an event may come and still be used.
    ``max_event_ids``: event ids a hit carries (entries kept per anchored window alike).
    ``max_values``: records a sliding window or numbers a percentile sample may hold.
    ``problems``: when given, a correlation that cannot run is reported there (as the loader
    reports problems) and left out; else the first raises :class:`CorrelationError`.
    """

    def __init__(
        self,
        correlations: Iterable[SigmaCorrelationRule],
        *,
        allowance_s: float = 60.0,
        max_event_ids: int = 100,
        max_values: int = 100_000,
        problems: list[Problem] | None = None,
    ) -> None:
        if allowance_s < 0 or max_event_ids < 1 or max_values < 1:
            raise ValueError("allowance_s must be >= 0, max_event_ids and max_values >= 1")
        self._allowance, self._max_ids = round(allowance_s * 1_000_000), max_event_ids
        self._specs = compile_all(list(correlations), max_event_ids, max_values, problems)
        self._by_key: dict[str, list[tuple[int, int]]] = {}
        generates: dict[str, list[bool]] = {}
        for index, spec in enumerate(self._specs):
            for member, (target, key) in enumerate(
                zip(spec.members, spec.member_keys, strict=True)
            ):
                generates.setdefault(key, []).append(spec.rule.generate)
                if isinstance(target, SigmaRule):
                    for name in {key, str(target.id) if target.id else key, target.name or key}:
                        self._by_key.setdefault(name, []).append((index, member))
        self.quiet_rules = frozenset(k for k, gen in generates.items() if k and not any(gen))
        """Keys (ids, else names) of the rules whose own detections are not to be reported."""
        for spec in self._specs:
            spec.quiet = spec.key in self.quiet_rules
        self._now, self._seq = _NEVER, 0
        self._counts = dict.fromkeys(_COUNTERS, 0)
        fields = {
            path
            for spec in self._specs
            for paths in (*spec.group_paths, *spec.value_paths)
            for path in paths
        }
        # Time and id, what the correlations read, and who a hit concerns (for its detection).
        about = ("@timestamp", "event.id", "organization.id", "labels.tier", "host.name")
        self._paths = (*about, *sorted(fields - set(about)))

    @classmethod
    def restore(
        cls,
        correlations: Iterable[SigmaCorrelationRule],
        snapshot: Mapping[str, Any],
        **options: Any,
    ) -> CorrelationEngine:
        """An engine of ``correlations`` (``options`` as the constructor's) with ``snapshot``'s
        state. The state of a correlation that is gone, changed (type, condition, timespan,
        group-by, fields, rules) or malformed in the snapshot is dropped; nothing raises."""
        engine = cls(correlations, **options)
        engine.load(snapshot)
        return engine

    @property
    def correlations(self) -> list[SigmaCorrelationRule]:
        """The correlations the engine runs, in order."""
        return [spec.rule for spec in self._specs]

    @property
    def stats(self) -> CorrelationStats:
        """Groups and entries held, and the cumulative counters."""
        groups = sum(len(spec.groups) for spec in self._specs)
        return CorrelationStats(groups, self.state_size, **self._counts)

    @property
    def state_size(self) -> int:
        """Records, values, entries and numbers held over every group (~ memory)."""
        return sum(state.size() for spec in self._specs for state in spec.groups.values())

    def observe(
        self, rule_keys: Collection[str], document: Mapping[str, Any], *, only: str | None = None
    ) -> list[CorrelationHit]:
        """Feed one event, given the keys of the base rules it matched; the hits that fire now.

        ``only``: feed only the correlation of that state key (see :meth:`route`), as a worker
        that owns one correlation's group does; the correlations it feeds (chains) follow.
        """
        touched = self._touched(rule_keys, only)
        if not touched:
            return []
        time = micros(document.get("@timestamp"))
        if time is None or time < self._now - self._allowance:
            self._counts["untimed" if time is None else "late"] += 1
            return []
        self._now = max(self._now, time)
        event_id = _EVENT_ID(document)
        ids = () if event_id is MISSING or event_id is None else (str(event_id),)
        event, hits = (time, self._seq, 0, ids, 1), list[CorrelationHit]()
        self._seq += 1
        for index in sorted(touched):
            self._feed(self._specs[index], touched[index], event, document, hits)
        return hits

    def _touched(self, rule_keys: Collection[str], only: str | None) -> dict[int, list[int]]:
        touched: dict[int, list[int]] = {}
        for key in rule_keys:
            for index, member in self._by_key.get(key, ()):
                if only is not None and self._specs[index].state_key != only:
                    continue
                members = touched.setdefault(index, [])
                if member not in members:
                    members.append(member)
        return touched

    def route(
        self, rule_keys: Collection[str], document: Mapping[str, Any]
    ) -> list[tuple[str, Group]]:
        """Which (correlation, group) states an event feeds: what a stream keys it by, so that
        one worker owns each; the correlation is named by its state key."""
        routes = []
        for index, members in sorted(self._touched(rule_keys, None).items()):
            spec = self._specs[index]
            for group in dict.fromkeys(spec.group_of(member, document) for member in members):
                routes.append((spec.state_key, group))
        return routes

    def projection(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The part of an event the correlations read (time, id, group and value fields) and
        who it concerns (agency, tier, host), as a nested dict: what a stream carries to the
        worker that correlates it."""
        projected: dict[str, Any] = {}
        for path in self._paths:
            value = field_getter(path)(document)
            if value is MISSING:
                continue
            node = projected
            *parents, last = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            else:
                node[last] = value.isoformat() if isinstance(value, datetime) else value
        return projected

    def advance(self, watermark: datetime) -> list[CorrelationHit]:
        """Move the clock to ``watermark`` (event time); close the anchored windows it ends
        (their hits are returned) and drop the groups no event to come can join."""
        time = micros(watermark)
        if time is None:
            raise TypeError(f"a watermark is a datetime, not {type(watermark).__name__}")
        self._now = max(self._now, time)
        limit, hits = self._now - self._allowance, list[CorrelationHit]()
        for spec in self._specs:
            for group, state in list(spec.groups.items()):
                if spec.shape.kind == "new":
                    state.evict(limit - spec.span)
                    if not state.size():
                        del spec.groups[group]
                    continue
                if spec.sliding:
                    state.evict(limit - spec.span)
                    if state.newest < limit - spec.span:
                        del spec.groups[group]
                    continue
                if state.start is not None and state.start + spec.span < limit:
                    self._close(spec, group, state, hits)
                if state.start is None and state.newest < limit:
                    del spec.groups[group]
        return hits

    def _feed(
        self,
        spec: CorrelationSpec,
        members: Sequence[int],
        event: Entry,
        source: Mapping[str, Any],
        hits: list[CorrelationHit],
    ) -> None:
        """Add an event (or an inner hit) the member rules matched to its group(s); ``event`` is
        its entry but for the member."""
        time, seq, _, ids, weight = event
        if spec.shape.kind == "new":
            self._new_values(spec, members, event, source, hits)
            return
        if spec.per_member:  # temporal: each rule matched is a value
            for member in members:
                group = spec.group_of(member, source)
                self._add(spec, group, (time, seq, member, ids, weight), member, hits)
            return
        done: set[Group] = set()
        for member in members:
            group = spec.group_of(member, source)
            if group in done:
                continue  # matched by two of its rules: still one event
            done.add(group)
            entry = (time, seq, member, ids, weight)
            if spec.shape.kind == "count":
                self._add(spec, group, entry, None, hits)
                continue
            items = spec.items_of(member, source)
            self._counts["no_value"] += not items
            for number, item in enumerate(items):
                if number == 1 and spec.shape.kind != "distinct":
                    entry = (time, seq, member, (), 0)  # one event: its ids and weight once
                self._add(spec, group, entry, item, hits)

    def _new_values(
        self,
        spec: CorrelationSpec,
        members: Sequence[int],
        event: Entry,
        source: Mapping[str, Any],
        hits: list[CorrelationHit],
    ) -> None:
        """new_value: judge the event's values against its group's history, then learn them."""
        time, _, _, ids, _ = event
        trigger = next((member for member in members if member in spec.alert_on), None)
        done: set[Group] = set()
        for member in members:
            group = spec.group_of(member, source)
            if group in done:
                continue
            done.add(group)
            items = spec.items_of(member, source)
            self._counts["no_value"] += not items
            if not items:
                continue
            state = spec.groups.get(group)
            if state is None:
                state = spec.groups[group] = STATES["new"](spec.shape)
            elif state.fired and ids and ids[0] in state.fired:
                self._counts["duplicates"] += 1
                continue
            assert isinstance(state, NewValueState)
            learned = time - state.origin >= spec.learning
            for item in items:
                known = state.knows(item, time - spec.span)
                state.add(event, item)
                if trigger is not None and learned and not known:
                    hit = spec.new_hit(group, item, trigger, time, ids, state.size() - 1)
                    self._emit(spec, state, hit, hits)

    def _add(
        self,
        spec: CorrelationSpec,
        group: Group,
        entry: Entry,
        item: Any,
        hits: list[CorrelationHit],
    ) -> None:
        state = spec.groups.get(group)
        if state is None:
            state = spec.groups[group] = STATES[spec.shape.kind](spec.shape)
        elif state.fired and entry[3] and entry[3][0] in state.fired:
            self._counts["duplicates"] += 1
            return
        time, span = entry[0], spec.span
        if spec.sliding:
            if time < state.newest - span:
                self._counts["late"] += 1
                return
            state.newest = max(state.newest, time)
            state.evict(state.newest - span)
            state.add(entry, item)
            value = spec.decide(state)
            if value is not None:
                self._fire(spec, group, state, value, *state.bounds(), hits)
                state.clear()
            return
        if state.start is not None and time > state.start + span:
            self._close(spec, group, state, hits)
        elif state.start is not None and time < state.start:
            if state.newest - time > span:
                self._counts["late"] += 1
                return
            state.start = time
        if state.start is None:
            state.start = time
        state.newest = max(state.newest, time)
        state.add(entry, item)

    def _close(
        self, spec: CorrelationSpec, group: Group, state: State, hits: list[CorrelationHit]
    ) -> None:
        """Decide an anchored window on everything in it, and clear it."""
        assert state.start is not None
        value = spec.decide(state)
        if value is not None:
            self._fire(spec, group, state, value, state.start, state.start + spec.span, hits)
        state.clear()
        state.start = None

    def _fire(
        self,
        spec: CorrelationSpec,
        group: Group,
        state: State,
        value: float,
        first: int,
        last: int,
        hits: list[CorrelationHit],
    ) -> None:
        self._emit(spec, state, spec.hit(group, value, first, last, state, self._max_ids), hits)

    def _emit(
        self, spec: CorrelationSpec, state: State, hit: CorrelationHit, hits: list[CorrelationHit]
    ) -> None:
        state.fired = frozenset(hit.event_ids)
        self._counts["hits"] += 1
        if not spec.quiet:
            hits.append(hit)
        last = micros(hit.window_end)
        assert last is not None
        for index, member in spec.dependents:  # chained: the hit is an event of the outer one
            event = (last, self._seq, member, hit.event_ids, hit.event_count)
            self._seq += 1
            self._feed(self._specs[index], (member,), event, hit.group, hits)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (times as epoch microseconds)."""
        correlations = {
            spec.state_key: {
                "fingerprint": spec.fingerprint,
                "groups": [[plain(group), state.dump()] for group, state in spec.groups.items()],
            }
            for spec in self._specs
        }
        now = self._now if self._now != _NEVER else None
        counts = {name: count for name, count in self._counts.items() if name != "dropped_state"}
        return {"format": SNAPSHOT_FORMAT, "now": now, "seq": self._seq, "counters": counts} | {
            "correlations": correlations
        }

    def load(self, snapshot: Mapping[str, Any]) -> int:
        """Take ``snapshot``'s state in (as :meth:`restore`); how many correlations' state."""
        if not isinstance(snapshot, Mapping) or snapshot.get("format") != SNAPSHOT_FORMAT:
            self._counts["dropped_state"] += len(self._specs)
            return 0
        try:
            self._now = max(self._now, int(snapshot.get("now") or _NEVER))
            self._seq = max(self._seq, int(snapshot.get("seq") or 0))
            for name, count in dict(snapshot.get("counters") or {}).items():
                if name in self._counts and name != "dropped_state":
                    self._counts[name] = int(count)
        except _MALFORMED:
            pass  # the clock and the counters help; the windows are what matters
        saved = snapshot.get("correlations")
        saved = saved if isinstance(saved, Mapping) else {}
        mine = {spec.state_key for spec in self._specs}
        self._counts["dropped_state"] += sum(1 for key in saved if key not in mine)
        loaded = 0
        for spec in self._specs:
            if spec.state_key in saved:
                groups = _groups_of(spec, saved[spec.state_key])
                self._counts["dropped_state"] += groups is None
                spec.groups, loaded = groups or {}, loaded + (groups is not None)
        return loaded


def build_correlations(
    correlations: Iterable[SigmaCorrelationRule], **options: Any
) -> tuple[CorrelationEngine, list[Problem]]:
    """An engine of every correlation that can run, and a problem for each that cannot."""
    problems: list[Problem] = []
    return CorrelationEngine(correlations, problems=problems, **options), problems


def _groups_of(spec: CorrelationSpec, data: Any) -> dict[Group, State] | None:
    """A correlation's groups from its snapshot data; None when changed or malformed."""
    try:
        if data["fingerprint"] != spec.fingerprint:
            return None
        groups: dict[Group, State] = {}
        for group_data, state_data in data["groups"]:
            group = freeze(group_data)
            if not isinstance(group, tuple) or len(group) != len(spec.group_names):
                return None
            state = groups[group] = STATES[spec.shape.kind](spec.shape)
            state.restore(state_data)
            if any(entry[2] >= spec.shape.members for entry in state.made_of()):
                return None
        return groups
    except _MALFORMED:
        return None


__all__ = [
    "SNAPSHOT_FORMAT",
    "CorrelationEngine",
    "CorrelationError",
    "CorrelationHit",
    "CorrelationStats",
    "build_correlations",
    "keys_by_compiled",
    "rule_key",
]
