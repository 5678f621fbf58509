"""Alerting into the local Elasticsearch: indexing rate by bulk size, and end-to-end latency.

1. **Detections/s folded into alerts** (``ElasticsearchAlertStore.apply``: read the alerts of a
   batch, fold, write them back with optimistic concurrency) for several batch sizes, each into
   fresh indices; the baseline, measured in the same run, is Elasticsearch's bare bulk write of
   as many plain documents of the same size in batches of the same size (no read, no fold).
2. **Latency** from a line written to a log file to its alert being found through the API:
   ``socpipe collect`` (file source) → Kafka → ``socpipe detect`` → ``socpipe alert`` (which
   also indexes every event into ``<prefix>-events-*``) → Elasticsearch → ``socpipe api``, all
   processes on this machine. A writer appends sshd lines at the target rate (events/s); 20
   lines a second are failed passwords from hosts named for the sample, each a new alert, the
   others key logins that are events only. A poller asks the API for the rule's alerts every
   50 ms; a sample's latency is the time it was found minus the time its line was flushed (so
   it includes up to 50 ms of polling and Elasticsearch's 1 s refresh). p50 and p99 per rate.

The last line is a JSON summary; the goal is p99 under 2 s at 5,000 events/s.
Run with the local services up: ``.venv/bin/python bench/alert_pipeline.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import yaml
from elasticsearch import Elasticsearch, helpers

from alerting.store import ElasticsearchAlertStore, SourcedDetection
from socpipe.elastic import make_elasticsearch
from socpipe.kafka import ensure_topics
from socpipe.records import Detection, DetectorRef, Entities, RuleRef, Severity, stable_id
from socpipe.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
FAILED_RULE = "rules/socpipe/linux/sshd_authentication_failure.yml"


def detections(count: int, keys: int) -> list[Detection]:
    """``count`` detections over ``keys`` alert keys (a busy day's mix: ~count/keys each)."""
    base = datetime.now(UTC).replace(microsecond=0)
    rule = RuleRef(
        id="bench-rule",
        title="Đăng nhập SSH thất bại",
        level=Severity.MEDIUM,
        tags=["attack.credential-access", "attack.t1110"],
        tactics=["credential-access"],
        techniques=["T1110"],
    )
    made = []
    for n in range(count):
        key = n % keys
        made.append(
            Detection(
                id=stable_id("bench", n),
                timestamp=base + timedelta(milliseconds=n),
                detector=DetectorRef(type="sigma", id="bench", version="1"),
                rule=rule,
                severity=Severity.MEDIUM,
                risk_score=Severity.MEDIUM.risk_score,
                entities=Entities(agency=f"agency-{key % 165}", host=f"host-{key}"),
                dedup_key=f"bench-key-{key}",
                event_ids=[f"event-{n}"],
                events=[{"message": f"Failed password for nguyễn.văn.a from 10.0.{key % 250}.1"}],
            )
        )
    return made


def indexing(
    es: Elasticsearch, prefix: str, items: list[Detection], sizes: list[int]
) -> dict[str, Any]:
    """Detections/s folded per batch size, and the bare bulk baseline of each size."""
    results: dict[str, Any] = {}
    for size in sizes:
        store = ElasticsearchAlertStore(es, f"{prefix}-b{size}", 3600)
        store.ensure_ready()
        start = time.perf_counter()
        for first in range(0, len(items), size):
            chunk = items[first : first + size]
            batch = [
                SourcedDetection(d, "soc.detections:0", first + i) for i, d in enumerate(chunk)
            ]
            result = store.apply(batch)
            if result.failed:
                raise RuntimeError(f"alerts refused: {result.failed[0][1]}")
        rate = len(items) / (time.perf_counter() - start)
        index = f"{prefix}-bare-b{size}"
        documents = ({"_index": index, "_id": d.id, "_source": d.to_dict()} for d in items)
        start = time.perf_counter()
        ok, _ = helpers.bulk(es, documents, chunk_size=size, refresh=False, stats_only=True)
        bare = ok / (time.perf_counter() - start)
        results[str(size)] = {"folded_per_s": round(rate), "bare_per_s": round(bare)}
        print(
            f"  batch {size:>5}: {rate:>9,.0f} detections/s folded into alerts; "
            f"bare bulk {bare:>9,.0f} docs/s; ratio {rate / bare:.2f}"
        )
    return results


class Stages:
    """The pipeline's processes for the latency run."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config, self.logs = config, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        out = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "socpipe", *args, "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def pipeline(settings: Settings, workdir: Path, log_file: Path, token: str) -> Iterator[str]:
    """collect, detect, alert and api running over ``settings``; yields the API's URL."""
    values: dict[str, Any] = settings.model_dump(mode="json")
    port = 18_000 + os.getpid() % 1000
    values["api"] = {
        "host": "127.0.0.1",
        "port": port,
        "tokens": [{"name": "bench", "token": token, "role": "analyst"}],
    }
    values["detector"]["rules_paths"] = [str(ROOT / "rules" / "socpipe")]
    values["agency"] = {"id": "so-tttt", "tier": "province", "name": "Sở Thông tin và Truyền thông"}
    values["collector"] = {
        "id": "bench",
        "host": "bench-host",
        "paths": [str(log_file)],
        "format": "syslog",
        "checkpoint_file": str(workdir / "checkpoints.json"),
    }
    config = workdir / "socpipe.yaml"
    config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    stages = Stages(config, workdir)
    try:
        for name in ("detect", "alert", "api", "collect"):
            stages.start(name, name)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            stages.check()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the API did not come up")
        time.sleep(5)  # consumers joined their groups
        stages.check()
        yield url
    finally:
        stages.stop()


def syslog_line(moment: datetime, host: str, text: str) -> str:
    local = moment.astimezone(ZONE)
    return f"{local:%b} {local.day:>2} {local:%H:%M:%S} {host} sshd[4242]: {text}"


def latency(
    url: str, token: str, log_file: Path, rate: int, duration_s: float, tag: str, rule_id: str
) -> dict[str, Any]:
    """Write ``rate`` lines/s for ``duration_s``; the latencies of the 20 samples a second."""
    written: dict[str, float] = {}
    found: dict[str, float] = {}
    unavailable: list[float] = []
    done = threading.Event()
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()

    def poll() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            while not done.is_set() or len(found) < len(written):
                if done.is_set() and time.time() > stop_at + 30:
                    break  # what is not found by now is reported as not found
                params = {"rule_id": rule_id, "since": since, "limit": 500}
                answer = client.get("/alerts", params=params)
                now = time.time()
                if answer.status_code == 503:  # a new index's shards not ready yet
                    unavailable.append(now)
                    time.sleep(0.05)
                    continue
                answer.raise_for_status()
                for alert in answer.json()["data"]:
                    host = alert["entities"].get("host") or ""
                    if host in written and host not in found:
                        found[host] = now
                time.sleep(0.05)

    stop_at = time.time() + duration_s
    poller = threading.Thread(target=poll)
    poller.start()
    tick, per_tick = 0.05, max(1, rate // 20)  # 20 writes a second, one sample each
    with log_file.open("a", encoding="utf-8") as handle:
        n, next_at = 0, time.time()
        while time.time() < stop_at:
            now = datetime.now(UTC)
            host = f"{tag}-{n}"
            lines = [
                syslog_line(
                    now,
                    "bench-srv",
                    f"Accepted publickey for deploy from 10.0.0.{i % 250} port {40000 + i} ssh2",
                )
                for i in range(per_tick - 1)
            ]
            lines.append(
                syslog_line(
                    now,
                    host,
                    f"Failed password for nguyen.van.a from 10.9.{n % 250}.{n // 250 % 250} "
                    f"port {50000 + n % 10000} ssh2",
                )
            )
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            written[host] = time.time()
            n += 1
            next_at += tick
            time.sleep(max(0.0, next_at - time.time()))
    done.set()
    poller.join()
    values = sorted(found[h] - written[h] for h in found)
    lost = len(written) - len(found)
    if not values:
        raise RuntimeError("no sample alert was found through the API")
    p50 = statistics.quantiles(values, n=100)[49] if len(values) > 1 else values[0]
    p99 = statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]
    return {
        "rate": rate,
        "lines": n * per_tick,
        "samples": len(written),
        "not_found": lost,
        "api_503": len(unavailable),
        "p50_s": round(p50, 3),
        "p99_s": round(p99, 3),
        "max_s": round(values[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detections", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=5_000)
    parser.add_argument("--sizes", default="100,250,500,1000,2000")
    parser.add_argument("--rates", default="1000,5000")
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}"
    topics = {
        name: f"{prefix}.soc.{name}"
        for name in ("raw", "events", "detections", "dlq", "correlate", "rules", "heartbeats")
    }
    settings = load_settings(
        kafka={"topics": topics, "client_id": prefix},
        elasticsearch={"index_prefix": prefix},
        alerting={"group_id": f"{prefix}-alert", "events_group_id": f"{prefix}-events"},
        detector={"group_id": f"{prefix}-detect"},
    )
    es = make_elasticsearch(settings.elasticsearch)
    summary: dict[str, Any] = {"run": prefix}
    try:
        print(f"1. folding {args.detections:,} detections over {args.keys:,} keys into alerts")
        items = detections(args.detections, args.keys)
        sizes = [int(size) for size in args.sizes.split(",")]
        summary["indexing"] = indexing(es, prefix, items, sizes)
        best = max(summary["indexing"].items(), key=lambda pair: pair[1]["folded_per_s"])
        summary["best_batch"] = {"size": int(best[0]), **best[1]}
        print(f"   best: batch {best[0]} at {best[1]['folded_per_s']:,} detections/s")

        print("2. latency from a written line to its alert through the API")
        ensure_topics(settings.kafka)
        token = uuid.uuid4().hex + uuid.uuid4().hex
        rule_id = yaml.safe_load((ROOT / FAILED_RULE).read_text(encoding="utf-8"))["id"]
        with tempfile.TemporaryDirectory(prefix="socpipe-bench-") as tmp:
            workdir = Path(tmp)
            log_file = workdir / "auth.log"
            log_file.touch()
            with pipeline(settings, workdir, log_file, token) as url:
                summary["latency"] = []
                for rate in [int(r) for r in args.rates.split(",")]:
                    result = latency(
                        url, token, log_file, rate, args.duration, f"lat{rate}-{run}", rule_id
                    )
                    summary["latency"].append(result)
                    print(
                        f"   {rate:>5} events/s: {result['samples']} samples, p50 "
                        f"{result['p50_s']:.3f} s, p99 {result['p99_s']:.3f} s, max "
                        f"{result['max_s']:.3f} s, not found {result['not_found']}"
                    )
        at5000 = next((r for r in summary["latency"] if r["rate"] == 5000), None)
        summary["goal_p99_under_2s_at_5000"] = at5000 is not None and at5000["p99_s"] < 2.0
    finally:
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
        es.close()
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
