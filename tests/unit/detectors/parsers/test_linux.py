"""Tests of detectors.parsers.linux: sudo, su, shadow-utils, cron, PAM, FTP and klogind lines.

Real data: every line of loghub's Linux_2k sample (its structured CSV gives the program, pid and
message of each line) and Elastic's system/auth fixtures; the rest are lines written after what
these programs log, with Vietnamese account names among them.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.base import Fragment, ParseContext, ProgramParser
from detectors.parsers.firewall import KernelFirewallParser
from detectors.parsers.linux import (
    LINUX_PROGRAM_PARSERS,
    CronParser,
    FtpdParser,
    KlogindParser,
    PamParser,
    SudoParser,
    SuParser,
    UserManagementParser,
    parse_pam,
)
from detectors.parsers.sshd import SshdParser
from detectors.syslog import SyslogLine, parse_syslog
from socpipe.records import EcsEvent
from tests.support.ecs import ECS_CATEGORIES, ECS_TYPES

DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
LOGHUB = DATA / "loghub" / "Linux"
AUTH_FIXTURES = DATA / "ecs-fixtures" / "system" / "auth"
RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)


# What the normalizer does: the program name before "(", lower-cased, picks the parser.
ALL_PROGRAM_PARSERS: list[ProgramParser] = [
    SshdParser(),
    *LINUX_PROGRAM_PARSERS,
    KernelFirewallParser(),
]
BY_PROGRAM = {program: parser for parser in ALL_PROGRAM_PARSERS for program in parser.programs}


def _dispatch(line: SyslogLine) -> tuple[ProgramParser | None, Fragment | None]:
    parser = BY_PROGRAM.get((line.program or "").split("(", 1)[0].lower())
    return parser, (parser.parse(line, CONTEXT) if parser else None)


def _parse(text: str) -> Fragment | None:
    """The fragment for one whole syslog line, as the normalizer would get it."""
    line = parse_syslog(text, RECEIVED)
    parser, fragment = _dispatch(line)
    assert parser is not None, f"no parser for {line.program!r}"
    if fragment is not None:
        _assert_valid(fragment)
    return fragment


def _line(program: str, message: str, pid: int | None = 4242) -> SyslogLine:
    return SyslogLine(RECEIVED, "srv-01", program, pid, message)


def _flat(fragment: Fragment) -> dict[str, Any]:
    """The fragment with dotted keys, as Elastic's fixtures write documents."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", fragment)
    return flat


def _assert_valid(fragment: Fragment) -> None:
    """ECS category/type values from ECS's lists, and types the event model accepts."""
    event = fragment.get("event", {})
    assert isinstance(event.get("action"), str)
    assert set(event.get("category", [])) <= ECS_CATEGORIES
    assert set(event.get("type", [])) <= ECS_TYPES
    assert event.get("outcome") in (None, "success", "failure", "unknown")
    for key in ("@timestamp", "event.id", "event.original", "host.name", "related", "message"):
        assert key not in _flat(fragment), f"{key} is the normalizer's"
    EcsEvent.model_validate({"@timestamp": RECEIVED, **fragment})


def test_no_program_is_claimed_by_two_parsers() -> None:
    seen: Counter[str] = Counter(p for parser in ALL_PROGRAM_PARSERS for p in parser.programs)

    assert [program for program, count in seen.items() if count > 1] == []
    assert all(program == program.lower() for program in seen)


# --- sudo ---------------------------------------------------------------------------------------


def test_sudo_command() -> None:
    fragment = _parse(
        "Dec 10 09:12:01 srv-01 sudo:  nguyễn.văn.an : TTY=pts/0 ; PWD=/home/nguyễn.văn.an ; "
        "USER=root ; COMMAND=/usr/bin/systemctl restart nginx"
    )

    assert fragment == {
        "event": {
            "action": "sudo_command",
            "category": ["process"],
            "type": ["start"],
            "outcome": "success",
        },
        "user": {"name": "nguyễn.văn.an", "effective": {"name": "root"}},
        "process": {
            "command_line": "/usr/bin/systemctl restart nginx",
            "executable": "/usr/bin/systemctl",
            "working_directory": "/home/nguyễn.văn.an",
        },
        "system": {
            "auth": {
                "sudo": {
                    "tty": "pts/0",
                    "pwd": "/home/nguyễn.văn.an",
                    "user": "root",
                    "command": "/usr/bin/systemctl restart nginx",
                }
            }
        },
    }


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            "trần.thị.bình : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; "
            "COMMAND=/bin/bash",
            "user NOT in sudoers",
        ),
        (
            "an : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/an ; USER=root ; "
            "COMMAND=/usr/bin/su -",
            "3 incorrect password attempts",
        ),
        (
            "an : command not allowed ; TTY=pts/0 ; PWD=/home/an ; USER=root ; COMMAND=/bin/sh",
            "command not allowed",
        ),
        (
            "an : a password is required ; TTY=unknown ; PWD=/ ; USER=root ; COMMAND=/bin/id",
            "a password is required",
        ),
    ],
)
def test_sudo_refusals_are_failures(message: str, error: str) -> None:
    fragment = SudoParser().parse(_line("sudo", message, None), CONTEXT)

    assert fragment is not None
    assert fragment["event"]["outcome"] == "failure"
    assert fragment["system"]["auth"]["sudo"]["error"] == error
    assert fragment["user"]["effective"] == {"name": "root"}


