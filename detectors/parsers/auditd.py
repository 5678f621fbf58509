"""Linux audit records, as auditd writes them to ``audit.log`` or forwards them to syslog.

    type=SYSCALL msg=audit(1364481363.243:24287): arch=c000003e syscall=2 success=no exit=-13
    ... pid=3538 auid=500 uid=500 ... comm="cat" exe="/bin/cat" key="sensitive"
    node=web-01 type=USER_AUTH msg=audit(1700000000.123:456): pid=1 uid=0 auid=4294967295
    ses=4294967295 msg='op=PAM:authentication acct="an" exe="/usr/sbin/sshd" addr=1.2.3.4
    terminal=ssh res=failed'

Every ``key=value`` pair is kept under ``auditd.log.*`` (Elastic's ``auditd`` module is the
model), those of the nested ``msg='...'`` of user-space records included; the ones ECS names are
copied to ECS: ``user.*`` from the ids, ``process.*``, ``source.ip`` from ``addr``,
``file.*`` from PATH records, ``event.outcome`` from ``success``/``res``. ``event.action`` is the
record type in lower case; ``@timestamp`` is the record's own epoch time (UTC).

auditd quotes a string value it can log as is and writes it as bare hex otherwise (a space,
a quote, a control or non-ASCII byte in it); such values are decoded, for the fields auditd
encodes only, so that a number written in hex (``a0=7f56`` of a SYSCALL) stays what it is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext, is_ip
from detectors.syslog import parse_syslog
from socpipe.errors import RecordError

# "type=X msg=audit(EPOCH.MILLIS:SERIAL): ", maybe after "node=HOST " and a syslog header. The
# kernel's own copy in syslog reads "type=1400 audit(...)": the record type as a number.
# Bounded repeats: the pattern is searched for, and must not rescan a huge line at each "type=".
_HEADER = re.compile(
    r"(?:node=(?P<node>\S{1,255}) )?type=(?P<type>[\w\[\]]{1,40}) (?:msg=)?"
    r"audit\((?P<seconds>\d{1,12})"
    r"(?:\.(?P<fraction>\d{1,9}))?:(?P<sequence>\d{1,20})\):\s?"
)
# A pair with its value double-quoted, single-quoted (a nested msg), or bare; or a lone word.
_TOKEN = re.compile(r"""([A-Za-z_][\w-]*(?:\[\d+\])?)=("[^"]*"?|'[^']*'?|\S*)|(\S+)""")
# Before kernel 3.x LOGIN records said "old auid=1 new auid=2 old ses=3 new ses=4".
_OLD_NEW = re.compile(r"\b(old|new) (auid|ses)=")
_HEX = re.compile(r"(?:[0-9A-F]{2})+")
_EXECVE_ARG = re.compile(r"a(\d+)(?:\[(\d+)\])?")
# Fields auditd writes hex-encoded when their value needs it (auparse's escaped types).
_ENCODED = frozenset(
    {
        "acct", "cmd", "comm", "cwd", "data", "dir", "exe", "file", "grp", "key", "name",
        "new_group", "new-chardev", "new-disk", "new-fs", "new-net", "new-rng", "ocomm",
        "old-chardev", "old-disk", "old-fs", "old-net", "old-rng", "path", "proctitle",
        "root_dir", "sw", "vm", "watch", "cgroup", "device", "invalid_context",
    }
)  # fmt: skip
# Values that mean "none".
_EMPTY = frozenset({"", "?", "(null)", "(none)"})
_UNSET_ID = "4294967295"  # (uid_t)-1: no login id was ever set, as for daemons

_ARCHITECTURES = {"c000003e": "x86_64", "40000003": "i386", "c00000b7": "aarch64",
                  "40000028": "arm", "c0000015": "ppc64le", "80000016": "s390x"}  # fmt: skip
