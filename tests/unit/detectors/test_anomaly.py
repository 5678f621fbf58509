"""The anomaly detector's parts: the baseline-deviation transformer (scikit-learn's common
estimator checks, and what it computes), windows of ECS events, training, judging with an
explanation, and model files (skops, refusing foreign types)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.utils.estimator_checks import check_estimator

from detectors.anomaly.features import AGGREGATES, BaselineDeviation
from detectors.anomaly.model import dumps, loads, train
from detectors.anomaly.training import events_from_file, span
from detectors.anomaly.windows import BASE_FEATURES, UNSEEN, Templates, Windows, WindowSpec
from socpipe.errors import ConfigError
from tests.support.anomaly import BASE, baseline, logon


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_the_featurizer_passes_scikit_learn_s_common_checks() -> None:
    results = check_estimator(BaselineDeviation(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed
    # The one check not run: array-API input, which needs SciPy's array-API mode (the
    # transformer works on NumPy arrays and does not claim array-API support).
    not_run = {r["check_name"] for r in results if r["status"] != "passed"}
    assert not_run <= {"check_array_api_input"}
    assert len(results) > 40


def test_deviation_is_measured_in_units_of_the_usual_range() -> None:
    rng = np.random.default_rng(0)
    baseline = np.column_stack([rng.integers(0, 3, 1000), np.full(1000, 3.0), np.zeros(1000)])
    step = BaselineDeviation(low_quantile=0.0, high_quantile=1.0).fit(baseline)
    assert list(step.low_) == [0, 3, 0] and list(step.high_) == [2, 3, 0]
    out = step.transform(np.array([[45.0, 0.0, 7.0], [1.0, 3.0, 0.0]]))
    names = list(step.get_feature_names_out(["failures", "replicas", "template.9"]))
    assert names == [
        "failures.deviation",
        "replicas.deviation",
        "template.9.deviation",
        *AGGREGATES,
    ]
    # 45 failures where 0–2 is usual: (45 - 2) / 2; 3 replicas missing: 3 / 1 (the least span).
    assert out[0, :3].tolist() == [21.5, 3.0, 7.0]
    assert out[0, 3:].tolist() == [31.5, 3, np.log1p(7.0), 1]  # total, how many, novel, missing
    assert out[1].tolist() == [0, 0, 0, 0, 0, 0, 0]
    explained = step.explain([45.0, 0.0, 7.0], ["failures", "replicas", "template.9"], top=2)
    assert [e["feature"] for e in explained] == ["failures", "template.9"]
    assert explained[0] == {"feature": "failures", "value": 45.0, "low": 0.0, "high": 2.0,
                            "weight": round(21.5 / 31.5, 3)}  # fmt: skip


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="low_quantile < high_quantile"):
        BaselineDeviation(low_quantile=0.9, high_quantile=0.1).fit(np.ones((5, 2)))
    with pytest.raises(ValueError, match="min_span"):
        BaselineDeviation(min_span=0).fit(np.ones((5, 2)))


def test_windows_count_per_entity_and_hour_in_vietnam_s_working_hours() -> None:
    windows = Windows(WindowSpec("user", 3600))
    night = datetime(2026, 11, 2, 19, 30, tzinfo=UTC)  # 02:30 in Hà Nội
    for k in range(3):
        windows.add(logon("an", night + timedelta(minutes=k), failed=True, host=f"h{k}"))
    windows.add(logon("an", BASE + timedelta(minutes=5)))  # 08:05 there: working hours
    assert not windows.add({"@timestamp": BASE.isoformat(), "event": {}})  # nobody's
    keys, rows = windows.take()
    by_start = {
        key.start: dict(zip(windows.features, row, strict=True))
        for key, row in zip(keys, rows, strict=True)
    }
    at_night = by_start[night.replace(minute=0)]
    assert at_night["authentication.failure"] == 3 and at_night["distinct.host"] == 3
    assert at_night["off_hours.share"] == 1.0 and at_night["authentication.failure_ratio"] == 1.0
    assert by_start[BASE]["off_hours.share"] == 0.0
    assert len(windows) == 0  # taken


def test_unstructured_lines_are_counted_by_template() -> None:
    miner = Templates()
    for n in range(20):
        miner.learn(f"kernel: eth0 link up speed {n} Mbps")
    windows = Windows(WindowSpec("host", 300), Templates(miner.vocabulary()))
    for line in ("kernel: eth0 link up speed 100 Mbps", "Lustre mount FAILED : bglio46"):
        windows.add({"@timestamp": BASE.isoformat(), "host": {"name": "srv"}, "event": {},
                     "message": line})  # fmt: skip
    _, rows = windows.take()
    row = dict(zip(windows.features, rows[0], strict=True))
    assert row["template.0"] == 1 and row[UNSEEN] == 1
    assert list(windows.features[: len(BASE_FEATURES)]) == list(BASE_FEATURES)


def test_a_burst_of_failures_at_night_is_judged_anomalous_and_explained() -> None:
    model = train(baseline(), WindowSpec("user", 3600), trained_from="test")
    assert model.meta.windows > 100 and model.meta.threshold == 0.5
    windows = model.windows()
    night = BASE + timedelta(days=20, hours=18)  # 01:00 in Hà Nội
    for k in range(45):
        windows.add(logon("user3", night + timedelta(seconds=k * 20), failed=True, host=f"pc{k}"))
    for n in range(3):  # an ordinary hour of another user
        windows.add(logon("user5", BASE + timedelta(days=20, hours=2, minutes=n)))
    keys, rows = windows.take()
    judged = {j.key.entity: j for j in model.judge(keys, rows)}
    burst, usual = judged["user3"], judged["user5"]
    assert burst.anomalous and not usual.anomalous and usual.features == []
    drivers = {f["feature"]: f for f in burst.features}
    assert "authentication.failure" in drivers or "distinct.host" in drivers
    failures = drivers.get("authentication.failure")
    if failures is not None:
        assert failures["value"] == 45 and failures["high"] < 45


def test_false_positives_are_left_out_and_raise_their_entity_s_threshold() -> None:
    events = list(baseline())
    spec = WindowSpec("user", 3600)
    night = BASE + timedelta(days=3, hours=18)  # a backup job's failures at 01:00
    for k in range(30):
        events.append(logon("user2", night + timedelta(seconds=k), failed=True, host=f"s{k}"))
    before = train(events, spec, trained_from="test")
    windows = before.windows()
    for k in range(30):
        windows.add(logon("user2", night + timedelta(days=7, seconds=k), failed=True, host=f"s{k}"))
    keys, rows = windows.take()
    (judged,) = before.judge(keys, rows)
    assert judged.anomalous  # the old model alerts; an analyst says: false positive
    after = train(events, spec, trained_from="test", exclude=[("so-tttt", "user2", night, night)])
    assert after.meta.excluded_windows == 1
    assert after.meta.entity_thresholds["so-tttt/user2"] > after.meta.threshold
    (again,) = after.judge(keys, rows)
    assert not again.anomalous
    # Another user doing the same still alerts: the threshold is the entity's own; and so does
    # an account of the same name at another agency (another person).
    other = [dataclasses.replace(keys[0], entity="user6")]
    assert after.judge(other, rows)[0].anomalous
    elsewhere = [dataclasses.replace(keys[0], agency="phuong-phuc-xa")]
    assert after.judge(elsewhere, rows)[0].anomalous
    # The same name's false positives at another agency leave so-tttt's user2 alone.
    unrelated = train(
        events, spec, trained_from="t", exclude=[("so-noi-vu", "user2", night, night)]
    )
    assert unrelated.meta.excluded_windows == 0 and unrelated.judge(keys, rows)[0].anomalous


def test_too_short_a_baseline_is_refused() -> None:
    with pytest.raises(ConfigError, match="too few"):
        train(list(baseline(days=1, users=1))[:5], WindowSpec("user", 3600), trained_from="t")


def test_a_model_file_round_trips_and_foreign_types_are_refused() -> None:
    model = train(baseline(), WindowSpec("user", 3600), trained_from="test", agency_rate=0.01)
    data = dumps(model)
    again = loads(data)
    assert again.meta == model.meta
    assert len(again.meta.data_sha256) == 64 and again.meta.libraries["scikit-learn"]
    assert "so-tttt" in again.meta.agency_thresholds
    windows = again.windows()
    for event in baseline(days=1):
        windows.add(event)
    _, rows = windows.take()
    assert np.allclose(again.scores(rows), model.scores(rows))
    # A file with a type of its own (here a function) is refused before anything is built.
    foreign = sio.dumps({"format": 1, "meta": {}, "pipeline": random.Random})
    with pytest.raises(ConfigError, match="refusing types"):
        loads(foreign, where="upload.skops")
    with pytest.raises(ConfigError, match="not a skops model"):
        loads(b"PK\x03\x04 not really a zip", where="x.skops")


def test_baseline_sources_say_what_is_wrong_and_where(tmp_path: Path) -> None:
    good = tmp_path / "events.jsonl"
    good.write_text('{"@timestamp": "2026-11-02T01:00:00Z"}\n\n{"user": {"name": "an"}}\n')
    assert len(list(events_from_file(good))) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"@timestamp": "2026-11-02T01:00:00Z"}\n[1, 2]\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: an ECS event is a JSON object"):
        list(events_from_file(bad))
    assert span("14d") == timedelta(days=14) and span("5m") == timedelta(minutes=5)
    for text in ("14", "0d", "2w", "-1h"):
        with pytest.raises(ConfigError, match="a period is"):
            span(text)
    with pytest.raises(ValueError, match="too short"):
        WindowSpec("user", 30)
    with pytest.raises(ValueError, match="entity must be"):
        WindowSpec("mailbox", 3600)  # type: ignore[arg-type]