def test_sudo_command_may_hold_semicolons_and_a_group() -> None:
    fragment = SudoParser().parse(
        _line(
            "sudo",
            "an : TTY=pts/0 ; PWD=/srv ; USER=postgres ; GROUP=postgres ; ENV=PGDATA=/d ; "
            "COMMAND=/bin/sh -c 'psql -c \"select 1\" ; echo ok'",
        ),
        CONTEXT,
    )

    assert fragment is not None
    assert fragment["process"]["command_line"] == "/bin/sh -c 'psql -c \"select 1\" ; echo ok'"
    assert fragment["user"]["effective"] == {"name": "postgres", "group": {"name": "postgres"}}


def test_sudo_pam_lines() -> None:
    failure = SudoParser().parse(
        _line(
            "sudo",
            "pam_unix(sudo:auth): authentication failure; logname=an uid=1000 euid=0 "
            "tty=/dev/pts/0 ruser=an rhost=  user=an",
        ),
        CONTEXT,
    )
    session = SudoParser().parse(
        _line(
            "sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by an(uid=1000)"
        ),
        CONTEXT,
    )

    assert failure is not None
    assert (failure["event"]["action"], failure["event"]["outcome"]) == (
        "pam_auth_failure",
        "failure",
    )
    assert failure["user"] == {"name": "an"}
    assert "source" not in failure
    assert session == {
        "event": {"action": "session_opened", "category": ["session"], "type": ["start"]},
        "user": {"name": "an", "id": "1000", "effective": {"name": "root", "id": "0"}},
    }


def test_other_sudo_messages_are_not_classified() -> None:
    parser = SudoParser()

    assert parser.parse(_line("sudo", "an : unable to resolve host srv-01"), CONTEXT) is None
    assert parser.parse(_line("sudo", "pam_unix(sudo:auth): conversation failed"), CONTEXT) is None


# --- su -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "outcome", "user", "effective"),
    [
        ("Successful su for root by lê.văn.cường", "success", "lê.văn.cường", "root"),
        ("FAILED su for root by an", "failure", "an", "root"),
        ("+ pts/0 phạm.thị.dung:root", "success", "phạm.thị.dung", "root"),
        ("- pts/3 an:postgres", "failure", "an", "postgres"),
        ("(to root) an on pts/0", "success", "an", "root"),
        ("FAILED SU (to root) an on pts/0", "failure", "an", "root"),
    ],
)
def test_su_switches(message: str, outcome: str, user: str, effective: str) -> None:
    fragment = SuParser().parse(_line("su", message), CONTEXT)

    assert fragment is not None
    _assert_valid(fragment)
    assert fragment["event"]["action"] == "switch_user"
    assert fragment["event"]["outcome"] == outcome
    assert fragment["user"] == {"name": user, "effective": {"name": effective}}


def test_su_pam_lines() -> None:
    parser = SuParser()
    opened = parser.parse(
        _line("su", "pam_unix(su-l:session): session opened for user root(uid=0) by an(uid=1000)"),
        CONTEXT,
    )
    failed = parser.parse(
        _line(
            "su",
            "pam_unix(su:auth): authentication failure; logname=an uid=1000 euid=0 tty=pts/0 "
            "ruser=an rhost=  user=root",
        ),
        CONTEXT,
    )
    # Old syslogd tagged the module into the program: "su(pam_unix)[21416]: ...".
    tagged = parser.parse(_line("su(pam_unix)", "session closed for user cyrus"), CONTEXT)

    assert opened is not None and opened["user"]["effective"] == {"name": "root", "id": "0"}
    assert failed is not None
    assert failed["user"] == {"name": "root"}
    assert failed["source"] == {"user": {"name": "an"}}
    assert tagged == {
        "event": {"action": "session_closed", "category": ["session"], "type": ["end"]},
        "user": {"name": "cyrus"},
    }


