"""``/collectors``: the registry of collectors from their heartbeats, completeness, enrollment and
revocation, each confined to what the caller's role and agency allow."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka.errors import KafkaTimeoutError

from alerting.completeness import (
    CompletenessAggregator,
    InMemoryCollectorStore,
    InMemoryCompletenessSink,
    collector_states,
)
from alerting.store import InMemoryAlertStore
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.routes.collectors import InMemoryAgencyProvisioner
from api.users import InMemoryUserStore
from socpipe.agencies import AgencyError, ProvisionResult, RevokeResult
from socpipe.records import HEARTBEAT_KIND, KIND_HEADER
from socpipe.settings import Settings, load_settings
from tests.support.factories import collector_heartbeat

REGISTRY = Path(__file__).resolve().parents[3] / "deploy" / "config" / "agencies.yaml"
ADMIN = "admin-key-0123456789abcdef"
ANALYST = "analyst-key-0123456789abcdef"
VIEWER = "viewer-key-0123456789abcdef"
COLLECTOR = "collector-key-0123456789abcdef"
TAI_CHINH, PHUC_XA = "so-tai-chinh", "phuong-phuc-xa"


@dataclass(frozen=True)
class Msg:
    """What the aggregator reads of a kafka-python record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ((KIND_HEADER, HEARTBEAT_KIND),)


