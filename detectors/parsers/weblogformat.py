"""Configured access log formats: an nginx ``log_format`` or Apache ``LogFormat``, compiled.

``LogFormatParser(log_format, flavour)`` compiles one format string to a regular expression,
once, and reads lines in it; ``NginxLogFormatParser`` and ``ApacheLogFormatParser`` are its two
flavours. Each nginx variable or Apache directive gets a *role* (what its value means) from the
tables here, and ``access_fragment`` (``webfields``) makes the ECS fragment from the values by
role. ``COMBINED_FORMATS`` holds the preset formats by name.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

import re2

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext
from detectors.parsers.webfields import (
    CLF_TIME_TEXT,
    ISO_TIME_TEXT,
    QUOTED,
    access_fragment,
    address_list,
)
from socpipe.errors import ConfigError

_NGINX_COMMON = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent'
# Formats by name, for LogFormatParser; "combined" is the default of both servers.
COMBINED_FORMATS: Final = {
    "nginx": {
        "common": _NGINX_COMMON,
        "combined": _NGINX_COMMON + ' "$http_referer" "$http_user_agent"',
        "main": _NGINX_COMMON + ' "$http_referer" "$http_user_agent" "$http_x_forwarded_for"',
    },
    "apache": {
        "common": '%h %l %u %t "%r" %>s %b',
        "combined": '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"',
        "vhost_combined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
        "ssl_request": '%t %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x "%r" %b',
    },
}

# nginx variable -> role (what the value means; see access_fragment). Others are kept under
# nginx.access.<name>.
_NGINX_ROLES: Final = {
    "remote_addr": "addr", "binary_remote_addr": "", "remote_user": "user",
    "time_local": "time_clf", "time_iso8601": "time_iso", "msec": "time_epoch",
    "request": "request", "status": "status", "body_bytes_sent": "body_bytes",
    "bytes_sent": "bytes_sent", "request_length": "request_length", "request_time": "duration_s",
    "http_referer": "referrer", "http_user_agent": "user_agent", "http_x_forwarded_for": "xff",
    "host": "host", "http_host": "host", "server_name": "server_name", "server_addr": "server_addr",
    "server_port": "server_port", "remote_port": "remote_port", "scheme": "scheme",
    "upstream_response_time": "upstream_time", "request_method": "method", "request_uri": "uri",
    "uri": "path", "document_uri": "path", "args": "args", "query_string": "args",
    "server_protocol": "protocol", "ssl_protocol": "tls_protocol", "ssl_cipher": "tls_cipher",
    "pid": "pid", "request_id": "request_id", "content_type": "request_mime",
    "sent_http_content_type": "response_mime", "request_filename": "filename",
}  # fmt: skip
# Apache directive letter -> role; %{...}i/o/x/t/p/P/T are handled by argument in code.
_APACHE_ROLES: Final = {
    "h": "addr", "a": "addr", "A": "server_addr", "l": "ident", "u": "user", "r": "request",
    "s": "status", "b": "body_bytes", "B": "body_bytes", "D": "duration_us", "T": "duration_s",
    "v": "server_name", "V": "host", "p": "server_port", "P": "pid", "m": "method", "U": "path",
    "q": "args", "H": "protocol", "f": "filename", "I": "request_length", "O": "bytes_sent",
    "L": "request_id",
}  # fmt: skip
_APACHE_HEADERS: Final = {
    "referer": "referrer", "user-agent": "user_agent", "x-forwarded-for": "xff", "host": "host",
    "content-type": "request_mime", "x-request-id": "request_id",
}  # fmt: skip
_APACHE_NAMES: Final = {  # names of the Apache directives kept under apache.access.*
    "X": "connection_status", "k": "keepalive", "R": "handler", "S": "bytes_transferred",
    "L": "log_id",
}  # fmt: skip
# Roles whose values have spaces: when not quoted, matched lazily rather than up to a space.
_SPACED_ROLES: Final = frozenset({"request", "user_agent", "referrer"})
_FIXED_PATTERNS: Final = {
    "time_clf": CLF_TIME_TEXT,
    "time_iso": ISO_TIME_TEXT,
    "time_epoch": r"\d{1,12}(?:\.\d{1,9})?",
    "time_sec": r"\d{1,12}",
    "time_msec": r"\d{1,15}",
    "time_usec": r"\d{1,18}",
    "time_msec_frac": r"\d{3}",
    "time_usec_frac": r"\d{6}",
}
# strftime directives Apache's %{...}t may use, as regex and as what Python's strptime reads.
_STRFTIME: Final = {
    "Y": (r"\d{4}", "%Y"), "y": (r"\d\d", "%y"), "m": (r"\d{1,2}", "%m"),
    "d": (r"[ \d]?\d", "%d"), "e": (r"[ \d]?\d", "%d"), "H": (r"[ \d]?\d", "%H"),
    "I": (r"\d{1,2}", "%I"), "M": (r"\d{1,2}", "%M"), "S": (r"\d{1,2}", "%S"),
    "j": (r"\d{1,3}", "%j"), "b": (r"[A-Za-z]{3}", "%b"), "h": (r"[A-Za-z]{3}", "%b"),
    "B": (r"[A-Za-z]+", "%B"), "a": (r"[A-Za-z]{3}", "%a"), "A": (r"[A-Za-z]+", "%A"),
    "p": (r"[AaPp][Mm]", "%p"), "z": (r"[+-]\d{4}", "%z"), "T": (r"\d\d:\d\d:\d\d", "%H:%M:%S"),
    "F": (r"\d{4}-\d\d-\d\d", "%Y-%m-%d"), "R": (r"\d\d:\d\d", "%H:%M"),
    "D": (r"\d\d/\d\d/\d\d", "%m/%d/%y"), "%": ("%", "%%"),
}  # fmt: skip
_NGINX_TOKEN = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_APACHE_TOKEN = re.compile(r"%([!\d,<>]*)(?:\{([^}]*)\})?[<>]?([A-Za-z%])")
_STRFTIME_TOKEN = re.compile(r"%(.)|([^%]+)", re.DOTALL)
_FLAVOURS: Final = ("nginx", "apache")

# One compiled field: its role, and the name it is kept under when the role is "extra".
_Field = tuple[str, str]


class LogFormatParser(LineParser):
    """An access log in one nginx ``log_format`` or Apache ``LogFormat``, compiled to a regex.

    ``LogFormatParser(log_format, flavour)``, flavour ``"nginx"`` or ``"apache"`` (or the format
    names ``"nginx.access"``, ``"apache.access"``), gives a parser whose ``name`` and ``dataset``
    are ``nginx.access`` or ``apache.access``. The format is the string itself (``'$remote_addr -
    $remote_user [$time_local] "$request" ...'``, or Apache's ``%h %l %u %t \\"%r\\" ...`` with
    or without the backslashes of httpd.conf); a whole ``log_format name '...' '...';`` or
    ``LogFormat "..." name`` directive is also accepted, and so are the preset names
    ``combined``, ``common``, ``main`` (nginx), ``vhost_combined`` and ``ssl_request`` (Apache).
    An empty format means combined. Raises ConfigError for a format it cannot use.
    """

    name: ClassVar[str] = "nginx.access"
    dataset: ClassVar[str] = "nginx.access"
    flavour: ClassVar[str] = "nginx"

    def __new__(cls, log_format: str = "", flavour: str = "nginx") -> LogFormatParser:
        """The subclass of the flavour, so that ``name`` and ``dataset`` stay class attributes."""
        if cls is LogFormatParser:
            name = flavour.removesuffix(".access")
            if name not in _FLAVOURS:
                raise ConfigError(
                    f"log format flavour {flavour!r} is not one of nginx, apache,"
                    " nginx.access, apache.access"
                )
            cls = NginxLogFormatParser if name == "nginx" else ApacheLogFormatParser
        return super().__new__(cls)

    def __init__(self, log_format: str = "", flavour: str = "nginx") -> None:
        self.log_format = log_format
        self._time_format: str | None = None
        self._pattern, self._fields = self._compile(_preset(log_format, self.flavour))

    def sniff(self, line: str) -> bool:
        """Whether the line matches the compiled format."""
        return self._pattern.match(line) is not None

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment of one line in this format; NotMine when it does not match."""
        match = self._pattern.match(line.rstrip("\r\n"))
        if match is None:
            raise NotMine(f"not a {self.name} line in the configured format")
        values: dict[str, str] = {}
        extras: dict[str, str] = {}
        addresses: list[str] = []
        forwarded: list[str] = []
        times: list[str] = []
        for (role, key), value in zip(self._fields, match.groups(), strict=True):
            if role == "addr":
                addresses.extend(address_list(value))
            elif role == "xff":
                forwarded.extend(address_list(value))
            elif role == "time_fmt":
                times.append(value)
            elif role == "extra":
                if value not in ("", "-"):
                    extras[key] = value
            elif role:
                values[role] = value
        if times:
            values["time_fmt"] = " ".join(times)
        return access_fragment(
            values, forwarded + addresses, extras, self.flavour, context, self._time_format
        )

    def _compile(self, log_format: str) -> tuple[Any, list[_Field]]:
        items = self._tokens(log_format)
        if not any(isinstance(item, tuple) for item in items):
            raise ConfigError(f"{self.name} log format {log_format!r} has no fields")
        parts: list[str] = []
        fields: list[_Field] = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                parts.append(re.escape(item))
                continue
            role, key, fixed = item
            following = items[index + 1] if index + 1 < len(items) else None
            if fixed is not None:
                pattern = f"({fixed})"
            elif following is None:
                pattern = "(.*)"
            elif not isinstance(following, str):
                # two fields with nothing between: only a path before a query splits cleanly
                pattern = r"([^?\s]*)" if role == "path" else "(.*?)"
            elif following[0] == '"':
                pattern = QUOTED
            elif role in ("xff", "upstream_time") or key.startswith("upstream_"):
                # "10.0.0.1:80, 10.0.0.2:80" and "0.001 : 0.002": lists with spaces in them
                pattern = r"([^\s,]*(?:(?:, | : )[^\s,]*)*)"
            elif role in _SPACED_ROLES:
                pattern = "(.*?)"
            else:
                pattern = f"([^{re.escape(following[0])}]*)"
            parts.append(pattern)
            fields.append((role, key))
        # RE2, not re: a configured format can put lazy groups side by side, and a line crafted
        # against it would make a backtracking engine run for minutes; RE2 is linear in the line.
        try:
            return re2.compile("(?s)" + "".join(parts)), fields
        except re2.error as exc:  # only a strftime piece could do this; say which format
            raise ConfigError(f"{self.name} log format {log_format!r}: {exc}") from exc

    def _tokens(self, log_format: str) -> list[str | tuple[str, str, str | None]]:
        """The format split into literal text and (role, key, fixed pattern) fields.

        Each flavour's subclass says how; ``__new__`` always builds one of them.
        """
        raise NotImplementedError(f"{type(self).__name__} has no log format flavour")


