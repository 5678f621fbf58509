"""``POST /ingest``: a collector key's JSON, NDJSON or gzip body becomes raw records of its own
agency, on its agency's topic, answered once Kafka acknowledged; bad bodies are refused whole."""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka.errors import KafkaTimeoutError

from alerting.store import InMemoryAlertStore
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.routes import ingest
from api.routes.ingest import InMemoryRawBatchSender
from api.users import InMemoryUserStore
from socpipe.records import RawBatch
from socpipe.settings import load_settings

REGISTRY = Path(__file__).resolve().parents[3] / "deploy" / "config" / "agencies.yaml"
COLLECTOR = "collector-key-0123456789abcdef"
OTHER_COLLECTOR = "px-collector-key-0123456789ab"
ANALYST = "analyst-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
AGENCY = "so-tai-chinh"
LIMIT = 4096


@pytest.fixture
def sender() -> InMemoryRawBatchSender:
    return InMemoryRawBatchSender("soc.raw", topics=[f"soc.raw.{AGENCY}"])


@pytest.fixture
def audit() -> InMemoryAuditLog:
    return InMemoryAuditLog()


@pytest.fixture
def client(sender: InMemoryRawBatchSender, audit: InMemoryAuditLog) -> TestClient:
    settings = load_settings(
        api={
            "tokens": [
                {"name": "tc-web", "token": COLLECTOR, "role": "collector", "agency": AGENCY},
                {
                    "name": "px-web",
                    "token": OTHER_COLLECTOR,
                    "role": "collector",
                    "agency": "phuong-phuc-xa",
                },
                {"name": "an", "token": ANALYST, "role": "analyst"},
                {"name": "admin", "token": ADMIN, "role": "soc_admin"},
            ],
            "max_body_bytes": LIMIT,
        },
        detector={"agencies_file": str(REGISTRY)},
    )
    app = create_app(settings, store=InMemoryAlertStore(), users=InMemoryUserStore(), audit=audit)
    app.state.raw_sender = sender
    return TestClient(app)


def post(
    client: TestClient,
    body: bytes | Iterator[bytes],
    *,
    token: str = COLLECTOR,
    content_type: str = "application/json",
    **headers: str,
) -> Any:
    return client.post(
        "/ingest",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type, **headers},
    )


def records_of(sent: Sequence[tuple[str, bytes, bytes]]) -> list[Any]:
    return [record for _, _, value in sent for record in RawBatch.from_json(value).records]


def test_one_object_becomes_one_raw_record_of_the_keys_agency(
    client: TestClient, sender: InMemoryRawBatchSender, audit: InMemoryAuditLog
) -> None:
    event = {"message": "Đăng nhập thất bại cho nguyễn.văn.a", "agency": {"id": "so-noi-vu"}}
    answer = post(client, orjson.dumps(event))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["accepted"] == 1 and body["topic"] == f"soc.raw.{AGENCY}"

    ((topic, key, _),) = sender.sent
    assert (topic, key) == (f"soc.raw.{AGENCY}", f"{AGENCY}/tc-web".encode())
    (record,) = records_of(sender.sent)
    # The key's agency, whatever the object claims: that stays data.
    assert (record.agency.id, record.agency.tier, record.agency.name) == (
        AGENCY,
        "province",
        "Sở Tài chính",
    )
    assert record.data == event
    assert (record.collector.id, record.host) == ("tc-web", "tc-web")
    assert (record.source.type, record.source.format, record.source.token) == (
        "http",
        "json",
        "tc-web",
    )
    assert body["ids"] == [record.id, record.id]
    (entry,) = audit.entries
    assert entry["target"] == {"type": "topic", "id": f"soc.raw.{AGENCY}"}
    assert entry["detail"] == {"records": 1, "messages": 1}


