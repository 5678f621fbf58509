"""Parse one syslog line: RFC 3164 (BSD), RFC 5424, and the ISO-timestamp variant of rsyslog.

    Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186
    <34>1 2003-10-11T22:14:15.003Z mymachine su - ID47 [exampleSDID@32473 iut="3"] 'su root' failed
    2018-10-23T09:16:50.123456+02:00 web-01 sshd[123]: Accepted publickey for an from 10.0.0.5 ...

Either BSD or ISO form may start with ``<PRI>``. A BSD line carries no year: it is taken from the
time the collector received the line (see ``parse_syslog``). A timestamp without a zone is read in
the zone given, and ``SyslogLine.zone_assumed`` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from socpipe.errors import ConfigError, RecordError

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"

# How far in the future (from the time received) a year-less BSD date may be before it is taken
# to be last year's: enough for clock skew and a source sending local time under another zone.
FUTURE_SLACK = timedelta(days=3)

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}

_PRI = re.compile(r"<(\d{1,3})>")
_BSD_TIME = re.compile(
    r"([A-Za-z]{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?: |$)",
)
_ISO_TIME_PATTERN = (
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?"
)
_ISO_TIME = re.compile(_ISO_TIME_PATTERN + r"(?: |$)")
_RFC5424 = re.compile(
    r"([1-9]\d{0,2}) (-|" + _ISO_TIME_PATTERN + r") (\S+) (\S+) (\S+) (\S+) "
    r"(-|(?:\[(?:[^\]\"\\]|\\.|\"(?:[^\"\\]|\\.)*\")*\])+)(?: (.*))?$",
    re.DOTALL,
)
# After the timestamp: "HOST TAG[PID]: MSG", else "TAG[PID]: MSG" (no host), else just MSG.
# A host has no brackets and does not end in ':' so that "sshd[1]: ..." is never read as a host.
_HOST_TAG = re.compile(r"([^\s\[\]]*[^\s\[\]:]) ([^\s\[\]:]+)(?:\[(\d+)\])?:(?: (.*)|$)", re.DOTALL)
_TAG = re.compile(r"([^\s\[\]:]+)(?:\[(\d+)\])?:(?: (.*)|$)", re.DOTALL)
# "<PRI>1 " starts an RFC 5424 line; "<PRI>2018-..." is the ISO variant.
_VERSION = re.compile(r"[1-9]\d{0,2} ")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class SyslogLine:
    """One syslog line, split into its header fields and message."""

    timestamp: datetime
    hostname: str | None
    program: str | None
    pid: int | None
    message: str
    priority: int | None = None
    msgid: str | None = None
    structured_data: str | None = None
    # True when the line had no zone and ``timestamp`` was read in the zone given to the parser.
    zone_assumed: bool = False


def parse_syslog(line: str, received: datetime, tz: str = DEFAULT_TIMEZONE) -> SyslogLine:
    """Parse one syslog line; raise RecordError saying why when it is not one.

    ``received`` (timezone-aware) supplies the year of a BSD line: the year that puts the date
    no more than ``FUTURE_SLACK`` after it, trying next year (a sender whose clock is just past
    New Year), this year, then last year. ``tz`` is the zone of a line whose time has none.
    """
    if received.tzinfo is None:
        raise ValueError("received must be timezone-aware")
    text = line.rstrip("\r\n")
    if not text:
        raise RecordError("not a syslog line: it is empty")
    zone = zone_named(tz)

    priority: int | None = None
    pos = 0
    pri = _PRI.match(text)
    if pri:
        priority = int(pri.group(1))
        if priority > 191:
            raise RecordError(f"not a syslog line: priority <{priority}> is above 191")
        pos = pri.end()
        rfc5424 = _RFC5424.match(text, pos)
        if rfc5424:
            return _from_rfc5424(rfc5424, priority, received, zone)
        if _VERSION.match(text, pos):
            raise RecordError(
                "not an RFC 5424 syslog line: expected '<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME"
                f" PROCID MSGID STRUCTURED-DATA [MSG]': {_excerpt(text)}"
            )

    iso = _ISO_TIME.match(text, pos)
    if iso:
        timestamp, zone_assumed = _iso_datetime(iso, 1, zone)
        return _with_body(text, iso.end(), timestamp, zone_assumed, priority)
    bsd = _BSD_TIME.match(text, pos)
    if bsd:
        timestamp = _bsd_datetime(bsd, received, zone)
        return _with_body(text, bsd.end(), timestamp, True, priority)
    raise RecordError(f"not a syslog line: no timestamp at the start: {_excerpt(text)}")


@lru_cache(maxsize=64)
def zone_named(name: str) -> tzinfo:
    """The IANA zone of that name; raises ConfigError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r}: expected an IANA name") from exc