# --- user and group management ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "message", "action", "types", "expected"),
    [
        (
            "useradd",
            "new user: name=nguyễn.thị.hoa, UID=1002, GID=1002, home=/home/nguyễn.thị.hoa, "
            "shell=/bin/bash, from=/dev/pts/0",
            "user_created",
            {"creation", "user"},
            {
                "user.target.name": "nguyễn.thị.hoa",
                "user.target.id": "1002",
                "group.id": "1002",
                "system.auth.useradd.shell": "/bin/bash",
            },
        ),
        (
            "useradd",
            "new group: name=nguyễn.thị.hoa, GID=1002",
            "group_created",
            {"creation", "group"},
            {"group.name": "nguyễn.thị.hoa", "group.id": "1002"},
        ),
        (
            "groupadd",
            "group added to /etc/group: name=docker, GID=998",
            "group_created",
            {"creation", "group"},
            {"group.name": "docker", "group.id": "998"},
        ),
        (
            "usermod",
            "add 'trần.văn.bình' to group 'sudo'",
            "user_added_to_group",
            {"change", "group"},
            {"user.target.name": "trần.văn.bình", "group.name": "sudo"},
        ),
        (
            "usermod",
            "add 'an' to shadow group 'wheel'",
            "user_added_to_group",
            {"change", "group"},
            {"user.target.name": "an", "group.name": "wheel"},
        ),
        (
            "userdel",
            "delete user 'trần.văn.bình'",
            "user_deleted",
            {"deletion", "user"},
            {"user.target.name": "trần.văn.bình"},
        ),
        (
            "userdel",
            "removed group 'bình' owned by 'bình'",
            "group_deleted",
            {"deletion", "group"},
            {"group.name": "bình", "user.target.name": "bình"},
        ),
        (
            "userdel",
            "delete 'an' from group 'docker'",
            "user_removed_from_group",
            {"change", "group"},
            {"user.target.name": "an", "group.name": "docker"},
        ),
        (
            "groupdel",
            "group 'docker' removed from /etc/group",
            "group_deleted",
            {"deletion", "group"},
            {"group.name": "docker"},
        ),
        (
            "groupmod",
            "group changed in /etc/group (group docker/998, new name: containers)",
            "group_modified",
            {"change", "group"},
            {"group.name": "docker", "group.id": "998"},
        ),
        (
            "usermod",
            "change user 'an' password",
            "password_changed",
            {"change", "user"},
            {"user.target.name": "an"},
        ),
        (
            "usermod",
            "change user 'an' shell from '/bin/sh' to '/bin/bash'",
            "user_modified",
            {"change", "user"},
            {"user.target.name": "an"},
        ),
        (
            "usermod",
            "change user name 'an' to 'an.nguyễn'",
            "user_modified",
            {"change", "user"},
            {"user.target.name": "an.nguyễn"},
        ),
        (
            "usermod",
            "lock user 'an' password",
            "account_locked",
            {"change", "user"},
            {"user.target.name": "an"},
        ),
        (
            "passwd",
            "pam_unix(passwd:chauthtok): password changed for đỗ.minh.tuấn",
            "password_changed",
            {"change", "user"},
            {"user.target.name": "đỗ.minh.tuấn"},
        ),
        (
            "chpasswd",
            "pam_unix(chpasswd:chauthtok): password changed for an",
            "password_changed",
            {"change", "user"},
            {"user.target.name": "an"},
        ),
        (
            "passwd",
            "password for 'an' changed by 'root'",
            "password_changed",
            {"change", "user"},
            {"user.target.name": "an", "user.name": "root"},
        ),
        (
            "chage",
            "changed password expiry for an",
            "user_modified",
            {"change", "user"},
            {"user.target.name": "an"},
        ),
        (
            "gpasswd",
            "user an added by root to group sudo",
            "user_added_to_group",
            {"change", "group"},
            {"user.target.name": "an", "user.name": "root", "group.name": "sudo"},
        ),
        (
            "gpasswd",
            "user an removed by root from group sudo",
            "user_removed_from_group",
            {"change", "group"},
            {"user.target.name": "an", "user.name": "root", "group.name": "sudo"},
        ),
        (
            "gpasswd",
            "members of group sudo set by root to an,bình",
            "group_modified",
            {"change", "group"},
            {"user.name": "root", "group.name": "sudo"},
        ),
    ],
)
def test_user_management(
    program: str, message: str, action: str, types: set[str], expected: dict[str, str]
) -> None:
    fragment = UserManagementParser().parse(_line(program, message), CONTEXT)

    assert fragment is not None
    _assert_valid(fragment)
    flat = _flat(fragment)
    assert flat["event.action"] == action
    assert flat["event.category"] == ["iam"]
    assert set(flat["event.type"]) == types
    assert flat.get("event.outcome") in (None, "success")
    for field, value in expected.items():
        assert flat.get(field) == value, field


