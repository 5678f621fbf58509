"""The public-service portal's JSON application log ("Cổng dịch vụ công") to ECS.

One JSON object a line, in the shape ``docs/portal-log-format.md`` fixes::

    {"ts": "2024-11-05T08:15:02.123+07:00", "level": "warn", "app": "dvc-portal", "env": "prod",
     "request_id": "9f1c...", "event": "login.failure",
     "user": {"name": "nguyenvana", "role": "citizen"}, "client": {"ip": "113.161.72.45"},
     "http": {"method": "POST", "path": "/dang-nhap", "status": 401, "duration_ms": 184},
     "auth": {"method": "password", "reason": "bad_password"},
     "message": "Đăng nhập thất bại: sai mật khẩu"}

The event name becomes ``event.action`` and decides ``event.category``/``type``/``outcome``; the
portal's own fields (user's agency, dossier, payment, auth method, any key not in the format)
stay under ``portal.*``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Final
from urllib.parse import unquote

from detectors.parsers.base import DataParser, Fragment, NotMine, ParseContext, is_ip
from detectors.parsers.webfields import request_url
from detectors.syslog import zone_named

_MAX_LONG: Final = 2**63 - 1
# Keys copied under portal.* become Elasticsearch field names: plain identifiers only.
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_LEVELS: Final = {"warning": "warn", "fatal": "critical", "err": "error"}
_SUCCESS: Final = frozenset({"success", "succeeded", "ok", "sent", "completed"})
_FAILURE: Final = frozenset({"failure", "failed", "fail", "denied", "error", "rejected"})
# How deep app-specific values are copied; deeper parts are dropped (JSON decoders stop near here).
_MAX_DEPTH: Final = 16

# event name (or its first part) -> (event.category, event.type); ECS allowed values only.
_EXACT: Final[dict[str, tuple[list[str], list[str]]]] = {
    "logout": (["authentication"], ["end"]),
    "session.expired": (["authentication", "session"], ["end"]),
    "password.change": (["iam"], ["user", "change"]),
    "password.reset": (["iam"], ["user", "change"]),
    "account.locked": (["iam"], ["user", "change"]),
    "account.unlocked": (["iam"], ["user", "change"]),
    "admin.permission_change": (["iam"], ["user", "change"]),
    "admin.role_change": (["iam"], ["user", "change"]),
    "admin.user_create": (["iam"], ["user", "creation"]),
    "admin.user_delete": (["iam"], ["user", "deletion"]),
    "admin.user_disable": (["iam"], ["user", "change"]),
    "file.upload": (["file"], ["creation"]),
    "file.download": (["file"], ["access"]),
    "file.delete": (["file"], ["deletion"]),
}
_BY_PREFIX: Final[dict[str, tuple[list[str], list[str]]]] = {
    "login": (["authentication"], ["start"]),
    "otp": (["authentication"], ["info"]),
    "sso": (["authentication"], ["start"]),
    "admin": (["iam"], ["admin"]),
    "file": (["file"], ["info"]),
    "dossier": (["web"], ["access"]),
    "payment": (["web"], ["access"]),
}
_HANDLED: Final = frozenset(
    {"ts", "level", "app", "env", "event", "request_id", "trace_id", "user", "client", "http"}
    | {"message", "error", "target", "file", "auth"}
)


class PortalParser(DataParser):
    """The portal's JSON application log: one mapping with ``ts``, ``event`` and ``app``."""

    name: ClassVar[str] = "portal.json"
    dataset: ClassVar[str] = "portal.app"

    def sniff(self, data: Mapping[str, Any]) -> bool:
        """A mapping with the keys ``ts``, ``event`` and ``app``."""
        return "ts" in data and "event" in data and "app" in data

    def parse(self, data: Mapping[str, Any], context: ParseContext) -> Fragment:
        """The ECS fragment of one portal record; NotMine without a ts, app and event name."""
        action = _text(data.get("event")) if self.sniff(data) else None
        if not action:
            raise NotMine("not a portal record: it needs ts, app and a text event")
        event: dict[str, Any] = {"kind": "event", "action": action}
        category, type_ = _classify(action, _text(data.get("level")))
        event["category"], event["type"] = category, type_
        fragment: Fragment = {"event": event}
        portal: dict[str, Any] = {}

        _set_time(fragment, data.get("ts"), context)
        level = _text(data.get("level"))
        if level:
            fragment["log"] = {"level": _LEVELS.get(level.lower(), level.lower())}
        service = {"name": _text(data.get("app")), "environment": _text(data.get("env"))}
        _put(fragment, "service", service)
        request_id = _text(data.get("request_id"))
        if request_id:
            fragment["transaction"] = {"id": request_id}
        trace_id = _text(data.get("trace_id")) or request_id
        if trace_id:
            fragment["trace"] = {"id": trace_id}
        message = _text(data.get("message"))
        if message:
            fragment["message"] = message

        _user(fragment, portal, data.get("user"))
        _client(fragment, portal, data.get("client"))
        status = _http(fragment, portal, data.get("http"))
        _target(fragment, portal, data.get("target"))
        _file(fragment, portal, data.get("file"))
        _error(fragment, portal, data.get("error"))
        auth = _mapping(data.get("auth"))
        if auth is not None:
            reason = _text(auth.get("reason"))
            if reason:
                event["reason"] = reason
            _rest(portal, "auth", auth, ("reason",))
        outcome = _outcome(action, status)
        if outcome:
            event["outcome"] = outcome
        for key, value in data.items():
            if key not in _HANDLED and isinstance(key, str) and _KEY.fullmatch(key):
                portal[key] = _plain(value, 0)
        if portal:
            fragment["portal"] = portal
        return fragment


