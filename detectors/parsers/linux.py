"""Parsers for the messages of Linux authentication and administration programs.

Each is a ``ProgramParser`` for the message of one family of syslog programs, after Elastic's
``system.auth`` fileset where it has one:

- ``SudoParser``: ``alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls``.
- ``SuParser``: ``Successful su for root by alice``, ``+ pts/0 alice:root``, ``(to root) alice on
  pts/0``.
- ``UserManagementParser``: shadow-utils (useradd, usermod, userdel, groupadd, ..., passwd,
  gpasswd) messages such as ``new user: name=an, UID=1001, ...`` and ``add 'an' to group 'sudo'``.
- ``CronParser``: ``(root) CMD (run-parts /etc/cron.hourly)``, crontab edits, anacron jobs.
- ``PamParser``: console and desktop logins (login, gdm, lightdm, ...) and the PAM lines they log.
- ``FtpdParser``: wu-ftpd, vsftpd and proftpd connections and logins.
- ``KlogindParser``: Kerberos rlogin/rsh daemons.

PAM modules write the same messages for every program (``pam_unix(su:session): session opened
for user root by an(uid=1000)``). ``parse_pam`` classifies them once; every parser here, and
``SshdParser``, hands such a message to it first. Old syslog setups tag these lines with the
module in the program name instead (``sshd(pam_unix)[19939]: check pass; user unknown``): the
normalizer dispatches on the name before the parenthesis, and ``parse_pam`` reads the module
from the tag.

Actions are snake_case (``session_opened``, ``sudo_command``, ``cron_execution``,
``user_created``), like those of sshd. A user a command or account change acts on is
``user.effective.*`` (sudo, su: who the actor became) or ``user.target.*`` (useradd, passwd:
whose account changed); ``user.name`` is the actor when the message names one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from detectors.parsers.base import Fragment, ParseContext, ProgramParser, is_ip
from detectors.syslog import SyslogLine

AUTH_DATASET = "system.auth"
SYSLOG_DATASET = "system.syslog"

_AUTHENTICATION = ("authentication",)
_SESSION = ("session",)
_PROCESS = ("process",)
_IAM = ("iam",)
_CONFIGURATION = ("configuration",)
_START = ("start",)
_END = ("end",)
_INFO = ("info",)


class MessageKind(NamedTuple):
    """What one message pattern means in ECS; its named groups say where the values are.

    Group names the fragment builder knows: ``user``, ``uid`` (``user.name``/``id``),
    ``effective``, ``effective_id``, ``target``, ``target_id``, ``group``, ``gid``,
    ``address``/``port``/``domain`` (``source.*``), ``ruser`` (``source.user.name``),
    ``command`` (``process.command_line``), ``reason`` (``error.message``). Other groups are
    for the parser that owns the pattern.
    """

    pattern: re.Pattern[str]
    action: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    outcome: str | None = None
    # A parser-specific label, such as Elastic's system.auth.ssh.event for sshd.
    detail: str | None = None


def kind(
    pattern: str,
    action: str,
    category: tuple[str, ...],
    type_: tuple[str, ...],
    outcome: str | None = None,
    detail: str | None = None,
) -> MessageKind:
    """A MessageKind with its pattern compiled."""
    return MessageKind(re.compile(pattern, re.DOTALL), action, category, type_, outcome, detail)


def classify(
    kinds: Sequence[MessageKind], message: str
) -> tuple[MessageKind, dict[str, str | None]] | None:
    """The first kind whose pattern matches the whole start of ``message``, and its groups."""
    for candidate in kinds:
        match = candidate.pattern.match(message)
        if match:
            return candidate, match.groupdict()
    return None


# syslogd folds repeats into one line: classify what was repeated.
_REPEATED = re.compile(r"message repeated \d+ times: \[ ?(.*)\]$", re.DOTALL)


def unwrap_repeated(message: str) -> str:
    """The message without trailing blanks, unwrapped from ``message repeated N times: [ ...]``.

    Trailing blanks are common (pam_unix ends ``rhost=1.2.3.4 `` when it knows no user).
    """
    message = message.rstrip()
    if message.startswith("message repeated "):
        repeated = _REPEATED.match(message)
        if repeated:
            return repeated.group(1)
    return message


# Values that stand for "none" in these messages, not for a user or host called that. A user
# may well be called "unknown" or "-" (sshd logs any name a client tries); hosts are not.
_NO_NAME = frozenset({"", "?", "(null)", "(none)"})
_NO_HOST = _NO_NAME | {"-", "UNKNOWN", "unknown"}


def endpoint(address: str | None, port: str | None = None) -> dict[str, Any]:
    """``source``-style fields for an address that may be an IP or a host name, and a port."""
    found: dict[str, Any] = {}
    if address and address not in _NO_HOST:
        if is_ip(address):
            found["ip"] = address
        else:
            # A daemon with reverse lookups logs a name where the address would be.
            found["domain"] = address
    if port and port.isdigit() and len(port) <= 5:
        found["port"] = int(port)
    return found


def fragment_of(found_kind: MessageKind, found: dict[str, str | None]) -> Fragment:
    """The ECS fragment for a classified message; see ``MessageKind`` for the group names."""
    event: dict[str, Any] = {"action": found_kind.action}
    if found_kind.category:
        event["category"] = list(found_kind.category)
        event["type"] = list(found_kind.type)
    if found_kind.outcome:
        event["outcome"] = found_kind.outcome
    fragment: Fragment = {"event": event}

    user: dict[str, Any] = {}
    _put(user, "name", found.get("user"))
    _put(user, "id", found.get("uid"))
    effective: dict[str, Any] = {}
    _put(effective, "name", found.get("effective"))
    _put(effective, "id", found.get("effective_id"))
    if effective:
        user["effective"] = effective
    target: dict[str, Any] = {}
    _put(target, "name", found.get("target"))
    _put(target, "id", found.get("target_id"))
    if target:
        user["target"] = target
    if user:
        fragment["user"] = user

    group: dict[str, Any] = {}
    _put(group, "name", found.get("group"))
    _put(group, "id", found.get("gid"))
    if group:
        fragment["group"] = group

    source = endpoint(found.get("address"), found.get("port"))
    domain = found.get("domain")
    if domain and domain not in _NO_HOST and domain != source.get("ip"):
        source["domain"] = domain
    ruser = found.get("ruser")
    if ruser and ruser not in _NO_NAME and ruser != user.get("name"):
        source["user"] = {"name": ruser}
    if source:
        fragment["source"] = source

    command = found.get("command")
    if command:
        fragment["process"] = {"command_line": command}
    reason = found.get("reason")
    if reason:
        fragment["error"] = {"message": reason}
    return fragment


def _put(target: dict[str, Any], key: str, value: str | None) -> None:
    if value and value not in _NO_NAME:
        target[key] = value


# --- PAM ----------------------------------------------------------------------------------------

# "pam_unix(sshd:auth): TEXT"; the service may carry a dash ("sudo-i", "su-l").
_PAM_PREFIX = re.compile(r"(pam_[\w-]+)\(([^:()\s]*)(?::(\w+))?\): ")
# An account name in a PAM message ends at a blank or the "(uid=N)" that may follow it.
_SESSION_USER = r"(?P<for_user>[^\s(]+)(?:\(uid=(?P<for_uid>\d+)\))?"
_BY_USER = r"(?: by (?P<by_user>[^\s(]*)(?:\(uid=(?P<by_uid>\d+)\))?)?"
_PAM_SESSION = re.compile(r"session (opened|closed) for user " + _SESSION_USER + _BY_USER + "$")
_PAM_KINDS = (
    kind(
        # The key=value list varies between PAM versions; rhost and user come last.
        r"authentication failure; (?P<fields>.*?)\brhost=(?P<address>\S*)"
        r"(?:\s+user=(?P<user>.*))?$",
        "pam_auth_failure", _AUTHENTICATION, _INFO, "failure",
    ),
    kind(r"check pass; user unknown$", "pam_user_unknown", _AUTHENTICATION, _INFO, "failure"),
    kind(
        r"bad username \[(?P<user>.*)\]$", "pam_user_unknown", _AUTHENTICATION, _INFO, "failure"
    ),
    kind(
        r"PAM \d+ more authentication failures?; (?P<fields>.*?)\brhost=(?P<address>\S*)"
        r"(?:\s+user=(?P<user>.*))?$",
        "pam_more_auth_failures", _AUTHENTICATION, _INFO, "failure",
    ),
    kind(
        r"password changed for (?P<target>\S+)$",
        "password_changed", _IAM, ("change", "user"), "success",
    ),
    kind(
        r"account (?P<user>\S+) has expired \((?P<reason>[^)]*)\)$",
        "pam_account_expired", _AUTHENTICATION, _INFO, "failure",
    ),
    # pam_faillock and pam_tally2 lock an account after repeated failures.
    kind(
        r"Consecutive login failures for user (?P<user>\S+) account temporarily locked$",
        "account_locked", _IAM, ("change", "user"),
    ),
    kind(
        r"user (?P<user>\S+) \((?P<uid>\d+)\) tally \d+, deny \d+$",
        "account_locked", _IAM, ("change", "user"),
    ),
    # pam_sss / pam_ldap: "received for user an: 7 (Authentication failure)"; only failures
    # and denials are kept (see parse_pam).
    kind(
        r"received for user (?P<user>\S+): \d+ \((?P<reason>[^)]*)\)$",
        "pam_auth_failure", _AUTHENTICATION, _INFO, "failure",
    ),
)  # fmt: skip
_PAM_FIELD = re.compile(r"(\w+)=(\S*)")


def parse_pam(program: str | None, message: str) -> Fragment | None:
    """Classify a PAM module's message, or None if it is not one this knows.

    ``message`` is either ``pam_unix(SERVICE:TYPE): TEXT`` or, when the syslog tag names the
    module as in ``sshd(pam_unix)``, the TEXT alone. A repeat wrapper must be removed first
    (``unwrap_repeated``).
    """
    prefix = _PAM_PREFIX.match(message) if message.startswith("pam_") else None
    if prefix is not None:
        text = message[prefix.end() :]
    elif message.startswith("PAM ") or (program is not None and "(pam" in program):
        text = message
    else:
        return None

    session = _PAM_SESSION.match(text)
    if session:
        return _pam_session(session)
    found = classify(_PAM_KINDS, text)
    if found is None:
        return None
    found_kind, groups = found
    reason = (groups.get("reason") or "").lower()
    if text.startswith("received ") and "fail" not in reason and "denied" not in reason:
        return None  # "0 (Success)", "9 (Authentication service cannot retrieve ...)"
    fields = groups.get("fields")
    if fields:
        # "logname= uid=0 euid=0 tty=ssh ruser=an": the requesting user, when PAM knows one.
        pairs = dict(_PAM_FIELD.findall(fields))
        groups["ruser"] = pairs.get("ruser") or pairs.get("logname")
    return fragment_of(found_kind, groups)


def _pam_session(match: re.Match[str]) -> Fragment:
    # pam_unix logs "session opened for user TARGET(uid=N) by LOGIN(uid=M)": LOGIN is the
    # login name of the caller (su, sudo), empty for a daemon (sshd, cron). As Elastic does, the
    # caller is user.name and the account the session runs as is user.effective.
    opened = match.group(1) == "opened"
    for_user, for_uid, by_user, by_uid = match.group("for_user", "for_uid", "by_user", "by_uid")
    user: dict[str, Any] = {}
    if by_user and by_user != for_user:
        user["name"] = by_user
        if by_uid:
            user["id"] = by_uid
        effective: dict[str, Any] = {"name": for_user}
        if for_uid:
            effective["id"] = for_uid
        user["effective"] = effective
    else:
        user["name"] = for_user
        if for_uid:
            user["id"] = for_uid
    return {
        "event": {
            "action": "session_opened" if opened else "session_closed",
            "category": list(_SESSION),
            "type": list(_START if opened else _END),
        },
        "user": user,
    }


def _pam_first(line: SyslogLine, message: str) -> Fragment | None:
    # PAM lines of a program are classified alike whichever program logged them.
    if message.startswith(("pam_", "PAM ")) or "(pam" in (line.program or ""):
        return parse_pam(line.program, message)
    return None


def _classified(
    kinds: Sequence[MessageKind], line: SyslogLine
) -> tuple[Fragment | None, dict[str, str | None]]:
    """The PAM fragment, else the fragment of the first kind that matches, with its groups."""
    message = unwrap_repeated(line.message)
    pam = _pam_first(line, message)
    if pam is not None:
        return pam, {}
    found = classify(kinds, message)
    if found is None:
        return None, {}
    return fragment_of(*found), found[1]


# --- sudo ---------------------------------------------------------------------------------------

# "an : TTY=pts/0 ; PWD=/home/an ; USER=root ; COMMAND=/bin/ls", with an error between the user
# and the fields when sudo refused ("user NOT in sudoers ; TTY=..."). COMMAND comes last and may
# itself hold " ; ", so everything after it is the command.
_SUDO = re.compile(r"\s*(?P<user>\S+) : (?P<rest>.*)$", re.DOTALL)
_SUDO_COMMAND = re.compile(r"(?:^|; )COMMAND=")
_SUDO_KEY = re.compile(r"([A-Z]+)=(.*)$", re.DOTALL)
# The fields sudo logs, by the names Elastic gives them under system.auth.sudo. A part without
# "=" before them is sudo's reason for refusing ("user NOT in sudoers"): system.auth.sudo.error.
_SUDO_FIELDS = {"TTY": "tty", "PWD": "pwd", "USER": "user", "GROUP": "group", "HOST": "host"}


class SudoParser(ProgramParser):
    """sudo: commands run (``sudo_command``, failure when refused) and its PAM lines."""

    programs: ClassVar[frozenset[str]] = frozenset({"sudo"})
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for a sudo message, or None."""
        message = unwrap_repeated(line.message)
        pam = _pam_first(line, message)
        if pam is not None:
            return pam
        match = _SUDO.match(message)
        if match is None:
            return None
        rest = match.group("rest")
        command_at = _SUDO_COMMAND.search(rest)
        if command_at is None:
            return None
        command = rest[command_at.end() :]
        sudo: dict[str, str] = {}
        for part in rest[: command_at.start()].split(" ; "):
            part = part.strip(" ;")
            if not part:
                continue
            pair = _SUDO_KEY.match(part)
            if pair is None:
                sudo.setdefault("error", part)
            elif pair.group(1) in _SUDO_FIELDS:
                sudo[_SUDO_FIELDS[pair.group(1)]] = pair.group(2)
        sudo["command"] = command
        refused = "error" in sudo

        user: dict[str, Any] = {"name": match.group("user")}
        effective: dict[str, Any] = {}
        _put(effective, "name", sudo.get("user"))
        if "group" in sudo:
            effective["group"] = {"name": sudo["group"]}
        if effective:
            user["effective"] = effective
        process: dict[str, Any] = {"command_line": command}
        executable = command.split(" ", 1)[0]
        if executable.startswith("/"):
            process["executable"] = executable
        if sudo.get("pwd"):
            process["working_directory"] = sudo["pwd"]
        return {
            "event": {
                "action": "sudo_command",
                "category": list(_PROCESS),
                "type": list(_START),
                "outcome": "failure" if refused else "success",
            },
            "user": user,
            "process": process,
            "system": {"auth": {"sudo": sudo}},
        }


