"""What every collector source shares: records as plain dicts, per-source counters, the sink.

Sources build raw records with a ``RecordMaker`` as plain dicts in the shape of
``socpipe.records.RawRecord`` (no pydantic model per line: the collector must read 100,000 lines
a second on one core) and hand them to a ``Sink``, which batches, compresses and ships them to
Kafka or, while Kafka is away, to the disk spool.

Pull sources (files, .evtx) move their checkpoint in the ``on_durable`` callback, which the sink
calls once the records are acknowledged by Kafka or written to the spool, so a crash re-reads
rather than skips. Push sources (syslog, HTTP) cannot re-read: HTTP answers its client only from
``on_durable``; syslog over TCP stops reading its sockets while the sink is full; syslog over UDP
counts what it drops.

Text that is not valid UTF-8 is shipped with the invalid bytes replaced (U+FFFD) in ``message``
and the exact bytes, base64, in ``raw``; a line longer than the limit is shipped cut, with its
full length in ``truncated``. Both are counted in the source's ``SourceStats``.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from socpipe.records import AgencyRef, CollectorRef, SourceRef, stable_id

# One raw record as a plain dict, ready for orjson (the shape of socpipe.records.RawRecord).
RecordDict = dict[str, Any]
DurableCallback = Callable[[], None]

DEFAULT_MAX_LINE_BYTES = 1024 * 1024
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class SourceStats:
    """Counters of one source, reported in every heartbeat.

    ``read``: records read; ``sent``: acknowledged by Kafka; ``spooled``: written to the disk
    spool (they are counted in ``sent`` too once the spool drained them); ``dropped``: lost on
    purpose and counted (UDP while the collector is full); ``unreadable``: inputs that could not
    be read at all (a syslog frame with a bad length, an HTTP body that is not JSON, a broken
    .evtx record); ``malformed``: records shipped that break their format (a syslog message
    without a valid ``<PRI>``); ``refused``: connections turned away (over a listener's limit,
    a failed TLS handshake); ``invalid_utf8`` and ``truncated``: records shipped with their
    raw bytes or cut; ``lag``: what the source knows is waiting (bytes not yet read of a file,
    records not yet durable). Counters only grow, except ``lag``. A source whose threads share
    counters (one per connection) increments them under a lock of its own.
    """

    name: str
    read: int = 0
    sent: int = 0
    spooled: int = 0
    dropped: int = 0
    unreadable: int = 0
    malformed: int = 0
    refused: int = 0
    invalid_utf8: int = 0
    truncated: int = 0
    lag: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def error(self, message: str) -> None:
        """Remember the latest problem of this source (it goes into the next heartbeat)."""
        with self._lock:
            self.last_error = message
            self.last_error_at = datetime.now(UTC)

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict, for a heartbeat."""
        with self._lock:
            data: dict[str, Any] = {
                "name": self.name,
                "read": self.read,
                "sent": self.sent,
                "spooled": self.spooled,
                "dropped": self.dropped,
                "unreadable": self.unreadable,
                "malformed": self.malformed,
                "refused": self.refused,
                "invalid_utf8": self.invalid_utf8,
                "truncated": self.truncated,
                "lag": self.lag,
            }
            if self.last_error is not None:
                data["last_error"] = self.last_error
                data["last_error_at"] = (self.last_error_at or datetime.now(UTC)).isoformat()
            return data


class Sink(Protocol):
    """Where sources hand their records: the collector's shipper."""

    def offer(
        self,
        stats: SourceStats,
        records: list[RecordDict],
        on_durable: DurableCallback | None = None,
        timeout: float | None = None,
        common: RecordDict | None = None,
    ) -> bool:
        """Queue ``records`` (in order, after what this source offered before) for shipping.

        ``common``: the fields the records share and leave out (``RecordMaker.common``).

        Waits up to ``timeout`` seconds (None: until stopped, 0: not at all) while the collector
        is full (Kafka away and the spool full); returns False if the records were not taken.
        ``on_durable`` is called once, from the shipper's thread, when all of them were
        acknowledged by Kafka or written to the spool; it must be quick and must not raise.
        """

    def accepting(self) -> bool:
        """Whether an ``offer`` would be taken now without waiting."""


