"""Windows events to ECS: real SigmaHQ (.evtx JSON) and OTRF (flat NXLog JSON) events, examples
for the event ids the data lacks, the odd shapes of EventData, and property tests."""

from __future__ import annotations

import itertools
import json
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.normalize import Normalizer
from detectors.parsers import windows_values
from detectors.parsers.base import Fragment, NotMine, ParseContext, is_ip
from detectors.parsers.windows import WinlogEvtxParser, WinlogFlatParser
from detectors.parsers.windows_families import family_for
from detectors.parsers.windows_fields import split_command_line
from detectors.parsers.windows_values import (
    details_section,
    invocation_details,
    key_values,
    read_time,
)
from socpipe.records import AgencyRef, CollectorRef, EcsEvent, RawRecord, SourceRef

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
SIGMA = DATA / "sigma" / "regression_data"
OTRF = DATA / "otrf"

EVTX = WinlogEvtxParser()
FLAT = WinlogFlatParser()
# The OTRF hosts wrote NXLog's zone-less EventTime in US Eastern time (their @timestamp, the
# shipper's UTC time, is seconds later); a source's settings name that zone in production.
OTRF_CONTEXT = ParseContext(timezone="America/New_York")
CONTEXT = ParseContext()

# ECS 8.x allowed values.
ECS_CATEGORIES = {
    "api", "authentication", "configuration", "database", "driver", "email", "file", "host",
    "iam", "intrusion_detection", "library", "malware", "network", "package", "process",
    "registry", "session", "threat", "vulnerability", "web",
}  # fmt: skip
ECS_TYPES = {
    "access", "admin", "allowed", "change", "connection", "creation", "deletion", "denied", "end",
    "error", "group", "indicator", "info", "installation", "protocol", "start", "user",
}  # fmt: skip


