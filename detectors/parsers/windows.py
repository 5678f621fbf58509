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

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, TypeGuard

from detectors.parsers.base import DataParser, Fragment, NotMine, ParseContext
from detectors.parsers.windows_families import apply_family, family_for
from detectors.parsers.windows_fields import Family, number, text
from detectors.parsers.windows_values import SECURITY_TASKS, is_zone_known, read_time

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
_STANDARD_KEYWORDS = 0xFF000000000000
_AUDIT_FAILURE, _AUDIT_SUCCESS = 0x10000000000000, 0x20000000000000
_AUDIT_TYPES = {"AUDIT_SUCCESS": "success", "AUDIT_FAILURE": "failure"}
# NXLog's fields that go to winlog as they are, when they have text.
_NXLOG_IDS = (
    ("ProviderGuid", "provider_guid"), ("ActivityID", "activity_id"),
    ("RelatedActivityID", "related_activity_id"),
)  # fmt: skip
# What NXLog resolves the event's UserID into.
_NXLOG_USER = (("AccountName", "name"), ("Domain", "domain"), ("AccountType", "type"))
_SECURITY_PROVIDER = "microsoft-windows-security-auditing"


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
        event = data.get("Event") if _is_mapping(data) else None
        system = event.get("System") if _is_mapping(event) else None
        if not _is_mapping(event) or not _is_mapping(system):
            raise NotMine("not an EVTX event: no Event.System")
        event_id = _event_id(system.get("EventID"))
        if event_id is None:
            raise NotMine("not an EVTX event: no numeric Event.System.EventID")
        source = _attributes(system.get("Provider"))
        provider = text(source.get("Name")) or text(source.get("EventSourceName"))
        fragment, ecs_event, winlog = _skeleton(
            event_id, provider, text(_scalar(system.get("Computer")))
        )
        channel = text(_scalar(system.get("Channel")))
        family = family_for(provider, channel)
        event_data = _event_data(event.get("EventData"))
        user_data = _user_data(event.get("UserData"))
        fields: Mapping[str, Any] = event_data or user_data or {}
        if event_data and user_data:
            fields = {**user_data, **event_data}
        stamp = _observed_time(family, fields)
        if stamp is None:
            # SystemTime is UTC by definition, whether or not the text says so.
            found = read_time(_attributes(system.get("TimeCreated")).get("SystemTime"), None)
            stamp = found[0] if found is not None else None
        if stamp is not None:
            fragment["@timestamp"] = stamp
        level = number(_scalar(system.get("Level")))
        if level is not None and (level_name := _LEVELS.get(level)) is not None:
            fragment["log"] = {"level": level_name}
        task = _task_name(_scalar(system.get("Task")), provider)
        opcode = number(_scalar(system.get("Opcode")))
        correlation = _attributes(system.get("Correlation"))
        for key, value in (
            ("channel", channel),
            ("provider_guid", text(source.get("Guid"))),
            ("record_id", text(_scalar(system.get("EventRecordID")))),
            ("task", task),
            ("opcode", _OPCODES.get(opcode, str(opcode)) if opcode is not None else None),
            ("version", number(_scalar(system.get("Version")))),
            ("activity_id", text(correlation.get("ActivityID"))),
            ("related_activity_id", text(correlation.get("RelatedActivityID"))),
        ):
            if value is not None:
                winlog[key] = value
        execution = _attributes(system.get("Execution"))
        _set_process(winlog, number(execution.get("ProcessID")), number(execution.get("ThreadID")))
        sid = text(_attributes(system.get("Security")).get("UserID"))
        if sid is not None:
            winlog["user"] = {"identifier": sid}
        _set_outcome_and_action(
            ecs_event, winlog, _keywords(_scalar(system.get("Keywords"))), None, task
        )
        if event_data:
            winlog["event_data"] = event_data
        if user_data:
            winlog["user_data"] = user_data
        return _with_family(fragment, family, event_id, sid, fields)


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
        if type(data) is not dict and not isinstance(data, Mapping):  # a dict: skip the ABC
            raise NotMine("not a flat Windows event: not a mapping")
        get = data.get
        event_id = get("EventID")
        if type(event_id) is not int or not 0 <= event_id <= 0xFFFF:  # else text, or bool
            event_id = _event_id(event_id)
            if event_id is None:
                raise NotMine("not a flat Windows event: no numeric EventID")
        has_source = "SourceName" in data
        provider = text(get("SourceName" if has_source else "ProviderName"))
        channel = text(get("Channel"))
        if channel is None and provider is None:
            raise NotMine("not a flat Windows event: neither Channel nor SourceName")
        fragment, event, winlog = _skeleton(
            event_id, provider, text(get("Hostname")) or text(get("Computer"))
        )
        family = family_for(provider, channel)
        # Sysmon's UtcTime (event data: not in _FLAT_META) wins over NXLog's times, so these are
        # not read when it is there; but they are while the zone is not known good, as reading
        # one in a zone that does not exist raises (a settings error, which must show).
        known_zone = is_zone_known(context.timezone)
        stamp = _observed_time(family, data) if known_zone else None
        if stamp is None:
            _set_flat_time(fragment, data, context.timezone)
            if not known_zone and (stamp := _observed_time(family, data)) is not None:
                event.pop("timezone", None)
        if stamp is not None:
            fragment["@timestamp"] = stamp
        message = get("Message")
        if isinstance(message, str):
            fragment["message"] = message
        level = number(get("Level"))
        if level is not None:
            level_name = _LEVELS.get(level)
        else:
            level_name = _SEVERITIES.get(text(get("Severity")) or "")
        if level_name is not None:
            fragment["log"] = {"level": level_name}
        task = text(get("Category")) or _task_name(get("Task"), provider)
        opcode = text(get("Opcode"))
        if opcode is None and (opcode_value := number(get("OpcodeValue"))) is not None:
            opcode = _OPCODES.get(opcode_value, str(opcode_value))
        if channel is not None:
            winlog["channel"] = channel
        record_id = text(get("RecordNumber")) or text(get("EventRecordID"))
        if record_id is not None:
            winlog["record_id"] = record_id
        if task is not None:
            winlog["task"] = task
        if opcode is not None:
            winlog["opcode"] = opcode
        # NXLog's event version is a number; Sysmon 4's Version is text.
        version = get("Version")
        if isinstance(version, int):
            winlog["version"] = version
        for key, name in _NXLOG_IDS:
            value = get(key)
            if value is not None and (value := text(value)) is not None:
                winlog[name] = value
        # NXLog's process id is a number; the event data's (5156) is text.
        pid = get("ExecutionProcessID")
        own_pid = "ExecutionProcessID" not in data and isinstance(get("ProcessID"), int)
        _set_process(winlog, number(get("ProcessID") if own_pid else pid), number(get("ThreadID")))
        # NXLog resolves UserID into these; without UserID they are event data (7045 AccountName).
        has_user = "UserID" in data
        sid = text(get("UserID"))
        if sid is not None:
            user = winlog["user"] = {"identifier": sid}
            for key, name in _NXLOG_USER:
                value = get(key)
                if value is not None and (value := text(value)) is not None:
                    user[name] = value
        # OTRF renames NXLog's EventType when Sysmon's event data has one of its own.
        own_type = "EventTypeOrignal" not in data and "EventTypeOriginal" not in data
        audit = _AUDIT_TYPES.get(text(get("EventType")) or "") if own_type else None
        _set_outcome_and_action(event, winlog, _keywords(get("Keywords")), audit, task)
        event_data = {key: value for key, value in data.items() if key not in _FLAT_META}
        # The names that are NXLog's only in some events (see the comments above).
        if own_type:
            event_data.pop("EventType", None)
        if has_user:
            for key, _ in _NXLOG_USER:
                event_data.pop(key, None)
        if own_pid:
            del event_data["ProcessID"]
        if not has_source:
            event_data.pop("ProviderName", None)
        if isinstance(version, int):
            del event_data["Version"]
        if event_data:
            winlog["event_data"] = event_data
        return _with_family(fragment, family, event_id, sid, event_data)


