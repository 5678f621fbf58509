"""Syslog listener: RFC 3164 and RFC 5424 messages over UDP, TCP or TLS, as raw records.

Transports:

- UDP: one datagram is one message; trailing newlines and NULs are dropped. One thread reads the
  socket (receive buffer asked for ``UDP_RECEIVE_BUFFER_BYTES``, best effort).
- TCP and TLS: one thread per connection, at most ``max_connections`` of them; a connection past
  that is closed at once, counted in ``stats.refused`` and reported. TLS requires client
  certificates signed by ``tls.client_cafile`` when that is set.

Framing on TCP and TLS follows RFC 6587 and is decided per frame, as rsyslog does: a frame that
starts with a digit is octet-counted (``57 <34>1 2026-...``), any other ends at a newline (a
trailing CR is dropped, empty lines are skipped; the last one may end with the connection
instead). ``FrameDecoder`` is that state machine on its own, fed whatever ``recv`` returned, so
frames may be split across reads or many to a read.

Bad input is counted, reported in ``stats.error`` with the peer and the frame's number, and never
stops the listener:

- Digits that are not an octet count (followed by something other than a space, more than
  ``MAX_COUNT_DIGITS`` of them, or 0): as rsyslog does, the frame is read as newline-terminated
  instead, digits included. Counted unreadable, shipped.
- An octet count larger than ``max_frame_bytes``: the first ``max_frame_bytes`` bytes are shipped
  with ``truncated`` set to the count, the rest of the frame is read and discarded. Counted
  unreadable. The connection is kept rather than dropped: a count that is a number says exactly
  where the next frame starts, so skipping to it resynchronises, whereas dropping the connection
  would lose whatever the sender had already queued behind the big frame. The same goes for a
  newline-terminated frame longer than ``max_frame_bytes`` (its head, then skipped to the
  newline), and a datagram longer than that.
- A connection that closes within an octet-counted frame (or within its count): the bytes that
  arrived are shipped as one record; counted unreadable.
- No valid ``<PRI>`` (1 to 3 digits, 0 to 191) at the start of a message: shipped as received,
  counted in ``stats.malformed`` and reported.
- Invalid UTF-8 and messages over the maker's ``max_line_bytes``: shipped by ``RecordMaker.line``
  with the exact bytes in ``raw`` or cut with ``truncated``, counted there.

Records come from ``maker.with_source(peer="ip:port", protocol=...)``. A TCP or TLS record's
stream is its connection (the peer and the connection's start, in ns) and its position the
frame's number in that connection; a UDP record's stream is the socket (``udp:`` and its start)
and its position the datagram's number.

Records are offered in batches of up to ``BATCH_RECORDS`` or ``BATCH_INTERVAL_S``, whichever
comes first, stamped with one receive time per batch. A TCP or TLS connection's thread offers
with ``timeout=None``: while the collector is full it stops reading its socket, and the sender's
TCP window closes (backpressure). UDP cannot push back: it offers with ``timeout=0`` and counts
what the collector did not take in ``stats.dropped``.

``stop()`` closes the listener, lets each connection read what had already arrived, finish its
frames and offer its last batch, then joins the threads.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from collectors.base import RecordDict, RecordMaker, Sink, char_boundary, received_now
from socpipe.errors import ConfigError
from socpipe.settings import SyslogSourceSettings, TlsServerSettings

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
BATCH_RECORDS = 500
BATCH_INTERVAL_S = 0.05
UDP_RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024
# The largest UDP payload there is (IPv4: 65,507 bytes); a buffer this big never cuts one.
UDP_MAX_DATAGRAM_BYTES = 65_535
# A count of ten digits already allows 9.9 GB; more digits are not a length but text.
MAX_COUNT_DIGITS = 10
# Peers whose makers are kept (UDP sees a new peer per sender; a maker caches its id digests).
MAKER_CACHE_SIZE = 1024
# A client that connects and never completes its TLS handshake must not hold a slot for ever.
TLS_HANDSHAKE_TIMEOUT_S = 30.0
# Reads a stopping connection still makes (up to 4 MiB): what had arrived, not a sender that
# never pauses.
STOP_DRAIN_READS = 64
# Batches a stopping UDP socket still reads from its receive buffer.
STOP_DRAIN_BATCHES = 64
# How long the listener waits after a failed accept (out of file descriptors, most likely: the
# listener stays readable, and retrying at once would spin).
ACCEPT_RETRY_S = 0.1

_PRI = re.compile(rb"<([0-9]{1,3})>")
_DIGITS = re.compile(rb"[0-9]*")
_SPACE = 0x20
_CR = 0x0D

# The states of FrameDecoder.
_START, _COUNT, _COUNTED, _LINE = range(4)


@dataclass(frozen=True, slots=True)
class Frame:
    """One message cut from a stream (or one datagram).

    ``data`` is the message without its framing, at most ``max_frame_bytes``; ``length`` is its
    full length in bytes (more than ``len(data)`` when it was cut); ``problem`` says what was wrong
    with its framing, None for a well-formed frame. ``data`` may be empty only with a problem (a
    connection closed right after an octet count).
    """

    data: bytes
    length: int
    problem: str | None = None


class FrameDecoder:
    """RFC 6587 framing of one TCP or TLS stream, octet-counted or newline-terminated per frame.

    ``feed`` takes bytes as they arrive and returns the frames they complete; ``finish`` returns
    what was left when the stream ended. It never raises on any input, holds at most
    ``max_frame_bytes + 1`` bytes of an unfinished frame, and gives the same frames however the
    stream is split into reads. See the module docstring for bad framing.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be at least 1, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self._state = _START
        # The frame so far: the count's digits in _COUNT, else the message's first bytes. One byte
        # past the limit is kept, to see whether the cut splits a UTF-8 character.
        self._head = bytearray()
        # _LINE: bytes of the frame seen so far; _COUNTED: the count.
        self._length = 0
        self._remaining = 0
        self._problem: str | None = None
        # _LINE: whether the last byte of the frame so far is a CR (dropped before a newline,
        # as in the whole-line case), known even when the frame is longer than what is held.
        self._ends_cr = False

    @property
    def buffered(self) -> int:
        """Bytes held of the unfinished frame."""
        return len(self._head)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by ``data``, in order."""
        frames: list[Frame] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _START:
                self._state = _COUNT if 0x30 <= data[pos] <= 0x39 else _LINE
            elif state == _LINE:
                pos = self._line(data, pos, frames)
            elif state == _COUNTED:
                pos = self._counted(data, pos, frames)
            else:
                pos = self._count(data, pos)
        return frames

    def finish(self) -> list[Frame]:
        """The unfinished frame at the end of the stream, if any; the decoder starts afresh."""
        state = self._state
        frame: Frame | None = None
        if state == _COUNT:
            digits = self._head.decode("ascii")
            frame = Frame(
                bytes(self._head),
                len(self._head),
                f"the connection closed after {digits!r}, within an octet count or a message",
            )
        elif state == _COUNTED:
            received = self._length - self._remaining
            closed = (
                f"the connection closed {received} bytes into an octet-counted frame of "
                f"{self._length} bytes"
            )
            data = self._cut(received)
            problem = f"{self._problem}; {closed}" if self._problem else closed
            frame = Frame(data, received, problem)
        elif state == _LINE:
            frame = self._line_frame()
        self._reset()
        return [frame] if frame is not None else []

    # --- states -----------------------------------------------------------------------------

    def _count(self, data: bytes, pos: int) -> int:
        head = self._head
        digits = _DIGITS.match(data, pos, min(len(data), pos + MAX_COUNT_DIGITS + 1 - len(head)))
        stop = digits.end() if digits is not None else pos
        head += data[pos:stop]
        if len(head) <= MAX_COUNT_DIGITS:
            if stop == len(data):
                return stop  # the count goes on in the next read
            if data[stop] == _SPACE and int(head) > 0:
                count = int(head)
                head.clear()
                self._length = self._remaining = count
                if count > self.max_frame_bytes:
                    self._problem = (
                        f"octet count {count} is larger than max_frame_bytes "
                        f"({self.max_frame_bytes}): shipped the frame's first bytes, skipped the "
                        "rest"
                    )
                self._state = _COUNTED
                return stop + 1
        # Not an octet count: rsyslog then reads the frame up to its newline, digits included.
        if len(head) > MAX_COUNT_DIGITS:
            why = f"more than {MAX_COUNT_DIGITS} digits"
        elif data[stop] == _SPACE:
            why = "a count of 0"
        else:
            why = f"{head.decode('ascii')!r} followed by {data[stop : stop + 1]!r}"
        self._problem = f"{why} is not an octet count; read the frame up to its newline instead"
        self._length = len(head)
        self._state = _LINE
        return stop

    def _counted(self, data: bytes, pos: int, frames: list[Frame]) -> int:
        take = min(len(data) - pos, self._remaining)
        head = self._head
        if not head and take == self._length and self._problem is None:
            # The whole frame is in this read: no copy through the buffer.
            frames.append(Frame(data[pos : pos + take], take))
            self._reset()
            return pos + take
        room = self.max_frame_bytes + 1 - len(head)
        if room > 0:
            head += data[pos : pos + min(take, room)]
        self._remaining -= take
        if self._remaining == 0:
            frames.append(Frame(self._cut(self._length), self._length, self._problem))
            self._reset()
        return pos + take

    def _line(self, data: bytes, pos: int, frames: list[Frame]) -> int:
        newline = data.find(b"\n", pos)
        stop = len(data) if newline < 0 else newline
        head = self._head
        if newline >= 0 and not head and self._length == 0:
            # The whole line is in this read: no copy through the buffer.
            line = data[pos:newline]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_frame_bytes:
                cut = char_boundary(line, self.max_frame_bytes)
                frames.append(Frame(line[:cut], len(line), self._too_long(len(line), cut)))
            elif line:
                frames.append(Frame(line, len(line)))
            self._state = _START
            return newline + 1
        room = self.max_frame_bytes + 1 - len(head)
        if room > 0:
            head += data[pos : min(stop, pos + room)]
        self._length += stop - pos
        if stop > pos:
            self._ends_cr = data[stop - 1] == _CR
        if newline < 0:
            return stop
        frame = self._line_frame()
        self._reset()
        if frame is not None:
            frames.append(frame)
        return newline + 1

    # --- frames -----------------------------------------------------------------------------

    def _line_frame(self) -> Frame | None:
        length = self._length
        if self._ends_cr and length > 0:
            length -= 1
        data = self._cut(length)
        problem = self._problem
        if length > len(data):
            too_long = self._too_long(length, len(data))
            problem = f"{problem}; {too_long}" if problem else too_long
        if length == 0:
            return None
        return Frame(data, length, problem)

    def _cut(self, length: int) -> bytes:
        """The frame's bytes, cut to max_frame_bytes without splitting a UTF-8 character."""
        head, limit = self._head, self.max_frame_bytes
        if length <= limit:
            return bytes(head[:length])
        # The cut moves back at most 3 bytes: only the bytes around it need looking at.
        start = max(0, limit - 3)
        return bytes(head[: start + char_boundary(bytes(head[start : limit + 1]), limit - start)])

    def _too_long(self, length: int, kept: int) -> str:
        return (
            f"frame of {length} bytes is longer than max_frame_bytes ({self.max_frame_bytes}): "
            f"shipped its first {kept} bytes"
        )

    def _reset(self) -> None:
        self._state = _START
        self._head = bytearray()
        self._length = self._remaining = 0
        self._problem = None
        self._ends_cr = False