def test_failed_useradd_is_a_failure() -> None:
    fragment = UserManagementParser().parse(
        _line("useradd", "failed adding user 'an', data deleted"), CONTEXT
    )

    assert fragment is not None
    assert (fragment["event"]["action"], fragment["event"]["outcome"]) == (
        "user_created",
        "failure",
    )


# --- cron ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "message", "expected"),
    [
        (
            "CRON",
            "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)",
            {
                "event.action": "cron_execution",
                "user.name": "root",
                "process.command_line": "cd / && run-parts --report /etc/cron.hourly",
            },
        ),
        (
            "crond",
            "(nguyễn.văn.an) CMD (/home/nguyễn.văn.an/bin/sao-lưu.sh > /dev/null 2>&1)",
            {
                "event.action": "cron_execution",
                "user.name": "nguyễn.văn.an",
                "process.command_line": "/home/nguyễn.văn.an/bin/sao-lưu.sh > /dev/null 2>&1",
            },
        ),
        (
            "CROND",
            "(root) CMDEND (/usr/lib64/sa/sa1 1 1)",
            {"event.action": "cron_execution_end", "event.type": ["end"]},
        ),
        (
            "crontab",
            "(an) REPLACE (an)",
            {"event.action": "crontab_replaced", "user.name": "an", "event.type": ["change"]},
        ),
        (
            "crontab",
            "(root) DELETE (an)",
            {"event.action": "crontab_deleted", "user.name": "root", "user.target.name": "an"},
        ),
        (
            "crontab",
            "(an) BEGIN EDIT (an)",
            {"event.action": "crontab_edit", "event.category": ["configuration"]},
        ),
        (
            "cron",
            "(*system*) RELOAD (/etc/crontab)",
            {"event.action": "crontab_reloaded", "file.path": "/etc/crontab"},
        ),
        (
            "cron",
            "(CRON) RELOAD (crontabs/an)",
            {"event.action": "crontab_reloaded"},
        ),
        (
            "anacron",
            "Job `cron.daily' started",
            {"event.action": "anacron_job_started", "event.type": ["start"]},
        ),
        (
            "CRON",
            "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            {"event.action": "session_opened", "user.name": "root", "user.id": "0"},
        ),
        (
            "CRON",
            "pam_unix(cron:session): session closed for user root",
            {"event.action": "session_closed", "user.name": "root"},
        ),
    ],
)
def test_cron(program: str, message: str, expected: dict[str, Any]) -> None:
    fragment = CronParser().parse(_line(program, message), CONTEXT)

    assert fragment is not None
    _assert_valid(fragment)
    flat = _flat(fragment)
    for field, value in expected.items():
        assert flat.get(field) == value, field


def test_cron_daemon_pseudo_users_are_not_users() -> None:
    fragment = CronParser().parse(_line("cron", "(*system*) RELOAD (/etc/crontab)"), CONTEXT)

    assert fragment is not None and "user" not in fragment
    assert CronParser().parse(_line("CRON", "(CRON) info (No MTA installed)"), CONTEXT) is None


