"""ECS mappings of Sysmon, PowerShell and Microsoft Defender Antivirus events.

Per event id, after Elastic's winlogbeat sysmon and powershell modules: ``SYSMON_EVENTS``
(processes, files, network, DNS, registry, ...), ``POWERSHELL_EVENTS`` (the classic Windows
PowerShell log), ``POWERSHELL_OPERATIONAL_EVENTS`` and ``DEFENDER_EVENTS``, the mappers each
family runs on all of its events, and the families. The types and helpers are in
``windows_fields``, the code tables in ``windows_values``.

Where we differ from Elastic, on purpose:

- Sysmon registry events: ``registry.key`` leaves out the value name and ``registry.value`` is
  set only for value events; QWORD data is ``high << 32 | low`` (Elastic shifts by 8).
- Sysmon 23 (file deleted): the hashes are the deleted file's, so ``file.hash``, not
  ``process.hash``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from detectors.parsers.base import Fragment
from detectors.parsers.windows_fields import (
    EventKind,
    Family,
    Fields,
    first_text,
    ip,
    node_at,
    number,
    port,
    put,
    put_executable,
    put_path,
    set_command_line,
    set_executable,
    set_hashes,
    set_path,
    split_user,
    text,
    texts,
)
from detectors.parsers.windows_fields import event_kind as _k
from detectors.parsers.windows_values import (
    NATIVE_HIVES,
    REGISTRY_HIVES,
    SYSMON_DNS_STATUS,
    details_section,
    dns_answers,
    invocation_details,
    key_values,
)

# --- Sysmon (Microsoft-Windows-Sysmon/Operational) ---------------------------------------------

_PROCESS_HASH_EVENTS = frozenset({1, 24, 25})
_FILE_HASH_EVENTS = frozenset({6, 7, 15, 23, 26, 29})
_PE_FIELDS = (
    ("OriginalFileName", "original_file_name"), ("Company", "company"),
    ("Description", "description"), ("FileVersion", "file_version"), ("Product", "product"),
)  # fmt: skip
_SIGNATURE_FIELDS = (("Signature", "subject_name"), ("SignatureStatus", "status"))
_BOOLEANS = {"true": True, "false": False}


def _sysmon(fields: Fields, fragment: Fragment, code: int) -> None:
    """Every Sysmon event: its fields mean the same whatever the event id (Elastic's pipeline).

    ``rule``, ``process``, ``file`` and ``registry`` are built as dicts and attached when they
    have a field: the fragment has none of them before this first mapper of the family runs.
    """
    get = fields.get
    rule = get("RuleName")
    if rule is not None and (rule := text(rule)) is not None:
        fragment["rule"] = {"name": rule}
    user = get("User")
    if user is not None:
        domain, name = split_user(user)
        put(fragment, ("user", "domain"), domain)
        put(fragment, ("user", "name"), name)
    process = _sysmon_process(fields, code)
    if process:
        fragment["process"] = process
    file = _sysmon_file(fields, code)
    if file:
        fragment["file"] = file
    if code in (3, 22):
        _sysmon_network(fields, fragment, code)
    elif code in (12, 13, 14):
        registry = _sysmon_registry(get, code)
        if registry:
            fragment["registry"] = registry
    elif code == 25 and "message" not in fragment:
        put(fragment, ("message",), text(get("Type")))
    elif code == 255:
        put(fragment, ("error", "code"), text(get("ID")))
    for key, name in (("Archived", "archived"), ("IsExecutable", "is_executable")):
        value = get(key)
        if value is not None:
            put(fragment, ("sysmon", "file", name), _BOOLEANS.get(text(value) or ""))


# Fields of a few kinds of Sysmon events only: the others skip them with one set operation
# (on the few names, not on the event's fields) instead of looking each name up.
_PARENT_KEYS = frozenset(
    {"ParentProcessGuid", "ParentProcessId", "ParentImage", "ParentCommandLine"}
)
_PE_KEYS = frozenset({"OriginalFileName", "Company", "Description", "FileVersion", "Product"})
_FILE_KEYS = frozenset({"ImageLoaded", "Device", "TargetFilename", "PipeName"})
_SIGNATURE_KEYS = frozenset({"Signature", "SignatureStatus", "Signed"})


def _sysmon_process(fields: Fields, code: int) -> dict[str, Any]:
    get = fields.get
    process: dict[str, Any] = {}
    found = first_text(get, "ProcessGuid", "SourceProcessGuid", "SourceProcessGUID")
    if found is not None:
        process["entity_id"] = found
    pid = get("ProcessId")
    if pid is None:
        pid = get("SourceProcessId")
    if pid is not None and (pid := number(pid)) is not None:
        process["pid"] = pid
    thread = get("SourceThreadId")
    if thread is not None and (thread := number(thread)) is not None:
        process["thread"] = {"id": thread}
    found = first_text(get, "Image", "SourceImage", "Destination")
    if found is not None:
        set_executable(process, found)
    # first_text, not get: ``found`` holds text here (mypyc checks it), a field may be a list.
    found = first_text(get, "CommandLine")
    if found is not None:
        set_command_line(process, found)
    found = first_text(get, "CurrentDirectory")
    if found is not None:
        process["working_directory"] = found
    parent = _sysmon_parent(get) if not fields.keys().isdisjoint(_PARENT_KEYS) else None
    if parent:
        process["parent"] = parent
    # In 7 (image loaded) the PE fields are the loaded file's.
    if code != 7 and not fields.keys().isdisjoint(_PE_KEYS):
        pe = texts(get, _PE_FIELDS)
        if pe:
            process["pe"] = pe
    if code in _PROCESS_HASH_EVENTS:
        set_hashes(process, get("Hashes") or get("Hash"))
    return process


def _sysmon_parent(get: Callable[[str], Any]) -> dict[str, Any]:
    parent: dict[str, Any] = {}
    found = get("ParentProcessGuid")
    if found is not None and (found := text(found)) is not None:
        parent["entity_id"] = found
    pid = get("ParentProcessId")
    if pid is not None and (pid := number(pid)) is not None:
        parent["pid"] = pid
    found = get("ParentImage")
    if found is not None and (found := text(found)) is not None:
        set_executable(parent, found)
    found = get("ParentCommandLine")
    if found is not None and (found := text(found)) is not None:
        set_command_line(parent, found)
    return parent


def _sysmon_file(fields: Fields, code: int) -> dict[str, Any]:
    get = fields.get
    keys = fields.keys()
    file: dict[str, Any] = {}
    if code in _FILE_HASH_EVENTS:
        set_hashes(file, get("Hashes") or get("Hash"))
    if not keys.isdisjoint(_FILE_KEYS):
        path = first_text(get, "ImageLoaded", "Device", "TargetFilename")
        if path is not None:
            set_path(file, path)
        found = get("PipeName")
        if found is not None and (found := text(found)) is not None:
            file["name"] = found
    if not keys.isdisjoint(_SIGNATURE_KEYS):
        signature = texts(get, _SIGNATURE_FIELDS)
        if signature.get("status") == "Valid":
            signature["valid"] = True
        signed = get("Signed")
        if signed is True or text(signed) == "true":
            signature["signed"] = True
        if signature:
            file["code_signature"] = signature
    if code == 7:
        pe = texts(get, _PE_FIELDS)
        if pe:
            node_at(file, ("pe",)).update(pe)
    return file


_DIRECTION = {"true": "egress", "false": "ingress"}
_IP_VERSION = {"true": "ipv6", "false": "ipv4"}


def _sysmon_network(fields: Fields, fragment: Fragment, code: int) -> None:
    put(fragment, ("network", "transport"), text(fields.get("Protocol")))
    if code == 22:
        put(fragment, ("network", "protocol"), "dns")
    else:
        put(
            fragment,
            ("network", "protocol"),
            first_text(fields.get, "DestinationPortName", "SourcePortName"),
        )
    for side, prefix in (("source", "Source"), ("destination", "Destination")):
        put(fragment, (side, "ip"), ip(fields.get(prefix + "Ip")))
        put(fragment, (side, "domain"), text(fields.get(prefix + "Hostname")))
        put(fragment, (side, "port"), port(fields.get(prefix + "Port")))
    put(fragment, ("network", "direction"), _DIRECTION.get(text(fields.get("Initiated")) or ""))
    put(fragment, ("network", "type"), _IP_VERSION.get(text(fields.get("SourceIsIpv6")) or ""))
    put(fragment, ("dns", "question", "name"), text(fields.get("QueryName")))
    results = text(fields.get("QueryResults"))
    if results is not None:
        answers, addresses = dns_answers(results)
        put(fragment, ("dns", "answers"), answers or None)
        put(fragment, ("dns", "resolved_ip"), addresses or None)
    status = text(fields.get("QueryStatus"))
    if status is not None:
        put(fragment, ("sysmon", "dns", "status"), SYSMON_DNS_STATUS.get(status, status))


_DWORD = re.compile(r"DWORD \((0x[0-9A-Fa-f]{1,8})\)")
_QWORD = re.compile(r"QWORD \((0x[0-9A-Fa-f]{1,8})-(0x[0-9A-Fa-f]{1,8})\)")


def _sysmon_registry(get: Callable[[str], Any], code: int) -> dict[str, Any]:
    path = text(get("TargetObject"))
    if path is None:
        return {}
    registry: dict[str, Any] = {"path": path}
    parts = path.split("\\")
    hive = REGISTRY_HIVES.get(parts[0].upper())
    if hive is None and path[:10].upper() == "\\REGISTRY\\":
        # The kernel's names: \REGISTRY\MACHINE\..., \REGISTRY\USER\...; \REGISTRY\A\{guid} is
        # an application's private hive, which has no abbreviation.
        parts = parts[2:]
        hive = NATIVE_HIVES.get(parts[0].upper()) if parts else None
    # 13 (value set) and 12's DeleteValue name a value; CreateKey, DeleteKey, RenameKey a key.
    if code == 13 or text(get("EventType")) in ("SetValue", "DeleteValue"):
        if len(parts) > 1:
            registry["value"] = parts[-1]
        parts = parts[:-1]
    if hive is not None:
        registry["hive"] = hive
        key = "\\".join(parts[1:])
        if key:
            registry["key"] = key
    details = text(get("Details"))
    if details is None:
        return registry
    if (found := _DWORD.fullmatch(details)) is not None:
        data = {"strings": [str(int(found.group(1), 16))], "type": "REG_DWORD"}
    elif (found := _QWORD.fullmatch(details)) is not None:
        value = int(found.group(1), 16) << 32 | int(found.group(2), 16)
        data = {"strings": [str(value)], "type": "REG_QWORD"}
    elif details == "Binary Data":
        data = {"strings": [details], "type": "REG_BINARY"}
    else:
        data = {"strings": [details], "type": "REG_SZ"}
    registry["data"] = data
    return registry


_PROCESS, _CONF = ("process",), ("configuration",)
_START, _END, _CHANGE = ("start",), ("end",), ("change",)
_FILE, _NETWORK, _REGISTRY = ("file",), ("network",), ("configuration", "registry")
# Elastic's sysmon module: action names are Sysmon's own event names.
SYSMON_EVENTS: dict[int, EventKind] = {
    1: _k("Process creation", _PROCESS, _START),
    2: _k("A process changed a file creation time", _FILE, _CHANGE),
    3: _k("Network connection", _NETWORK, ("start", "connection", "protocol")),
    4: _k("Sysmon service state changed", _PROCESS, _CHANGE),
    5: _k("Process terminated", _PROCESS, _END),
    6: _k("Driver loaded", ("driver",), _START),
    7: _k("Image loaded", _PROCESS, _CHANGE),
    8: _k("CreateRemoteThread", _PROCESS, _CHANGE),
    9: _k("RawAccessRead", _PROCESS, ("access",)),
    10: _k("ProcessAccess", _PROCESS, ("access",)),
    11: _k("FileCreate", _FILE, ("creation",)),
    12: _k("RegistryEvent (Object create and delete)", _REGISTRY, _CHANGE),
    13: _k("RegistryEvent (Value Set)", _REGISTRY, _CHANGE),
    14: _k("RegistryEvent (Key and Value Rename)", _REGISTRY, _CHANGE),
    15: _k("FileCreateStreamHash", _FILE, ("access",)),
    16: _k("ServiceConfigurationChange", _CONF, _CHANGE),
    17: _k("PipeEvent (Pipe Created)", _FILE, ("creation",)),
    18: _k("PipeEvent (Pipe Connected)", _FILE, ("access",)),
    19: _k("WmiEvent (WmiEventFilter activity detected)", _PROCESS, ("info",)),
    20: _k("WmiEvent (WmiEventConsumer activity detected)", _PROCESS, _CHANGE),
    21: _k("WmiEvent (WmiEventConsumerToFilter activity detected)", _PROCESS, ("access",)),
    22: _k("DNSEvent (DNS query)", _NETWORK, ("connection", "protocol", "info")),
    23: _k("FileDelete (File Delete archived)", _FILE, ("deletion",)),
    24: _k("ClipboardChange (New content in the clipboard)", (), _CHANGE),
    25: _k("ProcessTampering (Process image change)", _PROCESS, _CHANGE),
    26: _k("FileDeleteDetected (File Delete logged)", _FILE, ("deletion",)),
    27: _k("FileBlockExecutable", _FILE, ("creation",), outcome="failure"),
    28: _k("FileBlockShredding", _FILE, ("deletion",)),
    29: _k("FileExecutableDetected", _FILE, ("creation",)),
    255: _k("Error", _PROCESS, (), outcome="failure"),
}

# --- PowerShell (Windows PowerShell, and Microsoft-Windows-PowerShell/Operational) -------------

# Event data keys whose values go to ECS as they are (text) or as numbers, by the ECS object
# they go to; where two keys name one field (HostID, HostId), the later one wins.
_PS_PROCESS = (("HostID", "entity_id"), ("HostId", "entity_id"), ("HostName", "title"))
_PS_FIELDS = (
    ("PipelineID", "pipeline_id"), ("PipelineId", "pipeline_id"), ("RunspaceID", "runspace_id"),
    ("RunspaceId", "runspace_id"), ("ShellID", "id"),
)  # fmt: skip
_PS_NUMBERS = (
    ("MessageNumber", "sequence"), ("MessageTotal", "total"),
    ("DetailSequence", "sequence"), ("DetailTotal", "total"),
)  # fmt: skip
_PS_OBJECTS = (  # powershell.<object>.<name>
    ("process", (("HostVersion", "executable_version"),)),
    ("engine", (("EngineVersion", "version"), ("NewEngineState", "new_state"),
                ("PreviousEngineState", "previous_state"))),
    ("command", (("CommandLine", "value"), ("CommandPath", "path"), ("CommandName", "name"),
                 ("CommandType", "type"))),
    ("file", (("ScriptBlockId", "script_block_id"), ("ScriptBlockText", "script_block_text"))),
    ("provider", (("NewProviderState", "new_state"), ("ProviderName", "name"))),
)  # fmt: skip


def _powershell_fields(values: Fields, fragment: Fragment) -> None:
    """The PowerShell fields: ``powershell``, ``process`` and ``file`` are built as dicts and
    attached when they have a field, as this first mapper of the family is the first to set them.
    """
    get = values.get
    powershell = texts(get, _PS_FIELDS)
    for part, keys in _PS_OBJECTS:
        found = texts(get, keys)
        if found:
            powershell[part] = found
    for key, part in _PS_NUMBERS:
        count = get(key)
        if count is not None and (count := number(count)) is not None:
            powershell[part] = count
    if powershell:
        fragment["powershell"] = powershell
    put(fragment, ("event", "sequence"), number(get("SequenceNumber")))
    process = texts(get, _PS_PROCESS)
    command = get("HostApplication")
    if command is not None and (command := text(command)) is not None:
        set_command_line(process, command)
    if process:
        fragment["process"] = process
    script = first_text(get, "ScriptName", "Path")
    if script is not None:
        file: dict[str, Any] = {}
        set_path(file, script)
        fragment["file"] = file
    domain, name = split_user(get("User") or get("UserId"))
    connected_domain, connected = split_user(get("ConnectedUser"))
    if connected is not None:
        # A remote session: the connected user acts on the local (destination) account.
        put(fragment, ("source", "user", "name"), connected)
        put(fragment, ("source", "user", "domain"), connected_domain)
        put(fragment, ("destination", "user", "name"), name)
        put(fragment, ("destination", "user", "domain"), domain)
        domain, name = connected_domain, connected
    put(fragment, ("user", "domain"), domain)
    put(fragment, ("user", "name"), name)


def _powershell_operational(fields: Fields, fragment: Fragment, code: int) -> None:
    values = fields
    context = fields.get("ContextInfo")
    if isinstance(context, str):
        values = {**key_values(context), **fields}
    _powershell_fields(values, fragment)
    payload = fields.get("Payload")
    if code == 4103 and isinstance(payload, str):
        put(
            fragment,
            ("powershell", "command", "invocation_details"),
            invocation_details(payload) or None,
        )


def _powershell_classic(fields: Fields, fragment: Fragment, code: int) -> None:
    # The classic log has unnamed data (param1..3); a shipper that renders the event may give
    # only the message, which holds the same Key=Value lines.
    params = [found for key in ("param1", "param2", "param3") if (found := text(fields.get(key)))]
    message = fragment.get("message")
    source = "\n".join(params) if params else message if isinstance(message, str) else ""
    _powershell_fields(key_values(source), fragment)
    if code == 800:
        details = text(fields.get("param3"))
        if details is None and not params:
            details = details_section(source)
        if details is not None:
            put(
                fragment,
                ("powershell", "command", "invocation_details"),
                invocation_details(details) or None,
            )


POWERSHELL_EVENTS: dict[int, EventKind] = {
    400: _k("Engine Lifecycle", _PROCESS, _START),
    403: _k("Engine Lifecycle", _PROCESS, _END),
    600: _k("Provider Lifecycle", _PROCESS, ("info",)),
    800: _k("Pipeline Execution Details", _PROCESS, ("info",)),
}
POWERSHELL_OPERATIONAL_EVENTS: dict[int, EventKind] = {
    4103: _k("Executing Pipeline", _PROCESS, ("info",)),
    4104: _k("Execute a Remote Command", _PROCESS, ("info",)),
    4105: _k("Starting Command", _PROCESS, _START),
    4106: _k("Stopping Command", _PROCESS, _END),
}

# --- Microsoft Defender Antivirus (Microsoft-Windows-Windows Defender/Operational) ------------

_DEFENDER_PATH = re.compile(r"(?:file|containerfile):_(.+)", re.I)


def _defender(fields: Fields, fragment: Fragment, code: int) -> None:
    put(fragment, ("rule", "name"), text(fields.get("Threat Name")))
    put(fragment, ("rule", "id"), first_text(fields.get, "Threat ID", "ID"))
    put(fragment, ("rule", "category"), text(fields.get("Category Name")))
    put(fragment, ("event", "severity"), number(fields.get("Severity ID")))
    path = text(fields.get("Path"))
    if path is not None:
        # "file:_C:\x.exe;file:_C:\y.exe" or "containerfile:_C:\a.zip": the first file named.
        found = _DEFENDER_PATH.match(path.split(";", 1)[0].strip())
        put_path(fragment, ("file",), found.group(1) if found else path)
    executable = text(fields.get("Process Name"))
    if executable is not None and executable != "Unknown":
        put_executable(fragment, ("process",), executable)
    domain, name = split_user(fields.get("Detection User") or fields.get("User"))
    put(fragment, ("user", "domain"), domain)
    put(fragment, ("user", "name"), name)


_MALWARE, _INTRUSION, _INFO = ("malware",), ("intrusion_detection",), ("info",)
DEFENDER_EVENTS: dict[int, EventKind] = {
    1000: _k("scan-started", ("host",), _START),
    1001: _k("scan-finished", ("host",), _END),
    1002: _k("scan-stopped", ("host",), _END),
    1006: _k("malware-detected", _MALWARE, _INFO, kind="alert"),
    1007: _k("malware-action-taken", _MALWARE, _INFO, outcome="success"),
    1008: _k("malware-action-failed", _MALWARE, _INFO, outcome="failure"),
    1013: _k("malware-history-deleted", _CONF, ("deletion",)),
    1015: _k("suspicious-behavior-detected", _MALWARE, _INFO, kind="alert"),
    1116: _k("malware-detected", _MALWARE, _INFO, kind="alert"),
    1117: _k("malware-action-taken", _MALWARE, _INFO, outcome="success"),
    1118: _k("malware-action-failed", _MALWARE, _INFO, outcome="failure"),
    1119: _k("malware-action-critically-failed", _MALWARE, _INFO, outcome="failure"),
    1121: _k("asr-rule-blocked", _INTRUSION, ("denied",), kind="alert"),
    1122: _k("asr-rule-audited", _INTRUSION, _INFO),
    1125: _k("network-protection-audited", _INTRUSION, _INFO),
    1126: _k("network-protection-blocked", _INTRUSION, ("denied",), kind="alert"),
    5001: _k("realtime-protection-disabled", _CONF, _CHANGE),
    5004: _k("realtime-protection-configuration-changed", _CONF, _CHANGE),
    5007: _k("configuration-changed", _CONF, _CHANGE),
    5010: _k("antispyware-scanning-disabled", _CONF, _CHANGE),
    5012: _k("antivirus-scanning-disabled", _CONF, _CHANGE),
    5013: _k("tamper-protection-blocked-change", _CONF, _CHANGE, outcome="failure"),
}

# --- the families ------------------------------------------------------------------------------

SYSMON_FAMILY = Family(
    "sysmon",
    "sysmon",
    "windows.sysmon_operational",
    SYSMON_EVENTS,
    (_sysmon,),
    user_id_from_identifier=True,
)
POWERSHELL_FAMILY = Family(
    "powershell",
    "powershell",
    "windows.powershell",
    POWERSHELL_EVENTS,
    (_powershell_classic,),
    user_id_from_identifier=True,
)
POWERSHELL_OPERATIONAL_FAMILY = Family(
    "powershell_operational",
    "powershell",
    "windows.powershell_operational",
    POWERSHELL_OPERATIONAL_EVENTS,
    (_powershell_operational,),
    user_id_from_identifier=True,
)
DEFENDER_FAMILY = Family("defender", "windows", "windows.winlog", DEFENDER_EVENTS, (_defender,))
