"""ECS mappings of the Security and System channels: Security auditing, Eventlog, Service Control.

Per event id, after Elastic's winlogbeat security module: ``SECURITY`` (logons, accounts,
groups, processes, Kerberos, the Filtering Platform, ...), ``EVENTLOG`` (a cleared log) and
``SERVICE_CONTROL`` (7045, a service installed), and the families that hold them. The types and
helpers are in ``windows_fields``, the code tables in ``windows_values``.

Where we differ from Elastic, on purpose: in 4624, ``winlog.logon.id`` is the new session's
``TargetLogonId`` (Elastic takes the subject's), so that a logon pairs with its 4634 logoff.
"""

from __future__ import annotations

import re

from detectors.parsers.base import Fragment
from detectors.parsers.windows_fields import (
    EventKind,
    Family,
    Fields,
    get,
    ip,
    number,
    port,
    put,
    put_command_line,
    put_executable,
    put_user,
    text,
)
from detectors.parsers.windows_fields import event_kind as _k
from detectors.parsers.windows_values import (
    FAILURE_REASONS,
    LOGON_STATUS,
    LOGON_TYPES,
    SERVICE_TYPES,
)

# --- Security auditing (Microsoft-Windows-Security-Auditing and Eventlog) ---------------------


def _subject_user(fields: Fields, fragment: Fragment, code: int) -> None:
    put_user(
        fragment,
        ("user",),
        fields.get("SubjectUserSid"),
        fields.get("SubjectUserName"),
        fields.get("SubjectDomainName"),
    )


def _target_user(fields: Fields, fragment: Fragment, code: int) -> None:
    # The target is the user unless a subject already is (4648: subject acts as target).
    root = ("user", "target") if get(fragment, ("user", "name")) else ("user",)
    sid = fields.get("TargetUserSid")
    put_user(
        fragment,
        root,
        sid if text(sid) else fields.get("TargetSid"),
        fields.get("TargetUserName"),
        fields.get("TargetDomainName"),
    )


def _target_account(fields: Fields, fragment: Fragment, code: int) -> None:
    put_user(
        fragment,
        ("user", "target"),
        fields.get("TargetSid"),
        fields.get("TargetUserName"),
        fields.get("TargetDomainName"),
    )


def _effective_user(fields: Fields, fragment: Fragment, code: int) -> None:
    put_user(
        fragment,
        ("user", "effective"),
        fields.get("TargetUserSid"),
        fields.get("TargetUserName"),
        fields.get("TargetDomainName"),
    )


def _strip_rdn(value: str, prefix: str) -> str:
    """``CN=Alice`` or ``cn=Alice`` as ``Alice``, as Elastic reads a member's DN."""
    return value.replace(prefix, "").replace(prefix.lower(), "")


def _group(fields: Fields, fragment: Fragment, code: int) -> None:
    sid = text(fields.get("TargetSid")) or text(fields.get("TargetUserSid"))
    domain = text(fields.get("TargetDomainName"))
    group = {
        "id": sid,
        "name": text(fields.get("TargetUserName")),
        "domain": _strip_rdn(domain, "DC=") if domain else None,
    }
    group = {key: value for key, value in group.items() if value is not None}
    if group:
        fragment["group"] = group
    member = text(fields.get("MemberName"))
    if member is not None:
        parts = member.split(",")
        put(fragment, ("user", "target", "name"), _strip_rdn(parts[0], "CN="))
        if len(parts) >= 4:
            put(fragment, ("user", "target", "domain"), _strip_rdn(parts[3], "DC="))
    put(fragment, ("user", "target", "id"), text(fields.get("MemberSid")))
    if group and get(fragment, ("user", "target")):
        put(fragment, ("user", "target", "group"), dict(group))


def _auth_common(fields: Fields, fragment: Fragment, code: int) -> None:
    pid = number(fields.get("ProcessId"))
    put(fragment, ("process", "pid"), pid or None)  # 0: no process (a network logon)
    put_executable(fragment, ("process",), text(fields.get("ProcessName")))
    put(fragment, ("source", "ip"), ip(fields.get("IpAddress")))
    put(fragment, ("source", "port"), port(fields.get("IpPort")))
    workstation = text(fields.get("WorkstationName")) or text(fields.get("Workstation"))
    put(fragment, ("source", "domain"), workstation)


