"""HttpSource: JSON and NDJSON over HTTP(S), answered only once the records are durable."""

from __future__ import annotations

import gzip
import ssl
import threading
import tracemalloc
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import pytest
import trustme
from pydantic import ValidationError

from collectors.base import DurableCallback, RecordDict, RecordMaker, SourceStats
from collectors.httpsource import OFFER_CHUNK_RECORDS, HttpSource
from socpipe.errors import ConfigError
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef
from socpipe.settings import HttpSourceSettings, HttpToken, Tier, TlsServerSettings

AGENCY = AgencyRef(id="so-tttt", tier=Tier.PROVINCE, name="Sở Thông tin và Truyền thông")
COLLECTOR = CollectorRef(id="collector-1", version="0.1.0")
TOKEN = "forwarder-token-0123456789abcdef"
OTHER_TOKEN = "firewall-token-fedcba9876543210"
VIETNAMESE = "Đăng nhập thất bại cho người dùng nguyễn.văn.a từ Ủy ban nhân dân xã"
NDJSON = "application/x-ndjson"


class RecordingSink:
    """An in-memory sink: records every offer; calls on_durable at once, or when released."""

    def __init__(self, *, accept: bool = True, hold: bool = False) -> None:
        self.accept = accept
        self.hold = hold
        self.offers: list[list[RecordDict]] = []
        self.timeouts: list[float | None] = []
        self.held: list[DurableCallback] = []
        self.offered = threading.Event()
        self._lock = threading.Lock()

    def offer(
        self,
        stats: SourceStats,
        records: list[RecordDict],
        on_durable: DurableCallback | None = None,
        timeout: float | None = None,
    ) -> bool:
        with self._lock:
            self.timeouts.append(timeout)
            if not self.accept:
                return False
            self.offers.append(list(records))
            if on_durable is not None:
                if self.hold:
                    self.held.append(on_durable)
                else:
                    on_durable()
            self.offered.set()
        return True

    def accepting(self) -> bool:
        return self.accept

    def release(self, count: int | None = None) -> None:
        """Call the held on_durable callbacks (the first ``count`` of them), as a shipper would."""
        with self._lock:
            done, self.held = self.held[:count], self.held[len(self.held[:count]) :]
        for callback in done:
            callback()

    @property
    def records(self) -> list[RecordDict]:
        return [record for offer in self.offers for record in offer]


Serve = Callable[..., HttpSource]


def make_maker() -> RecordMaker:
    return RecordMaker(
        agency=AGENCY,
        collector=COLLECTOR,
        host="collector-host",
        source=SourceRef(type="http", port=0, format="json"),
        stats=SourceStats(name="http"),
    )