# --- su -----------------------------------------------------------------------------------------

_SWITCH = ("switch_user", _AUTHENTICATION, _START)
_SU_KINDS = (
    kind(r"Successful su for (?P<effective>\S+) by (?P<user>\S+)$", *_SWITCH, "success"),
    kind(r"FAILED su for (?P<effective>\S+) by (?P<user>\S+)$", *_SWITCH, "failure"),
    # The sulog form: "+ pts/0 an:root" (success) and "- pts/0 an:root" (failure).
    kind(r"\+ (?P<tty>\S+) (?P<user>[^:\s]+):(?P<effective>\S+)$", *_SWITCH, "success"),
    kind(r"- (?P<tty>\S+) (?P<user>[^:\s]+):(?P<effective>\S+)$", *_SWITCH, "failure"),
    # util-linux su: "(to root) an on pts/0", "FAILED SU (to root) an on pts/0".
    kind(r"\(to (?P<effective>[^)\s]+)\) (?P<user>\S+) on (?P<tty>\S+)$", *_SWITCH, "success"),
    kind(
        r"FAILED SU \(to (?P<effective>[^)\s]+)\) (?P<user>\S+) on (?P<tty>\S+)$",
        *_SWITCH, "failure",
    ),
    kind(r"pam_authenticate: (?P<reason>.*failure.*)$", *_SWITCH, "failure"),
)  # fmt: skip


