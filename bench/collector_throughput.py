"""Collector throughput: lines/s from one file into the local Kafka, ours against rsyslog+omkafka.

Both read the same file of realistic syslog lines from its start and ship it to the local Kafka,
each to a fresh twin topic of one partition, each pinned to one core (the broker has the other):

- ours: ``socpipe collect`` in its own process (file source, lz4, acks=all, checkpoints), timed
  from the start of the process until its checkpoint reaches the end of the file (a checkpoint
  moves only after Kafka acknowledged the batch);
- rsyslog: ``rsyslogd`` with imfile and omkafka (``bench/rsyslog_omkafka.py``), timed from its
  start until the topic holds every line.

Prints both rates, their ratio, our peak memory (VmHWM) and rsyslog's; the last line is a JSON
summary. The issue's goal: at least 100,000 lines/s on one core, not slower than rsyslog, under
150 MB. Needs the local services (``socpipe services up``) and, for rsyslog, root and apt (the
module installs rsyslog and rsyslog-kafka when they are missing).

    .venv/bin/python bench/collector_throughput.py [--lines 2000000]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from collectors.checkpoint import CheckpointStore
from socpipe.localservices import LocalServices
from socpipe.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rsyslog_omkafka

USERS = ["root", "admin", "nguyen.van.a", "tran.thi.b", "oracle", "ubuntu", "công.dân", "test"]


def write_lines(path: Path, count: int, seed: int = 7) -> int:
    """``count`` sshd and portal-like syslog lines (about 110 bytes each); returns bytes."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            user = rng.choice(USERS)
            ip = f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            if n % 3:
                line = (
                    f"Nov 27 10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d} ubnd-phucxa-srv "
                    f"sshd[{1000 + n % 30000}]: Failed password for {user} from {ip} "
                    f"port {1024 + n % 60000} ssh2"
                )
            else:
                line = (
                    f"Nov 27 10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d} dvc-portal-01 "
                    f'nginx: {ip} - - "POST /dang-nhap HTTP/1.1" 401 512 user={user} n={n}'
                )
            out.write(line + "\n")
    return path.stat().st_size


def peak_rss(pid: int) -> int:
    """VmHWM of ``pid`` in bytes (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_ours(file: Path, lines: int, bootstrap: str, topic: str, workdir: Path) -> dict[str, float]:
    rsyslog_omkafka.reset_topic(bootstrap, topic)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoints = workdir / "checkpoints.json"
    config = {
        "agency": {"id": "bench-agency", "tier": "province"},
        "kafka": {"bootstrap_servers": [bootstrap], "topics": {"raw": topic}},
        "collector": {
            "id": "bench",
            "host": "bench-host",
            "agency_topic": False,
            "paths": [str(file)],
            "checkpoint_file": str(checkpoints),
            # The clock stops at the checkpoint: saved promptly, it marks the last ack.
            "checkpoint_interval_s": 0.05,
            "spool": {"dir": str(workdir / "spool")},
            "heartbeat_interval_s": 60,
        },
        "log_level": "WARNING",
    }
    config_file = workdir / "collector.yaml"
    config_file.write_text(yaml.safe_dump(config))
    size = file.stat().st_size
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "socpipe", "collect", "--config", str(config_file)],
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    first = None
    first_offset = 0
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the collector exited with {proc.returncode}")
            if checkpoints.exists():
                try:
                    stored = CheckpointStore(checkpoints).get(file)
                except Exception:
                    stored = None
                if stored is not None and first is None:
                    first = time.perf_counter() - started
                    first_offset = stored.offset
                if stored is not None and stored.offset >= size:
                    break
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        rss = peak_rss(proc.pid)
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {
        "seconds": seconds,
        "lines_per_s": lines / seconds,
        "peak_rss_bytes": rss,
        "cpu_seconds": cpu,
        "first_ack_s": first or 0.0,
        # From the first acknowledged batch to the last: the rate without the start-up (the
        # lines before it counted by bytes, the lines being of even length).
        "steady_lines_per_s": lines
        * (size - first_offset)
        / size
        / max(seconds - (first or 0.0), 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--skip-rsyslog", action="store_true", help="measure only ours")
    args = parser.parse_args()
    local = LocalServices(load_settings().local)
    local.up(names=["kafka"])
    bootstrap = local.kafka_bootstrap
    with tempfile.TemporaryDirectory(prefix="socpipe-bench-") as tmp:
        workdir = Path(tmp)
        file = workdir / "bench.log"
        size = write_lines(file, args.lines)
        print(f"file: {args.lines:,} lines, {size / 1e6:.1f} MB")
        ours = run_ours(file, args.lines, bootstrap, "bench.collector.ours", workdir / "ours")
        print(
            f"socpipe collect: {ours['lines_per_s']:>10,.0f} lines/s from its start, "
            f"{ours['steady_lines_per_s']:,.0f} from its first acknowledged batch  "
            f"({ours['seconds']:.2f} s, first ack after {ours['first_ack_s']:.2f} s, "
            f"cpu {ours['cpu_seconds']:.2f} s, "
            f"peak {ours['peak_rss_bytes'] / 2**20:.0f} MiB)"
        )
        summary: dict[str, object] = {
            "lines": args.lines,
            "bytes": size,
            "ours_lines_per_s": round(ours["lines_per_s"]),
            "ours_steady_lines_per_s": round(ours["steady_lines_per_s"]),
            "ours_peak_rss_mib": round(ours["peak_rss_bytes"] / 2**20, 1),
            "ours_cpu_s": round(ours["cpu_seconds"], 2),
        }
        if not args.skip_rsyslog:
            rsyslog_omkafka.ensure_rsyslog()
            theirs = rsyslog_omkafka.run_rsyslog(
                file,
                args.lines,
                "bench.collector.rsyslog",
                bootstrap,
                workdir=workdir / "rs",
                cpus={0},
            )
            print(
                f"rsyslog omkafka: {theirs.lines_per_s:>10,.0f} lines/s from its start, "
                f"{theirs.steady_lines_per_s:,.0f} from its first message in Kafka  "
                f"({theirs.seconds:.2f} s, cpu {theirs.cpu_seconds:.2f} s, "
                f"peak {theirs.peak_rss_bytes / 2**20:.0f} MiB)"
            )
            ratio = ours["lines_per_s"] / theirs.lines_per_s
            steady = ours["steady_lines_per_s"] / theirs.steady_lines_per_s
            print(f"ours / rsyslog: {ratio:.2f} from the start, {steady:.2f} steady")
            summary |= {
                "rsyslog_lines_per_s": round(theirs.lines_per_s),
                "rsyslog_steady_lines_per_s": round(theirs.steady_lines_per_s),
                "steady_ratio": round(steady, 3),
                "goal_not_slower": ratio >= 1.0,
                "rsyslog_peak_rss_mib": round(theirs.peak_rss_bytes / 2**20, 1),
                "ratio": round(ratio, 3),
            }
        summary["goal_100k"] = ours["lines_per_s"] >= 100_000
        summary["goal_150mb"] = ours["peak_rss_bytes"] < 150 * 2**20
        print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    main()
