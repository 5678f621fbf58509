"""The alert store against a secured cluster: HTTPS with the SOC's CA, and an API key or a
user and password, all from settings.

The local Elasticsearch (the integ-test distribution) has no security module, so a TLS front
stands in for a secured cluster's HTTP layer: it terminates TLS with a certificate of a test CA,
answers 401 like Elasticsearch to a request without the expected credential, and passes the
others to the real Elasticsearch. What is tested is socpipe's side: the client speaks TLS,
verifies the certificate against ``ca_certs``, and sends the credential the settings name.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
import uvicorn
from elastic_transport import TlsError
from elasticsearch import AuthenticationException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerting.store import AlertQuery, ElasticsearchAlertStore, SourcedDetection
from socpipe.elastic import make_elasticsearch
from socpipe.settings import ElasticsearchSettings, Settings
from tests.support.factories import make_detection
from tests.support.stages import free_port

pytestmark = pytest.mark.elasticsearch

API_KEY = base64.b64encode(b"socpipe-alerting:3pX9c1Lq8tV2mZ7rKd4W").decode()
USER, PASSWORD = "socpipe_alert", "mật-khẩu-đủ-dài-2026"


def _front(upstream: str) -> Starlette:
    accepted = {
        f"ApiKey {API_KEY}",
        "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    }
    client = httpx.AsyncClient(base_url=upstream, timeout=30)

    async def forward(request: Request) -> Response:
        if request.headers.get("authorization") not in accepted:
            body = {
                "error": {"type": "security_exception", "reason": "missing authentication"},
                "status": 401,
            }
            return JSONResponse(body, status_code=401)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")
        }
        answer = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in drop}
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


@pytest.fixture
def secured(pipeline_settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS front of the real Elasticsearch; its URL and the CA file to trust."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(key_file)
    cert.cert_chain_pems[0].write_to_path(cert_file)
    ca.cert_pem.write_to_path(ca_file)
    port = free_port()
    upstream = pipeline_settings.elasticsearch.hosts[0]
    config = uvicorn.Config(
        _front(upstream),
        host="127.0.0.1",
        port=port,
        ssl_keyfile=str(key_file),
        ssl_certfile=str(cert_file),
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"https://127.0.0.1:{port}", ca_file
    server.should_exit = True
    thread.join(timeout=10)


def _settings(base: Settings, url: str, **credentials: object) -> ElasticsearchSettings:
    values = base.elasticsearch.model_dump() | {"hosts": [url], **credentials}
    return ElasticsearchSettings.model_validate(values)


@pytest.mark.parametrize(
    "credentials",
    [{"api_key": API_KEY}, {"username": USER, "password": PASSWORD}],
    ids=["api-key", "basic"],
)
def test_the_store_works_over_tls_with_the_credential_of_its_settings(
    pipeline_settings: Settings, secured: tuple[str, Path], credentials: dict[str, str]
) -> None:
    url, ca_file = secured
    settings = _settings(pipeline_settings, url, ca_certs=ca_file, **credentials)
    client = make_elasticsearch(settings)
    store = ElasticsearchAlertStore(client, settings.index_prefix, 3600)
    store.ensure_ready()
    result = store.apply([SourcedDetection(make_detection(n), "d:0", n) for n in range(1, 4)])
    assert result.written == 1 and not result.failed
    client.indices.refresh(index=store.alias)
    (alert,) = store.search(AlertQuery()).alerts
    assert alert.count == 3
    client.close()


def test_a_wrong_credential_or_an_untrusted_certificate_is_refused(
    pipeline_settings: Settings, secured: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca_file = secured
    wrong = make_elasticsearch(
        _settings(pipeline_settings, url, ca_certs=ca_file, api_key="d3Jvbmc=")
    )
    with pytest.raises(AuthenticationException):
        wrong.cluster.health()
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other_ca)
    untrusted = make_elasticsearch(
        _settings(pipeline_settings, url, ca_certs=other_ca, api_key=API_KEY), max_retries=0
    )
    with pytest.raises(TlsError):
        untrusted.cluster.health()
