from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting.grouping import MAX_DETECTION_IDS, MAX_EVENTS, alert_id, fold, window_start
from alerting.store import AlertQuery, InMemoryAlertStore, SourcedDetection
from socpipe.records import AlertStatus
from tests.support.factories import BASE_TIME, make_detection

WINDOW = 3600


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
    assert alert.id == alert_id(make_detection(1), WINDOW)


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
    first = fold(None, make_detection(1), window_s=WINDOW, source="s:0", offset=5)
    assert first is not None
    assert fold(first, make_detection(2), window_s=WINDOW, source="s:0", offset=5) is None
    assert fold(first, make_detection(2), window_s=WINDOW, source="s:0", offset=6) is not None


def test_in_memory_search_filters_and_scopes() -> None:
    store = InMemoryAlertStore(WINDOW)
    store.apply([sourced(1), sourced(2, agency="phuong-phuc-xa", dedup_key="k2")])
    assert store.search(AlertQuery()).total == 2
    page = store.search(AlertQuery(agency="phuong-phuc-xa"))
    assert [a.entities.agency for a in page.alerts] == ["phuong-phuc-xa"]
    assert store.search(AlertQuery(text="NGUYỄN")).total == 2
    assert store.search(AlertQuery(status=AlertStatus.RESOLVED)).total == 0
