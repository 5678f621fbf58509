"""Windows event logs as ECS: events from .evtx files, and flat JSON lines from log shippers.

Two shapes of the same events:

- ``WinlogEvtxParser`` (``winlog.evtx``): the JSON the ``evtx`` package and ``evtx_dump`` write,
  ``{"Event": {"System": {...}, "EventData": {...}}}``, or ``UserData`` instead of
  ``EventData`` for events whose fields sit under one named element (``LogFileCleared``).
- ``WinlogFlatParser`` (``winlog.json``): one JSON object per event with the event data fields
  at the top level beside ``EventID``, ``Channel``, ``Hostname``, ``SourceName``, ``EventTime``,
  as NXLog's ``im_msvistalog`` writes them (and the OTRF Security-Datasets keep them).

Both give the fields winlogbeat gives (``winlog.*``, with ``winlog.event_data`` holding every
event data field unchanged, and ``winlog.user_data`` the UserData fields plus ``xml_name``),
``host.name`` from the event's computer, and the ECS fields Elastic's security, sysmon and
powershell modules derive, per provider and event id (see ``windows_families``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

from detectors.parsers.base import DataParser, Fragment, NotMine, ParseContext
from detectors.parsers.windows_families import apply_family, family_for
from detectors.parsers.windows_fields import number, text
from detectors.parsers.windows_values import SECURITY_TASKS
from detectors.syslog import zone_named

# Event.System.Level, as winlogbeat names the levels in log.level.
_LEVELS = {
    0: "information",
    1: "critical",
    2: "error",
    3: "warning",
    4: "information",
    5: "verbose",
}
# NXLog's Severity, which it derives from the level.
_SEVERITIES = {
    "INFO": "information", "WARNING": "warning", "ERROR": "error", "CRITICAL": "critical",
    "DEBUG": "verbose",
}  # fmt: skip
_OPCODES = {
    0: "Info", 1: "Start", 2: "Stop", 3: "DCStart", 4: "DCStop", 5: "Extension", 6: "Reply",
    7: "Resume", 8: "Suspend", 9: "Send", 240: "Receive",
}  # fmt: skip
# The standard keyword bits (winmeta.xml); providers define the low 48 bits themselves.
_KEYWORDS = (
    (0x1000000000000, "Response Time"), (0x2000000000000, "WDI Context"),
    (0x4000000000000, "WDI Diag"), (0x8000000000000, "Sqm"),
    (0x10000000000000, "Audit Failure"), (0x20000000000000, "Audit Success"),
    (0x40000000000000, "Correlation Hint"), (0x80000000000000, "Classic"),
)  # fmt: skip
_AUDIT_FAILURE, _AUDIT_SUCCESS = 0x10000000000000, 0x20000000000000
_AUDIT_TYPES = {"AUDIT_SUCCESS": "success", "AUDIT_FAILURE": "failure"}
_SECURITY_PROVIDER = "microsoft-windows-security-auditing"

_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?\s*(Z|UTC|[+-]\d\d:?\d\d)?",
    re.IGNORECASE,
)
_MAX_TIME_TEXT = 64


@dataclass(slots=True)
class _System:
    """What both shapes say about an event besides its data, before it becomes ECS."""

    event_id: int
    channel: str | None = None
    provider: str | None = None
    provider_guid: str | None = None
    computer: str | None = None
    record_id: str | None = None
    pid: int | None = None
    thread_id: int | None = None
    user: dict[str, str] = field(default_factory=dict)
    keywords: int | None = None
    audit: str | None = None
    level: str | None = None
    task: str | None = None
    opcode: str | None = None
    version: int | None = None
    activity_id: str | None = None
    related_activity_id: str | None = None
    timestamp: datetime | None = None
    timezone: str | None = None
    message: str | None = None


class WinlogEvtxParser(DataParser):
    """Events as the ``evtx`` package and ``evtx_dump`` write them (``{"Event": {...}}``)."""

    name: ClassVar[str] = "winlog.evtx"
    dataset: ClassVar[str] = "windows.winlog"

    def sniff(self, data: Mapping[str, Any]) -> bool:
        """An ``Event`` holding a ``System``."""
        event = data.get("Event")
        return isinstance(event, Mapping) and isinstance(event.get("System"), Mapping)

    def parse(self, data: Mapping[str, Any], context: ParseContext) -> Fragment:
        """The ECS fragment; NotMine without ``Event.System`` and a numeric ``EventID``."""
        event = data.get("Event") if isinstance(data, Mapping) else None
        system = event.get("System") if isinstance(event, Mapping) else None
        if not isinstance(event, Mapping) or not isinstance(system, Mapping):
            raise NotMine("not an EVTX event: no Event.System")
        event_id = _event_id(system.get("EventID"))
        if event_id is None:
            raise NotMine("not an EVTX event: no numeric Event.System.EventID")
        provider = _attributes(system.get("Provider"))
        execution = _attributes(system.get("Execution"))
        correlation = _attributes(system.get("Correlation"))
        info = _System(
            event_id=event_id,
            channel=text(_scalar(system.get("Channel"))),
            provider=text(provider.get("Name")) or text(provider.get("EventSourceName")),
            provider_guid=text(provider.get("Guid")),
            computer=text(_scalar(system.get("Computer"))),
            record_id=text(_scalar(system.get("EventRecordID"))),
            pid=number(execution.get("ProcessID")),
            thread_id=number(execution.get("ThreadID")),
            keywords=_keywords(_scalar(system.get("Keywords"))),
            version=number(_scalar(system.get("Version"))),
            activity_id=text(correlation.get("ActivityID")),
            related_activity_id=text(correlation.get("RelatedActivityID")),
        )
        sid = text(_attributes(system.get("Security")).get("UserID"))
        if sid is not None:
            info.user["identifier"] = sid
        level = number(_scalar(system.get("Level")))
        info.level = _LEVELS.get(level) if level is not None else None
        info.task = _task_name(_scalar(system.get("Task")), info.provider)
        opcode = number(_scalar(system.get("Opcode")))
        info.opcode = _OPCODES.get(opcode, str(opcode)) if opcode is not None else None
        # SystemTime is UTC by definition, whether or not the text says so.
        found = _time(_attributes(system.get("TimeCreated")).get("SystemTime"), None)
        if found is not None:
            info.timestamp = found[0]
        return _fragment(
            info, _event_data(event.get("EventData")), _user_data(event.get("UserData"))
        )


# NXLog's own fields (im_msvistalog), and what Logstash or OTRF added; everything else is data.
_FLAT_META = frozenset({
    "EventID", "Channel", "SourceName", "Hostname", "Computer", "EventTime", "EventReceivedTime",
    "TimeCreated", "@timestamp", "@version", "tags", "host", "port", "Keywords", "Severity",
    "SeverityValue", "Level", "ProviderGuid", "Task", "Category", "Opcode", "OpcodeValue",
    "RecordNumber", "EventRecordID", "ActivityID", "RelatedActivityID", "ExecutionProcessID",
    "ThreadID", "UserID", "Message", "ERROR_EVT_UNRESOLVED", "SourceModuleName",
    "SourceModuleType", "EventTypeOrignal", "EventTypeOriginal",
})  # fmt: skip


class WinlogFlatParser(DataParser):
    """One JSON object per event, event data fields at the top level (NXLog, OTRF datasets)."""

    name: ClassVar[str] = "winlog.json"
    dataset: ClassVar[str] = "windows.winlog"

    def sniff(self, data: Mapping[str, Any]) -> bool:
        """An ``EventID`` beside a ``Channel`` or ``SourceName``."""
        return "EventID" in data and ("Channel" in data or "SourceName" in data)

    def parse(self, data: Mapping[str, Any], context: ParseContext) -> Fragment:
        """The ECS fragment; NotMine without a numeric ``EventID`` and a channel or provider."""
        if not isinstance(data, Mapping):
            raise NotMine("not a flat Windows event: not a mapping")
        event_id = _event_id(data.get("EventID"))
        if event_id is None:
            raise NotMine("not a flat Windows event: no numeric EventID")
        has_source = "SourceName" in data
        provider = text(data.get("SourceName" if has_source else "ProviderName"))
        channel = text(data.get("Channel"))
        if channel is None and provider is None:
            raise NotMine("not a flat Windows event: neither Channel nor SourceName")
        info = _System(
            event_id=event_id,
            channel=channel,
            provider=provider,
            provider_guid=text(data.get("ProviderGuid")),
            computer=text(data.get("Hostname")) or text(data.get("Computer")),
            record_id=text(data.get("RecordNumber")) or text(data.get("EventRecordID")),
            thread_id=number(data.get("ThreadID")),
            keywords=_keywords(data.get("Keywords")),
            activity_id=text(data.get("ActivityID")),
            related_activity_id=text(data.get("RelatedActivityID")),
            message=data.get("Message") if isinstance(data.get("Message"), str) else None,
        )
        meta = _flat_meta(data, has_source)
        pid = data.get("ExecutionProcessID")
        if pid is None and "ProcessID" in meta:
            pid = data.get("ProcessID")
        info.pid = number(pid)
        sid = text(data.get("UserID"))
        if sid is not None:
            info.user["identifier"] = sid
            for key, name in (
                ("AccountName", "name"),
                ("Domain", "domain"),
                ("AccountType", "type"),
            ):
                found = text(data.get(key))
                if found is not None:
                    info.user[name] = found
        if "EventType" in meta:
            info.audit = _AUDIT_TYPES.get(text(data.get("EventType")) or "")
        level = number(data.get("Level"))
        if level is not None:
            info.level = _LEVELS.get(level)
        else:
            info.level = _SEVERITIES.get(text(data.get("Severity")) or "")
        info.task = text(data.get("Category")) or _task_name(data.get("Task"), provider)
        info.opcode = text(data.get("Opcode"))
        if info.opcode is None and (opcode := number(data.get("OpcodeValue"))) is not None:
            info.opcode = _OPCODES.get(opcode, str(opcode))
        version = data.get("Version")
        info.version = version if "Version" in meta and isinstance(version, int) else None
        # The event's own time first; @timestamp is often the shipper's. A zone-less time (NXLog's
        # EventTime) is in the sending host's zone, which the source's settings name.
        for key in ("TimeCreated", "EventTime", "@timestamp"):
            stamp = _time(data.get(key), context.timezone)
            if stamp is not None:
                info.timestamp, info.timezone = stamp
                break
        event_data = {key: value for key, value in data.items() if key not in meta}
        return _fragment(info, event_data, None)


def _flat_meta(data: Mapping[str, Any], has_source: bool) -> frozenset[str]:
    """The keys of ``data`` that are the shipper's, not event data: some names are both."""
    extra = []
    # OTRF renames NXLog's EventType when Sysmon's event data has one of its own.
    if "EventTypeOrignal" not in data and "EventTypeOriginal" not in data:
        extra.append("EventType")
    # NXLog resolves UserID into these; without UserID they are event data (7045 AccountName).
    if "UserID" in data:
        extra += ("AccountName", "Domain", "AccountType")
    # NXLog's process id is a number; the event data's (5156) is text.
    if "ExecutionProcessID" not in data and isinstance(data.get("ProcessID"), int):
        extra.append("ProcessID")
    if not has_source:
        extra.append("ProviderName")
    # NXLog's event version is a number; Sysmon 4's Version is text.
    if isinstance(data.get("Version"), int):
        extra.append("Version")
    return _FLAT_META.union(extra)


