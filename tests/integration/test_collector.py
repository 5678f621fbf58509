"""The collector against the real Kafka: rotation mid-stream, a 60-second outage, SIGKILL in the
middle of a batch, syslog over TLS, HTTP ingest, and heartbeats.

Each test runs a collector (in a thread, or as ``socpipe collect`` when it must be killed) on
files of its own and reads the agency topic back: every line must arrive, and, except after a
SIGKILL (at-least-once), exactly once.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme
import yaml
from kafka import KafkaConsumer, TopicPartition

from collectors.checkpoint import CheckpointStore
from collectors.worker import Collector, raw_topic
from socpipe.kafka import client_options
from socpipe.records import RawBatch
from socpipe.settings import Settings
from tests.support.services import Endpoints, kafka_outage
from tests.support.stages import free_port

pytestmark = pytest.mark.kafka

VIETNAMESE = "Đăng nhập thất bại cho người dùng Nguyễn Văn Hùng"


def configure(settings: Settings, tmp_path: Path, **collector: Any) -> Settings:
    """``settings`` with a collector of this test: its own checkpoints and spool, quick beats."""
    values = {
        "id": "it-collector",
        "host": "it-host",
        "checkpoint_file": tmp_path / "checkpoints.json",
        "spool": {"dir": tmp_path / "spool"},
        "heartbeat_interval_s": 1.0,
        "poll_interval_s": 0.05,
        "ack_timeout_s": 5.0,
        **collector,
    }
    return settings.model_copy(
        update={"collector": type(settings.collector).model_validate(values)}
    )


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[Collector]:
    collector = Collector(settings)
    stop = threading.Event()
    thread = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the collector did not stop"


class TopicReader:
    """Reads an agency topic from its start: raw records and heartbeats, apart."""

    def __init__(self, settings: Settings) -> None:
        self.topic = raw_topic(settings)
        self.consumer = KafkaConsumer(
            **client_options(settings.kafka),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=500,
        )
        self.records: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.messages = 0
        self._assigned = False

    def poll(self) -> None:
        if not self._assigned:
            partitions = self.consumer.partitions_for_topic(self.topic)
            if not partitions:
                return
            self.consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
            self.consumer.seek_to_beginning()
            self._assigned = True
        for message in self.consumer:
            kind = dict(message.headers or []).get("socpipe-kind")
            if kind == b"heartbeat":
                self.heartbeats.append(orjson.loads(message.value))
            else:
                self.messages += 1
                batch = RawBatch.from_json(message.value)
                self.records.extend(r.model_dump(mode="json") for r in batch.records)

    def wait_for(
        self, count: int, timeout_s: float = 120.0, *, settle: bool = True
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if len(self.records) >= count:
                if settle:
                    # Whatever was about to follow (a duplicate) has a moment to show.
                    time.sleep(1.0)
                    self.poll()
                return self.records
        raise AssertionError(
            f"{len(self.records)} of {count} records within {timeout_s} s "
            f"({self.messages} messages, {len(self.heartbeats)} heartbeats)"
        )

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def reader_for() -> Iterator[Any]:
    readers: list[TopicReader] = []

    def make(settings: Settings) -> TopicReader:
        reader = TopicReader(settings)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


def write_lines(path: Path, start: int, count: int, tag: str = "line") -> None:
    with path.open("a", encoding="utf-8") as out:
        for n in range(start, start + count):
            out.write(f"<38>Nov 27 10:00:00 web-01 app[1]: {tag} {n} {VIETNAMESE}\n")


def numbers(records: list[dict[str, Any]], tag: str = "line") -> list[int]:
    found = []
    for record in records:
        words = record["message"].split()
        at = words.index(tag) if tag in words else -1
        if at >= 0:
            found.append(int(words[at + 1]))
    return found


def test_rotation_by_rename_and_copytruncate_in_the_middle_of_a_stream(
    pipeline_settings: Settings, tmp_path: Path, reader_for: Any
) -> None:
    log_file = tmp_path / "app.log"
    settings = configure(pipeline_settings, tmp_path, paths=[log_file])
    reader = reader_for(settings)
    with running(settings):
        write_lines(log_file, 0, 5000)
        # Rotation by rename while the collector is still reading (it has the file open: a file
        # renamed away before a tailer ever opened it is out of its sight): the old file is
        # finished from its open handle, the new one read from its start.
        reader.wait_for(1, settle=False)
        log_file.rename(tmp_path / "app.log.1")
        write_lines(log_file, 5000, 5000)
        reader.wait_for(10_000)
        # copytruncate: the file is copied and cut in place; what comes after starts at 0.
        (tmp_path / "app.log.2").write_bytes(log_file.read_bytes())
        with log_file.open("r+b") as out:
            out.truncate(0)
        write_lines(log_file, 10_000, 3000)
        records = reader.wait_for(13_000)
    got = numbers(records)
    assert sorted(got) == list(range(13_000))
    assert len({r["id"] for r in records}) == 13_000
    # Within each file the order is the order written.
    assert got[:5000] == list(range(5000))
    assert all(r["message"].endswith(VIETNAMESE) for r in records)


def test_kafka_away_for_60_seconds_while_50000_lines_are_written(
    pipeline_settings: Settings, endpoints: Endpoints, tmp_path: Path, reader_for: Any
) -> None:
    log_file = tmp_path / "app.log"
    settings = configure(pipeline_settings, tmp_path, paths=[log_file])
    reader = reader_for(settings)
    with running(settings) as collector:
        write_lines(log_file, 0, 1000, tag="before")
        reader.wait_for(1000)
        with kafka_outage(endpoints):
            started = time.monotonic()
            for chunk in range(50):
                write_lines(log_file, chunk * 1000, 1000)
                time.sleep(1.0)
            deadline = started + 60
            while time.monotonic() < deadline:
                time.sleep(1.0)
            stats = collector.stats[0]
            spooled_while_away = stats.spooled
            assert collector.shipper.away
            assert collector.spool.size_bytes > 0
        records = reader.wait_for(51_000, timeout_s=300)
    got = numbers(records)
    assert sorted(got) == list(range(50_000)), "a line was lost or repeated"
    assert len(records) == 51_000
    assert len({r["id"] for r in records}) == 51_000
    assert spooled_while_away == 50_000
    assert got == list(range(50_000)), "the spool drained out of order"
    assert collector.spool.empty


def _config_file(settings: Settings, path: Path) -> Path:
    data = settings.model_dump(mode="json", exclude={"local"})
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


LINES = 600_000


def test_sigkill_in_the_middle_of_a_batch_loses_nothing(
    pipeline_settings: Settings, tmp_path: Path, reader_for: Any
) -> None:
    log_file = tmp_path / "app.log"
    write_lines(log_file, 0, LINES)
    settings = configure(pipeline_settings, tmp_path, paths=[log_file], batch_size=500)
    config = _config_file(settings, tmp_path / "collector.yaml")
    reader = reader_for(settings)
    command = [sys.executable, "-m", "socpipe", "collect", "--config", str(config)]
    logs = (tmp_path / "collector.log").open("ab")
    first = subprocess.Popen(command, stdout=logs, stderr=subprocess.STDOUT)
    try:
        # Killed once the first batches are acknowledged (the checkpoint was saved) and far from
        # all: batches are then being read, encoded and sent.
        size = log_file.stat().st_size
        while True:
            assert first.poll() is None, (tmp_path / "collector.log").read_text()[-3000:]
            with contextlib.suppress(Exception):
                stored = CheckpointStore(settings.collector.checkpoint_file).get(log_file)
                if stored is not None and stored.offset > 0:
                    break
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        stored = CheckpointStore(settings.collector.checkpoint_file).get(log_file)
        assert stored is not None and stored.offset < size
        second = subprocess.Popen(command, stdout=logs, stderr=subprocess.STDOUT)
        try:
            records = reader.wait_for(LINES, timeout_s=300)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        logs.close()
    counts = Counter(numbers(records))
    assert set(counts) == set(range(LINES)), "a line was lost"
    repeated = sum(n - 1 for n in counts.values())
    # At-least-once: what was sent but not checkpointed comes again, with the same ids.
    assert len({r["id"] for r in records}) == LINES
    assert repeated == len(records) - LINES


def test_syslog_over_tls_with_a_test_ca(
    pipeline_settings: Settings, tmp_path: Path, reader_for: Any
) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(str(cert))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    server.private_key_pem.write_to_path(str(key))
    port = free_port()
    settings = configure(
        pipeline_settings,
        tmp_path,
        sources=[
            {
                "type": "syslog",
                "protocol": "tls",
                "bind": "127.0.0.1",
                "port": port,
                "tls": {"certfile": str(cert), "keyfile": str(key)},
            }
        ],
    )
    reader = reader_for(settings)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    frames = [
        f"<86>1 2026-11-27T10:00:00+07:00 vpn-01 sshd 42 - - {VIETNAMESE} {n}".encode()
        for n in range(300)
    ]
    with running(settings):
        for attempt in range(50):
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                time.sleep(0.1 * (attempt + 1))
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            # Octet-counting framing (RFC 6587), as rsyslog and syslog-ng send over TLS.
            tls.sendall(b"".join(b"%d %s" % (len(f), f) for f in frames))
        records = reader.wait_for(300)
    assert [r["message"] for r in records] == [f.decode() for f in frames]
    assert {r["source"]["protocol"] for r in records} == {"tls"}
    assert all(r["source"]["peer"].startswith("127.0.0.1:") for r in records)


def test_http_ingest_answers_after_kafka_acknowledged(
    pipeline_settings: Settings, tmp_path: Path, reader_for: Any
) -> None:
    port = free_port()
    settings = configure(
        pipeline_settings,
        tmp_path,
        sources=[
            {
                "type": "http",
                "port": port,
                "format": "portal",
                "tokens": [{"name": "cong-dich-vu-cong", "token": "t" * 32}],
            }
        ],
    )
    reader = reader_for(settings)
    body = b"\n".join(
        orjson.dumps({"event": "login_failed", "user": f"công.dân.{n}", "note": VIETNAMESE})
        for n in range(50)
    )
    with running(settings):
        answer = None
        for attempt in range(50):
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/ingest",
                    content=body,
                    headers={
                        "Authorization": "Bearer " + "t" * 32,
                        "Content-Type": "application/x-ndjson",
                    },
                    timeout=30,
                )
                break
            except httpx.ConnectError:
                time.sleep(0.1 * (attempt + 1))
        assert answer is not None and answer.status_code == 200, answer
        # Answered only once durable: the records are in Kafka already.
        reader.poll()
        records = reader.wait_for(50, timeout_s=10)
    assert [r["data"]["user"] for r in records] == [f"công.dân.{n}" for n in range(50)]
    assert {r["source"]["token"] for r in records} == {"cong-dich-vu-cong"}


def test_heartbeats_report_each_source(
    pipeline_settings: Settings, tmp_path: Path, reader_for: Any
) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_bytes(b"ok\n\xff\xfe not utf-8\n")
    settings = configure(pipeline_settings, tmp_path, paths=[log_file])
    reader = reader_for(settings)
    with running(settings):
        reader.wait_for(2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reader.poll()
            beats = [b for b in reader.heartbeats if b["sources"] and b["sources"][0]["sent"] == 2]
            if beats:
                break
            time.sleep(0.2)
    beat = beats[-1]
    (source,) = beat["sources"]
    assert source["read"] == 2
    assert source["invalid_utf8"] == 1
    assert source["dropped"] == 0
    assert beat["kafka"]["state"] == "up"
    assert beat["agency"]["id"] == settings.agency.id
    assert beat["collector"]["id"] == "it-collector"
    # The last heartbeat says the collector stopped.
    reader.poll()
    assert reader.heartbeats[-1]["stopping"] is True
