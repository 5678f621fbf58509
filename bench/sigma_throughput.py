"""The Sigma engine on one core over the OTRF Windows datasets (about 103,000 events).

Prints events/s for (a) orjson decode alone, (b) decode + parse to ECS + match against the whole
SigmaHQ corpus through the engine's indexes, (c) the same with the naive matcher that evaluates
every rule of the event's log sources; the ratios b/a and b/c, the corpus load and compile time,
matches found, and peak memory. The last line is a JSON summary.

Needs ../shared/data (SigmaHQ rules and the OTRF zips).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from detectors.normalize import Normalizer
from detectors.reload import RuleSetWatcher
from detectors.sigma.bundle import bundle_files, pack
from detectors.sigma.engine import SigmaEngine
from detectors.sigma.hunt import build_engine, build_hunter
from socpipe import native
from socpipe.records import RawRecord, SourceRef
from socpipe.samples import otrf_lines, shared_data_dir
from socpipe.settings import KafkaSettings

CORPUS = (
    "rules",
    "rules-emerging-threats",
    "rules-threat-hunting",
    "rules-placeholder",
    "rules-compliance",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="events to use (0: all)")
    parser.add_argument(
        "--naive-limit",
        type=int,
        default=20_000,
        help="events for the naive matcher, which is slow (0: all)",
    )
    args = parser.parse_args()

    data = shared_data_dir()
    started = time.perf_counter()
    engine, report = build_engine([data / "sigma" / name for name in CORPUS])
    load_s = time.perf_counter() - started
    lines = otrf_lines(args.limit)
    print(
        f"corpus: {report.compiled} rules compiled, {report.failed} not ({report.reasons}), "
        f"{report.problems} load problems, {report.correlations} correlations kept aside; "
        f"load + compile {load_s:.1f}s; "
        f"{engine.anchored_share:.1%} of rules have a literal anchor"
    )
    print(f"events: {len(lines)} OTRF JSON lines")
    compiled = native.in_use()
    print(
        "detector hot modules: "
        + ("compiled (mypyc)" if compiled else "Python source (make native compiles them)")
    )

    start = time.perf_counter()
    for line in lines:
        orjson.loads(line)
    decode_rate = len(lines) / (time.perf_counter() - start)

    normalizer = Normalizer()
    source = SourceRef(type="file", path="otrf.json", format="winlog.json")
    received = datetime(2026, 11, 27, tzinfo=UTC)

    def documents(sample: list[bytes]) -> Iterator[dict[str, Any]]:
        # One event at a time, as the stream has them: a list of 100,000 events held at once
        # would make the garbage collector, not the engine, the figure.
        for index, line in enumerate(sample):
            yield normalizer.normalize(
                RawRecord(
                    id=f"r{index}",
                    agency={"id": "so-tttt", "tier": "province"},
                    collector={"id": "bench", "version": "0"},
                    host="h",
                    source=source,
                    received=received,
                    position=index,
                    message=line.decode("utf-8", "replace"),
                )
            ).document

    def run(sample: list[bytes], match: Any) -> tuple[float, Counter[str]]:
        hits: Counter[str] = Counter()
        start = time.perf_counter()
        for event in documents(sample):
            for rule in match(event):
                hits[rule.title] += 1
        return len(sample) / (time.perf_counter() - start), hits

    full_rate, hits = run(lines, engine.match)
    naive_sample = lines[: args.naive_limit] if args.naive_limit else lines
    naive_rate, naive_hits = run(naive_sample, engine.match_naive)
    indexed_on_sample = Counter[str]()
    for event in documents(naive_sample):
        for rule in engine.match(event):
            indexed_on_sample[rule.title] += 1
    same = indexed_on_sample == naive_hits
    # The stream's peak: before the split below holds a sample of documents at once.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Where the time of (b) goes: the normalizer alone, and the engine alone on its documents.
    parse_rate, _ = run(lines, lambda event: ())
    split_sample = lines[: args.naive_limit] if args.naive_limit else lines
    parsed = list(documents(split_sample))
    start = time.perf_counter()
    for event in parsed:
        engine.match(event)
    match_rate = len(parsed) / (time.perf_counter() - start)
    del parsed

    print(f"{'path':<46} {'events/s':>10}")
    print(f"{'(a) orjson decode':<46} {decode_rate:>10,.0f}")
    print(f"{'(b) decode + parse + match, indexed engine':<46} {full_rate:>10,.0f}")
    print(
        f"{'(c) decode + parse + match, naive matcher':<46} {naive_rate:>10,.0f}"
        f"   (on {len(naive_sample)} events)"
    )
    print(f"{'    of which decode + parse alone':<46} {parse_rate:>10,.0f}")
    print(
        f"{'    of which match alone (documents held)':<46} {match_rate:>10,.0f}"
        f"   (on {len(split_sample)} events)"
    )
    print(
        f"b/a = {full_rate / decode_rate:.4f}   b/c = {full_rate / naive_rate:.2f}   "
        f"indexed and naive agree on the sample: {same}"
    )
    print(f"matches: {sum(hits.values())} by {len(hits)} rules; top: {hits.most_common(5)}")
    correlated = with_correlations(
        lines, documents, engine, [data / "sigma" / name for name in CORPUS]
    )
    print(
        f"(b) plus {correlated['correlations']} correlation rules over the corpus's rules: "
        f"{correlated['rate']:,.0f} events/s ({correlated['rate'] / full_rate:.2f} of (b)); "
        f"{correlated['hits']} correlation hits; state {correlated['state']} entries at the end"
    )
    swap = hot_swap(lines, documents, engine, [data / "sigma" / name for name in CORPUS])
    print(
        f"hot swap of the whole corpus while events flow: ready after {swap['seconds']:.1f}s, "
        f"{swap['events']:,} events judged meanwhile by the old set at {swap['rate']:,.0f}/s "
        f"({swap['rate'] / full_rate:.2f} of (b)); the swap itself {swap['pause_us']:.0f} µs"
    )
    print(f"peak memory: {peak_mib:.0f} MiB")
    print(
        json.dumps(
            {
                "events": len(lines),
                "compiled": compiled,
                "rules_compiled": report.compiled,
                "load_compile_s": round(load_s, 2),
                "decode_per_s": round(decode_rate),
                "indexed_per_s": round(full_rate),
                "naive_per_s": round(naive_rate),
                "parse_only_per_s": round(parse_rate),
                "match_only_per_s": round(match_rate),
                "b_over_a": round(full_rate / decode_rate, 4),
                "b_over_c": round(full_rate / naive_rate, 2),
                "indexed_equals_naive": same,
                "matches": sum(hits.values()),
                "rules_matched": len(hits),
                "peak_mib": round(peak_mib),
                "correlation_rules": correlated["correlations"],
                "with_correlations_per_s": round(correlated["rate"]),
                "correlation_hits": correlated["hits"],
                "hot_swap_s": round(swap["seconds"], 2),
                "hot_swap_events_per_s": round(swap["rate"]),
                "hot_swap_pause_us": round(swap["pause_us"]),
            }
        )
    )


# 50 correlations over the rules that fire most on these events: counts per machine in a
# window (event_count), alternating thresholds and spans, so that some fire and all keep state.
_CORRELATION = """
title: Bench correlation {n}
id: {id}
correlation:
  type: event_count
  rules: [{rule}]
  group-by: [Computer]
  timespan: {span}
  condition: {{gte: {threshold}}}
