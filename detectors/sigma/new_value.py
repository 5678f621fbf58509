"""socpipe's ``new_value`` correlation: a value its group has not shown within the timespan.

Sigma v2 has no "first seen" correlation (Elastic writes it as a new_terms rule, Splunk as a
first-seen search); a SOC needs it for "a logon at night *from a source this account never
used*". Rule authors write it as a correlation of type ``new_value``::

    correlation:
      type: new_value
      rules:                      # every referenced rule's events teach the history
        - windows_logon_success
        - windows_logon_outside_working_hours
      group-by: [user.name]
      timespan: 30d               # a value is known for this long after it was last seen
      condition:
        field: [source.ip, host.name]   # one field, or several read as one combination
        learning: 14d             # a group fires only once its history is this old
                                  # (default and most: the timespan)
        alert-on:                 # the rules whose events fire (default: every referenced)
          - windows_logon_outside_working_hours

The loader reads such a rule as a ``value_count`` correlation (so pySigma parses, resolves and
checks everything standard: rules, group-by, aliases, timespan, fields) and keeps the socpipe
part in the rule's custom attribute :data:`ATTRIBUTE`; :func:`options_of` reads it back for
the engine. Another Sigma tool refuses the type, as it should: it cannot run it.

Why ``learning`` is at most the timespan: a correlator rebuilds its state by replaying
``soc.correlate`` over the longest timespan, so a history older than that is not there after a
restart (and ``soc.correlate`` must keep that long: 35 days by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationTimespan
from sigma.exceptions import SigmaError

TYPE: Final = "new_value"
ATTRIBUTE: Final = "socpipe_new_value"
_OPTIONS: Final = ("field", "learning", "alert-on")


@dataclass(frozen=True, slots=True)
class NewValueOptions:
    """What a new_value correlation adds to a value_count: learning (seconds) and alert-on."""

    learning_s: int
    alert_on: tuple[str, ...]  # rule references, as written; empty: every referenced rule


def translate(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], str]]]:
    """A rule's YAML data as pySigma can parse it, and problems as (key path, message).

    Data that is not a new_value correlation comes back unchanged."""
    correlation = data.get("correlation")
    if not isinstance(correlation, Mapping) or correlation.get("type") != TYPE:
        return data, []
    problems: list[tuple[tuple[str, ...], str]] = []
    where = ("correlation", "condition")
    condition = correlation.get("condition")
    if not isinstance(condition, Mapping):
        return data, [(where, "a new_value correlation needs a condition with a field")]
    for key in condition:
        if key not in _OPTIONS:
            problems.append(((*where, str(key)), f"{key!r} is not a new_value option: {_OPTIONS}"))
    timespan = correlation.get("timespan")
    learning = condition.get("learning", timespan)
    seconds = _seconds(learning)
    limit = _seconds(timespan)
    if seconds is None:
        problems.append(((*where, "learning"), f"learning {learning!r} is not a timespan (7d)"))
    elif limit is not None and seconds > limit:
        message = f"learning {learning} is longer than the timespan {timespan}: a correlator "
        problems.append(((*where, "learning"), message + "keeps no older history"))
    alert_on = condition.get("alert-on", [])
    alert_on = [alert_on] if isinstance(alert_on, str) else alert_on
    rules = correlation.get("rules")
    rules = [rules] if isinstance(rules, str) else rules if isinstance(rules, list) else []
    if not isinstance(alert_on, list) or not all(isinstance(item, str) for item in alert_on):
        problems.append(((*where, "alert-on"), "alert-on is a rule reference or a list of them"))
        alert_on = []
    for reference in alert_on:
        if reference not in rules:
            message = f"alert-on names {reference!r}, which the correlation does not reference"
            problems.append(((*where, "alert-on"), message))
    translated = dict(data)
    translated["correlation"] = dict(correlation) | {
        "type": "value_count",
        "condition": {"field": condition.get("field"), "gte": 1},
    }
    translated[ATTRIBUTE] = {"learning_s": seconds or 0, "alert_on": list(alert_on)}
    return translated, problems


def options_of(rule: SigmaCorrelationRule) -> NewValueOptions | None:
    """The new_value options of a correlation the loader translated; None for any other."""
    options = rule.custom_attributes.get(ATTRIBUTE)
    if not isinstance(options, Mapping):
        return None
    return NewValueOptions(int(options["learning_s"]), tuple(options["alert_on"]))


def _seconds(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(SigmaCorrelationTimespan(text).seconds)
    except (SigmaError, ValueError, KeyError):
        return None


__all__ = ["ATTRIBUTE", "TYPE", "NewValueOptions", "options_of", "translate"]
