"""Detector hot path per core: RawBatch JSON → ECS event → check → JSON, against bare JSON I/O.

Prints records/s for each step and the full path, and their ratio to the baseline (orjson decode
and encode of the same messages, the floor for any stage that reads and writes JSON). The input is
loghub's OpenSSH sample when ../shared/data is present, else the seeded generator.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from detectors.checks import FailedPasswordCheck
from detectors.normalize import Normalizer
from socpipe.records import AgencyRef, CollectorRef, RawBatch, RawRecord, SourceRef
from socpipe.samples import loghub_openssh, sshd_lines


def make_messages(lines: list[str], batch_size: int) -> list[bytes]:
    source = SourceRef(type="file", path="/var/log/auth.log", format="syslog")
    agency = AgencyRef(id="so-tttt", tier="province", name="Sở Thông tin và Truyền thông")  # type: ignore[arg-type]
    collector = CollectorRef(id="bench", version="0")
    received = datetime(2026, 12, 1, tzinfo=UTC)
    records = [
        RawRecord(
            id=RawRecord.make_id("bench", source, "1:1", i * 100),
            agency=agency,
            collector=collector,
            host="dvc-portal-01",
            source=source,
            received=received,
            position=i * 100,
            message=line,
        )
        for i, line in enumerate(lines)
    ]
    return [
        RawBatch(records=records[i : i + batch_size]).to_json()
        for i in range(0, len(records), batch_size)
    ]


def best_rate(work: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Records per second: best and median of ``repeat`` runs."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        count = work()
        rates.append(count / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    sample = sshd_lines()
    lines = [sample[i % len(sample)] for i in range(args.records)]
    messages = make_messages(lines, args.batch)
    check = FailedPasswordCheck()
    normalizer = Normalizer()

    def baseline() -> int:
        count = 0
        for message in messages:
            data = orjson.loads(message)
            for record in data["records"]:
                orjson.dumps(record)
                count += 1
        return count

    def decode_only() -> int:
        return sum(len(RawBatch.from_json(m).records) for m in messages)

    def full_path() -> int:
        count = 0
        for message in messages:
            for raw in RawBatch.from_json(message).records:
                event = normalizer.normalize(raw).event
                event.to_json()
                detection = check.evaluate(event)
                if detection is not None:
                    detection.to_json()
                count += 1
        return count

    print(
        f"input: {loghub_openssh() or 'generated sshd lines'}; {args.records} records in "
        f"{len(messages)} messages; best and median of {args.repeat} runs, one core"
    )
    base_best, base_median = best_rate(baseline, args.repeat)
    rows = [("baseline: orjson decode + encode", base_best, base_median)]
    for name, work in (
        ("RawBatch decode (pydantic)", decode_only),
        ("full path: decode, parse, check, encode", full_path),
    ):
        best, median = best_rate(work, args.repeat)
        rows.append((name, best, median))
    print(f"{'step':<42} {'best rec/s':>12} {'median rec/s':>13} {'÷ baseline':>11}")
    for name, best, median in rows:
        print(f"{name:<42} {best:>12,.0f} {median:>13,.0f} {best / base_best:>11.3f}")
    full_best = rows[-1][1]
    print(
        f"\ncores needed for 20,000 records/s (province average): {20_000 / full_best:.1f}; "
        f"for 100,000/s (peak): {100_000 / full_best:.1f}"
    )


if __name__ == "__main__":
    main()
