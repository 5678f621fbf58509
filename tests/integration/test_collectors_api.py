"""``/collectors`` and ``/ingest`` on the real Kafka and Elasticsearch: heartbeats on
soc.heartbeats, folded by the watch's aggregator, are what ``GET /collectors`` shows (a silent
collector included); enrollment gives a real SCRAM credential that writes its agency's topic and
appears in neither the audit trail nor the logs; a collector key's ingest lands raw records on
its agency's topic."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from kafka import KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import TopicAuthorizationFailedError
from pydantic import SecretStr

from alerting.completeness import aggregate
from api.app import create_app
from api.routes.ingest import close_raw_sender
from socpipe.agencies import agency_topic, describe_agencies, revoke_agency
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import ensure_topics, make_admin, make_consumer, make_producer
from socpipe.localservices import LocalServices
from socpipe.records import HEARTBEAT_KIND, KIND_HEADER, RawBatch
from socpipe.settings import ApiSettings, ApiToken, KafkaSettings, Role, Settings, load_settings
from tests.support.factories import collector_heartbeat
from tests.support.services import Endpoints

pytestmark = [pytest.mark.elasticsearch, pytest.mark.kafka]

REGISTRY = Path(__file__).resolve().parents[2] / "deploy" / "config" / "agencies.yaml"
ADMIN = "admin-key-0123456789abcdef"
ANALYST = "analyst-key-0123456789abcdef"
COLLECTOR = "collector-key-0123456789abcdef"
OTHER_COLLECTOR = "px-collector-key-0123456789ab"
TAI_CHINH, PHUC_XA = "so-tai-chinh", "phuong-phuc-xa"


def with_api(settings: Settings, registry: Path = REGISTRY) -> Settings:
    """The test's settings with API keys of every kind and the SOC's agency registry."""
    tokens = [
        ApiToken(name="admin", token=SecretStr(ADMIN), role=Role.SOC_ADMIN),
        ApiToken(name="an", token=SecretStr(ANALYST), role=Role.ANALYST),
        ApiToken(name="tc-web", token=SecretStr(COLLECTOR), role=Role.COLLECTOR, agency=TAI_CHINH),
        ApiToken(
            name="px-web", token=SecretStr(OTHER_COLLECTOR), role=Role.COLLECTOR, agency=PHUC_XA
        ),
    ]
    detector = settings.detector.model_copy(update={"agencies_file": registry})
    return settings.model_copy(update={"api": ApiSettings(tokens=tokens), "detector": detector})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def es(pipeline_settings: Settings) -> Iterator[Elasticsearch]:
    client = make_elasticsearch(pipeline_settings.elasticsearch)
    yield client
    prefix = pipeline_settings.elasticsearch.index_prefix
    for family in ("completeness", "collectors"):  # the conftest drops indices, not these
        with contextlib.suppress(Exception):
            client.indices.delete_index_template(name=f"{prefix}-{family}")
    client.close()


@pytest.fixture
def api(pipeline_settings: Settings) -> Iterator[TestClient]:
    """The API on the real services: every store Elasticsearch's, Kafka the test's."""
    app = create_app(with_api(pipeline_settings))
    with TestClient(app) as client:
        yield client
    close_raw_sender(app)


# --- heartbeats → the aggregator → GET /collectors ---------------------------------------------


def beat(agency: str, collector: str, at: datetime, sent: int, **extra: Any) -> bytes:
    source = {
        "name": "file:/var/log/auth.log",
        "read": sent,
        "sent": sent,
        "last_error": "không đọc được /var/log/secure: Permission denied",
        "last_error_at": at.isoformat(),
    }
    return orjson.dumps(
        collector_heartbeat(
            agency,
            collector,
            at,
            started=at - timedelta(seconds=5),
            sources=[source],
            host=f"{collector}.tinh-mau.local",
            **extra,
        )
        | {"spool": {"bytes": 2048, "entries": 1, "max_bytes": 1 << 30}}
    )


def test_heartbeats_folded_by_the_aggregator_are_the_registry(
    pipeline_settings: Settings, es: Elasticsearch, api: TestClient
) -> None:
    settings = pipeline_settings
    ensure_topics(settings.kafka, ["heartbeats"])
    now = datetime.now(UTC)
    long_ago = now - timedelta(minutes=15)  # 30 intervals of 30 s
    beats = [
        (TAI_CHINH, "tc-01", now - timedelta(seconds=40), 0, {}),
        (TAI_CHINH, "tc-01", now, 7, {}),
        (TAI_CHINH, "tc-02", long_ago, 3, {}),  # silent since
        (PHUC_XA, "px-01", long_ago, 2, {"stopping": True}),  # stopped on purpose
        (PHUC_XA, "px-02", now, 1, {"check": True}),  # `collect check`: not a collector
    ]
    producer = make_producer(settings.kafka)
    try:
        for agency, collector, at, sent, extra in beats:
            producer.send(
                settings.kafka.topics.heartbeats,
                key=f"collector/{agency}/{collector}".encode(),
                value=beat(agency, collector, at, sent, **extra),
                headers=[(KIND_HEADER, HEARTBEAT_KIND)],
                # The SOC's time, as a detector passing it on would have set it.
                timestamp_ms=int(at.timestamp() * 1000),
            ).get(timeout=60)
    finally:
        producer.close()

    aggregate(settings, threading.Event(), es, until_end=True)
    prefix = settings.elasticsearch.index_prefix
    es.indices.refresh(index=f"{prefix}-collectors,{prefix}-completeness")

    body = api.get("/collectors", headers=auth(ANALYST)).json()
    found = {(c["agency"], c["collector"]): c for c in body["data"]}
    assert set(found) == {(TAI_CHINH, "tc-01"), (TAI_CHINH, "tc-02"), (PHUC_XA, "px-01")}
    heard, silent = found[TAI_CHINH, "tc-01"], found[TAI_CHINH, "tc-02"]
    stopped = found[PHUC_XA, "px-01"]
    assert (heard["silent"], silent["silent"], stopped["silent"]) == (False, True, False)
    assert body["silent"] == 1
    assert (heard["agency_name"], heard["tier"]) == ("Sở Tài chính", "province")
    assert (stopped["agency_name"], stopped["tier"]) == ("UBND phường Phúc Xá", "commune")
    # The heartbeat's Kafka timestamp (milliseconds), not the collector's clock.
    assert abs(datetime.fromisoformat(heard["last_heartbeat"]) - now) < timedelta(milliseconds=2)
    assert heard["spool"] == {"bytes": 2048, "entries": 1, "max_bytes": 1 << 30}
    assert "so-noi-vu" in {a["id"] for a in body["agencies_without_collectors"]}

    detail = api.get(f"/collectors/{TAI_CHINH}/tc-01", headers=auth(ANALYST)).json()
    (source,) = detail["sources"]
    assert (source["read"], source["sent"]) == (7, 7)
    assert source["last_error"] == "không đọc được /var/log/secure: Permission denied"
    assert api.get(f"/collectors/{PHUC_XA}/px-02", headers=auth(ANALYST)).status_code == 404

    window = {
        "since": (now - timedelta(hours=2)).isoformat(),
        "until": (now + timedelta(hours=1)).isoformat(),
    }
    rows = api.get("/collectors/completeness", params=window, headers=auth(ANALYST)).json()
    collected: dict[str, int] = {}
    for row in rows["data"]:
        collected[row["agency"]] = collected.get(row["agency"], 0) + row["collected"]
    assert collected == {TAI_CHINH: 7 + 3, PHUC_XA: 2}


# --- enrollment: a real SCRAM credential, nowhere but in the answer ----------------------------


@pytest.fixture
def local(endpoints: Endpoints) -> LocalServices:
    """The local services, whose broker has the agencies' SASL_SSL listener."""
    if endpoints.kafka_backend != "local":
        pytest.skip("the agency listener is part of deploy/local's broker only")
    return LocalServices(load_settings().local)