PORTAL_PARSER: Final = PortalParser()


def _classify(action: str, level: str | None) -> tuple[list[str], list[str]]:
    known = _EXACT.get(action) or _BY_PREFIX.get(action.partition(".")[0])
    if known:
        return list(known[0]), list(known[1])
    is_error = level is not None and level.lower() in ("error", "fatal", "critical")
    return ["web"], ["error" if is_error else "info"]


def _outcome(action: str, status: int | None) -> str | None:
    last = action.rpartition(".")[2].lower()
    if last in _SUCCESS:
        return "success"
    if last in _FAILURE:
        return "failure"
    if status is not None:
        return "success" if status < 400 else "failure"
    return None


def _set_time(fragment: Fragment, value: Any, context: ParseContext) -> None:
    text = _text(value)
    if not text:
        return
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        fragment["error"] = {"message": f"invalid ts in the record: {exc}"}
        return
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=zone_named(context.timezone))
        fragment["event"]["timezone"] = context.timezone
    fragment["@timestamp"] = stamp


def _user(fragment: Fragment, portal: dict[str, Any], value: Any) -> None:
    if isinstance(value, str):  # a bare user name
        value = {"name": value}
    user = _mapping(value)
    if user is None:
        return
    ecs: dict[str, Any] = {
        "id": _text(user.get("id")),
        "name": _text(user.get("name")),
        "full_name": _text(user.get("full_name")),
        "email": _text(user.get("email")),
    }
    role = _text(user.get("role"))
    if role:
        ecs["roles"] = [role]
    _put(fragment, "user", ecs)
    _rest(portal, "user", user, ("id", "name", "full_name", "email", "role"))


def _client(fragment: Fragment, portal: dict[str, Any], value: Any) -> None:
    client = _mapping(value)
    if client is None:
        return
    ip = _text(client.get("ip"))
    source: dict[str, Any] = {}
    if ip:
        source["address"] = ip
        if is_ip(ip):
            source["ip"] = ip
    port = _number(client.get("port"))
    if port is not None and port <= 65535:
        source["port"] = port
    _put(fragment, "source", source)
    agent = _text(client.get("user_agent"))
    if agent:
        fragment["user_agent"] = {"original": agent}
    _rest(portal, "client", client, ("ip", "port", "user_agent"))


