"""``socpipe collect``: an agency's collector, from its sources through the shipper to Kafka.

One ``Collector`` runs the sources its configuration names (files, .evtx files, syslog and HTTP
listeners), one shipper (``collectors.shipper``) with its disk spool, and a heartbeat every
``collector.heartbeat_interval_s``. Pull sources (files, .evtx) are polled by the main loop only
while the shipper accepts more, so a collector whose spool is full simply stops reading them; push
sources (syslog, HTTP) run in their own threads. A stop (SIGTERM, SIGINT) stops the listeners,
ships or spools what was read, sends a last heartbeat and closes; checkpoints then cover exactly
what Kafka or the spool holds.

Messages go to the agency's own topic ``<kafka.topics.raw>.<agency id>`` (the only topic its
Kafka credential may write), keyed ``agency/host``: RawBatch values with the header
``socpipe-kind: raw``, and heartbeats with ``socpipe-kind: heartbeat``; the SOC's detectors check
that every record claims the topic's agency and pass heartbeats on to ``soc.heartbeats``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from collectors.base import PullSource, PushSource, RecordMaker, SourceStats
from collectors.checkpoint import CheckpointStore
from collectors.files import FileSource
from collectors.shipper import Shipper
from collectors.spool import Spool
from socpipe import __version__
from socpipe.errors import ConfigError
from socpipe.kafka import make_admin, make_producer, topic_configs
from socpipe.records import HEARTBEAT_KIND, AgencyRef, CollectorRef, SourceRef
from socpipe.settings import (
    CollectorSettings,
    EvtxSourceSettings,
    FileSourceSettings,
    HttpSourceSettings,
    Settings,
    SourceSettings,
    SyslogSourceSettings,
)

log = logging.getLogger(__name__)


def raw_topic(settings: Settings) -> str:
    """The topic this collector writes: its agency's own, unless ``collector.agency_topic`` is
    off (a collector inside the SOC writing ``soc.raw`` itself)."""
    base = settings.kafka.topics.raw
    return f"{base}.{settings.agency.id}" if settings.collector.agency_topic else base


def reachable(servers: list[str], timeout_s: float = 1.0) -> bool:
    """Whether one of the bootstrap servers accepts a TCP connection (a cheap look before a
    Kafka client is started, which would block for seconds on a broker that is away)."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def spool_dir(config: CollectorSettings) -> Path:
    """The spool directory: ``collector.spool.dir``, or ``spool-<id>`` beside the checkpoints."""
    if config.spool.dir is not None:
        return config.spool.dir
    return config.checkpoint_file.parent / f"spool-{config.id}"


def configured_sources(collector: CollectorSettings) -> list[SourceSettings]:
    """The sources of the configuration, the ``paths`` shorthand first."""
    sources: list[SourceSettings] = []
    if collector.paths:
        sources.append(
            FileSourceSettings(paths=[str(p) for p in collector.paths], format=collector.format)
        )
    sources.extend(collector.sources)
    return sources