def has_valid_pri(message: bytes) -> bool:
    """Whether ``message`` starts with an RFC 3164/5424 ``<PRI>``: 1 to 3 digits, 0 to 191."""
    match = _PRI.match(message)
    return match is not None and int(match.group(1)) <= 191


def format_peer(address: Any) -> str:
    """``ip:port`` of a socket address (``[ip]:port`` for IPv6, IPv4-mapped shown as IPv4)."""
    host, port = str(address[0]), int(address[1])
    if ":" in host:
        with contextlib.suppress(ValueError):
            mapped = ipaddress.IPv6Address(host.split("%", 1)[0]).ipv4_mapped
            if mapped is not None:
                return f"{mapped}:{port}"
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class _Batch:
    """Records read and not yet offered, all stamped with the receive time of the first."""

    __slots__ = ("deadline", "received", "records")

    def __init__(self) -> None:
        self.records: list[RecordDict] = []
        self.received = ""
        self.deadline = 0.0

    def open(self) -> str:
        """The receive time to stamp records with; starts the batch's clock if it is empty."""
        if not self.records:
            self.received = received_now()
            self.deadline = time.monotonic() + BATCH_INTERVAL_S
        return self.received

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def ready(self) -> bool:
        """Whether the batch is full or old enough to be offered."""
        return bool(self.records) and (
            len(self.records) >= BATCH_RECORDS or time.monotonic() >= self.deadline
        )

    def take(self) -> list[RecordDict]:
        records, self.records = self.records, []
        return records


