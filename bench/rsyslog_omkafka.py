"""rsyslog (imfile → omkafka) shipping a file to Kafka: the baseline for the collector benchmark.

``bench/collector_throughput.py`` imports this module to run rsyslog on the same file and a twin
topic as our collector, then prints both figures and their ratio. Run alone, it writes a file of
sshd lines (or takes ``--file``), ships it and prints lines/s, peak memory and the config used::

    .venv/bin/python bench/rsyslog_omkafka.py --lines 2000000

rsyslog ships 200,000 sshd lines in well under a second here, so give it a million lines or more
for the 0.1 s counting interval to stay a small part of the figure.

rsyslog runs as a private foreground instance (own config, pid file and work directory, no
system inputs) so it never meets the host's syslog; Debian's ``rsyslog`` and ``rsyslog-kafka``
packages are installed on first use, with their service kept from starting. The producer
settings mirror ``socpipe.kafka.make_producer``: lz4, acks=all, a 20 ms linger, one request in
flight. The clock runs from starting rsyslogd until the topic's end offsets add up to the
file's line count, so startup and delivery to the broker are both inside the figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from socpipe.samples import loghub_openssh, sshd_lines

PACKAGES = ("rsyslog", "rsyslog-kafka")
INSTALL_COMMAND = (
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
    + " ".join(PACKAGES)
)
OMKAFKA = Path("/usr/lib/x86_64-linux-gnu/rsyslog/omkafka.so")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# Saved beside the original while ours is in place; found at start, it means an earlier run died
# mid-install and this copy is the host's own policy, to be put back.
POLICY_RC_D_SAVED = Path("/usr/sbin/policy-rc.d.socpipe-bench")
POLL_S = 0.1
STALL_S = 30.0
# apt-get's words when the package lists are missing or stale, the one failure `update` cures.
_NO_LISTS = ("Unable to locate package", "has no installation candidate", "is not available")


@dataclass(frozen=True)
class RsyslogResult:
    """One rsyslog run: wall time to the last message in Kafka, rate, peak memory, config.

    ``messages_in_topic`` is counted after rsyslogd stopped (more than the lines would mean
    duplicates); ``cpu_seconds`` is rsyslogd's user + system time over all its threads.
    """

    seconds: float
    lines_per_s: float
    peak_rss_bytes: int
    messages_in_topic: int
    config_text: str
    cpu_seconds: float
    # From the first messages seen in Kafka to the last: the rate without the start-up.
    first_seen_s: float = 0.0
    steady_lines_per_s: float = 0.0


# --- installation -------------------------------------------------------------------------------


def ensure_rsyslog() -> Path:
    """The path of rsyslogd, with Debian's rsyslog and rsyslog-kafka installed if either is
    missing. The system rsyslog service is not started (a policy-rc.d denies it during the
    install) and /etc/rsyslog.conf is left as the package ships it. RuntimeError when not root
    or when apt fails, with the command to run by hand."""
    rsyslogd = _find_rsyslogd()
    if rsyslogd is not None and _find_omkafka() is not None:
        return rsyslogd
    if os.geteuid() != 0:
        raise RuntimeError(
            f"rsyslogd or its omkafka module is missing and installing needs root: run "
            f"`sudo {INSTALL_COMMAND}` and start the benchmark again"
        )
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            f"rsyslogd or omkafka is missing and there is no apt-get here: install rsyslog "
            f"with its Kafka output module (Debian: `{INSTALL_COMMAND}`)"
        )
    running_before = _rsyslogd_pids()
    try:
        with _services_held_back():
            _apt_install()
    finally:
        # invoke-rc.d honours policy-rc.d, but a maintainer script may start the daemon
        # directly: whatever rsyslogd appeared during the install is ours to stop.
        _stop_pids(_rsyslogd_pids() - running_before)
    rsyslogd = _find_rsyslogd()
    if rsyslogd is None or _find_omkafka() is None:
        raise RuntimeError(
            f"apt-get reported success but rsyslogd or omkafka.so is still missing; check "
            f"`dpkg -L {' '.join(PACKAGES)}` and run `{INSTALL_COMMAND}` by hand"
        )
    return rsyslogd


def _find_rsyslogd() -> Path | None:
    found = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    return Path(found) if found else None


def _find_omkafka() -> Path | None:
    if OMKAFKA.is_file():
        return OMKAFKA
    if shutil.which("dpkg") is None:
        return None
    listing = subprocess.run(
        ["dpkg", "-L", "rsyslog-kafka"], capture_output=True, text=True, check=False
    )
    for line in listing.stdout.splitlines():
        if line.endswith("/omkafka.so") and Path(line).is_file():
            return Path(line)
    return None


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 and any(words in done.stderr for words in _NO_LISTS):
        update = subprocess.run(
            ["apt-get", "update"], capture_output=True, text=True, env=env, check=False
        )
        if update.returncode != 0:
            raise RuntimeError(
                f"apt-get update failed (exit {update.returncode}):\n{_tail(update.stderr)}\n"
                f"fix the apt sources, then run `apt-get update && {INSTALL_COMMAND}`"
            )
        done = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(install)}` failed (exit {done.returncode}):\n"
            f"{_tail(done.stderr or done.stdout)}\nrun `{INSTALL_COMMAND}` by hand"
        )


@contextmanager
def _services_held_back() -> Iterator[None]:
    """A policy-rc.d that answers 101 ("action forbidden") while apt runs, so postinst scripts
    install the rsyslog service without starting it; the host's own policy is put back after."""
    if POLICY_RC_D.exists() and not POLICY_RC_D_SAVED.exists():
        POLICY_RC_D.replace(POLICY_RC_D_SAVED)
    POLICY_RC_D.write_text(
        "#!/bin/sh\n# socpipe bench: no service starts during install\nexit 101\n"
    )
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        if POLICY_RC_D_SAVED.exists():
            POLICY_RC_D_SAVED.replace(POLICY_RC_D)
        else:
            POLICY_RC_D.unlink(missing_ok=True)


