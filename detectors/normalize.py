"""Every raw record becomes one ECS event: parsed when a parser knows it, unparsed otherwise.

``Normalizer.normalize`` picks parsers by the record's ``source.format`` (or detects the format
when it is ``auto`` or unknown), merges their fragment over the fields every event has, enriches
it (agency, assets, address scopes), and puts ``@timestamp`` in UTC with the source's zone kept in
``event.timezone``. A record no parser recognises is still an event, tagged ``unparsed``, with
its original text, agency and host, so keyword rules can see it. Nothing here raises for content:
a parser that fails is a bug, and the event is kept unparsed with the error in ``error.message``.

The caller sends a record to the dead-letter topic only when it cannot be read at all (an
undecodable Kafka message), which happens before this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from detectors.enrich import AgencyRegistry, AssetRegistry, address_scope
from detectors.parsers.base import Fragment, NotMine, ParseContext
from detectors.parsers.registry import ParserSet, default_parsers
from detectors.syslog import SyslogLine, parse_syslog
from socpipe.errors import RecordError
from socpipe.records import EcsEvent, RawRecord

log = logging.getLogger(__name__)

Status = Literal["parsed", "unparsed"]
UNPARSED = "unparsed"

_SYSLOG_FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
_SYSLOG_SEVERITIES = (
    "emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug",
)  # fmt: skip
_JSON_FORMATS = frozenset({"json", "winlog.json", "portal.json"})
# The version every event document carries (EcsEvent.v's default, as to_json writes it).
_EVENT_VERSION: int = EcsEvent.model_fields["v"].default


@dataclass(frozen=True, slots=True)
class Normalized:
    """An event and whether a parser understood it.

    ``document`` is the event as a plain dict, what ``event`` was validated from (strictly, so
    that nothing was coerced on the way): what rules match and what goes to Kafka
    (:func:`~socpipe.records.encode_document`), without a model round trip per event. Its times
    are ``datetime`` objects, which orjson writes as ``event.to_json()`` would.
    """

    event: EcsEvent
    status: Status
    format: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Parsed:
    fragment: Fragment
    dataset: str
    format: str


class Normalizer:
    """Turns raw records into ECS events; see the module docstring."""

    def __init__(
        self,
        *,
        timezone: str = "Asia/Ho_Chi_Minh",
        agencies: AgencyRegistry | None = None,
        assets: AssetRegistry | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        parsers: ParserSet | None = None,
    ) -> None:
        self.timezone = timezone
        self.agencies = agencies
        self.assets = assets
        self.options = options or {}
        self.parsers = parsers or default_parsers(self.options)

    def normalize(self, raw: RawRecord) -> Normalized:
        """The ECS event for ``raw``; never raises for what the record contains."""
        zone = (self.options.get(raw.source.format) or {}).get("timezone") or self.timezone
        context = ParseContext(received=raw.received, timezone=zone, options=self.options)
        error: str | None = None
        try:
            parsed = self._parse(raw, context)
        except Exception as exc:  # a parser bug must not lose the record
            log.exception("parser failed on record %s (%s)", raw.id, raw.source.format)
            parsed, error = None, f"parser error: {type(exc).__name__}: {exc}"
        if parsed is not None:
            doc = self._document(raw, parsed)
            try:
                event = EcsEvent.model_validate(doc, strict=True)
                return Normalized(event, "parsed", parsed.format, doc)
            except ValidationError as exc:
                # A parser produced a value of the wrong type: a bug, but the record stays.
                log.warning("record %s: parsed fields rejected: %s", raw.id, exc)
                first = exc.errors()[0]
                error = f"parsed fields rejected: {first['loc']}: {first['msg']}"
        doc = self._unparsed(raw, error)
        event = EcsEvent.model_validate(doc, strict=True)
        return Normalized(event, "unparsed", raw.source.format, doc)

    # --- choosing and running parsers -----------------------------------------------------------

    def _parse(self, raw: RawRecord, context: ParseContext) -> _Parsed | None:
        fmt = raw.source.format
        if raw.data is not None:
            return self._parse_data(raw.data, fmt, context)
        line = raw.message or ""
        # A line of a format a data parser has (portal.json, socpipe.health...) is its JSON.
        if (
            fmt in _JSON_FORMATS
            or fmt in self.parsers.data
            or (fmt in ("auto", "") and line.lstrip().startswith("{"))
        ):
            data = _json_object(line)
            if data is not None:
                found = self._parse_data(data, fmt, context)
                if found is not None:
                    return found
        if fmt == "syslog":
            found = self._parse_syslog(line, context)
            if found is not None:
                return found
        parser = self.parsers.lines.get(fmt)
        if parser is not None:
            try:
                return _Parsed(parser.parse(line, context), parser.dataset, parser.name)
            except NotMine:
                pass
        return self._detect(line, context, skip=fmt)

    def _detect(self, line: str, context: ParseContext, skip: str) -> _Parsed | None:
        """Try each known line format that sniffs right, then syslog; None if nothing fits."""
        for parser in self.parsers.line_order:
            if parser.name == skip or not parser.sniff(line):
                continue
            try:
                return _Parsed(parser.parse(line, context), parser.dataset, parser.name)
            except NotMine:
                continue
        if skip != "syslog":
            return self._parse_syslog(line, context)
        return None

    def _parse_data(
        self, data: Mapping[str, Any], fmt: str, context: ParseContext
    ) -> _Parsed | None:
        named = self.parsers.data.get(fmt)
        candidates = [named] if named is not None else []
        candidates += [p for p in self.parsers.data_order if p is not named]
        for parser in candidates:
            if not parser.sniff(data):
                continue
            try:
                return _Parsed(parser.parse(data, context), parser.dataset, parser.name)
            except NotMine:
                continue
        return None

    def _parse_syslog(self, line: str, context: ParseContext) -> _Parsed | None:
        try:
            parsed = parse_syslog(line, context.received, context.timezone)
        except RecordError:
            return None
        fragment = _syslog_fragment(parsed, context.timezone)
        dataset = "system.syslog"
        program = (parsed.program or "").split("(", 1)[0].lower()
        parser = self.parsers.programs.get(program)
        if parser is not None:
            specific = parser.parse(parsed, context)
            if specific is not None:
                _merge(fragment, specific)
                dataset = parser.dataset
        return _Parsed(fragment, dataset, "syslog")

    # --- building the event ---------------------------------------------------------------------

    def _base(self, raw: RawRecord) -> dict[str, Any]:
        original = raw.message if raw.message is not None else orjson.dumps(raw.data).decode()
        doc: dict[str, Any] = {
            "v": _EVENT_VERSION,
            "@timestamp": raw.received,
            "event": {"id": raw.id, "kind": "event", "original": original, "created": raw.received},
            "host": {"name": raw.host},
            "agent": {"id": raw.collector.id, "version": raw.collector.version, "type": "socpipe"},
            "organization": {"id": raw.agency.id},
            "labels": {"tier": raw.agency.tier.value},
            "log": {"offset": raw.position},
        }
        if raw.agency.name is not None:
            doc["organization"]["name"] = raw.agency.name
        if raw.source.path:
            doc["log"]["file"] = {"path": raw.source.path}
        if raw.source.port is not None:
            doc["log"]["source"] = {"port": raw.source.port, "type": raw.source.type}
        return doc

    def _document(self, raw: RawRecord, parsed: _Parsed) -> dict[str, Any]:
        doc = self._base(raw)
        original = doc["event"]["original"]
        _merge(doc, parsed.fragment)
        event = doc["event"]
        event.setdefault("dataset", parsed.dataset)
        event.setdefault("module", parsed.dataset.split(".", 1)[0])
        # The record's identity and text are the pipeline's, whatever a parser said.
        event["id"] = raw.id
        event["original"] = original
        self._enrich(doc, raw)
        _finish_time(doc)
        _related(doc)
        return doc

    def _unparsed(self, raw: RawRecord, error: str | None) -> dict[str, Any]:
        doc = self._base(raw)
        doc["event"]["dataset"] = raw.source.format or "unknown"
        doc["message"] = doc["event"]["original"]
        doc["tags"] = [UNPARSED]
        if error:
            doc["error"] = {"message": error}
        self._enrich(doc, raw)
        _finish_time(doc)
        return doc

    def _enrich(self, doc: dict[str, Any], raw: RawRecord) -> None:
        if self.agencies is not None:
            agency = self.agencies.get(raw.agency.id)
            if agency is None:
                doc.setdefault("tags", []).append("unknown_agency")
            else:
                doc["organization"]["name"] = agency.name
                doc["labels"]["tier"] = agency.tier.value
                if agency.tier.value != raw.agency.tier.value:
                    doc.setdefault("tags", []).append("agency_tier_mismatch")
        scopes: dict[str, str] = {}
        for side in ("source", "destination"):
            ip = (doc.get(side) or {}).get("ip")
            if isinstance(ip, str):
                scopes[side] = address_scope(ip)
        if scopes:
            doc.setdefault("socpipe", {})["address_scope"] = scopes
            if len(scopes) == 2 and "direction" not in doc.get("network", {}):
                doc.setdefault("network", {})["direction"] = _direction(
                    scopes["source"], scopes["destination"]
                )
        if self.assets is not None:
            host = doc.get("host") or {}
            entry = self.assets.for_host(host.get("name"))
            criticality = entry.criticality if entry else None
            if criticality is None:
                for side in ("destination", "source"):
                    net = self.assets.for_address((doc.get(side) or {}).get("ip"))
                    if net is not None:
                        criticality = net.criticality
                        break
            criticality = criticality or self.assets.default
            if criticality:
                doc["host"].setdefault("asset", {})["criticality"] = criticality


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _syslog_fragment(line: SyslogLine, zone: str) -> Fragment:
    fragment: Fragment = {
        "@timestamp": line.timestamp,
        "message": line.message,
        "event": {},
    }
    process: dict[str, Any] = {}
    if line.program is not None:
        process["name"] = line.program
    if line.pid is not None:
        process["pid"] = line.pid
    if process:
        fragment["process"] = process
    if line.hostname:
        fragment["host"] = {"name": line.hostname, "hostname": line.hostname}
    if line.zone_assumed:
        fragment["event"]["timezone"] = zone
    if line.priority is not None and line.priority < 192:
        facility, severity = line.priority >> 3, line.priority & 7
        syslog: dict[str, Any] = {
            "priority": line.priority,
            "facility": {"code": facility, "name": _SYSLOG_FACILITIES[facility]},
            "severity": {"code": severity, "name": _SYSLOG_SEVERITIES[severity]},
        }
        if line.msgid:
            syslog["msgid"] = line.msgid
        fragment["log"] = {"syslog": syslog}
    return fragment


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    """Deep-merge ``top`` into ``base``; None values in ``top`` do not erase what is there.

    A part of ``top`` that ``base`` lacks is taken as it is, not copied: parsers build their
    fragments fresh per event, and must leave None out of them (``put`` does), which the
    normalizer's tests check by comparing each document with its validated event.
    """
    for key, value in top.items():
        if value is None:
            continue
        current = base.get(key)
        # type() first: isinstance against the Mapping ABC is slow, and fragments hold dicts.
        if type(current) is dict and (type(value) is dict or isinstance(value, Mapping)):
            _merge(current, value)
        else:
            base[key] = value


def _finish_time(doc: dict[str, Any]) -> None:
    """``@timestamp`` in UTC; the source's own offset kept in ``event.timezone`` if none is."""
    stamp = doc.get("@timestamp")
    if not isinstance(stamp, datetime) or stamp.tzinfo is None:
        doc["@timestamp"] = doc["event"]["created"]
        return
    offset = stamp.utcoffset()
    if offset is not None and "timezone" not in doc["event"]:
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        doc["event"]["timezone"] = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    doc["@timestamp"] = stamp.astimezone(UTC)


def _related(doc: dict[str, Any]) -> None:
    related: dict[str, list[str]] = doc.get("related") or {}
    ips = related.setdefault("ip", [])
    for side in ("source", "destination", "client", "server"):
        ip = (doc.get(side) or {}).get("ip")
        if isinstance(ip, str) and ip not in ips:
            ips.append(ip)
    users = related.setdefault("user", [])
    user = doc.get("user") or {}
    for name in (
        user.get("name"),
        (user.get("effective") or {}).get("name"),
        (user.get("target") or {}).get("name"),
        ((doc.get("source") or {}).get("user") or {}).get("name"),
    ):
        if isinstance(name, str) and name and name not in users:
            users.append(name)
    hosts = related.setdefault("hosts", [])
    host = (doc.get("host") or {}).get("name")
    if isinstance(host, str) and host not in hosts:
        hosts.append(host)
    doc["related"] = {key: values for key, values in related.items() if values}


def _direction(source: str, destination: str) -> str:
    inside = {"private", "loopback", "link_local"}
    if source in inside and destination in inside:
        return "internal"
    if source in inside:
        return "outbound"
    if destination in inside:
        return "inbound"
    return "external"
