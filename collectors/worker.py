"""``socpipe collect``: tail files and ship their lines to soc.raw, checkpointing after each ack."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from kafka.errors import KafkaError

from collectors.checkpoint import CheckpointStore
from collectors.filetail import FileTailSource
from socpipe import __version__
from socpipe.kafka import make_producer
from socpipe.records import AgencyRef, CollectorRef, RawBatch
from socpipe.settings import Settings

log = logging.getLogger(__name__)


class FileCollector:
    """Ships every configured file's new lines as RawBatch messages keyed by agency and host.

    A batch's checkpoint moves only after Kafka acknowledged it (acks=all), so a crash or an
    outage repeats lines rather than losing them; their deterministic ids make repeats visible.
    """

    def __init__(self, settings: Settings, paths: list[Path] | None = None) -> None:
        self.settings = settings
        paths = paths if paths is not None else list(settings.collector.paths)
        if not paths:
            raise ValueError("no files to collect: set collector.paths or give paths")
        agency = AgencyRef(
            id=settings.agency.id, tier=settings.agency.tier, name=settings.agency.name or None
        )
        collector = CollectorRef(id=settings.collector.id, version=__version__)
        self.store = CheckpointStore(settings.collector.checkpoint_file)
        self.sources = [
            FileTailSource(
                path,
                self.store,
                agency=agency,
                collector=collector,
                host=settings.collector.host,
                fmt=settings.collector.format,
            )
            for path in paths
        ]
        self.topic = settings.kafka.topics.raw
        self.key = f"{agency.id}/{settings.collector.host}".encode()
        self.producer = make_producer(settings.kafka)
        self.shipped = 0

    def run_once(self) -> int:
        """Read and ship one batch from each source; returns the records shipped."""
        shipped = 0
        for source in self.sources:
            batch = source.read_batch(self.settings.collector.batch_size)
            if batch.records:
                message = RawBatch(records=batch.records).to_json()
                try:
                    future = self.producer.send(self.topic, key=self.key, value=message)
                    future.get(timeout=self.settings.kafka.request_timeout_ms / 1000)
                except KafkaError as exc:
                    # Not acknowledged: forget what was read so the next round re-reads it from
                    # the checkpoint. (The disk spool of the collectors issue replaces this.)
                    log.warning(
                        "Kafka did not acknowledge %d records from %s: %s; retrying",
                        len(batch.records),
                        source.path,
                        exc,
                    )
                    source.close()
                    continue
                shipped += len(batch.records)
            source.commit(batch)
        self.shipped += shipped
        return shipped

    def run(self, stop: threading.Event) -> None:
        """Ship until ``stop`` is set; sleeps between polls only when there was nothing new."""
        log.info(
            "collecting %s for agency %s as %s",
            [str(s.path) for s in self.sources],
            self.settings.agency.id,
            self.settings.collector.id,
        )
        try:
            while not stop.is_set():
                if self.run_once() == 0:
                    stop.wait(self.settings.collector.poll_interval_s)
        finally:
            for source in self.sources:
                source.close()
            self.producer.close(timeout=30)
            log.info("collector stopped after shipping %d records", self.shipped)


def run(settings: Settings, stop: threading.Event) -> None:
    """Run the file collector until ``stop`` is set."""
    FileCollector(settings).run(stop)
