"""``/collectors``: the agencies' collectors as their heartbeats show them, completeness, and the
enrollment of an agency on the SOC's Kafka.

- ``GET /collectors``: every collector heard of (``<prefix>-collectors``, kept by the aggregator
  of ``socpipe watch``), with its agency's name and tier from the SOC's registry
  (``detector.agencies_file``), its last heartbeat and whether it is silent (no heartbeat for
  three of its intervals, and it did not say it was stopping); and the registry's agencies of
  which no collector was heard.
- ``GET /collectors/completeness``: per agency and hour, what each stage handled
  (``alerting.completeness.completeness``).
- ``GET /collectors/{agency}/{collector}``: one collector, with its sources' counters and errors.
- ``POST /collectors/enroll``: provisions an agency of the registry on Kafka (its SCRAM
  credential, its topic ``soc.raw.<agency>``, its two grants; ``socpipe.agencies``) and answers
  the new password, once: it is not kept, logged, nor put in the audit trail (which records the
  agency only). Enrolling again gives a new password (collectors need it on their next
  connection). ``POST /collectors/revoke`` takes the credential and the grants away.

Reads are confined to the caller's agency for an agency_viewer (another agency's filter is a
403); enrollment is soc_admin's alone.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from kafka.errors import KafkaError
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from alerting.completeness import (
    CollectorStore,
    CompletenessRow,
    ElasticsearchCollectorStore,
    InMemoryCollectorStore,
)
from alerting.store import ElasticsearchAlertStore
from api.deps import CollectorsEnroller, CollectorsReader
from detectors.enrich import Agency, AgencyRegistry, Province
from detectors.health import is_silent
from socpipe.agencies import (
    AGENCY_ID,
    AgencyError,
    ProvisionResult,
    RevokeResult,
    agency_topic,
    generate_password,
    provision_agency,
    revoke_agency,
)
from socpipe.agencies import principal as kafka_principal
from socpipe.elastic import make_elasticsearch
from socpipe.settings import KafkaSettings, Settings, Tier

log = logging.getLogger(__name__)

router = APIRouter(prefix="/collectors", tags=["collectors"])

# How far back one completeness request may reach: 31 days of 165 agencies is 120,000 rows.
MAX_COMPLETENESS_SPAN: Final = timedelta(days=31)
# What a completeness range is cut to: the SOC has no counts outside it, and a date near the
# calendar's ends would overflow the arithmetic.
_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
SCRAM_MECHANISM: Final = "SCRAM-SHA-512"
_ISO_DATETIME: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

# --- what the routes use, kept on app.state -----------------------------------------------------

T = TypeVar("T")
_STATE_LOCK = threading.Lock()


def app_service(app: FastAPI, name: str, build: Callable[[Settings, bool], T]) -> T:
    """``app.state.<name>``, built once by ``build(settings, real)`` when absent.

    ``create_app`` does not make these yet; a test sets them. ``real`` is whether the app talks
    to the real services (its alert store is Elasticsearch's): an app built on the stores'
    doubles is a unit test's, and gets doubles here too, never the real Kafka or Elasticsearch.
    """
    found: T | None = getattr(app.state, name, None)
    if found is not None:
        return found
    with _STATE_LOCK:
        found = getattr(app.state, name, None)
        if found is None:
            real = isinstance(getattr(app.state, "store", None), ElasticsearchAlertStore)
            found = build(app.state.settings, real)
            setattr(app.state, name, found)
        return found


class AgencyProvisioner(ABC):
    """Gives an agency its Kafka identity, or takes it away (``socpipe.agencies``)."""

    @abstractmethod
    def provision(self, agency_id: str, password: str) -> ProvisionResult:
        """Set the agency's credential to ``password``, its topic and its grants."""

    @abstractmethod
    def revoke(self, agency_id: str) -> RevokeResult:
        """Remove the agency's credential and grants."""


class KafkaAgencyProvisioner(AgencyProvisioner):
    """On the SOC's broker, over the SOC's own connection."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def provision(self, agency_id: str, password: str) -> ProvisionResult:
        return provision_agency(self.settings, agency_id, password)

    def revoke(self, agency_id: str) -> RevokeResult:
        return revoke_agency(self.settings, agency_id)


class InMemoryAgencyProvisioner(AgencyProvisioner):
    """The test double: the credentials it set, by agency."""

    def __init__(self, settings: KafkaSettings | None = None) -> None:
        self.settings = settings or KafkaSettings()
        self.credentials: dict[str, str] = {}

    def provision(self, agency_id: str, password: str) -> ProvisionResult:
        existed = agency_id in self.credentials
        self.credentials[agency_id] = password
        return ProvisionResult(
            agency_id=agency_id,
            principal=kafka_principal(agency_id),
            topic=agency_topic(self.settings, agency_id),
            topic_created=not existed,
            credential="updated" if existed else "created",
            grants_added=(),
            grants_removed=(),
        )

    def revoke(self, agency_id: str) -> RevokeResult:
        removed = self.credentials.pop(agency_id, None) is not None
        return RevokeResult(agency_id=agency_id, credential_removed=removed, grants_removed=())


def _collector_store(settings: Settings, real: bool) -> CollectorStore:
    if not real:
        return InMemoryCollectorStore()
    es = settings.elasticsearch
    return ElasticsearchCollectorStore(make_elasticsearch(es), es.index_prefix)


def _provisioner(settings: Settings, real: bool) -> AgencyProvisioner:
    return KafkaAgencyProvisioner(settings.kafka) if real else InMemoryAgencyProvisioner()


def _registry(settings: Settings, _real: bool) -> AgencyRegistry:
    path = settings.detector.agencies_file
    if path is None:  # no registry: no agency is known, so none can be enrolled
        return AgencyRegistry(Province(id="-", name="(no agency registry configured)"), [])
    return AgencyRegistry.load(path)


def _agency_bootstrap(settings: Settings, _real: bool) -> list[str]:
    # The agencies' listener (SASL_SSL) on the SOC's brokers: deploy/local puts it on
    # local.kafka_agency_port of the same hosts (docs/agencies.md).
    hosts = [server.rpartition(":")[0] for server in settings.kafka.bootstrap_servers]
    return [f"{host}:{settings.local.kafka_agency_port}" for host in hosts]


def get_collector_store(request: Request) -> CollectorStore:
    """The collectors' states and completeness (``app.state.collector_store``)."""
    return app_service(request.app, "collector_store", _collector_store)


def get_agencies(request: Request) -> AgencyRegistry:
    """The SOC's agency registry (``app.state.agencies``; empty without agencies_file)."""
    return app_service(request.app, "agencies", _registry)


def get_provisioner(request: Request) -> AgencyProvisioner:
    """Who provisions agencies on Kafka (``app.state.provisioner``)."""
    return app_service(request.app, "provisioner", _provisioner)


def get_agency_bootstrap(request: Request) -> list[str]:
    """The address agencies' collectors connect to (``app.state.agency_bootstrap``)."""
    return app_service(request.app, "agency_bootstrap", _agency_bootstrap)


CollectorStoreDep = Annotated[CollectorStore, Depends(get_collector_store)]
AgenciesDep = Annotated[AgencyRegistry, Depends(get_agencies)]
ProvisionerDep = Annotated[AgencyProvisioner, Depends(get_provisioner)]
AgencyBootstrapDep = Annotated[list[str], Depends(get_agency_bootstrap)]

# --- models -------------------------------------------------------------------------------------


def _iso_only(value: Any) -> Any:
    # Pydantic would also take a number as seconds since the epoch; the document promises an
    # ISO 8601 date-time, and a number is more likely a mistake than a time.
    if isinstance(value, str) and not _ISO_DATETIME.match(value):
        raise ValueError("an ISO 8601 date-time with its offset, as 2026-11-20T08:00:00+07:00")
    return value


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


class AgencyPublic(BaseModel):
    """An agency of the SOC's registry."""

    id: str
    name: str
    tier: Tier


class SourcePublic(BaseModel):
    """One source of a collector: its counters and last error, from the last heartbeat."""

    name: str | None = None
    read: int = 0
    sent: int = 0
    spooled: int = 0
    dropped: int = 0
    unreadable: int = 0
    malformed: int = 0
    refused: int = 0
    invalid_utf8: int = 0
    truncated: int = 0
    lag: int = 0
    last_error: str | None = None
    last_error_at: str | None = None  # the collector's clock, as it wrote it


class KafkaStatePublic(BaseModel):
    """Whether the collector reached Kafka at its last heartbeat."""

    state: str | None = None
    error: str | None = None


class SpoolPublic(BaseModel):
    """The collector's disk spool at its last heartbeat."""

    bytes: int = 0
    entries: int = 0
    max_bytes: int = 0


class CollectorPublic(BaseModel):
    """A collector in the registry: who, and what its last heartbeat said."""

    agency: str
    # The SOC's registry's name and tier (the collector's claimed tier if the agency is not in
    # the registry, ``registered`` false).
    agency_name: str | None
    tier: Tier | None
    registered: bool
    collector: str
    version: str | None
    host: str | None
    last_heartbeat: datetime
    heartbeat_age_s: float
    interval_s: float
    stopping: bool
    silent: bool
    kafka: KafkaStatePublic
    spool: SpoolPublic
    queued_bytes: int

    @classmethod
    def from_state(cls, state: dict[str, Any], agency: Agency | None, now: float) -> Self:
        """The public view of a ``<prefix>-collectors`` document (``now``: SOC time, s)."""
        last = datetime.fromisoformat(state["last_heartbeat"])
        interval = float(state["interval_s"])
        stopping = bool(state.get("stopping"))
        claimed = state.get("tier")
        fields: dict[str, Any] = {
            "agency": state["agency"],
            "agency_name": agency.name if agency else None,
            "tier": agency.tier if agency else (Tier(claimed) if claimed in set(Tier) else None),
            "registered": agency is not None,
            "collector": state["collector"],
            "version": state.get("version"),
            "host": state.get("host"),
            "last_heartbeat": last,
            "heartbeat_age_s": round(max(0.0, now - last.timestamp()), 1),
            "interval_s": interval,
            "stopping": stopping,
            "silent": is_silent(last.timestamp(), interval, stopping, now),
            "kafka": KafkaStatePublic(**(state.get("kafka") or {})),
            "spool": SpoolPublic(**(state.get("spool") or {})),
            "queued_bytes": int(state.get("queued_bytes") or 0),
        }
        if issubclass(cls, CollectorDetail):
            fields.update(
                topic=state.get("topic"),
                started=state.get("started"),
                sent_at=state.get("sent_at"),
                sources=[SourcePublic(**source) for source in state.get("sources") or []],
            )
        return cls(**fields)


class CollectorDetail(CollectorPublic):
    """One collector with its sources."""

    topic: str | None = None
    started: str | None = None  # the collector's clock, as it wrote it
    sent_at: str | None = None
    sources: list[SourcePublic] = []


class CollectorsPublic(BaseModel):
    """The collectors, how many are silent, and the registry's agencies never heard of."""

    data: list[CollectorPublic]
    total: int
    silent: int
    agencies_without_collectors: list[AgencyPublic]


class CompletenessPublic(BaseModel):
    """Completeness rows of an hour range (processing time, UTC)."""

    since: datetime
    until: datetime
    data: list[CompletenessRow]


class AgencyRequest(BaseModel):
    """An agency, by its id."""

    model_config = ConfigDict(extra="forbid")

    agency: str = Field(pattern=AGENCY_ID.pattern, description="the agency id, as in agency.id")


class EnrollmentPublic(BaseModel):
    """What an agency's collectors are configured with; the password is shown this once."""

    agency: str
    agency_name: str
    tier: Tier
    username: str
    password: str
    sasl_mechanism: Literal["SCRAM-SHA-512"] = SCRAM_MECHANISM
    security_protocol: Literal["SASL_SSL"] = "SASL_SSL"
    bootstrap_servers: list[str]
    topic: str
    credential: Literal["created", "updated"]
    topic_created: bool


class RevocationPublic(BaseModel):
    """What revoking an agency removed."""

    agency: str
    credential_removed: bool
    grants_removed: list[str]


# --- routes -------------------------------------------------------------------------------------


@router.get("", response_model=CollectorsPublic)
def list_collectors(
    store: CollectorStoreDep,
    agencies: AgenciesDep,
    user: CollectorsReader,
    agency: str | None = None,
    silent: Annotated[bool | None, Query(description="only silent (true) or heard (false)")] = None,
) -> CollectorsPublic:
    """Every collector of every agency (the caller's agency only, for an agency viewer)."""
    scope = user.scope_agency(agency)
    now = time.time()
    collectors = [
        CollectorPublic.from_state(state, agencies.get(state["agency"]), now)
        for state in store.states(scope)
    ]
    heard = {c.agency for c in collectors}
    missing = [
        AgencyPublic(id=a.id, name=a.name, tier=a.tier)
        for a in agencies.agencies.values()
        if a.id not in heard and scope in (None, a.id)
    ]
    if silent is not None:
        collectors = [c for c in collectors if c.silent == silent]
    return CollectorsPublic(
        data=collectors,
        total=len(collectors),
        silent=sum(c.silent for c in collectors),
        agencies_without_collectors=missing,
    )


@router.get("/completeness", response_model=CompletenessPublic)
def read_completeness(
    store: CollectorStoreDep,
    user: CollectorsReader,
    since: Annotated[IsoDateTime | None, Query(description="default: until − 24 h")] = None,
    until: Annotated[IsoDateTime | None, Query(description="default: now")] = None,
    agency: str | None = None,
) -> CompletenessPublic:
    """Per agency and UTC hour, from the hour holding ``since`` to before ``until``: what each
    stage handled and the gaps between them. At most 31 days: an earlier ``since`` is moved
    up (the answer says the range it covers); an empty range has no rows."""
    scope = user.scope_agency(agency)
    end = min(max(until or datetime.now(UTC), _EARLIEST), _LATEST)
    start = since if since is not None else end - timedelta(hours=24)
    start = max(start, end - MAX_COMPLETENESS_SPAN, _EARLIEST)
    if start >= end:
        return CompletenessPublic(since=start, until=end, data=[])
    rows = store.completeness(agency=scope, since=start, until=end)
    return CompletenessPublic(since=start, until=end, data=rows)


@router.get("/{agency}/{collector}", response_model=CollectorDetail)
def read_collector(
    agency: str,
    collector: str,
    store: CollectorStoreDep,
    agencies: AgenciesDep,
    user: CollectorsReader,
) -> CollectorDetail:
    """One collector's last heartbeat, its sources' counters and last errors included."""
    user.scope_agency(agency)
    state = store.state(agency, collector)
    if state is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no collector {collector} of agency {agency}"
        )
    return CollectorDetail.from_state(state, agencies.get(agency), time.time())


