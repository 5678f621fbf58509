"""Completeness: collectors' deltas per hour, restarts, stage counters, idempotent replay, rows
and gaps, and the loop's retry without losing its place."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from alerting.completeness import (
    COLLECTOR_PROPERTIES,
    COMPLETENESS_PROPERTIES,
    COUNTS,
    CompletenessAggregator,
    CompletenessLoop,
    InMemoryCompletenessSink,
    collector_states,
    collectors_template,
    completeness,
    completeness_template,
)
from socpipe.counters import STAGE_COUNTERS_KIND, StageCounters
from socpipe.errors import ServiceError
from socpipe.records import HEARTBEAT_KIND, KIND_HEADER

H0 = 1_795_000_000 // 3600 * 3600
HOUR0 = datetime.fromtimestamp(H0, UTC)
A, B = "so-tai-chinh", "phuong-phuc-xa"
STARTED = "2026-11-20T01:00:00+00:00"


@dataclass(frozen=True)
class Msg:
    """What the aggregator reads of a kafka-python record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


class Topic:
    """soc.heartbeats as a list: offsets in order of sending."""

    def __init__(self) -> None:
        self.messages: list[Msg] = []

    def beat(
        self,
        agency: str,
        at: float,
        sent: Sequence[int],
        *,
        started: str | None = STARTED,
        collector: str = "c1",
        since_start_s: float = 0.0,
        **extra: Any,
    ) -> Msg:
        beat: dict[str, Any] = {
            "v": 1,
            "kind": "collector",
            "agency": {"id": agency, "tier": "province"},
            "collector": {"id": collector, "version": "0.1.0"},
            "interval_s": 30,
            "sources": [{"name": f"s{i}", "read": n, "sent": n} for i, n in enumerate(sent)],
            **extra,
        }
        if started is not None:
            beat["started"] = started
            moment = datetime.fromisoformat(started) + timedelta(seconds=since_start_s)
            beat["time"] = moment.isoformat()
        return self._add(
            f"collector/{agency}/{collector}".encode(),
            orjson.dumps(beat),
            at,
            ((KIND_HEADER, HEARTBEAT_KIND),),
        )

    def counters(self, counters: StageCounters, at: float) -> Msg:
        message = counters.snapshot()
        assert message is not None
        return self._add(
            counters.key.encode(), message.to_json(), at, ((KIND_HEADER, STAGE_COUNTERS_KIND),)
        )

    def _add(self, key: bytes, value: bytes, at: float, headers: Any) -> Msg:
        msg = Msg("soc.heartbeats", 0, len(self.messages), key, value, int(at * 1000), headers)
        self.messages.append(msg)
        return msg


def rows_by_agency(
    sink: InMemoryCompletenessSink, hours: int = 3
) -> dict[tuple[str, datetime], dict[str, Any]]:
    rows = sink.rows(since=HOUR0, until=HOUR0 + timedelta(hours=hours))
    return {(r.agency, r.hour): r.model_dump() for r in rows}


def fold_into(
    sink: InMemoryCompletenessSink, aggregator: CompletenessAggregator, msgs: Any
) -> None:
    sink.write(aggregator.fold(msgs))


def test_collected_is_the_growth_of_sent_put_in_the_hour_of_each_heartbeat() -> None:
    topic, sink, aggregator = Topic(), InMemoryCompletenessSink(), CompletenessAggregator()
    topic.beat(A, H0 + 10, [0, 0])
    topic.beat(A, H0 + 40, [3, 2])
    topic.beat(A, H0 + 3590, [7, 5])
    topic.beat(A, H0 + 3620, [9, 6])  # the next hour: 3 more
    topic.beat(B, H0 + 3700, [4])
    fold_into(sink, aggregator, topic.messages)

    rows = rows_by_agency(sink)
    assert rows[A, HOUR0]["collected"] == 12
    assert rows[A, HOUR0 + timedelta(hours=1)]["collected"] == 3
    assert rows[B, HOUR0 + timedelta(hours=1)]["collected"] == 4
    assert len(rows) == 3
    bodies = sorted(
        (body["hour"], body["base_sent"], body["last_sent"])
        for _, body in sink.docs.values()
        if body["agency"] == A
    )
    assert [b[1:] for b in bodies] == [(0, 12), (12, 15)]


