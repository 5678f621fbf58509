"""Each agency's identity on the real broker: SCRAM-SHA-512 over TLS on the agency listener, and
ACLs that let an agency's credential write its own raw topic and nothing else."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)
from kafka.errors import (
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from socpipe.agencies import (
    AgencyError,
    Grant,
    agency_topic,
    describe_agencies,
    generate_password,
    provision_agency,
    revoke_agency,
)
from socpipe.kafka import ensure_topics, make_admin, make_consumer, make_producer
from socpipe.localservices import LocalServices
from socpipe.settings import KafkaSettings, LocalServicesSettings, Settings, load_settings
from tests.support.services import Endpoints

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
# How long a client refused at authentication keeps retrying before it reports a timeout.
REFUSED = {"bootstrap_timeout_ms": 10_000}


@pytest.fixture
def local(endpoints: Endpoints) -> LocalServices:
    """The local services, whose broker has the agency listener (containers have none)."""
    if endpoints.kafka_backend != "local":
        pytest.skip("the agency listener is part of deploy/local's broker only")
    return LocalServices(load_settings().local)


@pytest.fixture
def soc(local: LocalServices, pipeline_settings: Settings, run_id: str) -> Iterator[KafkaSettings]:
    """The SOC's own (plaintext, super-user) connection to the local broker; agencies of this
    test are revoked and their topics dropped afterwards."""
    kafka = pipeline_settings.kafka
    ensure_topics(kafka, ["raw", "events"])
    yield kafka
    for access in describe_agencies(kafka):
        if access.user.endswith(run_id):
            revoke_agency(kafka, access.user)
    admin = make_admin(kafka)
    try:
        mine = [t for t in admin.list_topics() if t.startswith(f"{kafka.topics.raw}.")]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def agency_settings(local: LocalServices, user: str, password: str) -> KafkaSettings:
    """What a collector at an agency is configured with."""
    return KafkaSettings(
        bootstrap_servers=[local.agency_bootstrap],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password=SecretStr(password),
        ssl_cafile=local.ca_file,
        client_id=f"collector-{user}",
    )


def send(producer: KafkaProducer, topic: str, value: bytes) -> Any:
    return producer.send(topic, key=b"k", value=value).get(timeout=60)


def test_each_agency_writes_its_own_topic_and_nothing_else(
    local: LocalServices, soc: KafkaSettings, run_id: str
) -> None:
    a, b = f"so-a-{run_id}", f"so-b-{run_id}"
    password_a, password_b = generate_password(), generate_password()
    result_a = provision_agency(soc, a, password_a)
    provision_agency(soc, b, password_b)
    assert result_a.topic == f"{soc.topics.raw}.{a}" == agency_topic(soc, a)
    assert result_a.topic_created and result_a.credential == "created"
    assert {(g.operation, g.resource) for g in result_a.grants_added} == {
        ("WRITE", result_a.topic),
        ("DESCRIBE", result_a.topic),
    }

    producer_a = make_producer(agency_settings(local, a, password_a))
    try:
        metadata = send(producer_a, agency_topic(soc, a), b"from A")
        for forbidden in (agency_topic(soc, b), soc.topics.raw, soc.topics.events):
            with pytest.raises(TopicAuthorizationFailedError):
                send(producer_a, forbidden, b"A pretending")
    finally:
        producer_a.close()

    # The SOC reads what A wrote on its own, plaintext listener.
    consumer = make_consumer(
        soc, f"read-{run_id}", [agency_topic(soc, a)], consumer_timeout_ms=30_000
    )
    try:
        received = next(iter(consumer))
    finally:
        consumer.close()
    assert (received.partition, received.offset) == (metadata.partition, metadata.offset)
    assert received.value == b"from A"

    producer_b = make_producer(agency_settings(local, b, password_b))
    try:
        assert send(producer_b, agency_topic(soc, b), b"from B").topic == agency_topic(soc, b)
        with pytest.raises(TopicAuthorizationFailedError):
            send(producer_b, agency_topic(soc, a), b"B pretending")
    finally:
        producer_b.close()


def test_a_wrong_password_is_not_authenticated(
    local: LocalServices, soc: KafkaSettings, run_id: str
) -> None:
    agency = f"so-pw-{run_id}"
    password = generate_password()
    provision_agency(soc, agency, password)
    # The broker answers a failed SCRAM exchange with an error or, as often over TLS, by closing
    # the connection; kafka-python retries either until its bootstrap times out.
    with pytest.raises(KafkaTimeoutError):
        make_producer(agency_settings(local, agency, generate_password()), **REFUSED)
    # The same settings with the right password connect: the password made the difference.
    producer = make_producer(agency_settings(local, agency, password))
    try:
        assert send(producer, agency_topic(soc, agency), b"right").topic == agency_topic(
            soc, agency
        )
    finally:
        producer.close()


def test_revoking_removes_access_at_once_and_keeps_the_records(
    local: LocalServices, soc: KafkaSettings, run_id: str
) -> None:
    agency = f"so-rv-{run_id}"
    password = generate_password()
    provision_agency(soc, agency, password)
    topic = agency_topic(soc, agency)
    producer = make_producer(agency_settings(local, agency, password))
    try:
        send(producer, topic, b"before")
        revoked = revoke_agency(soc, agency)
        assert revoked.credential_removed
        assert {g.operation for g in revoked.grants_removed} == {"WRITE", "DESCRIBE"}
        # The connection made before is still authenticated, but the grants are gone.
        with pytest.raises(TopicAuthorizationFailedError):
            send(producer, topic, b"after")
    finally:
        producer.close()
    assert agency not in {access.user for access in describe_agencies(soc)}
    assert topic in make_admin_topics(soc)
    # A new connection is refused: the credential is gone too.
    with pytest.raises(KafkaTimeoutError):
        make_producer(agency_settings(local, agency, password), **REFUSED)
    again = revoke_agency(soc, agency)
    assert not again.credential_removed and again.grants_removed == ()


def make_admin_topics(settings: KafkaSettings) -> set[str]:
    admin = make_admin(settings)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_provisioning_again_changes_the_password_and_drops_extra_grants(
    local: LocalServices, soc: KafkaSettings, run_id: str
) -> None:
    agency = f"so-re-{run_id}"
    provision_agency(soc, agency, generate_password())
    topic = agency_topic(soc, agency)
    admin = make_admin(soc)
    try:
        extra = ACL(
            principal=f"User:{agency}",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType.TOPIC, soc.topics.events, ACLResourcePatternType.LITERAL
            ),
        )
        assert not admin.create_acls([extra])["failed"]
    finally:
        admin.close()

    new_password = generate_password()
    again = provision_agency(soc, agency, new_password)
    assert again.credential == "updated" and not again.topic_created
    assert again.grants_added == ()
    assert again.grants_removed == (Grant.of(extra),)
    (access,) = [a for a in describe_agencies(soc) if a.user == agency]
    assert access.mechanisms == ("SCRAM_SHA_512",)
    assert {(g.permission, g.operation, g.resource_type, g.resource) for g in access.grants} == {
        ("ALLOW", "WRITE", "TOPIC", topic),
        ("ALLOW", "DESCRIBE", "TOPIC", topic),
    }
    producer = make_producer(agency_settings(local, agency, new_password))
    try:
        assert send(producer, topic, b"new password").topic == topic
    finally:
        producer.close()


def test_the_agency_topic_has_the_raw_topics_spec(soc: KafkaSettings, run_id: str) -> None:
    agency = f"so-sp-{run_id}"
    provision_agency(soc, agency, generate_password())
    admin = make_admin(soc)
    try:
        (meta,) = admin.describe_topics([agency_topic(soc, agency)])
    finally:
        admin.close()
    assert len(meta["partitions"]) == soc.topic_specs["raw"].partitions


@pytest.mark.parametrize("bad", ["", "A", "So-Noi-Vu", "-so", "so_noi_vu", "so.noi", "x" * 64])
def test_invalid_agency_ids_are_refused(soc: KafkaSettings, bad: str) -> None:
    with pytest.raises(AgencyError, match="invalid agency id"):
        provision_agency(soc, bad, generate_password())
    with pytest.raises(AgencyError, match="invalid agency id"):
        agency_topic(soc, bad)


@pytest.mark.parametrize("bad", ["short-password", " " + "p" * 20, "p" * 20 + "\n"])
def test_weak_or_padded_passwords_are_refused(soc: KafkaSettings, bad: str) -> None:
    with pytest.raises(AgencyError) as caught:
        provision_agency(soc, "so-weak", bad)
    assert bad.strip() not in str(caught.value)  # never echoed
    assert "so-weak" not in {access.user for access in describe_agencies(soc)}


# --- the broker picks the agency listener up -------------------------------------------------

OLD_TEMPLATE = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${controller_port}
listeners=PLAINTEXT://127.0.0.1:${kafka_port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:${kafka_port},CONTROLLER://127.0.0.1:${controller_port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${log_dirs}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
"""


