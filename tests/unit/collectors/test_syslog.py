"""SyslogSource and FrameDecoder: syslog over UDP, TCP and TLS, framing, bad input, backpressure."""

from __future__ import annotations

import base64
import contextlib
import random
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from collectors.base import DurableCallback, RecordDict, RecordMaker, SourceStats
from collectors.syslog import (
    BATCH_RECORDS,
    MAX_COUNT_DIGITS,
    Frame,
    FrameDecoder,
    SyslogSource,
    format_peer,
    has_valid_pri,
)
from socpipe.errors import ConfigError
from socpipe.records import AgencyRef, CollectorRef, RawRecord, SourceRef
from socpipe.settings import SyslogSourceSettings, Tier, TlsServerSettings

AGENCY = AgencyRef(id="so-tttt", tier=Tier.PROVINCE, name="Sở Thông tin và Truyền thông")
COLLECTOR = CollectorRef(id="collector-1", version="0.1.0")
VIETNAMESE = "Đăng nhập thất bại cho người dùng Nguyễn Văn Hùng"
RFC3164 = b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"
RFC5424 = (
    b'<165>1 2026-11-27T09:14:15.003+07:00 dvc-portal-01 sshd 4123 ID47 [origin ip="10.20.1.5"]'
    b" Failed password for root from 173.234.31.186"
)
# Only how long a failing test waits before it fails; no test asserts on a duration.
WAIT_S = 30.0


class RecordingSink:
    """An in-memory sink: records what it takes; can refuse everything, or hold offers (a full
    collector) until ``release``."""

    def __init__(self, *, refuse: bool = False, hold: bool = False) -> None:
        self.refuse = refuse
        self.records: list[RecordDict] = []
        self.sizes: list[int] = []
        self.timeouts: list[float | None] = []
        self.waiting = threading.Event()
        self._open = threading.Event()
        if not hold:
            self._open.set()
        self._changed = threading.Condition()

    def offer(
        self,
        stats: SourceStats,
        records: list[RecordDict],
        on_durable: DurableCallback | None = None,
        timeout: float | None = None,
    ) -> bool:
        with self._changed:
            self.timeouts.append(timeout)
        if self.refuse:
            return False
        if not self._open.is_set():
            if timeout == 0:
                return False
            self.waiting.set()
            if not self._open.wait(timeout):
                return False
        with self._changed:
            self.records.extend(records)
            self.sizes.append(len(records))
            self._changed.notify_all()
        if on_durable is not None:
            on_durable()
        return True

    def accepting(self) -> bool:
        return not self.refuse and self._open.is_set()

    def release(self) -> None:
        self._open.set()

    def wait_for(self, count: int) -> list[RecordDict]:
        """The records once there are at least ``count``; fails the test if they never come."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.records) >= count, WAIT_S):
                pytest.fail(f"expected {count} records, got {len(self.records)}")
            return list(self.records)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Polls ``condition``; fails the test if it does not hold within WAIT_S."""
    event = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        event.wait(0.01)
    pytest.fail(f"never happened: {what}")


def make_source(sink: RecordingSink, **options: Any) -> SyslogSource:
    max_line_bytes = options.pop("max_line_bytes", 1024 * 1024)
    config = SyslogSourceSettings(**{"bind": "127.0.0.1", "port": 0, **options})
    maker = RecordMaker(
        agency=AGENCY,
        collector=COLLECTOR,
        host="collector-host",
        source=SourceRef(type="syslog", port=config.port, format=config.format),
        stats=SourceStats(name=f"syslog:{config.protocol}"),
        max_line_bytes=max_line_bytes,
    )
    return SyslogSource(config, maker, sink)


@contextlib.contextmanager
def serving(sink: RecordingSink, **options: Any) -> Iterator[SyslogSource]:
    source = make_source(sink, **options)
    source.start()
    try:
        yield source
    finally:
        source.stop()
    alive = [t.name for t in threading.enumerate() if t.name.startswith("syslog-") and t.is_alive()]
    assert alive == [], "stop() left threads running"