# --- PAM, logins, FTP, klogind ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "message", "expected"),
    [
        (
            "login",
            "pam_unix(login:session): session opened for user hoàng.anh(uid=1001) by LOGIN(uid=0)",
            {
                "event.action": "session_opened",
                "user.name": "LOGIN",
                "user.id": "0",
                "user.effective.name": "hoàng.anh",
                "user.effective.id": "1001",
            },
        ),
        (
            "login(pam_unix)",
            "session opened for user test by LOGIN(uid=0)",
            {"event.action": "session_opened", "user.effective.name": "test"},
        ),
        (
            "gdm(pam_unix)",
            "authentication failure; logname= uid=0 euid=0 tty=:0 ruser= rhost=",
            {"event.action": "pam_auth_failure", "event.outcome": "failure"},
        ),
        (
            "gdm(pam_unix)",
            "check pass; user unknown",
            {"event.action": "pam_user_unknown", "event.outcome": "failure"},
        ),
        (
            "gdm-binary",
            "Couldn't authenticate user",
            {"event.action": "local_login", "event.outcome": "failure"},
        ),
        (
            "login",
            "ROOT LOGIN ON tty2",
            {"event.action": "local_login", "event.outcome": "success", "user.name": "root"},
        ),
        (
            "login",
            "LOGIN ON tty1 BY vũ.thị.lan",
            {"event.action": "local_login", "event.outcome": "success", "user.name": "vũ.thị.lan"},
        ),
        (
            "login",
            "FAILED LOGIN 1 FROM (null) FOR root, Authentication failure",
            {
                "event.action": "local_login",
                "event.outcome": "failure",
                "user.name": "root",
                "error.message": "Authentication failure",
            },
        ),
        (
            "login",
            "FAILED LOGIN (1) on '/dev/tty1' FOR 'UNKNOWN', User not known to the underlying "
            "authentication module",
            {"event.action": "local_login", "event.outcome": "failure", "user.name": None},
        ),
        (
            "unix_chkpwd",
            "password check failed for user (root)",
            {"event.action": "pam_auth_failure", "user.name": "root"},
        ),
        (
            "systemd-user",
            "pam_unix(systemd-user:session): session opened for user an(uid=1000) by (uid=0)",
            {"event.action": "session_opened", "user.name": "an", "user.id": "1000"},
        ),
        (
            "lightdm",
            "pam_unix(lightdm:auth): authentication failure; logname= uid=0 euid=0 tty=:0 "
            "ruser= rhost=  user=nguyễn.an",
            {"event.action": "pam_auth_failure", "user.name": "nguyễn.an"},
        ),
        (
            "login",
            "pam_faillock(login:auth): Consecutive login failures for user root account "
            "temporarily locked",
            {"event.action": "account_locked", "user.name": "root"},
        ),
    ],
)
def test_logins_and_pam(program: str, message: str, expected: dict[str, Any]) -> None:
    fragment = PamParser().parse(_line(program, message), CONTEXT)

    assert fragment is not None
    _assert_valid(fragment)
    flat = _flat(fragment)
    for field, value in expected.items():
        assert flat.get(field) == value, field


def test_parse_pam_reads_the_module_from_message_or_tag() -> None:
    with_prefix = parse_pam("sshd", "pam_unix(sshd:auth): check pass; user unknown")
    tagged = parse_pam("sshd(pam_unix)", "check pass; user unknown")

    assert with_prefix == tagged
    assert with_prefix is not None and with_prefix["event"]["action"] == "pam_user_unknown"
    assert parse_pam("sshd", "check pass; user unknown") is None  # no sign it is PAM's
    assert parse_pam("sshd", "pam_systemd(sshd:session): New sd-bus connection") is None


def test_pam_sss_keeps_failures_only() -> None:
    failed = parse_pam(
        "sshd", "pam_sss(sshd:auth): received for user an: 7 (Authentication failure)"
    )
    other = parse_pam("sshd", "pam_sss(sshd:auth): received for user an: 0 (Success)")

    assert failed is not None and failed["event"]["outcome"] == "failure"
    assert other is None


