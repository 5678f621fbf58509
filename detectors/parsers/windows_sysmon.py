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

from detectors.parsers.base import Fragment
from detectors.parsers.windows_fields import (
    EventKind,
    Family,
    Fields,
    ip,
    number,
    port,
    put,
    put_command_line,
    put_executable,
    put_hashes,
    put_path,
    split_user,
    text,
)
from detectors.parsers.windows_fields import event_kind as _k
from detectors.parsers.windows_values import DNS_TYPES, SYSMON_DNS_STATUS

# --- Sysmon (Microsoft-Windows-Sysmon/Operational) ---------------------------------------------

_PROCESS_HASH_EVENTS = frozenset({1, 24, 25})
_FILE_HASH_EVENTS = frozenset({6, 7, 15, 23, 26, 29})
_PE_FIELDS = (
    ("OriginalFileName", "original_file_name"), ("Company", "company"),
    ("Description", "description"), ("FileVersion", "file_version"), ("Product", "product"),
)  # fmt: skip
_BOOLEANS = {"true": True, "false": False}


def _first(fields: Fields, *keys: str) -> str | None:
    for key in keys:
        found = text(fields.get(key))
        if found is not None:
            return found
    return None


def _sysmon(fields: Fields, fragment: Fragment, code: int) -> None:
    """Every Sysmon event: its fields mean the same whatever the event id (Elastic's pipeline)."""
    put(fragment, ("rule", "name"), text(fields.get("RuleName")))
    domain, name = split_user(fields.get("User"))
    put(fragment, ("user", "domain"), domain)
    put(fragment, ("user", "name"), name)
    _sysmon_process(fields, fragment, code)
    _sysmon_file(fields, fragment, code)
    if code in (3, 22):
        _sysmon_network(fields, fragment, code)
    elif code in (12, 13, 14):
        _sysmon_registry(fields, fragment, code)
    elif code == 25 and "message" not in fragment:
        put(fragment, ("message",), text(fields.get("Type")))
    elif code == 255:
        put(fragment, ("error", "code"), text(fields.get("ID")))
    for key, name in (("Archived", "archived"), ("IsExecutable", "is_executable")):
        put(fragment, ("sysmon", "file", name), _BOOLEANS.get(text(fields.get(key)) or ""))


def _sysmon_process(fields: Fields, fragment: Fragment, code: int) -> None:
    process = ("process",)
    put(
        fragment,
        ("process", "entity_id"),
        _first(fields, "ProcessGuid", "SourceProcessGuid", "SourceProcessGUID"),
    )
    pid = fields.get("ProcessId")
    pid = pid if pid is not None else fields.get("SourceProcessId")
    put(fragment, ("process", "pid"), number(pid))
    put(fragment, ("process", "thread", "id"), number(fields.get("SourceThreadId")))
    put_executable(fragment, process, _first(fields, "Image", "SourceImage", "Destination"))
    put_command_line(fragment, process, text(fields.get("CommandLine")))
    put(fragment, ("process", "working_directory"), text(fields.get("CurrentDirectory")))
    put(fragment, ("process", "parent", "entity_id"), text(fields.get("ParentProcessGuid")))
    put(fragment, ("process", "parent", "pid"), number(fields.get("ParentProcessId")))
    put_executable(fragment, ("process", "parent"), text(fields.get("ParentImage")))
    put_command_line(fragment, ("process", "parent"), text(fields.get("ParentCommandLine")))
    if code != 7:  # in 7 (image loaded) the PE fields are the loaded file's
        for key, name in _PE_FIELDS:
            put(fragment, ("process", "pe", name), text(fields.get(key)))
    if code in _PROCESS_HASH_EVENTS:
        put_hashes(fragment, process, fields.get("Hashes") or fields.get("Hash"))