def _rsyslogd_pids() -> set[int]:
    pids = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with suppress(OSError):
            if comm.read_text().strip() == "rsyslogd":
                pids.add(int(comm.parent.name))
    return pids


def _stop_pids(pids: set[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
        time.sleep(0.1)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- configuration ------------------------------------------------------------------------------


def rsyslog_config(file: Path, topic: str, bootstrap: str, *, workdir: Path) -> str:
    """A private rsyslog config: ``file`` read from its first line by imfile, each line sent
    unchanged as one Kafka message to ``topic`` through an in-memory action queue."""
    state = workdir / "state"
    brokers = ", ".join(_quote(broker.strip()) for broker in bootstrap.split(","))
    return f"""\
# socpipe bench: a private rsyslog instance, imfile -> omkafka (bench/rsyslog_omkafka.py).
# No imuxsock/imklog: nothing but the file comes in.
global(
  workDirectory={_quote(str(state))}
  maxMessageSize="64k"
  # off (the default) would send rsyslogd's own messages to the host's /dev/log
  processInternalMessages="on"
)
main_queue(queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="1024")

module(load="imfile" mode="inotify")
module(load="omkafka")

# imfile hands over the line as read, without its newline and without parsing it: %rawmsg% is
# those bytes (checked byte for byte, with tabs, control and invalid UTF-8 bytes, against the file).
template(name="line" type="string" string="%rawmsg%")

ruleset(name="to_kafka") {{
  action(
    type="omkafka"
    name="kafka"
    broker=[{brokers}]
    topic={_quote(topic)}
    template="line"
    confParam=[
      "compression.codec=lz4",
      "queue.buffering.max.ms=20",
      "batch.num.messages=10000",
      "queue.buffering.max.messages=1000000",
      "max.in.flight.requests.per.connection=1",
      "message.send.max.retries=2147483647"
    ]
    topicConfParam=["acks=all"]
    resubmitOnFailure="on"
    errorFile={_quote(str(workdir / "omkafka-errors.json"))}
    queue.type="LinkedList"
    queue.size="100000"
    queue.dequeueBatchSize="1024"
    action.resumeRetryCount="-1"
  )
}}

input(
  type="imfile"
  file={_quote(str(file))}
  tag="socpipe-bench"
  ruleset="to_kafka"
  readMode="0"
  freshStartTail="off"
  addMetadata="off"
)

# rsyslogd's own messages stay in the default ruleset, kept apart from the topic's count.
action(type="omfile" file={_quote(str(workdir / "rsyslogd-internal.log"))})
"""


def _quote(value: str) -> str:
    """A RainerScript string literal: backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_config(rsyslogd: Path, config: Path) -> None:
    """``rsyslogd -N1``: RuntimeError with rsyslog's own words if the config is not valid."""
    checked = subprocess.run(
        [str(rsyslogd), "-N1", "-f", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if checked.returncode != 0:
        raise RuntimeError(
            f"rsyslogd -N1 rejects {config} (exit {checked.returncode}):\n"
            f"{_tail(checked.stderr + checked.stdout)}"
        )


# --- Kafka --------------------------------------------------------------------------------------


def reset_topic(bootstrap: str, topic: str, partitions: int = 1, timeout_s: float = 60) -> None:
    """Delete ``topic`` if it exists and create it empty, so its end offsets count this run."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-rsyslog")
    try:
        if topic in admin.list_topics():
            with suppress(UnknownTopicOrPartitionError):
                admin.delete_topics([topic])
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin.create_topics(
                    [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
                )
                break
            except TopicAlreadyExistsError:
                # Deletion is asynchronous: the name stays taken until the broker has finished.
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"topic {topic} still exists {timeout_s:.0f} s after deleting it"
                    ) from None
                time.sleep(0.2)
        admin.wait_for_topics([topic], timeout_ms=int(timeout_s * 1000))
    finally:
        admin.close()


def _message_count(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> int:
    """Messages in the topic: the sum of its end offsets (the topic was created empty)."""
    return sum(consumer.end_offsets(partitions).values())


def _check_sample(consumer: KafkaConsumer, partition: TopicPartition, file: Path, n: int) -> None:
    """The first ``n`` messages equal the first ``n`` lines byte for byte, or RuntimeError."""
    with file.open("rb") as handle:
        expected = [line.rstrip(b"\n") for _, line in zip(range(n), handle, strict=False)]
    consumer.assign([partition])
    consumer.seek(partition, 0)
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < len(expected) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(record.value for record in records)
    for index, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have:
            raise RuntimeError(
                f"{partition.topic}:{partition.partition}@{index} differs from "
                f"{file}:{index + 1}:\n  file:  {want!r}\n  kafka: {have!r}"
            )
    if len(got) < len(expected):
        raise RuntimeError(
            f"read back only {len(got)} of the first {len(expected)} messages of {partition.topic}"
        )


# --- the run ------------------------------------------------------------------------------------


def run_rsyslog(
    file: Path,
    lines: int,
    topic: str,
    bootstrap: str,
    *,
    workdir: Path,
    timeout_s: float = 600,
    check_first: int = 1000,
    poll_s: float = POLL_S,
    cpus: set[int] | None = None,
) -> RsyslogResult:
    """Ship ``file`` (``lines`` newline-terminated lines) to ``topic`` with rsyslog and time it
    (installing rsyslog first if it is missing: see ``ensure_rsyslog``).

    The topic is deleted and recreated with one partition. rsyslogd runs in the foreground with
    its config, pid file, state and logs in ``workdir``; the clock stops when the topic holds
    ``lines`` messages (end offsets read every ``poll_s``, so give it enough lines that a run
    lasts many times that), then peak RSS is read and rsyslogd is stopped. The first ``check_first``
    messages are compared with the file's lines afterwards. RuntimeError, with the tail of
    rsyslog's output, if rsyslogd exits, makes no progress for 30 s or exceeds ``timeout_s``.
    ``cpus``: the cores rsyslogd (all its threads) may run on, as the collector it is compared
    with is pinned.
    """
    rsyslogd = ensure_rsyslog()
    file = file.resolve()
    workdir = workdir.resolve()
    state = workdir / "state"
    shutil.rmtree(state, ignore_errors=True)  # imfile's read position from an earlier run
    state.mkdir(parents=True)
    config_text = rsyslog_config(file, topic, bootstrap, workdir=workdir)
    config = workdir / "rsyslog.conf"
    config.write_text(config_text, encoding="utf-8")
    pidfile = workdir / "rsyslogd.pid"
    pidfile.unlink(missing_ok=True)
    stderr_path = workdir / "rsyslogd.stderr"
    for log in ("rsyslogd-internal.log", "omkafka-errors.json"):
        (workdir / log).unlink(missing_ok=True)
    check_config(rsyslogd, config)

    reset_topic(bootstrap, topic)
    partitions = [TopicPartition(topic, 0)]
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), client_id="bench-rsyslog", enable_auto_commit=False
    )
    try:
        with stderr_path.open("wb") as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(
                [str(rsyslogd), "-n", "-f", str(config), "-i", str(pidfile)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
            try:
                seconds, peak_rss, cpu_seconds, first_s, first_count = _wait_for_count(
                    process, consumer, partitions, lines, started, timeout_s, poll_s
                )
            except RuntimeError as exc:
                # After the stop: omkafka reports what it could not deliver as it shuts down.
                _stop(process)
                raise RuntimeError(f"{exc}\n{_diagnostics(workdir)}") from None
            finally:
                _stop(process)
        messages = _message_count(consumer, partitions)
        if check_first > 0:
            _check_sample(consumer, partitions[0], file, min(check_first, lines))
    finally:
        consumer.close()
    return RsyslogResult(
        seconds=seconds,
        lines_per_s=lines / seconds,
        peak_rss_bytes=peak_rss,
        messages_in_topic=messages,
        config_text=config_text,
        cpu_seconds=cpu_seconds,
        first_seen_s=first_s,
        steady_lines_per_s=(lines - first_count) / max(seconds - first_s, 1e-9),
    )


def _wait_for_count(
    process: subprocess.Popen[bytes],
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    lines: int,
    started: float,
    timeout_s: float,
    poll_s: float,
) -> tuple[float, int, float, float, int]:
    """Poll the topic until it holds ``lines`` messages: seconds since start, peak RSS bytes,
    CPU seconds used, and when (seconds since start) and at what count messages were first
    seen."""
    peak_rss = 0
    count = last_count = 0
    last_progress = started
    first_s, first_count = 0.0, 0
    while True:
        peak_rss = max(peak_rss, _status_bytes(process.pid, "VmRSS"))
        count = _message_count(consumer, partitions)
        now = time.perf_counter()
        if count and not first_count:
            first_s, first_count = now - started, count
        if count >= lines:
            # VmHWM is the kernel's own high-water mark, catching peaks between samples.
            peak_rss = max(peak_rss, _status_bytes(process.pid, "VmHWM"))
            return now - started, peak_rss, _cpu_seconds(process.pid), first_s, first_count
        if process.poll() is not None:
            raise RuntimeError(
                f"rsyslogd exited ({process.returncode}) with {count} of {lines} messages in Kafka"
            )
        if count > last_count:
            last_count, last_progress = count, now
        elif now - last_progress > STALL_S:
            raise RuntimeError(f"no new message in Kafka for {STALL_S:.0f} s ({count} of {lines})")
        if now - started > timeout_s:
            raise RuntimeError(f"{count} of {lines} messages after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _status_bytes(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status in bytes; 0 once the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all threads) from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the parenthesised command name, which may itself hold spaces.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _diagnostics(workdir: Path) -> str:
    parts = []
    for name in ("rsyslogd.stderr", "rsyslogd-internal.log", "omkafka-errors.json"):
        path = workdir / name
        if path.is_file() and path.stat().st_size:
            parts.append(f"--- {path} (tail)\n{_tail(path.read_text(errors='replace'))}")
    return "\n".join(parts) or f"(rsyslogd wrote nothing to {workdir})"


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- standalone run -----------------------------------------------------------------------------


def write_sshd_file(path: Path, lines: int) -> Path:
    """``lines`` realistic sshd syslog lines in ``path``: the loghub OpenSSH sample (or its
    generated stand-in) repeated."""
    sample = sshd_lines()
    with path.open("w", encoding="utf-8") as out:
        for index in range(lines):
            out.write(sample[index % len(sample)])
            out.write("\n")
    return path


def count_lines(path: Path) -> int:
    """Newline-terminated lines in ``path`` (imfile holds back an unterminated last line)."""
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def main() -> None:
    """Ship a file with rsyslog and print lines/s, peak RSS and the config."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines to generate")
    parser.add_argument("--file", type=Path, help="ship this file instead of generated lines")
    parser.add_argument("--topic", default="bench.rsyslog")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--poll", type=float, default=POLL_S, help="seconds between counts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rsyslog-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.file is not None:
            file = args.file
            lines = count_lines(file)
        else:
            file = write_sshd_file(workdir / "sshd.log", args.lines)
            lines = args.lines
            print(f"sshd lines from {loghub_openssh() or 'the seeded generator'}")
        size = file.stat().st_size
        rsyslogd = ensure_rsyslog()
        version = subprocess.run(
            [str(rsyslogd), "-v"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        print(f"{version[0] if version else rsyslogd}; omkafka {_find_omkafka()}")
        print(f"input: {file} ({lines:,} lines, {size / 2**20:.1f} MiB) -> {args.topic}")
        result = run_rsyslog(
            file,
            lines,
            args.topic,
            args.bootstrap,
            workdir=workdir,
            timeout_s=args.timeout,
            poll_s=args.poll,
        )
        print(
            f"rsyslog imfile->omkafka: {result.seconds:.2f} s, {result.lines_per_s:,.0f} lines/s, "
            f"{size / result.seconds / 2**20:.1f} MiB/s, peak RSS "
            f"{result.peak_rss_bytes / 2**20:.1f} MiB, CPU {result.cpu_seconds:.2f} s, "
            f"{result.messages_in_topic:,} messages in topic"
        )
        print("--- rsyslog config")
        print(result.config_text, end="")


if __name__ == "__main__":
    main()