class Heartbeats:
    """soc.heartbeats as a list."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []

    def beat(self, agency: str, collector: str, at: float, **extra: Any) -> None:
        sources = [
            {"name": "file:/var/log/auth.log", "read": 12, "sent": 12, "lag": 0},
            {
                "name": "syslog:udp:0.0.0.0:514",
                "read": 7,
                "sent": 5,
                "dropped": 2,
                "last_error": "Nhật ký đầy: 2 bản ghi bị bỏ",
                "last_error_at": "2026-11-20T08:00:00+07:00",
            },
        ]
        moment = datetime.fromtimestamp(at, UTC)
        beat = collector_heartbeat(
            agency, collector, moment, started=moment - timedelta(seconds=600), sources=sources,
            **extra,
        )  # fmt: skip
        key = f"collector/{agency}/{collector}".encode()
        offset = len(self.messages)
        msg = Msg("soc.heartbeats", 0, offset, key, orjson.dumps(beat), int(at * 1000))
        self.messages.append(msg)


def make_settings(**api: Any) -> Settings:
    tokens = [
        {"name": "admin", "token": ADMIN, "role": "soc_admin"},
        {"name": "an", "token": ANALYST, "role": "analyst"},
        {"name": "tc-viewer", "token": VIEWER, "role": "agency_viewer", "agency": TAI_CHINH},
        {"name": "tc-http", "token": COLLECTOR, "role": "collector", "agency": TAI_CHINH},
    ]
    return load_settings(api={"tokens": tokens, **api}, detector={"agencies_file": str(REGISTRY)})


@pytest.fixture
def sink() -> InMemoryCompletenessSink:
    now = time.time()
    topic = Heartbeats()
    topic.beat(TAI_CHINH, "tc-01", now - 600)
    topic.beat(TAI_CHINH, "tc-01", now - 5)  # heard: not silent
    topic.beat(TAI_CHINH, "tc-02", now - 600)  # silent for 20 intervals
    topic.beat(PHUC_XA, "px-01", now - 600, stopping=True)  # stopped on purpose
    topic.beat("so-khong-co", "x-01", now - 5)  # an agency the registry does not know
    sink = InMemoryCompletenessSink()
    sink.write(CompletenessAggregator().fold(topic.messages))
    sink.write_collectors(collector_states(topic.messages))
    return sink


@pytest.fixture
def audit() -> InMemoryAuditLog:
    return InMemoryAuditLog()


@pytest.fixture
def provisioner() -> InMemoryAgencyProvisioner:
    return InMemoryAgencyProvisioner(make_settings().kafka)


@pytest.fixture
def client(
    sink: InMemoryCompletenessSink, audit: InMemoryAuditLog, provisioner: InMemoryAgencyProvisioner
) -> TestClient:
    app = create_app(
        make_settings(), store=InMemoryAlertStore(), users=InMemoryUserStore(), audit=audit
    )
    app.state.collector_store = InMemoryCollectorStore(sink)
    app.state.provisioner = provisioner
    app.state.agency_bootstrap = ["soc-kafka.tinh-mau.gov.vn:9094"]
    return TestClient(app)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the registry -----------------------------------------------------------------------------


def test_the_registry_lists_every_collector_with_the_socs_names_and_who_is_silent(
    client: TestClient,
) -> None:
    body = client.get("/collectors", headers=auth(ANALYST)).json()
    found = {(c["agency"], c["collector"]): c for c in body["data"]}
    assert set(found) == {
        (TAI_CHINH, "tc-01"),
        (TAI_CHINH, "tc-02"),
        (PHUC_XA, "px-01"),
        ("so-khong-co", "x-01"),
    }
    assert body["total"] == 4 and body["silent"] == 1

    heard = found[TAI_CHINH, "tc-01"]
    assert (heard["agency_name"], heard["tier"], heard["registered"]) == (
        "Sở Tài chính",
        "province",
        True,
    )
    assert heard["silent"] is False and heard["heartbeat_age_s"] < 600
    assert (heard["version"], heard["host"], heard["kafka"]["state"]) == (
        "0.9.1",
        "tc-01.local",
        "up",
    )
    assert found[TAI_CHINH, "tc-02"]["silent"] is True
    stopped = found[PHUC_XA, "px-01"]
    assert stopped["stopping"] is True and stopped["silent"] is False
    assert (stopped["agency_name"], stopped["tier"]) == ("UBND phường Phúc Xá", "commune")
    stranger = found["so-khong-co", "x-01"]
    assert stranger["registered"] is False and stranger["agency_name"] is None

    missing = {agency["id"] for agency in body["agencies_without_collectors"]}
    assert "so-noi-vu" in missing and TAI_CHINH not in missing and PHUC_XA not in missing


def test_the_agencies_are_listed_by_name_for_every_reader_and_scoped_for_an_agency(
    client: TestClient,
) -> None:
    body = client.get("/agencies", headers=auth(ANALYST)).json()
    names = {agency["id"]: (agency["name"], agency["tier"]) for agency in body["data"]}
    assert names[TAI_CHINH] == ("Sở Tài chính", "province")
    assert names[PHUC_XA] == ("UBND phường Phúc Xá", "commune")
    assert body["total"] == len(body["data"]) > 2
    assert [a["id"] for a in body["data"]] == sorted(names)
    own = client.get("/agencies", headers=auth(VIEWER)).json()["data"]
    assert [a["id"] for a in own] == [TAI_CHINH]
    assert client.get("/agencies", headers=auth(COLLECTOR)).status_code == 403
    assert client.get("/agencies").status_code == 401


def test_the_silent_filter(client: TestClient) -> None:
    silent = client.get("/collectors?silent=true", headers=auth(ANALYST)).json()["data"]
    assert [(c["agency"], c["collector"]) for c in silent] == [(TAI_CHINH, "tc-02")]
    heard = client.get("/collectors?silent=false", headers=auth(ANALYST)).json()["data"]
    assert len(heard) == 3


def test_an_agency_viewer_sees_its_own_collectors_only(client: TestClient) -> None:
    body = client.get("/collectors", headers=auth(VIEWER)).json()
    assert {c["agency"] for c in body["data"]} == {TAI_CHINH}
    assert body["agencies_without_collectors"] == []
    assert client.get(f"/collectors?agency={PHUC_XA}", headers=auth(VIEWER)).status_code == 403
    assert client.get(f"/collectors/{PHUC_XA}/px-01", headers=auth(VIEWER)).status_code == 403
    assert client.get(f"/collectors/{PHUC_XA}/px-01", headers=auth(ANALYST)).status_code == 200
    assert client.get("/collectors", headers=auth(COLLECTOR)).status_code == 403
    assert client.get("/collectors").status_code == 401


def test_a_collectors_detail_has_its_sources_counters_and_last_errors(client: TestClient) -> None:
    detail = client.get(f"/collectors/{TAI_CHINH}/tc-01", headers=auth(VIEWER)).json()
    assert detail["topic"] == f"soc.raw.{TAI_CHINH}"
    assert detail["started"] and detail["sent_at"]
    syslog = next(s for s in detail["sources"] if s["name"].startswith("syslog"))
    assert (syslog["read"], syslog["sent"], syslog["dropped"]) == (7, 5, 2)
    assert syslog["last_error"] == "Nhật ký đầy: 2 bản ghi bị bỏ"
    missing = client.get(f"/collectors/{TAI_CHINH}/tc-99", headers=auth(VIEWER))
    assert missing.status_code == 404


# --- completeness -----------------------------------------------------------------------------


def test_completeness_is_served_and_scoped(client: TestClient) -> None:
    now = datetime.now(UTC)
    since = (now - timedelta(hours=2)).isoformat()
    until = (now + timedelta(hours=1)).isoformat()
    params = {"since": since, "until": until}
    rows = client.get("/collectors/completeness", params=params, headers=auth(ANALYST)).json()
    # tc-01 was first heard 10 minutes ago and counted from then: nothing grew since.
    agencies = {row["agency"] for row in rows["data"]}
    assert {TAI_CHINH, PHUC_XA} <= agencies
    assert all("gaps" in row and "collected" in row for row in rows["data"])

    mine = client.get("/collectors/completeness", params=params, headers=auth(VIEWER)).json()
    assert {row["agency"] for row in mine["data"]} == {TAI_CHINH}
    other = {**params, "agency": PHUC_XA}
    assert (
        client.get("/collectors/completeness", params=other, headers=auth(VIEWER)).status_code
        == 403
    )


def test_completeness_ranges_are_bounded_not_refused(client: TestClient) -> None:
    now = datetime.now(UTC)
    backwards = {"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()}
    answer = client.get("/collectors/completeness", params=backwards, headers=auth(ANALYST))
    assert answer.status_code == 200 and answer.json()["data"] == []
    long = {"since": (now - timedelta(days=400)).isoformat(), "until": now.isoformat()}
    body = client.get("/collectors/completeness", params=long, headers=auth(ANALYST)).json()
    assert datetime.fromisoformat(body["until"]) - datetime.fromisoformat(body["since"]) == (
        timedelta(days=31)
    )
    default = client.get("/collectors/completeness", headers=auth(ANALYST)).json()
    span = datetime.fromisoformat(default["until"]) - datetime.fromisoformat(default["since"])
    assert span == timedelta(hours=24)
    assert (
        client.get(
            "/collectors/completeness", params={"until": "0.5"}, headers=auth(ANALYST)
        ).status_code
        == 422
    )


# --- enrollment -------------------------------------------------------------------------------


def test_enrollment_gives_the_credential_once_and_nowhere_else(
    client: TestClient,
    audit: InMemoryAuditLog,
    provisioner: InMemoryAgencyProvisioner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        answer = client.post(
            "/collectors/enroll", json={"agency": "so-noi-vu"}, headers=auth(ADMIN)
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    password = body["password"]
    assert len(password) >= 40 and provisioner.credentials == {"so-noi-vu": password}
    assert body["username"] == "so-noi-vu" and body["agency_name"] == "Sở Nội vụ"
    assert body["topic"] == "soc.raw.so-noi-vu"
    assert body["bootstrap_servers"] == ["soc-kafka.tinh-mau.gov.vn:9094"]
    assert (body["security_protocol"], body["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert body["credential"] == "created"

    (entry,) = audit.entries
    assert entry["target"] == {"type": "agency", "id": "so-noi-vu"}
    assert entry["user"]["name"] == "admin" and entry["event"]["outcome"] == "success"
    assert password not in orjson.dumps(audit.entries).decode()
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "so-noi-vu" in logged and password not in logged


def test_enrolling_again_changes_the_password(
    client: TestClient, provisioner: InMemoryAgencyProvisioner
) -> None:
    first = client.post("/collectors/enroll", json={"agency": PHUC_XA}, headers=auth(ADMIN))
    second = client.post("/collectors/enroll", json={"agency": PHUC_XA}, headers=auth(ADMIN))
    assert second.json()["credential"] == "updated"
    assert first.json()["password"] != second.json()["password"]
    assert provisioner.credentials[PHUC_XA] == second.json()["password"]


def test_an_agency_outside_the_registry_is_not_enrolled(
    client: TestClient, provisioner: InMemoryAgencyProvisioner
) -> None:
    unknown = client.post("/collectors/enroll", json={"agency": "so-gia"}, headers=auth(ADMIN))
    assert unknown.status_code == 422
    assert "not in the SOC's agency registry" in unknown.text
    malformed = client.post("/collectors/enroll", json={"agency": "Sở!"}, headers=auth(ADMIN))
    assert malformed.status_code == 422
    extra = {"agency": "so-noi-vu", "password": "chosen-by-the-caller-0123"}
    assert client.post("/collectors/enroll", json=extra, headers=auth(ADMIN)).status_code == 422
    assert provisioner.credentials == {}


@pytest.mark.parametrize("token", [ANALYST, VIEWER, COLLECTOR])
def test_only_a_soc_admin_enrolls_or_revokes(
    client: TestClient, provisioner: InMemoryAgencyProvisioner, token: str
) -> None:
    for path in ("/collectors/enroll", "/collectors/revoke"):
        answer = client.post(path, json={"agency": TAI_CHINH}, headers=auth(token))
        assert answer.status_code == 403
    assert provisioner.credentials == {}


def test_revoking_removes_the_credential(
    client: TestClient, provisioner: InMemoryAgencyProvisioner, audit: InMemoryAuditLog
) -> None:
    client.post("/collectors/enroll", json={"agency": TAI_CHINH}, headers=auth(ADMIN))
    revoked = client.post("/collectors/revoke", json={"agency": TAI_CHINH}, headers=auth(ADMIN))
    assert revoked.json() == {"agency": TAI_CHINH, "credential_removed": True, "grants_removed": []}
    assert provisioner.credentials == {}
    # An agency gone from the registry can still be revoked.
    gone = client.post("/collectors/revoke", json={"agency": "so-cu"}, headers=auth(ADMIN))
    assert gone.status_code == 200 and gone.json()["credential_removed"] is False
    assert [e["target"]["id"] for e in audit.entries] == [TAI_CHINH, TAI_CHINH, "so-cu"]


class _AwayProvisioner(InMemoryAgencyProvisioner):
    def provision(self, agency_id: str, password: str) -> ProvisionResult:
        try:
            raise KafkaTimeoutError()
        except KafkaTimeoutError as exc:
            raise AgencyError(f"cannot provision agency {agency_id}: {exc}") from exc

    def revoke(self, agency_id: str) -> RevokeResult:
        raise KafkaTimeoutError()


def test_kafka_away_is_a_503_to_try_again(client: TestClient) -> None:
    app: Any = client.app
    app.state.provisioner = _AwayProvisioner()
    for path in ("/collectors/enroll", "/collectors/revoke"):
        answer = client.post(path, json={"agency": TAI_CHINH}, headers=auth(ADMIN))
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "10"


def test_without_a_registry_no_agency_can_be_enrolled() -> None:
    settings = load_settings(api={"tokens": [{"name": "a", "token": ADMIN, "role": "soc_admin"}]})
    app = create_app(
        settings, store=InMemoryAlertStore(), users=InMemoryUserStore(), audit=InMemoryAuditLog()
    )
    client = TestClient(app)
    answer = client.post("/collectors/enroll", json={"agency": TAI_CHINH}, headers=auth(ADMIN))
    assert answer.status_code == 422
    # An app built on the stores' doubles gets doubles here too: nothing reached Kafka.
    assert isinstance(app.state.provisioner, InMemoryAgencyProvisioner)
    assert client.get("/collectors", headers=auth(ADMIN)).json()["data"] == []