def _skeleton(
    event_id: int, provider: str | None, computer: str | None
) -> tuple[Fragment, dict[str, Any], dict[str, Any]]:
    """The fragment with what every event has, and its ``event`` and ``winlog`` objects."""
    code = str(event_id)
    event: dict[str, Any] = {"kind": "event", "code": code}
    winlog: dict[str, Any] = {"event_id": code}
    fragment: Fragment = {"event": event, "winlog": winlog}
    if provider is not None:
        event["provider"] = winlog["provider_name"] = provider
    if computer is not None:
        fragment["host"] = {"name": computer}
        winlog["computer_name"] = computer
    return fragment, event, winlog


def _set_process(winlog: dict[str, Any], pid: int | None, thread_id: int | None) -> None:
    """``winlog.process``: the process and thread that logged the event."""
    if pid is not None or thread_id is not None:
        process: dict[str, Any] = {}
        winlog["process"] = process
        if pid is not None:
            process["pid"] = pid
        if thread_id is not None:
            process["thread"] = {"id": thread_id}


def _set_outcome_and_action(
    event: dict[str, Any],
    winlog: dict[str, Any],
    keywords: int | None,
    audit: str | None,
    task: str | None,
) -> None:
    """Keyword names, the outcome from the audit keywords (else NXLog's EventType), and the
    task's name as the action (winlogbeat's default)."""
    if keywords is not None:
        names = _keyword_names(keywords & _STANDARD_KEYWORDS)
        if names:
            winlog["keywords"] = list(names)
        if keywords & _AUDIT_FAILURE:
            event["outcome"] = "failure"
        elif keywords & _AUDIT_SUCCESS:
            event["outcome"] = "success"
    if "outcome" not in event and audit is not None:
        event["outcome"] = audit
    if task is not None and not task.isdigit():
        event["action"] = task


