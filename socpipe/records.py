"""Records that cross stage boundaries, as ARCHITECTURE.md fixes them.

Each record is a versioned pydantic model (``v``) serialized as UTF-8 JSON with orjson. Times are
timezone-aware; naive datetimes are refused so that no stage guesses a zone silently.

- ``RawRecord`` / ``RawBatch``: what a collector ships to ``soc.raw``.
- ``EcsEvent``: a parsed event in Elastic Common Schema, on ``soc.events``.
- ``Detection``: what a detector found, on ``soc.detections``.
- ``Alert``: detections grouped by dedup key, as stored in ``soc-alerts-*``.
- ``DeadLetter``: what could not be handled, with stage and reason, on ``soc.dlq``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Self

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from socpipe.errors import RecordError
from socpipe.settings import Tier


def stable_id(*parts: object) -> str:
    """A deterministic 32-hex-digit id from its parts: the same parts give the same id."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(str(part).encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class Record(BaseModel):
    """Base of the records: strict about unknown keys, JSON through orjson."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, field aliases applied, empty fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> bytes:
        """UTF-8 JSON bytes."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str = "") -> Self:
        """Decode and validate; raises RecordError saying what is wrong and where."""
        try:
            return cls.model_validate(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"{where or cls.__name__}: not valid JSON: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(record)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise RecordError(
                f"{where or cls.__name__}: not a valid {cls.__name__} v{cls.VERSION}: {problems}"
            ) from exc

    @model_validator(mode="after")
    def _known_version(self) -> Self:
        version = getattr(self, "v", self.VERSION)
        if version != self.VERSION:
            raise ValueError(f"{type(self).__name__} version {version} is not {self.VERSION}")
        return self


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- raw records -------------------------------------------------------------------------------


class AgencyRef(_Part):
    """The agency a record speaks for."""

    id: str
    tier: Tier
    name: str | None = None


class CollectorRef(_Part):
    """The collector that read a record."""

    id: str
    version: str


class SourceRef(_Part):
    """Where a collector read a record."""

    type: Literal["file", "syslog", "evtx", "http", "socpipe"]
    path: str | None = None
    port: int | None = None
    format: str
    # Where a pushed record came from: the sending address of a syslog frame, the client of an
    # HTTP request; and how (udp, tcp, tls, http, https) or which token name authenticated it.
    peer: str | None = None
    protocol: str | None = None
    token: str | None = None


class RawRecord(Record):
    """One line or structured record read by a collector."""

    v: int = 1
    id: str
    agency: AgencyRef
    collector: CollectorRef
    host: str
    source: SourceRef
    received: AwareDatetime
    position: int = Field(ge=0)
    message: str | None = None
    data: dict[str, Any] | None = None
    # The exact bytes, base64, when ``message`` had to replace bytes that are not UTF-8.
    raw: str | None = None
    # The full length in bytes of a line shipped cut to the collector's limit.
    truncated: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_payload(self) -> Self:
        if (self.message is None) == (self.data is None):
            raise ValueError("a raw record carries exactly one of message or data")
        return self

    @staticmethod
    def make_id(collector_id: str, source: SourceRef, stream: str, position: int) -> str:
        """Deterministic from collector, source and position, so a replay reproduces it.

        ``stream`` names the instance of the source (a file's device and inode), so that a
        rotated file does not reuse the ids of the one before it. The id is 20 hex digits of a
        digest of collector, source and stream, then the position in (at least) 12 hex digits:
        unique per position, and cheap for a collector to make for every line.
        """
        prefix = stable_id(collector_id, source.type, source.path or source.port, stream)[:20]
        return f"{prefix}{position:012x}"


# The header of every message on soc.raw and soc.raw.<agency>: what its value is, a RawBatch
# (``raw``) or a collector's heartbeat (``heartbeat``, a JSON object the detectors pass on).
KIND_HEADER = "socpipe-kind"
RAW_KIND = b"raw"
HEARTBEAT_KIND = b"heartbeat"


def message_kind(headers: Iterable[tuple[str, bytes]] | None) -> bytes | None:
    """The ``KIND_HEADER`` value among a Kafka message's headers (kafka-python's list of
    (name, value) pairs, or None)."""
    for name, value in headers or ():
        if name == KIND_HEADER:
            return bytes(value)
    return None


class RawBatch(Record):
    """One Kafka message on soc.raw: raw records from one source, in order.

    On the wire a batch may state once, in ``common``, the fields its records share (agency,
    collector, host, source, received, v); each record then carries only its own (id, position,
    message or data, raw, truncated), and a field it carries wins. With ``common.id_prefix``, a
    record without an id gets the prefix and its position in 12 hex digits (``make_id``).
    Decoding merges them, so a ``RawBatch`` always holds whole records. Collectors send file lines
    this way: a third of the bytes per line.
    """

    v: int = 1
    records: list[RawRecord] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _spread_common(cls, data: Any) -> Any:
        if isinstance(data, dict) and "common" in data:
            data = dict(data)
            common = data.pop("common")
            records = data.get("records")
            if not isinstance(common, dict) or not isinstance(records, list):
                raise ValueError("common must be an object and records a list")
            prefix = common.pop("id_prefix", None)
            if prefix is not None and not isinstance(prefix, str):
                raise ValueError("common.id_prefix must be a string")
            merged = []
            for record in records:
                if isinstance(record, dict):
                    record = {**common, **record}
                    position = record.get("position")
                    if prefix is not None and "id" not in record and isinstance(position, int):
                        # As RawRecord.make_id makes it: the stream's prefix, the position.
                        record["id"] = f"{prefix}{position:012x}"
                merged.append(record)
            data["records"] = merged
        return data


# --- ECS events ---------------------------------------------------------------------------------


