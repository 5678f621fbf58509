"""The health watch: which silences it reports, once, and what the detectors make of them."""

from __future__ import annotations

from typing import Any

from detectors.health import SILENCE_FACTOR, HealthWatch, is_silent
from detectors.normalize import Normalizer


def beat(collector: str = "phucxa-srv-01", *, interval: float = 30, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "collector",
        "agency": {"id": "ubnd-phuong-phuc-xa", "tier": "commune"},
        "collector": {"id": collector, "version": "0.1.0"},
        "host": f"{collector}-host",
        "interval_s": interval,
        "sources": [],
        **extra,
    }


KEY = "collector/ubnd-phuong-phuc-xa/phucxa-srv-01"
T0 = 1_790_000_000.0


def test_silence_is_reported_once_after_three_intervals_and_the_return_too() -> None:
    watch = HealthWatch(silence_factor=3, min_silence_s=60)
    assert watch.heartbeat(KEY, beat(), T0) is None
    assert watch.silences(T0 + 89) == []
    (silent,) = watch.silences(T0 + 90)
    assert watch.silences(T0 + 500) == []  # once
    health = silent.data["socpipe_health"]  # type: ignore[index]
    assert health["check"] == "collector-silent"
    assert health["silent_s"] == 90
    assert silent.agency.id == "ubnd-phuong-phuc-xa"
    back = watch.heartbeat(KEY, beat(), T0 + 600)
    assert back is not None
    assert back.data["socpipe_health"]["check"] == "collector-resumed"  # type: ignore[index]
    # Silent again later: reported again (another last heartbeat, another id).
    (again,) = watch.silences(T0 + 700)
    assert again.id != silent.id


def test_min_silence_holds_for_collectors_with_short_intervals() -> None:
    watch = HealthWatch(silence_factor=3, min_silence_s=120)
    watch.heartbeat(KEY, beat(interval=1), T0)
    assert watch.silences(T0 + 60) == []
    assert len(watch.silences(T0 + 120)) == 1


def test_a_collector_that_said_it_was_stopping_is_not_silent() -> None:
    watch = HealthWatch(min_silence_s=1)
    watch.heartbeat(KEY, beat(stopping=True), T0)
    assert watch.silences(T0 + 10_000) == []


def test_check_heartbeats_and_old_or_broken_ones_change_nothing() -> None:
    watch = HealthWatch(min_silence_s=1)
    watch.heartbeat(KEY, beat(check=True), T0)
    assert watch.collectors == {}
    watch.heartbeat(KEY, beat(), T0 + 100)
    watch.heartbeat(KEY, beat(), T0)  # read late: older than what we know
    assert watch.collectors[KEY].last_seen == T0 + 100
    watch.heartbeat("collector/x/y", {"agency": "not an object"}, T0)
    assert "collector/x/y" not in watch.collectors


def test_two_watches_write_the_same_record() -> None:
    first, second = HealthWatch(min_silence_s=1), HealthWatch(min_silence_s=1)
    for watch in (first, second):
        watch.heartbeat(KEY, beat(), T0)
    (a,) = first.silences(T0 + 100)
    (b,) = second.silences(T0 + 100)
    assert a.id == b.id


def test_the_detectors_make_a_host_event_of_it() -> None:
    watch = HealthWatch(min_silence_s=1)
    watch.heartbeat(KEY, beat(), T0)
    (record,) = watch.silences(T0 + 600)
    normalized = Normalizer().normalize(record)
    assert normalized.status == "parsed"
    document = normalized.document
    assert document["event"]["action"] == "collector-silent"
    assert document["event"]["dataset"] == "socpipe.health"
    assert document["agent"]["id"] == "phucxa-srv-01"
    assert document["host"]["name"] == "phucxa-srv-01-host"
    assert document["organization"]["id"] == "ubnd-phuong-phuc-xa"
    assert document["socpipe"]["health"]["silent_s"] == 600
    assert "sent no heartbeat 600 s" in document["message"]


def test_is_silent_is_three_intervals_without_a_heartbeat_unless_stopping() -> None:
    assert not is_silent(T0, 30, False, T0 + 89.9)
    assert is_silent(T0, 30, False, T0 + 90)
    assert not is_silent(T0, 30, True, T0 + 10_000)
    assert not is_silent(T0, 10, False, T0 + 60, min_silence_s=120)  # the watch's floor
    assert SILENCE_FACTOR == HealthWatch().silence_factor == 3
