"""The alerting worker's pieces without servers: retries while Elasticsearch is away, and the
names and periods of time-based indices."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ApiError, ConnectionError

from alerting import worker
from alerting.indices import Indices
from alerting.worker import StoppedError, acknowledged


def _api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.01, NodeConfig("http", "x", 9200))
    return ApiError(f"status {status}", meta, {"error": "x"})


class Flaky:
    """Fails with ``errors`` in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_FIRST_DELAY_S", 0.0)


def test_acknowledged_retries_while_elasticsearch_is_away_or_overloaded() -> None:
    action = Flaky(ConnectionError("refused"), _api_error(503), _api_error(429))
    assert acknowledged(action, threading.Event(), "test") == "done"
    assert action.calls == 4


def test_acknowledged_does_not_retry_a_bad_request() -> None:
    action = Flaky(_api_error(400))
    with pytest.raises(ApiError):
        acknowledged(action, threading.Event(), "test")
    assert action.calls == 1


def test_a_stop_during_an_outage_ends_without_an_answer() -> None:
    stop = threading.Event()
    stop.set()
    action = Flaky(ConnectionError("refused"), ConnectionError("refused"))
    with pytest.raises(StoppedError):
        acknowledged(action, stop, "test")
    assert action.calls == 1


def test_indices_are_named_by_period_and_their_end_is_known() -> None:
    indices = Indices(client=None, prefix="soc")  # type: ignore[arg-type]
    moment = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert indices.index_for("events", moment) == "soc-events-2026.12.31"
    assert indices.index_for("alerts", moment) == "soc-alerts-2026.12"
    ends: dict[str, Any] = {
        "soc-events-2026.12.31": datetime(2027, 1, 1, tzinfo=UTC),
        "soc-events-2026.12": None,  # a month where a day is expected
        "soc-events-2026.02.30": None,  # no such day
        "soc-events-archive": None,
        "soc-eventsx-2026.12.01": None,
    }
    for name, end in ends.items():
        assert indices.period_end("events", name) == end, name
    assert indices.period_end("alerts", "soc-alerts-2026.12") == datetime(2027, 1, 1, tzinfo=UTC)
    assert indices.period_end("alerts", "soc-alerts-2026.11") == datetime(2026, 12, 1, tzinfo=UTC)
    assert indices.period_end("alerts", "soc-alerts-2026.11.01") is None