# The record types the kernel numbers (type=1300 in its syslog copy), by number.
_TYPE_NAMES = {
    "1006": "LOGIN", "1100": "USER_AUTH", "1101": "USER_ACCT", "1102": "USER_MGMT",
    "1103": "CRED_ACQ", "1104": "CRED_DISP", "1105": "USER_START", "1106": "USER_END",
    "1107": "USER_AVC", "1108": "USER_CHAUTHTOK", "1109": "USER_ERR", "1110": "CRED_REFR",
    "1112": "USER_LOGIN", "1113": "USER_LOGOUT", "1114": "ADD_USER", "1115": "DEL_USER",
    "1116": "ADD_GROUP", "1117": "DEL_GROUP", "1123": "USER_CMD", "1130": "SERVICE_START",
    "1131": "SERVICE_STOP", "1300": "SYSCALL", "1302": "PATH", "1305": "CONFIG_CHANGE",
    "1306": "SOCKADDR", "1307": "CWD", "1309": "EXECVE", "1320": "EOE", "1325": "NETFILTER_CFG",
    "1326": "SECCOMP", "1327": "PROCTITLE", "1400": "AVC", "1700": "ANOM_PROMISCUOUS",
    "1701": "ANOM_ABEND",
}  # fmt: skip

_AUTH = (("authentication",), ("info",))
_SESSION_START = (("session",), ("start",))
_SESSION_END = (("session",), ("end",))
_PROCESS_START = (("process",), ("start",))
_PROCESS_END = (("process",), ("end",))
_CONFIG_CHANGE = (("configuration",), ("change",))
_USER_CHANGE = (("iam",), ("user", "change"))
_GROUP_CHANGE = (("iam",), ("group", "change"))
# ECS event.category and event.type of each record type (SYSCALL: by its syscall, below).
_CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "USER_AUTH": _AUTH, "USER_ACCT": _AUTH, "USER_ERR": _AUTH, "CRED_ACQ": _AUTH,
    "CRED_DISP": _AUTH, "CRED_REFR": _AUTH, "ANOM_LOGIN_FAILURES": _AUTH,
    "USER_LOGIN": (("authentication", "session"), ("start",)),
    "USER_LOGOUT": _SESSION_END, "USER_START": _SESSION_START, "USER_END": _SESSION_END,
    "LOGIN": _SESSION_START,
    "USER_CMD": _PROCESS_START, "EXECVE": _PROCESS_START,
    "PROCTITLE": (("process",), ("info",)), "CWD": (("process",), ("info",)),
    "PATH": (("file",), ("info",)), "SOCKADDR": (("network",), ("info",)),
    "ADD_USER": (("iam",), ("user", "creation")), "DEL_USER": (("iam",), ("user", "deletion")),
    "ADD_GROUP": (("iam",), ("group", "creation")),
    "DEL_GROUP": (("iam",), ("group", "deletion")),
    "USER_MGMT": _USER_CHANGE, "USER_CHAUTHTOK": _USER_CHANGE, "ACCT_LOCK": _USER_CHANGE,
    "ACCT_UNLOCK": _USER_CHANGE, "CHUSER_ID": _USER_CHANGE, "ROLE_ASSIGN": _USER_CHANGE,
    "ROLE_REMOVE": _USER_CHANGE, "GRP_MGMT": _GROUP_CHANGE, "GRP_CHAUTHTOK": _GROUP_CHANGE,
    "CHGRP_ID": _GROUP_CHANGE,
    "SERVICE_START": _PROCESS_START, "SERVICE_STOP": _PROCESS_END,
    "DAEMON_START": _PROCESS_START, "DAEMON_END": _PROCESS_END, "DAEMON_ABORT": _PROCESS_END,
    "ANOM_ABEND": _PROCESS_END,
    "SYSTEM_BOOT": (("host",), ("start",)), "SYSTEM_SHUTDOWN": (("host",), ("end",)),
    "SYSTEM_RUNLEVEL": (("host",), ("change",)),
    "CONFIG_CHANGE": _CONFIG_CHANGE, "DAEMON_CONFIG": _CONFIG_CHANGE,
    "NETFILTER_CFG": _CONFIG_CHANGE, "MAC_CONFIG_CHANGE": _CONFIG_CHANGE,
    "MAC_POLICY_LOAD": _CONFIG_CHANGE, "MAC_STATUS": _CONFIG_CHANGE, "USYS_CONFIG": _CONFIG_CHANGE,
    "KERN_MODULE": (("driver",), ("start",)),
    "SOFTWARE_UPDATE": (("package",), ("installation",)),
}  # fmt: skip
# The record types whose acct= is the account acted on rather than the one acting.
_IAM_TYPES = frozenset(
    {
        "ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "USER_MGMT", "GRP_MGMT",
        "USER_CHAUTHTOK", "GRP_CHAUTHTOK", "ACCT_LOCK", "ACCT_UNLOCK", "CHUSER_ID", "CHGRP_ID",
    }
)  # fmt: skip
_GROUP_TYPES = frozenset({"ADD_GROUP", "DEL_GROUP", "GRP_MGMT", "GRP_CHAUTHTOK", "CHGRP_ID"})

