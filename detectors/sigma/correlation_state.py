"""The window state of one correlation and group, for :mod:`detectors.sigma.correlation`.

One object per (correlation, group). Each kind keeps only what its aggregate needs, so memory
is bounded whatever the event rate (the bounds are in each class's docstring):

- :class:`AggregateState` (event_count, value_sum/avg/median/percentile): the (time, number)
  records of a sliding window, or a running sum and count (and a sample for percentiles) for an
  anchored one;
- :class:`DistinctState` (value_count, temporal): the latest entry of each distinct value (for
  temporal the value is the referenced rule), oldest first;
- :class:`OrderedState` (temporal_ordered): the last few entries of each referenced rule and the
  longest in-order chain they form.

Times are integer microseconds since the epoch, exact for a datetime, so window edges compare
exactly. An *entry* is a plain tuple, as this runs for every event:
``(time, seq, member, event_ids, weight)``: ``seq`` orders entries of equal time and tells events
apart, ``member`` is the index of the referenced rule, ``weight`` the number of events behind it
(1, or an inner correlation's event count when correlations are chained). Every kind also keeps
its last ``max_ids`` entries (or its distinct values' or chain's) for the ids a hit reports.

States dump to JSON-ready dicts and restore from them; restore raises ``TypeError``,
``ValueError``, ``KeyError`` or ``IndexError`` on a malformed dump.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import orjson

from detectors.sigma.fields import MISSING

Entry = tuple[int, int, int, tuple[str, ...], int]  # time µs, seq, member, event ids, weight
Kind = Literal["count", "distinct", "ordered", "sum", "avg", "percentile", "new"]

# Entries kept per referenced rule for temporal_ordered: a chain is checked when its last event
# comes, when the latest few entries of each rule are all it can need.
LANE: Final = 16
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MASK: Final = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Shape:
    """What a correlation's states are (shared by its groups)."""

    kind: Kind
    sliding: bool  # a sliding window ending at the group's newest event, else anchored
    span: int  # µs
    members: int
    max_ids: int
    # sliding aggregates: records kept; percentile: sample size; anchored distinct: values kept
    # (threshold + 1: past it lt/lte/eq/neq are decided whatever comes).
    cap: int
    percentile: float = 50.0


class State:
    """What every kind keeps: the group's newest time, its anchored window's start, and the
    ids of its last hit (an event among them is a replay, not a new event)."""

    __slots__ = ("fired", "newest", "shape", "start")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.newest = -(1 << 62)
        self.start: int | None = None
        self.fired: frozenset[str] = frozenset()

    def add(self, entry: Entry, item: Any) -> None:
        """Take an entry in; ``item`` is its distinct value or number, if the kind has one."""
        raise NotImplementedError

    def evict(self, cutoff: int) -> None:
        """Forget what is older than ``cutoff`` (sliding windows)."""
        raise NotImplementedError

    def value(self) -> int | float | None:
        """The aggregate over what is held; None when there is none (no numbers)."""
        raise NotImplementedError

    def made_of(self) -> list[Entry]:
        """The entries behind the value (for a hit's ids and rules), oldest first."""
        raise NotImplementedError

    def weight(self) -> int:
        """The number of events behind the value, exact even when their entries are not kept."""
        return sum(entry[4] for entry in self.made_of())

    def bounds(self) -> tuple[int, int]:
        """The first and last time of a sliding window's events (for its hit)."""
        entries = self.made_of()
        return (entries[0][0], entries[-1][0]) if entries else (self.newest, self.newest)

    def clear(self) -> None:
        """Forget the window (after a hit, or when an anchored window closes)."""
        raise NotImplementedError

    def size(self) -> int:
        """Records, values, entries and numbers held (the engine's state size)."""
        raise NotImplementedError

    def dump(self) -> dict[str, Any]:
        """The state as JSON-ready data."""
        return {"newest": self.newest, "start": self.start, "fired": sorted(self.fired)}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load :meth:`dump`'s data into a fresh state of the same shape."""
        self.newest = int(data["newest"])
        self.start = None if data["start"] is None else int(data["start"])
        self.fired = frozenset(str(item) for item in data["fired"])