def test_an_array_and_ndjson_give_one_record_per_object_in_order(
    client: TestClient, sender: InMemoryRawBatchSender
) -> None:
    assert post(client, orjson.dumps([{"n": 0}, {"n": 1}, {"n": 2}])).json()["accepted"] == 3
    lines = b'{"n": 3}\n\n{"n": 4}\r\n{"n": 5}\n'
    assert post(client, lines, content_type="application/x-ndjson").json()["accepted"] == 3
    records = records_of(sender.sent)
    assert [r.data["n"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r.position for r in records] == [0, 1, 2, 0, 1, 2]


def test_gzip_bodies_are_taken(client: TestClient, sender: InMemoryRawBatchSender) -> None:
    body = gzip.compress(b'{"n": 1}\n{"n": 2}\n')
    answer = post(client, body, content_type="application/jsonl", **{"Content-Encoding": "gzip"})
    assert answer.json()["accepted"] == 2


def test_the_same_body_again_gives_the_same_ids(
    client: TestClient, sender: InMemoryRawBatchSender
) -> None:
    body = orjson.dumps([{"n": 1}, {"n": 2}])
    first, again = post(client, body).json(), post(client, body).json()
    assert first["ids"] == again["ids"] and first["ids"][0] != first["ids"][1]
    other = post(client, orjson.dumps([{"n": 1}, {"n": 3}])).json()
    assert other["ids"][0] != first["ids"][0]


def test_without_the_agency_topic_records_go_to_soc_raw(
    client: TestClient, sender: InMemoryRawBatchSender
) -> None:
    answer = post(client, b'{"n": 1}', token=OTHER_COLLECTOR)
    assert answer.json()["topic"] == "soc.raw"
    ((topic, key, _),) = sender.sent
    assert (topic, key) == ("soc.raw", b"phuong-phuc-xa/px-web")
    (record,) = records_of(sender.sent)
    assert (record.agency.id, record.agency.tier) == ("phuong-phuc-xa", "commune")


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        (b'{"n": 1}\n{"n": 2}\n{"n": \n', "application/x-ndjson", {"line": 3}),
        (b'{"n": 1}\n"just text"\n', "application/x-ndjson", {"line": 2}),
        (b'[{"n": 1}, 5]', "application/json", {"index": 1}),
        (b'{\n  "n": 1,\n  "m": }', "application/json", {"line": 3}),
    ],
)
def test_bad_json_is_a_400_naming_where_and_nothing_is_sent(
    client: TestClient,
    sender: InMemoryRawBatchSender,
    body: bytes,
    content_type: str,
    where: dict[str, int],
) -> None:
    answer = post(client, body, content_type=content_type)
    assert answer.status_code == 400
    assert where.items() <= answer.json().items(), answer.json()
    assert sender.sent == []


def test_oversized_bodies_are_a_413_declared_or_chunked(
    client: TestClient, sender: InMemoryRawBatchSender
) -> None:
    big = orjson.dumps([{"pad": "x" * 100}] * 50)
    assert len(big) > LIMIT
    assert post(client, big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the route counts as it reads
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    answer = post(client, chunks())
    assert answer.status_code == 413, answer.text
    bomb = gzip.compress(b'{"pad": "' + b"x" * 100_000 + b'"}')
    assert len(bomb) < LIMIT
    assert post(client, bomb, **{"Content-Encoding": "gzip"}).status_code == 413
    assert sender.sent == []


def test_other_media_types_and_encodings_are_a_415(client: TestClient) -> None:
    assert post(client, b"hello", content_type="text/plain").status_code == 415
    assert post(client, b"{}", **{"Content-Encoding": "br"}).status_code == 415
    assert post(client, b"{}", content_type="application/json; charset=latin-1").status_code == 415


def test_large_bodies_are_split_into_several_messages(
    client: TestClient, sender: InMemoryRawBatchSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "MESSAGE_BYTES", 1500)
    answer = post(client, orjson.dumps([{"n": n, "pad": "y" * 200} for n in range(10)]))
    assert answer.json()["accepted"] == 10
    assert len(sender.sent) > 2
    assert [r.data["n"] for r in records_of(sender.sent)] == list(range(10))


@pytest.mark.parametrize("token", [ANALYST, ADMIN])
def test_only_collector_keys_ingest(
    client: TestClient, sender: InMemoryRawBatchSender, token: str
) -> None:
    assert post(client, b'{"n": 1}', token=token).status_code == 403
    assert client.post("/ingest", content=b'{"n": 1}').status_code == 401
    assert sender.sent == []


class _AwaySender(InMemoryRawBatchSender):
    def send(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        raise KafkaTimeoutError("no acknowledgement")


def test_no_acknowledgement_is_a_503_to_send_again(client: TestClient) -> None:
    app: Any = client.app
    app.state.raw_sender = _AwaySender()
    answer = post(client, b'{"n": 1}')
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "10"
    assert "send the same body again" in answer.json()["detail"]


def test_an_empty_array_sends_nothing(client: TestClient, sender: InMemoryRawBatchSender) -> None:
    assert post(client, b"[]").json() == {"accepted": 0, "topic": None, "ids": []}
    assert sender.sent == []
