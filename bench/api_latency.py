"""Alert search through the API with 1,000,000 alerts indexed: p50 and p99 at 20 clients.

Indexes ``--alerts`` synthetic alerts (165 agencies of both tiers, 40 rules, five severities,
thousands of hosts, users and addresses, a month of times; documents as ``socpipe alert``
writes them, ECS view included) into ``bench-api-alerts-*`` (kept for the next run unless
``--fresh``), starts ``socpipe api`` on loopback, and runs ``--clients`` threads for
``--duration`` seconds, each sending searches one after another: the newest alerts, by
severity, by agency, by rule, by host, free text, a time range sorted by risk, and an agency
viewer's scoped search, with cursor pages. Baseline, in the same run: the same searches through
the same store code called directly from the load generator's threads (no HTTP, no API
process; its tail includes that one process's Python under the GIL). The last line is a JSON
summary; the goal is p99 under 300 ms.
Run with the local services up: ``.venv/bin/python bench/api_latency.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from elasticsearch import helpers

from alerting.indices import Indices
from alerting.store import AlertQuery, ElasticsearchAlertStore
from alerting.templates import alert_document
from socpipe.elastic import make_elasticsearch
from socpipe.records import (
    Alert,
    DetectorRef,
    Entities,
    HistoryEntry,
    RuleRef,
    Severity,
    stable_id,
)
from socpipe.settings import Tier, load_settings

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "bench-api"
LEVELS = list(Severity)
TACTICS = ["initial-access", "credential-access", "execution", "persistence", "lateral-movement"]


def _agencies() -> list[tuple[str, Tier]]:
    provincial = [(f"so-{n:02d}", Tier.PROVINCE) for n in range(30)]
    communes = [(f"xa-{n:03d}", Tier.COMMUNE) for n in range(135)]
    return provincial + communes


def alerts(count: int, seed: int = 7) -> Iterator[Alert]:
    """``count`` alerts spread like a busy month of the province's SOC."""
    rng = random.Random(seed)
    agencies = _agencies()
    end = datetime(2026, 11, 28, tzinfo=UTC)
    rules = [
        RuleRef(
            id=str(uuid.UUID(int=rng.getrandbits(128))),
            title=f"Quy tắc phát hiện {n}: đăng nhập bất thường",
            level=LEVELS[n % 5],
            tags=[f"attack.{TACTICS[n % 5]}", f"attack.t{1000 + n}"],
            tactics=[TACTICS[n % 5]],
            techniques=[f"T{1000 + n}"],
        )
        for n in range(40)
    ]
    detector = DetectorRef(type="sigma", id="bench", version="1")
    for n in range(count):
        agency, tier = agencies[rng.randrange(len(agencies))]
        rule = rules[rng.randrange(len(rules))]
        last = end - timedelta(seconds=rng.randrange(30 * 86400))
        first = last - timedelta(seconds=rng.randrange(3600))
        yield Alert(
            id=stable_id("bench-api", n),
            dedup_key=stable_id(rule.id, agency, n % 5000),
            count=1 + rng.randrange(50),
            first_seen=first,
            last_seen=last,
            window_start=first.replace(minute=0, second=0, microsecond=0),
            detector=detector,
            rule=rule,
            severity=rule.level,
            risk_score=rule.level.risk_score,
            entities=Entities(
                agency=agency,
                tier=tier,
                host=f"{agency}-pc-{rng.randrange(200)}",
                user=f"user{rng.randrange(3000)}",
                source_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            ),
            detection_ids=[stable_id("d", n, k) for k in range(3)],
            events=[{"message": f"Failed password for user{n % 3000} from 10.0.0.{n % 250}"}],
            history=[HistoryEntry(at=first, by="socpipe", action="created")],
        )


def ensure_alerts(count: int, fresh: bool) -> int:
    """Index ``count`` alerts under the bench prefix unless they are there; how many are."""
    settings = load_settings(elasticsearch={"index_prefix": PREFIX})
    es = make_elasticsearch(settings.elasticsearch, request_timeout=300)
    store = ElasticsearchAlertStore(es, PREFIX, 3600)
    alias = store.alias
    if fresh:
        es.indices.delete(index=f"{alias}-*", ignore_unavailable=True, allow_no_indices=True)
    store.ensure_ready()
    Indices(es, PREFIX).ensure_templates(["alerts"])
    have = es.count(index=alias)["count"] if es.indices.exists_alias(name=alias) else 0
    if have >= count:
        print(f"   {have:,} alerts already indexed in {alias}")
        return int(have)
    print(f"   indexing {count:,} alerts into {alias} ...", flush=True)
    started = time.monotonic()
    es.indices.put_settings(
        index=f"{alias}-*", settings={"refresh_interval": "-1"}, allow_no_indices=True
    )
    actions = (
        {
            "_index": store.indices.index_for("alerts", a.window_start),
            "_id": a.id,
            "_source": alert_document(a),
        }
        for a in alerts(count)
    )
    done = 0
    for ok, _ in helpers.streaming_bulk(es, actions, chunk_size=2000, max_retries=3):
        done += ok
    es.indices.put_settings(index=f"{alias}-*", settings={"refresh_interval": "500ms"})
    es.indices.refresh(index=alias)
    es.indices.forcemerge(index=f"{alias}-*", max_num_segments=5, wait_for_completion=True)
    print(f"   {done:,} alerts in {time.monotonic() - started:.0f} s")
    return int(es.count(index=alias)["count"])