class SuParser(ProgramParser):
    """su: switching user (``switch_user``) and its PAM sessions and failures."""

    programs: ClassVar[frozenset[str]] = frozenset({"su", "su-l"})
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for an su message, or None."""
        return _classified(_SU_KINDS, line)[0]


# --- user and group management ------------------------------------------------------------------

_USER_CREATED = ("user_created", _IAM, ("creation", "user"))
_USER_DELETED = ("user_deleted", _IAM, ("deletion", "user"))
_USER_MODIFIED = ("user_modified", _IAM, ("change", "user"))
_GROUP_CREATED = ("group_created", _IAM, ("creation", "group"))
_GROUP_DELETED = ("group_deleted", _IAM, ("deletion", "group"))
_GROUP_MODIFIED = ("group_modified", _IAM, ("change", "group"))
_ADDED_TO_GROUP = ("user_added_to_group", _IAM, ("change", "group"))
_REMOVED_FROM_GROUP = ("user_removed_from_group", _IAM, ("change", "group"))
_PASSWORD_CHANGED = ("password_changed", _IAM, ("change", "user"))
_QUOTED = r"'(?P<{}>[^']*)'"
_USER_KINDS = (
    kind(
        r"new user: name=(?P<target>[^,]+), UID=(?P<target_id>\d+), GID=(?P<gid>\d+), "
        r"home=(?P<home>[^,]*), shell=(?P<shell>[^,]*?)(?:, from=(?P<tty>\S*))?$",
        *_USER_CREATED, "success",
    ),
    kind(r"new group: name=(?P<group>[^,]+), GID=(?P<gid>\d+)", *_GROUP_CREATED, "success"),
    kind(
        r"group added to (?P<file>\S+): name=(?P<group>[^,]+)(?:, GID=(?P<gid>\d+))?",
        *_GROUP_CREATED, "success",
    ),
    kind(
        r"add " + _QUOTED.format("target") + r" to (?:shadow )?group " + _QUOTED.format("group"),
        *_ADDED_TO_GROUP, "success",
    ),
    kind(r"failed adding user " + _QUOTED.format("target"), *_USER_CREATED, "failure"),
    kind(r"delete user " + _QUOTED.format("target"), *_USER_DELETED, "success"),
    kind(
        r"delete " + _QUOTED.format("target") + r" from (?:shadow )?group "
        + _QUOTED.format("group"),
        *_REMOVED_FROM_GROUP, "success",
    ),
    kind(
        r"removed (?:shadow )?group " + _QUOTED.format("group") + r" owned by "
        + _QUOTED.format("target"),
        *_GROUP_DELETED, "success",
    ),
    kind(r"group " + _QUOTED.format("group") + r" removed", *_GROUP_DELETED, "success"),
    kind(
        r"group changed in (?P<file>\S+) \(group (?P<group>[^/\s]+)/(?P<gid>\d+), "
        r"(?P<change>.*)\)$",
        *_GROUP_MODIFIED, "success",
    ),
    kind(r"change user " + _QUOTED.format("target") + r" password$", *_PASSWORD_CHANGED,
         "success"),
    kind(
        r"change user name " + _QUOTED.format("old") + r" to " + _QUOTED.format("target"),
        *_USER_MODIFIED, "success",
    ),
    kind(
        r"change user " + _QUOTED.format("target") + r" (?P<what>[\w ]+?) from "
        + _QUOTED.format("before") + r" to " + _QUOTED.format("after"),
        *_USER_MODIFIED, "success",
    ),
    kind(r"lock user " + _QUOTED.format("target") + r" password", "account_locked",
         _IAM, ("change", "user"), "success"),
    kind(r"unlock user " + _QUOTED.format("target") + r" password", "account_unlocked",
         _IAM, ("change", "user"), "success"),
    # passwd without PAM, and chage.
    kind(
        r"password for " + _QUOTED.format("target") + r" changed by " + _QUOTED.format("user"),
        *_PASSWORD_CHANGED, "success",
    ),
    kind(r"changed password expiry for (?P<target>\S+)$", *_USER_MODIFIED, "success"),
    # gpasswd.
    kind(
        r"user (?P<target>\S+) added by (?P<user>\S+) to group (?P<group>\S+)$",
        *_ADDED_TO_GROUP, "success",
    ),
    kind(
        r"user (?P<target>\S+) removed by (?P<user>\S+) from group (?P<group>\S+)$",
        *_REMOVED_FROM_GROUP, "success",
    ),
    kind(
        r"(?:members|administrators) of group (?P<group>\S+) set by (?P<user>\S+) to ",
        *_GROUP_MODIFIED, "success",
    ),
    kind(
        r"password of group (?P<group>\S+) (?:changed|removed) by (?P<user>\S+)$",
        *_GROUP_MODIFIED, "success",
    ),
)  # fmt: skip


class UserManagementParser(ProgramParser):
    """shadow-utils: accounts and groups created, changed and deleted, passwords changed.

    The account acted on is ``user.target``; Elastic's ``system.auth`` puts a new account in
    ``user.name``, but the actor is not in these messages, and ECS keeps ``user.name`` for it.
    """

    programs: ClassVar[frozenset[str]] = frozenset(
        {
            "useradd", "usermod", "userdel", "groupadd", "groupdel", "groupmod", "passwd",
            "chpasswd", "chage", "gpasswd", "newusers", "chfn", "chsh",
        }
    )  # fmt: skip
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for a user-management message, or None."""
        fragment, found = _classified(_USER_KINDS, line)
        if fragment is None:
            return None
        home, shell = found.get("home"), found.get("shell")
        if home or shell:
            useradd = {key: value for key, value in (("home", home), ("shell", shell)) if value}
            fragment["system"] = {"auth": {"useradd": useradd}}
        return fragment