def make_settings(**changes: Any) -> HttpSourceSettings:
    values: dict[str, Any] = {
        "port": 0,
        "tokens": [
            HttpToken(name="siem-forwarder", token=TOKEN),
            HttpToken(name="firewall", token=OTHER_TOKEN),
        ],
        "max_body_bytes": 64 * 1024,
        **changes,
    }
    return HttpSourceSettings(**values)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts HttpSources on 127.0.0.1 at a free port; stops them after the test."""
    started: list[HttpSource] = []

    def start(sink: RecordingSink, *, durable_timeout: float = 60.0, **changes: Any) -> HttpSource:
        source = HttpSource(
            make_settings(**changes), make_maker(), sink, durable_timeout=durable_timeout
        )
        source.start()
        started.append(source)
        return source

    yield start
    for source in started:
        source.stop(5.0)


def post(
    source: HttpSource,
    content: bytes,
    *,
    content_type: str = "application/json",
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{source.url}/ingest", content=content, headers=sent, timeout=30.0)


def ndjson(objects: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(obj) + b"\n" for obj in objects)


def validated(sink: RecordingSink) -> list[RawRecord]:
    return [RawRecord.model_validate(record) for record in sink.records]


# --- what is accepted ---------------------------------------------------------------------------


def test_one_object_is_one_record_of_the_collectors_agency_and_the_tokens_name(
    serve: Serve,
) -> None:
    sink = RecordingSink()
    source = serve(sink)
    event = {"event": "login", "agency": "so-tai-chinh", "user": "a"}

    response = post(source, orjson.dumps(event))

    assert response.status_code == 200
    [record] = validated(sink)
    assert response.json() == {"accepted": 1, "ids": [record.id, record.id]}
    assert record.data == event
    # The body's "agency" stays data; attribution is the collector's.
    assert record.agency == AGENCY
    assert record.source.type == "http"
    assert record.source.token == "siem-forwarder"
    assert record.source.protocol == "http"
    assert record.source.peer is not None and record.source.peer.startswith("127.0.0.1:")
    assert record.position == 0
    assert source.stats.read == 1
    assert source.stats.lag == 0
    assert source.stats.unreadable == 0


def test_array_gives_one_record_per_object_in_order(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)
    events = [{"n": n, "agency": f"agency-{n}"} for n in range(5)]

    response = post(source, orjson.dumps(events))

    assert response.status_code == 200
    records = validated(sink)
    assert [record.data for record in records] == events
    assert [record.position for record in records] == list(range(len(events)))
    assert {record.agency.id for record in records} == {AGENCY.id}
    assert len({record.id for record in records}) == len(events)
    assert response.json() == {"accepted": len(events), "ids": [records[0].id, records[-1].id]}


def test_empty_array_is_accepted_with_nothing_to_ship(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, b"[]")

    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "ids": []}
    assert sink.offers == []


@pytest.mark.parametrize("content_type", [NDJSON, "application/jsonl; charset=utf-8"])
def test_ndjson_gives_one_record_per_line_skipping_blank_lines(
    serve: Serve, content_type: str
) -> None:
    sink = RecordingSink()
    source = serve(sink)
    body = b'{"n": 0}\r\n\n   \n{"n": 1}\n{"n": 2}'

    response = post(source, body, content_type=content_type)

    assert response.status_code == 200, response.text
    records = validated(sink)
    assert [record.data for record in records] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [record.position for record in records] == [0, 1, 2]
    assert response.json()["accepted"] == 3


def test_gzip_ndjson_is_decompressed(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)
    events = [{"n": n, "text": "x" * 100} for n in range(50)]

    response = post(
        source,
        gzip.compress(ndjson(events)),
        content_type=NDJSON,
        headers={"Content-Encoding": "gzip"},
    )

    assert response.status_code == 200, response.text
    assert [record.data for record in validated(sink)] == events


def test_concatenated_gzip_members_are_one_body(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)
    body = gzip.compress(b'{"n": 0}\n') + gzip.compress(b'{"n": 1}\n')

    response = post(source, body, content_type=NDJSON, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 200, response.text
    assert [record.data for record in validated(sink)] == [{"n": 0}, {"n": 1}]


def test_utf8_byte_order_mark_is_skipped(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, b"\xef\xbb\xbf" + orjson.dumps({"n": 1}))

    assert response.status_code == 200, response.text
    assert [record.data for record in validated(sink)] == [{"n": 1}]


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_vietnamese_text_is_kept_byte_exact(serve: Serve, form: Literal["NFC", "NFD"]) -> None:
    sink = RecordingSink()
    source = serve(sink)
    text = unicodedata.normalize(form, VIETNAMESE)
    body = ndjson([{"message": text, "user": "nguyễn.văn.a"}])

    response = post(source, body, content_type=NDJSON)

    assert response.status_code == 200
    [record] = validated(sink)
    assert record.data is not None
    assert record.data["message"].encode() == text.encode()
    # What goes to Kafka carries the client's very bytes, not a normalised or escaped form.
    assert text.encode() in orjson.dumps(sink.records[0])


def test_same_body_twice_gives_the_same_ids_and_another_token_other_ids(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)
    body = ndjson([{"n": 0}, {"n": 1}])

    first = post(source, body, content_type=NDJSON)
    again = post(source, body, content_type=NDJSON)
    zipped = post(
        source, gzip.compress(body), content_type=NDJSON, headers={"Content-Encoding": "gzip"}
    )
    other_client = post(source, body, content_type=NDJSON, token=OTHER_TOKEN)
    other_body = post(source, ndjson([{"n": 0}, {"n": 2}]), content_type=NDJSON)

    ids = [[record["id"] for record in offer] for offer in sink.offers]
    assert ids[0] == ids[1] == ids[2]
    assert first.json()["ids"] == again.json()["ids"] == zipped.json()["ids"]
    assert not set(ids[3]) & set(ids[0])
    assert not set(ids[4]) & set(ids[0])
    assert other_client.json()["ids"] != first.json()["ids"]
    assert other_body.status_code == 200
    assert sink.offers[3][0]["source"]["token"] == "firewall"


# --- durability ---------------------------------------------------------------------------------


def test_answer_comes_only_after_every_chunk_is_durable(serve: Serve) -> None:
    sink = RecordingSink(hold=True)
    source = serve(sink)
    count = OFFER_CHUNK_RECORDS + 500
    body = ndjson([{"n": n} for n in range(count)])
    answers: list[httpx.Response] = []
    answered = threading.Event()

    def client() -> None:
        answers.append(post(source, body, content_type=NDJSON))
        answered.set()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    assert sink.offered.wait(30.0)
    while len(sink.held) < 2 and thread.is_alive():
        thread.join(0.01)

    assert len(sink.held) == 2
    assert [len(offer) for offer in sink.offers] == [OFFER_CHUNK_RECORDS, 500]
    assert not answered.wait(0.5)
    assert source.stats.lag == count
    sink.release(1)
    assert not answered.wait(0.5)
    sink.release()
    assert answered.wait(30.0)

    assert answers[0].status_code == 200
    assert answers[0].json() == {
        "accepted": count,
        "ids": [sink.records[0]["id"], sink.records[-1]["id"]],
    }
    assert source.stats.read == count
    assert source.stats.lag == 0


def test_full_collector_gets_503_with_retry_after(serve: Serve) -> None:
    sink = RecordingSink(accept=False)
    source = serve(sink)

    response = post(source, orjson.dumps({"n": 1}))

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "full" in response.json()["error"]
    # The offer was asked to wait a bounded time, never forever.
    assert sink.timeouts and all(timeout is not None and timeout > 0 for timeout in sink.timeouts)
    assert source.stats.read == 0
    assert source.stats.last_error is not None and "503" in source.stats.last_error


def test_records_not_durable_in_time_get_503(serve: Serve) -> None:
    sink = RecordingSink(hold=True)
    source = serve(sink, durable_timeout=0.2)

    response = post(source, orjson.dumps({"n": 1}))

    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert len(sink.records) == 1
    # Becoming durable after the answer is harmless.
    sink.release()


# --- what is refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {TOKEN}x", "Bearer", f"Basic {TOKEN}", TOKEN, "Bearer Đ-not-ascii"],
)
def test_missing_or_wrong_token_is_401(serve: Serve, authorization: str | None) -> None:
    sink = RecordingSink()
    source = serve(sink)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = httpx.post(
        f"{source.url}/ingest",
        content=b'{"n": 1}',
        headers={key.encode(): value.encode() for key, value in headers.items()},
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.json()
    assert sink.offers == []
    assert source.stats.unreadable == 1
    assert source.stats.last_error is not None
    assert "127.0.0.1:" in source.stats.last_error
    assert TOKEN not in source.stats.last_error


def test_invalid_ndjson_line_refuses_the_whole_request_naming_the_line(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)
    body = b'{"n": 0}\n\n{"n": 1}\n{"n": 2,,}\n{"n": 3}\n'

    response = post(source, body, content_type=NDJSON)

    assert response.status_code == 400
    answer = response.json()
    assert answer["line"] == 4
    assert "line 4" in answer["error"]
    assert sink.offers == []
    assert source.stats.unreadable == 1
    assert source.stats.last_error is not None and "line 4" in source.stats.last_error


def test_invalid_json_body_is_400_with_its_position(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, b'[\n  {"n": 1},\n  {"n": 2\n]')

    assert response.status_code == 400
    answer = response.json()
    assert answer["line"] == 4
    assert answer["column"] >= 1
    assert "invalid JSON" in answer["error"]
    assert sink.offers == []


def test_text_that_is_not_utf8_is_400(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, '{"message": "Đăng nhập"}'.encode("utf-16"))

    assert response.status_code == 400
    assert sink.offers == []


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        (b'[{"n": 0}, 2, {"n": 1}]', "application/json", {"index": 1}),
        (b'[{"n": 0}, {"n": 1}, ["n"]]', "application/json", {"index": 2}),
        (b'{"n": 0}\n"text"\n', NDJSON, {"line": 2, "index": 1}),
        (b"\n\nnull\n", NDJSON, {"line": 3, "index": 0}),
    ],
)
def test_item_that_is_not_an_object_is_400_naming_it(
    serve: Serve, body: bytes, content_type: str, where: dict[str, int]
) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, body, content_type=content_type)

    assert response.status_code == 400
    answer = response.json()
    assert {key: answer[key] for key in where} == where
    assert "not an object" in answer["error"]
    assert sink.offers == []


@pytest.mark.parametrize("body", [b'"just a string"', b"42", b"null"])
def test_json_body_that_is_neither_object_nor_array_is_400(serve: Serve, body: bytes) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, body)

    assert response.status_code == 400
    assert sink.offers == []


def test_gzip_bomb_is_413_without_inflating_it(serve: Serve) -> None:
    sink = RecordingSink()
    limit = 1024 * 1024
    source = serve(sink, max_body_bytes=limit)
    inflated = 100 * 1024 * 1024
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(inflated // len(zeros)))
    bomb += compressor.flush()
    assert len(bomb) < limit
    del zeros

    tracemalloc.start()
    try:
        response = post(source, bomb, content_type=NDJSON, headers={"Content-Encoding": "gzip"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response.status_code == 413
    assert str(limit) in response.json()["error"]
    # Memory grows with the limit (a few copies of it), not with what the body inflates to.
    assert peak < 16 * limit < inflated
    assert sink.offers == []
    assert source.stats.unreadable == 1


def test_body_larger_than_the_limit_is_413(serve: Serve) -> None:
    sink = RecordingSink()
    limit = 4096
    source = serve(sink, max_body_bytes=limit)
    body = ndjson([{"n": n, "pad": "x" * 100} for n in range(100)])
    assert len(body) > limit

    response = post(source, body, content_type=NDJSON)
    streamed = httpx.post(
        f"{source.url}/ingest",
        content=iter([body[: len(body) // 2], body[len(body) // 2 :]]),
        headers={"Content-Type": NDJSON, "Authorization": f"Bearer {TOKEN}"},
    )

    assert response.status_code == 413
    assert streamed.status_code == 413
    assert sink.offers == []
    assert source.stats.unreadable == 2


@pytest.mark.parametrize(
    "body",
    [b'{"n": 1}', gzip.compress(b'{"n": 1}')[:-6], gzip.compress(b'{"n": 1}') + b"junk"],
    ids=["not-gzip", "cut-short", "trailing-junk"],
)
def test_bad_gzip_is_400(serve: Serve, body: bytes) -> None:
    sink = RecordingSink()
    source = serve(sink)

    response = post(source, body, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert "gzip" in response.json()["error"]
    assert sink.offers == []


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("text/plain", None),
        ("", None),
        ("application/xml", None),
        ("application/json; charset=iso-8859-1", None),
        ("application/json", "br"),
    ],
)
def test_other_content_types_and_encodings_are_415(
    serve: Serve, content_type: str, encoding: str | None
) -> None:
    sink = RecordingSink()
    source = serve(sink)
    headers = {"Content-Encoding": encoding} if encoding else None

    response = post(source, b'{"n": 1}', content_type=content_type, headers=headers)

    assert response.status_code == 415
    assert "error" in response.json()
    assert sink.offers == []
    assert source.stats.unreadable == 1


# --- the server ---------------------------------------------------------------------------------


def test_health_answers_without_a_token(serve: Serve) -> None:
    source = serve(RecordingSink())

    response = httpx.get(f"{source.url}/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_other_paths_are_404_and_other_methods_405(serve: Serve) -> None:
    source = serve(RecordingSink())
    auth = {"Authorization": f"Bearer {TOKEN}"}

    missing = httpx.post(f"{source.url}/other", content=b"{}", headers=auth)
    wrong_method = httpx.get(f"{source.url}/ingest", headers=auth)

    assert missing.status_code == 404
    assert "error" in missing.json()
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["Allow"]


def test_custom_path_is_served(serve: Serve) -> None:
    sink = RecordingSink()
    source = serve(sink, path="/v1/events")

    response = httpx.post(
        f"{source.url}/v1/events",
        content=b'{"n": 1}',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )

    assert response.status_code == 200
    assert len(sink.records) == 1


def test_port_zero_binds_a_free_port_and_a_taken_port_raises(serve: Serve) -> None:
    source = serve(RecordingSink())
    assert source.port > 0
    assert source.url == f"http://127.0.0.1:{source.port}"

    clash = HttpSource(make_settings(port=source.port), make_maker(), RecordingSink())
    with pytest.raises(OSError):
        clash.start()


def test_stop_stops_serving() -> None:
    source = HttpSource(make_settings(), make_maker(), RecordingSink())
    source.start()
    assert httpx.get(f"{source.url}/health").status_code == 200

    source.stop(5.0)

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{source.url}/health")


# --- configuration ------------------------------------------------------------------------------


def test_token_file_is_read_at_construction(serve: Serve, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{OTHER_TOKEN}\n")
    sink = RecordingSink()
    source = serve(sink, tokens=[HttpToken(name="from-file", token_file=token_file)])

    response = post(source, b'{"n": 1}', token=OTHER_TOKEN)

    assert response.status_code == 200
    assert sink.records[0]["source"]["token"] == "from-file"


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_missing_or_empty_token_file_fails_naming_the_token(
    tmp_path: Path, content: str | None
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    settings = make_settings(tokens=[HttpToken(name="edge-router", token_file=token_file)])

    with pytest.raises(ConfigError, match="edge-router"):
        HttpSource(settings, make_maker(), RecordingSink())


@pytest.mark.parametrize(
    ("tokens", "match"),
    [
        ([HttpToken(name="a")], "either token or token_file"),
        ([HttpToken(name="a", token=TOKEN), HttpToken(name="a", token=OTHER_TOKEN)], "twice"),
        ([HttpToken(name="a", token=TOKEN), HttpToken(name="b", token=TOKEN)], "same token"),
        ([HttpToken(name="a", token=f"{TOKEN} with spaces")], "visible ASCII"),
    ],
)
def test_unusable_tokens_fail_at_construction(tokens: list[HttpToken], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HttpSource(make_settings(tokens=tokens), make_maker(), RecordingSink())


def test_a_short_inline_token_is_refused_when_settings_load() -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        HttpToken(name="a", token="short")


def test_a_short_token_in_a_file_fails_at_construction(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("short\n")
    settings = make_settings(tokens=[HttpToken(name="a", token_file=token_file)])
    with pytest.raises(ConfigError, match="fewer than"):
        HttpSource(settings, make_maker(), RecordingSink())


def test_path_clashing_with_health_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="/health"):
        HttpSource(make_settings(path="/health"), make_maker(), RecordingSink())


# --- TLS ----------------------------------------------------------------------------------------


def tls_files(tmp_path: Path, ca: trustme.CA) -> tuple[Path, Path, Path]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return certfile, keyfile, cafile


def test_tls_serves_https(serve: Serve, tmp_path: Path) -> None:
    ca = trustme.CA()
    certfile, keyfile, _ = tls_files(tmp_path, ca)
    sink = RecordingSink()
    source = serve(sink, tls=TlsServerSettings(certfile=certfile, keyfile=keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)

    response = httpx.post(
        f"{source.url}/ingest",
        content=b'{"n": 1}',
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        verify=context,
    )

    assert source.url.startswith("https://")
    assert response.status_code == 200
    [record] = validated(sink)
    assert record.source.protocol == "https"


def test_tls_with_client_cafile_requires_a_client_certificate(serve: Serve, tmp_path: Path) -> None:
    ca = trustme.CA()
    certfile, keyfile, cafile = tls_files(tmp_path, ca)
    sink = RecordingSink()
    source = serve(
        sink, tls=TlsServerSettings(certfile=certfile, keyfile=keyfile, client_cafile=cafile)
    )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    anonymous = ssl.create_default_context()
    ca.configure_trust(anonymous)
    known = ssl.create_default_context()
    ca.configure_trust(known)
    ca.issue_cert("forwarder.so-tttt.example").configure_cert(known)

    with pytest.raises(httpx.TransportError):
        httpx.post(f"{source.url}/ingest", content=b'{"n": 0}', headers=headers, verify=anonymous)
    response = httpx.post(
        f"{source.url}/ingest", content=b'{"n": 1}', headers=headers, verify=known
    )

    assert response.status_code == 200
    assert [record.data for record in validated(sink)] == [{"n": 1}]


def test_unreadable_certificate_fails_start(tmp_path: Path) -> None:
    tls = TlsServerSettings(certfile=tmp_path / "missing.pem", keyfile=tmp_path / "missing.key")
    source = HttpSource(make_settings(tls=tls), make_maker(), RecordingSink())

    with pytest.raises(OSError):
        source.start()