def test_a_collector_restart_is_a_new_incarnation_counted_from_zero() -> None:
    topic, sink, aggregator = Topic(), InMemoryCompletenessSink(), CompletenessAggregator()
    topic.beat(A, H0 + 10, [10])
    topic.beat(A, H0 + 40, [25])
    # Restarted: a new `started`, counters from zero again.
    topic.beat(A, H0 + 100, [0], started="2026-11-21T00:00:00+00:00")
    topic.beat(A, H0 + 130, [4], started="2026-11-21T00:00:00+00:00")
    # A collector that does not say when it started: its counter going down says it.
    topic.beat(B, H0 + 10, [8], started=None)
    topic.beat(B, H0 + 40, [2], started=None)
    topic.beat(B, H0 + 70, [5], started=None)
    fold_into(sink, aggregator, topic.messages)

    rows = rows_by_agency(sink)
    assert rows[A, HOUR0]["collected"] == 25 + 4
    assert rows[B, HOUR0]["collected"] == 8 + 5
    incarnations = {body["incarnation"] for _, body in sink.docs.values() if body["agency"] == B}
    assert len(incarnations) == 2


def test_a_collector_met_in_mid_life_is_counted_from_that_heartbeat() -> None:
    topic, sink, aggregator = Topic(), InMemoryCompletenessSink(), CompletenessAggregator()
    # Its first heartbeat here came two days after it started: what it sent before is unknown.
    topic.beat(A, H0 + 10, [1000], since_start_s=2 * 86400)
    topic.beat(A, H0 + 40, [1006], since_start_s=2 * 86400 + 30)
    # One that started just now is counted from zero.
    topic.beat(B, H0 + 10, [3], since_start_s=1)
    fold_into(sink, aggregator, topic.messages)
    rows = rows_by_agency(sink)
    assert rows[A, HOUR0]["collected"] == 6
    assert rows[B, HOUR0]["collected"] == 3


def test_stage_counters_are_cumulative_and_an_older_message_never_wins() -> None:
    topic, sink, aggregator = Topic(), InMemoryCompletenessSink(), CompletenessAggregator()
    clock = [H0 + 5.0]
    detect = StageCounters("detect", "d1", lambda: clock[0])
    detect.add(A, "received", 5)
    detect.add(A, "parsed", 5)
    first = topic.counters(detect, H0 + 6)
    detect.add(A, "received", 4)
    detect.add(A, "unparsed", 3)
    detect.add(A, "dead_lettered", 1)
    topic.counters(detect, H0 + 20)
    fold_into(sink, aggregator, topic.messages)
    fold_into(sink, aggregator, [first])  # read again, late
    row = rows_by_agency(sink)[A, HOUR0]
    assert (row["received"], row["parsed"], row["unparsed"], row["dead_lettered"]) == (9, 5, 3, 1)
    assert row["dead_lettered_by_stage"] == {"detect": 1}

    # A second detector of the same name, started later: another incarnation, summed.
    clock[0] = H0 + 50
    again = StageCounters("detect", "d1", lambda: clock[0])
    again.add(A, "received", 2)
    again.add(A, "parsed", 2)
    fold_into(sink, aggregator, [topic.counters(again, H0 + 51)])
    assert rows_by_agency(sink)[A, HOUR0]["received"] == 11


def build_topic() -> Topic:
    topic = Topic()
    clock = [H0 + 5.0]
    detect = StageCounters("detect", "d1", lambda: clock[0])
    for n, at in enumerate((H0 + 10, H0 + 40, H0 + 3610, H0 + 3640)):
        clock[0] = at
        topic.beat(A, at, [n * 10])
        topic.beat(B, at + 1, [n * 3])
        detect.add(A, "received", 10 if n else 0)
        detect.add(A, "parsed", 10 if n else 0)
        detect.add(B, "received", 3 if n else 0)
        detect.add(B, "parsed", 3 if n else 0)
        if n:
            topic.counters(detect, at + 2)
    return topic


