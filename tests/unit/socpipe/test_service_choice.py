"""The test fixtures' choice of services: environment, then testcontainers, then deploy/local."""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any

import pytest

from tests.support import services
from tests.support.services import choose_backend, provide_endpoints


def test_explicit_address_wins_without_probing_docker() -> None:
    def probe() -> bool:
        raise AssertionError("docker must not be probed when an address is given")

    env = {"SOCPIPE_TEST_KAFKA_BOOTSTRAP": "k:9092"}
    assert choose_backend("kafka", env, probe) == "env"


def test_testcontainers_when_docker_answers() -> None:
    assert choose_backend("kafka", {}, lambda: True) == "testcontainers"
    assert choose_backend("elasticsearch", {}, lambda: True) == "testcontainers"


def test_local_services_when_docker_does_not_answer() -> None:
    assert choose_backend("elasticsearch", {}, lambda: False) == "local"


def test_provide_endpoints_starts_containers_when_the_probe_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a fake probe that answers, the testcontainers classes are the ones used."""
    started: list[str] = []

    class FakeContainer:
        def __init__(self, *args: Any) -> None:
            self.name = type(self).__name__

        def with_kraft(self) -> FakeContainer:
            return self

        def __enter__(self) -> FakeContainer:
            started.append(self.name)
            return self

        def __exit__(self, *exc: object) -> None:
            started.append(f"stopped {self.name}")

        def get_bootstrap_server(self) -> str:
            return "container:9093"

        def get_url(self) -> str:
            return "http://container:9200"

    class KafkaContainer(FakeContainer):
        pass

    class ElasticSearchContainer(FakeContainer):
        pass

    kafka_module = types.ModuleType("testcontainers.community.kafka")
    kafka_module.KafkaContainer = KafkaContainer  # type: ignore[attr-defined]
    es_module = types.ModuleType("testcontainers.community.elasticsearch")
    es_module.ElasticSearchContainer = ElasticSearchContainer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "testcontainers.community.kafka", kafka_module)
    monkeypatch.setitem(sys.modules, "testcontainers.community.elasticsearch", es_module)

    probes: list[bool] = []

    def probe() -> bool:
        probes.append(True)
        return True

    with contextlib.ExitStack() as stack:
        endpoints = provide_endpoints({}, stack, probe)
        assert endpoints.kafka_backend == endpoints.elasticsearch_backend == "testcontainers"
        assert endpoints.kafka_bootstrap == "container:9093"
        assert endpoints.elasticsearch_url == "http://container:9200"
    assert started == [
        "KafkaContainer",
        "ElasticSearchContainer",
        "stopped ElasticSearchContainer",
        "stopped KafkaContainer",
    ]
    assert len(probes) == 1


def test_real_probe_says_no_without_a_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert services.docker_answers(timeout_s=1) is False