def dig(doc: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def validate(fragment: Fragment) -> EcsEvent:
    """The fragment merged over what the normalizer sets, validated as the pipeline does."""
    doc: dict[str, Any] = {"@timestamp": datetime.now(UTC), "event": {"id": "x"}}
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return EcsEvent.model_validate(doc)


# --- the data -------------------------------------------------------------------------------


def _sigma_files() -> list[Path]:
    if not SIGMA.is_dir():
        pytest.skip(f"SigmaHQ regression data not found at {SIGMA}")
    return sorted(SIGMA.rglob("*.json"))


def json_objects(text: str) -> Iterator[Any]:
    """Every JSON value in the text: some files hold several objects back to back."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        value, index = decoder.raw_decode(text, index)
        yield from value if isinstance(value, list) else [value]


@cache
def sigma_parsed() -> list[tuple[Path, dict[str, Any], Fragment]]:
    out = []
    for path in _sigma_files():
        for event in json_objects(path.read_text(encoding="utf-8")):
            out.append((path, event, EVTX.parse(event, CONTEXT)))
    return out


def otrf_lines() -> Iterator[tuple[str, str]]:
    """Every OTRF event as its JSON line, with the name of its dataset."""
    zips = sorted(OTRF.glob("*.zip")) if OTRF.is_dir() else []
    if not zips:
        pytest.skip(f"OTRF datasets not found in {OTRF}")
    for path in zips:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.startswith("__MACOSX/") or not name.endswith(".json"):
                    continue
                for line in archive.read(name).decode("utf-8").splitlines():
                    if line.strip():
                        yield path.name, line


def otrf_parsed(every: int = 1) -> Iterator[tuple[str, dict[str, Any], Fragment]]:
    """OTRF events and their fragments, streamed: held at once they would take 1.8 GB."""
    for name, line in itertools.islice(otrf_lines(), 0, None, every):
        event = json.loads(line)
        yield name, event, FLAT.parse(event, OTRF_CONTEXT)


def family_key(fragment: Fragment) -> tuple[str, int]:
    winlog = fragment["winlog"]
    family = family_for(winlog.get("provider_name"), winlog.get("channel"))
    return family.name, int(winlog["event_id"])


class Tally:
    """Events counted by (family, event id), apart for those with event-id-specific fields."""

    def __init__(self) -> None:
        self.specific: Counter[tuple[str, int]] = Counter()
        self.generic: Counter[tuple[str, int]] = Counter()

    def add(self, fragment: Fragment) -> None:
        winlog = fragment["winlog"]
        family = family_for(winlog.get("provider_name"), winlog.get("channel"))
        known = int(winlog["event_id"]) in family.events
        (self.specific if known else self.generic)[family_key(fragment)] += 1

    def report(self, label: str) -> None:
        total = sum(self.specific.values()) + sum(self.generic.values())
        print(
            f"\n{label}: {total} events, {sum(self.specific.values())} with event-id-specific"
            f" ECS fields, {sum(self.generic.values())} on the generic path"
        )
        print(
            "  specific:", ", ".join(f"{n}/{i}: {c}" for (n, i), c in sorted(self.specific.items()))
        )
        print("  generic:", ", ".join(f"{n}/{i}: {c}" for (n, i), c in self.generic.most_common()))


# --- SigmaHQ regression data: the evtx JSON shape --------------------------------------------


def test_every_sigma_event_keeps_its_data_and_identity() -> None:
    parsed = sigma_parsed()
    assert len(parsed) >= 200
    fields_checked = 0
    tally = Tally()
    for path, event, fragment in parsed:
        system = event["Event"]["System"]
        winlog = fragment["winlog"]
        where = f"{path.name} record {system['EventRecordID']}"
        assert fragment["event"]["code"] == str(system["EventID"]), where
        assert winlog["event_id"] == str(system["EventID"]), where
        assert winlog["channel"] == system["Channel"], where
        assert winlog["provider_name"] == system["Provider"]["#attributes"]["Name"], where
        assert winlog["record_id"] == str(system["EventRecordID"]), where
        assert fragment["host"]["name"] == system["Computer"], where
        assert fragment["event"]["kind"] in ("event", "alert"), where
        stamp = fragment["@timestamp"]
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0), where
        data = event["Event"].get("EventData")
        if data is not None:
            expected = {k: v for k, v in data.items() if k != "#attributes"}
            assert winlog["event_data"] == expected, where
            fields_checked += len(expected)
        user_data = event["Event"].get("UserData")
        if user_data is not None:
            ((name, inner),) = user_data.items()
            expected = {k: v for k, v in inner.items() if k != "#attributes"}
            assert winlog["user_data"] == {"xml_name": name, **expected}, where
            fields_checked += len(expected)
        validate(fragment)
        tally.add(fragment)
    assert fields_checked > 3000
    tally.report("SigmaHQ regression events")


def test_sigma_event_time_is_system_time_or_sysmon_utc_time() -> None:
    for path, event, fragment in sigma_parsed():
        system_time = event["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"]
        utc_time = (event["Event"].get("EventData") or {}).get("UtcTime")
        if fragment["event"]["module"] == "sysmon" and utc_time:
            expected = datetime.fromisoformat(utc_time).replace(tzinfo=UTC)
        else:
            expected = datetime.fromisoformat(system_time.replace("Z", "+00:00"))
        assert fragment["@timestamp"] == expected, path.name


# --- OTRF datasets: flat NXLog JSON ---------------------------------------------------------

# NXLog im_msvistalog's own fields, Logstash's, and OTRF's renames, as their documentation lists
# them (written here apart from the parser, so the test checks it rather than repeats it).
SHIPPER_FIELDS = {
    "EventTime", "EventReceivedTime", "Hostname", "Keywords", "SeverityValue", "Severity",
    "EventID", "SourceName", "ProviderGuid", "Task", "OpcodeValue", "Opcode", "RecordNumber",
    "ActivityID", "RelatedActivityID", "ThreadID", "Channel", "UserID", "Category", "Message",
    "ERROR_EVT_UNRESOLVED", "SourceModuleName", "SourceModuleType", "ExecutionProcessID",
    "EventTypeOrignal", "@timestamp", "@version", "tags", "host", "port", "Level", "TimeCreated",
}  # fmt: skip


def shipper_fields(event: dict[str, Any]) -> set[str]:
    """Names both NXLog and event data use belong to NXLog only in NXLog's situation."""
    found = set(SHIPPER_FIELDS)
    if "EventTypeOrignal" not in event:
        found.add("EventType")  # else EventType is Sysmon's (CreateKey, SetValue...)
    if "UserID" in event:
        found |= {"AccountName", "Domain", "AccountType"}  # NXLog's lookup of UserID
    if isinstance(event.get("Version"), int):
        found.add("Version")
    return found


@pytest.mark.slow
def test_every_otrf_event() -> None:
    """Its event data fields all kept, its identity and time right, a valid ECS event."""
    events = fields_checked = 0
    tally = Tally()
    for name, event, fragment in otrf_parsed():
        events += 1
        winlog = fragment["winlog"]
        where = f"{name} record {event.get('RecordNumber')} event {event['EventID']}"
        assert fragment["event"]["code"] == str(event["EventID"]), where
        assert winlog["channel"] == event["Channel"], where
        assert winlog["provider_name"] == event["SourceName"], where
        assert fragment["host"]["name"] == event["Hostname"], where
        event_data = winlog.get("event_data", {})
        expected = {k: v for k, v in event.items() if k not in shipper_fields(event)}
        for key, value in expected.items():
            assert key in event_data and event_data[key] == value, f"{where}: {key}"
        assert set(event_data) <= set(event), where
        fields_checked += len(expected)
        check_time(event, fragment, where)
        assert set(fragment["event"].get("category", [])) <= ECS_CATEGORIES, where
        assert set(fragment["event"].get("type", [])) <= ECS_TYPES, where
        if events % 7 == 0:
            validate(fragment)
        tally.add(fragment)
    assert events > 100_000
    assert fields_checked > 900_000
    tally.report("OTRF events")


def check_time(event: dict[str, Any], fragment: Fragment, where: str) -> None:
    """EventTime read in the hosts' zone lands seconds before the shipper's @timestamp."""
    shipped = datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00"))
    stamp = fragment["@timestamp"]
    assert stamp.utcoffset() == timedelta(0), where
    if fragment["event"]["module"] == "sysmon" and "UtcTime" in event:
        assert stamp == datetime.fromisoformat(event["UtcTime"]).replace(tzinfo=UTC), where
    elif "EventTime" in event:
        assert timedelta(0) <= shipped - stamp < timedelta(minutes=5), where
        assert fragment["event"]["timezone"] == "America/New_York", where
    else:
        assert stamp == shipped, where


def test_ecs_categories_are_ecs_values_in_all_data() -> None:
    for _, _, fragment in sigma_parsed():
        assert set(fragment["event"].get("category", [])) <= ECS_CATEGORIES
        assert set(fragment["event"].get("type", [])) <= ECS_TYPES


# --- event-id-specific ECS fields, counted on the real data ---------------------------------

Condition = Callable[[dict[str, Any], Fragment], bool]


def has(key: str) -> Condition:
    def check(data: dict[str, Any], fragment: Fragment) -> bool:
        value = data.get(key)
        return value not in (None, "", "-")

    return check


def ip_in(key: str) -> Condition:
    def check(data: dict[str, Any], fragment: Fragment) -> bool:
        value = str(data.get(key) or "").removeprefix("::ffff:")
        return is_ip(value)

    return check


def mentions(text: str, key: str = "ContextInfo") -> Condition:
    def check(data: dict[str, Any], fragment: Fragment) -> bool:
        source = data.get(key) if key != "message" else fragment.get("message")
        return isinstance(source, str) and text in source

    return check


def always(data: dict[str, Any], fragment: Fragment) -> bool:
    return True


# (family, event id) -> ECS fields that must be set (when the condition holds).
EXPECTED: dict[tuple[str, int], list[tuple[str, Condition]]] = {
    ("security", 4624): [("user.name", always), ("winlog.logon.type", always),
                         ("winlog.logon.id", always), ("source.ip", ip_in("IpAddress")),
                         ("source.port", ip_in("IpAddress"))],
    ("security", 4634): [("user.name", always), ("winlog.logon.id", always)],
    ("security", 4647): [("user.name", always), ("winlog.logon.id", always)],
    ("security", 4648): [("user.name", always), ("user.target.name", always),
                         ("process.executable", has("ProcessName"))],
    ("security", 4672): [("user.name", always), ("user.id", always)],
    ("security", 4688): [("process.executable", always), ("process.pid", always),
                         ("process.parent.executable", has("ParentProcessName")),
                         ("process.command_line", has("CommandLine")),
                         ("user.name", has("SubjectUserName"))],
    ("security", 4697): [("service.name", always), ("user.name", always)],
    ("security", 4701): [("user.name", always)],
    ("security", 4702): [("user.name", always)],
    ("security", 4768): [("user.name", always), ("source.ip", ip_in("IpAddress"))],
    ("security", 4769): [("user.name", always), ("source.ip", ip_in("IpAddress")),
                         ("service.name", always)],
    ("security", 4776): [("user.name", always), ("source.domain", has("Workstation"))],
    ("security", 5156): [("source.ip", always), ("destination.ip", always),
                         ("destination.port", always), ("process.executable", always)],
    ("service_control", 7045): [("service.name", always), ("user.id", always)],
    ("eventlog", 1102): [("user.name", always)],
    ("eventlog", 104): [("event.action", always)],
    ("sysmon", 1): [("process.executable", always), ("process.command_line", always),
                    ("process.parent.executable", has("ParentImage")),
                    ("process.pid", has("ProcessId")),
                    ("process.entity_id", always), ("user.name", has("User")),
                    ("process.hash.sha256", mentions("SHA256=", "Hashes"))],
    ("sysmon", 3): [("source.ip", always), ("destination.ip", always),
                    ("destination.port", always), ("network.transport", always),
                    ("process.executable", always)],
    ("sysmon", 5): [("process.executable", always)],
    ("sysmon", 7): [("process.executable", always), ("file.path", always)],
    ("sysmon", 8): [("process.executable", always)],
    ("sysmon", 10): [("process.executable", always), ("process.pid", always)],
    ("sysmon", 11): [("file.path", always), ("file.name", always),
                     ("process.executable", always)],
    ("sysmon", 12): [("registry.path", has("TargetObject")),
                     ("registry.hive", mentions("HK", "TargetObject"))],
    ("sysmon", 13): [("registry.path", has("TargetObject")),
                     ("registry.value", has("TargetObject")),
                     ("registry.data.strings", has("Details"))],
    ("sysmon", 15): [("file.path", always)],
    ("sysmon", 17): [("file.name", always)],
    ("sysmon", 18): [("file.name", always)],
    ("sysmon", 22): [("dns.question.name", always)],
    ("sysmon", 23): [("file.path", always)],
    ("sysmon", 26): [("file.path", always)],
    ("powershell_operational", 4103): [("process.command_line", mentions("Host Application")),
                                       ("user.name", mentions("User = ")),
                                       ("powershell.command.invocation_details", has("Payload"))],
    ("powershell_operational", 4104): [("powershell.file.script_block_text", always),
                                       ("powershell.file.script_block_id", always)],
    ("powershell", 400): [("process.command_line", mentions("HostApplication=", "message"))],
    ("powershell", 800): [("process.command_line", mentions("HostApplication=", "message")),
                          ("user.name", mentions("UserId=", "message"))],
    ("defender", 1119): [("rule.name", always), ("file.path", always),
                         ("process.executable", always), ("user.name", always)],
}  # fmt: skip


@pytest.mark.slow
def test_event_id_specific_fields_are_set() -> None:
    checked: Counter[tuple[str, int]] = Counter()
    missing: list[str] = []
    for _, _, fragment in itertools.chain(sigma_parsed(), otrf_parsed()):
        key = family_key(fragment)
        if key not in EXPECTED:
            continue
        data = fragment["winlog"].get("event_data") or fragment["winlog"].get("user_data") or {}
        checked[key] += 1
        for path, condition in EXPECTED[key]:
            if condition(data, fragment) and dig(fragment, path) in (None, "", []):
                missing.append(f"{key} {fragment['winlog'].get('record_id')}: {path}")
    print("\nevents checked for event-id-specific fields:")
    print("  " + ", ".join(f"{n}/{i}: {c}" for (n, i), c in sorted(checked.items())))
    assert not missing, f"{len(missing)} missing, e.g. {missing[:10]}"
    # Every expectation met at least once: the data holds the event ids listed.
    assert set(EXPECTED) <= set(checked), set(EXPECTED) - set(checked)


# --- events the data lacks, in evtx JSON shape ---------------------------------------------


def evtx_event(
    event_id: int | dict[str, Any],
    provider: str,
    channel: str,
    data: Any = None,
    user_data: Any = None,
    keywords: str = "0x8020000000000000",
    **system: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "System": {
            "Provider": {"#attributes": {"Name": provider}},
            "EventID": event_id,
            "Version": 0,
            "Level": 0,
            "Task": 12544,
            "Opcode": 0,
            "Keywords": keywords,
            "TimeCreated": {"#attributes": {"SystemTime": "2024-05-06T07:08:09.1234567Z"}},
            "EventRecordID": 42,
            "Execution": {"#attributes": {"ProcessID": 704, "ThreadID": 812}},
            "Channel": channel,
            "Computer": "dc01.so-tttt.gov.vn",
            "Security": None,
            **system,
        }
    }
    if data is not None:
        body["EventData"] = data
    if user_data is not None:
        body["UserData"] = user_data
    return {"Event": body}


AUDIT = "Microsoft-Windows-Security-Auditing"
SUBJECT = {
    "SubjectUserSid": "S-1-5-21-1-2-3-500", "SubjectUserName": "quantri",
    "SubjectDomainName": "SOTTTT", "SubjectLogonId": "0x3e7a1",
}  # fmt: skip
ACCOUNT = {"TargetUserName": "nguyenvana", "TargetDomainName": "SOTTTT",
           "TargetSid": "S-1-5-21-1-2-3-1107"}  # fmt: skip
GROUP = {"MemberName": "CN=Nguyen Van A,OU=Users,DC=sotttt,DC=gov",
         "MemberSid": "S-1-5-21-1-2-3-1107", "TargetUserName": "Domain Admins",
         "TargetDomainName": "SOTTTT", "TargetSid": "S-1-5-21-1-2-3-512"}  # fmt: skip

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("4625 failed network logon", evtx_event(4625, AUDIT, "Security", {
        "SubjectUserSid": "S-1-5-18", "SubjectUserName": "WS01$", "SubjectDomainName": "SOTTTT",
        "SubjectLogonId": "0x3e7", "TargetUserSid": "S-1-0-0", "TargetUserName": "admin",
        "TargetDomainName": "SOTTTT", "Status": "0xc000006d", "FailureReason": "%%2313",
        "SubStatus": "0xc000006a", "LogonType": "3", "LogonProcessName": "NtLmSsp ",
        "AuthenticationPackageName": "NTLM", "WorkstationName": "KALI", "ProcessId": "0x0",
        "ProcessName": "-", "IpAddress": "203.0.113.50", "IpPort": "51234",
    }, keywords="0x8010000000000000"), {
        "event.action": "logon-failed", "event.outcome": "failure",
        "event.category": ["authentication"], "event.type": ["start"],
        "user.name": "admin", "user.id": None, "user.domain": "SOTTTT", "user.target": None,
        "winlog.logon.id": "0x3e7", "source.ip": "203.0.113.50", "source.port": 51234,
        "source.domain": "KALI",
        "winlog.logon.type": "Network", "winlog.keywords": ["Audit Failure"],
        "winlog.logon.failure.reason": "Unknown user name or bad password.",
        "winlog.logon.failure.status":
            "This is either due to a bad username or authentication information",
        "winlog.logon.failure.sub_status": "User logon with misspelled or bad password",
        "process.pid": None,
    }),
    ("4625 unknown status kept", evtx_event(4625, AUDIT, "Security", {
        "TargetUserName": "x", "Status": "0xc0000999", "FailureReason": "%%9999",
        "LogonType": "99",
    }, keywords="0x8010000000000000"), {
        "winlog.logon.failure.status": "0xc0000999", "winlog.logon.failure.reason": "%%9999",
        "winlog.logon.type": "99", "user.name": "x",
    }),
    ("4624 from RDP", evtx_event(4624, AUDIT, "Security", {
        **SUBJECT, "TargetUserSid": "S-1-5-21-1-2-3-1107", "TargetUserName": "nguyenvana",
        "TargetDomainName": "SOTTTT", "TargetLogonId": "0x8f1a2", "LogonType": "10",
        "IpAddress": "::ffff:10.20.30.40", "IpPort": "0", "ProcessId": "0x1fc",
        "ProcessName": "C:\\Windows\\System32\\svchost.exe",
    }), {
        "user.name": "nguyenvana", "user.id": "S-1-5-21-1-2-3-1107", "user.domain": "SOTTTT",
        "winlog.logon.type": "RemoteInteractive", "winlog.logon.id": "0x8f1a2",
        "source.ip": "10.20.30.40", "source.port": 0, "process.pid": 508,
        "process.name": "svchost.exe", "event.outcome": "success",
    }),
    ("4720 user created", evtx_event(4720, AUDIT, "Security", {**SUBJECT, **ACCOUNT}), {
        "event.action": "added-user-account", "event.type": ["user", "creation"],
        "user.name": "quantri", "user.target.name": "nguyenvana",
        "user.target.id": "S-1-5-21-1-2-3-1107", "user.target.domain": "SOTTTT",
    }),
    *(
        (f"{code} account change", evtx_event(code, AUDIT, "Security", {**SUBJECT, **ACCOUNT}),
         {"event.action": action, "event.category": ["iam"], "user.name": "quantri",
          "user.target.name": "nguyenvana"})
        for code, action in (
            (4722, "enabled-user-account"), (4724, "reset-password"),
            (4725, "disabled-user-account"), (4726, "deleted-user-account"),
            (4738, "modified-user-account"), (4740, "locked-out-user-account"),
        )
    ),
    *(
        (f"{code} member added", evtx_event(code, AUDIT, "Security", {**SUBJECT, **GROUP}),
         {"event.action": "added-member-to-group", "event.type": ["group", "change"],
          "user.name": "quantri", "user.target.name": "Nguyen Van A",
          "user.target.id": "S-1-5-21-1-2-3-1107", "group.name": "Domain Admins",
          "group.id": "S-1-5-21-1-2-3-512", "user.target.group.name": "Domain Admins"})
        for code in (4728, 4732, 4756)
    ),
    *(
        (f"{code} scheduled task", evtx_event(code, AUDIT, "Security", {
            **SUBJECT, "TaskName": "\\Updater", "TaskContent": "<Task/>"}),
         {"event.action": action, "user.name": "quantri",
          "winlog.event_data.TaskName": "\\Updater"})
        for code, action in (
            (4698, "scheduled-task-created"), (4699, "scheduled-task-deleted"),
            (4700, "scheduled-task-enabled"),
        )
    ),
    ("4771 kerberos pre-auth failed", evtx_event(4771, AUDIT, "Security", {
        "TargetUserName": "nguyenvana", "TargetSid": "S-1-5-21-1-2-3-1107",
        "ServiceName": "krbtgt/SOTTTT", "Status": "0x18", "IpAddress": "::ffff:10.1.2.3",
        "IpPort": "50000",
    }, keywords="0x8010000000000000"), {
        "event.action": "kerberos-preauth-failed", "event.outcome": "failure",
        "user.name": "nguyenvana", "source.ip": "10.1.2.3", "service.name": "krbtgt/SOTTTT",
    }),
    ("4769 service ticket for user@REALM", evtx_event(4769, AUDIT, "Security", {
        "TargetUserName": "nguyenvana@SOTTTT.GOV", "TargetDomainName": "SOTTTT.GOV",
        "ServiceName": "CIFS", "Status": "0x0", "IpAddress": "10.1.2.3", "IpPort": "1",
        "TicketEncryptionType": "0x17",
    }), {"user.name": "nguyenvana", "event.outcome": "success", "service.name": "CIFS"}),
    ("4776 NTLM failure", evtx_event(4776, AUDIT, "Security", {
        "PackageName": "MICROSOFT_AUTHENTICATION_PACKAGE_V1_0", "TargetUserName": "admin",
        "Workstation": "KALI", "Status": "0xc0000064",
    }, keywords="0x8010000000000000"), {
        "event.outcome": "failure", "user.name": "admin", "source.domain": "KALI",
        "winlog.logon.failure.status": "User logon with misspelled or bad user account",
    }),
    ("1102 log cleared, UserData", evtx_event(1102, "Microsoft-Windows-Eventlog", "Security",
        user_data={"LogFileCleared": {
            "#attributes": {"xmlns": "http://manifests.microsoft.com/win/2004/08/windows/eventlog"},
            **SUBJECT}}), {
        "event.action": "audit-log-cleared", "user.name": "quantri", "user.domain": "SOTTTT",
        "user.id": "S-1-5-21-1-2-3-500", "winlog.logon.id": "0x3e7a1",
        "winlog.user_data": {"xml_name": "LogFileCleared", **SUBJECT},
        "winlog.event_data": None,
    }),
    ("104 System log cleared", evtx_event(104, "Microsoft-Windows-Eventlog", "System",
        user_data={"LogFileCleared": {"SubjectUserName": "quantri",
                                      "SubjectDomainName": "SOTTTT", "Channel": "System",
                                      "BackupPath": ""}}), {
        "event.action": "log-cleared", "user.name": "quantri",
        "winlog.user_data.Channel": "System",
    }),
    ("7045 with Qualifiers", evtx_event(
        {"#attributes": {"Qualifiers": 16384}, "#text": 7045}, "Service Control Manager",
        "System", {"ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe",
                   "ServiceType": "user mode service", "StartType": "demand start",
                   "AccountName": "LocalSystem"},
        Security={"#attributes": {"UserID": "S-1-5-21-1-2-3-500"}}), {
        "event.code": "7045", "winlog.event_id": "7045", "service.name": "PSEXESVC",
        "service.type": "user mode service", "user.id": "S-1-5-21-1-2-3-500",
        "winlog.event_data.AccountName": "LocalSystem",
    }),
    ("Sysmon 6 driver", evtx_event(6, "Microsoft-Windows-Sysmon",
        "Microsoft-Windows-Sysmon/Operational", {
            "RuleName": "-", "UtcTime": "2024-05-06 07:08:09.100",
            "ImageLoaded": "C:\\Windows\\System32\\drivers\\evil.sys",
            "Hashes": "SHA256=ABCDEF,MD5=0000,IMPHASH=1234", "Signed": "false",
            "Signature": "-", "SignatureStatus": "Unavailable"}), {
        "event.module": "sysmon", "event.dataset": "windows.sysmon_operational",
        "file.path": "C:\\Windows\\System32\\drivers\\evil.sys", "file.name": "evil.sys",
        "file.extension": "sys", "file.hash.sha256": "abcdef", "file.hash.md5": None,
        "file.pe.imphash": "1234", "file.code_signature.status": "Unavailable",
        "file.code_signature.signed": None,
        "@timestamp": datetime(2024, 5, 6, 7, 8, 9, 100000, tzinfo=UTC),
    }),
    ("Sysmon 14 key rename", evtx_event(14, "Microsoft-Windows-Sysmon",
        "Microsoft-Windows-Sysmon/Operational", {
            "EventType": "RenameKey", "TargetObject": "HKU\\S-1-5-21\\Software\\Run",
            "NewName": "HKU\\S-1-5-21\\Software\\Run2", "Image": "C:\\x\\reg.exe",
            "User": "SOTTTT\\nguyenvana"}), {
        "registry.key": "S-1-5-21\\Software\\Run", "registry.hive": "HKU",
        "registry.value": None, "user.name": "nguyenvana", "user.domain": "SOTTTT",
    }),
    ("Sysmon 13 DWORD", evtx_event(13, "Microsoft-Windows-Sysmon",
        "Microsoft-Windows-Sysmon/Operational", {
            "EventType": "SetValue", "TargetObject": "HKLM\\SOFTWARE\\Policies\\X\\Enable",
            "Details": "DWORD (0x00000010)"}), {
        "registry.key": "SOFTWARE\\Policies\\X", "registry.value": "Enable",
        "registry.data": {"strings": ["16"], "type": "REG_DWORD"},
    }),
    ("Sysmon 13 QWORD", evtx_event(13, "Microsoft-Windows-Sysmon",
        "Microsoft-Windows-Sysmon/Operational", {
            "TargetObject": "HKLM\\A\\B", "Details": "QWORD (0x00000001-0x00000002)"}), {
        "registry.data": {"strings": [str((1 << 32) | 2)], "type": "REG_QWORD"},
    }),
    ("Sysmon 25 tampering", evtx_event(25, "Microsoft-Windows-Sysmon",
        "Microsoft-Windows-Sysmon/Operational", {
            "Image": "C:\\x\\hollow.exe", "Type": "Image is replaced", "ProcessId": 4242}), {
        "process.executable": "C:\\x\\hollow.exe", "process.pid": 4242,
        "message": "Image is replaced", "event.action": "ProcessTampering (Process image change)",
    }),
    ("Defender 1116 detection", evtx_event(1116, "Microsoft-Windows-Windows Defender",
        "Microsoft-Windows-Windows Defender/Operational", {
            "Threat Name": "Trojan:Win32/Emotet", "Threat ID": "2147", "Severity ID": "5",
            "Category Name": "Trojan", "Process Name": "Unknown",
            "Path": "file:_C:\\Users\\a\\Downloads\\inv.doc;file:_C:\\Temp\\x.exe",
            "Detection User": "SOTTTT\\nguyenvana", "Action Name": "Not Applicable"}), {
        "event.kind": "alert", "event.category": ["malware"], "event.action": "malware-detected",
        "rule.name": "Trojan:Win32/Emotet", "rule.id": "2147", "event.severity": 5,
        "file.path": "C:\\Users\\a\\Downloads\\inv.doc", "file.name": "inv.doc",
        "process.executable": None, "user.name": "nguyenvana",
    }),
    ("Defender 1117 action", evtx_event(1117, "Microsoft-Windows-Windows Defender",
        "Microsoft-Windows-Windows Defender/Operational", {
            "Threat Name": "Trojan:Win32/Emotet", "Action Name": "Quarantine",
            "Path": "containerfile:_C:\\a.zip", "Process Name": "C:\\x\\explorer.exe"}), {
        "event.action": "malware-action-taken", "event.outcome": "success",
        "file.path": "C:\\a.zip", "process.name": "explorer.exe",
        "winlog.event_data.Action Name": "Quarantine",
    }),
    ("PowerShell 4104 evtx", evtx_event(4104, "Microsoft-Windows-PowerShell",
        "Microsoft-Windows-PowerShell/Operational", {
            "MessageNumber": 1, "MessageTotal": 1, "ScriptBlockText": "Get-Process",
            "ScriptBlockId": "7b5c7e3f-1111-2222-3333-444455556666",
            "Path": "C:\\scripts\\run.ps1"},
        Security={"#attributes": {"UserID": "S-1-5-21-1-2-3-1107"}}), {
        "event.module": "powershell", "event.dataset": "windows.powershell_operational",
        "powershell.file.script_block_text": "Get-Process", "powershell.sequence": 1,
        "powershell.total": 1, "file.path": "C:\\scripts\\run.ps1", "file.extension": "ps1",
        "user.id": "S-1-5-21-1-2-3-1107",
    }),
    ("PowerShell 400, unnamed Data", evtx_event(400, "PowerShell", "Windows PowerShell",
        {"Data": {"#text": [
            "Available", "None",
            "\tNewEngineState=Available\n\tPreviousEngineState=None\n\n\tSequenceNumber=13\n\n"
            "\tHostName=ConsoleHost\n\tHostApplication=powershell.exe -nop -w hidden -c \"iex x\""
            "\n\tEngineVersion=5.1\n\tUserId=SOTTTT\\nguyenvana"]}}), {
        "winlog.event_data.param1": "Available", "winlog.event_data.param2": "None",
        "powershell.engine.new_state": "Available", "event.sequence": 13,
        "process.command_line": "powershell.exe -nop -w hidden -c \"iex x\"",
        "process.args": ["powershell.exe", "-nop", "-w", "hidden", "-c", "iex x"],
        "process.title": "ConsoleHost", "user.name": "nguyenvana",
        "event.type": ["start"],
    }),
    ("unknown event, generic path", evtx_event(9999, "Some-Provider", "Application",
        {"Foo": "bar", "Count": 3}), {
        "event.code": "9999", "event.provider": "Some-Provider", "event.module": "windows",
        "event.dataset": "windows.winlog", "event.category": None, "event.action": None,
        "winlog.task": "12544", "winlog.opcode": "Info", "winlog.keywords": ["Audit Success"],
        "winlog.event_data": {"Foo": "bar", "Count": 3}, "host.name": "dc01.so-tttt.gov.vn",
        "winlog.process.pid": 704, "winlog.process.thread.id": 812, "winlog.record_id": "42",
    }),
]  # fmt: skip


