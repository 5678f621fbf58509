"""Agency identity end to end: two agencies with real SCRAM credentials on the local Kafka's
SASL_SSL listener, a collector per agency, the detector stage, and two spoofing attempts.

- Agency A's collector ships A's line; the detector makes A's event, and passes A's heartbeat on.
- A collector with A's credential that claims to be B cannot write B's topic: `collect check`
  says so, and nothing of it reaches the SOC.
- A's credential writing records that claim B into A's own topic: the detector sends the message
  to the DLQ with the reason, and no event of B is made.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from collectors.worker import Collector
from socpipe.agencies import generate_password, provision_agency, revoke_agency
from socpipe.kafka import client_options, ensure_topics
from socpipe.localservices import LocalServices
from socpipe.records import AgencyRef, CollectorRef, RawBatch, RawRecord, SourceRef
from socpipe.settings import Settings, Tier, load_settings
from tests.support.services import Endpoints
from tests.support.stages import Stages

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


@pytest.fixture
def local(endpoints: Endpoints) -> LocalServices:
    if endpoints.kafka_backend != "local":
        pytest.skip("the agency listener is part of deploy/local's broker only")
    return LocalServices(load_settings().local)


@pytest.fixture
def agencies(
    local: LocalServices, pipeline_settings: Settings, run_id: str, tmp_path: Path
) -> Iterator[dict[str, Path]]:
    """Two agencies of this run, each with a password file; revoked afterwards."""
    files = {}
    for name in (f"so-a-{run_id}", f"so-b-{run_id}"):
        password = generate_password()
        provision_agency(pipeline_settings.kafka, name, password)
        files[name] = tmp_path / f"{name}.password"
        files[name].write_text(password + "\n")
    yield files
    for name in files:
        revoke_agency(pipeline_settings.kafka, name)


def agency_config(
    settings: Settings, local: LocalServices, agency: str, user: str, password: Path, tmp: Path
) -> Settings:
    """A collector at ``agency`` with ``user``'s credential over the agency listener."""
    values = settings.model_dump(mode="json")
    values["kafka"].update(
        bootstrap_servers=[local.agency_bootstrap],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password_file=str(password),
        ssl_cafile=str(local.ca_file),
    )
    values["agency"] = {"id": agency, "tier": "province"}
    log = tmp / f"{agency}-{user}.log"
    log.touch()
    values["collector"] = {
        "id": f"c-{agency}",
        "host": f"{agency}-srv",
        "paths": [str(log)],
        "checkpoint_file": str(tmp / f"{agency}-{user}.json"),
        "heartbeat_interval_s": 1,
        "poll_interval_s": 0.1,
        "ack_timeout_s": 5,
    }
    values.pop("local", None)
    return load_settings(**values)


def read_topic(settings: Settings, topic: str, seconds: float) -> list[Any]:
    consumer = KafkaConsumer(
        **client_options(settings.kafka), consumer_timeout_ms=1000, auto_offset_reset="earliest"
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        found: list[Any] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found.extend(consumer)
        return found
    finally:
        consumer.close()


def wait_for(condition: Any, what: str, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"{what} within {timeout_s:.0f} s")


def test_an_agency_speaks_only_for_itself(
    pipeline_settings: Settings,
    local: LocalServices,
    agencies: dict[str, Path],
    run_id: str,
    tmp_path: Path,
) -> None:
    a, b = list(agencies)
    topics = pipeline_settings.kafka.topics
    ensure_topics(pipeline_settings.kafka)
    config = tmp_path / "soc.yaml"
    config.write_text(yaml.safe_dump(pipeline_settings.model_dump(mode="json")))
    detector = Stages(config, tmp_path)
    detector.start("detect", "detect")
    try:
        # A's collector ships A's line.
        honest = agency_config(pipeline_settings, local, a, a, agencies[a], tmp_path)
        collector = Collector(honest)
        stop = threading.Event()
        thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
        thread.start()
        line = "Nov 27 10:00:00 srv sshd[1]: Failed password for root from 203.0.113.7 port 22 ssh2"
        with honest.collector.paths[0].open("a") as out:
            out.write(line + "\n")

        # B's name with A's credential: refused by the broker, and `collect check` says so.
        impostor = agency_config(pipeline_settings, local, b, a, agencies[a], tmp_path)
        impostor_file = tmp_path / "impostor.yaml"
        impostor_file.write_text(
            yaml.safe_dump(impostor.model_dump(mode="json", exclude={"local"}))
        )
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "socpipe",
                "collect",
                "check",
                "--config",
                str(impostor_file),
                "--kafka-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert check.returncode == 1, check.stdout + check.stderr
        assert "may not write" in check.stdout
        assert f"{topics.raw}.{b}" in check.stdout

        # A's credential, records claiming B, in A's own topic: the detector refuses them.
        agency_b = AgencyRef(id=b, tier=Tier.PROVINCE)
        source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
        forged = RawBatch(
            records=[
                RawRecord(
                    id=RawRecord.make_id("forger", source, "1:1", 0),
                    agency=agency_b,
                    collector=CollectorRef(id="forger", version="0"),
                    host="b-srv",
                    source=source,
                    received=datetime.now(UTC),
                    position=0,
                    message=line.replace("203.0.113.7", "198.51.100.99"),
                )
            ]
        )
        options = client_options(honest.kafka)
        producer = KafkaProducer(**options)
        producer.send(f"{topics.raw}.{a}", key=b"x", value=forged.to_json()).get(timeout=60)
        producer.close()

        def events() -> list[dict[str, Any]]:
            return [orjson.loads(m.value) for m in read_topic(pipeline_settings, topics.events, 3)]

        found = wait_for(
            lambda: [e for e in events() if e.get("organization", {}).get("id") == a],
            "A's event",
        )
        assert found[0]["source"]["ip"] == "203.0.113.7"
        letters = wait_for(
            lambda: [orjson.loads(m.value) for m in read_topic(pipeline_settings, topics.dlq, 3)],
            "the forged message in the DLQ",
        )
        assert any(f"claim agency {b}" in letter["reason"] for letter in letters)
        assert not [e for e in events() if e.get("organization", {}).get("id") == b]

        # A's heartbeats reach soc.heartbeats, checked against the topic they came on.
        beats = wait_for(
            lambda: [
                orjson.loads(m.value)
                for m in read_topic(pipeline_settings, topics.heartbeats, 3)
                if m.key == f"collector/{a}/c-{a}".encode()
            ],
            "A's heartbeat on soc.heartbeats",
        )
        assert beats[-1]["via"] == f"{topics.raw}.{a}"
        assert beats[-1]["sources"][0]["read"] >= 1
        stop.set()
        thread.join(60)
        detector.check()
    finally:
        detector.stop_all()