@pytest.mark.parametrize(
    ("program", "message", "expected"),
    [
        (
            "ftpd",
            "connection from 206.196.21.129 (host129.206.196.21.maximumasp.com) at "
            "Sat Jul  9 22:53:19 2005",
            {
                "event.action": "ftp_connection",
                "source.ip": "206.196.21.129",
                "source.domain": "host129.206.196.21.maximumasp.com",
            },
        ),
        (
            "ftpd",
            "connection from 82.68.222.195 () at Tue Jul 12 09:31:41 2005",
            {"event.action": "ftp_connection", "source.ip": "82.68.222.195"},
        ),
        (
            "ftpd",
            "ANONYMOUS FTP LOGIN FROM 84.102.20.2,  (anonymous)",
            {
                "event.action": "ftp_login",
                "event.outcome": "success",
                "user.name": "anonymous",
                "source.ip": "84.102.20.2",
            },
        ),
        (
            "ftpd",
            "FTP LOGIN FROM ws-07.sotttt.gov.vn [10.10.4.7], nguyễn.văn.an",
            {
                "event.action": "ftp_login",
                "user.name": "nguyễn.văn.an",
                "source.ip": "10.10.4.7",
                "source.domain": "ws-07.sotttt.gov.vn",
            },
        ),
        (
            "ftpd",
            "FTP LOGIN REFUSED (username in denied-uid) FROM 10.0.0.9 [10.0.0.9], root",
            {"event.action": "ftp_login", "event.outcome": "failure", "user.name": "root"},
        ),
        (
            "ftpd",
            "User unknown timed out after 900 seconds at Sun Jul 24 02:52:32 2005",
            {"event.action": "ftp_timeout"},
        ),
        (
            "vsftpd",
            '[lê.thu] OK LOGIN: Client "10.1.2.3"',
            {
                "event.action": "ftp_login",
                "event.outcome": "success",
                "user.name": "lê.thu",
                "source.ip": "10.1.2.3",
            },
        ),
        (
            "vsftpd",
            '[an] FAIL LOGIN: Client "::ffff:10.1.2.3"',
            {
                "event.action": "ftp_login",
                "event.outcome": "failure",
                "source.ip": "::ffff:10.1.2.3",
            },
        ),
        (
            "vsftpd",
            '[an] OK UPLOAD: Client "10.1.2.3", "/srv/ftp/báo-cáo.pdf", 1024 bytes, 80.00Kbyte/sec',
            {
                "event.action": "ftp_transfer",
                "file.path": "/srv/ftp/báo-cáo.pdf",
                "event.type": ["creation"],
            },
        ),
        (
            "proftpd",
            "srv-01 (client.example[192.0.2.7]) - USER an: Login successful.",
            {
                "event.action": "ftp_login",
                "event.outcome": "success",
                "source.ip": "192.0.2.7",
                "source.domain": "client.example",
            },
        ),
    ],
)
def test_ftp(program: str, message: str, expected: dict[str, Any]) -> None:
    fragment = FtpdParser().parse(_line(program, message), CONTEXT)

    assert fragment is not None
    _assert_valid(fragment)
    flat = _flat(fragment)
    for field, value in expected.items():
        assert flat.get(field) == value, field


def test_ftp_noise_is_not_classified() -> None:
    message = "getpeername (ftpd): Transport endpoint is not connected"

    assert FtpdParser().parse(_line("ftpd", message), CONTEXT) is None


def test_klogind() -> None:
    parser = KlogindParser()
    failed = parser.parse(
        _line(
            "klogind",
            "Authentication failed from 163.27.187.39 (163.27.187.39): Software caused "
            "connection abort",
        ),
        CONTEXT,
    )
    kerberos = parser.parse(_line("klogind", "Kerberos authentication failed"), CONTEXT)

    assert failed is not None
    assert _flat(failed) == {
        "event.action": "kerberos_login",
        "event.category": ["authentication"],
        "event.type": ["start"],
        "event.outcome": "failure",
        "source.ip": "163.27.187.39",
        "error.message": "Software caused connection abort",
    }
    assert kerberos is not None and kerberos["event"]["outcome"] == "failure"


def test_repeated_messages_are_classified_as_the_message() -> None:
    fragment = SuParser().parse(
        _line("su", "message repeated 3 times: [ FAILED su for root by an]"), CONTEXT
    )

    assert fragment is not None and fragment["event"]["outcome"] == "failure"


# --- loghub Linux_2k: 2,000 real /var/log/messages lines ----------------------------------------