class Collector:
    """The sources, shipper and heartbeats of one collector process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = settings.collector
        sources = configured_sources(config)
        if not sources:
            raise ValueError("nothing to collect: configure collector.sources (or collector.paths)")
        self.agency = AgencyRef(
            id=settings.agency.id, tier=settings.agency.tier, name=settings.agency.name or None
        )
        self.collector = CollectorRef(id=config.id, version=__version__)
        self.topic = raw_topic(settings)
        self.store = CheckpointStore(config.checkpoint_file, config.checkpoint_interval_s)
        self.spool = Spool(
            spool_dir(config),
            max_bytes=config.spool.max_bytes,
            segment_bytes=config.spool.segment_bytes,
        )
        self.shipper = Shipper(
            producer_factory=lambda: make_producer(
                settings.kafka,
                linger_ms=5,
                max_in_flight_requests_per_connection=5,
                delivery_timeout_ms=int(config.ack_timeout_s * 1000),
                request_timeout_ms=max(1000, int(config.ack_timeout_s * 1000) - 500),
                max_block_ms=int(config.ack_timeout_s * 1000),
                bootstrap_timeout_ms=int(config.ack_timeout_s * 1000),
                reconnect_backoff_max_ms=2000,
            ),
            spool=self.spool,
            topic=self.topic,
            key=f"{self.agency.id}/{config.host}".encode(),
            batch_max_bytes=config.batch_max_bytes,
            ack_timeout_s=config.ack_timeout_s,
            # A few batches ahead of Kafka keep it busy; more would only hold memory.
            max_queue_bytes=max(8 * 1024 * 1024, 2 * config.batch_max_bytes),
            max_in_flight=5,
            probe=lambda: reachable(settings.kafka.bootstrap_servers),
        )
        self.pull: list[PullSource] = []
        self.push: list[PushSource] = []
        for source in sources:
            self._add(source)
        self.started = datetime.now(UTC)
        self.heartbeats = 0

    def _maker(self, source: SourceRef, name: str) -> RecordMaker:
        return RecordMaker(
            agency=self.agency,
            collector=self.collector,
            host=self.settings.collector.host,
            source=source,
            stats=SourceStats(name=name),
            max_line_bytes=self.settings.collector.max_line_bytes,
        )

    def _add(self, source: SourceSettings) -> None:
        if isinstance(source, FileSourceSettings):
            patterns = ",".join(source.paths)
            ref = SourceRef(type="file", path=patterns, format=source.format)
            self.pull.append(FileSource(source, self.store, self._maker(ref, f"file:{patterns}")))
        elif isinstance(source, EvtxSourceSettings):
            from collectors.evtxsource import EvtxSource

            ref = SourceRef(type="evtx", path=",".join(source.paths), format=source.format)
            self.pull.append(
                EvtxSource(source, self.store, self._maker(ref, "evtx:" + ",".join(source.paths)))
            )
        elif isinstance(source, SyslogSourceSettings):
            from collectors.syslog import SyslogSource

            ref = SourceRef(type="syslog", port=source.port, format=source.format)
            name = f"syslog:{source.protocol}:{source.bind}:{source.port}"
            self.push.append(SyslogSource(source, self._maker(ref, name), self.shipper))
        elif isinstance(source, HttpSourceSettings):
            from collectors.httpsource import HttpSource

            ref = SourceRef(type="http", port=source.port, path=source.path, format=source.format)
            name = f"http:{source.bind}:{source.port}{source.path}"
            self.push.append(HttpSource(source, self._maker(ref, name), self.shipper))

    @property
    def stats(self) -> list[SourceStats]:
        """Every source's counters."""
        return [s.stats for s in self.pull] + [s.stats for s in self.push]

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the shipper and the listeners (raises OSError if a port cannot be bound)."""
        self._ensure_topic()
        self.shipper.start()
        started: list[PushSource] = []
        try:
            for source in self.push:
                source.start()
                started.append(source)
        except BaseException:
            for source in started:
                source.stop()
            self.shipper.stop()
            raise

    def _ensure_topic(self) -> None:
        """Create the agency's topic if this credential may (the SOC's own collectors, the
        demo); an agency's credential may not, and its topic is made when the SOC provisions it.
        Either way nothing is lost: until the topic exists, batches wait in the spool."""
        if not self.settings.collector.agency_topic:
            return
        try:
            admin = make_admin(self.settings.kafka)
        except Exception as exc:
            log.info("cannot reach Kafka's admin API now (%s); shipping will tell", exc)
            return
        spec = self.settings.kafka.topic_specs["raw"]
        try:
            if self.topic not in set(admin.list_topics()):
                admin.create_topics(
                    [
                        NewTopic(
                            name=self.topic,
                            num_partitions=spec.partitions,
                            replication_factor=spec.replication_factor,
                            topic_configs=topic_configs(spec),
                        )
                    ]
                )
                log.info("created topic %s", self.topic)
        except TopicAlreadyExistsError:
            pass
        except Exception as exc:
            log.info("topic %s is not created here (%s): the SOC provisions it", self.topic, exc)
        finally:
            admin.close()

    def run_once(self) -> int:
        """Poll each pull source once while the shipper accepts; returns the records offered."""
        offered = 0
        for source in self.pull:
            if not self.shipper.accepting():
                break
            try:
                batch = source.poll(self.settings.collector.batch_size)
            except Exception as exc:  # a source bug must not stop the others
                log.exception("source %s failed", source.stats.name)
                source.stats.error(f"{type(exc).__name__}: {exc}")
                continue
            if batch is not None and batch.records:
                self.shipper.offer(source.stats, batch.records, batch.commit, common=batch.common)
                offered += len(batch.records)
        return offered

    def run(self, stop: threading.Event) -> None:
        """Collect until ``stop`` is set, then stop gracefully (see the module docstring)."""
        config = self.settings.collector
        log.info(
            "collector %s of agency %s: %d sources, shipping to %s",
            config.id,
            self.agency.id,
            len(self.pull) + len(self.push),
            self.topic,
        )
        self.start()
        next_beat = 0.0
        try:
            while not stop.is_set():
                if self.shipper.fatal is not None:
                    raise ConfigError(f"cannot ship: {self.shipper.fatal}")
                now = time.monotonic()
                if now >= next_beat:
                    self.heartbeat()
                    next_beat = now + config.heartbeat_interval_s
                offered = self.run_once()
                # Commits come from the shipper's thread; what they set is saved here when the
                # sources fall quiet too.
                self.store.save_if_due()
                if offered == 0:
                    if self.shipper.accepting():
                        stop.wait(config.poll_interval_s)
                    else:
                        # Full: read on as soon as the shipper has room (backpressure).
                        self.shipper.wait_accepting(config.poll_interval_s)
        finally:
            self.close()

    def close(self, timeout: float = 30.0) -> None:
        """Stop listeners, ship or spool what was read, send a last heartbeat, close."""
        for source in self.push:
            try:
                source.stop()
            except Exception:
                log.exception("stopping %s", source.stats.name)
        self.heartbeat(stopping=True)
        clean = self.shipper.stop(timeout)
        for pull in self.pull:
            pull.close()
        self.store.flush()
        totals = {key: sum(getattr(s, key) for s in self.stats) for key in ("read", "sent")}
        log.info(
            "collector stopped%s: %d records read, %d sent, %d bytes left in the spool",
            "" if clean else " (some records were neither acknowledged nor spooled)",
            totals["read"],
            totals["sent"],
            self.spool.size_bytes,
        )

    def heartbeat(self, *, stopping: bool = False) -> dict[str, Any]:
        """Queue a heartbeat (in order with the records) and return it."""
        beat = self.heartbeat_value(stopping=stopping)
        self.shipper.send_control(HEARTBEAT_KIND, orjson.dumps(beat))
        self.heartbeats += 1
        return beat

    def heartbeat_value(self, *, stopping: bool = False) -> dict[str, Any]:
        """What a heartbeat says: per source read, sent, spooled, dropped, lag and last error,
        and the state of Kafka and the spool."""
        config = self.settings.collector
        return {
            "v": 1,
            "kind": "collector",
            "time": datetime.now(UTC).isoformat(),
            "started": self.started.isoformat(),
            "interval_s": config.heartbeat_interval_s,
            "agency": self.agency.model_dump(exclude_none=True, mode="json"),
            "collector": self.collector.model_dump(mode="json"),
            "host": config.host,
            "topic": self.topic,
            "stopping": stopping,
            "kafka": {"state": "away" if self.shipper.away else "up"}
            | ({"error": self.shipper.kafka_error} if self.shipper.kafka_error else {}),
            "spool": {
                "bytes": self.spool.size_bytes,
                "entries": self.spool.entries,
                "max_bytes": config.spool.max_bytes,
            },
            "queued_bytes": self.shipper.queued_bytes(),
            "sources": [s.snapshot() for s in self.stats],
        }


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the collector until ``stop`` is set."""
    Collector(settings).run(stop)


def spool_dir_writable(path: Path) -> str | None:
    """None if the spool directory can be created and written, else why not."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None
