"""Web server logs: nginx and Apache access and error logs, as line parsers.

The parsers live in ``webaccess`` (access logs), ``weblogformat`` (``LogFormatParser``, for a
configured nginx ``log_format`` or Apache ``LogFormat``) and ``weberror`` (error logs); this
module gathers them. ``webfields`` makes the ECS fields of an access line for both access parsers.
``WEB_LINE_PARSERS`` holds one instance of each with default options; the normalizer builds a
``LogFormatParser(format, flavour)`` per configured format.
"""

from __future__ import annotations

from detectors.parsers.base import LineParser
from detectors.parsers.webaccess import ApacheAccessParser, NginxAccessParser
from detectors.parsers.weberror import ApacheErrorParser, NginxErrorParser
from detectors.parsers.weblogformat import (
    COMBINED_FORMATS,
    ApacheLogFormatParser,
    LogFormatParser,
    NginxLogFormatParser,
)

# Error parsers first: their headers are strict, and an access line never starts like them.
WEB_LINE_PARSERS: list[LineParser] = [
    NginxErrorParser(),
    ApacheErrorParser(),
    NginxAccessParser(),
    ApacheAccessParser(),
]

__all__ = [
    "COMBINED_FORMATS",
    "WEB_LINE_PARSERS",
    "ApacheAccessParser",
    "ApacheErrorParser",
    "ApacheLogFormatParser",
    "LogFormatParser",
    "NginxAccessParser",
    "NginxErrorParser",
    "NginxLogFormatParser",
]