@pytest.mark.parametrize(("event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_event_examples(event: dict[str, Any], expected: dict[str, Any]) -> None:
    fragment = EVTX.parse(event, CONTEXT)
    for path, value in expected.items():
        found = fragment.get(path) if path.startswith("@") else dig(fragment, path)
        assert found == value, path
    validate(fragment)


# --- shapes ---------------------------------------------------------------------------------


def test_event_data_shapes() -> None:
    def data_of(node: Any) -> Any:
        event = evtx_event(1, "P", "C", node)
        return EVTX.parse(event, CONTEXT)["winlog"].get("event_data")

    named = {"Data": [{"#attributes": {"Name": "A"}, "#text": "1"}, {"#attributes": {"Name": "B"}}]}
    assert data_of(named) == {"A": "1", "B": None}
    assert data_of({"Data": ["x", "y"], "Binary": "00FF"}) == {
        "param1": "x", "param2": "y", "Binary": "00FF"}  # fmt: skip
    assert data_of({"Data": {"#text": "only"}}) == {"param1": "only"}
    assert data_of({"Data": {"#text": ["a", "b"]}}) == {"param1": "a", "param2": "b"}
    assert data_of({"Data": {"#attributes": {"Name": "N"}, "#text": "v"}}) == {"N": "v"}
    assert data_of({"Data": "a plain field named Data"}) == {"Data": "a plain field named Data"}
    assert data_of({"#attributes": {"Name": "TaskDisabled"}, "TaskName": "\\T"}) == {
        "TaskName": "\\T"}  # fmt: skip
    assert data_of({}) is None
    assert data_of(None) is None


def test_user_data_flattens_one_element() -> None:
    inner = {"#attributes": {"xmlns": "x"}, "User": "A\\b", "Code": 5}
    event = evtx_event(5858, "WMI", "WMI-Activity", user_data={"Operation_ClientFailure": inner})
    winlog = EVTX.parse(event, CONTEXT)["winlog"]
    assert winlog["user_data"] == {"xml_name": "Operation_ClientFailure", "User": "A\\b", "Code": 5}


@pytest.mark.parametrize(
    ("system_time", "expected"),
    [
        ("2019-11-07T10:34:29.0559196Z", datetime(2019, 11, 7, 10, 34, 29, 55919, tzinfo=UTC)),
        ("2019-03-19 23:34:26.123456 UTC", datetime(2019, 3, 19, 23, 34, 26, 123456, tzinfo=UTC)),
        ("2019-03-19T23:34:26", datetime(2019, 3, 19, 23, 34, 26, tzinfo=UTC)),
        ("2019-03-19T23:34:26+07:00", datetime(2019, 3, 19, 16, 34, 26, tzinfo=UTC)),
        ("2019-13-19T23:34:26Z", None),
        ("2019-02-30T23:34:26Z", None),
        ("not a time", None),
    ],
)
def test_system_time(system_time: str, expected: datetime | None) -> None:
    event = evtx_event(1, "P", "C", TimeCreated={"#attributes": {"SystemTime": system_time}})
    fragment = EVTX.parse(event, CONTEXT)
    assert fragment.get("@timestamp") == expected
    assert "timezone" not in fragment["event"]  # SystemTime is UTC by definition


def test_flat_zone_less_event_time_is_read_in_the_source_zone() -> None:
    line = {"EventID": 4624, "Channel": "Security", "SourceName": AUDIT,
            "EventTime": "2024-05-06 14:00:00", "Hostname": "ws01"}  # fmt: skip
    fragment = FLAT.parse(line, ParseContext(timezone="Asia/Ho_Chi_Minh"))
    assert fragment["@timestamp"] == datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
    assert fragment["event"]["timezone"] == "Asia/Ho_Chi_Minh"
    line["EventTime"] = "2024-05-06T14:00:00+07:00"
    fragment = FLAT.parse(line, ParseContext(timezone="America/New_York"))
    assert fragment["@timestamp"] == datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
    assert "timezone" not in fragment["event"]


def test_flat_names_shared_by_nxlog_and_event_data() -> None:
    line = {
        "EventID": 7045, "Channel": "System", "SourceName": "Service Control Manager",
        "AccountName": "LocalSystem", "ServiceName": "x", "ProviderName": "ignored?",
        "EventType": "INFO", "Version": "11.0", "ProcessID": "5156",
    }  # fmt: skip
    data = FLAT.parse(line, CONTEXT)["winlog"]["event_data"]
    # Without UserID NXLog did not resolve an account: AccountName is the event's own.
    assert data == {"AccountName": "LocalSystem", "ServiceName": "x", "ProviderName": "ignored?",
                    "Version": "11.0", "ProcessID": "5156"}  # fmt: skip
    line.pop("SourceName")
    fragment = FLAT.parse(line, CONTEXT)
    assert fragment["event"]["provider"] == "ignored?"  # no SourceName: ProviderName is it
    assert "ProviderName" not in fragment["winlog"]["event_data"]


def test_not_mine() -> None:
    not_evtx: list[dict[str, Any]] = [
        {},
        {"Event": {}},
        {"Event": {"System": {}}},
        {"Event": {"System": "x"}},
        {"Event": {"System": {"EventID": "abc"}}},
        {"Event": {"System": {"EventID": -1}}},
    ]
    for data in not_evtx:
        with pytest.raises(NotMine):
            EVTX.parse(data, CONTEXT)
    not_flat: list[dict[str, Any]] = [
        {},
        {"EventID": 1},
        {"EventID": "x", "Channel": "Security"},
        {"EventID": 1, "Channel": [5]},
        {"EventID": 70000, "Channel": "Security"},
    ]
    for data in not_flat:
        with pytest.raises(NotMine):
            FLAT.parse(data, CONTEXT)


def test_sniff() -> None:
    assert EVTX.sniff({"Event": {"System": {}}})
    assert not EVTX.sniff({"Event": {"EventData": {}}})
    assert not EVTX.sniff({"EventID": 1, "Channel": "Security"})
    assert FLAT.sniff({"EventID": 1, "Channel": "Security"})
    assert FLAT.sniff({"EventID": 1, "SourceName": "x"})
    assert not FLAT.sniff({"EventID": 1})
    assert not FLAT.sniff({"Event": {"System": {}}})


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ('"C:\\Program Files\\a.exe" /x "b c"', ["C:\\Program Files\\a.exe", "/x", "b c"]),
        ('a\\\\"b c"', ["a\\b c"]),
        ('a\\"b', ['a"b']),
        ('"a""b"', ['a"b']),
        ("  a\t b  ", ["a", "b"]),
        ("C:\\x\\", ["C:\\x\\"]),
        ("", []),
    ],
)
def test_split_command_line(command: str, args: list[str]) -> None:
    assert split_command_line(command) == args