def validated(records: list[RecordDict]) -> list[RawRecord]:
    return [RawRecord.model_validate(record) for record in records]


def messages(records: list[RecordDict]) -> list[str]:
    return [record["message"] for record in records]


def octets(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def tcp_client(source: SyslogSource) -> socket.socket:
    client = socket.create_connection(source.address, timeout=WAIT_S)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def send_udp(source: SyslogSource, *datagrams: bytes) -> str:
    """Sends the datagrams from one socket; returns its address as the source names peers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        for datagram in datagrams:
            client.sendto(datagram, source.address)
        return format_peer(client.getsockname())


def of_peer(records: list[RecordDict], peer: str) -> list[RecordDict]:
    return sorted((r for r in records if r["source"]["peer"] == peer), key=lambda r: r["position"])


# --- TLS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: trustme.CA
    cafile: Path
    server: TlsServerSettings

    def client(self, source: SyslogSource, cert: trustme.LeafCert | None = None) -> ssl.SSLSocket:
        context = ssl.create_default_context(cafile=str(self.cafile))
        if cert is not None:
            cert.configure_cert(context)
        raw = socket.create_connection(source.address, timeout=WAIT_S)
        return context.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(ca: trustme.CA, tmp_path: Path) -> Tls:
    """A server certificate for 127.0.0.1 from a test CA, as files."""
    server = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    cafile = tmp_path / "ca.pem"
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(certfile), append=index > 0)
    server.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return Tls(ca, cafile, TlsServerSettings(certfile=certfile, keyfile=keyfile))


# --- UDP ----------------------------------------------------------------------------------------


def test_udp_rfc3164_and_rfc5424_messages_become_raw_records() -> None:
    sink = RecordingSink()
    with serving(sink, protocol="udp") as source:
        assert source.port != 0
        assert source.address == ("127.0.0.1", source.port)
        peer = send_udp(source, RFC3164 + b"\n", RFC5424 + b"\n\x00")
        records = sink.wait_for(2)

    raws = validated(records)
    assert sorted(messages(records)) == sorted([RFC3164.decode(), RFC5424.decode()])
    assert sorted(r.position for r in raws) == [0, 1]
    assert len({r.id for r in raws}) == 2
    for raw in raws:
        assert raw.source.type == "syslog"
        assert raw.source.peer == peer
        assert raw.source.protocol == "udp"
        assert raw.raw is None
    assert source.stats.read == 2
    assert source.stats.malformed == 0
    assert source.stats.unreadable == 0
    assert set(sink.timeouts) == {0}


def test_udp_drops_are_counted_when_the_collector_is_full() -> None:
    sink = RecordingSink(refuse=True)
    with serving(sink, protocol="udp") as source:
        send_udp(source, b"<13>one", b"<13>two", b"<13>three")
        wait_until(lambda: source.stats.dropped == 3, "three datagrams counted as dropped")

    assert source.stats.read == 3
    assert sink.records == []
    assert source.stats.last_error is not None
    assert "dropped" in source.stats.last_error
    assert set(sink.timeouts) == {0}


def test_bad_pri_is_shipped_as_received_and_counted() -> None:
    bad = [b"no pri at all", b"<192>too big", b"<abc>letters", b"<1234>four digits", b"<>empty"]
    good = [b"<0>kern.emerg", b"<191>local7.debug"]
    sink = RecordingSink()
    with serving(sink, protocol="udp") as source:
        send_udp(source, *bad, *good)
        records = sink.wait_for(len(bad) + len(good))

    validated(records)
    assert sorted(messages(records)) == sorted(m.decode() for m in bad + good)
    assert source.stats.malformed == len(bad)
    assert source.stats.unreadable == 0
    assert source.stats.last_error is not None
    assert "PRI" in source.stats.last_error


def test_datagram_longer_than_max_frame_bytes_is_shipped_cut_and_counted() -> None:
    # Two-byte characters from byte 5 on: byte 1024 is the second byte of one.
    datagram = b"<13> " + "ơ".encode() * 1000
    sink = RecordingSink()
    with serving(sink, protocol="udp", max_frame_bytes=1024) as source:
        send_udp(source, datagram)
        (record,) = sink.wait_for(1)

    validated([record])
    assert record["truncated"] == len(datagram)
    shipped = record["message"].encode()
    assert len(shipped) <= 1024
    assert datagram.startswith(shipped)
    assert "raw" not in record  # cut between characters, never inside one
    assert source.stats.unreadable == 1
    assert source.stats.truncated == 1


# --- TCP framing --------------------------------------------------------------------------------


def test_tcp_mixes_newline_and_octet_counted_frames_on_one_connection() -> None:
    counted = b"<14>1 - - - - - counted\nwith a newline inside"
    vietnamese = f"<13>{VIETNAMESE}".encode()
    stream = (
        b"<13>first line\n"
        + octets(counted)
        + b"<15>crlf line\r\n"
        + b"\n"
        + octets(vietnamese)
        + b"<16>last, without its newline"
    )
    sink = RecordingSink()
    with serving(sink, protocol="tcp") as source:
        with tcp_client(source) as client:
            client.sendall(stream)
            peer = format_peer(client.getsockname())
        records = sink.wait_for(5)

    raws = validated(records)
    assert messages(records) == [
        "<13>first line",
        counted.decode(),
        "<15>crlf line",
        vietnamese.decode(),
        "<16>last, without its newline",
    ]
    assert [r.position for r in raws] == [0, 1, 2, 3, 4]
    assert len({r.id for r in raws}) == 5
    assert {(r.source.peer, r.source.protocol) for r in raws} == {(peer, "tcp")}
    assert source.stats.unreadable == 0
    assert source.stats.malformed == 0
    assert set(sink.timeouts) == {None}


def test_tcp_frames_split_at_every_byte_boundary() -> None:
    stream = b"<13>a b\n" + octets(b"<14>octets") + b"<15>c\r\n"
    expected = ["<13>a b", "<14>octets", "<15>c"]
    sink = RecordingSink()
    with serving(sink, protocol="tcp") as source:
        peers = []
        for cut in range(1, len(stream)):
            with tcp_client(source) as client:
                client.sendall(stream[:cut])
                client.sendall(stream[cut:])
                peers.append(format_peer(client.getsockname()))
        records = sink.wait_for(len(expected) * len(peers))

    validated(records)
    for cut, peer in enumerate(peers, start=1):
        assert messages(of_peer(records, peer)) == expected, f"split after byte {cut}"
    assert source.stats.unreadable == 0


def test_connections_have_streams_of_their_own() -> None:
    sink = RecordingSink()
    with serving(sink, protocol="tcp") as source:
        for _ in range(2):
            with tcp_client(source) as client:
                client.sendall(b"<13>same text\n")
        records = sink.wait_for(2)

    assert [r["position"] for r in records] == [0, 0]
    assert records[0]["id"] != records[1]["id"]


def test_bad_octet_counts_are_unreadable_and_the_source_keeps_serving() -> None:
    sink = RecordingSink()
    with serving(sink, protocol="tcp", max_frame_bytes=1024) as source:
        # Digits that are not a count: the frame is read up to its newline instead.
        with tcp_client(source) as client:
            client.sendall(
                b"12a <13>not a count\n"
                + b"9" * (MAX_COUNT_DIGITS + 1)
                + b" <13>too many digits\n"
                + octets(b"<13>after the bad counts")
            )
            first = format_peer(client.getsockname())
        records = of_peer(sink.wait_for(3), first)
        assert messages(records) == [
            "12a <13>not a count",
            "9" * (MAX_COUNT_DIGITS + 1) + " <13>too many digits",
            "<13>after the bad counts",
        ]
        assert source.stats.unreadable == 2
        assert source.stats.last_error is not None
        assert first in source.stats.last_error

        # A count over max_frame_bytes: its head is shipped, the rest skipped, the next frame
        # found where the sender put it.
        big = b"<13>" + b"x" * 4996
        with tcp_client(source) as client:
            client.sendall(b"5000 " + big + octets(b"<13>after the big frame"))
            second = format_peer(client.getsockname())
        records = of_peer(sink.wait_for(5), second)
        assert messages(records) == [big[:1024].decode(), "<13>after the big frame"]
        assert records[0]["truncated"] == 5000
        assert source.stats.unreadable == 3
        assert source.stats.truncated == 1

        # Closed within a counted frame: what arrived is shipped.
        with tcp_client(source) as client:
            client.sendall(b"100 <13>cut short")
            third = format_peer(client.getsockname())
        records = of_peer(sink.wait_for(6), third)
        assert messages(records) == ["<13>cut short"]
        assert source.stats.unreadable == 4
        assert source.stats.last_error is not None
        assert third in source.stats.last_error
        assert "closed" in source.stats.last_error

        with tcp_client(source) as client:
            client.sendall(b"<13>still serving\n")
        assert messages(sink.wait_for(7))[-1] == "<13>still serving"

    validated(sink.records)


def test_invalid_utf8_is_shipped_with_its_exact_bytes() -> None:
    payload = b"<13>bad \xff\xfe bytes \xc3( here"
    sink = RecordingSink()
    with serving(sink, protocol="tcp") as source:
        with tcp_client(source) as client:
            client.sendall(payload + b"\n")
        (record,) = sink.wait_for(1)

    validated([record])
    assert base64.b64decode(record["raw"]) == payload
    assert "\ufffd" in record["message"]
    assert source.stats.invalid_utf8 == 1


@pytest.mark.parametrize("framing", ["octets", "newline"])
def test_frame_of_1_5_mib_is_shipped_cut_to_the_line_limit(framing: str) -> None:
    body = ("Nguyễn Văn Hùng " * 80_000).encode()
    message = b"<13>" + body[: 3 * 512 * 1024 - 4]
    assert len(message) == 3 * 512 * 1024
    data = octets(message) if framing == "octets" else message + b"\n"
    sink = RecordingSink()
    with serving(sink, protocol="tcp", max_frame_bytes=2 * 1024 * 1024) as source:
        with tcp_client(source) as client:
            client.sendall(data)
        (record,) = sink.wait_for(1)

    validated([record])
    assert record["truncated"] == len(message)
    shipped = record["message"].encode()
    assert 1024 * 1024 - 3 <= len(shipped) <= 1024 * 1024
    assert message.startswith(shipped)
    assert source.stats.truncated == 1
    assert source.stats.unreadable == 0


def test_binary_garbage_neither_crashes_nor_hangs_the_source() -> None:
    garbage = random.Random(20261127).randbytes(512 * 1024)
    sink = RecordingSink()
    with serving(sink, protocol="tcp", max_frame_bytes=4096) as source:
        with tcp_client(source) as client:
            client.sendall(garbage)
        with tcp_client(source) as client:
            client.sendall(b"<13>after the garbage\n")
            peer = format_peer(client.getsockname())
        wait_until(lambda: bool(of_peer(sink.records, peer)), "the frame after the garbage")

    assert messages(of_peer(sink.records, peer)) == ["<13>after the garbage"]
    for raw in validated(sink.records):
        shipped = base64.b64decode(raw.raw) if raw.raw else (raw.message or "").encode()
        assert len(shipped) <= 4096
    assert source.stats.read == len(sink.records)


def test_connections_past_max_connections_are_refused_and_reported() -> None:
    sink = RecordingSink()
    with serving(sink, protocol="tcp", max_connections=1) as source, tcp_client(source) as first:
        first.sendall(b"<13>one\n")
        sink.wait_for(1)
        with tcp_client(source) as second:
            second.sendall(b"<13>refused\n")
            with contextlib.suppress(ConnectionError):
                assert second.recv(1) == b""
        wait_until(lambda: source.stats.refused == 1, "the second connection refused")
        assert source.stats.last_error is not None
        assert "max_connections" in source.stats.last_error
        first.sendall(b"<13>two\n")
        records = sink.wait_for(2)

    assert messages(records) == ["<13>one", "<13>two"]


# --- backpressure and stop ----------------------------------------------------------------------


def test_full_collector_stops_reading_tcp_and_loses_nothing() -> None:
    frame_bytes = 8192
    count = 8192
    frames = b"".join(
        b"<13>frame %08d " % n + b"x" * (frame_bytes - 20) + b"\n" for n in range(count)
    )
    assert len(frames) == count * frame_bytes
    view = memoryview(frames)
    sink = RecordingSink(hold=True)
    with serving(sink, protocol="tcp") as source:
        client = tcp_client(source)
        client.settimeout(1.0)
        sent = 0
        blocked = False
        # 64 MiB of frames, far more than socket buffers hold: sent until the sender is held
        # back, which without backpressure it never is.
        while sent < len(frames):
            try:
                sent += client.send(view[sent : sent + 1024 * 1024])
            except TimeoutError:
                blocked = True
                break
        assert blocked, f"sent all {sent} bytes and was never held back"
        wait_until(sink.waiting.is_set, "the source waiting for room in the collector")
        client.close()
        sink.release()
        full, rest = divmod(sent, frame_bytes)
        records = sink.wait_for(full + (1 if rest else 0))

    assert len(records) == full + (1 if rest else 0)
    assert [m[4:18] for m in messages(records[:full])] == [f"frame {n:08d}" for n in range(full)]
    assert set(sink.timeouts) == {None}
    assert source.stats.dropped == 0


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_stop_offers_the_unfinished_frame_of_an_open_connection(protocol: str, tls: Tls) -> None:
    sink = RecordingSink()
    options: dict[str, Any] = {"tls": tls.server} if protocol == "tls" else {}
    with contextlib.ExitStack() as stack:
        with serving(sink, protocol=protocol, **options) as source:
            client = tls.client(source) if protocol == "tls" else tcp_client(source)
            stack.enter_context(client)
            # One send, so one read: the complete frame's arrival shows the rest arrived too.
            client.sendall(b"<13>complete\n<13>unfinished, no newline yet")
            sink.wait_for(1)
        # The client is still connected; right after stop returned, without waiting: stop
        # itself read the end of the connection, finished the frame and offered it.
        assert messages(sink.records) == ["<13>complete", "<13>unfinished, no newline yet"]
        assert [r["position"] for r in sink.records] == [0, 1]


def test_a_port_in_use_fails_start_with_oserror() -> None:
    with serving(RecordingSink(), protocol="tcp") as first:
        second = make_source(RecordingSink(), protocol="tcp", port=first.port)
        with pytest.raises(OSError):
            second.start()


def test_stop_before_start_and_twice_is_harmless() -> None:
    sink = RecordingSink()
    source = make_source(sink, protocol="udp")
    source.stop()
    source.start()
    source.stop()
    source.stop()
    with pytest.raises(RuntimeError):
        source.start()


# --- TLS ----------------------------------------------------------------------------------------


def test_tls_with_a_certificate_from_the_test_ca(tls: Tls) -> None:
    sink = RecordingSink()
    with serving(sink, protocol="tls", tls=tls.server) as source:
        with tls.client(source) as client:
            client.sendall(RFC5424 + b"\n" + octets(RFC3164))
            peer = format_peer(client.getsockname())
        records = sink.wait_for(2)

    raws = validated(records)
    assert messages(records) == [RFC5424.decode(), RFC3164.decode()]
    assert {(r.source.peer, r.source.protocol) for r in raws} == {(peer, "tls")}


def test_mutual_tls_refuses_a_client_without_a_certificate(tls: Tls) -> None:
    server = TlsServerSettings(
        certfile=tls.server.certfile, keyfile=tls.server.keyfile, client_cafile=tls.cafile
    )
    client_cert = tls.ca.issue_cert("syslog-forwarder.so-tttt.example")
    sink = RecordingSink()
    with serving(sink, protocol="tls", tls=server) as source:
        with tls.client(source, client_cert) as client:
            client.sendall(b"<13>with a certificate\n")
        sink.wait_for(1)

        try:
            with tls.client(source) as client:
                client.sendall(b"<13>without a certificate\n")
                answer = client.recv(1)
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b""
        wait_until(
            lambda: "handshake" in (source.stats.last_error or ""), "the handshake error reported"
        )

    assert messages(sink.records) == ["<13>with a certificate"]


def test_tls_without_its_certificate_settings_is_refused_with_the_settings(tls: Tls) -> None:
    with pytest.raises(ValidationError, match="protocol tls needs tls"):
        make_source(RecordingSink(), protocol="tls")
    with pytest.raises(ValidationError, match="tls needs protocol tls"):
        make_source(RecordingSink(), protocol="tcp", tls=tls.server)


def test_unreadable_certificate_fails_start(tmp_path: Path) -> None:
    missing = TlsServerSettings(certfile=tmp_path / "none.pem", keyfile=tmp_path / "none.key")
    source = make_source(RecordingSink(), protocol="tls", tls=missing)
    with pytest.raises(ConfigError, match=r"none\.pem"):
        source.start()


@pytest.mark.parametrize("protocol", ["udp", "tcp", "tls"])
def test_vietnamese_text_survives_byte_exact(protocol: str, tls: Tls) -> None:
    message = f"<13>1 2026-11-27T09:00:00+07:00 dvc-01 portal - - - {VIETNAMESE}".encode()
    sink = RecordingSink()
    options: dict[str, Any] = {"tls": tls.server} if protocol == "tls" else {}
    with serving(sink, protocol=protocol, **options) as source:
        if protocol == "udp":
            send_udp(source, message)
        elif protocol == "tcp":
            with tcp_client(source) as client:
                client.sendall(message + b"\n")
        else:
            with tls.client(source) as client:
                client.sendall(octets(message))
        (record,) = sink.wait_for(1)

    validated([record])
    assert record["message"].encode("utf-8") == message
    assert "raw" not in record
    assert source.stats.invalid_utf8 == 0


# --- FrameDecoder -------------------------------------------------------------------------------


def decode(data: bytes, max_frame_bytes: int = 64, cuts: list[int] | None = None) -> list[Frame]:
    """Frames of ``data`` fed in pieces cut at ``cuts``, then finished."""
    decoder = FrameDecoder(max_frame_bytes)
    frames: list[Frame] = []
    start = 0
    for cut in sorted({0, *(cuts or []), len(data)}):
        frames.extend(decoder.feed(data[start:cut]))
        start = cut
    return frames + decoder.finish()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<13>a\n<13>b\n", [(b"<13>a", 5, False), (b"<13>b", 5, False)]),
        (b"5 <13>a5 <13>b", [(b"<13>a", 5, False), (b"<13>b", 5, False)]),
        (b"\n\r\n<13>a\r\n\n", [(b"<13>a", 5, False)]),
        (b"<13>unterminated", [(b"<13>unterminated", 16, False)]),
        (b"12a <13>x\n", [(b"12a <13>x", 9, True)]),
        (b"0 <13>x\n", [(b"0 <13>x", 7, True)]),
        (b"123", [(b"123", 3, True)]),
        (b"10 <13>ab", [(b"<13>ab", 6, True)]),
        (b"10 ", [(b"", 0, True)]),
        (b"70 " + b"y" * 70 + b"<13>z\n", [(b"y" * 64, 70, True), (b"<13>z", 5, False)]),
        (b"z" * 100 + b"\n<13>z\n", [(b"z" * 64, 100, True), (b"<13>z", 5, False)]),
    ],
)
def test_decoder_frames(data: bytes, expected: list[tuple[bytes, int, bool]]) -> None:
    frames = decode(data)
    assert [(f.data, f.length, f.problem is not None) for f in frames] == expected
    for cut in range(1, len(data)):
        assert decode(data, cuts=[cut]) == frames, f"split after byte {cut}"


def test_decoder_cuts_between_utf8_characters() -> None:
    (frame,) = decode(b"<13>" + "ơ".encode() * 40 + b"\n", max_frame_bytes=9)
    assert frame.data == b"<13>" + "ơ".encode() * 2
    assert frame.length == 84
    assert frame.problem is not None


def test_pri_and_peer_helpers() -> None:
    assert has_valid_pri(b"<0>x") and has_valid_pri(b"<191>x") and has_valid_pri(b"<13>")
    assert not any(has_valid_pri(m) for m in (b"", b"<192>", b"<1234>", b"<>", b"13>", b" <13>"))
    assert format_peer(("10.0.0.5", 514)) == "10.0.0.5:514"
    assert format_peer(("::ffff:10.0.0.5", 514, 0, 0)) == "10.0.0.5:514"
    assert format_peer(("fe80::1", 514, 0, 0)) == "[fe80::1]:514"


LIMIT = 48
_LINE_MESSAGE = (
    st.binary(min_size=1, max_size=LIMIT)
    .map(lambda m: m.replace(b"\n", b" "))
    .filter(lambda m: not m[:1].isdigit() and not m.endswith(b"\r"))
)
_COUNTED_MESSAGE = st.binary(min_size=1, max_size=LIMIT)
_FRAMES = st.lists(
    st.one_of(
        _LINE_MESSAGE.map(lambda m: (m, m + b"\n")),
        _COUNTED_MESSAGE.map(lambda m: (m, octets(m))),
    ),
    max_size=12,
)


@settings(deadline=None, max_examples=400)
@given(frames=_FRAMES, data=st.data())
def test_decoder_keeps_every_byte_of_well_formed_frames(
    frames: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(wire for _, wire in frames)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))

    decoded = decode(stream, LIMIT, cuts)

    assert [f.data for f in decoded] == [message for message, _ in frames]
    assert [f.length for f in decoded] == [len(message) for message, _ in frames]
    assert all(f.problem is None for f in decoded)


@pytest.mark.parametrize("cut", range(19))
def test_a_long_line_s_carriage_return_is_dropped_wherever_the_read_ends(cut: int) -> None:
    # Found by the property below: the CR before the newline of a line longer than the limit
    # was counted in its length when the line came in more than one read.
    stream = b"\r" + b"\x00" * 16 + b"\r\n"
    (frame,) = decode(stream, 16, [cut])
    assert frame.length == 17
    assert frame.data == b"\r" + b"\x00" * 15


@settings(deadline=None, max_examples=400)
@given(
    stream=st.one_of(
        st.binary(max_size=400),
        # Mostly digits, spaces and newlines: the bytes that steer the state machine.
        st.lists(st.sampled_from([b"1", b"9", b"0", b" ", b"\n", b"\r", b"<13>", b"x"])).map(
            b"".join
        ),
    ),
    data=st.data(),
)
def test_decoder_never_raises_and_reads_the_same_however_the_bytes_arrive(
    stream: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))

    whole = decode(stream, 16)

    assert decode(stream, 16, cuts) == whole
    for frame in whole:
        assert len(frame.data) <= 16
        assert frame.length >= len(frame.data)
        assert frame.data or frame.problem is not None
        assert (frame.length > len(frame.data)) <= (frame.problem is not None)
    # Nothing is made up: every byte shipped was in the stream, in order.
    shipped = b"".join(frame.data for frame in whole)
    position = 0
    for byte in shipped:
        position = stream.index(byte, position) + 1


def test_decoder_holds_at_most_one_frame() -> None:
    decoder = FrameDecoder(1024)
    for _ in range(64):
        decoder.feed(b"z" * 4096)
        assert decoder.buffered <= 1024 + 1
    decoder.feed(b"99999 ")
    for _ in range(64):
        decoder.feed(b"y" * 4096)
        assert decoder.buffered <= 1024 + 1


def test_batches_are_bounded() -> None:
    count = 3 * BATCH_RECORDS + 7
    sink = RecordingSink()
    with serving(sink, protocol="tcp") as source:
        with tcp_client(source) as client:
            client.sendall(b"".join(b"<13>n %d\n" % n for n in range(count)))
        records = sink.wait_for(count)

    assert messages(records) == [f"<13>n {n}" for n in range(count)]
    assert source.stats.read == count
    assert max(sink.sizes) <= BATCH_RECORDS
