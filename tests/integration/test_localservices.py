"""deploy/local as the tests' own services use it: idempotent start, status, logs, failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from socpipe.errors import ServiceError
from socpipe.localservices import SERVICES, LocalServices, Versions
from socpipe.settings import LocalServicesSettings, load_settings
from tests.support.services import Endpoints

pytestmark = [pytest.mark.kafka, pytest.mark.elasticsearch]


@pytest.fixture
def local(endpoints: Endpoints) -> LocalServices:
    if "local" not in (endpoints.kafka_backend, endpoints.elasticsearch_backend):
        pytest.skip("this run uses services from the environment or testcontainers")
    return LocalServices(load_settings().local)


def test_up_is_idempotent(local: LocalServices) -> None:
    before = {s.name: s.pid for s in local.status()}
    statuses = local.up()
    assert {s.name: s.pid for s in statuses} == before  # nothing restarted
    assert all(s.healthy for s in statuses)
    assert local.fetch() is False  # the cache holds everything: no Maven run


def test_status_reports_memory_and_log_files(local: LocalServices) -> None:
    for status in local.status():
        if status.pid is not None:
            assert status.rss_bytes > 50 * 2**20, status
        assert status.log_file.exists()
    assert any("Kafka" in line or "kafka" in line for line in local.tail("kafka", 200))


def test_services_status_command_exits_zero_when_healthy(local: LocalServices) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "socpipe", "services", "status"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout and "kafka" in result.stdout


def test_a_service_that_cannot_start_names_its_log(local: LocalServices, tmp_path: Path) -> None:
    """A broker whose JVM cannot start (a heap too small to boot) fails fast, naming its log."""
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    for entry in (local.home / "cache").iterdir():
        (home / "cache" / entry.name).symlink_to(entry)
    broken = LocalServices(
        LocalServicesSettings(
            home=home,
            kafka_port=19092,
            kafka_controller_port=19093,
            kafka_heap="2m",
            start_timeout_s=60,
        )
    )
    with pytest.raises(ServiceError) as caught:
        broken.up(names=["kafka"])
    message = str(caught.value)
    assert "kafka exited with code" in message
    assert str(home / "logs" / "kafka.out") in message
    broken.down()


def test_unknown_service_is_refused(local: LocalServices) -> None:
    with pytest.raises(ServiceError, match="unknown service redis"):
        local.tail("redis")
    with pytest.raises(ServiceError, match="unknown service redis"):
        local.up(names=["redis"])


def test_versions_come_from_the_pom() -> None:
    versions = Versions.from_pom(Path(__file__).resolve().parents[2] / "deploy/local/pom.xml")
    assert versions.kafka.startswith("4.")
    assert versions.elasticsearch.split(".")[0] in ("8", "9")
    assert SERVICES == ("kafka", "elasticsearch")