def _http(fragment: Fragment, portal: dict[str, Any], value: Any) -> int | None:
    """``http.*``, ``url.*`` and ``event.duration``; returns the status code."""
    http = _mapping(value)
    if http is None:
        return None
    method = _text(http.get("method"))
    if method:
        fragment["http"] = {"request": {"method": method.upper()}}
    path = _text(http.get("path"))
    query = _text(http.get("query"))
    if path:  # url.* as the web servers' parsers give them (path and query decoded)
        path, _, inline = path.partition("?")
        query = query or inline or None
        _put(fragment, "url", request_url(f"{path}?{query}" if query else path, method))
    elif query:
        _put(fragment, "url", {"query": unquote(query)})
    status = _number(http.get("status"))
    if status is not None and 100 <= status <= 999:
        fragment.setdefault("http", {})["response"] = {"status_code": status}
    else:
        status = None
    size = _number(http.get("bytes"))
    if size is not None:
        response = fragment.setdefault("http", {}).setdefault("response", {})
        response["body"] = {"bytes": size}
    duration = http.get("duration_ms")
    if (
        isinstance(duration, int | float)
        and not isinstance(duration, bool)
        and math.isfinite(duration)
        and 0 <= duration <= _MAX_LONG / 1_000_000
    ):
        fragment["event"]["duration"] = round(duration * 1_000_000)
    _rest(portal, "http", http, ("method", "path", "query", "status", "bytes", "duration_ms"))
    return status


def _target(fragment: Fragment, portal: dict[str, Any], value: Any) -> None:
    """The user an admin action changed: ``user.target.*``, the new role in its roles."""
    target = _mapping(value)
    if target is None:
        return
    ecs: dict[str, Any] = {"id": _text(target.get("id")), "name": _text(target.get("name"))}
    role = _text(target.get("role_new"))
    if role:
        ecs["roles"] = [role]
    ecs = {k: v for k, v in ecs.items() if v is not None}
    if ecs:
        fragment.setdefault("user", {})["target"] = ecs
    _rest(portal, "target", target, ("id", "name", "role_new"))


def _file(fragment: Fragment, portal: dict[str, Any], value: Any) -> None:
    file = _mapping(value)
    if file is None:
        return
    name = _text(file.get("name"))
    ecs: dict[str, Any] = {"name": name, "mime_type": _text(file.get("mime_type"))}
    if name and "." in name.strip("."):
        ecs["extension"] = name.rpartition(".")[2].lower()
    ecs["size"] = _number(file.get("size"))
    sha256 = _text(file.get("sha256"))
    if sha256:
        ecs["hash"] = {"sha256": sha256.lower()}
    _put(fragment, "file", ecs)
    _rest(portal, "file", file, ("name", "mime_type", "size", "sha256"))


def _error(fragment: Fragment, portal: dict[str, Any], value: Any) -> None:
    if isinstance(value, str):
        value = {"message": value}
    error = _mapping(value)
    if error is None:
        return
    ecs = {
        "type": _text(error.get("type")),
        "message": _text(error.get("message")),
        "stack_trace": _text(error.get("stack")),
        "code": _text(error.get("code")),
    }
    if any(v is not None for v in ecs.values()):
        fragment["error"] = {k: v for k, v in ecs.items() if v is not None}
    _rest(portal, "error", error, ("type", "message", "stack", "code"))


def _rest(
    portal: dict[str, Any], name: str, source: Mapping[str, Any], mapped: tuple[str, ...]
) -> None:
    """The fields of ``source`` not mapped to ECS, kept under ``portal.<name>``."""
    rest = {
        key: _plain(value, 0)
        for key, value in source.items()
        if key not in mapped and isinstance(key, str) and _KEY.fullmatch(key)
    }
    if rest:
        portal[name] = rest


def _plain(value: Any, depth: int) -> Any:
    """A copy that JSON can write: 64-bit numbers, finite floats, identifier keys, bounded depth."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {
            key: _plain(inner, depth + 1)
            for key, inner in value.items()
            if isinstance(key, str) and _KEY.fullmatch(key)
        }
    if isinstance(value, list | tuple):
        return [_plain(inner, depth + 1) for inner in value]
    return None


def _put(fragment: Fragment, name: str, fields: dict[str, Any]) -> None:
    """Set ``fragment[name]`` to the fields that have a value, merged into what is there."""
    present = {k: v for k, v in fields.items() if v is not None and v != {}}
    if present:
        fragment.setdefault(name, {}).update(present)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _text(value: Any) -> str | None:
    """A non-empty string; numbers are written out (ids are sometimes numbers)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: Any) -> int | None:
    """A non-negative int that fits a long, from an int, a whole float or a digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str) and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_LONG:
        return value
    return None
