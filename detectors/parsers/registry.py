"""Which parsers the normalizer knows, by format name and syslog program, and the order in
which it tries them when it has to detect a format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectors.parsers.auditd import AuditdParser
from detectors.parsers.base import DataParser, LineParser, ProgramParser
from detectors.parsers.firewall import KernelFirewallParser
from detectors.parsers.health import HEALTH_PARSER
from detectors.parsers.linux import LINUX_PROGRAM_PARSERS
from detectors.parsers.network import NETWORK_LINE_PARSERS, NETWORK_PROGRAM_PARSERS
from detectors.parsers.portal import PORTAL_PARSER
from detectors.parsers.sshd import SshdParser
from detectors.parsers.web import WEB_LINE_PARSERS, LogFormatParser
from detectors.parsers.windows import WinlogEvtxParser, WinlogFlatParser


@dataclass(frozen=True)
class ParserSet:
    """Parsers by the names the normalizer looks them up with."""

    lines: dict[str, LineParser]
    line_order: tuple[LineParser, ...]
    programs: dict[str, ProgramParser]
    data: dict[str, DataParser]
    data_order: tuple[DataParser, ...]

    def formats(self) -> list[str]:
        """Every format name a collector may put in ``source.format``."""
        return sorted({"syslog", "auto", "json", *self.lines, *self.data})


def default_parsers(options: Mapping[str, Mapping[str, Any]] | None = None) -> ParserSet:
    """Every parser socpipe has.

    A configured access-log ``log_format`` reaches the access parsers through the parse context
    (they try it first, then the combined format); it is compiled here once so that a bad one
    fails at start with ConfigError rather than on the first line.
    """
    options = options or {}
    for flavour in ("nginx.access", "apache.access"):
        log_format = (options.get(flavour) or {}).get("log_format")
        if log_format:
            LogFormatParser(log_format, flavour)
    lines: list[LineParser] = [AuditdParser(), *NETWORK_LINE_PARSERS, *WEB_LINE_PARSERS]
    programs: dict[str, ProgramParser] = {}
    for parser in (
        SshdParser(),
        *LINUX_PROGRAM_PARSERS,
        KernelFirewallParser(),
        *NETWORK_PROGRAM_PARSERS,
    ):
        for program in parser.programs:
            programs.setdefault(program, parser)
    data: list[DataParser] = [WinlogEvtxParser(), WinlogFlatParser(), PORTAL_PARSER, HEALTH_PARSER]
    return ParserSet(
        lines={p.name: p for p in lines},
        line_order=tuple(lines),
        programs=programs,
        data={p.name: p for p in data},
        data_order=tuple(data),
    )