def test_replay_by_a_restarted_aggregator_changes_no_count() -> None:
    topic = build_topic()
    sink = InMemoryCompletenessSink()
    first = CompletenessAggregator()
    fold_into(sink, first, topic.messages[:5])
    fold_into(sink, first, topic.messages[5:])
    expected = rows_by_agency(sink)
    assert expected[A, HOUR0]["collected"] == 10
    assert expected[A, HOUR0 + timedelta(hours=1)]["collected"] == 20
    assert expected[A, HOUR0 + timedelta(hours=1)]["received"] == 20
    assert expected[B, HOUR0 + timedelta(hours=1)]["gaps"]["not_received"] == 0
    docs = dict(sink.docs)

    # Restarted after writing but before committing: restored from the documents, it reads
    # everything again (and, in another run, from the middle).
    for start in (0, 3, 7):
        restarted = CompletenessAggregator()
        restarted.restore(sink.latest_collectors(HOUR0 - timedelta(days=1)))
        fold_into(sink, restarted, topic.messages[start:])
        assert rows_by_agency(sink) == expected
        assert sink.docs == docs

    # Even one that forgot everything writes the same documents, or older versions refused.
    forgetful = CompletenessAggregator()
    fold_into(sink, forgetful, topic.messages)
    assert rows_by_agency(sink) == expected

    # The same aggregator reading a batch twice skips the heartbeats it folded; the stage
    # counters come out the same, which the versions make harmless.
    again = first.fold(topic.messages)
    assert {doc.body["stage"] for doc in again} == {"detect"}
    sink.write(again)
    assert sink.docs == docs


def test_a_restored_aggregator_goes_on_from_where_the_documents_stand() -> None:
    topic = build_topic()
    sink = InMemoryCompletenessSink()
    fold_into(sink, CompletenessAggregator(), topic.messages)
    restored = CompletenessAggregator()
    restored.restore(sink.latest_collectors(HOUR0))
    topic.beat(A, H0 + 3660, [45])  # 15 more than the last heartbeat's 30
    fold_into(sink, restored, topic.messages[-1:])
    assert rows_by_agency(sink)[A, HOUR0 + timedelta(hours=1)]["collected"] == 20 + 15


def test_what_is_not_a_counted_heartbeat_is_left_alone() -> None:
    topic, aggregator = Topic(), CompletenessAggregator()
    topic.beat(A, H0 + 10, [5], check=True)  # `socpipe collect check`
    topic._add(b"detector-1", b'{"kind": "detector-rules"}', H0 + 11, ())
    topic._add(b"collector/x/y", b"{not json", H0 + 12, ())
    topic._add(b"collector/x/y", b'{"agency": "not an object"}', H0 + 13, ())
    topic._add(b"stage/detect/d1", b'{"v": 1, "kind": "stage-counters"}', H0 + 14, ())
    assert aggregator.fold(topic.messages) == []


def test_rows_and_gaps() -> None:
    topic, sink, aggregator = Topic(), InMemoryCompletenessSink(), CompletenessAggregator()
    clock = lambda: H0 + 100.0  # noqa: E731
    topic.beat(A, H0 + 10, [0])
    topic.beat(A, H0 + 90, [10])
    detect = StageCounters("detect", "d1", clock)
    for measure, n in (("received", 8), ("parsed", 5), ("unparsed", 1), ("dead_lettered", 1)):
        detect.add(A, measure, n)  # type: ignore[arg-type]
    detect.add(A, "detected", 2)
    correlate = StageCounters("correlate", "c1", clock)
    correlate.add(A, "detected", 2)
    correlate.add(A, "dead_lettered", 3)
    alert = StageCounters("alert", "a1", clock)
    alert.add(A, "indexed", 2)
    alert.add(A, "dead_lettered", 1)
    alert.add(A, "events_indexed", 6)
    for counters in (detect, correlate, alert):
        topic.counters(counters, H0 + 101)
    alert.add(B, "indexed", 1)
    topic.counters(alert, H0 + 102)
    fold_into(sink, aggregator, topic.messages)

    (row,) = sink.rows(
        agency=A, since=HOUR0 + timedelta(minutes=30), until=HOUR0 + timedelta(hours=1)
    )
    assert row.hour == HOUR0
    assert (row.collected, row.received, row.parsed, row.unparsed) == (10, 8, 5, 1)
    assert (row.detected, row.indexed, row.events_indexed, row.dead_lettered) == (4, 2, 6, 5)
    assert row.dead_lettered_by_stage == {"detect": 1, "correlate": 3, "alert": 1}
    # 10 sent, 8 read; 8 read, 7 accounted for; 4 detected, 2 indexed and 1 refused.
    assert row.gaps.model_dump() == {"not_received": 2, "unaccounted": 1, "not_indexed": 1}
    (other,) = sink.rows(agency=B, since=HOUR0, until=HOUR0 + timedelta(hours=1))
    assert other.indexed == 1 and other.gaps.not_indexed == 0  # never negative
    assert sink.rows(since=HOUR0 + timedelta(hours=1), until=HOUR0 + timedelta(hours=2)) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        sink.rows(since=datetime(2026, 1, 1), until=HOUR0)