def _fragment(
    info: _System, event_data: dict[str, Any] | None, user_data: dict[str, Any] | None
) -> Fragment:
    code = str(info.event_id)
    event: dict[str, Any] = {"kind": "event", "code": code}
    winlog: dict[str, Any] = {"event_id": code}
    fragment: Fragment = {"event": event, "winlog": winlog}
    if info.timestamp is not None:
        fragment["@timestamp"] = info.timestamp
        if info.timezone is not None:
            event["timezone"] = info.timezone
    if info.provider is not None:
        event["provider"] = info.provider
        winlog["provider_name"] = info.provider
    if info.computer is not None:
        fragment["host"] = {"name": info.computer}
        winlog["computer_name"] = info.computer
    if info.message is not None:
        fragment["message"] = info.message
    if info.level is not None:
        fragment["log"] = {"level": info.level}
    for key, value in (
        ("channel", info.channel),
        ("provider_guid", info.provider_guid),
        ("record_id", info.record_id),
        ("task", info.task),
        ("opcode", info.opcode),
        ("version", info.version),
        ("activity_id", info.activity_id),
        ("related_activity_id", info.related_activity_id),
    ):
        if value is not None:
            winlog[key] = value
    if info.pid is not None or info.thread_id is not None:
        process: dict[str, Any] = {}
        winlog["process"] = process
        if info.pid is not None:
            process["pid"] = info.pid
        if info.thread_id is not None:
            process["thread"] = {"id": info.thread_id}
    if info.user:
        winlog["user"] = info.user
    _keywords_and_outcome(info, winlog, event)
    if info.task is not None and not info.task.isdigit():
        event["action"] = info.task  # winlogbeat's default action: the task's name
    if event_data:
        winlog["event_data"] = event_data
    if user_data:
        winlog["user_data"] = user_data
    fields: Mapping[str, Any] = event_data or user_data or {}
    if event_data and user_data:
        fields = {**user_data, **event_data}
    family = family_for(info.provider, info.channel)
    if family.user_id_from_identifier and "identifier" in info.user:
        fragment["user"] = {"id": info.user["identifier"]}
    if family.name == "sysmon":
        # Sysmon's own UTC time of the observation, as Elastic's pipeline takes it.
        found = _time(fields.get("UtcTime"), None)
        if found is not None:
            fragment["@timestamp"] = found[0]
            event.pop("timezone", None)
    apply_family(family, info.event_id, fields, fragment)
    return fragment