_FILE = ("file",)
_SYSCALL_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "execve": _PROCESS_START, "execveat": _PROCESS_START,
    "open": (_FILE, ("access",)), "openat": (_FILE, ("access",)), "openat2": (_FILE, ("access",)),
    "creat": (_FILE, ("creation",)),
    "unlink": (_FILE, ("deletion",)), "unlinkat": (_FILE, ("deletion",)),
    "rmdir": (_FILE, ("deletion",)),
    "rename": (_FILE, ("change",)), "renameat": (_FILE, ("change",)),
    "renameat2": (_FILE, ("change",)), "chmod": (_FILE, ("change",)),
    "fchmod": (_FILE, ("change",)), "fchmodat": (_FILE, ("change",)),
    "chown": (_FILE, ("change",)), "fchown": (_FILE, ("change",)),
    "lchown": (_FILE, ("change",)), "fchownat": (_FILE, ("change",)),
    "truncate": (_FILE, ("change",)), "ftruncate": (_FILE, ("change",)),
    "connect": (("network",), ("connection", "start")),
    "accept": (("network",), ("connection", "start")),
    "accept4": (("network",), ("connection", "start")),
    "bind": (("network",), ("info",)), "listen": (("network",), ("start",)),
    "kill": _PROCESS_END, "tkill": _PROCESS_END, "tgkill": _PROCESS_END,
    "ptrace": (("process",), ("access",)),
    "init_module": (("driver",), ("start",)), "finit_module": (("driver",), ("start",)),
    "delete_module": (("driver",), ("end",)),
    "setuid": (("process",), ("change",)), "setgid": (("process",), ("change",)),
    "setreuid": (("process",), ("change",)), "setresuid": (("process",), ("change",)),
}  # fmt: skip
# Syscall numbers of the syscalls above, per architecture; others keep only their number.
_SYSCALL_NAMES: dict[str, dict[str, str]] = {
    "x86_64": {
        "59": "execve", "322": "execveat", "2": "open", "257": "openat", "437": "openat2",
        "85": "creat", "87": "unlink", "263": "unlinkat", "84": "rmdir", "82": "rename",
        "264": "renameat", "316": "renameat2", "90": "chmod", "91": "fchmod", "268": "fchmodat",
        "92": "chown", "93": "fchown", "94": "lchown", "260": "fchownat", "76": "truncate",
        "77": "ftruncate", "42": "connect", "43": "accept", "288": "accept4", "49": "bind",
        "50": "listen", "62": "kill", "200": "tkill", "234": "tgkill", "101": "ptrace",
        "175": "init_module", "313": "finit_module", "176": "delete_module", "105": "setuid",
        "106": "setgid", "113": "setreuid", "117": "setresuid",
    },
    "aarch64": {
        "221": "execve", "281": "execveat", "56": "openat", "437": "openat2", "35": "unlinkat",
        "38": "renameat", "276": "renameat2", "52": "fchmod", "53": "fchmodat", "55": "fchown",
        "54": "fchownat", "45": "truncate", "46": "ftruncate", "203": "connect", "202": "accept",
        "242": "accept4", "200": "bind", "201": "listen", "129": "kill", "130": "tkill",
        "131": "tgkill", "117": "ptrace", "105": "init_module", "273": "finit_module",
        "106": "delete_module", "146": "setuid", "144": "setgid", "145": "setreuid",
        "147": "setresuid",
    },
    "i386": {
        "11": "execve", "358": "execveat", "5": "open", "295": "openat", "8": "creat",
        "10": "unlink", "301": "unlinkat", "40": "rmdir", "38": "rename", "15": "chmod",
        "37": "kill", "26": "ptrace", "128": "init_module", "350": "finit_module",
        "129": "delete_module",
    },
}  # fmt: skip
_FILE_TYPES = {0o100000: "file", 0o040000: "dir", 0o120000: "symlink"}
# auditd's ENRICHED log format appends names for ids (UID="an" AUID="an"): where each goes.
_ENRICHED_NAMES = (("UID", ("name",)), ("AUID", ("audit", "name")), ("EUID", ("effective", "name")))


