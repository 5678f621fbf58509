"""Detectors: parsers that turn raw records into ECS events, and checks that judge events."""

from detectors.checks import Check, FailedPasswordCheck, entities_of
from detectors.normalize import Normalized, Normalizer
from detectors.syslog import DEFAULT_TIMEZONE, SyslogLine, parse_syslog, zone_named

__all__ = [
    "DEFAULT_TIMEZONE",
    "Check",
    "FailedPasswordCheck",
    "Normalized",
    "Normalizer",
    "SyslogLine",
    "entities_of",
    "parse_syslog",
    "zone_named",
]
