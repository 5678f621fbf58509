"""Which log sources an event is of, so that an engine checks an event only against their rules.

Every loaded rule already carries its log source's condition (the *guard* the pipeline adds:
``winlog.channel`` and ``winlog.event_id`` for Windows, ``event.dataset`` and a few more for
the rest; see :mod:`detectors.sigma.pipelines`), so a matcher that runs every rule on every
event is correct. Routing is the optimisation: :class:`LogsourceRouter` evaluates each guard
once per event instead of once per rule, and names the log sources whose guard the event
satisfies; an engine files each rule under :func:`logsource_key` of its log source, as written
(``LoadedRule.logsource``) or as the pipeline left it (``rule.logsource``: Sysmon's items add
``service: sysmon``), and checks an event only against the rules filed under
``router.keys_for(event)``: both keys are named.

The router is built from the same pipeline as the rules, by processing a one-line rule of each
log source and reading the conditions the pipeline added: the guards and the routes cannot
drift apart. Routing never drops a rule the guard would let through; a guard value with
wildcards, or a condition of another shape, only makes the route wider.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from sigma.conditions import ConditionAND
from sigma.exceptions import SigmaError
from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaLogSource, SigmaRule
from sigma.types import SigmaNull, SigmaNumber, SigmaString

from detectors.sigma.fields import MISSING, field_getter, iter_scalars
from detectors.sigma.pipelines import ExactLogsourceCondition, process_rule, resolve_pipelines

# (product, category, service), lower-case; None where the rule names none.
LogsourceKey = tuple[str | None, str | None, str | None]
# Fields whose value picks the guards worth checking for an event (one dict lookup each).
_ANCHORS: Final = ("winlog.channel", "event.dataset")
_PROBE_FIELD: Final = "SocpipeRoutingProbe"
# How many distinct guard-field signatures the router remembers before it forgets them all.
_KNOWN_SIGNATURES: Final = 16_384


def logsource_key(logsource: SigmaLogSource) -> LogsourceKey:
    """The routing key of a log source: its product, category and service in lower case."""
    return (_lower(logsource.product), _lower(logsource.category), _lower(logsource.service))


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


@dataclass(frozen=True, slots=True)
class _Route:
    """A log source and its guard: every (field, accepted values) must hold; None is any value."""

    key: LogsourceKey
    # The key as written and as the pipeline left it (the same for most).
    names: frozenset[LogsourceKey]
    constraints: tuple[tuple[str, frozenset[str] | None], ...]

    def admits(self, event: Mapping[str, Any]) -> bool:
        for path, accepted in self.constraints:
            found = _values(event, path)
            if not found:
                return False
            if accepted is not None and accepted.isdisjoint(found):
                return False
        return True


class LogsourceRouter:
    """The log sources an event is of, by the guards the pipeline gives their rules."""

    def __init__(self, routes: Iterable[_Route]) -> None:
        self._by_anchor: dict[str, dict[str, list[_Route]]] = defaultdict(lambda: defaultdict(list))
        self._unanchored: list[_Route] = []
        self._keys: set[LogsourceKey] = set()
        paths: set[str] = set()
        for route in routes:
            self._keys.update(route.names)
            paths.update(path for path, _ in route.constraints)
            anchor = next(
                (
                    (path, values)
                    for path, values in route.constraints
                    if path in _ANCHORS and values
                ),
                None,
            )
            if anchor is None:
                self._unanchored.append(route)
            else:
                for value in anchor[1]:
                    self._by_anchor[anchor[0]][value].append(route)
        # The answer depends only on the values of the fields the guards name (a few: channel,
        # event id, dataset, ...), and events of one source repeat them: remember the answers.
        self._getters = tuple(field_getter(path) for path in sorted(paths))
        self._known: dict[tuple[Any, ...], frozenset[LogsourceKey]] = {}

    @classmethod
    def build(
        cls, pipeline: ProcessingPipeline | None = None, keys: Iterable[LogsourceKey] = ()
    ) -> LogsourceRouter:
        """Routes for every log source the pipeline names, and for ``keys`` (the rules' own).

        Pass the keys of the loaded rules so that each has a route even when its log source is
        an unusual combination the pipeline's items do not name one by one.
        """
        pipeline = pipeline or resolve_pipelines()
        candidates = set(keys) | _pipeline_keys(pipeline)
        routes = []
        for key in sorted(candidates, key=lambda k: tuple(part or "" for part in k)):
            guard = _guard(pipeline, key)
            if guard is not None:
                processed_key, constraints = guard
                routes.append(_Route(key, frozenset({key, processed_key}), constraints))
        return cls(routes)

    @property
    def keys(self) -> frozenset[LogsourceKey]:
        """The log sources this router can name (those that have a guard)."""
        return frozenset(self._keys)

    def keys_for(self, event: Mapping[str, Any]) -> frozenset[LogsourceKey]:
        """The log sources whose guard ``event`` satisfies."""
        signature = tuple(_hashable(get(event)) for get in self._getters)
        try:
            return self._known[signature]
        except KeyError:
            pass
        except TypeError:  # a value no hash can key (a dict): answer without remembering
            return self._keys_for(event)
        found = self._keys_for(event)
        if len(self._known) >= _KNOWN_SIGNATURES:
            self._known.clear()  # odd traffic (every event a new id): start over, stay bounded
        self._known[signature] = found
        return found

    def _keys_for(self, event: Mapping[str, Any]) -> frozenset[LogsourceKey]:
        found: set[LogsourceKey] = set()
        for anchor, routes_by_value in self._by_anchor.items():
            for value in _values(event, anchor):
                for route in routes_by_value.get(value, ()):
                    if route.key not in found and route.admits(event):
                        found.update(route.names)
        for route in self._unanchored:
            if route.key not in found and route.admits(event):
                found.update(route.names)
        return frozenset(found)


@cache
def default_router() -> LogsourceRouter:
    """The router of the default pipeline (built once, on first use)."""
    return LogsourceRouter.build()


def event_logsource(
    event: Mapping[str, Any], router: LogsourceRouter | None = None
) -> frozenset[LogsourceKey]:
    """The (product, category, service) keys of the log sources ``event`` is of."""
    return (router or default_router()).keys_for(event)


def _pipeline_keys(pipeline: ProcessingPipeline) -> set[LogsourceKey]:
    """Every log source a rule condition of the pipeline's items names."""
    keys: set[LogsourceKey] = set()
    for item in pipeline.items:
        conditions = item.rule_conditions
        found = conditions.values() if isinstance(conditions, dict) else conditions
        for condition in found:
            if isinstance(condition, LogsourceCondition):
                keys.add(logsource_key(condition.logsource))
            elif isinstance(condition, ExactLogsourceCondition):
                source = SigmaLogSource(condition.category, condition.product, condition.service)
                keys.add(logsource_key(source))
    keys.discard((None, None, None))
    return keys


def _guard(
    pipeline: ProcessingPipeline, key: LogsourceKey
) -> tuple[LogsourceKey, tuple[tuple[str, frozenset[str] | None], ...]] | None:
    """The key after the pipeline and the conditions it adds to a rule of log source ``key``.

    None when the pipeline gives such a rule no guard (socpipe has no events of it).
    """
    product, category, service = key
    logsource = {
        name: value
        for name, value in (("product", product), ("category", category), ("service", service))
        if value
    }
    try:
        probe = SigmaRule.from_dict(
            {
                "title": "routing probe",
                "logsource": logsource,
                "detection": {"selection": {_PROBE_FIELD: "x"}, "condition": "selection"},
            }
        )
        processed = process_rule(probe, pipeline)
    except SigmaError:
        return None
    if not processed.guarded:
        return None
    conditions = [condition.condition for condition in processed.rule.detection.parsed_condition]
    constraints: list[tuple[str, frozenset[str] | None]] = []
    for name, detection in processed.rule.detection.detections.items():
        if name == "selection":
            continue
        negated = any(f"not {name} and (" in text or text == f"not {name}" for text in conditions)
        if not negated:
            constraints.extend(_constraints(detection))
        elif all(_is_null_test(item) for item in detection.detection_items):
            # "not (field is null)": the field is present, whatever its value.
            constraints.extend((item.field, None) for item in _items(detection) if item.field)
        # Any other negated condition constrains nothing here: the route is only wider.
    return logsource_key(processed.rule.logsource), tuple(constraints)


def _items(detection: SigmaDetection) -> list[SigmaDetectionItem]:
    return [item for item in detection.detection_items if isinstance(item, SigmaDetectionItem)]


def _is_null_test(item: SigmaDetectionItem | SigmaDetection) -> bool:
    return (
        isinstance(item, SigmaDetectionItem)
        and item.field is not None
        and all(isinstance(value, SigmaNull) for value in item.value)
    )


def _constraints(detection: SigmaDetection) -> list[tuple[str, frozenset[str] | None]]:
    """(field, accepted values) of an added condition: its items ANDed, values ORed."""
    if detection.item_linking not in (None, ConditionAND) and len(detection.detection_items) > 1:
        return []  # another shape than add_condition makes: no constraint (a wider route)
    constraints: list[tuple[str, frozenset[str] | None]] = []
    for item in detection.detection_items:
        if not isinstance(item, SigmaDetectionItem) or item.field is None or item.modifiers:
            continue
        plain: set[str] = set()
        for value in item.value:
            if isinstance(value, SigmaNumber):
                plain.add(str(value.number).lower())
            elif isinstance(value, SigmaString) and not value.contains_special():
                plain.add(str(value).lower())
            else:  # a wildcard or another type: any value passes the route
                constraints.append((item.field, None))
                break
        else:
            constraints.append((item.field, frozenset(plain)))
    return constraints


def _values(event: Mapping[str, Any], path: str) -> list[str]:
    """The values at dotted ``path`` as lower-case text (each element of a list); [] if absent.

    Read by the rules' own field getter, so that routes and guards see the same values.
    """
    node = field_getter(path)(event)
    if node is MISSING or node is None:
        return []
    if type(node) is list or type(node) is tuple:
        return [_text(value) for value in iter_scalars(node) if value is not None]
    return [_text(node)]


def _hashable(value: Any) -> Any:
    """A field's value as part of a dict key: lists become tuples (dicts stay, and fail)."""
    if type(value) is list:
        return tuple(_hashable(item) for item in value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()
