"""Values of Windows events: code tables, and readers of the text formats values come in.

The code tables: logon types, 4625 failure reasons, NTSTATUS logon status codes, service types,
Security auditing task numbers, DNS record types and Sysmon's DNS query status, as Elastic's
winlogbeat pipelines carry them. The readers: ``read_time`` (the timestamps of EVTX, NXLog and
Sysmon), ``key_values`` (PowerShell's ``Key = value`` context), ``details_section`` and
``invocation_details`` (PowerShell's pipeline details). Read by the mappings in
``windows_security`` and ``windows_sysmon`` and by the parsers in ``windows``.

The readers run on every event, on values of up to kilobytes: each has a fast path for the
common shapes, and the tests check it against the plain regex reading it stands in for.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from detectors.parsers.windows_fields import ip
from detectors.syslog import zone_named

LOGON_TYPES = {
    "0": "System", "2": "Interactive", "3": "Network", "4": "Batch", "5": "Service",
    "7": "Unlock", "8": "NetworkCleartext", "9": "NewCredentials", "10": "RemoteInteractive",
    "11": "CachedInteractive", "12": "CachedRemoteInteractive", "13": "CachedUnlock",
}  # fmt: skip

# 4625 FailureReason, "%%2313" and so on (msobjs.dll message table).
FAILURE_REASONS = {
    "2304": "An Error occured during Logon.",
    "2305": "The specified user account has expired.",
    "2306": "The NetLogon component is not active.",
    "2307": "Account locked out.",
    "2308": "The user has not been granted the requested logon type at this machine.",
    "2309": "The specified account's password has expired.",
    "2310": "Account currently disabled.",
    "2311": "Account logon time restriction violation.",
    "2312": "User not allowed to logon at this computer.",
    "2313": "Unknown user name or bad password.",
    "2314": "Domain sid inconsistent.",
    "2315": "Smartcard logon is required and was not used.",
}

# 4625 and 4776 Status and SubStatus (NTSTATUS), keys in lower case.
LOGON_STATUS = {
    "0xc000005e": "There are currently no logon servers available to service the logon"
    " request.",
    "0xc0000064": "User logon with misspelled or bad user account",
    "0xc000006a": "User logon with misspelled or bad password",
    "0xc000006d": "This is either due to a bad username or authentication information",
    "0xc000006e": "Unknown user name or bad password.",
    "0xc000006f": "User logon outside authorized hours",
    "0xc0000070": "User logon from unauthorized workstation",
    "0xc0000071": "User logon with expired password",
    "0xc0000072": "User logon to account disabled by administrator",
    "0xc00000dc": "Indicates the Sam Server was in the wrong state to perform the desired"
    " operation.",
    "0xc0000133": "Clocks between DC and other computer too far out of sync",
    "0xc000015b": "The user has not been granted the requested logon type (aka logon right)"
    " at this machine",
    "0xc000018c": "The logon request failed because the trust relationship between the"
    " primary domain and the trusted domain failed.",
    "0xc0000192": "An attempt was made to logon, but the Netlogon service was not started.",
    "0xc0000193": "User logon with expired account",
    "0xc0000224": "User is required to change password at next logon",
    "0xc0000225": "Evidently a bug in Windows and not a risk",
    "0xc0000234": "User logon with account locked",
    "0xc00002ee": "Failure Reason: An Error occurred during Logon",
    "0xc0000413": "Logon Failure: The machine you are logging onto is protected by an"
    " authentication firewall. The specified account is not allowed to authenticate to the"
    " machine.",
    "0xc0000371": "The local account store does not contain secret material for the"
    " specified account",
}  # fmt: skip

# 4697 ServiceType; 7045 writes the name itself ("user mode service").
SERVICE_TYPES = {
    "0x1": "Kernel Driver", "0x2": "File System Driver", "0x8": "Recognizer Driver",
    "0x10": "Win32 Own Process", "0x20": "Win32 Share Process",
    "0x110": "Interactive Own Process", "0x120": "Interactive Share Process",
}  # fmt: skip

# Security auditing task numbers (audit subcategories), for winlog.task where no name is given.
SECURITY_TASKS = {
    12288: "Security State Change", 12289: "Security System Extension",
    12290: "System Integrity", 12291: "IPsec Driver", 12292: "Other System Events",
    12544: "Logon", 12545: "Logoff", 12546: "Account Lockout", 12547: "IPsec Main Mode",
    12548: "Special Logon", 12549: "IPsec Quick Mode", 12550: "IPsec Extended Mode",
    12551: "Other Logon/Logoff Events", 12552: "Network Policy Server",
    12553: "User / Device Claims", 12554: "Group Membership",
    12800: "File System", 12801: "Registry", 12802: "Kernel Object", 12803: "SAM",
    12804: "Other Object Access Events", 12805: "Certification Services",
    12806: "Application Generated", 12807: "Handle Manipulation", 12808: "File Share",
    12809: "Filtering Platform Packet Drop", 12810: "Filtering Platform Connection",
    12811: "Detailed File Share", 12812: "Removable Storage", 12813: "Central Policy Staging",
    13056: "Sensitive Privilege Use", 13057: "Non Sensitive Privilege Use",
    13058: "Other Privilege Use Events", 13312: "Process Creation",
    13313: "Process Termination", 13314: "DPAPI Activity", 13315: "RPC Events",
    13316: "Plug and Play Events", 13317: "Token Right Adjusted Events",
    13568: "Audit Policy Change", 13569: "Authentication Policy Change",
    13570: "Authorization Policy Change", 13571: "MPSSVC Rule-Level Policy Change",
    13572: "Filtering Platform Policy Change", 13573: "Other Policy Change Events",
    13824: "User Account Management", 13825: "Computer Account Management",
    13826: "Security Group Management", 13827: "Distribution Group Management",
    13828: "Application Group Management", 13829: "Other Account Management Events",
    14080: "Directory Service Access", 14081: "Directory Service Changes",
    14082: "Directory Service Replication", 14083: "Detailed Directory Service Replication",
    14336: "Credential Validation", 14337: "Kerberos Service Ticket Operations",
    14338: "Other Account Logon Events", 14339: "Kerberos Authentication Service",
}  # fmt: skip

DNS_TYPES = {
    "1": "A", "2": "NS", "5": "CNAME", "6": "SOA", "12": "PTR", "13": "HINFO", "15": "MX",
    "16": "TXT", "28": "AAAA", "33": "SRV", "35": "NAPTR", "39": "DNAME", "43": "DS",
    "46": "RRSIG", "47": "NSEC", "48": "DNSKEY", "64": "SVCB", "65": "HTTPS", "255": "ANY",
}  # fmt: skip

# Sysmon 22 QueryStatus: the Win32/DNS error codes seen in practice; others are kept as numbers.
SYSMON_DNS_STATUS = {
    "0": "SUCCESS", "5": "ERROR_ACCESS_DENIED", "87": "ERROR_INVALID_PARAMETER",
    "123": "ERROR_INVALID_NAME", "1214": "ERROR_INVALID_NETNAME", "1223": "ERROR_CANCELLED",
    "1460": "ERROR_TIMEOUT", "9002": "DNS_ERROR_RCODE_SERVER_FAILURE",
    "9003": "DNS_ERROR_RCODE_NAME_ERROR", "9005": "DNS_ERROR_RCODE_REFUSED",
    "9501": "DNS_INFO_NO_RECORDS", "9502": "DNS_ERROR_BAD_PACKET",
    "9560": "DNS_ERROR_INVALID_NAME_CHAR", "9701": "DNS_ERROR_RECORD_DOES_NOT_EXIST",
    "9852": "DNS_ERROR_NO_DNS_SERVERS", "10054": "WSAECONNRESET", "10060": "WSAETIMEDOUT",
}  # fmt: skip


# Registry hives by their names and abbreviations, and by the kernel's names (\REGISTRY\USER).
REGISTRY_HIVES = {
    "HKEY_CLASSES_ROOT": "HKCR", "HKCR": "HKCR", "HKEY_CURRENT_CONFIG": "HKCC", "HKCC": "HKCC",
    "HKEY_CURRENT_USER": "HKCU", "HKCU": "HKCU", "HKEY_DYN_DATA": "HKDD", "HKDD": "HKDD",
    "HKEY_LOCAL_MACHINE": "HKLM", "HKLM": "HKLM", "HKEY_PERFORMANCE_DATA": "HKPD",
    "HKPD": "HKPD", "HKEY_USERS": "HKU", "HKU": "HKU",
}  # fmt: skip
NATIVE_HIVES = {"MACHINE": "HKLM", "USER": "HKU"}


# --- Sysmon's DNS query results --------------------------------------------------------------


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


# --- timestamps ---------------------------------------------------------------------------

_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?\s*(Z|UTC|[+-]\d\d:?\d\d)?",
    re.IGNORECASE,
)
_MAX_TIME_TEXT = 64


def read_time(value: Any, zone: str | None) -> tuple[datetime, str | None] | None:
    """(UTC time, zone name if the text had no zone and ``zone`` was assumed), or None.

    A time without a zone is read in ``zone``, or as UTC when ``zone`` is None.
    """
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        return None
    if _iso_shaped(value):
        # The common shapes, read by fromisoformat several times faster than by the regex below,
        # which still reads what fromisoformat refuses (second 60, which it takes as 59).
        try:
            if value[-1] == "Z":
                return datetime.fromisoformat(value), None  # in UTC itself
            # The wall time as if it were UTC, less the zone's offset at that wall time: what
            # astimezone(UTC) does, without datetime.replace, which is slow.
            stamp = datetime.fromisoformat(value + "+00:00")
            if zone is None:
                return stamp, None
            shift = _zone(zone).utcoffset(stamp)
            if shift is not None:
                return stamp - shift, zone
        except ValueError:
            pass
        except OverflowError:
            return None
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    assumed = None
    try:
        if offset is None:
            tz = UTC if zone is None else _zone(zone)
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


def _iso_shaped(value: str) -> bool:
    """Whether ``value`` is ``YYYY-MM-DD[T ]HH:MM:SS``, then maybe ``.`` and 1 to 9 digits, then
    maybe ``Z``: the shapes that ``datetime.fromisoformat`` reads as ``_TIME`` does, when it can.
    """
    if (
        len(value) < 19
        or value[4] != "-"
        or value[7] != "-"
        or value[13] != ":"
        or value[16] != ":"
        or (value[10] != " " and value[10] != "T")
    ):
        return False
    rest = value[19:-1] if value[-1] == "Z" else value[19:]
    if not rest:
        return True
    return rest[0] == "." and 2 <= len(rest) <= 10 and rest.isascii() and rest[1:].isdigit()


_ZONES: dict[str, tzinfo] = {}


def is_zone_known(name: str) -> bool:
    """Whether the zone of that name was read before (and so exists: reading it cannot raise)."""
    return name in _ZONES


def _zone(name: str) -> tzinfo:
    """``zone_named``, remembered: the few zones the sources' settings name, for every event."""
    found = _ZONES.get(name)
    if found is None:
        found = zone_named(name)
        if len(_ZONES) < 64:
            _ZONES[name] = found
    return found