def _sysmon_file(fields: Fields, fragment: Fragment, code: int) -> None:
    if code in _FILE_HASH_EVENTS:
        put_hashes(fragment, ("file",), fields.get("Hashes") or fields.get("Hash"))
    path = _first(fields, "ImageLoaded", "Device", "TargetFilename")
    if path is not None:
        put_path(fragment, ("file",), path)
    put(fragment, ("file", "name"), text(fields.get("PipeName")))
    signature = ("file", "code_signature")
    put(fragment, (*signature, "subject_name"), text(fields.get("Signature")))
    status = text(fields.get("SignatureStatus"))
    put(fragment, (*signature, "status"), status)
    if status == "Valid":
        put(fragment, (*signature, "valid"), True)
    signed = fields.get("Signed")
    if signed is True or text(signed) == "true":
        put(fragment, (*signature, "signed"), True)
    if code == 7:
        for key, name in _PE_FIELDS:
            put(fragment, ("file", "pe", name), text(fields.get(key)))


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
            _first(fields, "DestinationPortName", "SourcePortName"),
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


def dns_answers(results: str) -> tuple[list[dict[str, str]], list[str]]:
    """Sysmon's ``QueryResults`` (``type:  5 host;::ffff:1.2.3.4;``) as answers and addresses."""
    answers: list[dict[str, str]] = []
    addresses: list[str] = []
    for answer in results.split(";"):
        answer = answer.strip()
        if not answer:
            continue
        if answer.startswith("type:"):
            parts = answer.split()
            if len(parts) >= 2:
                entry = {"type": DNS_TYPES.get(parts[1], parts[1])}
                if len(parts) >= 3:
                    entry["data"] = parts[2]
                answers.append(entry)
            continue
        address = ip(answer)
        if address is not None:
            addresses.append(address)
            answers.append({"type": "AAAA" if ":" in address else "A", "data": address})
    return answers, addresses


_HIVES = {
    "HKEY_CLASSES_ROOT": "HKCR", "HKCR": "HKCR", "HKEY_CURRENT_CONFIG": "HKCC", "HKCC": "HKCC",
    "HKEY_CURRENT_USER": "HKCU", "HKCU": "HKCU", "HKEY_DYN_DATA": "HKDD", "HKDD": "HKDD",
    "HKEY_LOCAL_MACHINE": "HKLM", "HKLM": "HKLM", "HKEY_PERFORMANCE_DATA": "HKPD",
    "HKPD": "HKPD", "HKEY_USERS": "HKU", "HKU": "HKU",
}  # fmt: skip
_NATIVE_HIVES = {"MACHINE": "HKLM", "USER": "HKU"}
_DWORD = re.compile(r"DWORD \((0x[0-9A-Fa-f]{1,8})\)")
_QWORD = re.compile(r"QWORD \((0x[0-9A-Fa-f]{1,8})-(0x[0-9A-Fa-f]{1,8})\)")


def _sysmon_registry(fields: Fields, fragment: Fragment, code: int) -> None:
    path = text(fields.get("TargetObject"))
    if path is None:
        return
    put(fragment, ("registry", "path"), path)
    parts = path.split("\\")
    hive = _HIVES.get(parts[0].upper())
    if hive is None and path[:10].upper() == "\\REGISTRY\\":
        # The kernel's names: \REGISTRY\MACHINE\..., \REGISTRY\USER\...; \REGISTRY\A\{guid} is
        # an application's private hive, which has no abbreviation.
        parts = parts[2:]
        hive = _NATIVE_HIVES.get(parts[0].upper()) if parts else None
    # 13 (value set) and 12's DeleteValue name a value; CreateKey, DeleteKey, RenameKey a key.
    if code == 13 or text(fields.get("EventType")) in ("SetValue", "DeleteValue"):
        put(fragment, ("registry", "value"), parts[-1] if len(parts) > 1 else None)
        parts = parts[:-1]
    if hive is not None:
        put(fragment, ("registry", "hive"), hive)
        put(fragment, ("registry", "key"), "\\".join(parts[1:]) or None)
    details = text(fields.get("Details"))
    if details is None:
        return
    if (found := _DWORD.fullmatch(details)) is not None:
        data = {"strings": [str(int(found.group(1), 16))], "type": "REG_DWORD"}
    elif (found := _QWORD.fullmatch(details)) is not None:
        value = int(found.group(1), 16) << 32 | int(found.group(2), 16)
        data = {"strings": [str(value)], "type": "REG_QWORD"}
    elif details == "Binary Data":
        data = {"strings": [details], "type": "REG_BINARY"}
    else:
        data = {"strings": [details], "type": "REG_SZ"}
    put(fragment, ("registry", "data"), data)


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