@pytest.fixture
def enrolled_agency(pipeline_settings: Settings, run_id: str) -> Iterator[str]:
    agency = f"so-enroll-{run_id}"
    yield agency
    with contextlib.suppress(Exception):
        revoke_agency(pipeline_settings.kafka, agency)


def agency_kafka(local: LocalServices, answer: dict[str, Any]) -> KafkaSettings:
    """What the agency's collector is configured with, from the enrollment's answer."""
    return KafkaSettings(
        bootstrap_servers=answer["bootstrap_servers"],
        security_protocol=answer["security_protocol"],
        sasl_mechanism=answer["sasl_mechanism"],
        sasl_username=answer["username"],
        sasl_password=SecretStr(answer["password"]),
        ssl_cafile=local.ca_file,
        client_id=f"collector-{answer['username']}",
    )


def test_enrollment_gives_a_working_credential_kept_out_of_the_trail_and_the_logs(
    local: LocalServices,
    pipeline_settings: Settings,
    es: Elasticsearch,
    enrolled_agency: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = tmp_path / "agencies.yaml"
    registry.write_text(
        REGISTRY.read_text(encoding="utf-8")
        + f"  - id: {enrolled_agency}\n    name: Sở Thử nghiệm\n    tier: province\n",
        encoding="utf-8",
    )
    settings = with_api(pipeline_settings, registry)
    ensure_topics(settings.kafka, ["raw"])
    with caplog.at_level(logging.DEBUG), TestClient(create_app(settings)) as client:
        answer = client.post(
            "/collectors/enroll", json={"agency": enrolled_agency}, headers=auth(ADMIN)
        )
        assert answer.status_code == 200, answer.text
        unknown = client.post(
            "/collectors/enroll", json={"agency": f"so-gia-{enrolled_agency}"}, headers=auth(ADMIN)
        )
        assert unknown.status_code == 422
    body = answer.json()
    password = body["password"]
    topic = agency_topic(settings.kafka, enrolled_agency)
    assert (body["username"], body["topic"], body["credential"]) == (
        enrolled_agency,
        topic,
        "created",
    )
    assert body["bootstrap_servers"] == [local.agency_bootstrap]

    # The credential works on the agencies' listener, for its own topic and nothing else.
    producer = make_producer(agency_kafka(local, body))
    try:
        written = producer.send(topic, key=b"k", value=b"from the agency").get(timeout=60)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(settings.kafka.topics.raw, key=b"k", value=b"elsewhere").get(timeout=60)
    finally:
        producer.close()
    assert written.topic == topic

    # The audit trail (Elasticsearch) knows who enrolled which agency, never the credential.
    prefix = settings.elasticsearch.index_prefix
    es.indices.refresh(index=f"{prefix}-audit*")
    trail = es.search(index=f"{prefix}-audit*", query={"match_all": {}}, size=100)["hits"]["hits"]
    entries = [hit["_source"] for hit in trail]
    enrolled = [e for e in entries if e.get("target", {}).get("id") == enrolled_agency]
    assert [e["event"]["outcome"] for e in enrolled] == ["success"]
    assert enrolled[0]["user"]["name"] == "admin"
    assert password not in orjson.dumps(entries).decode()
    # Nor any log line, of any logger, whatever it carried.
    assert caplog.records
    for record in caplog.records:
        assert password not in f"{record.getMessage()} {record.__dict__}"


def test_revoking_through_the_api_removes_the_credential(
    local: LocalServices, pipeline_settings: Settings, enrolled_agency: str, tmp_path: Path
) -> None:
    registry = tmp_path / "agencies.yaml"
    registry.write_text(
        REGISTRY.read_text(encoding="utf-8")
        + f"  - id: {enrolled_agency}\n    name: Sở Thử nghiệm\n    tier: province\n",
        encoding="utf-8",
    )
    settings = with_api(pipeline_settings, registry)
    with TestClient(create_app(settings)) as client:
        client.post("/collectors/enroll", json={"agency": enrolled_agency}, headers=auth(ADMIN))
        assert enrolled_agency in {a.user for a in describe_agencies(settings.kafka)}
        revoked = client.post(
            "/collectors/revoke", json={"agency": enrolled_agency}, headers=auth(ADMIN)
        ).json()
    assert revoked["credential_removed"] is True
    assert len(revoked["grants_removed"]) == 2
    assert enrolled_agency not in {a.user for a in describe_agencies(settings.kafka)}


# --- ingest: a collector key's records on its agency's topic -----------------------------------


def read_all(settings: KafkaSettings, topic: str, group: str) -> list[Any]:
    consumer: KafkaConsumer = make_consumer(settings, group, [topic], consumer_timeout_ms=10_000)
    try:
        return list(consumer)
    finally:
        consumer.close()


def test_ingest_lands_raw_records_on_the_agencys_topic(
    pipeline_settings: Settings, api: TestClient, run_id: str
) -> None:
    kafka = pipeline_settings.kafka
    ensure_topics(kafka, ["raw"])
    topic = agency_topic(kafka, TAI_CHINH)
    spec = kafka.topic_specs["raw"]
    admin = make_admin(kafka)
    try:
        admin.create_topics([NewTopic(topic, spec.partitions, spec.replication_factor)])
    finally:
        admin.close()

    events = [
        {"event": "đăng nhập", "n": 1},
        {"event": "đăng xuất", "n": 2, "agency": "so-noi-vu"},  # stays data
    ]
    lines = b"".join(orjson.dumps(event) + b"\n" for event in events)
    answer = api.post(
        "/ingest",
        content=lines,
        headers={**auth(COLLECTOR), "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 2 and answer.json()["topic"] == topic
    # An agency without its own topic yet: the shared raw topic.
    other = api.post(
        "/ingest",
        content=b'{"n": 3}',
        headers={**auth(OTHER_COLLECTOR), "Content-Type": "application/json"},
    )
    assert other.json()["topic"] == kafka.topics.raw

    (message,) = read_all(kafka, topic, f"read-{run_id}")
    assert (KIND_HEADER, b"raw") in list(message.headers)
    assert message.key == f"{TAI_CHINH}/tc-web".encode()
    records = RawBatch.from_json(message.value).records
    assert [r.data for r in records] == events
    assert {(r.agency.id, r.collector.id, r.source.type, r.source.format) for r in records} == {
        (TAI_CHINH, "tc-web", "http", "json")
    }
    assert [r.id for r in records] == answer.json()["ids"]

    (shared,) = read_all(kafka, kafka.topics.raw, f"read-raw-{run_id}")
    (record,) = RawBatch.from_json(shared.value).records
    assert (record.agency.id, record.agency.tier) == (PHUC_XA, "commune")
