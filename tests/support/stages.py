"""Stage processes for end-to-end tests: `python -m socpipe <stage>` with one config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from socpipe.kafka import make_consumer
from socpipe.records import Detection
from socpipe.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stages:
    """Starts and stops `python -m socpipe <stage>` processes with one config."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        out = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "socpipe", *args, "--config", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        out.close()

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                log = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{log}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def detections_of(settings: Settings, detector_type: str) -> list[Detection]:
    """Every detection of ``detector_type`` on soc.detections so far (read by a group of its
    own, from the start)."""
    consumer = make_consumer(
        settings.kafka, f"e2e-read-{time.monotonic_ns()}", [settings.kafka.topics.detections],
        consumer_timeout_ms=5_000,
    )  # fmt: skip
    try:
        found = [Detection.from_json(message.value) for message in consumer]
    finally:
        consumer.close()
    return [d for d in found if d.detector.type == detector_type]