class AggregateState(State):
    """event_count (each event counts 1) and value_sum/avg/median/percentile.

    Sliding (gt/gte on event_count and value_sum): the window's (time, number, weight) records,
    at most the threshold for event_count (reaching it fires and clears) and ``cap`` for a sum
    (past it the oldest go, so a sum can only be under-estimated). Anchored: a running sum and
    count, and for percentiles a sample of at most ``cap`` numbers that is the same whatever the
    arrival order: those whose ``seq`` hashes lowest (a bottom-k sample).
    """

    __slots__ = ("count", "recent", "records", "sample", "sum", "total")

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.records: deque[tuple[int, float, int]] = deque()
        self.sample: list[tuple[int, float]] = []  # heap of (-hash, number)
        self.recent: deque[Entry] = deque(maxlen=shape.max_ids)
        self.sum: float = 0
        self.count = 0
        self.total = 0

    def add(self, entry: Entry, item: Any) -> None:
        number: float = 1 if item is None else item
        _keep(self.recent, entry)
        self.sum += number
        self.count += 1
        self.total += entry[4]
        shape = self.shape
        if shape.sliding:
            records, record = self.records, (entry[0], number, entry[4])
            if not records or entry[0] >= records[-1][0]:
                records.append(record)
            else:  # out of order: keep the records sorted, so eviction pops from the left
                insort(records, record)
            if len(records) > shape.cap:
                self._drop()
        elif shape.kind == "percentile":
            rank = -_mix(entry[1])
            if len(self.sample) < shape.cap:
                heapq.heappush(self.sample, (rank, number))
            elif rank > self.sample[0][0]:
                heapq.heapreplace(self.sample, (rank, number))

    def _drop(self) -> None:
        _, number, weight = self.records.popleft()
        self.sum -= number
        self.count -= 1
        self.total -= weight
        if not self.records:  # a running float sum drifts: start exact again when empty
            self.sum = self.count = self.total = 0

    def evict(self, cutoff: int) -> None:
        records = self.records
        while records and records[0][0] < cutoff:
            self._drop()

    def value(self) -> int | float | None:
        kind = self.shape.kind
        if kind == "count":
            return self.count
        if not self.count:
            return None
        if kind == "sum":
            return _json(self.sum)
        if kind == "avg":
            return self.sum / self.count
        return percentile([number for _, number in self.sample], self.shape.percentile)

    def made_of(self) -> list[Entry]:
        if not self.shape.sliding:
            return list(self.recent)
        first = self.records[0][0] if self.records else self.newest + 1
        return [entry for entry in self.recent if entry[0] >= first]

    def weight(self) -> int:
        return self.total

    def bounds(self) -> tuple[int, int]:
        records = self.records
        return (records[0][0], records[-1][0]) if records else super().bounds()

    def clear(self) -> None:
        self.records.clear()
        self.sample.clear()
        self.recent.clear()
        self.sum = self.count = self.total = 0

    def size(self) -> int:
        return len(self.records) + len(self.sample) + len(self.recent)

    def dump(self) -> dict[str, Any]:
        records = [[time, _json(number), weight] for time, number, weight in self.records]
        sample = [[rank, _json(number)] for rank, number in self.sample]
        totals = {"sum": _json(self.sum), "count": self.count, "total": self.total}
        return (
            super().dump()
            | totals
            | {"records": records, "sample": sample}
            | {"recent": [_entry_out(entry) for entry in self.recent]}
        )

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        self.records.extend((int(t), _number(n), int(w)) for t, n, w in data["records"])
        self.sample = [(int(rank), _number(number)) for rank, number in data["sample"]]
        heapq.heapify(self.sample)
        self.recent.extend(_entry_in(entry) for entry in data["recent"])
        self.sum, self.count, self.total = (
            _number(data["sum"]),
            int(data["count"]),
            int(data["total"]),
        )