def test_every_field_written_is_in_the_strict_mapping() -> None:
    topic = build_topic()
    template = completeness_template("soc-completeness", 1)
    assert template["index_patterns"] == ["soc-completeness-*"]
    assert template["template"]["aliases"] == {"soc-completeness": {}}
    assert template["template"]["mappings"]["dynamic"] == "strict"
    written = {name for doc in CompletenessAggregator().fold(topic.messages) for name in doc.body}
    assert written <= set(COMPLETENESS_PROPERTIES)
    assert set(COUNTS) <= set(COMPLETENESS_PROPERTIES)


class FakeConsumer:
    """Hands out a topic's messages in batches; remembers commits."""

    def __init__(self, messages: list[Msg], batch: int) -> None:
        self.messages = messages
        self.batch = batch
        self.position_ = 0
        self.commits: list[int] = []
        self.polls = 0

    def assignment(self) -> set[str]:
        return {"p0"}

    def end_offsets(self, partitions: list[str]) -> dict[str, int]:
        return dict.fromkeys(partitions, len(self.messages))

    def position(self, partition: str) -> int:
        return self.position_

    def poll(self, timeout_ms: int, max_records: int) -> dict[str, list[Msg]]:
        self.polls += 1
        taken = self.messages[self.position_ : self.position_ + self.batch]
        self.position_ += len(taken)
        return {"p0": taken} if taken else {}

    def commit(self) -> None:
        self.commits.append(self.position_)


def test_the_loop_retries_a_failed_write_without_reading_on_and_commits_after() -> None:
    topic = build_topic()
    sink = InMemoryCompletenessSink(failures=3)  # Elasticsearch away for three attempts
    consumer = FakeConsumer(topic.messages, batch=4)
    loop = CompletenessLoop(consumer, sink, retry_min_s=0, retry_max_s=0)
    loop.run(threading.Event(), until_end=True)

    assert sink.failures == 0
    # Each batch committed once, after it was written; nothing read while the write failed.
    assert consumer.commits == [*range(4, len(topic.messages), 4), len(topic.messages)]
    assert consumer.polls == len(consumer.commits)
    expected = InMemoryCompletenessSink()
    fold_into(expected, CompletenessAggregator(), topic.messages)
    assert rows_by_agency(sink) == rows_by_agency(expected)


def test_a_loop_stopped_while_elasticsearch_is_away_commits_nothing() -> None:
    consumer = FakeConsumer(build_topic().messages, batch=100)
    stop = threading.Event()

    class AwaySink(InMemoryCompletenessSink):
        def write(self, docs: Any) -> None:
            self.writes += 1
            if self.writes == 5:
                stop.set()
            raise ServiceError("Elasticsearch is away")

    sink = AwaySink()
    CompletenessLoop(consumer, sink, retry_min_s=0, retry_max_s=0).run(stop)
    assert sink.writes == 5
    assert consumer.polls == 1  # nothing read on while the batch was not written
    assert consumer.commits == []


