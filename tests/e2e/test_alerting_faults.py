"""``socpipe alert`` as a process over the real Kafka and Elasticsearch, under faults:
Elasticsearch stopped for 60 s in the middle of a stream, and the indexer killed with SIGKILL
while it indexes. Nothing is lost and nothing is counted twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from elasticsearch import Elasticsearch

from socpipe.elastic import make_elasticsearch
from socpipe.kafka import ensure_topics, make_producer
from socpipe.settings import Settings
from tests.support.factories import BASE_TIME, make_detection
from tests.support.services import Endpoints, elasticsearch_outage
from tests.support.stages import Stages

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.elasticsearch, pytest.mark.slow]


def _config(settings: Settings, tmp_path: Path, **alerting: Any) -> Path:
    values: dict[str, Any] = settings.model_dump(mode="json")
    values["alerting"] |= {"batch_size": 200, **alerting}
    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    return config


def _send_detections(settings: Settings, numbers: range, keys: int) -> None:
    """Detections n of ``numbers``, spread over ``keys`` alert keys, keyed as detectors key
    them (by dedup key, so one alert's detections share a partition)."""
    producer = make_producer(settings.kafka)
    for n in numbers:
        key = f"key-{n % keys}"
        detection = make_detection(n, dedup_key=key, at=BASE_TIME + timedelta(milliseconds=n))
        producer.send(settings.kafka.topics.detections, key=key.encode(), value=detection.to_json())
    producer.flush()
    producer.close()


def _send_events(settings: Settings, numbers: range) -> None:
    producer = make_producer(settings.kafka)
    for n in numbers:
        event = {
            "@timestamp": (BASE_TIME + timedelta(seconds=n)).isoformat(),
            "event": {"id": f"fault-event-{n}", "kind": "event"},
            "message": f"sự kiện {n}",
            "organization": {"id": "so-tttt"},
        }
        producer.send(settings.kafka.topics.events, value=orjson.dumps(event))
    producer.flush()
    producer.close()


def _folded(es: Elasticsearch, alias: str) -> tuple[int, int]:
    """(alerts, detections folded into them) as Elasticsearch has them now."""
    if not es.indices.exists_alias(name=alias):
        return 0, 0
    es.indices.refresh(index=alias)
    response = es.search(
        index=alias, size=0, aggs={"folded": {"sum": {"field": "count"}}}, track_total_hits=True
    )
    return response["hits"]["total"]["value"], int(response["aggregations"]["folded"]["value"])


def _wait(condition: Callable[[], bool], running: Stages, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running.check()
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_elasticsearch_away_for_sixty_seconds_loses_and_doubles_nothing(
    pipeline_settings: Settings, endpoints: Endpoints, tmp_path: Path
) -> None:
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    running = Stages(_config(settings, tmp_path), tmp_path)
    es = make_elasticsearch(settings.elasticsearch, max_retries=0)
    prefix = settings.elasticsearch.index_prefix
    alerts, events = f"{prefix}-alerts", f"{prefix}-events"

    def events_indexed() -> int:
        if not es.indices.exists_alias(name=events):
            return 0
        es.indices.refresh(index=events)
        return int(es.count(index=events)["count"])

    try:
        running.start("alert", "alert")
        _send_detections(settings, range(0, 1000), keys=20)
        _send_events(settings, range(0, 500))
        _wait(lambda: _folded(es, alerts) == (20, 1000), running, "the first half", 120)
        _wait(lambda: events_indexed() == 500, running, "the first events", 120)

        with elasticsearch_outage(endpoints):
            _send_detections(settings, range(1000, 2000), keys=20)
            _send_events(settings, range(500, 1000))
            time.sleep(60)
            running.check()  # the indexer waits; it did not die

        _wait(lambda: _folded(es, alerts) == (20, 2000), running, "the second half", 180)
        _wait(lambda: events_indexed() == 1000, running, "every event", 180)
        time.sleep(3)  # anything doubled late would show now
        assert _folded(es, alerts) == (20, 2000)
        assert events_indexed() == 1000
        hits = es.search(index=alerts, size=20)["hits"]["hits"]
        for hit in hits:
            ids = hit["_source"]["detection_ids"]
            assert len(ids) == len(set(ids)) == 100  # the last hundred, none twice
            assert hit["_source"]["count"] == 100
    finally:
        running.stop_all()
        es.close()
    log = (tmp_path / "alert.log").read_text(errors="replace")
    assert "Elasticsearch unavailable" in log and "answers again" in log


def _alerts_by_id(es: Elasticsearch, alias: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, size=1000, sort=[{"id": "asc"}])["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def test_an_indexer_killed_while_indexing_ends_as_a_clean_run(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings
    ensure_topics(settings.kafka)
    total, keys = 30_000, 300
    _send_detections(settings, range(total), keys=keys)
    config = _config(settings, tmp_path, index_events=False)
    running = Stages(config, tmp_path)
    es = make_elasticsearch(settings.elasticsearch)
    prefix = settings.elasticsearch.index_prefix
    clean = {"SOCPIPE_ELASTICSEARCH__INDEX_PREFIX": f"{prefix}-clean"}
    killed = {
        "SOCPIPE_ELASTICSEARCH__INDEX_PREFIX": f"{prefix}-killed",
        "SOCPIPE_ALERTING__GROUP_ID": f"{settings.alerting.group_id}-killed",
    }
    clean_alias, killed_alias = f"{prefix}-clean-alerts", f"{prefix}-killed-alerts"
    try:
        running.start("clean", "alert", env=clean)
        running.start("killed", "alert", env=killed)
        _wait(lambda: 0 < _folded(es, killed_alias)[1] < total, running, "indexing under way", 120)
        running.kill("killed")
        partial = _folded(es, killed_alias)[1]
        running.start("killed", "alert", env=killed)
        _wait(lambda: _folded(es, killed_alias) == (keys, total), running, "the restart", 300)
        _wait(lambda: _folded(es, clean_alias) == (keys, total), running, "the clean run", 300)
    finally:
        running.stop_all()
    try:
        assert 0 < partial < total
        assert _alerts_by_id(es, killed_alias) == _alerts_by_id(es, clean_alias)
    finally:
        es.close()
