"""Which family a Windows event belongs to, and filling its ECS fields from the family's table.

``family_for`` picks the family of an event from its provider, or from its channel when the
provider is missing; ``apply_family`` sets ``event.module`` and ``event.dataset`` and runs the
family's mappers. The families are defined in ``windows_security`` and ``windows_sysmon``; what a
family is, in ``windows_fields``.
"""

from __future__ import annotations

from detectors.parsers.base import Fragment
from detectors.parsers.windows_fields import Family, Fields
from detectors.parsers.windows_security import (
    EVENTLOG_FAMILY,
    SECURITY_FAMILY,
    SERVICE_CONTROL_FAMILY,
)
from detectors.parsers.windows_sysmon import (
    DEFENDER_FAMILY,
    POWERSHELL_FAMILY,
    POWERSHELL_OPERATIONAL_FAMILY,
    SYSMON_FAMILY,
)

_FAMILIES = {
    "security": SECURITY_FAMILY,
    "eventlog": EVENTLOG_FAMILY,
    "service_control": SERVICE_CONTROL_FAMILY,
    "sysmon": SYSMON_FAMILY,
    "powershell": POWERSHELL_FAMILY,
    "powershell_operational": POWERSHELL_OPERATIONAL_FAMILY,
    "defender": DEFENDER_FAMILY,
}
GENERIC = Family("generic", "windows", "windows.winlog", {})

_BY_PROVIDER = {
    "microsoft-windows-security-auditing": "security",
    "microsoft-windows-eventlog": "eventlog",
    "eventlog": "eventlog",
    "service control manager": "service_control",
    "microsoft-windows-sysmon": "sysmon",
    "powershell": "powershell",
    "microsoft-windows-powershell": "powershell_operational",
    "microsoft-windows-windows defender": "defender",
}
# For events whose provider is missing (a shipper that dropped it): the channel decides.
_BY_CHANNEL = {
    "security": "security",
    "microsoft-windows-sysmon/operational": "sysmon",
    "windows powershell": "powershell",
    "microsoft-windows-powershell/operational": "powershell_operational",
    "microsoft-windows-windows defender/operational": "defender",
}


def family_for(provider: str | None, channel: str | None) -> Family:
    """The family of an event from its provider, else its channel; GENERIC when unknown."""
    if provider:
        name = _BY_PROVIDER.get(provider.lower())
        if name is not None:
            return _FAMILIES[name]
    if channel and not provider:
        name = _BY_CHANNEL.get(channel.lower())
        if name is not None:
            return _FAMILIES[name]
    return GENERIC


def apply_family(family: Family, code: int, fields: Fields, fragment: Fragment) -> bool:
    """Fill the fragment's ECS fields for this event; True when its event id has a mapping."""
    event = fragment["event"]
    event["module"] = family.module
    event["dataset"] = family.dataset
    for mapper in family.common:
        mapper(fields, fragment, code)
    kind = family.events.get(code)
    if kind is None:
        return False
    event["action"] = kind.action
    if kind.category:
        event["category"] = list(kind.category)
    if kind.type:
        event["type"] = list(kind.type)
    if kind.kind != "event":
        event["kind"] = kind.kind
    if kind.outcome is not None and "outcome" not in event:
        event["outcome"] = kind.outcome
    for mapper in kind.mappers:
        mapper(fields, fragment, code)
    return True