def _keywords_and_outcome(info: _System, winlog: dict[str, Any], event: dict[str, Any]) -> None:
    if info.keywords is not None:
        names = [name for bit, name in _KEYWORDS if info.keywords & bit]
        if names:
            winlog["keywords"] = names
        if info.keywords & _AUDIT_FAILURE:
            event["outcome"] = "failure"
        elif info.keywords & _AUDIT_SUCCESS:
            event["outcome"] = "success"
    if "outcome" not in event and info.audit is not None:
        event["outcome"] = info.audit


def _event_data(node: Any) -> dict[str, Any] | None:
    """EventData's fields, unchanged; unnamed ``Data`` values become ``param1``, ``param2``..."""
    if node is None:
        return None
    if not isinstance(node, Mapping):
        return _data_values(node) if isinstance(node, (list, str, int)) else None
    fields: dict[str, Any] = {}
    for key, value in node.items():
        if key == "#attributes":
            continue  # the element's own attributes (Name="TaskDisabled"), not fields
        if key == "Data" and isinstance(value, (list, Mapping)):
            fields.update(_data_values(value))
        else:
            fields[key] = value
    return fields


def _data_values(value: Any) -> dict[str, Any]:
    """``<Data>`` elements: named ones by name, unnamed ones as ``param1``... (winlogbeat's)."""
    if isinstance(value, Mapping):
        name = text(_attributes(value).get("Name"))
        inner = value.get("#text")
        if name is not None:
            return {name: inner}
        value = inner if isinstance(inner, list) else [inner] if "#text" in value else [value]
    elif not isinstance(value, list):
        value = [value]
    fields: dict[str, Any] = {}
    for index, item in enumerate(value, 1):
        if isinstance(item, Mapping) and "#attributes" in item:
            name = text(_attributes(item).get("Name"))
            if name is not None:
                fields[name] = item.get("#text")
                continue
            item = item.get("#text")
        fields[f"param{index}"] = item
    return fields