# --- cron ---------------------------------------------------------------------------------------

# "(USER) VERB (ARGUMENT)": USER is the crontab's owner, or CRON / *system* for the daemon.
_CRON_KINDS = (
    kind(r"\((?P<user>[^)\s]+)\) CMD \((?P<command>.*)\)$", "cron_execution", _PROCESS,
         _START),
    kind(r"\((?P<user>[^)\s]+)\) CMDEND \((?P<command>.*)\)$", "cron_execution_end",
         _PROCESS, _END),
    kind(r"\((?P<user>[^)\s]+)\) REPLACE \((?P<target>[^)\s]*)\)$", "crontab_replaced",
         _CONFIGURATION, ("change",)),
    kind(r"\((?P<user>[^)\s]+)\) DELETE \((?P<target>[^)\s]*)\)$", "crontab_deleted",
         _CONFIGURATION, ("deletion",)),
    kind(r"\((?P<user>[^)\s]+)\) (?:BEGIN|END) EDIT \((?P<target>[^)\s]*)\)$", "crontab_edit",
         _CONFIGURATION, ("access",)),
    kind(r"\((?P<user>[^)\s]+)\) LIST \((?P<target>[^)\s]*)\)$", "crontab_list",
         _CONFIGURATION, ("access",)),
    kind(r"\((?P<user>[^)\s]+)\) RELOAD \((?P<file>.*)\)$", "crontab_reloaded", _CONFIGURATION,
         ("change",)),
    kind(r"Job `(?P<job>[^']*)' started", "anacron_job_started", _PROCESS, _START),
    kind(r"Job `(?P<job>[^']*)' terminated", "anacron_job_ended", _PROCESS, _END),
)  # fmt: skip
# The daemon's own pseudo-users, not accounts.
_CRON_DAEMON = frozenset({"CRON", "*system*", "*system*root"})


