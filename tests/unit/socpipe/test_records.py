from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from socpipe.errors import RecordError
from socpipe.records import (
    Alert,
    DeadLetter,
    Detection,
    DetectorRef,
    EcsEvent,
    Entities,
    RawBatch,
    RawRecord,
    RuleRef,
    Severity,
    SourceRef,
    stable_id,
)
from socpipe.settings import Tier

ICT = timezone(timedelta(hours=7))
VIETNAMESE = "Đăng nhập thất bại cho người dùng nguyễn.văn.a tại UBND phường Phúc Xá"


def raw(**changes: object) -> RawRecord:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    values: dict[str, object] = {
        "id": RawRecord.make_id("c-1", source, "2049:77", 120),
        "agency": {"id": "so-tttt", "tier": "province", "name": "Sở Thông tin và Truyền thông"},
        "collector": {"id": "c-1", "version": "0.1.0"},
        "host": "dvc-portal-01",
        "source": source,
        "received": datetime(2026, 11, 27, 9, 30, tzinfo=ICT),
        "position": 120,
        "message": VIETNAMESE,
    }
    values.update(changes)
    return RawRecord.model_validate(values)


def detection() -> Detection:
    return Detection(
        id="d1",
        timestamp=datetime(2026, 11, 27, 2, 30, tzinfo=UTC),
        detector=DetectorRef(type="check", id="failed-password", version="1"),
        rule=RuleRef(
            id="r1", title="Đăng nhập SSH thất bại", level=Severity.MEDIUM, tags=["attack.t1110"]
        ),
        severity=Severity.MEDIUM,
        risk_score=47,
        entities=Entities(agency="phuong-phuc-xa", tier=Tier.COMMUNE, user="trần.thị.b"),
        dedup_key="k1",
        event_ids=["e1"],
        events=[{"message": VIETNAMESE}],
    )


def test_raw_record_round_trips_vietnamese_text_and_zone() -> None:
    record = raw()
    data = record.to_json()
    assert VIETNAMESE.encode("utf-8") in data  # UTF-8 on the wire, not \\u escapes
    back = RawRecord.from_json(data)
    assert back == record
    assert back.received.utcoffset() == timedelta(hours=7)
    assert back.agency.name == "Sở Thông tin và Truyền thông"


def test_raw_batch_round_trips() -> None:
    batch = RawBatch(records=[raw(), raw(position=200, id="x")])
    assert RawBatch.from_json(batch.to_json()) == batch


def test_raw_record_id_is_deterministic_and_position_sensitive() -> None:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    first = RawRecord.make_id("c-1", source, "2049:77", 120)
    assert first == RawRecord.make_id("c-1", source, "2049:77", 120)
    assert first != RawRecord.make_id("c-1", source, "2049:77", 121)
    assert first != RawRecord.make_id("c-2", source, "2049:77", 120)
    assert first != RawRecord.make_id("c-1", source, "2049:78", 120)


def test_raw_record_needs_exactly_one_payload() -> None:
    with pytest.raises(ValueError, match="exactly one of message or data"):
        raw(data={"EventID": 4625})
    with pytest.raises(ValueError, match="exactly one of message or data"):
        raw(message=None)
    assert raw(message=None, data={"Event": {"System": {"EventID": 4625}}}).data


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        raw(received=datetime(2026, 11, 27, 9, 30))


def test_from_json_says_what_and_where() -> None:
    with pytest.raises(RecordError, match=r"soc.raw/2@17: not valid JSON"):
        RawBatch.from_json(b"{not json", where="soc.raw/2@17")
    bad = orjson.dumps({"v": 1, "records": [{"id": "x"}]})
    with pytest.raises(RecordError, match=r"records.0.agency: Field required"):
        RawBatch.from_json(bad, where="soc.raw/0@1")


def test_unknown_version_is_refused() -> None:
    data = orjson.loads(raw().to_json())
    data["v"] = 2
    with pytest.raises(RecordError, match="version 2 is not 1"):
        RawRecord.from_json(orjson.dumps(data))


def test_ecs_event_uses_at_timestamp_and_keeps_extra_ecs_fields() -> None:
    event = EcsEvent.model_validate(
        {
            "@timestamp": "2026-11-27T09:30:00+07:00",
            "event": {"id": "e1", "kind": "event", "outcome": "failure"},
            "user": {"name": "nguyễn.văn.a"},
            "system": {"auth": {"ssh": {"method": "password"}}},
        }
    )
    data = orjson.loads(event.to_json())
    assert data["@timestamp"] == "2026-11-27T09:30:00+07:00"
    assert data["system"]["auth"]["ssh"]["method"] == "password"
    assert EcsEvent.from_json(event.to_json()).user.name == "nguyễn.văn.a"  # type: ignore[union-attr]


def test_detection_and_alert_round_trip() -> None:
    found = detection()
    assert Detection.from_json(found.to_json()) == found
    alert = Alert(
        id="a1",
        dedup_key="k1",
        count=3,
        first_seen=found.timestamp,
        last_seen=found.timestamp,
        window_start=found.timestamp,
        detector=found.detector,
        rule=found.rule,
        severity=found.severity,
        risk_score=found.risk_score,
        entities=found.entities,
    )
    back = Alert.from_json(alert.to_json())
    assert back == alert
    assert back.rule.title == "Đăng nhập SSH thất bại"


def test_dead_letter_keeps_the_original() -> None:
    letter = DeadLetter(
        id="x", stage="detect", reason="not syslog", at=datetime.now(UTC), original=VIETNAMESE
    )
    assert DeadLetter.from_json(letter.to_json()).original == VIETNAMESE


def test_stable_id_separates_parts() -> None:
    assert stable_id("ab", "c") != stable_id("a", "bc")
    assert len(stable_id("x")) == 32


def test_risk_score_rises_with_severity() -> None:
    scores = [s.risk_score for s in Severity]
    assert scores == sorted(scores)


def test_a_batch_may_state_its_records_common_fields_once() -> None:
    whole = raw()
    common = whole.model_dump(
        mode="json", include={"v", "agency", "collector", "host", "source", "received"}
    )
    lean = [
        {"id": "a" * 32, "position": 0, "message": VIETNAMESE},
        {"id": "b" * 32, "position": 40, "message": "x", "host": "other-host"},
    ]
    batch = RawBatch.from_json(orjson.dumps({"v": 1, "common": common, "records": lean}))
    first, second = batch.records
    assert first.agency == whole.agency and first.source == whole.source
    assert first.message == VIETNAMESE and first.received == whole.received
    # A field the record carries wins over the common one.
    assert second.host == "other-host"
    # Re-encoded, it is whole records again.
    assert RawBatch.from_json(batch.to_json()) == batch


def test_a_batch_with_a_bad_common_part_is_refused_saying_so() -> None:
    with pytest.raises(RecordError, match="common must be an object"):
        RawBatch.from_json(b'{"v":1,"common":[1],"records":[]}')
    with pytest.raises(RecordError, match="agency"):
        RawBatch.from_json(
            orjson.dumps(
                {"v": 1, "common": {}, "records": [{"id": "x", "position": 0, "message": "m"}]}
            )
        )
