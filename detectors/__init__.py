"""Detectors: parsers that turn raw lines into ECS events, and checks that judge events."""

from detectors.checks import Check, FailedPasswordCheck, entities_of
from detectors.sshd import parse_sshd
from detectors.syslog import DEFAULT_TIMEZONE, SyslogLine, parse_syslog, zone_named

__all__ = [
    "DEFAULT_TIMEZONE",
    "Check",
    "FailedPasswordCheck",
    "SyslogLine",
    "entities_of",
    "parse_sshd",
    "parse_syslog",
    "zone_named",
]
