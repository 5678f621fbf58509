"""Detectors: parsers that turn raw records into ECS events, and checks that judge events."""

from socpipe.native import check_current

# Compiled hot modules (socpipe.native) must not run code older than their source: checked
# before any of them is imported.
check_current()

from detectors.checks import Check, FailedPasswordCheck, entities_of  # noqa: E402
from detectors.normalize import Normalized, Normalizer  # noqa: E402
from detectors.syslog import DEFAULT_TIMEZONE, SyslogLine, parse_syslog, zone_named  # noqa: E402

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
