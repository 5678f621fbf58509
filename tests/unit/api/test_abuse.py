"""Abuse the schema cannot describe: bodies too large (with and without a length), JSON nested
past any parser's depth, filters that try to be queries, and forged cursors all get a 4xx that
says what is wrong; none reaches a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.support.triage import auth, rig
from tests.unit.api.test_schemathesis import ADMIN, APP

HEADERS = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _routes(included.routes)


WRITES = sorted(
    (method, route.path)
    for route in _routes(APP.routes)
    for method in route.methods & {"POST", "PUT", "PATCH"}
)


@pytest.fixture
def client() -> TestClient:
    return TestClient(APP, raise_server_exceptions=False)


def _path(path: str) -> str:
    return path.replace("{agency}", "so-tttt").replace("{", "").replace("}", "")


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_json_nested_fifty_thousand_deep_is_a_400(
    client: TestClient, method: str, path: str
) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    answer = client.request(method, _path(path), content=deep, headers=HEADERS)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["detail"]


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "without-length"])
def test_a_body_over_the_bound_is_a_413(client: TestClient, chunked: bool) -> None:
    body = b'{"title": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    content: Any = (
        iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    )
    answer = client.post("/cases", content=content, headers=HEADERS)
    assert answer.status_code == 413
    assert "larger than" in answer.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"agency": 'so-tttt" OR "1"="1'},
        {"host": {"$ne": 1}.__repr__()},
        {"q": ") OR *:* AND (" * 10},
        {"rule_id": "x" * 5000},
        {"since": "1970-01-01T00:00:00Z; DROP TABLE alerts"},
        {"sort": "_script"},
        {"limit": "100000"},
    ],
)
def test_filters_that_try_to_be_queries_are_refused_or_taken_as_text(
    client: TestClient, params: dict[str, str]
) -> None:
    answer = client.get("/alerts", params=params, headers=HEADERS)
    assert answer.status_code in (200, 400, 422), answer.text
    if answer.status_code != 200:
        assert answer.json()["detail"]


def test_a_forged_cursor_is_a_400_saying_so(client: TestClient) -> None:
    for cursor in ("eyJ4IjoxfQ==", "not base64 at all", "A" * 3000):
        answer = client.get("/alerts", params={"cursor": cursor}, headers=HEADERS)
        assert answer.status_code in (400, 422)
        assert "cursor" in str(answer.json()["detail"])


def test_a_parameter_given_twice_where_one_value_is_taken_is_refused() -> None:
    client = rig().client
    once = client.get("/alerts", params={"agency": "so-tttt"}, headers=auth("admin"))
    assert once.status_code == 200
    twice = client.get("/alerts?agency=so-tttt&agency=xa-tan-lap", headers=auth("admin"))
    assert twice.status_code == 422
    (problem,) = twice.json()["detail"]
    assert problem["loc"] == ["query", "agency"] and "2 times" in problem["msg"]
    # A list parameter takes several values, as documented.
    many = client.get("/alerts?severity=high&severity=low", headers=auth("admin"))
    assert many.status_code == 200
    # Also in a dependency's parameters and for another route.
    assert (
        client.get("/collectors?silent=true&silent=false", headers=auth("admin")).status_code == 422
    )


def test_an_unknown_query_parameter_is_refused_not_ignored() -> None:
    client = rig().client
    # A misspelt filter would otherwise list every alert as if none had been asked.
    answer = client.get("/alerts?severty=high", headers=auth("admin"))
    assert answer.status_code == 422
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", "severty"] and "severity" in problem["msg"]
    assert client.get("/health?verbose=1").status_code == 422
    assert client.get("/alerts?severity=high", headers=auth("admin")).status_code == 200