@router.post("/enroll", response_model=EnrollmentPublic)
def enroll(
    body: AgencyRequest,
    request: Request,
    response: Response,
    user: CollectorsEnroller,
    agencies: AgenciesDep,
    provisioner: ProvisionerDep,
    bootstrap: AgencyBootstrapDep,
) -> EnrollmentPublic:
    """Provision an agency of the SOC's registry on Kafka and answer its new credential, once.

    An agency enrolled before gets a new password: its collectors need it when they next
    connect. The password is in this answer only (``Cache-Control: no-store``)."""
    # The trail records who enrolled which agency; never the credential.
    request.state.audit = {"target_type": "agency", "target_id": body.agency}
    agency = agencies.get(body.agency)
    if agency is None:
        # Shaped as FastAPI's own validation errors: the agency is a bad value of the body.
        message = f"agency {body.agency} is not in the SOC's agency registry; add it there first"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {"loc": ["body", "agency"], "msg": message, "type": "unknown_agency"},
            ],
        )
    password = generate_password()
    result = _on_kafka(body.agency, "enroll", lambda: provisioner.provision(body.agency, password))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    log.info(
        "agency %s enrolled by %s: credential %s, topic %s",
        agency.id,
        user.name,
        result.credential,
        result.topic,
    )
    return EnrollmentPublic(
        agency=agency.id,
        agency_name=agency.name,
        tier=agency.tier,
        username=agency.id,
        password=password,
        bootstrap_servers=bootstrap,
        topic=result.topic,
        credential=result.credential,
        topic_created=result.topic_created,
    )


