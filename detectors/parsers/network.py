"""Parsers for network devices and services: FortiGate, pfSense filterlog, BIND, OpenVPN.

Each format lives in its own module (``fortigate``, ``pfsense``, ``dns``, ``openvpn``); this one
gathers their instances for the registry. Linux kernel firewall lines (iptables, UFW) are in
``firewall``.
"""

from __future__ import annotations

from detectors.parsers.base import LineParser, ProgramParser
from detectors.parsers.dns import BindQueryFileParser, BindQueryParser
from detectors.parsers.fortigate import FortigateParser
from detectors.parsers.openvpn import OpenvpnParser
from detectors.parsers.pfsense import PfsenseFilterlogParser

__all__ = [
    "NETWORK_LINE_PARSERS",
    "NETWORK_PROGRAM_PARSERS",
    "BindQueryFileParser",
    "BindQueryParser",
    "FortigateParser",
    "OpenvpnParser",
    "PfsenseFilterlogParser",
]

NETWORK_LINE_PARSERS: list[LineParser] = [FortigateParser(), BindQueryFileParser()]
NETWORK_PROGRAM_PARSERS: list[ProgramParser] = [
    PfsenseFilterlogParser(),
    BindQueryParser(),
    OpenvpnParser(),
]