class CronParser(ProgramParser):
    """cron, cronie, anacron and crontab: jobs run (``cron_execution``), crontabs changed.

    The job's command goes to ``process.command_line`` and its owner to ``user.name``;
    ``process.name`` stays the daemon's.
    """

    programs: ClassVar[frozenset[str]] = frozenset({"cron", "crond", "anacron", "crontab"})
    dataset: ClassVar[str] = SYSLOG_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for a cron message, or None."""
        fragment, found = _classified(_CRON_KINDS, line)
        if fragment is None:
            return None
        user = fragment.get("user")
        if user is not None:
            if user.get("name") in _CRON_DAEMON:
                del user["name"]
            if user.get("target", {}).get("name") == user.get("name"):
                user.pop("target", None)
            if not user:
                del fragment["user"]
        process = fragment.get("process")
        if process is not None:
            # The command as the crontab line has it, the blanks that align it trimmed.
            process["command_line"] = process["command_line"].strip()
            if not process["command_line"]:
                del fragment["process"]
        file = found.get("file")
        if file and file.startswith("/"):
            fragment["file"] = {"path": file}
        return fragment


# --- console and desktop logins, and PAM for any program ----------------------------------------

_LOGIN = ("local_login", _AUTHENTICATION, _START)
_LOGIN_KINDS = (
    kind(
        r"ROOT LOGIN +(?:ON|on) '?(?P<tty>[^'\s]+)'?(?: FROM '?(?P<address>[^'\s]+)'?)?$",
        *_LOGIN, "success",
    ),
    kind(
        r"LOGIN ON (?P<tty>\S+) BY (?P<user>\S+)(?: FROM (?P<address>\S+))?$",
        *_LOGIN, "success",
    ),
    # shadow login: "FAILED LOGIN 1 FROM (null) FOR an, Authentication failure";
    # util-linux login: "FAILED LOGIN (1) on '/dev/tty1' FOR 'an', Authentication failure".
    kind(
        r"FAILED LOGIN \(?\d+\)? (?:on '(?P<tty>[^']*)' )?(?:FROM '?(?P<address>[^'\s]*)'? )?"
        r"FOR '?(?P<user>[^',]*)'?, (?P<reason>.*)$",
        *_LOGIN, "failure",
    ),
    kind(
        r"\d+ LOGIN FAILURES? (?:ON|on|FROM) .*? FOR '?(?P<user>[^',\s]*)'?, (?P<reason>.*)$",
        *_LOGIN, "failure",
    ),
    kind(r"Couldn't authenticate user", *_LOGIN, "failure"),
    # unix_chkpwd, the helper pam_unix runs when the caller cannot read /etc/shadow.
    kind(
        r"password check failed for user \((?P<user>[^)]*)\)$",
        "pam_auth_failure", _AUTHENTICATION, _INFO, "failure",
    ),
)  # fmt: skip


class PamParser(ProgramParser):
    """Console and desktop logins (login, gdm, lightdm, ...) and the PAM lines of such programs.

    ``parse_pam`` holds the PAM classification; the other parsers of this module and
    ``SshdParser`` call it for the PAM lines of their own programs.
    """

    programs: ClassVar[frozenset[str]] = frozenset(
        {
            "login", "gdm", "gdm-binary", "gdm-password", "gdm-autologin",
            "gdm-session-worker", "gdm-launch-environment", "lightdm", "xdm", "kdm", "sddm",
            "systemd-user", "polkit-agent-helper-1", "pam", "unix_chkpwd", "runuser",
            "runuser-l", "xscreensaver", "screen", "sshd-kbdint",
        }
    )  # fmt: skip
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for a login or PAM message, or None."""
        fragment, _ = _classified(_LOGIN_KINDS, line)
        if fragment is None:
            return None
        if line.message.startswith("ROOT "):
            fragment["user"] = {"name": "root"}
        elif fragment.get("user", {}).get("name") == "UNKNOWN":
            del fragment["user"]  # util-linux login's word for a name PAM does not know
        return fragment