class AuditdParser(LineParser):
    """Linux audit records (``audit.log`` lines, with or without a syslog header or node=)."""

    name: ClassVar[str] = "auditd"
    dataset: ClassVar[str] = "auditd.log"

    def sniff(self, line: str) -> bool:
        """Whether the line holds an audit record header."""
        return "audit(" in line and "type=" in line

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The fragment for one audit record; NotMine if the line holds none."""
        header = _HEADER.search(line)
        if header is None:
            raise NotMine("no 'type=... msg=audit(TIME:SERIAL):' in the line")
        record_type = header.group("type")
        record_type = _TYPE_NAMES.get(record_type, record_type)
        text = line[header.end() :].rstrip("\r\n")
        if " old " in text or " new " in text:
            text = _OLD_NEW.sub(r"\1-\2=", text)
        outer, nested = _pairs(text, record_type)
        inner = _pairs(nested, record_type)[0] if nested is not None else {}

        log: dict[str, Any] = {"record_type": record_type, "sequence": int(header["sequence"])}
        if header["node"]:
            log["node"] = header["node"]
        for pairs in (outer, inner):
            for key, value in pairs.items():
                if key in log and log[key] != value:
                    # The nested message repeats a key with another meaning (uid of the target).
                    previous = log[key]
                    log[key] = (
                        [*previous, value] if isinstance(previous, list) else [previous, value]
                    )
                else:
                    log[key] = value
        fragment: Fragment = {
            "event": _event(record_type, text, outer, inner, log),
            "auditd": {"log": log},
        }
        stamp = _timestamp(header["seconds"], header["fraction"])
        if stamp is not None:
            fragment["@timestamp"] = stamp
        host = header["node"] or (_syslog_host(line, context) if header.start() else None)
        if host:
            fragment["host"] = {"name": host}
        _ecs(fragment, record_type, outer, inner)
        return fragment


def _pairs(text: str, record_type: str) -> tuple[dict[str, str], str | None]:
    """The key=value pairs of ``text``, values unquoted and decoded, and a nested msg='...'."""
    pairs: dict[str, str] = {}
    nested: str | None = None
    last: str | None = None  # the last bare value, which words without "=" continue
    execve = record_type == "EXECVE"
    for match in _TOKEN.finditer(text):
        key, value, word = match.groups()
        if key is None:
            # "op=adding group to /etc/group": auditd does not quote every value with blanks.
            if last is not None:
                pairs[last] = f"{pairs[last]} {word}" if last in pairs else word
            continue
        last = None
        first = value[:1]
        if first in ("'", '"'):
            value = value[1:-1] if len(value) > 1 and value[-1] == first else value[1:]
            if key == "msg" and first == "'":
                nested = value
                continue
        else:
            last = key
            if (key in _ENCODED or (execve and _EXECVE_ARG.fullmatch(key))) and _HEX.fullmatch(
                value
            ):
                value = _unhex(value)
        if value in _EMPTY:
            last = None
            continue
        pairs.setdefault(key, value)
    return pairs, nested


def _unhex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8", "replace")


def _timestamp(seconds: str, fraction: str | None) -> datetime | None:
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=micros)
    except (OverflowError, OSError, ValueError):
        return None  # no real clock says this; the normalizer keeps the time received


def _syslog_host(line: str, context: ParseContext) -> str | None:
    try:
        return parse_syslog(line, context.received, context.timezone).hostname
    except (RecordError, ValueError):
        return None


def _event(
    record_type: str,
    text: str,
    outer: dict[str, str],
    inner: dict[str, str],
    log: dict[str, Any],
) -> dict[str, Any]:
    event: dict[str, Any] = {"action": record_type.lower()}
    kinds = _CATEGORIES.get(record_type)
    if record_type == "SYSCALL":
        arch = _ARCHITECTURES.get(outer.get("arch", ""), outer.get("arch", ""))
        syscall = outer.get("syscall", "")
        name = _SYSCALL_NAMES.get(arch, {}).get(syscall, syscall)
        if name != syscall:
            log["syscall_name"] = name
        kinds = _SYSCALL_KINDS.get(name)
    elif record_type in ("AVC", "USER_AVC", "APPARMOR_DENIED", "APPARMOR_ALLOWED"):
        # "avc:  denied  { read } for ...", or apparmor="DENIED" in AppArmor's records.
        denied = record_type == "APPARMOR_DENIED" or "denied" in text[:200].lower()
        kinds = (("intrusion_detection",), ("denied",) if denied else ("info",))
    if kinds is not None:
        event["category"] = list(kinds[0])
        event["type"] = list(kinds[1])
    outcome = _outcome(outer.get("success") or inner.get("res") or outer.get("res"))
    if outcome:
        event["outcome"] = outcome
    return event


def _outcome(value: str | None) -> str | None:
    if value in ("yes", "success", "1"):
        return "success"
    if value in ("no", "failed", "failure", "0"):
        return "failure"
    return None


def _ecs(
    fragment: Fragment, record_type: str, outer: dict[str, str], inner: dict[str, str]
) -> None:
    def get(key: str) -> str | None:
        return outer.get(key) or inner.get(key)

    user: dict[str, Any] = {}
    uid = outer.get("uid")
    if uid is not None:
        user["id" if uid.isdigit() else "name"] = uid  # ausearch -i writes names for ids
    auid = outer.get("auid")
    if auid is not None and auid != _UNSET_ID and auid != "unset":
        user["audit"] = {"id" if auid.isdigit() else "name": auid}
    for key, field in (("euid", "effective"), ("gid", "group"), ("egid", "effective")):
        value = outer.get(key)
        if value is None:
            continue
        slot = user.setdefault(field, {})
        if key == "egid":
            slot.setdefault("group", {})["id"] = value
        else:
            slot["id" if value.isdigit() else "name"] = value
    for key, path in _ENRICHED_NAMES:
        value = outer.get(key)
        if value is not None:
            slot = user
            for part in path[:-1]:
                slot = slot.setdefault(part, {})
            slot.setdefault(path[-1], value)
    acct = get("acct")
    if record_type in _IAM_TYPES:
        target: dict[str, Any] = {}
        if acct:
            target["name"] = acct
        identity = inner.get("id")
        if record_type in _GROUP_TYPES:
            group: dict[str, Any] = {}
            if identity:
                group["id"] = identity
            if get("grp"):
                group["name"] = get("grp")
            if group:
                fragment["group"] = group
        elif identity:
            target["id"] = identity
        if target:
            user["target"] = target
    elif acct:
        user["name"] = acct
    if user:
        fragment["user"] = user

    process: dict[str, Any] = {}
    for key, field in (("pid", "pid"), ("ppid", "ppid")):
        value = outer.get(key)
        if value is not None and value.isdigit() and len(value) <= 10:
            process[field] = int(value)
    if "ppid" in process:
        process["parent"] = {"pid": process["ppid"]}
    for key, field in (("comm", "name"), ("exe", "executable")):
        value = get(key)
        if value:
            process[field] = value
    if record_type == "PROCTITLE" and outer.get("proctitle"):
        process["title"] = outer["proctitle"].replace("\x00", " ").strip()
    elif record_type == "EXECVE":
        args = _execve_args(outer)
        if args:
            process["args"] = args
            process["args_count"] = len(args)
            process["command_line"] = " ".join(args)
    elif record_type == "USER_CMD" and get("cmd"):
        process["command_line"] = get("cmd")
    cwd = get("cwd")
    if cwd:
        process["working_directory"] = cwd
    if process:
        fragment["process"] = process

    addr = get("addr")
    source: dict[str, Any] = {}
    if addr:
        source["ip" if is_ip(addr) else "domain"] = addr
    rport = get("rport")
    if rport and rport.isdigit() and int(rport) <= 65535:
        source["port"] = int(rport)
    if source:
        fragment["source"] = source
    laddr, lport = get("laddr"), get("lport")
    if laddr and is_ip(laddr):
        destination: dict[str, Any] = {"ip": laddr}
        if lport and lport.isdigit() and int(lport) <= 65535:
            destination["port"] = int(lport)
        fragment["destination"] = destination

    if record_type == "PATH":
        _file(fragment, outer)
    arch = outer.get("arch")
    if arch:
        fragment.setdefault("host", {})["architecture"] = _ARCHITECTURES.get(arch, arch)
    rule_key = outer.get("key")
    if rule_key:
        # Several keys of one rule are joined by \x01.
        fragment["rule"] = {"name": rule_key.replace("\x01", ",")}
    unit = get("unit")
    if unit and record_type in ("SERVICE_START", "SERVICE_STOP"):
        fragment["service"] = {"name": unit}


def _execve_args(pairs: dict[str, str]) -> list[str]:
    # a0, a1, ... in order; a long argument comes in pieces a1[0], a1[1], ... after a1_len.
    pieces: dict[int, list[tuple[int, str]]] = {}
    for key, value in pairs.items():
        match = _EXECVE_ARG.fullmatch(key)
        if match and len(match.group(1)) <= 6:
            part = int(match.group(2)) if match.group(2) and len(match.group(2)) <= 6 else -1
            pieces.setdefault(int(match.group(1)), []).append((part, value))
    return ["".join(value for _, value in sorted(pieces[index])) for index in sorted(pieces)]


def _file(fragment: Fragment, pairs: dict[str, str]) -> None:
    file: dict[str, Any] = {}
    if pairs.get("name"):
        file["path"] = pairs["name"]
    inode = pairs.get("inode")
    if inode and inode.isdigit():
        file["inode"] = inode
    for key, field in (("ouid", "uid"), ("ogid", "gid")):
        if pairs.get(key):
            file[field] = pairs[key]
    mode = pairs.get("mode")
    if mode and len(mode) <= 8 and all(c in "01234567" for c in mode):
        number = int(mode, 8)
        file["mode"] = f"{number & 0o7777:04o}"
        kind = _FILE_TYPES.get(number & 0o170000)
        if kind:
            file["type"] = kind
    if file:
        fragment["file"] = file