def _user_data(node: Any) -> dict[str, Any] | None:
    """UserData's one named element flattened, its name kept as ``xml_name`` as winlogbeat does."""
    if not isinstance(node, Mapping):
        return None
    for name, inner in node.items():
        if name == "#attributes":
            continue
        fields = {"xml_name": name} if isinstance(name, str) else {}
        if isinstance(inner, Mapping):
            fields.update((key, value) for key, value in inner.items() if key != "#attributes")
        elif inner is not None:
            fields["param1"] = inner
        return fields
    return None


def _attributes(node: Any) -> Mapping[str, Any]:
    """An element's ``#attributes``, or an empty mapping."""
    if isinstance(node, Mapping):
        found = node.get("#attributes")
        if isinstance(found, Mapping):
            return found
    return {}


def _scalar(node: Any) -> Any:
    """An element's text: the value itself, or ``#text`` of an element that has attributes."""
    return node.get("#text") if isinstance(node, Mapping) else node


def _event_id(node: Any) -> int | None:
    """The event id (``4625`` or ``{"#text": 4625, "#attributes": {"Qualifiers": ...}}``)."""
    value = number(_scalar(node))
    return value if value is not None and 0 <= value <= 0xFFFF else None


def _keywords(value: Any) -> int | None:
    """The keyword mask from ``"0x8020000000000000"`` or NXLog's signed 64-bit number."""
    if isinstance(value, str) and value[:2] in ("0x", "0X") and 2 < len(value) <= 18:
        try:
            return int(value, 16)
        except ValueError:
            return None
    found = number(value)  # NXLog writes the mask as a signed 64-bit number
    return found & 0xFFFFFFFFFFFFFFFF if found is not None else None


def _task_name(value: Any, provider: str | None) -> str | None:
    task = number(value)
    if task is None:
        return text(value)
    if provider is not None and provider.lower() == _SECURITY_PROVIDER:
        return SECURITY_TASKS.get(task, str(task))
    return str(task)


def _time(value: Any, zone: str | None) -> tuple[datetime, str | None] | None:
    """(UTC time, zone name if the text had no zone and ``zone`` was assumed), or None.

    A time without a zone is read in ``zone``, or as UTC when ``zone`` is None.
    """
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        return None
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    assumed = None
    try:
        if offset is None:
            tz = UTC if zone is None else zone_named(zone)
            assumed = zone
        elif offset.upper() in ("Z", "UTC"):
            tz = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
        stamp = datetime(
            int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), micro,
            tzinfo=tz,
        )  # fmt: skip
        return stamp.astimezone(UTC), assumed
    except (ValueError, OverflowError):
        return None