class _Ecs(BaseModel):
    # ECS has hundreds of fields; the ones we use are typed, others may ride along.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EventFields(_Ecs):
    """ECS ``event.*``."""

    id: str | None = None
    kind: str | None = None
    category: list[str] | None = None
    type: list[str] | None = None
    action: str | None = None
    outcome: Literal["success", "failure", "unknown"] | None = None
    code: str | None = None
    provider: str | None = None
    dataset: str | None = None
    module: str | None = None
    original: str | None = None
    created: AwareDatetime | None = None
    ingested: AwareDatetime | None = None
    timezone: str | None = None


class HostFields(_Ecs):
    """ECS ``host.*``."""

    name: str | None = None
    hostname: str | None = None
    ip: list[str] | None = None


class UserFields(_Ecs):
    """ECS ``user.*``."""

    name: str | None = None
    domain: str | None = None
    id: str | None = None


class EndpointFields(_Ecs):
    """ECS ``source.*`` and ``destination.*``."""

    ip: str | None = None
    port: int | None = None
    domain: str | None = None
    bytes: int | None = None


class ProcessFields(_Ecs):
    """ECS ``process.*``."""

    name: str | None = None
    pid: int | None = None
    executable: str | None = None
    command_line: str | None = None


class OrganizationFields(_Ecs):
    """ECS ``organization.*``: the agency."""

    id: str | None = None
    name: str | None = None


def encode_document(document: Mapping[str, Any]) -> bytes:
    """An event document (``Normalized.document``) as JSON, as ``EcsEvent.to_json`` writes it.

    Times in UTC end in ``Z``, as pydantic writes them; the document must hold no None (the
    normalizer's do not), since ``to_json`` leaves empty fields out.
    """
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


class EcsEvent(Record):
    """A parsed event in Elastic Common Schema; ``event.id`` is the raw record's id."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    v: int = 1
    timestamp: AwareDatetime = Field(alias="@timestamp")
    message: str | None = None
    event: EventFields
    host: HostFields | None = None
    user: UserFields | None = None
    source: EndpointFields | None = None
    destination: EndpointFields | None = None
    process: ProcessFields | None = None
    organization: OrganizationFields | None = None
    labels: dict[str, str] | None = None
    tags: list[str] | None = None
    log: dict[str, Any] | None = None
    related: dict[str, list[str]] | None = None


# --- detections ---------------------------------------------------------------------------------


class Severity(StrEnum):
    """Alert severity, from Sigma's level."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def risk_score(self) -> int:
        """Elastic's customary risk score per severity."""
        return {"informational": 5, "low": 21, "medium": 47, "high": 73, "critical": 99}[self.value]


class DetectorRef(_Part):
    """Which detector judged, and in which version of its rule set."""

    type: Literal["sigma", "correlation", "anomaly", "check"]
    id: str
    version: str


class RuleRef(_Part):
    """The rule that fired."""

    id: str
    title: str
    level: Severity
    tags: list[str] = Field(default_factory=list)
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)


class Entities(_Part):
    """Who and what a detection concerns."""

    agency: str
    tier: Tier | None = None
    host: str | None = None
    user: str | None = None
    source_ip: str | None = None


class AnomalyDetail(_Part):
    """For anomaly detections: the score, the threshold and what drove it.

    Each feature is ``{"feature": name, "value": v, "low": l, "high": h, "weight": w}``: the
    entity's value in the window, the usual range of the training baseline (low to high), and
    its share of the score; the console puts them in words ("failed logons 45, usual 0–2").
    """

    score: float
    threshold: float
    features: list[dict[str, Any]] = Field(default_factory=list)


class Detection(Record):
    """A rule, correlation or model judged one or more events suspicious."""

    v: int = 1
    id: str
    timestamp: AwareDatetime = Field(alias="@timestamp")
    detector: DetectorRef
    rule: RuleRef
    severity: Severity
    risk_score: int = Field(ge=0, le=100)
    entities: Entities
    dedup_key: str
    event_ids: list[str] = Field(min_length=1)
    events: list[dict[str, Any]] = Field(default_factory=list)
    anomaly: AnomalyDetail | None = None


# --- alerts -------------------------------------------------------------------------------------


class AlertStatus(StrEnum):
    """Where an alert stands in triage."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class HistoryEntry(_Part):
    """Who changed what on an alert, and when."""

    at: AwareDatetime
    by: str
    action: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Note(_Part):
    """An analyst's comment."""

    at: AwareDatetime
    by: str
    text: str


class Alert(Record):
    """Detections grouped by dedup key within a window; what analysts triage."""

    v: int = 1
    id: str
    dedup_key: str
    status: AlertStatus = AlertStatus.NEW
    assignee: str | None = None
    verdict: str | None = None
    count: int = Field(ge=1)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    window_start: AwareDatetime
    detector: DetectorRef
    rule: RuleRef
    severity: Severity
    risk_score: int = Field(ge=0, le=100)
    entities: Entities
    detection_ids: list[str] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    # For the anomaly detector's alerts: the most anomalous of its detections' explanations.
    anomaly: AnomalyDetail | None = None
    notes: list[Note] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    # Where the last detection folded in came from: detections of one alert share a key and so
    # a partition of soc.detections, in order; a replayed offset at or below this is skipped.
    source_offset: dict[str, int] = Field(default_factory=dict)


# --- dead letters -------------------------------------------------------------------------------


class DeadLetter(Record):
    """Something a stage could not handle, kept with the reason so it can be replayed."""

    v: int = 1
    id: str
    stage: Literal["collect", "detect", "correlate", "anomaly", "alert", "index"]
    reason: str
    at: AwareDatetime
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    agency: str | None = None
    record_id: str | None = None
    original: str