# Programs parse_syslog does not read as loghub does: a tag with a blank ("syslogd 1.4.1:",
# "-- root[2421]:") is not an RFC 3164 tag, so the whole rest is the message.
_TAGS_WITH_BLANKS = frozenset({"syslogd 1.4.1", "-- root"})
# What the parsers classify, per program, in this sample.
_CLASSIFIED = {
    "ftpd": 912,  # 909 connections, 2 anonymous logins, 1 timeout; 4 getpeername errors not
    "sshd(pam_unix)": 677,
    "su(pam_unix)": 172,
    "klogind": 46,
    "login(pam_unix)": 2,
    "gdm(pam_unix)": 2,
    "gdm-binary": 1,
}


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"no loghub Linux data at {LOGHUB}")
def test_loghub_linux_lines_all_parse_and_dispatch() -> None:
    lines = (LOGHUB / "Linux_2k.log").read_text("utf-8", errors="replace").splitlines()
    with (LOGHUB / "Linux_2k.log_structured.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(lines) == len(rows) == 2000
    received = datetime(2005, 12, 31, tzinfo=UTC)  # the sample runs June 2005 to early 2006

    classified: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    generic: Counter[str] = Counter()
    for number, (text, row) in enumerate(zip(lines, rows, strict=True), start=1):
        assert int(row["LineId"]) == number
        line = parse_syslog(text, received)
        content = row["Content"].strip()  # loghub trims the message
        if row["Component"] in _TAGS_WITH_BLANKS:
            assert line.program is None and line.message.endswith(content), number
            continue
        assert (line.program, line.pid) == (row["Component"], int(row["PID"] or 0) or None)
        assert line.message.strip() == content, number
        assert line.hostname == "combo"

        _, fragment = _dispatch(line)
        if fragment is None:
            generic[row["Component"]] += 1
            continue
        _assert_valid(fragment)
        classified[row["Component"]] += 1
        actions[fragment["event"]["action"]] += 1

    assert dict(classified) == _CLASSIFIED
    assert sum(classified.values()) == 1812
    assert sum(generic.values()) == 2000 - 1812 - 8
    assert actions == {
        "ftp_connection": 909,
        "pam_auth_failure": 490,  # sshd 489, gdm 1
        "session_opened": 123,  # su 86, sshd 36, login 1
        "session_closed": 123,
        "pam_user_unknown": 117,  # sshd 116, gdm 1
        "kerberos_login": 46,
        "ftp_login": 2,
        "ftp_timeout": 1,
        "local_login": 1,
    }


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"no loghub Linux data at {LOGHUB}")
def test_loghub_linux_sshd_pam_failures_carry_the_source() -> None:
    lines = (LOGHUB / "Linux_2k.log").read_text("utf-8", errors="replace").splitlines()
    received = datetime(2005, 12, 31, tzinfo=UTC)
    sources: Counter[str] = Counter()
    for text in lines:
        line = parse_syslog(text, received)
        if line.program != "sshd(pam_unix)" or "authentication failure" not in line.message:
            continue
        _, fragment = _dispatch(line)
        assert fragment is not None
        source = fragment["source"]
        sources["ip" if "ip" in source else "domain"] += 1
        assert "rhost=" + (source.get("ip") or source["domain"]) in line.message

    assert sources["ip"] > 0 and sources["domain"] > 0


# --- Elastic's expected output for its system/auth test lines ----------------------------------

# Fields Elastic sets that we set the same way, for the non-sshd lines (sshd: test_sshd.py).
_ELASTIC_FIELDS = (
    "user.name",
    "user.effective.name",
    "group.id",
    "group.name",
    "event.outcome",
    "system.auth.sudo.command",
    "system.auth.sudo.error",
    "system.auth.sudo.pwd",
    "system.auth.sudo.tty",
    "system.auth.sudo.user",
    "system.auth.useradd.home",
    "system.auth.useradd.shell",
)


def _elastic_cases() -> list[Any]:
    cases = []
    for name in ("test.log", "timestamp.log"):
        log = AUTH_FIXTURES / name
        if not log.is_file():
            continue
        raw = log.read_bytes()
        docs = json.loads((AUTH_FIXTURES / f"{name}-expected.json").read_text("utf-8"))
        for doc in docs:
            if doc.get("process.name") != "sshd":
                text = raw[doc["log.offset"] :].split(b"\n", 1)[0].decode("utf-8")
                cases.append(pytest.param(text, doc, id=f"{name}@{doc['log.offset']}"))
    return cases