def reference_split(command: str) -> list[str]:
    """CommandLineToArgvW's rules one character at a time, as Go and Elastic write them."""
    args: list[str] = []
    i, size = 0, len(command)
    while i < size:
        while i < size and command[i] in " \t":
            i += 1
        if i >= size:
            break
        arg: list[str] = []
        quoted, slashes = False, 0
        while i < size:
            char = command[i]
            if char in " \t" and not quoted:
                break
            if char == "\\":
                slashes += 1
            elif char == '"':
                arg.append("\\" * (slashes // 2))
                if slashes % 2:
                    arg.append('"')
                else:
                    if quoted and i + 1 < size and command[i + 1] == '"':
                        arg.append('"')
                        i += 1
                    quoted = not quoted
                slashes = 0
            else:
                arg.append("\\" * slashes + char)
                slashes = 0
            i += 1
        arg.append("\\" * slashes)
        args.append("".join(arg))
    return args


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from(' \t"\\ab'), max_size=30))
def test_split_command_line_agrees_with_the_reference(command: str) -> None:
    assert split_command_line(command) == reference_split(command)


# --- fast paths: each agrees with the plain reading it stands in for ------------------------
# The references are the readings the parsers had before: regexes over the whole text, and the
# general timestamp regex.

REFERENCE_KEY_VALUE = re.compile(
    r"^[ \t]*([A-Za-z][A-Za-z ]{0,63}?)[ \t]*=[ \t]*(.*?)[ \t\r]*$", re.M
)
REFERENCE_DETAILS_HEADER = re.compile(r"\n\s*Details:\s*\n")
REFERENCE_DETAIL = re.compile(r"([^:(\r\n]+)\((.+)\):\s*(.*)")
REFERENCE_BINDING = re.compile(r"name=(.+?);\s*value=(.*)")
REFERENCE_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?\s*(Z|UTC|[+-]\d\d:?\d\d)?",
    re.IGNORECASE,
)