@cache  # at most 256 masks: the standard bits only
def _keyword_names(standard: int) -> tuple[str, ...]:
    """The names of the standard keyword bits set in ``standard``."""
    return tuple(name for bit, name in _KEYWORDS if standard & bit)


def _set_flat_time(fragment: Fragment, data: Mapping[str, Any], zone: str) -> None:
    """``@timestamp`` from the event's own time first (@timestamp is often the shipper's). A
    zone-less time (NXLog's EventTime) is read in the sending host's zone, which the source's
    settings name, and ``event.timezone`` then names it."""
    for key in ("TimeCreated", "EventTime", "@timestamp"):
        found = read_time(data[key], zone) if key in data else None
        if found is not None:
            fragment["@timestamp"] = found[0]
            if found[1] is not None:
                fragment["event"]["timezone"] = found[1]
            return


def _observed_time(family: Family, fields: Mapping[str, Any]) -> datetime | None:
    """Sysmon's own UTC time of the observation, which Elastic's pipeline takes for @timestamp."""
    if family.name != "sysmon":
        return None
    found = read_time(fields.get("UtcTime"), None)
    return found[0] if found is not None else None


def _with_family(
    fragment: Fragment, family: Family, event_id: int, sid: str | None, fields: Mapping[str, Any]
) -> Fragment:
    """The fragment with the ECS fields of the event's family (see ``windows_families``)."""
    if family.user_id_from_identifier and sid is not None:
        fragment["user"] = {"id": sid}
    apply_family(family, event_id, fields, fragment)
    return fragment


def _event_data(node: Any) -> dict[str, Any] | None:
    """EventData's fields, unchanged; unnamed ``Data`` values become ``param1``, ``param2``..."""
    if node is None:
        return None
    if not isinstance(node, Mapping):
        return _data_values(node) if isinstance(node, (list, str, int)) else None
    if "#attributes" not in node and not isinstance(node.get("Data"), (list, Mapping)):
        return dict(node)  # named fields only, the shape the evtx package writes
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


def _is_mapping(node: Any) -> TypeGuard[Mapping[str, Any]]:
    """isinstance(node, Mapping), told by the type first for a dict, text or a number: each
    event has a score of these checks, and the ABC's isinstance is slow for anything else."""
    if type(node) is dict:
        return True
    return node.__class__ not in _SCALARS and isinstance(node, Mapping)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _attributes(node: Any) -> Mapping[str, Any]:
    """An element's ``#attributes``, or an empty mapping."""
    if _is_mapping(node):
        found = node.get("#attributes")
        if _is_mapping(found):
            return found
    return {}


def _scalar(node: Any) -> Any:
    """An element's text: the value itself, or ``#text`` of an element that has attributes."""
    return node.get("#text") if _is_mapping(node) else node


def _event_id(node: Any) -> int | None:
    """The event id (``4625`` or ``{"#text": 4625, "#attributes": {"Qualifiers": ...}}``)."""
    value = number(_scalar(node))
    return value if value is not None and 0 <= value <= 0xFFFF else None


def _keywords(value: Any) -> int | None:
    """The keyword mask from ``"0x8020000000000000"`` or NXLog's signed 64-bit number."""
    if type(value) is int and -(2**63) <= value < 2**63:  # NXLog's, the common case
        return value & 0xFFFFFFFFFFFFFFFF
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
