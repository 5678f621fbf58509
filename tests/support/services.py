"""Which Kafka and Elasticsearch the tests use, in this order for each service:

1. an explicit address from the environment (``SOCPIPE_TEST_KAFKA_BOOTSTRAP``,
   ``SOCPIPE_TEST_ELASTICSEARCH_URL``);
2. a testcontainers container, where a Docker daemon answers;
3. the local services of ``deploy/local`` (``socpipe services up``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Backend = Literal["env", "testcontainers", "local"]
ENV_VARS = {
    "kafka": "SOCPIPE_TEST_KAFKA_BOOTSTRAP",
    "elasticsearch": "SOCPIPE_TEST_ELASTICSEARCH_URL",
}


def docker_answers(timeout_s: float = 3.0) -> bool:
    """Whether a Docker daemon answers a ping (the client alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=int(timeout_s))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def choose_backend(
    service: str, env: Mapping[str, str], docker_probe: Callable[[], bool]
) -> Backend:
    """Where ``service`` comes from for this test run."""
    if env.get(ENV_VARS[service]):
        return "env"
    if docker_probe():
        return "testcontainers"
    return "local"


# The containers started for this run, for tests that must take a service away for a while.
_CONTAINERS: dict[str, Any] = {}


@dataclass(frozen=True)
class Endpoints:
    """The services the tests talk to, and where each came from."""

    kafka_bootstrap: str
    elasticsearch_url: str
    kafka_backend: Backend
    elasticsearch_backend: Backend


def provide_endpoints(
    env: Mapping[str, str], stack: contextlib.ExitStack, docker_probe: Callable[[], bool]
) -> Endpoints:
    """Start or find both services; containers are stopped when ``stack`` closes."""
    probe_result: list[bool] = []

    def probe_once() -> bool:
        if not probe_result:
            probe_result.append(docker_probe())
        return probe_result[0]

    kafka_backend = choose_backend("kafka", env, probe_once)
    es_backend = choose_backend("elasticsearch", env, probe_once)
    local = None
    if "local" in (kafka_backend, es_backend):
        from socpipe.localservices import LocalServices
        from socpipe.settings import load_settings

        local = LocalServices(load_settings().local)
        local.up()

    if kafka_backend == "env":
        kafka = env[ENV_VARS["kafka"]]
    elif kafka_backend == "testcontainers":
        from testcontainers.community.kafka import KafkaContainer

        container = stack.enter_context(KafkaContainer().with_kraft())
        kafka = container.get_bootstrap_server()
        _CONTAINERS["kafka"] = container
    else:
        assert local is not None
        kafka = local.kafka_bootstrap

    if es_backend == "env":
        elasticsearch = env[ENV_VARS["elasticsearch"]]
    elif es_backend == "testcontainers":
        from testcontainers.community.elasticsearch import ElasticSearchContainer

        es_container = stack.enter_context(
            ElasticSearchContainer("docker.elastic.co/elasticsearch/elasticsearch:8.19.7")
        )
        elasticsearch = es_container.get_url()
        _CONTAINERS["elasticsearch"] = es_container
    else:
        assert local is not None
        elasticsearch = local.es_url
    return Endpoints(kafka, elasticsearch, kafka_backend, es_backend)


@contextlib.contextmanager
def outage(endpoints: Endpoints, service: Literal["kafka", "elasticsearch"]) -> Iterator[None]:
    """``service`` is away inside the block and answers again after it.

    A local service is stopped (SIGTERM, as an operator or a crash of the link would end it) and
    started again; a container is paused and unpaused (its clients see a dead link). A service
    given by address cannot be taken away by the tests: those tests are skipped, saying so.
    """
    backend = endpoints.kafka_backend if service == "kafka" else endpoints.elasticsearch_backend
    if backend == "env":
        import pytest

        pytest.skip(f"{service} given by {ENV_VARS[service]} cannot be stopped by a test")
    if backend == "testcontainers":
        wrapped = _CONTAINERS[service].get_wrapped_container()
        wrapped.pause()
        try:
            yield
        finally:
            wrapped.unpause()
        return
    from socpipe.localservices import LocalServices
    from socpipe.settings import load_settings

    local = LocalServices(load_settings().local)
    local.stop([service])
    try:
        yield
    finally:
        local.up(names=[service])


def kafka_outage(endpoints: Endpoints) -> contextlib.AbstractContextManager[None]:
    """Kafka away inside the block (:func:`outage`)."""
    return outage(endpoints, "kafka")


def elasticsearch_outage(endpoints: Endpoints) -> contextlib.AbstractContextManager[None]:
    """Elasticsearch away inside the block (:func:`outage`)."""
    return outage(endpoints, "elasticsearch")