class DistinctState(State):
    """value_count and temporal: the latest entry of each distinct value, oldest first.

    Sliding: at most the threshold values (reaching it fires and clears). Anchored: at most
    ``cap`` values.
    """

    __slots__ = ("values",)

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.values: OrderedDict[Hashable, Entry] = OrderedDict()

    def add(self, entry: Entry, item: Any) -> None:
        values = self.values
        old = values.get(item)
        if old is not None:
            if (old[0], old[1]) > (entry[0], entry[1]):
                return  # an older occurrence: the value's latest stays
            del values[item]
        elif len(values) >= self.shape.cap:
            return
        last = next(reversed(values.values()), None)
        values[item] = entry
        if last is not None and last[0] > entry[0]:  # out of order: restore the time order
            self.values = OrderedDict(sorted(values.items(), key=lambda pair: pair[1][:2]))

    def evict(self, cutoff: int) -> None:
        values = self.values
        while values and next(iter(values.values()))[0] < cutoff:
            values.popitem(last=False)

    def value(self) -> int:
        return len(self.values)

    def keys(self) -> frozenset[Hashable]:
        """The distinct values held (for temporal: the referenced rules seen)."""
        return frozenset(self.values)

    def made_of(self) -> list[Entry]:
        return list(self.values.values())

    def clear(self) -> None:
        self.values.clear()

    def size(self) -> int:
        return len(self.values)

    def dump(self) -> dict[str, Any]:
        values = [[plain(key), *_entry_out(entry)] for key, entry in self.values.items()]
        return super().dump() | {"values": values}

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        for key, *entry in data["values"]:
            self.values[freeze(key)] = _entry_in(entry)


class OrderedState(State):
    """temporal_ordered: the last :data:`LANE` entries of each referenced rule, and the longest
    chain of them in the listed order within the timespan (anchored: the longest in the window).
    """

    __slots__ = ("best", "lanes")

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.lanes: list[deque[Entry]] = [deque(maxlen=LANE) for _ in range(shape.members)]
        self.best: list[Entry] = []

    def add(self, entry: Entry, item: Any) -> None:
        _keep(self.lanes[entry[2]], entry)
        chain = self._chain()
        if self.shape.sliding or len(chain) > len(self.best):
            self.best = chain

    def _chain(self) -> list[Entry]:
        """The longest prefix of the rules matched in order within the timespan: from each
        rule's latest entry back through the latest earlier entry of each rule before it (the
        chain that starts latest, so the likeliest to fit)."""
        lanes = self.lanes
        for last in range(len(lanes) - 1, -1, -1):
            if not lanes[last]:
                continue
            chain = [lanes[last][-1]]
            for index in range(last - 1, -1, -1):
                before = _latest_before(lanes[index], chain[-1])
                if before is None:
                    break
                chain.append(before)
            else:
                if chain[0][0] - chain[-1][0] <= self.shape.span:
                    return chain[::-1]
        return []

    def evict(self, cutoff: int) -> None:
        for lane in self.lanes:
            while lane and lane[0][0] < cutoff:
                lane.popleft()
        if self.best and self.best[0][0] < cutoff:
            self.best = self._chain()

    def value(self) -> int:
        return len(self.best)

    def made_of(self) -> list[Entry]:
        return list(self.best)

    def clear(self) -> None:
        for lane in self.lanes:
            lane.clear()
        self.best = []

    def size(self) -> int:
        return sum(len(lane) for lane in self.lanes)

    def dump(self) -> dict[str, Any]:
        lanes = [[_entry_out(entry) for entry in lane] for lane in self.lanes]
        return super().dump() | {"lanes": lanes, "best": [_entry_out(e) for e in self.best]}

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        if len(data["lanes"]) != len(self.lanes):
            raise ValueError("not as many lanes as referenced rules")
        for index, (lane, entries) in enumerate(zip(self.lanes, data["lanes"], strict=True)):
            lane.extend(_entry_in(entry) for entry in entries)
            if any(entry[2] != index for entry in lane):
                raise ValueError("an entry in the lane of another rule")
        self.best = [_entry_in(entry) for entry in data["best"]]