# --- PowerShell's Key = value context and pipeline details ---------------------------------

_BINDING = re.compile(r"name=(.+?);\s*value=(.*)")
_MAX_DETAILS = 1000


def key_values(textual: str) -> dict[str, str]:
    """``Key = value`` lines (PowerShell's ContextInfo, classic event details), keys unspaced.

    A line is text between ``\\n`` (a ``\\r`` before it is trimmed with the value's blanks); its
    key is the text before its first ``=``: 1 to 64 ASCII letters and spaces, starting with a
    letter, blanks around it ignored. The first line with a key wins. The same as the regex
    ``^[ \\t]*([A-Za-z][A-Za-z ]{0,63}?)[ \\t]*=[ \\t]*(.*?)[ \\t\\r]*$`` under ``re.M`` (the
    tests check they agree), but string methods per line are several times faster than that
    regex over kilobytes of base64 command line.
    """
    found: dict[str, str] = {}
    for line in textual.split("\n"):
        key, equals, value = line.partition("=")
        if not equals:
            continue
        key = key.strip(" \t")
        if len(key) > 64 or not key.isascii():
            continue
        key = key.replace(" ", "")
        if key.isalpha() and key not in found:
            found[key] = value.lstrip(" \t").rstrip(" \t\r")
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
        details.append(_invocation_detail(line))
    return details