def queries(rng: random.Random) -> list[dict[str, Any]]:
    """The searches an analyst's console sends, as API query parameters."""
    agency, _ = _agencies()[rng.randrange(165)]
    since = datetime(2026, 11, 28, tzinfo=UTC) - timedelta(days=rng.randrange(1, 30))
    return [
        {},
        {"severity": rng.choice(["high", "critical"])},
        {"agency": agency},
        {"host": f"{agency}-pc-{rng.randrange(200)}"},
        {"q": "đăng nhập"},
        {"since": since.isoformat(), "status": "new"},
    ]


def run_clients(
    clients: int, duration_s: float, call: Callable[[random.Random], None]
) -> tuple[list[float], int]:
    """``clients`` threads calling ``call`` back to back for ``duration_s``: latencies (s)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.monotonic() + duration_s

    def client(index: int) -> None:
        rng = random.Random(index)
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                call(rng)
            except Exception:
                errors[index] += 1
                continue
            latencies[index].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [value for values in latencies for value in values], sum(errors)


def summary(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {
        "requests": len(values),
        "p50_ms": round(cuts[49] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--fresh", action="store_true", help="index the alerts again")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    args = parser.parse_args()

    print(f"1. {args.alerts:,} alerts")
    indexed = ensure_alerts(args.alerts, args.fresh)
    settings = load_settings(elasticsearch={"index_prefix": PREFIX})
    es = make_elasticsearch(settings.elasticsearch)
    store = ElasticsearchAlertStore(es, PREFIX, 3600)
    key = uuid.uuid4().hex + uuid.uuid4().hex
    viewer = uuid.uuid4().hex + uuid.uuid4().hex
    port = 18_500 + os.getpid() % 400
    values: dict[str, Any] = settings.model_dump(mode="json")
    values["api"] = {
        "host": "127.0.0.1",
        "port": port,
        "workers": args.workers,
        "jwt_secret": uuid.uuid4().hex * 2,
        "tokens": [
            {"name": "bench", "token": key, "role": "analyst"},
            {"name": "viewer", "token": viewer, "role": "agency_viewer", "agency": "xa-042"},
        ],
    }
    with tempfile.TemporaryDirectory(prefix="socpipe-api-bench-") as tmp:
        config = Path(tmp) / "socpipe.yaml"
        config.write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
        log = (Path(tmp) / "api.log").open("wb")
        api = subprocess.Popen(
            [sys.executable, "-m", "socpipe", "api", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "SOCPIPE_LOG_LEVEL": "WARNING"},
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            else:
                raise RuntimeError("the API did not start")
            local = threading.local()

            def through_api(rng: random.Random) -> None:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = httpx.Client(base_url=url, timeout=30)
                token = viewer if rng.random() < 0.1 else key
                params = rng.choice(queries(rng)) | {"limit": 50}
                if token == viewer:  # a viewer asks within its own agency
                    params.pop("agency", None)
                answer = client.get(
                    "/alerts", params=params, headers={"Authorization": f"Bearer {token}"}
                )
                answer.raise_for_status()
                body = answer.json()
                cursor = body.get("next_cursor") or body.get("cursor")
                if cursor and rng.random() < 0.3:  # a second page
                    params["cursor"] = cursor
                    client.get(
                        "/alerts", params=params, headers={"Authorization": f"Bearer {token}"}
                    ).raise_for_status()

            def straight(rng: random.Random) -> None:
                params = rng.choice(queries(rng))
                since = params.get("since")
                store.search(
                    AlertQuery(
                        severity=params.get("severity"),
                        agency=params.get("agency") or ("xa-042" if rng.random() < 0.1 else None),
                        host=params.get("host"),
                        text=params.get("q"),
                        status=params.get("status"),
                        since=datetime.fromisoformat(since) if since else None,
                        limit=50,
                    )
                )

            print(f"2. {args.clients} clients for {args.duration:.0f} s each way")
            run_clients(args.clients, 5, through_api)  # warm caches and connections
            direct, direct_errors = run_clients(args.clients, args.duration, straight)
            via_api, api_errors = run_clients(args.clients, args.duration, through_api)
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(timeout=30)
    result = {
        "alerts": indexed,
        "clients": args.clients,
        "api": summary(via_api) | {"errors": api_errors},
        "store_direct": summary(direct) | {"errors": direct_errors},
    }
    result["ratio_p99"] = round(result["api"]["p99_ms"] / result["store_direct"]["p99_ms"], 2)
    result["goal_p99_under_300ms"] = result["api"]["p99_ms"] < 300
    for name in ("store_direct", "api"):
        figures = result[name]
        print(
            f"   {name:>20}: {figures['requests']:,} searches, p50 {figures['p50_ms']} ms, "
            f"p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms, errors {figures['errors']}"
        )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
