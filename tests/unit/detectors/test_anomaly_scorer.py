"""The anomaly scorer's handler: events fold into windows that close by their agency's event
time (or the clock, when the agency is quiet), anomalous windows become detections with the
score, threshold, features and stable ids; a replay sends nothing twice; a model published
while running takes over at the next window boundary; bad records go to the DLQ."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from detectors.anomaly.model import AnomalyModel, train
from detectors.anomaly.scorer import (
    AnomalyHandler,
    ScorerMetrics,
    anomaly_detection,
    boundary_after,
)
from detectors.anomaly.windows import WindowSpec
from socpipe.deadletter import DeadLetterWriter
from socpipe.records import DeadLetter, Detection
from socpipe.settings import AnomalySettings
from tests.support.anomaly import BASE, baseline, logon
from tests.support.kafka_double import InMemoryProducer, Message

DAY = BASE + timedelta(days=20)  # 08:00 in Hà Nội, after the baseline
NIGHT = DAY + timedelta(hours=17)  # 00:00 there


@pytest.fixture(scope="module")
def model() -> AnomalyModel:
    return train(baseline(), WindowSpec("user", 3600), trained_from="test")


class Clock:
    """A monotonic clock and a wall clock the test moves."""

    def __init__(self, wall: datetime) -> None:
        self.now = 1000.0
        self.wall = wall

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += timedelta(seconds=seconds)


class Watcher:
    """Hands the handler the models "published" since the last batch."""

    def __init__(self) -> None:
        self.pending: dict[str, AnomalyModel | None] = {}
        self.reported: list[dict[str, str]] = []

    def take(self) -> dict[str, AnomalyModel | None]:
        pending, self.pending = self.pending, {}
        return pending

    def running(self, models: dict[str, str]) -> None:
        self.reported.append(models)


def handler_for(
    producer: InMemoryProducer,
    running: dict[str, AnomalyModel],
    clock: Clock | None = None,
    watcher: Watcher | None = None,
    **settings: Any,
) -> AnomalyHandler:
    clock = clock or Clock(NIGHT + timedelta(hours=6))
    return AnomalyHandler(
        producer,  # type: ignore[arg-type]
        DeadLetterWriter(producer, "dlq", "anomaly"),  # type: ignore[arg-type]
        detections_topic="detections",
        settings=AnomalySettings(**settings),
        models=running,
        watcher=watcher,  # type: ignore[arg-type]
        clock=lambda: clock.now,
        wall=lambda: clock.wall,
    )


def messages(events: Iterable[dict[str, Any]], first: int = 0) -> list[Message]:
    return [
        Message("soc.events", 0, first + n, b"so-tttt/h1", orjson.dumps(event))
        for n, event in enumerate(events)
    ]


def burst(user: str, at: datetime, count: int = 45) -> list[dict[str, Any]]:
    """Failed logons to many machines, one every 20 s from ``at``."""
    return [logon(user, at + timedelta(seconds=20 * k), failed=True, host=f"pc{k}")
            for k in range(count)]  # fmt: skip


def ordinary(user: str, at: datetime) -> list[dict[str, Any]]:
    return [logon(user, at + timedelta(minutes=7 * n)) for n in range(3)]


def detections(producer: InMemoryProducer) -> list[Detection]:
    return [Detection.model_validate_json(m.value) for m in producer.sent.get("detections", [])]


def test_a_night_burst_becomes_one_explained_detection_once_its_window_closes(
    model: AnomalyModel,
) -> None:
    producer = InMemoryProducer()
    handler = handler_for(producer, {"user-1h": model})
    futures = handler(messages([*burst("user3", NIGHT), *ordinary("user5", NIGHT)]))
    assert futures == [] and detections(producer) == []  # the hour is not over
    # An event 5 minutes past the end of the hour (the lateness) closes it.
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=1, minutes=5)), first=100))
    (found,) = detections(producer)
    assert found.detector.type == "anomaly" and found.detector.id == "user-1h"
    assert found.detector.version == model.meta.version
    assert found.entities.user == "user3" and found.entities.agency == "so-tttt"
    assert found.timestamp == NIGHT and found.rule.id == "anomaly/user-1h"
    assert found.rule.title == "Unusual account activity (1 h windows)"
    assert found.anomaly is not None and found.anomaly.score > found.anomaly.threshold
    drivers = {feature["feature"] for feature in found.anomaly.features}
    assert drivers & {"authentication.failure", "distinct.host", "off_hours.share"}
    assert (
        len(found.event_ids) == 20 and found.event_ids[0] == burst("user3", NIGHT)[0]["event"]["id"]
    )
    assert [event["user"]["name"] for event in found.events] == ["user3"] * 3
    # The same events judged by another scorer (or after a restart) give the same ids.
    again = InMemoryProducer()
    other = handler_for(again, {"user-1h": model})
    other(
        messages(
            [*burst("user3", NIGHT), *ordinary("user5", NIGHT + timedelta(hours=1, minutes=5))]
        )
    )
    (same,) = detections(again)
    assert (same.id, same.dedup_key) == (found.id, found.dedup_key)
    # The next anomalous hour of the same user is a new detection with the same dedup key.
    handler(messages(burst("user3", NIGHT + timedelta(hours=1)), first=200))
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=2, minutes=6)), first=300))
    first, second = detections(producer)
    assert second.id != first.id and second.dedup_key == first.dedup_key


def test_an_event_for_a_window_already_judged_is_late_and_not_counted(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    handler = handler_for(producer, {"user-1h": model})
    handler(
        messages(
            [*ordinary("user5", NIGHT), *ordinary("user5", NIGHT + timedelta(hours=1, minutes=10))]
        )
    )
    assert detections(producer) == []  # the ordinary hour was judged, not anomalous
    handler(messages(burst("user3", NIGHT), first=10))  # an hour's burst arriving too late
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=3)), first=100))
    assert detections(producer) == []
    assert handler.runs["user-1h"].late == 45


def test_a_clock_running_ahead_does_not_close_everyone_s_windows(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    clock = Clock(NIGHT + timedelta(minutes=20))
    handler = handler_for(producer, {"user-1h": model}, clock)
    handler(messages([*burst("user3", NIGHT), logon("user5", NIGHT + timedelta(days=365))]))
    assert detections(producer) == []  # user3's hour is still open
    assert handler.watermarks["so-tttt"] == NIGHT + timedelta(minutes=25)
    clock.advance(50 * 60)
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=1, minutes=5)), first=100))
    assert [d.entities.user for d in detections(producer)] == ["user3"]


def test_a_quiet_agency_s_windows_are_judged_by_the_clock(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    clock = Clock(NIGHT + timedelta(minutes=20))
    handler = handler_for(producer, {"user-1h": model}, clock)
    handler(messages(burst("user3", NIGHT)))
    clock.advance(40 * 60)  # 01:00 there: the hour ended, not yet 5 min ago
    assert handler.tick() == []
    clock.advance(6 * 60)  # the hour ended 6 min ago and the agency has been quiet 46 min
    assert len(handler.tick()) == 1
    (found,) = detections(producer)
    assert found.entities.user == "user3"
    assert handler.tick() == []  # judged once


def test_a_busy_agency_s_backlog_waits_for_its_own_event_time(model: AnomalyModel) -> None:
    """A collector back after an outage ships hours-old events: they are windows of their own
    time, closed as the backlog moves on, not cut short by the wall clock."""
    producer = InMemoryProducer()
    clock = Clock(NIGHT + timedelta(hours=10))
    handler = handler_for(producer, {"user-1h": model}, clock)
    handler(messages(burst("user3", NIGHT)[:20]))
    clock.advance(30)  # busy: less than idle_s since its last event
    assert handler.tick() == []
    handler(messages(burst("user3", NIGHT)[20:], first=20))
    assert detections(producer) == []
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=1, minutes=5)), first=100))
    (found,) = detections(producer)
    assert len(found.event_ids) == 20 and found.anomaly is not None


def test_a_replay_rebuilds_windows_without_sending_what_was_sent_before(
    model: AnomalyModel,
) -> None:
    before = [*burst("user3", NIGHT), *ordinary("user5", NIGHT + timedelta(hours=1, minutes=5)),
              *burst("user4", NIGHT + timedelta(hours=1))]  # fmt: skip
    first = InMemoryProducer()
    handler_for(first, {"user-1h": model})(messages(before))
    assert [d.entities.user for d in detections(first)] == ["user3"]  # user4's hour is open
    # A restart: the scorer reads back over the lookback up to where it had committed.
    producer = InMemoryProducer()
    handler = handler_for(producer, {"user-1h": model})
    handler.replay_until = {0: len(before)}
    handler(messages(before))
    assert detections(producer) == []  # user3's hour was judged and sent before the restart
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=2, minutes=5)), first=len(before)))
    assert [d.entities.user for d in detections(producer)] == ["user4"]


def test_a_published_model_takes_over_at_the_next_window_and_the_old_one_finishes(
    model: AnomalyModel,
) -> None:
    producer = InMemoryProducer()
    watcher = Watcher()
    handler = handler_for(producer, {"user-1h": model}, watcher=watcher)
    handler(messages(burst("user3", NIGHT)[:10]))
    newer = AnomalyModel(model.pipeline, dataclasses.replace(model.meta, version="user-1h-v2"))
    watcher.pending = {"user-1h": newer}
    # The rest of the hour's burst, then a burst in the next hour, then the hour after.
    handler(messages(burst("user3", NIGHT)[10:], first=10))
    handler(messages(burst("user4", NIGHT + timedelta(hours=1)), first=100))
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=2, minutes=5)), first=200))
    judged = {d.entities.user: d for d in detections(producer)}
    assert {user: d.detector.version for user, d in judged.items()} == {
        "user3": model.meta.version,
        "user4": "user-1h-v2",
    }
    # The old model counted the whole of its hour, after the swap too.
    assert len(judged["user3"].event_ids) == 20
    assert handler.retiring == [] and watcher.reported == [{"user-1h": "user-1h-v2"}]
    # Withdrawn: the next batches are judged by nothing.
    watcher.pending = {"user-1h": None}
    handler(messages(burst("user6", NIGHT + timedelta(hours=3)), first=300))
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=4, minutes=5)), first=400))
    assert len(detections(producer)) == 2 and handler.runs == {}
    assert watcher.reported[-1] == {}


def test_a_scorer_runs_only_the_models_it_is_given(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    watcher = Watcher()
    handler = handler_for(
        producer, {"user-1h": model, "host-5m": model}, watcher=watcher, models=["host-5m"]
    )
    assert list(handler.runs) == ["host-5m"]
    watcher.pending = {"user-1h": model, "user-1d": model}
    handler(messages(ordinary("user5", NIGHT)))
    assert list(handler.runs) == ["host-5m"] and watcher.reported == [
        {"host-5m": model.meta.version}
    ]


def test_a_new_model_s_first_window_is_a_whole_one(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    watcher = Watcher()
    handler = handler_for(producer, {}, watcher=watcher)
    handler(messages(burst("user3", NIGHT)[:30]))  # no model yet
    watcher.pending = {"user-1h": model}
    handler(messages(burst("user3", NIGHT)[30:], first=30))  # would be a partial window
    handler(messages(burst("user4", NIGHT + timedelta(hours=1)), first=100))
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=2, minutes=5)), first=200))
    assert [d.entities.user for d in detections(producer)] == ["user4"]
    assert boundary_after(NIGHT + timedelta(minutes=10), 3600) == NIGHT + timedelta(hours=1)


def test_a_record_that_is_not_an_event_goes_to_the_dlq_and_the_rest_is_scored(
    model: AnomalyModel,
) -> None:
    producer = InMemoryProducer()
    handler = handler_for(producer, {"user-1h": model})
    batch = messages(burst("user3", NIGHT))
    bad = [
        Message("soc.events", 0, 900, None, b"{not json"),
        Message("soc.events", 0, 901, None, b"[1]"),
    ]
    handler([*batch[:5], *bad, *batch[5:]])
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=1, minutes=5)), first=1000))
    letters = [DeadLetter.model_validate_json(m.value) for m in producer.sent["dlq"]]
    assert [letter.stage for letter in letters] == ["anomaly", "anomaly"]
    assert "soc.events/0@900: not an ECS event" in letters[0].reason
    assert "soc.events/0@901: not an ECS event: a list" in letters[1].reason
    assert len(detections(producer)) == 1
    # An event without a time is not scored, and said so in the counts.
    handler(messages([{"event": {"id": "x"}, "user": {"name": "user3"}}], first=2000))
    assert handler.untimed == 1


def test_open_windows_are_capped(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    handler = handler_for(producer, {"user-1h": model}, max_windows=1000)
    handler(messages([logon(f"scan{n}", NIGHT) for n in range(1200)]))
    assert handler.runs["user-1h"].open_windows() == 1200  # checked once per batch
    handler(messages([logon(f"more{n}", NIGHT) for n in range(10)], first=2000))
    assert handler.runs["user-1h"].open_windows() == 1200
    assert handler.runs["user-1h"].folds["so-tttt"].refused == 10


def test_a_detection_names_the_entity_of_its_model(model: AnomalyModel) -> None:
    host_model = AnomalyModel(
        model.pipeline, dataclasses.replace(model.meta, entity="host", window_s=300)
    )
    windows = host_model.windows()
    for event in burst("user3", NIGHT, count=5):
        windows.add(event)
    keys, rows = windows.take()
    judgement = host_model.judge(keys[:1], rows[:1])[0]
    found = anomaly_detection("host-5m", host_model, judgement, tier="commune")
    assert found.entities.host == keys[0].entity and found.entities.user is None
    assert found.entities.tier is not None and found.entities.tier.value == "commune"
    assert found.rule.title == "Unusual host activity (5 min windows)"
    assert found.event_ids  # the window's events, or the detection itself


def test_the_metrics_say_what_the_scorer_did(model: AnomalyModel) -> None:
    producer = InMemoryProducer()
    handler = handler_for(producer, {"user-1h": model})
    metrics = ScorerMetrics(handler)
    handler(messages([*burst("user3", NIGHT), *ordinary("user5", NIGHT)]))
    handler([Message("soc.events", 0, 99, None, b"{not json")])
    assert (
        metrics.registry.get_sample_value("socpipe_anomaly_open_windows", {"model": "user-1h"}) == 2
    )
    handler(messages(ordinary("user5", NIGHT + timedelta(hours=1, minutes=5)), first=100))
    handler(messages(burst("user6", NIGHT)[:4], first=200))  # too late: its hour was judged

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("socpipe_anomaly_events_total", outcome="read") == 45 + 3 + 3 + 4
    assert sample("socpipe_anomaly_events_total", outcome="late") == 4
    assert sample("socpipe_anomaly_events_total", outcome="dead_lettered") == 1
    assert sample("socpipe_anomaly_windows_total", model="user-1h", verdict="anomalous") == 1
    assert sample("socpipe_anomaly_windows_total", model="user-1h", verdict="normal") == 1
    assert sample("socpipe_anomaly_open_windows", model="user-1h") == 1  # user5's next hour
