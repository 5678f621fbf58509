from __future__ import annotations

import pytest
from elasticsearch import ConnectionError
from fastapi.testclient import TestClient

from alerting.store import AlertPage, AlertQuery, InMemoryAlertStore, SourcedDetection
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.users import InMemoryUserStore
from socpipe.settings import load_settings
from tests.support.factories import make_detection

ANALYST = "analyst-token-0123456789"
AGENCY = "agency-token-0123456789ab"


@pytest.fixture
def client() -> TestClient:
    store = InMemoryAlertStore(3600)
    store.apply(
        [
            SourcedDetection(make_detection(1, agency="so-tttt", dedup_key="a"), "d:0", 1),
            SourcedDetection(make_detection(2, agency="phuong-phuc-xa", dedup_key="b"), "d:0", 2),
            SourcedDetection(make_detection(3, agency="phuong-phuc-xa", dedup_key="b"), "d:0", 3),
        ]
    )
    settings = load_settings(
        api={
            "tokens": [
                {"name": "an", "token": ANALYST, "role": "analyst"},
                {
                    "name": "px",
                    "token": AGENCY,
                    "role": "agency_viewer",
                    "agency": "phuong-phuc-xa",
                },
            ]
        }
    )
    return TestClient(
        create_app(settings, store=store, users=InMemoryUserStore(), audit=InMemoryAuditLog())
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok"}


@pytest.mark.parametrize("path", ["/alerts", "/alerts/x", "/openapi.json"])
def test_everything_else_needs_a_valid_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers=auth("wrong-token-0123456789")).status_code == 401
    assert client.get(path, headers={"Authorization": ANALYST}).status_code == 401


def test_analyst_sees_every_agency(client: TestClient) -> None:
    body = client.get("/alerts", headers=auth(ANALYST)).json()
    assert body["total"] == 2
    assert {a["entities"]["agency"] for a in body["data"]} == {"so-tttt", "phuong-phuc-xa"}
    counts = {a["entities"]["agency"]: a["count"] for a in body["data"]}
    assert counts == {"so-tttt": 1, "phuong-phuc-xa": 2}


def test_agency_user_sees_only_its_agency(client: TestClient) -> None:
    body = client.get("/alerts", headers=auth(AGENCY)).json()
    assert [a["entities"]["agency"] for a in body["data"]] == ["phuong-phuc-xa"]
    assert client.get("/alerts?agency=so-tttt", headers=auth(AGENCY)).status_code == 403
    other = client.get("/alerts?agency=so-tttt", headers=auth(ANALYST)).json()["data"][0]
    assert client.get(f"/alerts/{other['id']}", headers=auth(AGENCY)).status_code == 404
    assert client.get(f"/alerts/{other['id']}", headers=auth(ANALYST)).status_code == 200


def test_alert_detail_carries_events_with_vietnamese_text(client: TestClient) -> None:
    listed = client.get("/alerts?agency=so-tttt", headers=auth(ANALYST)).json()["data"][0]
    assert listed["events"] == []
    detail = client.get(f"/alerts/{listed['id']}", headers=auth(ANALYST)).json()
    assert detail["events"][0]["message"].startswith("Failed password for nguyễn.văn.a")


def test_bad_filter_is_a_clear_422(client: TestClient) -> None:
    response = client.get("/alerts?status=closed", headers=auth(ANALYST))
    assert response.status_code == 422
    assert "status" in response.text
    assert client.get("/alerts?limit=0", headers=auth(ANALYST)).status_code == 422


def test_openapi_describes_the_alert_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers=auth(ANALYST)).json()
    assert "/alerts" in spec["paths"] and "/health" in spec["paths"]


def test_console_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<script type="module" src="js/app.js">' in page.text
    module = client.get("/js/app.js")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert "default-src 'self'" in module.headers["content-security-policy"]


class _AwayStore(InMemoryAlertStore):
    def search(self, query: AlertQuery) -> AlertPage:
        raise ConnectionError("connection refused")


def test_an_unavailable_store_is_a_503_with_retry_after() -> None:
    settings = load_settings(api={"tokens": [{"name": "an", "token": ANALYST, "role": "analyst"}]})
    client = TestClient(
        create_app(
            settings, store=_AwayStore(3600), users=InMemoryUserStore(), audit=InMemoryAuditLog()
        )
    )
    answer = client.get("/alerts", headers={"Authorization": f"Bearer {ANALYST}"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert "Elasticsearch is unavailable" in answer.json()["detail"]
