"""The shared building blocks of the Windows ECS mappings: their types and field helpers.

A *family* is the events of one provider (Security auditing, Sysmon, PowerShell, Defender, ...):
it names the ECS module and dataset and holds a table: per event id, an ``EventKind`` with
``event.action``, ``event.category``, ``event.type``, a default ``event.outcome`` and the
*mappers* that copy event data into ECS (``user.*``, ``process.*``, ``source.*``, ...). A family
may also have mappers run on all of its events (Sysmon's fields mean the same whatever the event
id). The tables live in ``windows_security`` and ``windows_sysmon``, their code tables in
``windows_values``; ``windows_families`` picks an event's family and runs its mappers.

Mappers only read the event data: ``winlog.event_data`` stays exactly as the event had it, so
Sigma rules written against the raw field names still match. What Elastic adds to ``event_data``
(descriptions of codes) is left out; where it moves a value to ECS, we copy it instead.

This module holds what the mappings share: the types, ``event_kind`` to write a table row, and
the helpers that read event data values (``text``, ``number``, ``ip``, ...) and write ECS fields
(``put``, ``put_path``, ``put_user``, ...). Where we differ from Elastic, on purpose:
``file.extension`` comes from the file name only, never from a dot in a directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from detectors.parsers.base import Fragment, is_ip

Fields = Mapping[str, Any]
# A mapper copies event data into the fragment; it gets the event id for the few fields whose
# meaning depends on it (which hashes are the process's, which are a file's).
Mapper = Callable[[Fields, Fragment, int], None]


class EventKind(NamedTuple):
    """What one event id means in ECS, and which mappers fill its fields."""

    action: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    mappers: tuple[Mapper, ...] = ()
    outcome: str | None = None
    kind: str = "event"


class Family(NamedTuple):
    """Events of one provider: their ECS module and dataset, and their table."""

    name: str
    module: str
    dataset: str
    events: Mapping[int, EventKind]
    common: tuple[Mapper, ...] = ()
    # Sysmon and PowerShell put the event's Security UserID in user.id, as Elastic does.
    user_id_from_identifier: bool = False


def event_kind(
    action: str,
    category: tuple[str, ...],
    type_: tuple[str, ...],
    *mappers: Mapper,
    outcome: str | None = None,
    kind: str = "event",
) -> EventKind:
    """One row of a family's table; the tables import it as ``_k`` so that a row fits a line."""
    return EventKind(action, category, type_, mappers, outcome, kind)


# --- helpers: values as the event data has them are strings, ints or anything at all ---------

_EMPTY = frozenset({"", "-"})


def text(value: Any) -> str | None:
    """The value as text; None for empty, ``-`` or a value that is not a string or number."""
    if isinstance(value, str):
        return None if value in _EMPTY else value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def number(value: Any) -> int | None:
    """An int from an int, a decimal or a ``0x`` hex string; None otherwise or when out of range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and 0 < len(value) <= 24:
        try:
            result = int(value, 16) if value[:2] in ("0x", "0X") else int(value)
        except ValueError:
            return None
    else:
        return None
    return result if -(2**63) <= result < 2**63 else None


def put(fragment: Fragment, path: tuple[str, ...], value: Any) -> None:
    """Set ``value`` at ``path`` in the fragment, making the dicts on the way; skip None."""
    if value is None:
        return
    node = fragment
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def get(fragment: Fragment, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in the fragment, or None."""
    node: Any = fragment
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def ip(value: Any) -> str | None:
    """An IP address from text, IPv4-mapped IPv6 (``::ffff:1.2.3.4``) given as IPv4."""
    found = text(value)
    if found is None:
        return None
    if found[:7].lower() == "::ffff:" and "." in found:
        found = found[7:]
    return found if is_ip(found) else None


def port(value: Any) -> int | None:
    """A port number, 0 to 65535."""
    found = number(value)
    return found if found is not None and 0 <= found <= 65535 else None


def split_user(value: Any) -> tuple[str | None, str | None]:
    """``DOMAIN\\user`` as (domain, name); (None, None) when it is not of that shape."""
    found = text(value)
    if found is None or found.count("\\") != 1:
        return None, None
    domain, name = found.split("\\")
    return domain or None, name or None


