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
the helpers that read event data values (``text``, ``number``, ``ip``, ...) and write ECS fields:
``put``, ``put_path``, ``put_user``, ... at a path from the fragment's root, and ``set_path``,
``set_executable``, ... into one ECS object (``process``, ``file``) that a mapper fills before
it attaches it. Where we differ from Elastic, on purpose: ``file.extension`` comes from the file
name only, never from a dot in a directory.

These run on every event: mappers look a field up once, and call a converter only for a field
the event has (most of a family's fields are absent from any one event).
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


def text(value: Any) -> str | None:
    """The value as text; None for empty, ``-`` or a value that is not a string or number."""
    if isinstance(value, str):
        # Compared, not looked up in a set: hashing would read all of a long value.
        return value if value and value != "-" else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def first_text(get: Callable[[str], Any], *keys: str) -> str | None:
    """The text of the first of these fields that has text (``get``: the event data's get)."""
    for key in keys:
        found = get(key)
        if found is not None and (found := text(found)) is not None:
            return found
    return None


def texts(get: Callable[[str], Any], names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``{name: text}`` for each (event data key, ECS name) whose value is text; for two keys
    of one name, the later one's."""
    found: dict[str, Any] = {}
    for key, name in names:
        value = get(key)
        if value is not None and (value := text(value)) is not None:
            found[name] = value
    return found


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
    node_at(fragment, path[:-1])[path[-1]] = value


def node_at(fragment: Fragment, path: tuple[str, ...]) -> dict[str, Any]:
    """The dict at ``path``, made (or put in place of a value that is not a dict) if need be."""
    node = fragment
    for key in path:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    return node


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
    set_path(node_at(fragment, root), path)


def set_path(node: dict[str, Any], path: str) -> None:
    """``path`` and, for a Windows path, ``name``, ``directory`` and ``extension`` in ``node``."""
    node["path"] = path
    cut = path.rfind("\\")
    if cut < 0:
        return
    name = path[cut + 1 :]
    node["directory"] = path[:cut]
    if name:
        node["name"] = name
        dot = name.rfind(".")
        if 0 <= dot < len(name) - 1:
            node["extension"] = name[dot + 1 :]


def put_executable(fragment: Fragment, root: tuple[str, ...], executable: str | None) -> None:
    """``root.executable`` and ``root.name`` (the part after the last backslash)."""
    if executable is not None:
        set_executable(node_at(fragment, root), executable)


def set_executable(node: dict[str, Any], executable: str) -> None:
    """``executable`` and, unless ``node`` has one, ``name`` (after the last backslash)."""
    node["executable"] = executable
    name = executable[executable.rfind("\\") + 1 :]
    if name and node.get("name") is None:
        node["name"] = name


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
    if '"' not in command:
        # Without quotes, backslashes are all literal: the arguments are the runs of non-blanks.
        return [arg for arg in command.replace("\t", " ").split(" ") if arg]
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
    if command is not None:
        set_command_line(node_at(fragment, root), command)


def set_command_line(node: dict[str, Any], command: str) -> None:
    """``command_line``, ``args`` and ``args_count`` in ``node``."""
    node["command_line"] = command
    args = split_command_line(command)
    if args:
        node["args"] = args
        node["args_count"] = len(args)


def set_hashes(node: dict[str, Any], value: Any) -> None:
    """Sysmon's ``SHA1=..,MD5=..,SHA256=..,IMPHASH=..`` as ``hash.*`` and ``pe.imphash``."""
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
            node_at(node, ("pe",))["imphash"] = digest
        elif name:
            node_at(node, ("hash",))[name] = digest


_NULL_SID = "S-1-0-0"  # "Nobody": Windows writes it where there is no account


def put_user(fragment: Fragment, root: tuple[str, ...], sid: Any, name: Any, domain: Any) -> None:
    """``root.id``/``name``/``domain``; a ``user@REALM`` name keeps only the user part."""
    found: dict[str, str] = {}
    if sid is not None and (sid := text(sid)) is not None and sid != _NULL_SID:
        found["id"] = sid
    if name is not None and (name := text(name)) is not None:
        found["name"] = name.split("@", 1)[0] or name
    if domain is not None and (domain := text(domain)) is not None:
        found["domain"] = domain
    if found:
        node_at(fragment, root).update(found)
