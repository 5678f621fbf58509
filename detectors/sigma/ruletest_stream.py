"""The events of ``socpipe rules test`` cases, and correlation cases: a stream of events through
the run's rules and correlations, and how many times the correlations under test fired.

A case's event is written as ``raw`` (with ``format`` and ``agency``) or as ``event``
(:class:`CaseEvent`, checked by :func:`read_event`); a correlation case gives a ``stream``, a list
of such events (:func:`read_stream`). :func:`make_event` makes the ECS event: ``event`` as
written, ``raw`` as a collector would ship it, through the normalizer. The format is in
:mod:`detectors.sigma.ruletest`.

:meth:`StreamRunner.run` feeds a stream's events, in the order written, to the run's
:class:`SigmaEngine` (every rule of the run, so a correlation's base rules may sit in its own file
or in another file of the paths) and to a fresh :class:`CorrelationEngine` of every correlation of
the run (a chained correlation needs its inner one), as :func:`~detectors.sigma.hunt.hunt` does;
at the end ``advance`` moves the clock past every window, so those decided at their end (``eq``,
``lt``, ...) are decided. Event time is each event's ``@timestamp``. An event more than the
allowance (60 s) older than the newest seen is late and not used, nor is one without a time: the
case then gets a warning, since it does not test what it says.

A case is about the correlations of its file (``rule`` picks one by id, name or title); its hits
are theirs, summed. Hits are counted whatever ``generate`` says: a correlation that only
``generate: false`` correlations reference is not reported in production, yet it fires.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal

from sigma.correlations import SigmaCorrelationRule

from detectors.normalize import Normalizer
from detectors.sigma.compiler import CompiledRule
from detectors.sigma.correlation import (
    CorrelationEngine,
    CorrelationHit,
    build_correlations,
    rule_key,
)
from detectors.sigma.engine import SigmaEngine
from detectors.sigma.loader import KeyPath, Problem
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef, stable_id
from socpipe.settings import Tier

SourceType = Literal["file", "syslog", "evtx", "http"]
# Reports a problem of a tests file: its line, and what is wrong.
ErrorSink = Callable[[int | None, str], None]

RECEIVED: Final = datetime(2025, 6, 1, tzinfo=UTC)
ITEM_KEYS: Final = frozenset({"format", "raw", "event", "agency"})
_SOURCE_TYPES: Final[dict[str, SourceType]] = {"syslog": "syslog", "winlog.evtx": "evtx"}
_END: Final = datetime.max.replace(tzinfo=UTC)
# Failure details name at most this many events of a stream (the first ones) and hits.
_MAX_ITEMS: Final = 40
_MAX_HITS: Final = 10


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """An event of a case as written: a raw record to parse, or an ECS event."""

    line: int
    raw: str | dict[str, Any] | None
    event: dict[str, Any] | None
    format: str = "auto"
    agency: str = "ruletest"


def read_event(
    item: Mapping[str, Any],
    lines: Mapping[str, int],
    line: int,
    formats: frozenset[str],
    error: ErrorSink,
    defaults: CaseEvent | None = None,
) -> CaseEvent | None:
    """The event a case (or a stream's item) gives, or None after saying what is wrong.

    ``lines``: the line of each key of ``item``. A stream case's own ``format`` and ``agency``
    are its items' ``defaults``.
    """
    messages: list[tuple[int | None, str]] = []
    if "event" in item and not isinstance(item["event"], dict):
        messages.append((lines["event"], "'event' must be a mapping (an ECS event)"))
    elif "raw" in item and not isinstance(item["raw"], str | dict):
        messages.append((lines["raw"], "'raw' must be a string (a line) or a mapping (a JSON "
                         "event)"))  # fmt: skip
    fmt = item.get("format", defaults.format if defaults else "auto")
    if "format" in item and "event" in item:
        messages.append((lines["format"], "'format' applies to 'raw' only"))
    elif not isinstance(fmt, str) or fmt not in formats:
        messages.append((lines.get("format", line), f"unknown format {fmt!r}; known: "
                         f"{', '.join(sorted(formats))}"))  # fmt: skip
    agency = item.get("agency", defaults.agency if defaults else "ruletest")
    if not isinstance(agency, str) or not agency:
        messages.append((lines.get("agency", line), "'agency' is the id of the agency the raw "
                         "record comes from"))  # fmt: skip
    for at, message in messages:
        error(at, message)
    if messages:
        return None
    return CaseEvent(line, _plain(item.get("raw")), _plain(item.get("event")), str(fmt), agency)


def read_stream(
    value: Any,
    keys: Mapping[KeyPath, int],
    path: KeyPath,
    defaults: CaseEvent,
    formats: frozenset[str],
    error: ErrorSink,
) -> tuple[CaseEvent, ...]:
    """The events of a stream case, each checked as a case's; ``path`` is the key path of the
    ``stream`` in the document whose key lines are ``keys``."""
    line = keys[path]
    if not isinstance(value, list) or not value:
        error(line, "'stream' is a list of events, each a mapping with 'raw' or 'event'")
        return ()
    items: dict[str, dict[str, int]] = {}  # item index -> its keys' lines
    for key_path, key_line in keys.items():
        if len(key_path) == len(path) + 2 and key_path[: len(path)] == path:
            items.setdefault(key_path[-2], {})[key_path[-1]] = key_line
    sources: list[CaseEvent] = []
    for number, entry in enumerate(value, 1):
        lines = items.get(str(number - 1), {})
        at = min(lines.values(), default=line)
        where = f"stream item {number}"
        if not isinstance(entry, dict):
            error(at, f"{where} is not a mapping")
            continue
        unknown = sorted(set(map(str, entry)) - ITEM_KEYS)
        if unknown:
            error(lines.get(unknown[0], at), f"unknown keys {unknown} in {where}; known: "
                  f"{', '.join(sorted(ITEM_KEYS))}")  # fmt: skip
        elif ("raw" in entry) == ("event" in entry):
            error(at, f"{where}: an item has exactly one of 'raw' and 'event'")
        else:

            def prefixed(at: int | None, message: str, where: str = where) -> None:
                error(at, f"{where}: {message}")

            source = read_event(entry, lines, at, formats, prefixed, defaults)
            sources.extend([source] if source else [])
    return tuple(sources)


def _plain(value: Any) -> Any:
    """YAML's value as JSON would have it: times (YAML reads them unquoted) back to text."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, date | datetime):
        return str(value)
    return value


def make_event(
    source: CaseEvent,
    case: str,
    path: Path,
    normalizer: Normalizer,
    problems: list[Problem],
    number: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The event to match (a stream's ``number``-th), and how it was made (for details).

    ``raw`` becomes a raw record as a collector would ship it (host ``ruletest``, received
    :data:`RECEIVED`) and goes through ``normalizer``; a record no parser recognises is a
    warning in ``problems``.
    """
    if source.event is not None:
        return source.event, ["event: given directly"]
    ref = SourceRef(type=_SOURCE_TYPES.get(source.format, "file"), format=source.format)
    payload: dict[str, Any] = {"data" if isinstance(source.raw, dict) else "message": source.raw}
    # Each event of a stream has its own id: correlations drop an id they have seen (a replay).
    parts = (path, source.line) if number is None else (path, source.line, number)
    raw = RawRecord(
        id=stable_id(*parts),
        agency=AgencyRef(id=source.agency, tier=Tier.PROVINCE),
        collector=CollectorRef(id="socpipe-ruletest", version="1"),
        host="ruletest",
        source=ref,
        received=RECEIVED,
        position=number or 0,
        **payload,
    )
    normalized = normalizer.normalize(raw)
    event: dict[str, Any] = normalized.document  # what the streaming detector matches
    origin = f"raw: {normalized.status} as {normalized.format} (format {source.format})"
    if normalized.status != "parsed":
        # No guard admits an unparsed event: a "match: false" case would pass vacuously.
        item = f"stream item {number}: " if number else ""
        tests = "no rule can match it" if number else "the case tests no rule"
        problems.append(
            Problem(path, source.line, f"case {case!r}: {item}no parser recognised the raw "
                    f"record (format {source.format}); {tests}", severity="warning")
        )  # fmt: skip
    error_message = (event.get("error") or {}).get("message")
    return event, [origin, *([f"parse error: {error_message}"] if error_message else [])]


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """What a stream gave: the hits of the correlations under test, and why (for failures)."""

    hits: int
    details: tuple[str, ...]


class StreamRunner:
    """The run's correlations that can run, by file, ready to judge streams of events.

    ``keys`` are the compiled rules' keys as correlations name them
    (:func:`~detectors.sigma.correlation.keys_by_compiled`). A correlation that cannot run is
    reported in ``problems`` (and its cases are not run).
    """

    def __init__(
        self,
        correlations: Sequence[SigmaCorrelationRule],
        engine: SigmaEngine,
        keys: Mapping[CompiledRule, str],
        normalizer: Normalizer,
        problems: list[Problem],
    ) -> None:
        for correlation in correlations:
            # Every correlation's hits are counted, so none may be quiet (see the docstring).
            # These are the run's own rule objects: nothing else sees the change.
            correlation.generate = True
        built, found = build_correlations(correlations)
        problems.extend(found)
        self._correlations = built.correlations
        self._engine, self._keys, self._normalizer = engine, keys, normalizer
        self._by_file: dict[Path, list[SigmaCorrelationRule]] = {}
        for correlation in self._correlations:
            source = correlation.source
            if source is not None and source.path:
                self._by_file.setdefault(Path(str(source.path)), []).append(correlation)

    def of_file(self, path: Path) -> list[SigmaCorrelationRule]:
        """The correlations of a rule file that can run."""
        return self._by_file.get(path, [])

    def run(
        self,
        case: str,
        line: int,
        events: Sequence[CaseEvent],
        targets: Collection[SigmaCorrelationRule],
        path: Path,
        problems: list[Problem],
    ) -> StreamOutcome:
        """Make the events of case ``case`` (at ``line`` of tests file ``path``) and feed them
        in order, then close every window; count the targets' hits."""
        correlations = CorrelationEngine(self._correlations)
        hits: list[CorrelationHit] = []
        details: list[str] = []
        for number, source in enumerate(events, 1):
            event, origin = make_event(source, case, path, self._normalizer, problems, number)
            matched = self._engine.match(event)
            keys = [self._keys[rule] for rule in matched if rule in self._keys]
            hits.extend(correlations.observe(keys, event))
            if number <= _MAX_ITEMS:
                titles = ", ".join(repr(rule.title) for rule in matched) or "no rule"
                when = _text(event.get("@timestamp", "no @timestamp"))
                details.append(f"item {number} (line {source.line}): {'; '.join(origin)}; "
                               f"{when}; matched {titles}")  # fmt: skip
        if len(events) > _MAX_ITEMS:
            details.append(f"... and {len(events) - _MAX_ITEMS} more items")
        hits.extend(correlations.advance(_END))
        wanted = {identity(target) for target in targets}
        mine = [hit for hit in hits if (hit.correlation_id, hit.key, hit.title) in wanted]
        details.append(f"hits: {len(mine)} of the correlations tested, {len(hits)} in all")
        details.extend(map(_hit_text, hits[:_MAX_HITS]))
        if len(hits) > _MAX_HITS:
            details.append(f"... and {len(hits) - _MAX_HITS} more hits")
        late, untimed = correlations.stats.late, correlations.stats.untimed
        if late or untimed:
            problems.append(
                Problem(path, line, f"case {case!r}: {late} events more than 60 s older than "
                        f"one before them and {untimed} without @timestamp were not used (write "
                        "the stream in time order, each event with its time)", severity="warning")
            )  # fmt: skip
        return StreamOutcome(len(mine), tuple(details))


def identity(correlation: SigmaCorrelationRule) -> tuple[str | None, str, str]:
    """How a hit names its correlation: id, key (id, else name) and title."""
    rule_id = str(correlation.id) if correlation.id is not None else None
    return rule_id, rule_key(correlation), str(correlation.title or "")


def names(correlation: SigmaCorrelationRule) -> tuple[str, ...]:
    """What a case's ``rule`` may call a correlation: its id, name or title (in that order)."""
    found = (correlation.id, correlation.name, correlation.title)
    return tuple(str(value) for value in found if value)


def _hit_text(hit: CorrelationHit) -> str:
    group = ", ".join(f"{field}: {value}" for field, value in hit.group.items())
    return (
        f"hit of {hit.title!r}: {{{group}}}, {_text(hit.window_start)} to "
        f"{_text(hit.window_end)}, {hit.type} {hit.value}, {hit.event_count} events"
    )


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


__all__ = [
    "ITEM_KEYS",
    "RECEIVED",
    "CaseEvent",
    "StreamOutcome",
    "StreamRunner",
    "identity",
    "make_event",
    "names",
    "read_event",
    "read_stream",
]