def _logon_failure(fields: Fields, fragment: Fragment, code: int) -> None:
    reason = text(fields.get("FailureReason"))
    if reason is not None:
        put(
            fragment,
            ("winlog", "logon", "failure", "reason"),
            FAILURE_REASONS.get(reason.replace("%%", "").strip(), reason),
        )
    for key, name in (("Status", "status"), ("SubStatus", "sub_status")):
        status = text(fields.get(key))
        if status is not None and status.lower() not in ("0x0", "0"):
            # Unknown codes are kept as they are: an analyst can still look them up.
            put(
                fragment,
                ("winlog", "logon", "failure", name),
                LOGON_STATUS.get(status.lower(), status),
            )
    if code == 4776:
        status = text(fields.get("Status"))
        if status is not None:
            put(
                fragment,
                ("event", "outcome"),
                "success" if status.lower() in ("0x0", "0") else "failure",
            )


def _kerberos(fields: Fields, fragment: Fragment, code: int) -> None:
    status = text(fields.get("Status"))
    if status is not None and code != 4771:
        put(
            fragment,
            ("event", "outcome"),
            "success" if status.lower() in ("0x0", "0") else "failure",
        )
    put(fragment, ("service", "name"), text(fields.get("ServiceName")))


def _process_created(fields: Fields, fragment: Fragment, code: int) -> None:
    put(fragment, ("process", "pid"), number(fields.get("NewProcessId")))
    put_executable(fragment, ("process",), text(fields.get("NewProcessName")))
    put_command_line(fragment, ("process",), text(fields.get("CommandLine")))
    put(fragment, ("process", "parent", "pid"), number(fields.get("ProcessId")))
    put_executable(fragment, ("process", "parent"), text(fields.get("ParentProcessName")))


def _service(fields: Fields, fragment: Fragment, code: int) -> None:
    put(fragment, ("service", "name"), text(fields.get("ServiceName")))
    kind = text(fields.get("ServiceType"))
    if kind is not None:
        put(fragment, ("service", "type"), SERVICE_TYPES.get(kind.lower(), kind))


def _session(fields: Fields, fragment: Fragment, code: int) -> None:
    put(fragment, ("user", "name"), text(fields.get("AccountName")))
    put(fragment, ("user", "domain"), text(fields.get("AccountDomain")))
    address = text(fields.get("ClientAddress"))
    put(fragment, ("source", "ip"), ip("127.0.0.1" if address == "LOCAL" else address))
    put(fragment, ("source", "domain"), text(fields.get("ClientName")))
    put(fragment, ("winlog", "logon", "id"), text(fields.get("LogonID")))


_DIRECTIONS = {"%%14592": "ingress", "%%14593": "egress"}
_IANA_TRANSPORTS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "ipv6-icmp"}


def _filtering_platform(fields: Fields, fragment: Fragment, code: int) -> None:
    put_executable(fragment, ("process",), text(fields.get("Application")))
    pid = fields.get("ProcessID")
    put(fragment, ("process", "pid"), number(pid if pid is not None else fields.get("ProcessId")))
    put(fragment, ("source", "ip"), ip(fields.get("SourceAddress")))
    put(fragment, ("source", "port"), port(fields.get("SourcePort")))
    put(fragment, ("destination", "ip"), ip(fields.get("DestAddress")))
    put(fragment, ("destination", "port"), port(fields.get("DestPort")))
    protocol = text(fields.get("Protocol"))
    if protocol is not None:
        put(fragment, ("network", "iana_number"), protocol)
        put(fragment, ("network", "transport"), _IANA_TRANSPORTS.get(protocol))
    put(fragment, ("network", "direction"), _DIRECTIONS.get(text(fields.get("Direction")) or ""))


# "\tAccount Name:\twardog" lines of a rendered 1102, for shippers that send only the message.
_MESSAGE_FIELD = re.compile(
    r"^[ \t]*(Security ID|Account Name|Domain Name|Logon ID):[ \t]*(\S+)", re.M
)
_MESSAGE_PATHS = {
    "Security ID": ("user", "id"), "Account Name": ("user", "name"),
    "Domain Name": ("user", "domain"), "Logon ID": ("winlog", "logon", "id"),
}  # fmt: skip