class FakeElasticsearch:
    """Answers a composite aggregation in two pages."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def search(self, **body: Any) -> dict[str, Any]:
        self.bodies.append(body)
        hour = H0 * 1000

        def bucket(agency: str, stage: str, **sums: float) -> dict[str, Any]:
            values = {name: {"value": sums.get(name, 0.0)} for name in body["aggs"]["rows"]["aggs"]}
            return {"key": {"agency": agency, "hour": hour, "stage": stage}, **values}

        if "after" not in body["aggs"]["rows"]["composite"]:
            buckets = [bucket(A, "collect", collected=5.0), bucket(A, "detect", received=4.0)]
            return {"aggregations": {"rows": {"buckets": buckets, "after_key": {"page": 1}}}}
        if body["aggs"]["rows"]["composite"]["after"] == {"page": 1}:
            buckets = [bucket(A, "detect", parsed=4.0, dead_lettered=0.0)]
            return {"aggregations": {"rows": {"buckets": buckets, "after_key": {"page": 2}}}}
        return {"aggregations": {"rows": {"buckets": []}}}


def test_completeness_pages_through_the_composite_aggregation_and_scopes_by_agency() -> None:
    client = FakeElasticsearch()
    (row,) = completeness(
        client,  # type: ignore[arg-type]
        "soc",
        agency=A,
        since=HOUR0,
        until=HOUR0 + timedelta(hours=1),
    )
    assert (row.agency, row.hour, row.collected, row.received, row.parsed) == (A, HOUR0, 5, 4, 4)
    assert row.gaps.not_received == 1
    assert len(client.bodies) == 3
    assert client.bodies[0]["index"] == "soc-completeness"
    assert {"term": {"agency": A}} in client.bodies[0]["query"]["bool"]["filter"]


# --- the collectors' registry -------------------------------------------------------------------


def registry_of(messages: Sequence[Msg]) -> InMemoryCompletenessSink:
    sink = InMemoryCompletenessSink()
    sink.write_collectors(collector_states(messages))
    return sink


def test_the_registry_keeps_each_collectors_latest_heartbeat_and_never_an_older_one() -> None:
    topic = Topic()
    first = topic.beat(A, H0 + 10, [1, 2], host="tc-srv", kafka={"state": "away", "error": "x"})
    topic.beat(A, H0 + 40, [3, 4], host="tc-srv", kafka={"state": "up"}, stopping=True)
    topic.beat(B, H0 + 20, [7], collector="c9")
    topic.beat(B, H0 + 30, [8], collector="c9", check=True)  # `socpipe collect check`
    sink = registry_of(topic.messages)
    states = {(body["agency"], body["collector"]): body for _, body in sink.collectors.values()}
    assert set(states) == {(A, "c1"), (B, "c9")}
    latest = states[A, "c1"]
    assert latest["last_heartbeat"] == datetime.fromtimestamp(H0 + 40, UTC).isoformat()
    assert (latest["host"], latest["kafka"], latest["stopping"]) == (
        "tc-srv",
        {"state": "up", "error": None},
        True,
    )
    assert [s["sent"] for s in latest["sources"]] == [3, 4]
    assert states[B, "c9"]["sources"][0]["sent"] == 7  # the check heartbeat changed nothing

    # Read again late, alone or in a batch: the older heartbeat's version loses.
    before = dict(sink.collectors)
    sink.write_collectors(collector_states([first]))
    sink.write_collectors(collector_states(list(reversed(topic.messages))))
    assert sink.collectors == before


def test_every_registry_field_is_in_the_strict_mapping_whatever_a_collector_sends() -> None:
    topic = Topic()
    topic.beat(A, H0 + 10, [1], host="tc-srv")
    hostile = {
        "agency": {"id": B, "tier": ["commune"], "extra": 1},
        "collector": {"id": "c2", "version": 3},
        "interval_s": "15",
        "kafka": "up",
        "spool": {"bytes": "many", "entries": 1e30, "max_bytes": float("nan")},
        "queued_bytes": True,
        "sources": [{"name": "s", "read": "12", "sent": 5.5, "surprise": {}}, "not a source"],
        "unknown_key": {"deep": [1, 2]},
        "time": 12,
        "host": "x" * 5000,
    }
    topic._add(b"collector/b/c2", orjson.dumps(hostile), H0 + 11, ())
    template = collectors_template("soc-collectors", 1)
    assert template["index_patterns"] == ["soc-collectors"]
    assert template["template"]["mappings"]["dynamic"] == "strict"
    docs = collector_states(topic.messages)
    assert len(docs) == 2
    for doc in docs:
        assert_mapped(doc.body, COLLECTOR_PROPERTIES)
    (strange,) = [doc.body for doc in docs if doc.body["agency"] == B]
    assert strange["interval_s"] == 15.0 and len(strange["host"]) == 1024
    assert strange["spool"] == {"bytes": 0, "entries": 2**63 - 1, "max_bytes": 0}
    assert strange["queued_bytes"] == 0
    assert (strange["sources"][0]["read"], strange["sources"][0]["sent"]) == (0, 5)


def assert_mapped(body: dict[str, Any], properties: dict[str, Any]) -> None:
    """Every key of ``body`` (in objects and arrays of objects) is in the mapping."""
    for key, value in body.items():
        assert key in properties, key
        nested = properties[key].get("properties")
        items = value if isinstance(value, list) else [value]
        if nested is not None:
            for item in items:
                assert isinstance(item, dict), (key, item)
                assert_mapped(item, nested)


def test_the_loop_writes_the_registry_with_the_completeness_documents() -> None:
    topic = build_topic()
    sink = InMemoryCompletenessSink()
    CompletenessLoop(FakeConsumer(topic.messages, batch=3), sink).run(
        threading.Event(), until_end=True
    )
    states = {(body["agency"], body["collector"]): body for _, body in sink.collectors.values()}
    assert set(states) == {(A, "c1"), (B, "c1")}
    assert states[A, "c1"]["sources"][0]["sent"] == 30  # the last of A's heartbeats