class NginxLogFormatParser(LogFormatParser):
    """An nginx ``log_format``; build it as ``LogFormatParser(format, "nginx")``."""

    name: ClassVar[str] = "nginx.access"
    dataset: ClassVar[str] = "nginx.access"
    flavour: ClassVar[str] = "nginx"

    def _tokens(self, log_format: str) -> list[str | tuple[str, str, str | None]]:
        items: list[str | tuple[str, str, str | None]] = []
        position = 0
        for match in _NGINX_TOKEN.finditer(log_format):
            _literal(items, log_format[position : match.start()])
            variable = match.group(1) or match.group(2)
            role = _NGINX_ROLES.get(variable)
            if role is None:
                items.append(("extra", variable, None))
            else:
                items.append((role, variable, _FIXED_PATTERNS.get(role)))
            position = match.end()
        _literal(items, log_format[position:])
        return items


class ApacheLogFormatParser(LogFormatParser):
    """An Apache ``LogFormat``; build it as ``LogFormatParser(format, "apache")``."""

    name: ClassVar[str] = "apache.access"
    dataset: ClassVar[str] = "apache.access"
    flavour: ClassVar[str] = "apache"

    def _tokens(self, log_format: str) -> list[str | tuple[str, str, str | None]]:
        items: list[str | tuple[str, str, str | None]] = []
        position = 0
        for match in _APACHE_TOKEN.finditer(log_format):
            _literal(items, log_format[position : match.start()])
            modifiers, argument, letter = match.groups()
            position = match.end()
            if letter == "%":
                _literal(items, "%")
            elif letter == "t":
                items.extend(self._time(argument))
            else:
                role, key = _apache_role(letter, argument, modifiers)
                items.append((role, key, _FIXED_PATTERNS.get(role)))
        _literal(items, log_format[position:])
        return items

    def _time(self, argument: str | None) -> list[str | tuple[str, str, str | None]]:
        if argument is None:
            return ["[", ("time_clf", "t", CLF_TIME_TEXT), "]"]
        spec = argument.removeprefix("begin:").removeprefix("end:")
        role = f"time_{spec}"
        if role in _FIXED_PATTERNS:
            return [(role, spec, _FIXED_PATTERNS[role])]
        pattern: list[str] = []
        parsed: list[str] = []
        for directive, text in _STRFTIME_TOKEN.findall(spec):
            if text:
                pattern.append(re.escape(text))
                parsed.append(text.replace("%", "%%"))
            elif directive in _STRFTIME:
                pattern.append(_STRFTIME[directive][0])
                parsed.append(_STRFTIME[directive][1])
            else:  # a directive strptime cannot read: keep the text, without a time from it
                return [("extra", "time", None)]
        piece = "".join(parsed)
        self._time_format = f"{self._time_format} {piece}" if self._time_format else piece
        return [("time_fmt", spec, "".join(pattern))]