_KEY_VALUE = re.compile(r"^[ \t]*([A-Za-z][A-Za-z ]{0,63}?)[ \t]*=[ \t]*(.*?)[ \t\r]*$", re.M)
# Event data keys whose values go to ECS as they are (text) or as numbers.
_PS_TEXT = (
    ("HostID", ("process", "entity_id")), ("HostId", ("process", "entity_id")),
    ("HostName", ("process", "title")),
    ("HostVersion", ("powershell", "process", "executable_version")),
    ("EngineVersion", ("powershell", "engine", "version")),
    ("PipelineID", ("powershell", "pipeline_id")), ("PipelineId", ("powershell", "pipeline_id")),
    ("RunspaceID", ("powershell", "runspace_id")), ("RunspaceId", ("powershell", "runspace_id")),
    ("ShellID", ("powershell", "id")),
    ("CommandLine", ("powershell", "command", "value")),
    ("CommandPath", ("powershell", "command", "path")),
    ("CommandName", ("powershell", "command", "name")),
    ("CommandType", ("powershell", "command", "type")),
    ("ScriptBlockId", ("powershell", "file", "script_block_id")),
    ("ScriptBlockText", ("powershell", "file", "script_block_text")),
    ("NewEngineState", ("powershell", "engine", "new_state")),
    ("PreviousEngineState", ("powershell", "engine", "previous_state")),
    ("NewProviderState", ("powershell", "provider", "new_state")),
    ("ProviderName", ("powershell", "provider", "name")),
)  # fmt: skip
_PS_NUMBERS = (
    ("SequenceNumber", ("event", "sequence")),
    ("MessageNumber", ("powershell", "sequence")), ("MessageTotal", ("powershell", "total")),
    ("DetailSequence", ("powershell", "sequence")), ("DetailTotal", ("powershell", "total")),
)  # fmt: skip
_DETAIL = re.compile(r"([^:(\r\n]+)\((.+)\):\s*(.*)")
_BINDING = re.compile(r"name=(.+?);\s*value=(.*)")
_MAX_DETAILS = 1000


def key_values(textual: str) -> dict[str, str]:
    """``Key = value`` lines (PowerShell's ContextInfo, classic event details), keys unspaced."""
    found: dict[str, str] = {}
    for match in _KEY_VALUE.finditer(textual):
        found.setdefault(match.group(1).replace(" ", ""), match.group(2))
    return found


def invocation_details(payload: str) -> list[dict[str, str]]:
    """``CommandInvocation(X): ...`` and ``ParameterBinding(X): name=..; value=..`` lines."""
    details: list[dict[str, str]] = []
    for line in payload.splitlines():
        line = line.strip()
        if not line:
            continue
        if len(details) >= _MAX_DETAILS:
            break
        match = _DETAIL.fullmatch(line)
        if match is None:
            details.append({"value": line})
            continue
        kind, command, value = match.groups()
        entry = {"type": kind, "related_command": command, "value": value}
        binding = _BINDING.fullmatch(value) if kind == "ParameterBinding" else None
        if binding is not None:
            entry["name"], entry["value"] = binding.groups()
        details.append(entry)
    return details


def _powershell_fields(values: Fields, fragment: Fragment) -> None:
    for key, path in _PS_TEXT:
        put(fragment, path, text(values.get(key)))
    for key, path in _PS_NUMBERS:
        put(fragment, path, number(values.get(key)))
    put_command_line(fragment, ("process",), text(values.get("HostApplication")))
    script = _first(values, "ScriptName", "Path")
    if script is not None:
        put_path(fragment, ("file",), script)
    domain, name = split_user(values.get("User") or values.get("UserId"))
    connected_domain, connected = split_user(values.get("ConnectedUser"))
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


_DETAILS_HEADER = re.compile(r"\n\s*Details:\s*\n")


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
            parts = _DETAILS_HEADER.split(source.replace("\r\n", "\n"))
            details = parts[-1] if len(parts) > 1 else None
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
    put(fragment, ("rule", "id"), _first(fields, "Threat ID", "ID"))
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