@pytest.mark.skipif(not AUTH_FIXTURES.is_dir(), reason=f"no ECS fixtures at {AUTH_FIXTURES}")
@pytest.mark.parametrize(("text", "elastic"), _elastic_cases())
def test_agrees_with_elastic_system_auth(text: str, elastic: dict[str, Any]) -> None:
    # Elastic's harness read zone-less times at -02:00.
    line = parse_syslog(text, RECEIVED, tz="Etc/GMT+2")
    assert line.program == elastic["process.name"]
    assert line.pid == elastic.get("process.pid")
    assert line.hostname == elastic["host.hostname"]
    if "message" in elastic:
        assert line.message == elastic["message"]
    if "@timestamp" in elastic:
        expected = datetime.fromisoformat(elastic["@timestamp"])
        assert line.timestamp.replace(microsecond=line.timestamp.microsecond // 1000 * 1000) == (
            expected
        )
    _, fragment = _dispatch(line)
    if fragment is None:
        # Elastic classifies nothing in "pam: user nobody logged out." either.
        assert not any(key.startswith(("user.", "event.category")) for key in elastic)
        return
    _assert_valid(fragment)
    ours = _flat(fragment)
    if line.program == "useradd":
        # The new account is the target of the action, not its actor (ECS user.target).
        ours["user.name"], ours["user.id"] = ours["user.target.name"], ours["user.target.id"]
        assert ours["user.id"] == elastic["user.id"]
    for field in _ELASTIC_FIELDS:
        if field in elastic:
            assert ours.get(field) == elastic[field], field
    if "event.category" in elastic:
        assert ours["event.category"] == elastic["event.category"]
        assert set(ours["event.type"]) == set(elastic["event.type"])


def test_elastic_fixture_has_these_programs() -> None:
    if not AUTH_FIXTURES.is_dir():
        pytest.skip(f"no ECS fixtures at {AUTH_FIXTURES}")
    programs = Counter(case.values[1]["process.name"] for case in _elastic_cases())

    assert programs == {"sudo": 4, "groupadd": 1, "useradd": 1, "pam": 1}


# --- no input makes a parser fail -----------------------------------------------------------

_PARSERS = [*LINUX_PROGRAM_PARSERS]
_PROGRAMS = sorted({program for parser in _PARSERS for program in parser.programs} | {
    "sshd(pam_unix)", "su(pam_unix)", "login(pam_unix)", "gdm(pam_unix)",
})  # fmt: skip
# Beginnings of messages these parsers know, so that generated text reaches deep into patterns.
_STARTS = [
    "", "pam_unix(su:session): ", "pam_unix(sshd:auth): ", "pam_sss(x:auth): ",
    "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=",
    "session opened for user ", "session closed for user ", "check pass; ",
    "PAM 2 more authentication failures; rhost=", "password changed for ",
    "received for user a: 7 (", "an : ", "an : TTY=pts/0 ; COMMAND=", "Successful su for ",
    "+ pts/0 ", "(to root) ", "new user: name=", "new group: name=", "add '", "delete user '",
    "change user '", "group changed in /etc/group (group ", "(root) CMD (", "(root) REPLACE (",
    "Job `", "FAILED LOGIN ", "ROOT LOGIN ON ", "1 LOGIN FAILURES ON x FOR ", "connection from ",
    "ANONYMOUS FTP LOGIN FROM ", "FTP LOGIN FROM ", "[an] OK UPLOAD: Client \"", "x (y[",
    "Authentication failed from ", "message repeated 2 times: [ ",
]  # fmt: skip
_MESSAGES = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("utf-8", "replace")),
    st.tuples(st.sampled_from(_STARTS), st.text()).map("".join),
)


def _check(parser: ProgramParser, program: str, message: str) -> None:
    fragment = parser.parse(_line(program, message), CONTEXT)
    assert fragment is None or isinstance(fragment, dict)
    if fragment is not None:
        _assert_valid(fragment)


@settings(max_examples=300, deadline=None)
@given(program=st.sampled_from(_PROGRAMS), message=_MESSAGES)
def test_any_message_of_any_program_parses_or_is_left_alone(program: str, message: str) -> None:
    parser = BY_PROGRAM[program.split("(", 1)[0].lower()]
    _check(parser, program, message)


@pytest.mark.parametrize("parser", _PARSERS, ids=lambda parser: type(parser).__name__)
@settings(max_examples=300, deadline=None)
@given(message=_MESSAGES)
def test_each_parser_survives_any_message(parser: ProgramParser, message: str) -> None:
    _check(parser, sorted(parser.programs)[0], message)


@pytest.mark.parametrize("parser", _PARSERS, ids=lambda parser: type(parser).__name__)
@pytest.mark.parametrize("start", _STARTS)
def test_huge_messages_take_linear_time(parser: ProgramParser, start: str) -> None:
    # 1 MiB built to make a backtracking pattern retry at every repeat.
    for filler in ("a from b port 1 ", "rhost= user= ", "FOR x FOR ", " ", "(((", "'a' "):
        message = start + filler * (2**20 // len(filler))
        started = datetime.now(UTC)
        _check(parser, sorted(parser.programs)[0], message)
        assert (datetime.now(UTC) - started).total_seconds() < 2, (start, filler)