generate: true
level: medium
"""


def with_correlations(
    lines: list[bytes],
    documents: Callable[[list[bytes]], Iterator[dict[str, Any]]],
    engine: SigmaEngine,
    corpus: list[Path],
) -> dict[str, Any]:
    """(b) with 50 correlation rules added to the corpus, run as the stream runs them."""
    firing = Counter[str]()
    for event in documents(lines[:20_000]):
        firing.update(rule.id for rule in engine.match(event) if rule.id)
    chosen = [rule_id for rule_id, _ in firing.most_common(25)]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for n in range(50):
            text = _CORRELATION.format(
                n=n,
                id=uuid.uuid5(uuid.NAMESPACE_URL, f"socpipe-bench-{n}"),
                rule=chosen[n % len(chosen)],
                span=("5m", "1h")[n % 2],
                threshold=(3, 50)[n // 25],
            )
            (folder / f"correlation_{n}.yml").write_text(text, encoding="utf-8")
        hunter = build_hunter([*corpus, folder])
    correlations = hunter.correlations
    assert correlations is not None, hunter.report.messages[:5]
    hits = 0
    start = time.perf_counter()
    for event in documents(lines):
        matched = hunter.engine.match(event)
        if matched:
            keys = [hunter.keys[rule] for rule in matched if rule in hunter.keys]
            hits += len(correlations.observe(keys, event))
    rate = len(lines) / (time.perf_counter() - start)
    return {
        "correlations": len(correlations.correlations),
        "rate": rate,
        "hits": hits,
        "state": correlations.state_size,
    }


def hot_swap(
    lines: list[bytes],
    documents: Callable[[list[bytes]], Iterator[dict[str, Any]]],
    engine: SigmaEngine,
    corpus: list[Path],
) -> dict[str, float]:
    """Publish-to-running time of the whole corpus while events flow, as a detector does it:
    the bundle loads in a background thread (``RuleSetWatcher.offer``) while this thread goes
    on matching with the old engine, and takes the new one between batches of 500."""
    bundle = pack(bundle_files(corpus))
    with tempfile.TemporaryDirectory() as scratch:
        watcher = RuleSetWatcher(KafkaSettings(), unpack_dir=Path(scratch))  # Kafka untouched
        loader = threading.Thread(target=watcher.offer, args=(bundle.data,))
        judged, pause = 0, 0.0
        start = time.perf_counter()
        loader.start()
        swapped = False
        while not swapped:
            for offset in range(0, len(lines), 500):
                for event in documents(lines[offset : offset + 500]):
                    engine.match(event)
                judged += min(500, len(lines) - offset)
                before = time.perf_counter()
                new = watcher.take()
                if new is not None:
                    engine = new.engine
                    pause = time.perf_counter() - before
                    swapped = True
                    break
        seconds = time.perf_counter() - start
        loader.join()
    return {"seconds": seconds, "events": judged, "rate": judged / seconds, "pause_us": pause * 1e6}


if __name__ == "__main__":
    main()