@dataclass(slots=True)
class PullBatch:
    """Records a pull source read, and how to move its checkpoint past them once durable.

    With ``common`` the records are lean (``RecordMaker.line(..., lean=True)``) and ``common``
    holds what they share (``RecordMaker.common``)."""

    records: list[RecordDict]
    commit: DurableCallback
    common: RecordDict | None = None


class PullSource(Protocol):
    """A source the collector polls (files, .evtx files): it reads only when asked, so a full
    collector simply stops asking (backpressure) and nothing is lost."""

    stats: SourceStats

    def poll(self, max_records: int) -> PullBatch | None:
        """Up to ``max_records`` records read since the last poll, or None if nothing is new.

        Must not block for long and must not raise on bad input (count it in ``stats``).
        Batches must be committed in the order they were polled.
        """

    def close(self) -> None:
        """Release files; unread and uncommitted data is read again after a restart."""


class PushSource(Protocol):
    """A source that listens (syslog, HTTP) and offers what it receives to the sink itself."""

    stats: SourceStats

    def start(self) -> None:
        """Bind and start serving in background threads; raises OSError if it cannot bind."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, hand what was received to the sink, and stop the threads."""


def received_now() -> str:
    """The receive time to stamp records with: now, UTC, ISO 8601 (computed once per batch)."""
    return datetime.now(UTC).isoformat()