# --- FTP daemons --------------------------------------------------------------------------------

_FTP_LOGIN = ("ftp_login", _AUTHENTICATION, _START)
_FTP_KINDS = (
    # wu-ftpd: "connection from 24.54.76.216 (24-54-76-216.bflony.adelphia.net) at DATE".
    kind(
        r"connection from (?P<address>\S+) \((?P<domain>[^)]*)\)", "ftp_connection",
        ("network",), ("connection", "start"),
    ),
    kind(
        r"ANONYMOUS FTP LOGIN FROM (?P<address>[^\s,\[]+)(?: \[(?P<ip>[^\]]*)\])?,",
        *_FTP_LOGIN, "success",
    ),
    kind(
        r"FTP LOGIN FROM (?P<address>[^\s,\[]+)(?: \[(?P<ip>[^\]]*)\])?, (?P<user>\S+)$",
        *_FTP_LOGIN, "success",
    ),
    kind(
        r"FTP LOGIN REFUSED \((?P<reason>[^)]*)\) FROM (?P<address>[^\s,\[]+)"
        r"(?: \[(?P<ip>[^\]]*)\])?, (?P<user>\S+)$",
        *_FTP_LOGIN, "failure",
    ),
    kind(
        r"(?:failed login|repeated login failures) from (?P<address>[^\s,\[]+)"
        r"(?: \[(?P<ip>[^\]]*)\])?",
        *_FTP_LOGIN, "failure",
    ),
    # "User unknown timed out": nobody had logged in yet.
    kind(r"User (?:unknown|(?P<user>\S+)) timed out after \d+ seconds", "ftp_timeout", _SESSION,
         _END),
    # vsftpd with syslog_enable: '[an] OK LOGIN: Client "1.2.3.4"'.
    kind(r"\[(?P<user>[^\]]+)\] OK LOGIN: Client \"(?P<address>[^\"]*)\"", *_FTP_LOGIN,
         "success"),
    kind(r"\[(?P<user>[^\]]+)\] FAIL LOGIN: Client \"(?P<address>[^\"]*)\"", *_FTP_LOGIN,
         "failure"),
    kind(r"CONNECT: Client \"(?P<address>[^\"]*)\"", "ftp_connection", ("network",),
         ("connection", "start")),
    kind(
        r"\[(?P<user>[^\]]+)\] OK (?P<verb>UPLOAD|DOWNLOAD|DELETE|MKDIR|RMDIR|RENAME): "
        r"Client \"(?P<address>[^\"]*)\", \"(?P<path>[^\"]*)\"",
        "ftp_transfer", ("file",), ("access",), "success",
    ),
    # proftpd: "host (1.2.3.4[1.2.3.4]) - USER an: Login successful."
    kind(
        r"\S+ \((?P<domain>[^\[\s]*)\[(?P<address>[^\]]*)\]\) - USER (?P<user>\S+): "
        r"Login successful",
        *_FTP_LOGIN, "success",
    ),
    kind(
        r"\S+ \((?P<domain>[^\[\s]*)\[(?P<address>[^\]]*)\]\) - USER (?P<user>\S+) "
        r"\((?P<reason>Login failed)\)",
        *_FTP_LOGIN, "failure",
    ),
)  # fmt: skip
_FTP_FILE_TYPES = {"UPLOAD": "creation", "DELETE": "deletion", "MKDIR": "creation",
                   "RMDIR": "deletion", "RENAME": "change", "DOWNLOAD": "access"}  # fmt: skip