def reference_key_values(textual: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in REFERENCE_KEY_VALUE.finditer(textual):
        found.setdefault(match.group(1).replace(" ", ""), match.group(2))
    return found


def reference_details(message: str) -> list[dict[str, str]] | None:
    """Invocation details of a rendered 800: the message split at its headers, then per line."""
    parts = REFERENCE_DETAILS_HEADER.split(message.replace("\r\n", "\n"))
    if len(parts) < 2:
        return None
    details: list[dict[str, str]] = []
    for line in parts[-1].splitlines():
        line = line.strip()
        if not line:
            continue
        match = REFERENCE_DETAIL.fullmatch(line)
        if match is None:
            details.append({"value": line})
            continue
        kind, command, value = match.groups()
        entry = {"type": kind, "related_command": command, "value": value}
        binding = REFERENCE_BINDING.fullmatch(value) if kind == "ParameterBinding" else None
        if binding is not None:
            entry["name"], entry["value"] = binding.groups()
        details.append(entry)
    return details


def reference_time(value: Any, zone: str | None) -> tuple[datetime, str | None] | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = REFERENCE_TIME.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    assumed = None
    try:
        if offset is None:
            tz: tzinfo = UTC if zone is None else ZoneInfo(zone)
            assumed = zone
        elif offset.upper() in ("Z", "UTC"):
            tz = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
        stamp = datetime(int(year), int(month), int(day), int(hour), int(minute),
                         min(int(second), 59), micro, tzinfo=tz)  # fmt: skip
        return stamp.astimezone(UTC), assumed
    except (ValueError, OverflowError):
        return None


# Line breaks as re's ``$`` sees them (only \n) and as str.splitlines does (all of these).
BREAKS = ["\n", "\r\n", "\r", "\r\r\n", "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028", " \n"]
KEY_VALUE_LINES = st.one_of(
    st.builds(
        lambda lead, key, before, after, value, trail: f"{lead}{key}{before}={after}{value}{trail}",
        st.text(alphabet=" \t", max_size=3),
        st.one_of(st.text(alphabet="aZ \t", max_size=8), st.text(alphabet="ab ", min_size=60,
                                                                  max_size=70)),
        st.text(alphabet=" \t\r", max_size=3),
        st.text(alphabet=" \t\r", max_size=3),
        st.text(alphabet="x= \t\r\x0bé", max_size=12),
        st.text(alphabet=" \t\r", max_size=3),
    ),
    st.text(alphabet="aZ =\t\r\x0b\x1c\x85\u2028é(1", max_size=20),
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(KEY_VALUE_LINES, st.sampled_from(BREAKS)), max_size=8))
def test_key_values_agrees_with_the_multiline_regex(lines: list[tuple[str, str]]) -> None:
    textual = "".join(line + end for line, end in lines)
    assert key_values(textual) == reference_key_values(textual)
    assert key_values(textual.rstrip("\n")) == reference_key_values(textual.rstrip("\n"))


