"""Hot reload on the real Kafka: a published rule set reaches a running detector's watcher, a
bundle that does not load is rejected while the previous set keeps running, and
`socpipe rules status` tells which version each detector runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from detectors.reload import RuleSetWatcher, status_value
from detectors.sigma.bundle import RULESET_KEY, bundle_files, pack
from detectors.sigma.detection import SigmaDetector
from detectors.sigma.publish import publish, status
from socpipe.kafka import ensure_topics, make_producer
from socpipe.settings import Settings

pytestmark = [pytest.mark.kafka]

RULES = Path(__file__).resolve().parents[2] / "rules" / "socpipe"

EXTRA_RULE = """
title: Sudo to root by a web server account
id: 4b0c7a52-2f51-4f40-9d7c-0f0d3f7a1c11
logsource:
  product: linux
  service: sudo
detection:
  selection:
    user.name: www-data
  condition: selection
level: high
"""

BROKEN_RULE = """
title: A condition naming a selection that does not exist
id: 0d6f8c53-8a1f-4a8e-bb7e-3c8e2b8a9f01
logsource:
  product: linux
  service: sshd
detection:
  selection:
    event.action: ssh_login
  condition: selection and missing
level: low
"""


def _watcher(settings: Settings, tmp_path: Path, statuses: list[dict[str, Any]]) -> RuleSetWatcher:
    return RuleSetWatcher(
        settings.kafka,
        unpack_dir=tmp_path / "rulesets",
        publish_status=statuses.append,
        poll_timeout_ms=200,
    )


def _wait_for(watcher: RuleSetWatcher, timeout_s: float = 60) -> SigmaDetector:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        taken = watcher.take()
        if taken is not None:
            return taken
        time.sleep(0.2)
    raise AssertionError("no new rule set reached the watcher")


def test_published_sets_reach_a_running_detector(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    statuses: list[dict[str, Any]] = []
    watcher = _watcher(pipeline_settings, tmp_path, statuses)
    ensure_topics(pipeline_settings.kafka, ["rules", "heartbeats"])
    assert watcher.initial(timeout_s=30) is None  # nothing published yet
    first = publish([RULES], pipeline_settings)
    assert first.published, first.errors
    watcher.start()
    try:
        running = _wait_for(watcher)
        assert running.version == first.bundle.version
        watcher.running(running.version, "soc.rules", running.engine.rule_count)

        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "sudo_www_data.yml").write_text(EXTRA_RULE, encoding="utf-8")
        second = publish([RULES, extra], pipeline_settings)
        assert second.published and second.bundle.version != first.bundle.version
        swapped = _wait_for(watcher)
        assert swapped.version == second.bundle.version
        assert swapped.engine.rule_count == running.engine.rule_count + 1
    finally:
        watcher.stop()

    # A new detector starting now loads the set in force before it reads any event.
    late = _watcher(pipeline_settings, tmp_path / "late", [])
    try:
        initial = late.initial(timeout_s=30)
        assert initial is not None and initial.version == second.bundle.version
    finally:
        late.stop()
    assert statuses[-1]["version"] == first.bundle.version  # what it said it runs


def test_a_bundle_that_does_not_load_is_rejected_and_the_old_set_keeps_running(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "broken.yml").write_text(BROKEN_RULE, encoding="utf-8")
    # publish checks first: nothing reaches soc.rules.
    refused = publish([broken], pipeline_settings)
    assert not refused.published
    assert any("missing" in message for message in refused.errors)

    good = publish([RULES], pipeline_settings)
    statuses: list[dict[str, Any]] = []
    watcher = _watcher(pipeline_settings, tmp_path, statuses)
    running = watcher.initial(timeout_s=30)
    assert running is not None and running.version == good.bundle.version
    watcher.running(running.version, "soc.rules", running.engine.rule_count)
    watcher.start()
    try:
        # Written past publish's check, as an older socpipe or another tool might.
        bad = pack(bundle_files([broken]))
        producer = make_producer(pipeline_settings.kafka)
        producer.send(pipeline_settings.kafka.topics.rules, key=RULESET_KEY, value=bad.data).get(
            timeout=30
        )
        producer.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not watcher.state.rejected:
            time.sleep(0.2)
        assert watcher.state.rejected["version"] == bad.version
        assert any("missing" in error for error in watcher.state.rejected["errors"])
        assert watcher.take() is None  # nothing to swap in
        assert watcher.state.version == good.bundle.version
        assert statuses[-1]["rejected"]["version"] == bad.version
    finally:
        watcher.stop()


def test_status_names_the_set_in_force_and_each_detector(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    published = publish([RULES], pipeline_settings)
    ensure_topics(pipeline_settings.kafka, ["heartbeats"])
    producer = make_producer(pipeline_settings.kafka)

    watcher = RuleSetWatcher(
        pipeline_settings.kafka,
        unpack_dir=tmp_path / "rulesets",
        publish_status=lambda s: producer.send(
            pipeline_settings.kafka.topics.heartbeats,
            key=b"detector-a",
            value=status_value("detector-a", s),
        ).get(timeout=30),
    )
    try:
        running = watcher.initial(timeout_s=30)
        assert running is not None
        watcher.running(running.version, "soc.rules", running.engine.rule_count)
    finally:
        watcher.stop()
        producer.close()
    state = status(pipeline_settings)
    assert state.in_force is not None and state.in_force["version"] == published.bundle.version
    (detector,) = state.detectors
    assert detector["detector"] == "detector-a"
    assert detector["version"] == published.bundle.version
    assert detector["rules"] == running.engine.rule_count
