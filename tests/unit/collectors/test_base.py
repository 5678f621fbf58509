"""RecordMaker: the fast path for many lines gives exactly what one call per line gives."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.base import RecordMaker, SourceStats
from socpipe.records import AgencyRef, CollectorRef, RawBatch, RawRecord, SourceRef
from socpipe.settings import Tier


def maker(limit: int = 64) -> RecordMaker:
    return RecordMaker(
        agency=AgencyRef(id="so-tttt", tier=Tier.PROVINCE),
        collector=CollectorRef(id="c-1", version="0.1.0"),
        host="web-01",
        source=SourceRef(type="file", path="/var/log/auth.log", format="syslog"),
        stats=SourceStats(name="file:/var/log/auth.log"),
        max_line_bytes=limit,
    )


def decoded(common: dict[str, Any], records: list[dict[str, Any]]) -> list[RawRecord]:
    wire = orjson.dumps({"v": 1, "common": common, "records": records})
    return RawBatch.from_json(wire).records


lines_strategy = st.lists(
    st.one_of(
        st.binary(max_size=100),
        st.text(max_size=40).map(str.encode),
        st.sampled_from([b"\xef\xbb\xbfBOM", b"cr\r", "Đăng nhập".encode(), b"\xff\xfe"]),
    ),
    max_size=20,
)


@given(lines_strategy, st.booleans())
@settings(max_examples=300, deadline=None)
def test_many_lines_at_once_equal_one_at_a_time(raws: list[bytes], from_start: bool) -> None:
    start = 0 if from_start else 1000
    positions, at = [], start
    for raw in raws:
        positions.append(at)
        at += len(raw) + 1
    lines = list(zip(positions, raws, strict=True))
    fast, slow = maker(), maker()
    received = "2026-11-27T03:00:00+00:00"
    got = fast.lines("1:2", lines, received)
    want = [slow.line("1:2", p, raw, received, lean=True) for p, raw in lines]
    # Whole records once decoded as the SOC decodes a batch (ids from the common prefix).
    if lines:
        common = fast.common(received, "1:2")
        assert decoded(common, got) == decoded(common, want)
    # The same counts and the same last error (its time aside).
    got_stats, want_stats = fast.stats.snapshot(), slow.stats.snapshot()
    got_stats.pop("last_error_at", None)
    want_stats.pop("last_error_at", None)
    assert got_stats == want_stats


def test_lean_records_with_the_common_part_are_whole_records_with_the_ids_of_make_id() -> None:
    m = maker()
    received = "2026-11-27T03:00:00+00:00"
    (record,) = m.lines("2049:77", [(120, "Phúc Xá".encode())], received)
    assert "id" not in record  # made from the batch's id_prefix and the position
    (whole,) = decoded(m.common(received, "2049:77"), [record])
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    assert whole.id == RawRecord.make_id("c-1", source, "2049:77", 120)
    assert whole.message == "Phúc Xá"