def put_path(fragment: Fragment, root: tuple[str, ...], path: str) -> None:
    """``root.path`` and, for a Windows path, ``name``, ``directory`` and ``extension``."""
    put(fragment, (*root, "path"), path)
    cut = path.rfind("\\")
    if cut < 0:
        return
    name = path[cut + 1 :]
    put(fragment, (*root, "directory"), path[:cut])
    if name:
        put(fragment, (*root, "name"), name)
        dot = name.rfind(".")
        if 0 <= dot < len(name) - 1:
            put(fragment, (*root, "extension"), name[dot + 1 :])


def put_executable(fragment: Fragment, root: tuple[str, ...], executable: str | None) -> None:
    """``root.executable`` and ``root.name`` (the part after the last backslash)."""
    if executable is None:
        return
    put(fragment, (*root, "executable"), executable)
    name = executable[executable.rfind("\\") + 1 :]
    if name and get(fragment, (*root, "name")) is None:
        put(fragment, (*root, "name"), name)


# Windows allows at most 32,767 characters on a command line; longer text is not one to split.
_MAX_COMMAND_LINE = 32_767


# One piece of a command line: plain text, backslashes (and the quote they precede), a quote,
# or blanks. Plain runs go whole, so a long base64 argument costs one match, not a loop per char.
_ARG_PIECE = re.compile(r'([^ \t"\\]+)|(\\+)(")?|(")|([ \t]+)')


def split_command_line(command: str) -> list[str] | None:
    """The arguments of a Windows command line, as CommandLineToArgvW splits them.

    Backslashes are literal unless they precede a quote; 2n backslashes and a quote give n
    backslashes and toggle quoting, 2n+1 give n backslashes and a literal quote; ``""`` inside
    quotes is a literal quote (the pre-2008 rule Elastic and Go follow). None for text longer
    than a command line can be.
    """
    if len(command) > _MAX_COMMAND_LINE:
        return None
    args: list[str] = []
    arg: list[str] | None = None
    quoted = False
    pieces = _ARG_PIECE.finditer(command)
    for piece in pieces:
        plain, slashes, slashed_quote, _, blanks = piece.groups()
        if blanks is not None:
            if quoted and arg is not None:
                arg.append(blanks)
            elif arg is not None:  # unquoted blanks end an argument
                args.append("".join(arg))
                arg = None
            continue
        if arg is None:
            arg = []
        if plain is not None:
            arg.append(plain)
            continue
        if slashes is not None:
            if slashed_quote is None:
                arg.append(slashes)
                continue
            arg.append("\\" * (len(slashes) // 2))
            if len(slashes) % 2:
                arg.append('"')
                continue
        # An unescaped quote toggles quoting; inside quotes, "" is a literal quote.
        if quoted and command.startswith('"', piece.end()):
            arg.append('"')
            next(pieces)
        quoted = not quoted
    if arg is not None:
        args.append("".join(arg))
    return args


def put_command_line(fragment: Fragment, root: tuple[str, ...], command: str | None) -> None:
    """``root.command_line``, ``root.args`` and ``root.args_count``."""
    if command is None:
        return
    put(fragment, (*root, "command_line"), command)
    args = split_command_line(command)
    if args:
        put(fragment, (*root, "args"), args)
        put(fragment, (*root, "args_count"), len(args))


def put_hashes(fragment: Fragment, root: tuple[str, ...], value: Any) -> None:
    """Sysmon's ``SHA1=..,MD5=..,SHA256=..,IMPHASH=..`` as ``root.hash.*`` and ``pe.imphash``."""
    found = text(value)
    if found is None:
        return
    for part in found.split(","):
        name, sep, digest = part.partition("=")
        digest = digest.strip().lower()
        if not sep or not digest or not digest.strip("0"):
            continue  # Sysmon writes all zeros for a hash it could not compute
        name = name.strip().lower()
        if name == "imphash":
            put(fragment, (*root, "pe", "imphash"), digest)
        elif name:
            put(fragment, (*root, "hash", name), digest)


_NULL_SID = "S-1-0-0"  # "Nobody": Windows writes it where there is no account


def put_user(fragment: Fragment, root: tuple[str, ...], sid: Any, name: Any, domain: Any) -> None:
    """``root.id``/``name``/``domain``; a ``user@REALM`` name keeps only the user part."""
    sid = text(sid)
    put(fragment, (*root, "id"), None if sid == _NULL_SID else sid)
    found = text(name)
    if found is not None:
        put(fragment, (*root, "name"), found.split("@", 1)[0] or found)
    put(fragment, (*root, "domain"), text(domain))