class FtpdParser(ProgramParser):
    """FTP daemons (wu-ftpd, vsftpd, proftpd): connections, logins and transfers."""

    programs: ClassVar[frozenset[str]] = frozenset(
        {"ftpd", "in.ftpd", "wu-ftpd", "vsftpd", "proftpd"}
    )
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for an FTP daemon message, or None."""
        fragment, found = _classified(_FTP_KINDS, line)
        if fragment is None:
            return None
        ip = found.get("ip")
        source = fragment.get("source")
        if ip and is_ip(ip) and source is not None and "ip" not in source:
            # "FROM host.example [1.2.3.4]": the host named, then its address.
            source["domain"] = found.get("address")
            source["ip"] = ip
        if "user" not in fragment and line.message.startswith("ANONYMOUS FTP LOGIN"):
            fragment["user"] = {"name": "anonymous"}
        verb, path = found.get("verb"), found.get("path")
        if verb:
            fragment["event"]["type"] = [_FTP_FILE_TYPES.get(verb, "access")]
            if path:
                fragment["file"] = {"path": path}
        return fragment


# --- Kerberos remote login ----------------------------------------------------------------------

_KLOGIN = ("kerberos_login", _AUTHENTICATION, _START, "failure")
_KLOGIND_KINDS = (
    kind(
        r"Authentication failed from (?P<address>\S+) \((?P<domain>[^)]*)\): (?P<reason>.*)$",
        *_KLOGIN,
    ),
    kind(r"Kerberos authentication failed", *_KLOGIN),
)


class KlogindParser(ProgramParser):
    """Kerberos rlogin/rsh daemons (klogind, kshd): failed authentications."""

    programs: ClassVar[frozenset[str]] = frozenset({"klogind", "kshd", "krshd", "eklogind"})
    dataset: ClassVar[str] = AUTH_DATASET

    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The fragment for a klogind message, or None."""
        return _classified(_KLOGIND_KINDS, line)[0]


LINUX_PROGRAM_PARSERS: list[ProgramParser] = [
    SudoParser(),
    SuParser(),
    UserManagementParser(),
    CronParser(),
    PamParser(),
    FtpdParser(),
    KlogindParser(),
]