@pytest.mark.slow
def test_up_restarts_a_broker_formatted_and_started_before_the_agency_listener(
    local: LocalServices, tmp_path: Path
) -> None:
    """A machine whose broker was formatted and started under the old template gets the agency
    listener from the next `up`, without a new format; a further `up` restarts nothing."""
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    for entry in (local.home / "cache").iterdir():
        (home / "cache" / entry.name).symlink_to(entry)
    old_deploy = tmp_path / "old-deploy"
    (old_deploy / "kafka").mkdir(parents=True)
    shutil.copy(REPO / "deploy/local/pom.xml", old_deploy / "pom.xml")
    shutil.copy(REPO / "deploy/local/kafka/log4j2.properties", old_deploy / "kafka")
    (old_deploy / "kafka" / "server.properties").write_text(OLD_TEMPLATE)
    settings = LocalServicesSettings(
        home=home,
        kafka_port=29092,
        kafka_controller_port=29093,
        kafka_agency_port=29094,
        kafka_heap="384m",
    )
    old = LocalServices(settings, deploy_dir=old_deploy)
    new = LocalServices(settings)
    try:
        old.up(names=["kafka"])
        old_pid = kafka_pid(old)
        meta = (home / "data" / "kafka" / "meta.properties").read_text()
        assert "AGENCY" not in new.kafka_properties.read_text()

        messages: list[str] = []
        new.up(progress=messages.append, names=["kafka"])
        new_pid = kafka_pid(new)
        assert new_pid is not None and new_pid != old_pid
        assert any("restarting" in message for message in messages), messages
        assert (home / "data" / "kafka" / "meta.properties").read_text() == meta  # no new format
        assert new.agency_bootstrap == "127.0.0.1:29094"

        kafka = KafkaSettings(bootstrap_servers=[new.kafka_bootstrap])
        password = generate_password()
        provision_agency(kafka, "so-restart", password)
        producer = make_producer(agency_settings(new, "so-restart", password))
        try:
            assert send(producer, agency_topic(kafka, "so-restart"), b"x").offset == 0
        finally:
            producer.close()

        new.up(names=["kafka"])
        assert kafka_pid(new) == new_pid  # same configuration: left running
    finally:
        new.down()


def kafka_pid(services: LocalServices) -> int | None:
    return next(status.pid for status in services.status() if status.name == "kafka")