@router.post("/revoke", response_model=RevocationPublic)
def revoke(
    body: AgencyRequest,
    request: Request,
    user: CollectorsEnroller,
    provisioner: ProvisionerDep,
) -> RevocationPublic:
    """Take an agency's Kafka credential and grants away; its topic and records stay. Any valid
    agency id: one no longer in the registry must still be revocable."""
    request.state.audit = {"target_type": "agency", "target_id": body.agency}
    result = _on_kafka(body.agency, "revoke", lambda: provisioner.revoke(body.agency))
    log.info(
        "agency %s revoked by %s: credential %s",
        body.agency,
        user.name,
        "removed" if result.credential_removed else "was absent",
    )
    return RevocationPublic(
        agency=body.agency,
        credential_removed=result.credential_removed,
        grants_removed=[str(grant) for grant in result.grants_removed],
    )


def _on_kafka(agency: str, what: str, action: Callable[[], T]) -> T:
    """``action``'s result; 503 (try again) when Kafka is away, 502 when the broker refused."""
    try:
        return action()
    except AgencyError as error:
        away = isinstance(error.__cause__, KafkaError)
        log.warning("cannot %s agency %s: %s", what, agency, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE if away else status.HTTP_502_BAD_GATEWAY,
            detail=f"cannot {what} agency {agency}: {error}",
            headers={"Retry-After": "10"} if away else None,
        ) from error
    except KafkaError as error:  # the admin client could not even connect
        log.warning("cannot %s agency %s: Kafka unreachable: %s", what, agency, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"cannot {what} agency {agency}: Kafka is unreachable ({type(error).__name__})",
            headers={"Retry-After": "10"},
        ) from error


__all__ = [
    "AgencyProvisioner",
    "CollectorDetail",
    "CollectorPublic",
    "CollectorsPublic",
    "EnrollmentPublic",
    "InMemoryAgencyProvisioner",
    "KafkaAgencyProvisioner",
    "app_service",
    "router",
]