DETAIL_LINES = st.one_of(
    st.sampled_from([
        "Details:", " \tDetails: ", "CommandInvocation(Out-Default): \"Out-Default\"",
        "ParameterBinding(Start-Sleep): name=\"Seconds\"; value=\"5\"",
        "ParameterBinding(x): name=a;b; \tvalue=c; value=d", "ParameterBinding(x): name=;value=",
        "A(b): c): d", "a:b(c): d", "(x): y", "k(): v", "k(x)): v", "Key=Value", "",
    ]),
    st.text(alphabet="aD:() ;=\t\r\x1c\x85\u3000", max_size=16),
)  # fmt: skip


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(DETAIL_LINES, st.sampled_from(BREAKS)), max_size=10))
def test_details_agree_with_splitting_the_normalized_message(
    lines: list[tuple[str, str]],
) -> None:
    message = "".join(line + end for line, end in lines)
    details = details_section(message)
    found = invocation_details(details) if details is not None else None
    assert found == reference_details(message)


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    """Times in the shapes NXLog, Sysmon and EVTX write, near misses, and impossible ones."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    second = draw(st.sampled_from([f"{moment.second:02d}"] * 6 + ["60", "61", "99"]))
    sep = draw(st.sampled_from(["T", " ", "T", " ", "t", "_"]))
    digits = draw(st.text(alphabet="0123456789", min_size=1, max_size=10))
    fraction = draw(st.sampled_from(["", "", f".{digits}", f".{digits}", f",{digits}", "."]))
    zone = draw(st.sampled_from(["", "", "Z", "Z", "z", " Z", "UTC", " utc", "+07:00", "-0530",
                                 "+99:99", "+24:00"]))  # fmt: skip
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}{sep}{moment.hour:02d}:"
            f"{moment.minute:02d}:{second}{fraction}{zone}")  # fmt: skip
    if draw(st.integers(0, 4)) == 0:  # a character swapped for a look-alike
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(list("0１٣ -:T+Z."))) + text[at + 1 :]
    return draw(st.sampled_from([text, text, f" {text} ", text + "\n"]))


@settings(max_examples=3000, deadline=None)
@given(time_texts(), st.sampled_from([None, "Asia/Ho_Chi_Minh", "America/New_York",
                                      "Australia/Lord_Howe", "UTC"]))  # fmt: skip
def test_time_agrees_with_the_general_reading(value: str, zone: str | None) -> None:
    found, expected = read_time(value, zone), reference_time(value, zone)
    assert (found is None) == (expected is None), value
    if found is not None and expected is not None:
        assert found == expected and repr(found[0]) == repr(expected[0]), value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" \t\\ab\u3000"), max_size=30))
def test_split_command_line_without_quotes_agrees_with_the_reference(command: str) -> None:
    assert split_command_line(command) == reference_split(command)


def test_named_event_data_is_kept_as_it_is() -> None:
    for data in ({"A": 1, "Data": "x", "B": None}, {"Data": 5}, {"A": [1], "B": {"c": 2}}):
        event = evtx_event(1, "Microsoft-Windows-Sysmon", "X", data)
        assert EVTX.parse(event, CONTEXT)["winlog"]["event_data"] == data


def test_time_in_the_hour_a_zone_skips_or_repeats() -> None:
    for value in ("2024-03-10 02:30:00", "2024-11-03 01:30:00", "2024-11-03T01:30:00.5"):
        assert read_time(value, "America/New_York") == reference_time(value, "America/New_York")


def test_sysmon_time_whether_or_not_the_zone_was_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """UtcTime wins over EventTime; EventTime is read first only in a zone not seen yet."""
    monkeypatch.setattr(windows_values, "_ZONES", {})
    line = {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational",
            "SourceName": "Microsoft-Windows-Sysmon", "EventTime": "2024-05-06 14:00:00",
            "UtcTime": "2024-05-06 07:00:01.250"}  # fmt: skip
    context = ParseContext(timezone="Asia/Ho_Chi_Minh")
    first, again = FLAT.parse(line, context), FLAT.parse(line, context)
    assert first == again
    assert first["@timestamp"] == datetime(2024, 5, 6, 7, 0, 1, 250000, tzinfo=UTC)
    assert "timezone" not in first["event"]
    line["UtcTime"] = "not a time"
    fragment = FLAT.parse(line, context)
    assert fragment["@timestamp"] == datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
    assert fragment["event"]["timezone"] == "Asia/Ho_Chi_Minh"


# --- property tests -------------------------------------------------------------------------

FIELD_NAMES = [
    "TargetUserName", "TargetUserSid", "TargetSid", "TargetDomainName", "SubjectUserName",
    "SubjectUserSid", "SubjectDomainName", "SubjectLogonId", "TargetLogonId", "LogonType",
    "IpAddress", "IpPort", "WorkstationName", "Workstation", "ProcessId", "ProcessName",
    "NewProcessId", "NewProcessName", "ParentProcessName", "CommandLine", "FailureReason",
    "Status", "SubStatus", "ServiceName", "ServiceType", "MemberName", "MemberSid",
    "AccountName", "AccountDomain", "ClientAddress", "ClientName", "LogonID", "Application",
    "ProcessID", "SourceAddress", "SourcePort", "DestAddress", "DestPort", "Protocol",
    "Direction", "RuleName", "User", "ProcessGuid", "SourceProcessGuid", "SourceProcessId",
    "SourceThreadId", "Image", "SourceImage", "Destination", "CurrentDirectory",
    "ParentProcessGuid", "ParentProcessId", "ParentImage", "ParentCommandLine",
    "OriginalFileName", "Hashes", "Hash", "ImageLoaded", "Device", "TargetFilename", "PipeName",
    "Signature", "SignatureStatus", "Signed", "DestinationPortName", "SourceIp",
    "SourceHostname", "DestinationIp", "DestinationPort", "Initiated", "SourceIsIpv6",
    "QueryName", "QueryResults", "QueryStatus", "TargetObject", "EventType", "Details", "Type",
    "ID", "Archived", "IsExecutable", "UtcTime", "ContextInfo", "Payload", "ScriptBlockText",
    "ScriptBlockId", "MessageNumber", "MessageTotal", "Path", "ScriptName", "UserId",
    "ConnectedUser", "HostApplication", "param1", "param2", "param3", "Threat Name", "Threat ID",
    "Category Name", "Severity ID", "Process Name", "Detection User", "Data", "#attributes",
    "#text", "Binary",
]  # fmt: skip
TRICKY = [
    "-", "", "0", "0x0", "0x", "0xffffffffffffffffffffffff", "-1", "99999999999999999999999",
    "2019-13-45T25:61:61Z", "2020-02-30 10:00:00", "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59", "2024-01-01T00:00:00+99:99", "::ffff:1.2.3.4", "::ffff:x",
    "DOMAIN\\user", "\\", "a\\b\\c", "user@", "@realm", "SHA1=00,MD5=,SHA256=ABC,=,IMPHASH",
    "type:  5 x;::ffff:1.2.3.4;type:", "DWORD (0xFFFFFFFF)", "QWORD (0xffffffff-0xffffffff)",
    "Binary Data", "HKLM", "HKLM\\", "\\\\", "file:_", "file:_C:\\x.exe;file:_C:\\y",
    "%%2313", "%%", "0xc000006d", '"a b" c\\\\"d\\', "Host Application = x\n User = A\\b",
    "CommandInvocation(x): y\nParameterBinding(x): name=a; value=b\n(((", "\x00\ufffd\U0010ffff",
    "x" * (1 << 20), "\\" * 5000 + '"',
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace")),
    st.sampled_from(TRICKY),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), inner,
                        max_size=4),
    ),
    max_leaves=12,
)  # fmt: skip
FIELDS = st.dictionaries(st.sampled_from(FIELD_NAMES), VALUES, max_size=12)
EVENT_IDS = st.one_of(
    st.sampled_from([1, 3, 7, 10, 11, 12, 13, 14, 22, 23, 25, 104, 400, 800, 1102, 1116, 1117,
                     4103, 4104, 4624, 4625, 4634, 4648, 4688, 4697, 4720, 4728, 4768, 4771,
                     4776, 4778, 5156, 7045]),
    st.integers(min_value=-5, max_value=70000),
    st.text(max_size=6),
    VALUES,
)  # fmt: skip
PROVIDERS = st.one_of(
    st.sampled_from([AUDIT, "Microsoft-Windows-Sysmon", "Microsoft-Windows-PowerShell",
                     "PowerShell", "Microsoft-Windows-Windows Defender", "Service Control Manager",
                     "Microsoft-Windows-Eventlog", "Other"]),
    VALUES,
)  # fmt: skip
CHANNELS = st.one_of(
    st.sampled_from(["Security", "security", "System", "Microsoft-Windows-Sysmon/Operational",
                     "Windows PowerShell", "Microsoft-Windows-PowerShell/Operational",
                     "Microsoft-Windows-Windows Defender/Operational"]),
    VALUES,
)  # fmt: skip
TIMES = st.one_of(st.sampled_from(TRICKY), st.datetimes().map(str), st.datetimes().map(
    lambda d: d.isoformat() + "Z"), VALUES)  # fmt: skip


def check(parser: WinlogEvtxParser | WinlogFlatParser, data: Any) -> None:
    try:
        fragment = parser.parse(data, CONTEXT)
    except NotMine:
        return
    assert isinstance(fragment, dict)
    validate(fragment)
    stamp = fragment.get("@timestamp")
    assert stamp is None or stamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize("name", ["CommandLine", "CurrentDirectory"])
def test_a_sysmon_process_field_given_as_a_list_is_left_out(name: str) -> None:
    # Found by the flat parser's property test: the compiled parser raised a TypeError.
    event = {"EventID": 1, "SourceName": "Microsoft-Windows-Sysmon", "Image": "C:\\a.exe",
             "Channel": "Microsoft-Windows-Sysmon/Operational", name: ["a", "b"]}  # fmt: skip
    fragment = FLAT.parse(event, CONTEXT)
    process = fragment["process"]
    assert process["executable"] == "C:\\a.exe"
    assert "command_line" not in process and "working_directory" not in process


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"EventID": EVENT_IDS, "Provider": st.fixed_dictionaries(
            {"#attributes": st.fixed_dictionaries({"Name": PROVIDERS})})},
        optional={"Channel": CHANNELS, "Computer": VALUES, "EventRecordID": VALUES,
                  "TimeCreated": st.fixed_dictionaries(
                      {"#attributes": st.fixed_dictionaries({"SystemTime": TIMES})}),
                  "Keywords": VALUES, "Level": VALUES, "Task": VALUES, "Opcode": VALUES,
                  "Execution": VALUES, "Security": VALUES, "Correlation": VALUES,
                  "Version": VALUES},
    ),
    st.one_of(st.none(), FIELDS, VALUES, st.fixed_dictionaries({"Data": VALUES})),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=8), FIELDS, max_size=2), VALUES),
)  # fmt: skip
def test_evtx_parser_on_arbitrary_events(system: Any, event_data: Any, user_data: Any) -> None:
    event: dict[str, Any] = {"System": system}
    if event_data is not None:
        event["EventData"] = event_data
    if user_data is not None:
        event["UserData"] = user_data
    check(EVTX, {"Event": event})


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"EventID": EVENT_IDS},
        optional={"Channel": CHANNELS, "SourceName": PROVIDERS, "ProviderName": PROVIDERS,
                  "Hostname": VALUES, "EventTime": TIMES, "TimeCreated": TIMES,
                  "@timestamp": TIMES, "Keywords": VALUES, "EventType": VALUES,
                  "UserID": VALUES, "Message": VALUES, "Level": VALUES, "Severity": VALUES,
                  "Category": VALUES, "Task": VALUES, "RecordNumber": VALUES,
                  "ExecutionProcessID": VALUES, "Version": VALUES, "OpcodeValue": VALUES},
    ),
    FIELDS,
)  # fmt: skip
def test_flat_parser_on_arbitrary_events(meta: dict[str, Any], fields: dict[str, Any]) -> None:
    check(FLAT, {**fields, **meta})


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_parsers_on_arbitrary_json(value: Any) -> None:
    check(EVTX, value)
    check(FLAT, value)
    check(EVTX, {"Event": value})
    check(EVTX, {"Event": {"System": value}})
    if isinstance(value, dict):
        check(FLAT, {"EventID": 4624, "Channel": "Security", **value})


@settings(max_examples=300, deadline=None)
@given(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace")))
def test_parsers_on_arbitrary_text_fields(text: str, garbled: str) -> None:
    for code in (1, 3, 13, 22, 4103, 4624, 4688, 1116):
        for parser, shape in ((EVTX, "evtx"), (FLAT, "flat")):
            fields = dict.fromkeys(FIELD_NAMES, text) | {"Hashes": garbled, "Details": garbled}
            if shape == "evtx":
                check(parser, evtx_event(code, AUDIT if code > 4000 else "Microsoft-Windows-Sysmon",
                                         "Security", fields))  # fmt: skip
            else:
                check(parser, {**fields, "EventID": code, "Channel": text, "SourceName": garbled,
                               "EventTime": text, "Message": garbled})  # fmt: skip


def test_huge_values_parse_quickly() -> None:
    huge = "A\\" * (1 << 19) + '"'  # 1 MiB: backslashes and a quote, the worst for splitting
    started = datetime.now(UTC)
    for code in (1, 3, 13, 22, 4103, 4104, 4624, 4688, 800, 1116):
        fields = dict.fromkeys(FIELD_NAMES[:-4], huge)
        for provider in (AUDIT, "Microsoft-Windows-Sysmon", "Microsoft-Windows-PowerShell",
                         "PowerShell", "Microsoft-Windows-Windows Defender"):  # fmt: skip
            fragment = EVTX.parse(evtx_event(code, provider, "X", fields), CONTEXT)
            assert fragment["winlog"]["event_data"] == fields
            validate(fragment)
            check(FLAT, {**fields, "EventID": code, "SourceName": provider, "Message": huge})
    assert datetime.now(UTC) - started < timedelta(seconds=30)


def test_the_normalizer_parses_both_shapes() -> None:
    """Through the pipeline's normalizer, as collectors send them: evtx data and JSON lines."""
    normalizer = Normalizer(timezone="America/New_York")

    def normalized(source: SourceRef, data: Any = None, message: str | None = None) -> Any:
        raw = RawRecord(
            id="r1",
            agency=AgencyRef(id="so-tttt", tier="province"),
            collector=CollectorRef(id="c1", version="1"),
            host="collector",
            source=source,
            received=datetime.now(UTC),
            position=0,
            data=data,
            message=message,
        )
        return normalizer.normalize(raw)

    evtx_source = SourceRef(type="evtx", path="C:/Logs/Security.evtx", format="winlog.evtx")
    for _, event, _ in sigma_parsed()[::10]:
        result = normalized(evtx_source, data=event)
        assert result.status == "parsed" and result.format == "winlog.evtx"
        assert result.event.host is not None
        assert result.event.host.name == event["Event"]["System"]["Computer"]
    json_source = SourceRef(type="file", path="/var/log/nxlog.json", format="winlog.json")
    for _, event, fragment in otrf_parsed(every=997):
        result = normalized(json_source, message=json.dumps(event))
        assert result.status == "parsed" and result.format == "winlog.json"
        assert result.event.event.dataset == fragment["event"]["dataset"]
        assert result.event.timestamp == fragment["@timestamp"]
