"""Kafka plumbing on kafka-python: client options from settings, producers, consumers, topics."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from socpipe.settings import KafkaSettings, TopicSpec, read_secret_file

log = logging.getLogger(__name__)


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection, TLS and SASL options shared by producers, consumers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_cafile:
            options["ssl_cafile"] = str(settings.ssl_cafile)
        if settings.ssl_certfile:
            options["ssl_certfile"] = str(settings.ssl_certfile)
        if settings.ssl_keyfile:
            options["ssl_keyfile"] = str(settings.ssl_keyfile)
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "SCRAM-SHA-512"
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
        elif settings.sasl_password_file is not None:
            options["sasl_plain_password"] = read_secret_file(
                settings.sasl_password_file, "kafka.sasl_password_file"
            )
    return options


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for every in-sync replica: nothing is acknowledged that can be lost."""
    options = client_options(settings)
    options.update(
        acks="all",
        retries=2147483647,
        linger_ms=20,
        max_in_flight_requests_per_connection=1,
        compression_type=None if settings.compression == "none" else settings.compression,
        max_request_size=16 * 1024 * 1024 + 64 * 1024,
    )
    options.update(overrides)
    return KafkaProducer(**options)


def make_consumer(
    settings: KafkaSettings,
    group_id: str,
    topics: Iterable[str],
    *,
    pattern: str | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer in ``group_id`` that commits only when told to (after the next hop acked).

    With ``pattern`` (a regular expression over topic names) it follows every matching topic,
    including those created later (found within ``metadata_max_age_ms``), instead of ``topics``.
    """
    options = client_options(settings)
    options.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        session_timeout_ms=30_000,
        heartbeat_interval_ms=3_000,
    )
    options.update(overrides)
    consumer = KafkaConsumer(**options)
    if pattern is not None:
        consumer.subscribe(pattern=pattern)
    else:
        consumer.subscribe(list(topics))
    return consumer


def raw_topics_pattern(raw: str) -> str:
    """The topics detectors read: ``raw`` itself and every agency's ``<raw>.<agency id>``."""
    return rf"^{re.escape(raw)}(\.[a-z0-9][a-z0-9-]{{1,62}})?$"


def agency_of_topic(raw: str, topic: str) -> str | None:
    """The agency whose credential alone may write ``topic`` (``<raw>.<agency>``); None for
    ``raw`` itself, which only the SOC's own processes write."""
    if topic.startswith(raw + "."):
        return topic[len(raw) + 1 :]
    return None


def make_admin(settings: KafkaSettings) -> KafkaAdminClient:
    """An admin client with the same connection options."""
    return KafkaAdminClient(**client_options(settings))


def ensure_topics(settings: KafkaSettings, names: Iterable[str] | None = None) -> list[str]:
    """Create the pipeline's topics that do not exist yet, with partitions and retention from
    ``settings.topic_specs``. Returns the names created."""
    wanted = settings.topics.all()
    logical = list(names) if names is not None else list(wanted)
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        new_topics = []
        for name in logical:
            topic = wanted[name]
            if topic in existing:
                continue
            spec = settings.topic_specs[name]
            new_topics.append(
                NewTopic(
                    name=topic,
                    num_partitions=spec.partitions,
                    replication_factor=spec.replication_factor,
                    topic_configs=topic_configs(spec),
                )
            )
        created: list[str] = []
        for topic_obj in new_topics:
            try:
                admin.create_topics([topic_obj], validate_only=False)
                created.append(topic_obj.name)
                log.info(
                    "created topic %s (%d partitions)", topic_obj.name, topic_obj.num_partitions
                )
            except TopicAlreadyExistsError:
                # Another process created it between our listing and now.
                pass
        # A topic made before its spec asked for larger records gets them now (idempotent).
        resized = [
            ConfigResource(
                ConfigResourceType.TOPIC,
                wanted[name],
                configs={"max.message.bytes": str(settings.topic_specs[name].max_message_bytes)},
            )
            for name in logical
            if wanted[name] in existing and settings.topic_specs[name].max_message_bytes
        ]
        if resized:
            admin.alter_configs(resized)
        return created
    finally:
        admin.close()


def topic_configs(spec: TopicSpec) -> dict[str, str]:
    """The topic-level configs of ``spec``, as Kafka's admin API takes them."""
    configs = {"retention.ms": str(spec.retention_ms), "cleanup.policy": spec.cleanup_policy}
    if spec.max_message_bytes is not None:
        configs["max.message.bytes"] = str(spec.max_message_bytes)
    return configs