class NewValueState(State):
    """new_value: when the group was first seen (``origin``) and the time each value was last
    seen, least recently seen first; at most ``cap`` values (past it the least recent go)."""

    __slots__ = ("origin", "values")

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.origin = 1 << 62
        self.values: OrderedDict[Hashable, int] = OrderedDict()

    def knows(self, item: Hashable, since: int) -> bool:
        """Whether ``item`` was seen at or after ``since``."""
        last = self.values.get(item)
        return last is not None and last >= since

    def add(self, entry: Entry, item: Any) -> None:
        time, values = entry[0], self.values
        self.origin = min(self.origin, time)
        self.newest = max(self.newest, time)
        last = values.pop(item, None)
        time = time if last is None else max(time, last)
        tail = next(reversed(values.values()), None)
        values[item] = time
        if tail is not None and tail > time:  # out of order: keep the least recent first
            self.values = OrderedDict(sorted(values.items(), key=lambda pair: pair[1]))
        while len(self.values) > self.shape.cap:
            self.values.popitem(last=False)

    def evict(self, cutoff: int) -> None:
        values = self.values
        while values and next(iter(values.values())) < cutoff:
            values.popitem(last=False)

    def value(self) -> int:
        return len(self.values)

    def made_of(self) -> list[Entry]:
        return []

    def weight(self) -> int:
        return 1

    def clear(self) -> None:
        self.values.clear()

    def size(self) -> int:
        return len(self.values)

    def dump(self) -> dict[str, Any]:
        values = [[plain(key), time] for key, time in self.values.items()]
        return super().dump() | {"origin": self.origin, "values": values}

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        self.origin = int(data["origin"])
        for key, time in data["values"]:
            self.values[freeze(key)] = int(time)


STATES: Final[dict[Kind, type[State]]] = {
    "count": AggregateState,
    "distinct": DistinctState,
    "ordered": OrderedState,
    "sum": AggregateState,
    "avg": AggregateState,
    "percentile": AggregateState,
    "new": NewValueState,
}


def percentile(numbers: list[float], rank: float) -> float | None:
    """The ``rank``-th percentile (0-100) interpolated linearly between the closest ranks, as
    numpy's default and Elasticsearch's exact percentiles; None for no numbers."""
    if not numbers:
        return None
    ordered = sorted(numbers)
    position = (len(ordered) - 1) * min(max(rank, 0.0), 100.0) / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def micros(value: Any) -> int | None:
    """Whole microseconds since the epoch of an aware datetime (a naive one is UTC) or of ISO
    text; None for anything else."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_datetime(time: int) -> datetime:
    """The aware (UTC) datetime of epoch microseconds."""
    return EPOCH + timedelta(microseconds=time)


def hashable(value: Any) -> Hashable:
    """A field's value as a group or distinct value: hashable and, through :func:`plain`,
    JSON-ready (a list as a tuple, a mapping as its JSON text, a missing field as None)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value  # type: ignore[no-any-return]
    if kind is int:  # JSON (orjson) holds 64 bits
        return value if -(1 << 63) <= value < (1 << 64) else str(value)
    if value is MISSING:
        return None
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if kind is list or kind is tuple:
        return tuple(hashable(item) for item in value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return str(value)


def plain(value: Hashable) -> Any:
    """A held value as JSON has it: tuples as lists."""
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return value


def freeze(value: Any) -> Hashable:
    """:func:`plain`'s inverse, for values read back from a snapshot."""
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"not a group or field value: {type(value).__name__}")


def _keep(lane: deque[Entry], entry: Entry) -> None:
    """Put ``entry`` in (time, seq) order into a bounded deque; when full, the oldest goes."""
    if not lane or entry[0] >= lane[-1][0]:
        lane.append(entry)  # a full deque drops its oldest itself
        return
    if lane.maxlen is not None and len(lane) >= lane.maxlen:
        if (entry[0], entry[1]) < (lane[0][0], lane[0][1]):
            return  # older than everything kept: it would be the one to go
        lane.popleft()
    insort(lane, entry)


def _latest_before(lane: deque[Entry], entry: Entry) -> Entry | None:
    """The latest entry of ``lane`` strictly before ``entry`` in (time, seq) order."""
    key = (entry[0], entry[1])
    for candidate in reversed(lane):
        if (candidate[0], candidate[1]) < key:
            return candidate
    return None


def _mix(seq: int) -> int:
    """splitmix64 of ``seq``: a fixed, well-spread hash for the percentile sample."""
    z = (seq + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _json(number: float) -> float:
    """A number JSON (orjson: 64-bit integers) can hold: a huge integer as a float."""
    return (
        number if isinstance(number, float) or -(1 << 63) <= number < (1 << 64) else float(number)
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return value


def _entry_out(entry: Entry) -> list[Any]:
    return [entry[0], entry[1], entry[2], list(entry[3]), entry[4]]


def _entry_in(data: Iterable[Any]) -> Entry:
    time, seq, member, ids, weight = data
    return (int(time), int(seq), int(member), tuple(str(i) for i in ids), int(weight))