@dataclass(eq=False, slots=True)
class _Connection:
    """One accepted TCP or TLS connection; ``sock`` becomes the TLS socket after wrapping."""

    sock: socket.socket
    peer: str
    thread: threading.Thread | None = None

    def wake(self) -> None:
        """Make a blocked ``recv`` return: what has arrived is still read, then end of stream."""
        # socket.socket's own shutdown, not SSLSocket's, which would drop the TLS state under
        # the reading thread's feet.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RD)


class SyslogSource:
    """A syslog listener on UDP, TCP or TLS (a ``collectors.base.PushSource``).

    ``start()`` binds ``settings.bind:settings.port`` (port 0: any free port, then in ``port``)
    and serves in daemon threads; ``stop()`` closes the listener and offers what was received.
    Its counters are the maker's ``stats``: ``malformed`` counts messages without a valid
    ``<PRI>``, ``refused`` the connections turned away by ``max_connections``.
    """

    def __init__(self, settings: SyslogSourceSettings, maker: RecordMaker, sink: Sink) -> None:
        if settings.protocol == "tls" and settings.tls is None:
            raise ConfigError(
                f"syslog source on port {settings.port}: protocol tls needs tls.certfile and "
                "tls.keyfile"
            )
        if settings.protocol != "tls" and settings.tls is not None:
            raise ConfigError(
                f"syslog source on port {settings.port}: tls is set but protocol is "
                f"{settings.protocol}; set protocol: tls, or remove tls"
            )
        self.settings = settings
        self.maker = maker
        self.sink = sink
        self.stats = maker.stats
        self._protocol = settings.protocol
        # Guards the counters (many connection threads), the maker cache and the connections.
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._makers: dict[str, RecordMaker] = {}
        self._connections: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None
        self._socket: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        self._started_ns = 0
        self._udp_position = 0
        self._dropping = False

    @property
    def address(self) -> tuple[str, int]:
        """The address listened on (the configured one before ``start``)."""
        return self._address or (self.settings.bind, self.settings.port)

    @property
    def port(self) -> int:
        """The port listened on: the one bound when the settings said 0."""
        return self.address[1]

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve in background threads; raises OSError if it cannot bind."""
        if self._socket is not None or self._stopping.is_set():
            raise RuntimeError("a syslog source is started once")
        settings = self.settings
        if settings.tls is not None:
            self._tls = _server_context(settings.tls)
        kind = socket.SOCK_DGRAM if self._protocol == "udp" else socket.SOCK_STREAM
        family, *_, sockaddr = socket.getaddrinfo(
            settings.bind, settings.port, type=kind, flags=socket.AI_PASSIVE
        )[0]
        if kind == socket.SOCK_DGRAM:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                self._grow_receive_buffer(sock)
                sock.bind(sockaddr)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_server(sockaddr[:2], family=family)
        sock.setblocking(False)
        self._socket = sock
        bound = sock.getsockname()
        self._address = (str(bound[0]), int(bound[1]))
        self._started_ns = time.time_ns()
        self._wake_r, self._wake_w = socket.socketpair()
        serve = self._serve_udp if kind == socket.SOCK_DGRAM else self._accept
        self._thread = threading.Thread(
            target=serve, name=f"syslog-{self._protocol}-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("syslog: listening on %s %s:%d", self._protocol, *self._address)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, offer what was received, and join the threads (within ``timeout``)."""
        if self._socket is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.wake()
        for connection in connections:
            if connection.thread is not None:
                connection.thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = len(self._connections)
        if left or (self._thread is not None and self._thread.is_alive()):
            # Most likely waiting for room in a full collector; daemon threads, they end with
            # the process, and what they hold is lost (counted as dropped if the sink refuses).
            message = (
                f"{self._protocol}: {left} connections still open {timeout}s after stop "
                "(waiting for a full collector?)"
            )
            log.warning("syslog: %s", message)
            self.stats.error(message)
        self._socket.close()
        for wake in (self._wake_r, self._wake_w):
            if wake is not None:
                wake.close()
        log.info("syslog: stopped listening on %s port %d", self._protocol, self.port)

    # --- UDP --------------------------------------------------------------------------------

    def _grow_receive_buffer(self, sock: socket.socket) -> None:
        # A burst larger than the receive buffer is dropped by the kernel, uncounted; a big
        # buffer absorbs bursts while the thread is busy offering.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER_BYTES)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if granted < UDP_RECEIVE_BUFFER_BYTES:
            log.info(
                "syslog udp: the receive buffer is %d bytes, not %d; raise net.core.rmem_max "
                "to absorb bigger bursts",
                granted,
                UDP_RECEIVE_BUFFER_BYTES,
            )

    def _serve_udp(self) -> None:
        sock, wake = self._socket, self._wake_r
        assert sock is not None and wake is not None
        buffer = memoryview(bytearray(UDP_MAX_DATAGRAM_BYTES))
        batch = _Batch()
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                try:
                    selector.select(batch.time_left() if batch.records else None)
                    stopping = self._stopping.is_set()
                    for _ in range(STOP_DRAIN_BATCHES if stopping else 1):
                        empty = self._read_datagrams(sock, buffer, batch)
                        if stopping or batch.ready():
                            self._offer_udp(batch.take())
                        if empty:
                            break
                except Exception as exc:  # a bug must not end the listener silently
                    log.exception("syslog udp: reading failed")
                    self.stats.error(f"udp: reading failed: {type(exc).__name__}: {exc}")
                    self._stopping.wait(ACCEPT_RETRY_S)
                    stopping = self._stopping.is_set()
                if stopping:
                    self._offer_udp(batch.take())
                    return

    def _read_datagrams(self, sock: socket.socket, buffer: memoryview, batch: _Batch) -> bool:
        """Reads datagrams into ``batch`` until it is full; True if the socket ran dry."""
        datagrams: list[tuple[bytes, str]] = []
        empty = False
        while len(batch.records) + len(datagrams) < BATCH_RECORDS:
            try:
                size, address = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                empty = True
                break
            except OSError as exc:
                self.stats.error(f"udp: receiving failed: {exc}")
                empty = True
                break
            datagrams.append((bytes(buffer[:size]), format_peer(address)))
        if not datagrams:
            return empty
        received = batch.open()
        limit = self.settings.max_frame_bytes
        stream = f"udp:{self._started_ns}"
        with self._lock:
            for data, peer in datagrams:
                data = data.rstrip(b"\n\x00")
                if not data:
                    continue
                frame = Frame(data, len(data))
                if len(data) > limit:
                    cut = char_boundary(data, limit)
                    frame = Frame(
                        data[:cut],
                        len(data),
                        f"datagram of {len(data)} bytes is longer than max_frame_bytes "
                        f"({limit}): shipped its first {cut} bytes",
                    )
                maker = self._maker_for(peer)
                record = self._record(maker, stream, self._udp_position, frame, received, peer)
                if record is not None:
                    batch.records.append(record)
                    self._udp_position += 1
        return empty

    def _offer_udp(self, records: list[RecordDict]) -> None:
        if not records:
            return
        if self.sink.offer(self.stats, records, None, timeout=0):
            self._dropping = False
            return
        # Reported before counted: whoever sees the count finds its reason already there.
        self.stats.error(f"udp: dropped {len(records)} messages: the collector is full")
        with self._lock:
            self.stats.dropped += len(records)
        if not self._dropping:
            # Once per run of drops in the log; every drop is in the counters and the heartbeat.
            log.warning("syslog udp: the collector is full; dropping messages until it has room")
            self._dropping = True

    # --- TCP and TLS ------------------------------------------------------------------------

    def _accept(self) -> None:
        listener, wake = self._socket, self._wake_r
        assert listener is not None and wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                selector.select()
                if self._stopping.is_set():
                    break
                try:
                    sock, address = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    log.warning("syslog %s: accepting failed: %s", self._protocol, exc)
                    self.stats.error(f"{self._protocol}: accepting a connection failed: {exc}")
                    self._stopping.wait(ACCEPT_RETRY_S)
                    continue
                try:
                    self._admit(sock, format_peer(address))
                except Exception as exc:  # a bug must cost one connection, not the listener
                    log.exception("syslog %s: admitting a connection failed", self._protocol)
                    self.stats.error(f"{self._protocol}: {type(exc).__name__}: {exc}")
                    sock.close()
        # Connections still waiting in the backlog are reset by the close.
        listener.close()

    def _admit(self, sock: socket.socket, peer: str) -> None:
        limit = self.settings.max_connections
        connection: _Connection | None = None
        with self._lock:
            full = len(self._connections) >= limit
            if not (full or self._stopping.is_set()):
                connection = _Connection(sock, peer)
                self._connections.add(connection)
        if connection is None:
            if full:
                # Reported and counted before the close, which is all the peer sees.
                self.stats.error(
                    f"{self._protocol}: refused {peer}: already {limit} connections "
                    "(max_connections)"
                )
                with self._lock:
                    self.stats.refused += 1
            sock.close()
            return
        # Some listeners' flags are inherited on some systems; the connection's reads block.
        sock.setblocking(True)
        # A sender that vanished without closing (a device switched off) frees its slot once
        # keepalive gives up on it.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        connection.thread = threading.Thread(
            target=self._serve,
            args=(connection,),
            name=f"syslog-{self._protocol}-{peer}",
            daemon=True,
        )
        try:
            connection.thread.start()
        except RuntimeError:
            with self._lock:
                self._connections.discard(connection)
            sock.close()
            raise

    def _serve(self, connection: _Connection) -> None:
        try:
            self._serve_connection(connection)
        except Exception as exc:  # a bug must cost one connection, not the listener
            log.exception("syslog %s: serving %s failed", self._protocol, connection.peer)
            self.stats.error(
                f"{self._protocol} from {connection.peer}: {type(exc).__name__}: {exc}"
            )
        finally:
            with contextlib.suppress(OSError):
                connection.sock.close()
            with self._lock:
                self._connections.discard(connection)

    def _serve_connection(self, connection: _Connection) -> None:
        peer = connection.peer
        if self._tls is not None and not self._handshake(connection, self._tls):
            return
        sock = connection.sock
        with self._lock:
            maker = self._maker_for(peer)
        stream = f"{peer}@{time.time_ns()}"
        decoder = FrameDecoder(self.settings.max_frame_bytes)
        batch = _Batch()
        position = 0
        drain_reads = 0
        while True:
            if batch.ready():
                self._offer_tcp(batch.take(), peer)
            if self._stopping.is_set():
                # Read only what has arrived: a sender that never pauses must not hold stop.
                if drain_reads >= STOP_DRAIN_READS:
                    break
                drain_reads += 1
                sock.settimeout(0)
            else:
                sock.settimeout(batch.time_left() if batch.records else None)
            try:
                data = sock.recv(READ_CHUNK_BYTES)
            except (TimeoutError, BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                if self._stopping.is_set():
                    break
                continue  # the batch is due: offered at the top of the loop
            except OSError as exc:
                self.stats.error(f"{self._protocol} from {peer}: reading failed: {exc}")
                break
            if not data:
                break
            frames = decoder.feed(data)
            if frames:
                position = self._add(frames, maker, stream, position, batch, peer)
        position = self._add(decoder.finish(), maker, stream, position, batch, peer)
        self._offer_tcp(batch.take(), peer)

    def _handshake(self, connection: _Connection, context: ssl.SSLContext) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            # Wrapped under the lock: stop() wakes connection.sock, which this replaces.
            connection.sock = context.wrap_socket(
                connection.sock, server_side=True, do_handshake_on_connect=False
            )
        sock = connection.sock
        assert isinstance(sock, ssl.SSLSocket)
        sock.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            sock.do_handshake()
        except (OSError, ValueError) as exc:
            if not self._stopping.is_set():  # a handshake cut short by stop() is no client's fault
                self.stats.error(f"tls from {connection.peer}: TLS handshake failed: {exc}")
            return False
        return True

    def _add(
        self,
        frames: list[Frame],
        maker: RecordMaker,
        stream: str,
        position: int,
        batch: _Batch,
        peer: str,
    ) -> int:
        """Records of ``frames`` into ``batch``; returns the next frame number."""
        if not frames:
            return position
        received = batch.open()
        with self._lock:
            for frame in frames:
                record = self._record(maker, stream, position, frame, received, peer)
                if record is not None:
                    batch.records.append(record)
                    position += 1
        return position

    def _offer_tcp(self, records: list[RecordDict], peer: str) -> None:
        # One read may complete more frames than a batch holds: offered in batches all the same.
        for start in range(0, len(records), BATCH_RECORDS):
            batch = records[start : start + BATCH_RECORDS]
            # Waits while the collector is full: this connection is not read meanwhile, so its
            # sender's TCP window closes.
            if self.sink.offer(self.stats, batch, None, timeout=None):
                continue
            lost = len(records) - start
            self.stats.error(
                f"{self._protocol} from {peer}: dropped {lost} messages: the collector stopped "
                "before taking them"
            )
            with self._lock:
                self.stats.dropped += lost
            return

    # --- records ----------------------------------------------------------------------------

    def _record(
        self,
        maker: RecordMaker,
        stream: str,
        position: int,
        frame: Frame,
        received: str,
        peer: str,
    ) -> RecordDict | None:
        """The record of one frame, counted; None if there is nothing to ship. Holds _lock."""
        stats = self.stats
        if frame.problem is not None:
            stats.unreadable += 1
            stats.error(f"{self._protocol} from {peer}, frame {position}: {frame.problem}")
        elif not has_valid_pri(frame.data):
            self.stats.malformed += 1
            stats.error(
                f"{self._protocol} from {peer}, frame {position}: no valid <PRI> (0 to 191) at "
                f"the start of {frame.data[:32]!r}; shipped as received"
            )
        if not frame.data:
            return None
        record = maker.line(stream, position, frame.data, received)
        if frame.length > len(frame.data):
            if "truncated" not in record:
                stats.truncated += 1
            record["truncated"] = frame.length
        stats.read += 1
        return record

    def _maker_for(self, peer: str) -> RecordMaker:
        """The maker of ``peer``'s records (cached: UDP would otherwise make one a datagram).

        Holds _lock."""
        maker = self._makers.get(peer)
        if maker is None:
            if len(self._makers) >= MAKER_CACHE_SIZE:
                # The oldest peer goes first (dicts keep insertion order).
                del self._makers[next(iter(self._makers))]
            maker = self.maker.with_source(peer=peer, protocol=self._protocol)
            self._makers[peer] = maker
        return maker


def _server_context(tls: TlsServerSettings) -> ssl.SSLContext:
    """The server side of TLS: our certificate, and clients' required if a CA is given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: a sender that writes and closes never reads them, and unread
    # bytes make its kernel reset the connection, which throws away the end of what it sent
    # before this side read it. Syslog senders keep one connection; resumption buys nothing.
    context.num_tickets = 0
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile)
        if tls.client_cafile is not None:
            context.load_verify_locations(cafile=tls.client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"syslog tls: cannot load the certificate {tls.certfile}, key {tls.keyfile}"
            + (f" or client CA {tls.client_cafile}" if tls.client_cafile else "")
            + f": {exc}"
        ) from exc
    return context
