"""Reading a dotted field from a nested ECS event, the way the Sigma matcher sees it.

An event is a nested dict (``{"winlog": {"event_data": {"Image": ...}}}``); a rule names a field
by its dotted path (``winlog.event_data.Image``). :func:`field_getter` compiles a path into a
function that returns the field's value, or :data:`MISSING` when the event has no such field.
Along the way it accepts what JSON-like events hold in practice:

- keys that themselves contain dots (``{"winlog.event_id": 1}``, or ``{"winlog": {"event_data.X":
  ...}}``), tried only when the nested walk fails, so the common case costs one dict lookup per
  path segment;
- lists of objects on the way (``{"threat": [{"id": "a"}, {"id": "b"}]}`` for ``threat.id``),
  which yield the list of the values found, as Elasticsearch flattens arrays of objects;
- any value at the end: a string, a number, a bool, None, a list (of anything), a dict.

Nothing here raises on odd input; the value tests in :mod:`detectors.sigma.values` decide what a
non-string value means. :func:`value_text`, :func:`field_texts` and :func:`keyword_texts` say which
text a string test (and so a prefilter) looks at.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

import orjson


class Missing(enum.Enum):
    """The type of :data:`MISSING`: the event has no such field (distinct from a None value)."""

    MISSING = enum.auto()


MISSING: Final = Missing.MISSING

FieldGetter = Callable[[Mapping[str, Any]], Any]

# Where keyword detections (values without a field) look first; see keyword_texts.
KEYWORD_FIELDS: Final = ("event.original", "message")

# Bounds the fallback walks over a whole event: a JSON-like event is a tree, but a caller could
# hand us a huge or (in Python) self-referencing structure, and matching must stay bounded.
_MAX_NODES: Final = 100_000


@lru_cache(maxsize=65_536)
def field_getter(path: str) -> FieldGetter:
    """A function returning the value at dotted ``path`` in an event, or :data:`MISSING`.

    Several values found (through lists of objects, or both a nested and a dotted key) come back
    as one flat list. Getters are cached by path: rules naming the same field share one.
    """
    parts = tuple(path.split("."))
    if len(parts) == 1:

        def get_top(event: Mapping[str, Any]) -> Any:
            if type(event) is dict:
                return event.get(path, MISSING)
            return _resolve(event, parts)

        return get_top

    # For each segment, the dotted keys that could stand for it and what follows
    # ("a.b.c", "a.b" for segment "a" of a.b.c): looked up only when the segment is missing.
    steps = tuple(
        (part, tuple(".".join(parts[index:end]) for end in range(len(parts), index + 1, -1)))
        for index, part in enumerate(parts)
    )

    def get_nested(event: Mapping[str, Any]) -> Any:
        node: Any = event
        # The common cases cost one dict lookup per segment: dicts all the way, or a segment
        # missing with no dotted key for it. Lists on the way, dotted keys and non-dict Mappings
        # take the general walk.
        for part, dotted in steps:
            if type(node) is not dict:
                if type(node) is list or type(node) is tuple or isinstance(node, Mapping):
                    return _resolve(event, parts)
                return MISSING
            child = node.get(part, MISSING)
            if child is MISSING:
                for key in dotted:
                    if key in node:
                        return _resolve(event, parts)
                return MISSING
            node = child
        return node

    if len(parts) == 2:
        first, last = parts

        def get_two(event: Mapping[str, Any]) -> Any:
            # The hit of all dicts, unrolled (this runs for every field of every rule tried);
            # anything else is the general walk's to answer.
            if type(event) is dict:
                node = event.get(first, MISSING)
                if type(node) is dict:
                    value = node.get(last, MISSING)
                    if value is not MISSING:
                        return value
                    return MISSING  # a last segment has no dotted spelling left
            return get_nested(event)

        return get_two
    if len(parts) == 3:
        first, middle, last = parts

        def get_three(event: Mapping[str, Any]) -> Any:
            if type(event) is dict:
                node = event.get(first, MISSING)
                if type(node) is dict:
                    inner = node.get(middle, MISSING)
                    if type(inner) is dict:
                        value = inner.get(last, MISSING)
                        if value is not MISSING:
                            return value
                        return MISSING
            return get_nested(event)

        return get_three
    return get_nested


def _resolve(event: Any, parts: tuple[str, ...]) -> Any:
    """The general walk: dotted keys, lists of objects, any Mapping; iterative, so bounded."""
    found: list[Any] = []
    stack: list[tuple[Any, int]] = [(event, 0)]
    count = len(parts)
    visited = 0
    while stack and visited < _MAX_NODES:
        node, index = stack.pop()
        visited += 1
        if index == count:
            found.append(node)
        elif isinstance(node, Mapping):
            # Longest dotted key first, so {"a.b": 1} wins over nothing and {"a": {"b": 2}}
            # also counts: both are the field a.b. Pushed in reverse to pop in that order.
            matches: list[tuple[Any, int]] = []
            for end in range(count, index, -1):
                key = ".".join(parts[index:end])
                try:
                    if key in node:
                        matches.append((node[key], end))
                except Exception:  # noqa: S112  # a foreign Mapping may raise on lookup: no value
                    continue
            stack.extend(reversed(matches))
        elif type(node) is list or type(node) is tuple:
            stack.extend((item, index) for item in reversed(node))
    if not found:
        return MISSING
    if len(found) == 1:
        return found[0]
    flat: list[Any] = []
    for value in found:
        if type(value) is list or type(value) is tuple:
            flat.extend(value)
        else:
            flat.append(value)
    return flat


def iter_scalars(value: list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    """The items of a list value, nested lists flattened (as Elasticsearch indexes them)."""
    stack: list[Any] = [iter(value)]
    visited = 0
    while stack:
        for item in stack[-1]:
            visited += 1
            if visited > _MAX_NODES:
                return
            if type(item) is list or type(item) is tuple:
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def value_text(value: Any) -> str | None:
    """The text a string test sees for one (non-list) event value, or None if it has none.

    Strings are themselves; numbers their decimal form (a rule's ``EventID: '4688'`` matches an
    event's 4688); booleans ``true``/``false``; times as JSON writes them
    (``2026-11-27T03:00:00Z``); None, dicts and other objects have no text.
    """
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is float:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, datetime):
        # A document's times are datetimes (see Normalized.document): their text is the JSON's.
        return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()[1:-1]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return repr(value)
        except Exception:
            return None
    return None


def field_texts(event: Mapping[str, Any], path: str) -> list[str]:
    """The casefolded texts of a field's values: what a case-insensitive string test looks at.

    This is the text that :attr:`CompiledRule.required_literals` speaks about: a rule can only
    match when each required literal group has a literal in one of these (or, for keywords, in
    :func:`keyword_texts`, casefolded).
    """
    return texts_of(field_getter(path)(event))


def texts_of(value: Any) -> list[str]:
    """The casefolded texts of a value a field getter returned (see :func:`field_texts`)."""
    if value is MISSING:
        return []
    values = iter_scalars(value) if type(value) is list or type(value) is tuple else (value,)
    texts = []
    for item in values:
        text = value_text(item)
        if text is not None:
            texts.append(text.casefold())
    return texts


def keyword_texts(event: Mapping[str, Any]) -> list[str]:
    """The texts a keyword detection searches: ``event.original`` and ``message``.

    An original that is a JSON object (an event shipped as JSON: Windows events from NXLog,
    winlogbeat or an EVTX file, JSON application logs) is searched as the string values it
    holds, decoded, not as JSON text, which escapes every backslash (a rule's path keyword would
    never match it). An event with neither field is searched in all its string values.
    """
    original = field_getter("event.original")(event)
    if is_structured(original):
        decoded = structured_original(original)
        # Text that only looks like a JSON object is searched as it is.
        return _all_strings(decoded) if decoded is not None else [original]
    texts: list[str] = []
    present = False
    for path in KEYWORD_FIELDS:
        value = original if path == "event.original" else field_getter(path)(event)
        if value is MISSING or value is None:
            continue
        present = True
        if type(value) is str:
            texts.append(value)
        elif type(value) is list or type(value) is tuple:
            texts.extend(item for item in iter_scalars(value) if isinstance(item, str))
        elif isinstance(value, str):
            texts.append(str.__str__(value))
    return texts if present else _all_strings(event)


def is_structured(original: Any) -> bool:
    """Whether an event's original text looks like a JSON object (see :func:`keyword_texts`)."""
    if type(original) is not str or original[:1] != "{":
        return False
    return original[-1:] == "}" or original.rstrip()[-1:] == "}"


def structured_original(original: str) -> dict[str, Any] | None:
    """The JSON object an event's original text is, or None if it is not one."""
    try:
        decoded = orjson.loads(original)
    except orjson.JSONDecodeError:
        return None
    return decoded if type(decoded) is dict else None


def _all_strings(event: Any) -> list[str]:
    """Every string value in a nested structure, iteratively and within a node budget."""
    texts: list[str] = []
    stack: list[Any] = [event]
    visited = 0
    while stack and visited < _MAX_NODES:
        node = stack.pop()
        visited += 1
        if type(node) is str:
            texts.append(node)
        elif type(node) is dict:
            stack.extend(node.values())
        elif type(node) is list or type(node) is tuple:
            stack.extend(node)
        elif isinstance(node, str):
            texts.append(str.__str__(node))
        elif isinstance(node, Mapping):
            try:
                stack.extend(node.values())
            except Exception:  # noqa: S112  # a foreign Mapping may raise: skip it
                continue
    return texts
