"""Tests of detectors.parsers.auditd: Linux audit records to ECS fragments."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.parsers.auditd import AuditdParser
from detectors.parsers.base import Fragment, NotMine, ParseContext
from socpipe.records import EcsEvent
from tests.support.ecs import ECS_CATEGORIES, ECS_TYPES

RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)
CONTEXT = ParseContext(received=RECEIVED)
PARSER = AuditdParser()


SYSCALL = (
    "type=SYSCALL msg=audit(1364481363.243:24287): arch=c000003e syscall=2 success=no exit=-13 "
    "a0=7fffd19c5592 a1=0 a2=7fffd19c4b50 a3=a items=1 ppid=2686 pid=3538 auid=500 uid=500 "
    'gid=500 euid=500 suid=500 fsuid=500 egid=500 sgid=500 fsgid=500 tty=pts0 ses=1 comm="cat" '
    'exe="/bin/cat" subj=unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023 key="sensitive"'
)


def _hex(text: str) -> str:
    return text.encode("utf-8").hex().upper()


def _audit(line: str) -> Fragment:
    assert PARSER.sniff(line)
    fragment = PARSER.parse(line, CONTEXT)
    _assert_valid(fragment)
    return fragment


def _flat(fragment: Fragment) -> dict[str, Any]:
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
    event = fragment["event"]
    assert event["action"] == fragment["auditd"]["log"]["record_type"].lower()
    assert set(event.get("category", [])) <= ECS_CATEGORIES
    assert set(event.get("type", [])) <= ECS_TYPES
    assert event.get("outcome") in (None, "success", "failure")
    for key in ("event.id", "event.original", "related", "message", "event.timezone"):
        assert key not in _flat(fragment), f"{key} is the normalizer's"
    EcsEvent.model_validate({"@timestamp": RECEIVED, **fragment})


def test_syscall() -> None:
    fragment = _audit(SYSCALL)
    flat = _flat(fragment)

    assert fragment["@timestamp"] == datetime(2013, 3, 28, 14, 36, 3, 243000, tzinfo=UTC)
    assert flat["auditd.log.sequence"] == 24287
    assert flat["auditd.log.record_type"] == "SYSCALL"
    assert fragment["event"] == {
        "action": "syscall",
        "category": ["file"],
        "type": ["access"],
        "outcome": "failure",
    }
    assert fragment["user"] == {
        "id": "500",
        "audit": {"id": "500"},
        "effective": {"id": "500", "group": {"id": "500"}},
        "group": {"id": "500"},
    }
    assert fragment["process"] == {
        "pid": 3538,
        "ppid": 2686,
        "parent": {"pid": 2686},
        "name": "cat",
        "executable": "/bin/cat",
    }
    assert fragment["rule"] == {"name": "sensitive"}
    assert flat["host.architecture"] == "x86_64"
    # Syscall arguments are numbers in hex, not encoded strings: kept as written.
    assert (flat["auditd.log.a0"], flat["auditd.log.a3"]) == ("7fffd19c5592", "a")
    assert (flat["auditd.log.syscall"], flat["auditd.log.syscall_name"]) == ("2", "open")
    assert flat["auditd.log.subj"] == "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023"


def test_execve_with_hex_and_split_arguments() -> None:
    fragment = _audit(
        'type=EXECVE msg=audit(1364481363.243:24288): argc=4 a0="ls" a1="-l" '
        f'a2={_hex("/tmp/báo cáo")} a3_len=12 a3[0]={_hex("/var/lo")} a3[1]="g/x.gz"'
    )

    assert fragment["process"] == {
        "args": ["ls", "-l", "/tmp/báo cáo", "/var/log/x.gz"],
        "args_count": 4,
        "command_line": "ls -l /tmp/báo cáo /var/log/x.gz",
    }
    assert fragment["event"]["category"] == ["process"]
    assert fragment["auditd"]["log"]["a2"] == "/tmp/báo cáo"


def test_user_auth_with_node_and_nested_message() -> None:
    fragment = _audit(
        "node=web-01 type=USER_AUTH msg=audit(1700000000.123:456): pid=2201 uid=0 "
        "auid=4294967295 ses=4294967295 subj=system_u:system_r:sshd_t:s0-s0:c0.c1023 "
        'msg=\'op=PAM:authentication grantors=? acct="alice" exe="/usr/sbin/sshd" '
        "hostname=203.0.113.9 addr=203.0.113.9 terminal=ssh res=failed'"
    )
    flat = _flat(fragment)

    assert fragment["event"] == {
        "action": "user_auth",
        "category": ["authentication"],
        "type": ["info"],
        "outcome": "failure",
    }
    assert fragment["host"] == {"name": "web-01"}
    assert fragment["user"] == {"id": "0", "name": "alice"}  # auid unset: no user.audit
    assert fragment["source"] == {"ip": "203.0.113.9"}
    assert fragment["process"] == {"pid": 2201, "executable": "/usr/sbin/sshd"}
    assert flat["auditd.log.op"] == "PAM:authentication"
    assert flat["auditd.log.auid"] == "4294967295"
    assert "auditd.log.grantors" not in flat  # "?" means none
    assert flat["auditd.log.node"] == "web-01"


def test_hex_encoded_vietnamese_account() -> None:
    # auditd hex-encodes a value with bytes outside printable ASCII.
    fragment = _audit(
        "type=USER_LOGIN msg=audit(1733900000.5:77): pid=3100 uid=0 auid=1001 ses=5 "
        f'msg=\'op=login id=1001 acct={_hex("nguyễn.văn.an")} exe="/usr/sbin/sshd" '
        "hostname=? addr=10.1.2.3 terminal=/dev/pts/1 res=success'"
    )

    assert fragment["user"]["name"] == "nguyễn.văn.an"
    assert fragment["event"]["category"] == ["authentication", "session"]
    assert (fragment["event"]["type"], fragment["event"]["outcome"]) == (["start"], "success")
    assert fragment["@timestamp"] == datetime(2024, 12, 11, 6, 53, 20, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "category", "type_"),
    [
        ("USER_START", ["session"], ["start"]),
        ("USER_END", ["session"], ["end"]),
        ("CRED_ACQ", ["authentication"], ["info"]),
        ("CRED_DISP", ["authentication"], ["info"]),
        ("USER_ACCT", ["authentication"], ["info"]),
        ("USER_LOGOUT", ["session"], ["end"]),
    ],
)
def test_pam_record_types(record: str, category: list[str], type_: list[str]) -> None:
    fragment = _audit(
        f"type={record} msg=audit(1733900000.5:78): pid=3100 uid=0 auid=1001 ses=5 "
        'subj=unconfined msg=\'op=PAM:session_open grantors=pam_unix acct="an" '
        'exe="/usr/sbin/sshd" hostname=10.1.2.3 addr=10.1.2.3 terminal=ssh res=success\''
    )

    assert (fragment["event"]["category"], fragment["event"]["type"]) == (category, type_)
    assert fragment["user"] == {"id": "0", "audit": {"id": "1001"}, "name": "an"}
    assert fragment["auditd"]["log"]["grantors"] == "pam_unix"


def test_user_cmd_of_sudo() -> None:
    fragment = _audit(
        "type=USER_CMD msg=audit(1733900000.5:79): pid=4151 uid=1000 auid=1000 ses=3 "
        f'msg=\'cwd="/home/an" cmd={_hex("systemctl restart nginx")} exe="/usr/bin/sudo" '
        "terminal=pts/0 res=success'"
    )

    assert fragment["process"] == {
        "pid": 4151,
        "executable": "/usr/bin/sudo",
        "command_line": "systemctl restart nginx",
        "working_directory": "/home/an",
    }
    assert fragment["event"]["category"] == ["process"]


def test_account_management_records_have_a_target() -> None:
    added = _audit(
        "type=ADD_USER msg=audit(1610903553.730:591): pid=2945 uid=0 auid=1000 ses=14 "
        'msg=\'op=adding user id=1004 acct="trang" exe="/usr/sbin/useradd" '
        "hostname=srv-01 addr=127.0.0.1 terminal=pts/2 res=success'"
    )
    group = _audit(
        "type=ADD_GROUP msg=audit(1610903553.686:584): pid=2940 uid=0 auid=1000 ses=14 "
        'msg=\'op=adding group to /etc/group id=1004 exe="/usr/sbin/groupadd" '
        "hostname=srv-01 addr=127.0.0.1 terminal=pts/2 res=success'"
    )
    password = _audit(
        "type=USER_CHAUTHTOK msg=audit(1610903558.174:594): pid=2953 uid=0 auid=1000 ses=14 "
        'msg=\'op=PAM:chauthtok acct="charlie" exe="/usr/bin/passwd" hostname=srv-01 '
        "addr=127.0.0.1 terminal=pts/2 res=success'"
    )

    assert added["event"]["category"] == ["iam"]
    assert set(added["event"]["type"]) == {"user", "creation"}
    assert added["user"] == {
        "id": "0",
        "audit": {"id": "1000"},
        "target": {"name": "trang", "id": "1004"},
    }
    assert set(group["event"]["type"]) == {"group", "creation"}
    assert group["group"] == {"id": "1004"}
    # An op with blanks, as auditd writes it (unquoted).
    assert group["auditd"]["log"]["op"] == "adding group to /etc/group"
    assert group["source"] == {"ip": "127.0.0.1"}
    assert password["user"]["target"] == {"name": "charlie"}
    assert "name" not in password["user"]
    assert set(password["event"]["type"]) == {"user", "change"}


def test_service_start_and_proctitle() -> None:
    service = _audit(
        "type=SERVICE_START msg=audit(1733900000.5:80): pid=1 uid=0 auid=4294967295 "
        'ses=4294967295 msg=\'unit=sshd comm="systemd" exe="/usr/lib/systemd/systemd" '
        "hostname=? addr=? terminal=? res=success'"
    )
    title = _audit(
        "type=PROCTITLE msg=audit(1733900000.5:81): "
        f"proctitle={_hex('ls')}00{_hex('-l')}00{_hex('/tmp/tài liệu')}"
    )

    assert service["service"] == {"name": "sshd"}
    assert service["process"] == {
        "pid": 1,
        "name": "systemd",
        "executable": "/usr/lib/systemd/systemd",
    }
    assert (service["event"]["category"], service["event"]["type"]) == (["process"], ["start"])
    assert "source" not in service
    assert title["process"] == {"title": "ls -l /tmp/tài liệu"}


def test_path_and_cwd_records() -> None:
    path = _audit(
        'type=PATH msg=audit(1364481363.243:24287): item=0 name="/etc/shadow" inode=409248 '
        "dev=fd:00 mode=0100640 ouid=0 ogid=42 rdev=00:00 nametype=NORMAL cap_fp=0"
    )
    cwd = _audit('type=CWD msg=audit(1364481363.243:24287): cwd="/root"')

    assert path["file"] == {
        "path": "/etc/shadow",
        "inode": "409248",
        "uid": "0",
        "gid": "42",
        "mode": "0640",
        "type": "file",
    }
    assert cwd["process"] == {"working_directory": "/root"}


def test_crypto_session_addresses() -> None:
    fragment = _audit(
        "type=CRYPTO_SESSION msg=audit(1481077041.515:406): pid=1298 uid=0 auid=4294967295 "
        "ses=4294967295 msg='op=start direction=from-server cipher=chacha20-poly1305@openssh.com "
        "ksize=512 mac= spid=1299 suid=74 rport=63927 laddr=10.142.0.2 lport=22  "
        'exe="/usr/sbin/sshd" hostname=? addr=96.241.146.97 terminal=? res=success\''
    )

    assert fragment["source"] == {"ip": "96.241.146.97", "port": 63927}
    assert fragment["destination"] == {"ip": "10.142.0.2", "port": 22}


def test_old_login_record_and_null_values() -> None:
    fragment = _audit(
        "type=LOGIN msg=audit(1364481363.243:24290): login pid=2686 uid=0 old auid=4294967295 "
        "new auid=500 old ses=4294967295 new ses=3 key=(null)"
    )
    log = fragment["auditd"]["log"]

    assert (log["old-auid"], log["new-auid"], log["new-ses"]) == ("4294967295", "500", "3")
    assert "key" not in log and "rule" not in fragment
    assert fragment["user"] == {"id": "0"}


def test_enriched_and_interpreted_formats() -> None:
    enriched = _audit(
        "type=SYSCALL msg=audit(1733900000.5:90): arch=c000003e syscall=59 success=yes exit=0 "
        'ppid=1 pid=2 auid=1000 uid=0 euid=0 comm="id" exe="/usr/bin/id" key="exec"'
        '\x1dARCH=x86_64 SYSCALL=execve AUID="nguyễn" UID="root" EUID="root"'
    )
    interpreted = _audit(
        "type=SYSCALL msg=audit(1581371984.206:579398): arch=x86_64 syscall=execve success=yes "
        "exit=0 ppid=2563 pid=2614 auid=vagrant uid=vagrant gid=vagrant euid=vagrant tty=pts0 "
        "ses=2 comm=top exe=/usr/bin/top key=(null)"
    )

    assert enriched["user"]["audit"] == {"id": "1000", "name": "nguyễn"}
    assert (enriched["user"]["name"], enriched["user"]["effective"]["name"]) == ("root", "root")
    assert enriched["event"]["category"] == ["process"]
    assert interpreted["user"]["name"] == "vagrant"
    assert interpreted["user"]["audit"] == {"name": "vagrant"}
    assert interpreted["process"]["name"] == "top"
    assert (interpreted["event"]["category"], interpreted["event"]["type"]) == (
        ["process"],
        ["start"],
    )


def test_syslog_header_in_front() -> None:
    with_node = _audit(
        "Dec 11 07:59:58 collector-01 audispd: node=db-02 type=EOE msg=audit(1733900000.5:91): "
    )
    without = _audit(f"Dec 11 07:59:58 web-03 audisp-syslog: {SYSCALL}")

    assert with_node["host"] == {"name": "db-02"}
    assert without["host"] == {"name": "web-03", "architecture": "x86_64"}
    assert without["auditd"]["log"]["sequence"] == 24287


def test_kernel_copy_with_a_numeric_type() -> None:
    fragment = _audit(
        "Dec 11 07:59:58 web-03 kernel: audit: type=1400 audit(1733900000.123:45): "
        'apparmor="DENIED" operation="open" profile="/usr/sbin/named" name="/etc/shadow" '
        'pid=812 comm="named" requested_mask="r" denied_mask="r" fsuid=101 ouid=0'
    )

    assert fragment["auditd"]["log"]["record_type"] == "AVC"
    assert (fragment["event"]["category"], fragment["event"]["type"]) == (
        ["intrusion_detection"],
        ["denied"],
    )
    assert fragment["process"] == {"pid": 812, "name": "named"}


def test_selinux_denial() -> None:
    fragment = _audit(
        'type=AVC msg=audit(1733900000.5:92): avc:  denied  { read } for  pid=2 comm="httpd" '
        'name="passwd" dev="dm-0" ino=1 scontext=system_u:system_r:httpd_t:s0 '
        "tcontext=system_u:object_r:passwd_file_t:s0 tclass=file permissive=0"
    )

    assert fragment["event"]["type"] == ["denied"]
    assert fragment["auditd"]["log"]["tclass"] == "file"


def test_an_impossible_time_is_left_out() -> None:
    fragment = _audit("type=EOE msg=audit(999999999999.000:1): ")

    assert "@timestamp" not in fragment
    assert fragment["auditd"]["log"]["sequence"] == 1


@pytest.mark.parametrize(
    "line",
    [
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
        "type=SYSCALL but no header",
        "msg=audit(1.2:3): without a type",
        "",
    ],
)
def test_other_lines_are_not_mine(line: str) -> None:
    with pytest.raises(NotMine):
        PARSER.parse(line, CONTEXT)


def test_sniff() -> None:
    assert PARSER.sniff(SYSCALL)
    assert not PARSER.sniff("Dec 10 06:55:46 LabSZ sshd[24200]: Accepted password for an")


# --- no input makes the parser fail -------------------------------------------------------------

_KEYS = ["type", "msg", "pid", "ppid", "uid", "auid", "acct", "exe", "comm", "addr", "res",
         "success", "syscall", "arch", "a0", "a1[0]", "cmd", "proctitle", "name", "mode", "inode",
         "cwd", "key", "laddr", "lport", "rport", "id", "unit", "old auid", "UID"]  # fmt: skip
_VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-1, max_value=2**80).map(str),
    st.binary(max_size=20).map(lambda b: b.hex().upper()),
    st.sampled_from(['"', "'", "?", "(null)", "'op=x acct=\"a\"'", "c000003e", "0100644", "ZZ"]),
)
_RECORDS = st.tuples(
    st.sampled_from(["", "node=h ", "Dec 10 06:55:46 h audispd: ", "x"]),
    st.sampled_from(["SYSCALL", "EXECVE", "USER_AUTH", "ADD_USER", "PATH", "1400", "PROCTITLE"]),
    st.one_of(
        st.from_regex(r"\d{1,13}\.\d{1,4}:\d{1,21}", fullmatch=True),
        st.text(alphabet="0123456789.:", max_size=25),
    ),
    st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), max_size=20),
).map(
    lambda parts: (
        f"{parts[0]}type={parts[1]} msg=audit({parts[2]}): "
        + " ".join(f"{key}={value}" for key, value in parts[3])
    )
)


@settings(max_examples=300, deadline=None)
@given(line=st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace")), _RECORDS))
def test_any_line_parses_or_is_not_mine(line: str) -> None:
    try:
        fragment = PARSER.parse(line, CONTEXT)
    except NotMine:
        return
    _assert_valid(fragment)


@pytest.mark.parametrize(
    "line",
    [
        "type=" * 2**18,
        "node=" * 2**18,
        "type=SYSCALL msg=audit(1.1:1): " + "a=" * 2**19,
        "type=SYSCALL msg=audit(1.1:1): " + 'k="' * 2**18,
        "type=USER_AUTH msg=audit(1.1:1): msg='" + "x " * 2**19,
        "type=EXECVE msg=audit(1.1:1): " + "a1[9]=41 " * 2**17,
        "type=PROCTITLE msg=audit(1.1:1): proctitle=" + "00" * 2**19,
        "type=SYSCALL msg=audit(1." + "1" * 2**20 + ":1): ",
    ],
    ids=lambda line: line[:24],
)
def test_huge_lines_take_linear_time(line: str) -> None:
    started = datetime.now(UTC)
    with contextlib.suppress(NotMine):
        PARSER.parse(line, CONTEXT)
    assert (datetime.now(UTC) - started).total_seconds() < 3
