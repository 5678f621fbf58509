"""How a parser plugs into the normalizer.

There are three kinds, by what they read:

- ``LineParser``: one text line of a whole format (nginx access, auditd, FortiGate key=value).
- ``ProgramParser``: the message part of a syslog line, for a family of programs (sshd, sudo,
  named, openvpn, kernel firewall lines). The normalizer has already parsed the syslog header
  (time, host, program, pid, priority) and set those fields.
- ``DataParser``: a structured record (``RawRecord.data``, or a JSON line decoded), such as a
  Windows event.

Every parser returns an *ECS fragment*: a plain nested dict of the fields its format knows
(``{"source": {"ip": "203.0.113.9"}, "event": {"action": "ssh_login"}}``), with ``@timestamp`` as
an aware datetime when the input carries a time. The normalizer adds what every event has (event
id, original, agency, host, log file and offset, related ips, enrichment) and merges the fragment
over it; a parser does not set those. Plain dicts, not models: this runs once per event.

A parser raises ``NotMine`` when the input is not of its format, so the dispatcher can try the
next one. It must not let any other exception escape on odd input (arbitrary bytes, huge lines,
impossible dates): property tests feed it exactly that. If one escapes anyway, the normalizer
keeps the event as unparsed and records the error, and that is a bug to fix.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from detectors.syslog import DEFAULT_TIMEZONE, SyslogLine

Fragment = dict[str, Any]


class NotMine(Exception):  # noqa: N818 - an answer, not an error
    """The input is not of this parser's format; the dispatcher tries the next parser."""


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser may need beyond the input itself."""

    # When the collector received the record: the year of a BSD syslog line comes from it.
    received: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Zone of a timestamp that carries none.
    timezone: str = DEFAULT_TIMEZONE
    # Per-format options from settings, e.g. {"nginx.access": {"log_format": "..."}}.
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class LineParser(ABC):
    """Parses one text line of a format into an ECS fragment.

    To implement one, set ``name`` (the format name a collector puts in ``source.format``, such
    as ``nginx.access``) and ``dataset`` (ECS ``event.dataset``), and write ``sniff`` (cheap:
    might this line be of the format? used to auto-detect) and ``parse`` (the fragment, or
    ``NotMine``).
    """

    name: ClassVar[str]
    dataset: ClassVar[str]

    @abstractmethod
    def sniff(self, line: str) -> bool:
        """Whether the line looks like this format; may say yes to a line parse then refuses."""

    @abstractmethod
    def parse(self, line: str, context: ParseContext) -> Fragment:
        """The ECS fragment for ``line``; raises NotMine if the line is not of this format."""


class ProgramParser(ABC):
    """Parses the message of a syslog line from one family of programs.

    To implement one, set ``programs`` (lower-case program names as syslog tags them) and
    ``dataset``, and write ``parse``: the fragment for a message it recognises, or None for one
    it does not (the event then stays a generic syslog event of that program).
    """

    programs: ClassVar[frozenset[str]]
    dataset: ClassVar[str]

    @abstractmethod
    def parse(self, line: SyslogLine, context: ParseContext) -> Fragment | None:
        """The ECS fragment for this syslog line's message, or None if not recognised."""


class DataParser(ABC):
    """Parses a structured record into an ECS fragment.

    To implement one, set ``name`` and ``dataset`` and write ``sniff`` (does this mapping have
    the shape of the format?) and ``parse`` (the fragment, or ``NotMine``).
    """

    name: ClassVar[str]
    dataset: ClassVar[str]

    @abstractmethod
    def sniff(self, data: Mapping[str, Any]) -> bool:
        """Whether the mapping has the shape of this format."""

    @abstractmethod
    def parse(self, data: Mapping[str, Any], context: ParseContext) -> Fragment:
        """The ECS fragment for ``data``; raises NotMine if it is not of this format."""


def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def to_int(text: str | None) -> int | None:
    """An int from text, or None when the text is empty, ``-`` or not a number."""
    if text is None or not text.strip("- "):
        return None
    try:
        return int(text)
    except ValueError:
        return None
