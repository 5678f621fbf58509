"""``socpipe rules publish`` and ``socpipe rules status``: the rule set in force, and who runs it.

Publishing packs the rules (``detectors.sigma.bundle``), loads and compiles them in a scratch
folder exactly as a detector will, and refuses to publish a set with errors, so a bad set never
reaches ``soc.rules``; detectors check again on their side. Status reads the bundle in force
from ``soc.rules`` and each detector's last word on ``soc.heartbeats`` (``detectors.reload``).
"""

from __future__ import annotations

import getpass
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from detectors.reload import STATUS_KIND
from detectors.sigma.bundle import (
    MAX_BUNDLE_BYTES,
    RULESET_KEY,
    Bundle,
    BundleError,
    bundle_files,
    check,
    manifest_of,
    pack,
    refusals,
    unpack,
)
from detectors.sigma.hunt import EngineReport
from socpipe.kafka import client_options, ensure_topics, make_producer
from socpipe.settings import Settings


@dataclass
class PublishResult:
    """What publishing did: the bundle, its check, and whether it went out."""

    bundle: Bundle
    report: EngineReport
    errors: list[str] = field(default_factory=list)
    published: bool = False


def publish(
    paths: Sequence[Path], settings: Settings, *, pipelines: Path | None = None
) -> PublishResult:
    """Pack, check and (when the check passes) publish the rules under ``paths``."""
    files = bundle_files(paths, pipelines)
    publisher = f"{getpass.getuser()}@{os.uname().nodename}"
    bundle = pack(files, placeholders=settings.detector.placeholders, publisher=publisher)
    with tempfile.TemporaryDirectory(prefix="socpipe-bundle-") as scratch:
        report = check(unpack(bundle.data, Path(scratch)))
    result = PublishResult(bundle, report, refusals(report))
    if result.errors:
        return result
    ensure_topics(settings.kafka, ["rules"])
    producer = make_producer(settings.kafka, max_request_size=MAX_BUNDLE_BYTES + (1 << 20))
    try:
        producer.send(settings.kafka.topics.rules, key=RULESET_KEY, value=bundle.data).get(
            timeout=60
        )
    finally:
        producer.close()
    result.published = True
    return result


@dataclass
class RulesStatus:
    """The bundle in force and each detector's state."""

    in_force: dict[str, Any] | None
    detectors: list[dict[str, Any]]


def status(settings: Settings, timeout_s: float = 30.0) -> RulesStatus:
    """Read ``soc.rules``' last bundle manifest and the detectors' latest status records."""
    topics = settings.kafka.topics
    ensure_topics(settings.kafka, ["rules", "heartbeats"])
    in_force: dict[str, Any] | None = None
    last = topic_values(settings, topics.rules, timeout_s)
    if last:
        try:
            in_force = manifest_of(last[-1])
            in_force["files"] = len(in_force.get("files") or [])
        except BundleError as error:
            in_force = {"error": str(error)}
    return RulesStatus(in_force, latest_statuses(settings, STATUS_KIND, "detector", timeout_s))


def latest_statuses(
    settings: Settings, kind: str, by: str, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The last status record of ``kind`` on ``soc.heartbeats`` of each process (its name in
    the field ``by``), ordered by that name."""
    latest: dict[str, dict[str, Any]] = {}
    for value in topic_values(settings, settings.kafka.topics.heartbeats, timeout_s):
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind") == kind:
            latest[str(record.get(by))] = record
    return [latest[name] for name in sorted(latest)]


def topic_values(settings: Settings, topic: str, timeout_s: float) -> list[bytes]:
    """Every value of a one-partition topic, read from its start to its end now."""
    options = client_options(settings.kafka)
    options.update(
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=64 << 20,
        fetch_max_bytes=64 << 20,
    )
    consumer = KafkaConsumer(**options)
    try:
        partitions = [
            TopicPartition(topic, number)
            for number in sorted(consumer.partitions_for_topic(topic) or [0])
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(p) < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                break
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records if record.value is not None)
        return values
    finally:
        consumer.close()


def format_status(state: RulesStatus) -> list[str]:
    """The status as lines for a terminal."""
    lines = []
    if state.in_force is None:
        lines.append("no rule set published on soc.rules: detectors run detector.rules_paths")
    else:
        manifest = state.in_force
        lines.append(
            f"in force: {manifest.get('version')} ({manifest.get('files')} files, published "
            f"{manifest.get('created')} by {manifest.get('publisher')})"
        )
    if not state.detectors:
        lines.append("no detector has reported yet")
    for record in state.detectors:
        rejected = record.get("rejected") or {}
        line = (
            f"  {record.get('detector')}: runs {record.get('version') or 'no rules'} "
            f"({record.get('source')}, {record.get('rules')} rules) as of {record.get('at')}"
        )
        if rejected:
            errors = "; ".join(rejected.get("errors", [])[:3])
            line += f"; rejected {rejected.get('version')}: {errors}"
        lines.append(line)
    return lines