class RecordMaker:
    """Builds the raw records of one source as dicts, with deterministic ids.

    The id is ``RawRecord.make_id(collector, source, stream, position)``: a digest of collector,
    source and ``stream`` (the instance of the source: a file's device and inode, an .evtx file's
    identity, a syslog connection, so that a rotated file does not reuse the ids of the one before
    it), computed once per stream, then the position in hex.
    """

    def __init__(
        self,
        *,
        agency: AgencyRef,
        collector: CollectorRef,
        host: str,
        source: SourceRef,
        stats: SourceStats,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._agency_ref = agency
        self._collector_ref = collector
        self.agency = agency.model_dump(exclude_none=True, mode="json")
        self.collector = collector.model_dump(exclude_none=True, mode="json")
        self.host = host
        self.source = source.model_dump(exclude_none=True, mode="json")
        self.stats = stats
        self.max_line_bytes = max_line_bytes
        self._collector_id = collector.id
        self._source_key = (source.type, source.path or source.port)
        self._prefixes: dict[str, str] = {}
        # The stream of the previous record: consecutive records of one stream skip the lookup.
        self._last_stream: str | None = None
        self._last_prefix = ""

    def for_source(self, source: SourceRef) -> RecordMaker:
        """A maker of another source (its own ids), with this one's agency, collector, host,
        counters and line limit: one per file of a source that names many."""
        return RecordMaker(
            agency=self._agency_ref,
            collector=self._collector_ref,
            host=self.host,
            source=source,
            stats=self.stats,
            max_line_bytes=self.max_line_bytes,
        )

    def with_source(self, **changes: Any) -> RecordMaker:
        """A maker for the same source with some of its fields changed (e.g. the peer)."""
        source = {**self.source, **{k: v for k, v in changes.items() if v is not None}}
        twin = self.for_source(SourceRef.model_validate(source))
        # Ids stay those of the configured source, whatever the peer or file of a record.
        twin._source_key = self._source_key
        return twin

    def lines(self, stream: str, lines: list[tuple[int, bytes]], received: str) -> list[RecordDict]:
        """Lean records of many (position, bytes) lines of a stream, for a batch whose common part
        is ``common(received, stream)``.

        The common case (UTF-8, no CR, no byte-order mark, within the limit) is built in one
        comprehension, a third of the cost of a call per line; any other batch goes line by line.
        """
        if not lines:
            return []
        positions = [position for position, _ in lines]
        raws = [raw for _, raw in lines]
        # One pass in C over the whole batch: no line starts a file with a byte-order mark, none
        # is over the limit, none holds a CR, and all of it is UTF-8 (decoded once, then split).
        joined = b"\n".join(raws)
        plain = (
            not (positions[0] == 0 and raws[0].startswith(_UTF8_BOM))
            and max(map(len, raws)) <= self.max_line_bytes
            and b"\r" not in joined
        )
        if plain:
            try:
                messages = joined.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                messages = []
            # (A line holding a newline, which a file source never gives, splits apart: then
            # the counts differ and the slow way below is taken.)
            if len(messages) == len(raws):
                # No id: the batch's common ``id_prefix`` and the position make it (RawBatch).
                return [
                    {"position": position, "message": message}
                    for position, message in zip(positions, messages, strict=True)
                ]
        return [self.line(stream, position, raw, received, lean=True) for position, raw in lines]

    def record_id(self, stream: str, position: int) -> str:
        """The record id of ``position`` in ``stream`` (see the class docstring)."""
        if stream is not self._last_stream:
            prefix = self._prefixes.get(stream)
            if prefix is None:
                prefix = stable_id(self._collector_id, *self._source_key, stream)[:20]
                if len(self._prefixes) > 64:
                    self._prefixes.clear()
                self._prefixes[stream] = prefix
            self._last_stream, self._last_prefix = stream, prefix
        return f"{self._last_prefix}{position:012x}"

    def common(self, received: str, stream: str | None = None) -> RecordDict:
        """The fields every record of this maker shares, for a batch that states them once
        (``RawBatch.common``): with it, ``line(..., lean=True)`` records carry only their own.
        With ``stream``, also the ``id_prefix`` of its ids: records without an id get
        ``id_prefix`` + their position in 12 hex digits, as ``record_id`` makes them."""
        common: RecordDict = {
            "v": 1,
            "agency": self.agency,
            "collector": self.collector,
            "host": self.host,
            "source": self.source,
            "received": received,
        }
        if stream is not None:
            self.record_id(stream, 0)
            common["id_prefix"] = self._last_prefix
        return common

    def line(
        self, stream: str, position: int, raw: bytes, received: str, *, lean: bool = False
    ) -> RecordDict:
        """A record of one line of text (without its newline); counts odd bytes in the stats.

        ``lean``: only id, position and the text (and ``raw``/``truncated``), for a batch whose
        ``common`` (``common(received)``) gives the rest.
        """
        if lean:
            record: RecordDict = {"id": self.record_id(stream, position), "position": position}
        else:
            record = self._whole(stream, position, received)
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if position == 0 and raw.startswith(_UTF8_BOM):
            # Windows tools often begin a UTF-8 file with a byte-order mark; it is not text.
            raw = raw[len(_UTF8_BOM) :]
        if len(raw) > self.max_line_bytes:
            self.stats.truncated += 1
            self.stats.error(
                f"{self.source.get('path') or self.source.get('port')}: record at {position} "
                f"is {len(raw)} bytes, longer than {self.max_line_bytes}; shipped cut"
            )
            record["truncated"] = len(raw)
            raw = raw[: char_boundary(raw, self.max_line_bytes)]
        try:
            record["message"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.stats.invalid_utf8 += 1
            record["message"] = raw.decode("utf-8", errors="replace")
            record["raw"] = base64.b64encode(raw).decode("ascii")
        return record

    def data(self, stream: str, position: int, data: dict[str, Any], received: str) -> RecordDict:
        """A record of one structured event (a JSON object, an .evtx record)."""
        record = self._whole(stream, position, received)
        record["data"] = data
        return record

    def _whole(self, stream: str, position: int, received: str) -> RecordDict:
        """A record's fields but its payload, shared ones included."""
        return {
            "v": 1,
            "id": self.record_id(stream, position),
            "agency": self.agency,
            "collector": self.collector,
            "host": self.host,
            "source": self.source,
            "received": received,
            "position": position,
        }


def char_boundary(data: bytes, limit: int) -> int:
    """The largest cut at or below ``limit`` that does not split a UTF-8 character."""
    cut = limit
    # A UTF-8 character is at most 4 bytes: stepping back over at most 3 continuation bytes
    # (10xxxxxx) reaches its first byte, so the cut drops a split character whole.
    while cut > limit - 3 and cut < len(data) and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut


class Clock(Protocol):
    """Monotonic seconds; tests pass a fake."""

    def __call__(self) -> float: ...


monotonic: Clock = time.monotonic
