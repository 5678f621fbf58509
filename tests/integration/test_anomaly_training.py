"""``socpipe model train --from elasticsearch`` as a process on the real Elasticsearch: the
baseline is the indexed events of the period, an anomaly alert analysts closed as a false
positive is left out and raises its user's threshold, and the model file reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from alerting.store import ElasticsearchAlertStore, SourcedDetection
from api.triage import TriageChange, Verdict
from detectors.anomaly.model import load
from socpipe.elastic import make_elasticsearch
from socpipe.records import (
    AlertStatus,
    AnomalyDetail,
    Detection,
    DetectorRef,
    Entities,
    RuleRef,
    Severity,
)
from socpipe.settings import Settings, Tier
from tests.support.anomaly import baseline, logon
from tests.support.cli import run_socpipe
from tests.support.events import index_events

pytestmark = pytest.mark.elasticsearch


def test_training_from_elasticsearch_leaves_out_false_positives(
    pipeline_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings
    es = make_elasticsearch(settings.elasticsearch)
    start = (datetime.now(UTC) - timedelta(days=10)).replace(hour=1, minute=0, second=0,
                                                             microsecond=0)  # fmt: skip
    events: list[dict[str, Any]] = list(baseline(days=9, start=start))
    night = start + timedelta(days=4, hours=18)  # a backup job's failures at 01:00 in Hà Nội
    events += [logon("user2", night + timedelta(seconds=k), failed=True, host=f"s{k}")
               for k in range(30)]  # fmt: skip
    index_events(es, settings, events)
    _close_as_false_positive(es, settings, "user2", night)

    config = tmp_path / "socpipe.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json"), allow_unicode=True))
    output = tmp_path / "user-1h.skops"
    trained = run_socpipe(
        config, "model", "train", "--from", "elasticsearch", "--since", "14d",
        "--entity", "user", "--window", "1h", "-o", str(output),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    model = load(output)
    meta = model.meta
    assert meta.events == len(events)
    assert meta.excluded_windows == 1
    assert meta.entity_thresholds["so-tttt/user2"] > meta.threshold
    assert meta.trained_from.startswith("elasticsearch")
    shown = run_socpipe(config, "model", "show", str(output))
    assert shown.returncode == 0 and f'"version": "{meta.version}"' in shown.stdout
    # A file that is not a model is refused with its name.
    fake = tmp_path / "fake.skops"
    fake.write_bytes(b"not a model")
    refused = run_socpipe(config, "model", "show", str(fake))
    assert refused.returncode == 2 and "fake.skops" in refused.stderr
    es.close()


def _close_as_false_positive(
    es: Elasticsearch, settings: Settings, user: str, at: datetime
) -> None:
    """An anomaly alert of ``user``'s window at ``at``, closed by an analyst as a false
    positive through the alert store, as the API does."""
    detection = Detection(
        id=f"anomaly-{user}-{int(at.timestamp())}",
        timestamp=at,
        detector=DetectorRef(type="anomaly", id="user-1h", version="model-0"),
        rule=RuleRef(id="user-1h", title="Unusual account activity (1 h)", level=Severity.HIGH),
        severity=Severity.HIGH,
        risk_score=Severity.HIGH.risk_score,
        entities=Entities(agency="so-tttt", tier=Tier.PROVINCE, user=user),
        dedup_key=f"anomaly-{user}",
        event_ids=["window"],
        anomaly=AnomalyDetail(score=0.7, threshold=0.5, features=[]),
    )
    store = ElasticsearchAlertStore(es, settings.elasticsearch.index_prefix, 3600)
    store.ensure_ready()
    result = store.apply([SourcedDetection(detection, "soc.detections:0", 1)])
    assert result.failed == []
    es.indices.refresh(index=f"{store.alias}-*")
    (hit,) = es.search(index=store.alias, query={"term": {"dedup_key": detection.dedup_key}})[
        "hits"
    ]["hits"]
    change = TriageChange(
        by="lan.nguyen",
        at=datetime.now(UTC),
        status=AlertStatus.FALSE_POSITIVE,
        verdict=Verdict.FALSE_POSITIVE,
        reason="the nightly backup job",
    )
    assert store.update(hit["_id"], change).outcome == "updated"
    es.indices.refresh(index=f"{store.alias}-*")