def _apache_role(letter: str, argument: str | None, modifiers: str) -> tuple[str, str]:
    if argument is not None:
        lowered = argument.lower()
        if letter == "i":
            return _APACHE_HEADERS.get(lowered, "extra"), "http_" + _snake(argument)
        if letter == "o":
            role = "response_mime" if lowered == "content-type" else "extra"
            return role, "sent_http_" + _snake(argument)
        if letter == "x" and lowered in ("ssl_protocol", "ssl_cipher"):
            return "tls_" + lowered[4:], lowered
        if letter == "p":
            return ("remote_port" if lowered == "remote" else "server_port"), "port_" + lowered
        if letter == "P":
            return ("tid" if lowered in ("tid", "hextid") else "pid"), lowered
        if letter == "T":
            unit = {"ms": "duration_ms", "us": "duration_us"}.get(lowered, "duration_s")
            return unit, "time_taken"
        if letter == "a":
            return "addr", "client"
        if letter in "eCnx":
            return "extra", _snake(argument)
    if letter == "s":
        # %>s is the final status; %s and %<s the original one, used only when there is no %>s.
        return ("status" if ">" in modifiers else "status_original"), "status"
    known = _APACHE_ROLES.get(letter)
    if known is None:
        return "extra", _APACHE_NAMES.get(letter, letter)
    return known, letter


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "value"


def _literal(items: list[str | tuple[str, str, str | None]], text: str) -> None:
    if not text:
        return
    if items and isinstance(items[-1], str):
        items[-1] += text
    else:
        items.append(text)


def _preset(log_format: str, flavour: str) -> str:
    """The format string itself: presets by name, a pasted directive reduced to its format."""
    text = log_format.strip().rstrip(";").strip()
    presets = COMBINED_FORMATS[flavour]
    if not text:
        return presets["combined"]
    if text in presets:
        return presets[text]
    if flavour == "nginx":
        if text.startswith("log_format "):
            # log_format name [escape=...] 'part' 'part' ...
            text = re.sub(r"^log_format\s+\S+\s+(?:escape=\S+\s+)?", "", text)
        pieces = re.findall(r"'((?:[^'\\]|\\.)*)'", text)
        if pieces and text.startswith("'"):
            text = "".join(pieces)
        return text
    if text.startswith("LogFormat "):
        text = text[len("LogFormat ") :].strip()
        quoted = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        if quoted:
            text = quoted.group(1)
    return text.replace('\\"', '"')