def _log_cleared(fields: Fields, fragment: Fragment, code: int) -> None:
    """1102/104: who cleared the log, from UserData, else from the rendered message."""
    _subject_user(fields, fragment, code)
    put(fragment, ("winlog", "logon", "id"), text(fields.get("SubjectLogonId")))
    message = fragment.get("message")
    if get(fragment, ("user", "name")) is None and isinstance(message, str):
        for match in _MESSAGE_FIELD.finditer(message[:4000]):
            if get(fragment, _MESSAGE_PATHS[match.group(1)]) is None:
                put(fragment, _MESSAGE_PATHS[match.group(1)], text(match.group(2)))


def _installer(fields: Fields, fragment: Fragment, code: int) -> None:
    """7045: the account that installed the service is the event's own user (Security UserID)."""
    user = get(fragment, ("winlog", "user"))
    if isinstance(user, dict):
        put_user(fragment, ("user",), user.get("identifier"), user.get("name"), user.get("domain"))


def _logon(fields: Fields, fragment: Fragment, code: int) -> None:
    """Run on every Security event: the logon session and, where there is one, its type.

    The family's first mapper: nothing has set ``winlog.logon`` yet, so it is made here.
    """
    logon: dict[str, str] = {}
    logon_type = fields.get("LogonType")
    if logon_type is not None and (logon_type := text(logon_type)) is not None:
        logon["type"] = LOGON_TYPES.get(logon_type, logon_type)
    logon_id = fields.get("TargetLogonId" if code in _NEW_SESSION else "SubjectLogonId")
    if logon_id is not None and (logon_id := text(logon_id)) is not None:
        logon["id"] = logon_id
    if logon:
        fragment["winlog"]["logon"] = logon


_NEW_SESSION = frozenset({4624, 4634, 4647, 4964})  # their logon id is the target's session


_AUTH = ("authentication",)
_IAM = ("iam",)
_CONF = ("configuration",)
_IAM_CONF = ("iam", "configuration")
_PROCESS = ("process",)
_START, _END, _CHANGE = ("start",), ("end",), ("change",)
_ADMIN_CHANGE = ("admin", "change")
_USER_CHANGE, _GROUP_CHANGE = ("user", "change"), ("group", "change")
_SUBJECT = (_subject_user, _auth_common)
_ACCOUNT = (_subject_user, _target_account, _auth_common)
_GROUP = (_subject_user, _group, _auth_common)

