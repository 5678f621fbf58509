"""Settings for every socpipe process, read once at start.

Sources, highest first: keyword arguments, environment variables with the ``SOCPIPE_`` prefix
(nested keys joined by ``__``, as in ``SOCPIPE_KAFKA__BOOTSTRAP_SERVERS``), then the YAML file
named by ``SOCPIPE_CONFIG`` or ``--config``, then defaults. Every model forbids unknown keys, so a
misspelt key fails at start with its path (``kafka.topics.rw``) instead of being ignored.
Secrets are ``SecretStr``: they never appear in a repr, a log line or ``model_dump``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from socpipe.errors import ConfigError


def read_secret_file(path: Path, key: str) -> str:
    """The secret in ``path`` (its text, surrounding whitespace dropped); ConfigError naming
    ``key`` if it cannot be read, is not text, or is empty."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not text") from exc
    if not secret:
        raise ConfigError(f"{key}: {path} is empty")
    return secret


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name like Asia/Ho_Chi_Minh)"
        ) from exc
    return value


def _split_commas(value: Any) -> Any:
    """A list from "a,b,c" (how the environment gives one), else the value as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list of strings that an environment variable gives as "host:port,host:port" (not JSON).
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(StrEnum):
    """The two tiers of the local government."""

    PROVINCE = "province"
    COMMUNE = "commune"


class TopicSpec(_Section):
    """How one topic is created: partitions, replication and retention."""

    partitions: int = Field(default=3, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    cleanup_policy: Literal["delete", "compact"] = "delete"
    # Largest record the topic takes (Kafka's max.message.bytes); None: the broker's default.
    max_message_bytes: int | None = Field(default=None, ge=1024)


class Topics(_Section):
    """Topic names of ARCHITECTURE.md; a test run can give them a prefix of its own."""

    raw: str = "soc.raw"
    events: str = "soc.events"
    detections: str = "soc.detections"
    dlq: str = "soc.dlq"
    correlate: str = "soc.correlate"
    rules: str = "soc.rules"
    models: str = "soc.models"
    heartbeats: str = "soc.heartbeats"

    def all(self) -> dict[str, str]:
        """Logical name to topic name."""
        return dict(self.model_dump())


def _default_topic_specs() -> dict[str, TopicSpec]:
    return {
        # A record of a 1 MiB line of binary garbage is several MiB of JSON (escapes, and the
        # exact bytes in base64): raw messages may be large.
        "raw": TopicSpec(partitions=6, max_message_bytes=16 * 1024 * 1024),
        "events": TopicSpec(partitions=6),
        "detections": TopicSpec(partitions=3),
        "dlq": TopicSpec(partitions=1, retention_ms=30 * 24 * 3600 * 1000),
        # Correlators rebuild their state by replaying it: as long as the longest timespan
        # (new_value histories of 30 days) and a margin.
        "correlate": TopicSpec(partitions=6, retention_ms=35 * 24 * 3600 * 1000),
        # One record, the rule-set bundle in force: a SigmaHQ checkout zips to about 3 MB.
        "rules": TopicSpec(
            partitions=1, retention_ms=-1, cleanup_policy="compact", max_message_bytes=40 << 20
        ),
        # The anomaly models in force, one record per model name (a skops file of a few MB).
        "models": TopicSpec(
            partitions=1, retention_ms=-1, cleanup_policy="compact", max_message_bytes=64 << 20
        ),
        "heartbeats": TopicSpec(partitions=1, retention_ms=3 * 24 * 3600 * 1000),
    }


class KafkaSettings(_Section):
    """How every stage reaches Kafka. TLS and SASL are off locally, on in production."""

    bootstrap_servers: CommaList = Field(default_factory=lambda: ["127.0.0.1:9092"], min_length=1)
    client_id: str = "socpipe"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # Read at start when set (a file only root and the collector's user can read).
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    compression: Literal["none", "gzip", "lz4", "zstd"] = "lz4"
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    topics: Topics = Topics()
    topic_specs: dict[str, TopicSpec] = Field(default_factory=_default_topic_specs)

    @field_validator("topic_specs")
    @classmethod
    def _known_topics(cls, value: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
        unknown = sorted(set(value) - set(Topics.model_fields))
        if unknown:
            raise ValueError(
                f"unknown topic {', '.join(unknown)}; known: {', '.join(Topics.model_fields)}"
            )
        return {**_default_topic_specs(), **value}


class ElasticsearchSettings(_Section):
    """How the alerting stage and the API reach Elasticsearch."""

    hosts: CommaList = Field(default_factory=lambda: ["http://127.0.0.1:9200"], min_length=1)
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout_s: float = Field(default=30.0, gt=0)
    index_prefix: str = Field(default="soc", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    index_replicas: int = Field(default=0, ge=0, le=5)


class AgencySettings(_Section):
    """The agency a collector speaks for."""

    id: str = Field(default="demo-agency", pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    tier: Tier = Tier.PROVINCE
    name: str = ""


class TlsServerSettings(_Section):
    """TLS of a listening source: its certificate and key (PEM); with ``client_cafile`` the
    clients must present a certificate signed by that CA."""

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None


class FileSourceSettings(_Section):
    """Files to tail: paths or globs (``/var/log/nginx/*.log``), looked up again every
    ``rescan_s`` so files that appear later are picked up."""

    type: Literal["file"] = "file"
    paths: list[str] = Field(min_length=1)
    format: str = "syslog"
    exclude: list[str] = Field(default_factory=list)
    rescan_s: float = Field(default=10.0, gt=0)


class SyslogSourceSettings(_Section):
    """A syslog listener: RFC 3164 or 5424 over UDP, TCP or TLS (octet-counting or newline
    framing, detected per frame)."""

    type: Literal["syslog"] = "syslog"
    protocol: Literal["udp", "tcp", "tls"] = "udp"
    bind: str = "0.0.0.0"  # noqa: S104 - a syslog receiver listens for the machines it serves
    port: int = Field(default=514, ge=0, le=65535)
    format: str = "syslog"
    tls: TlsServerSettings | None = None
    max_frame_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_connections: int = Field(default=256, ge=1)

    @model_validator(mode="after")
    def _tls_matches_protocol(self) -> Self:
        if (self.protocol == "tls") != (self.tls is not None):
            raise ValueError("protocol tls needs tls (certfile, keyfile); tls needs protocol tls")
        return self


class EvtxSourceSettings(_Section):
    """Windows event logs: .evtx files, and folders watched for new .evtx files."""

    type: Literal["evtx"] = "evtx"
    paths: list[str] = Field(min_length=1)
    format: str = "winlog.evtx"
    rescan_s: float = Field(default=10.0, gt=0)


class HttpToken(_Section):
    """A client of the HTTP source: a name (recorded on its records) and its bearer token,
    given inline (from the environment) or in a file."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    token: SecretStr | None = Field(default=None, min_length=16)
    token_file: Path | None = None


class HttpSourceSettings(_Section):
    """HTTP JSON ingest: POST one object, an array, or NDJSON (optionally gzip) with a bearer
    token of one of ``tokens``."""

    type: Literal["http"] = "http"
    bind: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    path: str = "/ingest"
    format: str = "auto"
    tls: TlsServerSettings | None = None
    tokens: list[HttpToken] = Field(min_length=1)
    # Below the raw topic's message limit, so one object always fits in a Kafka message.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=15 * 1024 * 1024)
    max_connections: int = Field(default=64, ge=1)


SourceSettings = Annotated[
    FileSourceSettings | SyslogSourceSettings | EvtxSourceSettings | HttpSourceSettings,
    Field(discriminator="type"),
]


class SpoolSettings(_Section):
    """The disk spool that holds batches while Kafka is away: bounded, drained in order."""

    # Default: ``spool-<collector id>`` beside the checkpoint file (one spool per collector:
    # a spool directory is locked by the collector that uses it).
    dir: Path | None = None
    # At least 64 MiB: a single message (one record of a long line of binary garbage) may be
    # several MiB.
    max_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024 * 1024)
    segment_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)


class CollectorSettings(_Section):
    """One collector process: who it is, what it reads, how it ships, where it keeps state.

    ``paths`` and ``format`` are a shorthand for one file source."""

    id: str = Field(default="collector-1", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    host: str = Field(default_factory=lambda: os.uname().nodename)
    paths: list[Path] = Field(default_factory=list)
    format: str = "syslog"
    sources: list[SourceSettings] = Field(default_factory=list)
    checkpoint_file: Path = Path("socpipe-checkpoints.json")
    # Acknowledged positions are saved at most this often (and on stop): a crash re-reads at
    # most this much again (same ids); an fsync per batch would cost more than the reading.
    checkpoint_interval_s: float = Field(default=1.0, ge=0, le=60)
    spool: SpoolSettings = SpoolSettings()
    # Records and bytes per Kafka message: large batches are what lets one core ship 600,000
    # lines a second (bench/collector_throughput.py); a quiet file sends what it has at once.
    batch_size: int = Field(default=8000, ge=1, le=100_000)
    batch_max_bytes: int = Field(default=2 * 1024 * 1024, ge=64 * 1024, le=15 * 1024 * 1024)
    max_line_bytes: int = Field(default=1024 * 1024, ge=1024, le=32 * 1024 * 1024)
    # Idle wait of file and .evtx sources at their end: part of every alert's latency.
    poll_interval_s: float = Field(default=0.25, gt=0)
    heartbeat_interval_s: float = Field(default=30.0, gt=0)
    # How long a batch may wait for Kafka's acknowledgement before it goes to the spool.
    ack_timeout_s: float = Field(default=10.0, gt=0)
    # The raw topic is ``<kafka.topics.raw>.<agency id>``: an agency's credential may write only
    # its own topic. Off only for a collector inside the SOC writing soc.raw itself.
    agency_topic: bool = True


class FormatOptions(_Section):
    """Options of one log format: an nginx/Apache ``log_format``, or the zone of its timestamps
    when they carry none (overrides ``detector.syslog_timezone`` for that format)."""

    log_format: str | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else _zone(value)


class DetectorSettings(_Section):
    """The detector worker: consumer group, batch size, parsing and enrichment."""

    group_id: str = "socpipe-detectors"
    # This detector's name in `socpipe rules status` (several share a group).
    id: str = Field(default_factory=lambda: f"detector-{os.uname().nodename}-{os.getpid()}")
    # Kafka messages per poll; a collector's message holds up to collector.batch_size records.
    batch_size: int = Field(default=10, ge=1)
    syslog_timezone: str = "Asia/Ho_Chi_Minh"
    # The agency registry and asset list (deploy/config/*.yaml is a sample province).
    agencies_file: Path | None = None
    assets_file: Path | None = None
    # Per-format options, by format name: {"nginx.access": {"log_format": "..."}}.
    formats: dict[str, FormatOptions] = Field(default_factory=dict)
    # Sigma rule files or folders the detector runs (none: only the built-in check).
    rules_paths: list[Path] = Field(default_factory=list)
    # Values of Sigma placeholders (``%admin_workstations%`` in ``|expand`` values) for this
    # deployment; a rule with a placeholder not given here is reported and not run.
    placeholders: dict[str, list[str]] = Field(default_factory=dict)
    # Port of the Prometheus metrics endpoint; 0 turns it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("syslog_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)


LevelName = Literal["informational", "low", "medium", "high", "critical"]


class AnomalySettings(_Section):
    """The anomaly scorer (``socpipe anomaly``): which models run comes from ``soc.models``
    (``socpipe model publish``); these say how windows close and what a detection is."""

    group_id: str = "socpipe-anomaly"
    # This scorer's name in `socpipe model status`.
    id: str = Field(default_factory=lambda: f"anomaly-{os.uname().nodename}-{os.getpid()}")
    # ECS events per poll.
    batch_size: int = Field(default=2000, ge=1)
    # A window is judged once its agency's latest event time is this far past its end: events
    # up to this late still count; later ones, for a window already judged, are dropped (and
    # counted in the log).
    lateness_s: int = Field(default=300, ge=0, le=24 * 3600)
    # A window whose end has passed on the wall clock (by lateness_s) is judged without
    # waiting for a later event once its agency has sent nothing for this long.
    idle_s: int = Field(default=300, ge=10)
    # At most this many windows open at once (all models): beyond it a new entity's window is
    # not opened until others close (a scan from a hundred thousand addresses would otherwise
    # hold them all in memory); the count of events left out is logged.
    max_windows: int = Field(default=500_000, ge=1000)
    severity: LevelName = "medium"
    # The model names this scorer runs (none: every model in force), to share models out
    # between scorers, each with a group_id of its own.
    models: list[str] = Field(default_factory=list)
    # Port of the Prometheus metrics endpoint on 127.0.0.1; 0 turns it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)


Language = Literal["vi", "en"]
EntityName = Literal["host", "user", "source_ip"]


class AlertPolicy(_Section):
    """How detections of some rules or agencies fold into alerts: the first policy that
    matches a detection applies (no policy: ``dedup_window_s`` and the detector's key).

    ``rules`` (rule ids) and ``agencies`` empty match all. ``window_s``: detections of one key
    within one window of this length (aligned to the epoch) are one alert with a count.
    ``entity``: which entities make the key with rule and agency (None: the detector's key,
    which is the host for rules and the group for correlations)."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    rules: list[str] = Field(default_factory=list)
    agencies: list[str] = Field(default_factory=list)
    window_s: int = Field(default=3600, ge=1, le=31 * 86400)
    entity: list[EntityName] | None = None


class WebhookChannel(_Section):
    """POST JSON to ``url``; with a secret, ``X-Socpipe-Signature: sha256=<hex HMAC>`` of the
    body and ``X-Socpipe-Timestamp``."""

    type: Literal["webhook"] = "webhook"
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = Field(default=None, min_length=16)
    secret_file: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class EmailChannel(_Section):
    """Mail over SMTP: STARTTLS (``starttls``), implicit TLS (``tls``) or plain (local relays)."""

    type: Literal["email"] = "email"
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    recipients: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=15.0, gt=0)


class TelegramChannel(_Section):
    """A Telegram bot's sendMessage to one chat; ``api_url`` is Telegram's unless a test or a
    relay stands in for it."""

    type: Literal["telegram"] = "telegram"
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    api_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://")
    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    chat_id: str
    timeout_s: float = Field(default=10.0, gt=0)


NotificationChannel = Annotated[
    WebhookChannel | EmailChannel | TelegramChannel, Field(discriminator="type")
]


class NotificationRoute(_Section):
    """Which new alerts go to which channels, in which language. Empty lists match all."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    channels: list[str] = Field(min_length=1)
    min_severity: LevelName = "high"
    agencies: list[str] = Field(default_factory=list)
    tiers: list[Tier] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    language: Language = "vi"


class NotificationSettings(_Section):
    """Notifications of new alerts. Per channel, at most ``rate_per_minute`` messages; what is
    over the rate waits for the channel's next digest (every ``digest_interval_s``), so a storm
    sends one message, not thousands. ``console_url`` links each alert."""

    enabled: bool = True
    channels: list[NotificationChannel] = Field(default_factory=list)
    routes: list[NotificationRoute] = Field(default_factory=list)
    rate_per_minute: int = Field(default=6, ge=1)
    digest_interval_s: int = Field(default=300, ge=10)
    console_url: str | None = None
    timezone: str = "Asia/Ho_Chi_Minh"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="after")
    def _routes_name_channels(self) -> Self:
        names = [channel.name for channel in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        for route in self.routes:
            unknown = sorted(set(route.channels) - set(names))
            if unknown:
                raise ValueError(f"route {route.name!r} names unknown channels {unknown}")
        return self


class RetentionSettings(_Section):
    """Days each index family is kept (whole days; the local Elasticsearch has no ILM)."""

    alerts_days: int = Field(default=365, ge=1)
    events_days: int = Field(default=30, ge=1)
    audit_days: int = Field(default=730, ge=1)
    completeness_days: int = Field(default=400, ge=1)
    interval_s: int = Field(default=3600, ge=60)


class AlertingSettings(_Section):
    """The alerting worker: consumer groups, batch sizes, how detections fold into alerts,
    notifications and index retention."""

    group_id: str = "socpipe-alerting"
    batch_size: int = Field(default=500, ge=1)
    dedup_window_s: int = Field(default=3600, ge=1)
    policies: list[AlertPolicy] = Field(default_factory=list)
    # A second consumer group indexes soc.events into <prefix>-events-* for hunting.
    index_events: bool = True
    events_group_id: str = "socpipe-events-indexer"
    events_batch_size: int = Field(default=2000, ge=1)
    notifications: NotificationSettings = NotificationSettings()
    retention: RetentionSettings = RetentionSettings()


class Role(StrEnum):
    """What an API caller may do; enforced on the server (``api/security.py`` has the matrix).

    soc_admin: everything, users and enrollment included; rule_author: rules and exceptions,
    reading alerts; analyst: triage (alerts, cases), reading rules and collectors;
    agency_viewer: reading its own agency's alerts, stats and collectors; collector: ingest only.
    """

    SOC_ADMIN = "soc_admin"
    RULE_AUTHOR = "rule_author"
    ANALYST = "analyst"
    AGENCY_VIEWER = "agency_viewer"
    COLLECTOR = "collector"


SCOPED_ROLES: Final = frozenset({Role.AGENCY_VIEWER, Role.COLLECTOR})


class ApiToken(_Section):
    """An API key for automation: a name (recorded in the audit trail), the key, its role and,
    for agency_viewer and collector, the one agency it speaks for."""

    name: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    token: SecretStr
    role: Role = Role.ANALYST
    agency: str | None = None

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("a token needs at least 16 characters")
        return value

    @model_validator(mode="after")
    def _scoped(self) -> Self:
        if self.role in SCOPED_ROLES and not self.agency:
            raise ValueError(f"a {self.role.value} key needs its agency")
        return self


class OidcSettings(_Section):
    """Sign-in through the province's identity provider (OpenID Connect): the console sends the
    provider's ID token to ``POST /auth/oidc``; its signature is checked against the issuer's
    keys (``jwks_uri``, else found by discovery), and its claims give the user's name, role
    (``role_claim``, mapped by ``role_map`` from the provider's group names) and agency."""

    issuer: str = Field(pattern=r"^https?://")
    audience: str
    jwks_uri: str | None = Field(default=None, pattern=r"^https?://")
    ca_file: Path | None = None
    username_claim: str = "preferred_username"
    role_claim: str = "roles"
    agency_claim: str = "agency"
    role_map: dict[str, Role] = Field(default_factory=dict)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])


class ApiSettings(_Section):
    """The API process: where it listens, API keys, the signing key of its own tokens, and
    OIDC, CORS and abuse limits."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Processes serving the API (uvicorn workers); more than one needs a jwt_secret, so that
    # every worker accepts the tokens the others issued.
    workers: int = Field(default=1, ge=1, le=32)
    tokens: list[ApiToken] = Field(default_factory=list)
    # Signs access and refresh tokens (HS256). Without one the API makes a random key at start:
    # tokens then die with the process.
    jwt_secret: SecretStr | None = Field(default=None, min_length=32)
    jwt_secret_file: Path | None = None
    access_ttl_s: int = Field(default=900, ge=60, le=86400)
    refresh_ttl_s: int = Field(default=8 * 3600, ge=300, le=30 * 86400)
    oidc: OidcSettings | None = None
    cors_origins: list[str] = Field(default_factory=list)
    signin_per_minute: int = Field(default=10, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Prometheus' credential for GET /metrics: it reads metrics and nothing else.
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    # Where enrolled agencies' collectors connect (the SASL_SSL listener), as
    # POST /collectors/enroll answers; empty: the SOC's hosts with local.kafka_agency_port.
    agency_bootstrap_servers: CommaList = Field(default_factory=list)

    @model_validator(mode="after")
    def _shared_key(self) -> Self:
        if self.workers > 1 and self.jwt_secret is None and self.jwt_secret_file is None:
            raise ValueError("several workers need api.jwt_secret or api.jwt_secret_file")
        return self


class LocalServicesSettings(_Section):
    """Kafka and Elasticsearch for one machine (dev, CI, the demo), run by deploy/local."""

    home: Path | None = None
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    # The agencies' listener: SASL_SSL with SCRAM-SHA-512 (docs/agencies.md).
    kafka_agency_port: int = Field(default=9094, ge=1, le=65535)
    kafka_heap: str = Field(default="768m", pattern=r"^\d+[mg]$")
    es_port: int = Field(default=9200, ge=1, le=65535)
    es_transport_port: int = Field(default=9300, ge=1, le=65535)
    es_heap: str = Field(default="1g", pattern=r"^\d+[mg]$")
    es_user: str = "socpipe-es"
    java_home: Path | None = None
    es_java_home: Path | None = None
    start_timeout_s: float = Field(default=180.0, gt=0)


class Settings(BaseSettings):
    """Everything a socpipe process is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="SOCPIPE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line (time, level, logger, message, and the exception), for
    # journald and log shippers; text: for a terminal.
    log_format: Literal["text", "json"] = "text"
    kafka: KafkaSettings = KafkaSettings()
    elasticsearch: ElasticsearchSettings = ElasticsearchSettings()
    agency: AgencySettings = AgencySettings()
    collector: CollectorSettings = CollectorSettings()
    detector: DetectorSettings = DetectorSettings()
    anomaly: AnomalySettings = AnomalySettings()
    alerting: AlertingSettings = AlertingSettings()
    api: ApiSettings = ApiSettings()
    local: LocalServicesSettings = LocalServicesSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings() adds the YAML file below the environment.
        return (init_settings, env_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    return data


_SECRET_WORDS: Final = ("secret", "password", "token", "api_key")


def _secretive(value: Any) -> bool:
    """Whether a value holds a secret somewhere (a mapping with a secret-like key)."""
    if isinstance(value, dict):
        return any(
            any(word in str(key) for word in _SECRET_WORDS) or _secretive(item)
            for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        return any(_secretive(item) for item in value)
    return False


def _describe(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown key")
        else:
            # Neither a secret field's value nor a mapping that holds one (a whole channel
            # with its token, when its name is missing) is shown.
            hidden = any(word in path for word in _SECRET_WORDS) or _secretive(error.get("input"))
            shown = "" if hidden else f" (got {error.get('input')!r})"
            lines.append(f"  {path}: {error['msg']}{shown}")
    return "\n".join(lines)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from ``config`` (or ``$SOCPIPE_CONFIG``), the environment and overrides.

    Raises ConfigError naming every bad key's path.
    """
    env_path = os.environ.get("SOCPIPE_CONFIG")
    path = config or (Path(env_path) if env_path else None)
    file_values = _read_yaml(path) if path else {}
    origin = f"{path} and SOCPIPE_* environment" if path else "SOCPIPE_* environment"

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            yaml_source = InitSettingsSource(settings_cls, init_kwargs=file_values)
            return (init_settings, env_settings, yaml_source)

    try:
        return _Loaded(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from exc
    except SettingsError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"invalid configuration ({origin}): {exc}{cause}") from exc
