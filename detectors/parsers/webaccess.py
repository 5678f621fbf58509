"""Web server access logs to ECS: nginx and Apache, built-in formats and configured ones.

``NginxAccessParser`` and ``ApacheAccessParser`` read the combined and common formats the way
Elastic's Filebeat modules do: an optional leading virtual host (``example.com:80 1.2.3.4 - - [``),
a client address that may be an X-Forwarded-For list (``10.0.0.2, 10.0.0.1, 81.2.69.143``), and a
request that need not be valid HTTP (``"-"``, ``""``, a TLS handshake sent to the HTTP port),
which is kept without ``url.*``. A trailing quoted field after the user agent that holds addresses
is read as X-Forwarded-For (nginx's stock ``main`` format). The Apache parser also reads the SSL
request log (``[%t] %h %{SSL_PROTOCOL}x %{SSL_CIPHER}x "%r" %b``).

``LogFormatParser`` (``weblogformat``, re-exported here) compiles one nginx ``log_format`` or
Apache ``LogFormat`` string to a regular expression, once. When the settings name a format
(``context.options["nginx.access"]["log_format"]``), the built-in parsers try it first and fall
back to the built-in format. Both make their ECS fragment with ``webfields``, which says how
``source.address`` is chosen among several addresses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import ClassVar

from detectors.parsers.base import Fragment, LineParser, NotMine, ParseContext
from detectors.parsers.webfields import (
    CLF_TIME_TEXT,
    QUOTED,
    access_fragment,
    address_list,
    is_ip_address,
)
from detectors.parsers.weblogformat import (
    COMBINED_FORMATS,
    ApacheLogFormatParser,
    LogFormatParser,
    NginxLogFormatParser,
)

__all__ = [
    "COMBINED_FORMATS",
    "ApacheAccessParser",
    "ApacheLogFormatParser",
    "LogFormatParser",
    "NginxAccessParser",
    "NginxLogFormatParser",
]

# Built-in combined/common: "[vhost[:port]] addresses ident user [time] "request" status bytes"
# then optionally "referrer" "user agent", then optionally a quoted X-Forwarded-For. The prefix
# before the time is split in code: it cannot contain '[', so the match stays linear.
_COMBINED = re.compile(
    r"([^\[]*?) ?\[(" + CLF_TIME_TEXT + r')\] "' + QUOTED + r'" (\d{1,3}|-) (\d+|-)'
    r'(?: "' + QUOTED + r'" "' + QUOTED + r'")?(?: "' + QUOTED + r'")?(.*)',
    re.DOTALL,
)
_SSL_REQUEST = re.compile(
    r"\[(" + CLF_TIME_TEXT + r')\] (\S+) (\S+) (\S+) "' + QUOTED + r'" (\d+|-)\s*\Z', re.DOTALL
)
_SNIFF = re.compile(r"\[\d{1,2}/[A-Za-z]{3}/\d{4}:\d")


class NginxAccessParser(LineParser):
    """nginx access log: combined/common with vhost and address lists, or the configured format."""

    name: ClassVar[str] = "nginx.access"
    dataset: ClassVar[str] = "nginx.access"

    def sniff(self, line: str) -> bool:
        """A common-log-format time in brackets near the start."""
        return _SNIFF.search(line, 0, 2048) is not None

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment of one access line; NotMine when it is in neither format."""
        return _parse_access(line, context, "nginx")


class ApacheAccessParser(LineParser):
    """Apache access log: combined/common/vhost, the SSL request log, or the configured format."""

    name: ClassVar[str] = "apache.access"
    dataset: ClassVar[str] = "apache.access"

    def sniff(self, line: str) -> bool:
        """A common-log-format time in brackets near the start."""
        return _SNIFF.search(line, 0, 2048) is not None

    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment of one access line; NotMine when it is in none of the formats."""
        return _parse_access(line, context, "apache")


def _parse_access(line: str, context: ParseContext, vendor: str) -> Fragment:
    text = line.rstrip("\r\n").removeprefix("\ufeff")  # a BOM starts some files' first line
    configured = _configured_format(context, f"{vendor}.access")
    if configured is not None:
        try:
            return _compiled(configured, vendor).parse(text, context)
        except NotMine:
            pass  # lines from before the format changed are often in the stock format
    if vendor == "apache" and text.startswith("["):
        match = _SSL_REQUEST.match(text)
        if match:
            time, peer, protocol, cipher, request, size = match.groups()
            values = {"time_clf": time, "request": request, "body_bytes": size}
            values |= {"tls_protocol": protocol, "tls_cipher": cipher}
            return access_fragment(values, [peer], {}, vendor, context)
    match = _COMBINED.match(text)
    if match is None:
        raise NotMine(f"not a {vendor} access line")
    prefix, time, request, status, size, referrer, agent, forwarded, _rest = match.groups()
    tokens = prefix.split()
    if len(tokens) < 3:
        raise NotMine(f"not a {vendor} access line: no 'client ident user' before the time")
    values = {"time_clf": time, "request": request, "status": status, "body_bytes": size}
    values["user"] = tokens[-1]
    head = tokens[:-2]
    # Elastic's grammar: a first token that is not part of a list ("a," or '"a') is the vhost
    # when addresses follow it.
    if len(head) > 1 and not head[0].endswith(",") and not head[0].startswith('"'):
        values["vhost"] = head[0]
        head = head[1:]
    if referrer is not None:
        values["referrer"] = referrer
        values["user_agent"] = agent
    addresses = address_list(forwarded) if forwarded else []
    # Only a field of addresses is X-Forwarded-For; formats put other things there too.
    if not all(is_ip_address(entry) or entry == "unknown" for entry in addresses):
        addresses = []
    for token in head:
        addresses.extend(address_list(token))
    if not addresses:
        raise NotMine(f"not a {vendor} access line: no client address")
    return access_fragment(values, addresses, {}, vendor, context)


def _configured_format(context: ParseContext, name: str) -> str | None:
    options = context.options.get(name)
    if options is None:
        return None
    if isinstance(options, Mapping):
        value = options.get("log_format")
    else:  # a settings model rather than a plain mapping
        value = getattr(options, "log_format", None)
    return value if isinstance(value, str) and value.strip() else None


@lru_cache(maxsize=32)
def _compiled(log_format: str, vendor: str) -> LogFormatParser:
    return LogFormatParser(log_format, vendor)