def _invocation_detail(line: str) -> dict[str, str]:
    """One line of details, stripped: ``Kind(command): value``, or else just a value.

    What the regex ``([^:(\\r\\n]+)\\((.+)\\):\\s*(.*)`` reads from a line (which has no line
    break): the kind runs to the first ``(`` and has no ``:``; the command runs to the last
    ``):``; ``\\s`` is what str.lstrip removes. String methods find these faster than the regex,
    whose ``(.+)`` backtracks from the end of the line (the tests check they agree).
    """
    start = line.find("(")
    end = line.rfind("):")
    if start < 1 or end < start + 2 or line.find(":", 0, start) >= 0:
        return {"value": line}
    kind = line[:start]
    entry = {
        "type": kind,
        "related_command": line[start + 1 : end],
        "value": line[end + 2 :].lstrip(),
    }
    binding = _BINDING.fullmatch(entry["value"]) if kind == "ParameterBinding" else None
    if binding is not None:
        entry["name"], entry["value"] = binding.groups()
    return entry


_DETAILS_HEADER = re.compile(r"\n\s*Details:\s*\n")


def details_section(message: str) -> str | None:
    """What follows the last ``Details:`` header line of a rendered 800; None without one.

    Elastic splits the message, its ``\\r\\n`` made ``\\n``, at ``_DETAILS_HEADER``. Here the
    message is searched as it is, from the blanks before the first ``Details:`` (no header can
    start before them): the headers are the same (``\\s`` takes the ``\\r``), and so are the lines
    that ``invocation_details`` reads from what follows (``splitlines`` takes ``\\r\\n`` as one
    line break, and the empty lines a lone ``\\r`` adds are skipped), at a fraction of the cost:
    nothing is normalized, and the long context section before the headers is not searched.
    """
    first = message.find("Details:")
    if first < 0:
        return None
    start = len(message[:first].rstrip())  # re's \s is what str.rstrip removes
    end = -1
    for match in _DETAILS_HEADER.finditer(message, start):
        end = match.end()
    return message[end:] if end >= 0 else None
