"""Session fixtures: the real services, and settings that keep each test run's topics and
indices apart from the demo's and from other runs'."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from socpipe.settings import Settings, load_settings
from tests.support.services import Endpoints, docker_answers, provide_endpoints

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    """Kafka and Elasticsearch for this run: environment, testcontainers, or deploy/local."""
    with contextlib.ExitStack() as stack:
        yield provide_endpoints(os.environ, stack, docker_answers)


@pytest.fixture
def run_id() -> str:
    """A short id unique to one test, for topic and index names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def pipeline_settings(endpoints: Endpoints, run_id: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings on the real services with topics and indices of this test's own."""
    topics = {
        name: f"t-{run_id}.soc.{name}"
        for name in (
            "raw",
            "events",
            "detections",
            "dlq",
            "correlate",
            "rules",
            "models",
            "heartbeats",
        )
    }
    settings = load_settings(
        kafka={
            "bootstrap_servers": [endpoints.kafka_bootstrap],
            "topics": topics,
            "client_id": f"socpipe-test-{run_id}",
        },
        elasticsearch={"hosts": [endpoints.elasticsearch_url], "index_prefix": f"t-{run_id}"},
        collector={"checkpoint_file": str(tmp_path / "checkpoints.json")},
        detector={"group_id": f"detect-{run_id}"},
        alerting={"group_id": f"alert-{run_id}"},
        anomaly={"group_id": f"anomaly-{run_id}"},
    )
    yield settings
    _cleanup(settings)


def _cleanup(settings: Settings) -> None:
    """Drop what a test created, so repeated runs do not fill the local services."""
    from kafka.errors import KafkaError

    from socpipe.elastic import make_elasticsearch
    from socpipe.kafka import make_admin

    with contextlib.suppress(KafkaError, OSError):
        admin = make_admin(settings.kafka)
        try:
            raw = settings.kafka.topics.raw
            mine = {
                topic
                for topic in admin.list_topics()
                # The pipeline's topics, and the agency topics soc.raw.<agency> collectors made.
                if topic in settings.kafka.topics.all().values() or topic.startswith(raw + ".")
            }
            if mine:
                admin.delete_topics(sorted(mine))
        finally:
            admin.close()
    es = make_elasticsearch(settings.elasticsearch)
    prefix = settings.elasticsearch.index_prefix
    with contextlib.suppress(Exception):
        es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
        es.indices.delete_index_template(name=f"{prefix}-*")
    es.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip saying it is absent (it is present on our machines and CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