def _with_body(
    text: str, pos: int, timestamp: datetime, zone_assumed: bool, priority: int | None
) -> SyslogLine:
    match = _HOST_TAG.match(text, pos)
    if match:
        hostname, program, pid, message = match.groups()
    else:
        hostname = None
        match = _TAG.match(text, pos)
        if match:
            program, pid, message = match.groups()
        else:
            # A line such as "--- last message repeated 1 time ---" has neither host nor tag.
            program, pid, message = None, None, text[pos:]
    return SyslogLine(
        timestamp=timestamp,
        hostname=hostname,
        program=program,
        pid=int(pid) if pid else None,
        message=message or "",
        priority=priority,
        zone_assumed=zone_assumed,
    )


def _from_rfc5424(
    match: re.Match[str], priority: int, received: datetime, zone: tzinfo
) -> SyslogLine:
    groups = match.groups()
    if groups[1] == "-":
        # RFC 5424 6.2.3: a sender without a clock sends no time; the receiver's is the best left.
        timestamp, zone_assumed = received, False
    else:
        timestamp, zone_assumed = _iso_datetime(match, 3, zone)
    hostname, app, procid, msgid, structured_data, message = groups[10:]
    message = message or ""
    if message.startswith(_BOM):
        message = message[1:]
    return SyslogLine(
        timestamp=timestamp,
        hostname=_nil(hostname),
        program=_nil(app),
        pid=int(procid) if procid.isdigit() else None,
        message=message,
        priority=priority,
        msgid=_nil(msgid),
        structured_data=_nil(structured_data),
        zone_assumed=zone_assumed,
    )


def _iso_datetime(match: re.Match[str], first: int, zone: tzinfo) -> tuple[datetime, bool]:
    # ``first`` is the number of the year's group; month, day, ... offset follow it.
    year, month, day, hour, minute, second, fraction, offset = match.group(*range(first, first + 8))
    try:
        stamp = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            min(int(second), 59),  # a leap second ":60" is kept as ":59"
            _microseconds(fraction),
            tzinfo=zone if offset is None else _fixed_offset(offset),
        )
    except ValueError as exc:
        raise RecordError(
            f"not a syslog line: invalid timestamp ({exc}): {_excerpt(match.string)}"
        ) from exc
    return stamp, offset is None


def _bsd_datetime(match: re.Match[str], received: datetime, zone: tzinfo) -> datetime:
    month_name, day, hour, minute, second, fraction = match.groups()
    month = _MONTHS.get(month_name.lower())
    if month is None:
        raise RecordError(
            f"not a syslog line: {month_name!r} is not a month name: {_excerpt(match.string)}"
        )
    fields = (month, int(day), int(hour), int(minute), min(int(second), 59))
    latest = received + FUTURE_SLACK
    this_year = received.astimezone(zone).year
    problem = "no year puts it within a year before it was received"
    for year in (this_year + 1, this_year, this_year - 1):
        try:
            stamp = datetime(year, *fields, _microseconds(fraction), tzinfo=zone)
        except ValueError as exc:
            problem = str(exc)  # 29 February in a common year; another year may have it
            continue
        if stamp <= latest:
            return stamp
    raise RecordError(f"not a syslog line: invalid timestamp ({problem}): {_excerpt(match.string)}")


def _microseconds(fraction: str | None) -> int:
    return int(fraction[:6].ljust(6, "0")) if fraction else 0


@lru_cache(maxsize=64)
def _fixed_offset(offset: str) -> tzinfo:
    if offset == "Z":
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _excerpt(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
