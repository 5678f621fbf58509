from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting.grouping import (
    MAX_DETECTION_IDS,
    MAX_EVENTS,
    AlertPolicies,
    Grouping,
    alert_id,
    fold,
    window_start,
)
from alerting.store import AlertQuery, InMemoryAlertStore, SourcedDetection
from socpipe.records import AlertStatus, AnomalyDetail, Detection, stable_id
from socpipe.settings import AlertPolicy
from tests.support.factories import BASE_TIME, make_detection

WINDOW = 3600
GROUPING = Grouping("key-1", WINDOW)


def sourced(n: int, offset: int | None = None, **kwargs: object) -> SourcedDetection:
    return SourcedDetection(
        make_detection(n, **kwargs),
        "soc.detections:0",  # type: ignore[arg-type]
        n if offset is None else offset,
    )


def test_window_start_floors_to_the_window() -> None:
    moment = datetime(2026, 11, 27, 2, 59, 59, tzinfo=UTC)
    assert window_start(moment, 3600) == datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    assert window_start(moment, 300) == datetime(2026, 11, 27, 2, 55, tzinfo=UTC)


def test_detections_of_one_key_and_window_fold_into_one_alert() -> None:
    store = InMemoryAlertStore(WINDOW)
    result = store.apply([sourced(n) for n in range(1, 11)])
    assert result.written == 10 and result.replays == 0
    (alert,) = store.alerts.values()
    assert alert.count == 10
    assert alert.first_seen == BASE_TIME + timedelta(seconds=1)
    assert alert.last_seen == BASE_TIME + timedelta(seconds=10)
    assert alert.status is AlertStatus.NEW
    assert alert.id == alert_id(make_detection(1), GROUPING)


def test_replaying_a_batch_changes_nothing() -> None:
    store = InMemoryAlertStore(WINDOW)
    batch = [sourced(n) for n in range(1, 6)]
    store.apply(batch)
    before = dict(store.alerts)
    result = store.apply(batch)
    assert result.replays == 5 and result.written == 0
    assert store.alerts == before


def test_the_same_detection_from_another_offset_is_not_counted_twice() -> None:
    store = InMemoryAlertStore(WINDOW)
    store.apply([sourced(1, offset=10)])
    store.apply([sourced(1, offset=11)])  # produced twice upstream after a detector replay
    (alert,) = store.alerts.values()
    assert alert.count == 1


def test_another_window_or_key_is_another_alert() -> None:
    store = InMemoryAlertStore(WINDOW)
    store.apply(
        [
            sourced(1),
            sourced(2, at=BASE_TIME + timedelta(hours=1, seconds=2)),
            sourced(3, dedup_key="key-2"),
        ]
    )
    assert sorted(a.count for a in store.alerts.values()) == [1, 1, 1]


def test_a_storm_is_one_alert_with_bounded_samples() -> None:
    store = InMemoryAlertStore(WINDOW)
    store.apply([sourced(n, at=BASE_TIME + timedelta(milliseconds=n)) for n in range(1, 2001)])
    (alert,) = store.alerts.values()
    assert alert.count == 2000
    assert len(alert.detection_ids) == MAX_DETECTION_IDS
    assert len(alert.events) == MAX_EVENTS


def test_fold_returns_none_for_a_replayed_offset() -> None:
    first = fold(None, make_detection(1), grouping=GROUPING, source="s:0", offset=5)
    assert first is not None
    assert fold(first, make_detection(2), grouping=GROUPING, source="s:0", offset=5) is None
    assert fold(first, make_detection(2), grouping=GROUPING, source="s:0", offset=6) is not None


def test_an_anomaly_alert_shows_its_most_anomalous_detection_s_explanation() -> None:
    def scored(n: int, score: float) -> Detection:
        features = [{"feature": "authentication.failure", "value": n, "low": 0, "high": 2}]
        detail = AnomalyDetail(score=score, threshold=0.5, features=features)
        return make_detection(n).model_copy(update={"anomaly": detail})

    alert = fold(None, scored(1, 0.6), grouping=GROUPING, source="s:0", offset=1)
    for n, score in ((2, 0.9), (3, 0.7)):
        assert alert is not None
        alert = fold(alert, scored(n, score), grouping=GROUPING, source="s:0", offset=n)
    assert alert is not None and alert.anomaly is not None
    assert (alert.anomaly.score, alert.anomaly.features[0]["value"]) == (0.9, 2)
    # A rule's detection folded into it keeps the explanation it has.
    alert = fold(alert, make_detection(4), grouping=GROUPING, source="s:0", offset=4)
    assert alert is not None and alert.anomaly is not None and alert.anomaly.score == 0.9


def test_in_memory_search_filters_and_scopes() -> None:
    store = InMemoryAlertStore(WINDOW)
    store.apply([sourced(1), sourced(2, agency="phuong-phuc-xa", dedup_key="k2")])
    assert store.search(AlertQuery()).total == 2
    page = store.search(AlertQuery(agency="phuong-phuc-xa"))
    assert [a.entities.agency for a in page.alerts] == ["phuong-phuc-xa"]
    assert store.search(AlertQuery(text="NGUYỄN")).total == 2
    assert store.search(AlertQuery(status=AlertStatus.RESOLVED)).total == 0


def test_a_policy_widens_the_window_for_its_rules_and_agencies() -> None:
    policy = AlertPolicy(name="ssh-daily", rules=["rule-ssh"], agencies=["so-tttt"], window_s=86400)
    store = InMemoryAlertStore(WINDOW, [policy])
    hours = [sourced(n, at=BASE_TIME + timedelta(hours=n)) for n in range(0, 20)]
    other = [
        sourced(100 + n, at=BASE_TIME + timedelta(hours=n), agency="ubnd-phucxa") for n in (0, 5)
    ]
    store.apply(hours + other)
    counts = sorted((a.entities.agency, a.count) for a in store.alerts.values())
    # so-tttt: one alert for the day (BASE_TIME is early in its UTC day); the other agency
    # keeps hourly windows: two alerts of one.
    assert counts == [("so-tttt", 20), ("ubnd-phucxa", 1), ("ubnd-phucxa", 1)]
    daily = next(a for a in store.alerts.values() if a.entities.agency == "so-tttt")
    assert daily.history[0].detail["policy"] == "ssh-daily"


def test_a_policy_entity_makes_the_key() -> None:
    policies = AlertPolicies([AlertPolicy(name="per-source", entity=["source_ip"])], WINDOW)
    one = make_detection(1, dedup_key="host-a", source_ip="198.51.100.7")
    two = make_detection(2, dedup_key="host-b", source_ip="198.51.100.7")
    three = make_detection(3, dedup_key="host-a", source_ip="198.51.100.8")
    keys = [policies.grouping(d).key for d in (one, two, three)]
    assert keys[0] == keys[1] != keys[2]
    assert keys[0] == stable_id("rule-ssh", "so-tttt", "198.51.100.7")
    # No policy matches: the detector's key and the default window.
    assert AlertPolicies([], WINDOW).grouping(one) == Grouping("host-a", WINDOW)


def test_a_storm_of_ten_thousand_identical_detections_is_one_alert_showing_them_all() -> None:
    store = InMemoryAlertStore(WINDOW)
    storm = [sourced(n, at=BASE_TIME + timedelta(microseconds=100 * n)) for n in range(10_000)]
    result = store.apply(storm)
    assert result.written == 10_000 and len(store.alerts) == 1
    (alert,) = store.alerts.values()
    assert alert.count == 10_000
    assert sum(change.new for change in result.changes) == 1