# Elastic's categorization table for the Security channel (x-pack/winlogbeat security module).
SECURITY: dict[int, EventKind] = {
    4610: _k("authentication-package-loaded", _CONF, ("access",)),
    4611: _k("trusted-logon-process-registered", _CONF, _CHANGE),
    4614: _k("notification-package-loaded", _CONF, ("access",)),
    4616: _k("system-time-changed", _CONF, _CHANGE),
    4622: _k("security-package-loaded", _CONF, ("access",)),
    4624: _k("logged-in", _AUTH, _START, _target_user, _auth_common),
    4625: _k("logon-failed", _AUTH, _START, _target_user, _auth_common, _logon_failure,
             outcome="failure"),
    4634: _k("logged-out", _AUTH, _END, _target_user),
    4647: _k("logged-out", _AUTH, _END, _target_user),
    4648: _k("logged-in-explicit", _AUTH, _START, _subject_user, _target_user, _effective_user,
             _auth_common),
    4657: _k("registry-value-modified", ("registry", "configuration"), _CHANGE, _subject_user),
    4670: _k("permissions-changed", _IAM_CONF, _ADMIN_CHANGE, *_ACCOUNT),
    4672: _k("logged-in-special", _IAM, ("admin",), _subject_user),
    4673: _k("privileged-service-called", _IAM, ("admin",), *_SUBJECT),
    4674: _k("privileged-operation", _IAM, ("admin",), *_SUBJECT),
    4688: _k("created-process", _PROCESS, _START, _subject_user, _effective_user,
             _process_created),
    4689: _k("exited-process", _PROCESS, _END, *_SUBJECT),
    4697: _k("service-installed", _IAM_CONF, _ADMIN_CHANGE, *_SUBJECT, _service),
    4698: _k("scheduled-task-created", _IAM_CONF, ("creation", "admin"), _subject_user),
    4699: _k("scheduled-task-deleted", _IAM_CONF, ("deletion", "admin"), _subject_user),
    4700: _k("scheduled-task-enabled", _IAM_CONF, ("change", "admin"), _subject_user),
    4701: _k("scheduled-task-disabled", _IAM_CONF, ("change", "admin"), _subject_user),
    4702: _k("scheduled-task-updated", _IAM_CONF, ("change", "admin"), _subject_user),
    4706: _k("domain-trust-added", _CONF, ("creation",), _subject_user),
    4707: _k("domain-trust-removed", _CONF, ("deletion",), _subject_user),
    4713: _k("kerberos-policy-changed", _CONF, _CHANGE, _subject_user),
    4714: _k("encrypted-data-recovery-policy-changed", _CONF, _CHANGE),
    4715: _k("object-audit-policy-changed", _CONF, _CHANGE),
    4716: _k("trusted-domain-information-changed", _CONF, _CHANGE, _subject_user),
    4717: _k("system-security-access-granted", _IAM_CONF, _ADMIN_CHANGE, _subject_user),
    4718: _k("system-security-access-removed", _IAM_CONF, ("admin", "deletion"), _subject_user),
    4719: _k("changed-audit-config", _IAM_CONF, _ADMIN_CHANGE, *_SUBJECT),
    4720: _k("added-user-account", _IAM, ("user", "creation"), *_ACCOUNT),
    4722: _k("enabled-user-account", _IAM, _USER_CHANGE, *_ACCOUNT),
    4723: _k("changed-password", _IAM, _USER_CHANGE, *_ACCOUNT),
    4724: _k("reset-password", _IAM, _USER_CHANGE, *_ACCOUNT),
    4725: _k("disabled-user-account", _IAM, ("user", "deletion"), *_ACCOUNT),
    4726: _k("deleted-user-account", _IAM, ("user", "deletion"), *_ACCOUNT),
    4727: _k("added-group-account", _IAM, ("group", "creation"), *_GROUP),
    4728: _k("added-member-to-group", _IAM, _GROUP_CHANGE, *_GROUP),
    4729: _k("removed-member-from-group", _IAM, _GROUP_CHANGE, *_GROUP),
    4730: _k("deleted-group-account", _IAM, ("group", "deletion"), *_GROUP),
    4731: _k("added-group-account", _IAM, ("group", "creation"), *_GROUP),
    4732: _k("added-member-to-group", _IAM, _GROUP_CHANGE, *_GROUP),
    4733: _k("removed-member-from-group", _IAM, _GROUP_CHANGE, *_GROUP),
    4734: _k("deleted-group-account", _IAM, ("group", "deletion"), *_GROUP),
    4735: _k("modified-group-account", _IAM, _GROUP_CHANGE, *_GROUP),
    4737: _k("modified-group-account", _IAM, _GROUP_CHANGE, *_GROUP),
    4738: _k("modified-user-account", _IAM, _USER_CHANGE, *_ACCOUNT),
    4739: _k("domain-policy-changed", _CONF, _CHANGE, _subject_user),
    4740: _k("locked-out-user-account", _IAM, _USER_CHANGE, *_ACCOUNT),
    4741: _k("added-computer-account", _IAM, ("creation", "admin"), _subject_user),
    4742: _k("changed-computer-account", _IAM, ("change", "admin"), _subject_user),
    4743: _k("deleted-computer-account", _IAM, ("deletion", "admin"), _subject_user),
    4754: _k("added-group-account", _IAM, ("group", "creation"), *_GROUP),
    4755: _k("modified-group-account", _IAM, _GROUP_CHANGE, *_GROUP),
    4756: _k("added-member-to-group", _IAM, _GROUP_CHANGE, *_GROUP),
    4757: _k("removed-member-from-group", _IAM, _GROUP_CHANGE, *_GROUP),
    4758: _k("deleted-group-account", _IAM, ("group", "deletion"), *_GROUP),
    4764: _k("type-changed-group-account", _IAM, _GROUP_CHANGE, *_GROUP),
    4767: _k("unlocked-user-account", _IAM, _USER_CHANGE, *_ACCOUNT),
    4768: _k("kerberos-authentication-ticket-requested", _AUTH, _START, _target_user,
             _auth_common, _kerberos),
    4769: _k("kerberos-service-ticket-requested", _AUTH, _START, _target_user, _auth_common,
             _kerberos),
    4770: _k("kerberos-service-ticket-renewed", _AUTH, _START, _target_user, _auth_common,
             _kerberos),
    4771: _k("kerberos-preauth-failed", _AUTH, _START, _target_user, _auth_common, _kerberos,
             outcome="failure"),
    4776: _k("credential-validated", _AUTH, _START, _target_user, _auth_common, _logon_failure),
    4778: _k("session-reconnected", ("authentication", "session"), _START, _session),
    4779: _k("session-disconnected", ("authentication", "session"), _END, _session),
    4781: _k("renamed-user-account", _IAM, _USER_CHANGE, *_ACCOUNT),
    4798: _k("group-membership-enumerated", _IAM, ("user", "info"), *_ACCOUNT),
    4799: _k("user-member-enumerated", _IAM, ("group", "info"), *_GROUP),
    4817: _k("object-audit-changed", _IAM_CONF, _ADMIN_CHANGE, *_ACCOUNT),
    4902: _k("user-audit-policy-created", _IAM_CONF, ("admin", "creation")),
    4904: _k("security-event-source-added", _IAM_CONF, _ADMIN_CHANGE, *_SUBJECT),
    4905: _k("security-event-source-removed", _IAM_CONF, ("admin", "deletion"), *_SUBJECT),
    4906: _k("crash-on-audit-changed", _IAM_CONF, _ADMIN_CHANGE),
    4907: _k("audit-setting-changed", _IAM_CONF, _ADMIN_CHANGE, *_ACCOUNT),
    4908: _k("special-group-table-changed", _IAM_CONF, _ADMIN_CHANGE),
    4912: _k("per-user-audit-policy-changed", _IAM_CONF, _ADMIN_CHANGE, *_SUBJECT),
    4950: _k("windows-firewall-setting-changed", _CONF, _CHANGE),
    4954: _k("windows-firewall-group-policy-changed", _CONF, _CHANGE),
    4964: _k("logged-in-special", _IAM, ("admin", "group"), _target_user),
    5024: _k("windows-firewall-service-started", _PROCESS, _START),
    5025: _k("windows-firewall-service-stopped", _PROCESS, _END),
    5033: _k("windows-firewall-driver-started", ("driver",), _START),
    5034: _k("windows-firewall-driver-stopped", ("driver",), _END),
    5037: _k("windows-firewall-driver-error", ("driver",), _END),
    # Not in Elastic's table: the Windows Filtering Platform's connection decisions.
    5152: _k("network-packet-dropped", ("network",), ("denied",), _filtering_platform),
    5156: _k("network-connection-allowed", ("network",), ("connection", "allowed"),
             _filtering_platform),
    5157: _k("network-connection-blocked", ("network",), ("connection", "denied"),
             _filtering_platform),
    5158: _k("network-bind-allowed", ("network",), ("allowed",), _filtering_platform),
}  # fmt: skip

# Event log service events, in the Security channel (11xx) and the System channel (104).
EVENTLOG: dict[int, EventKind] = {
    104: _k("log-cleared", _IAM, _ADMIN_CHANGE, _log_cleared),
    1100: _k("logging-service-shutdown", _PROCESS, _END),
    1102: _k("audit-log-cleared", _IAM, _ADMIN_CHANGE, _log_cleared),
    1104: _k("logging-full", _IAM, ("admin",)),
    1105: _k("auditlog-archieved", _IAM, ("admin",)),  # sic: Elastic's spelling
    1108: _k("logging-processing-error", _IAM, ("admin",)),
}

SERVICE_CONTROL: dict[int, EventKind] = {
    7045: _k("service-installed", _IAM_CONF, _ADMIN_CHANGE, _service, _installer),
}

SECURITY_FAMILY = Family("security", "windows", "windows.winlog", SECURITY, (_logon,))
EVENTLOG_FAMILY = Family("eventlog", "windows", "windows.winlog", EVENTLOG)
SERVICE_CONTROL_FAMILY = Family("service_control", "windows", "windows.winlog", SERVICE_CONTROL)
