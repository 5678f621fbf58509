"""``socpipe collect check``: is this collector's configuration ready to run, and can it ship?

Each check gives ``ok``, ``warn`` (it runs, but look) or ``fail`` (it would not work), with what
was found; the verdict is ready when nothing failed. Nothing is changed on the machine, except a
probe file written and removed in the spool directory; Kafka receives one heartbeat marked
``check``, which shows the credential may write the agency's topic end to end.
"""

from __future__ import annotations

import glob
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson

from collectors.checkpoint import CheckpointStore
from collectors.worker import (
    configured_sources,
    raw_topic,
    spool_dir,
    spool_dir_writable,
)
from socpipe import __version__
from socpipe.errors import SocpipeError
from socpipe.kafka import make_producer
from socpipe.records import HEARTBEAT_KIND, KIND_HEADER
from socpipe.settings import (
    EvtxSourceSettings,
    FileSourceSettings,
    HttpSourceSettings,
    Settings,
    SyslogSourceSettings,
    TlsServerSettings,
)

Verdict = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    """One thing looked at, and what was found."""

    what: str
    verdict: Verdict
    detail: str


def run_checks(settings: Settings, *, kafka_timeout_s: float = 15.0) -> list[Check]:
    """Every check of ``settings``, in the order a reader would look (config, sources, disk,
    Kafka)."""
    checks = [
        Check(
            "configuration",
            "ok",
            f"agency {settings.agency.id}, collector "
            f"{settings.collector.id} on {settings.collector.host}",
        )
    ]
    sources = configured_sources(settings.collector)
    if not sources:
        checks.append(Check("sources", "fail", "no sources: set collector.sources or paths"))
    for source in sources:
        checks.extend(_source_checks(source))
    checks.extend(_disk_checks(settings))
    checks.append(_kafka_check(settings, kafka_timeout_s))
    return checks


def _source_checks(source: object) -> Iterator[Check]:
    if isinstance(source, FileSourceSettings | EvtxSourceSettings):
        kind = "file" if isinstance(source, FileSourceSettings) else "evtx"
        for pattern in source.paths:
            what = f"{kind} {pattern}"
            matches = glob.glob(pattern)  # noqa: PTH207 - patterns are whole paths
            if not matches:
                yield Check(what, "warn", "nothing there yet (it is read once it appears)")
                continue
            unreadable = [m for m in matches if not _readable(Path(m))]
            if unreadable:
                yield Check(what, "fail", f"cannot read {', '.join(unreadable[:3])}")
            else:
                yield Check(what, "ok", f"{len(matches)} found")
    elif isinstance(source, SyslogSourceSettings):
        what = f"syslog {source.protocol} {source.bind}:{source.port}"
        yield _bind_check(what, source.bind, source.port, udp=source.protocol == "udp")
        if source.protocol == "tls":
            yield _tls_check(what, source.tls)
    elif isinstance(source, HttpSourceSettings):
        what = f"http {source.bind}:{source.port}{source.path}"
        yield _bind_check(what, source.bind, source.port, udp=False)
        if source.tls is not None:
            yield _tls_check(what, source.tls)
        for token in source.tokens:
            if token.token is None and token.token_file is None:
                yield Check(f"{what} token {token.name}", "fail", "neither token nor token_file")
            elif token.token_file is not None and not _readable(token.token_file):
                yield Check(f"{what} token {token.name}", "fail", f"cannot read {token.token_file}")


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError:
        return False
    return True


def _bind_check(what: str, host: str, port: int, *, udp: bool) -> Check:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    try:
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return Check(what, "fail", f"cannot listen: {exc.strerror or exc}")
    return Check(what, "ok", "the port is free")


def _tls_check(what: str, tls: TlsServerSettings | None) -> Check:
    if tls is None:
        return Check(f"{what} tls", "fail", "protocol tls needs a tls section (certfile, keyfile)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile)
        if tls.client_cafile is not None:
            context.load_verify_locations(tls.client_cafile)
    except (OSError, ssl.SSLError) as exc:
        return Check(f"{what} tls", "fail", f"{exc}")
    return Check(f"{what} tls", "ok", f"certificate {tls.certfile}")


def _disk_checks(settings: Settings) -> Iterator[Check]:
    config = settings.collector
    directory = spool_dir(config)
    problem = spool_dir_writable(directory)
    held = sum(p.stat().st_size for p in directory.glob("*.spool")) if not problem else 0
    yield Check(
        "spool",
        "fail" if problem else "ok",
        problem
        or f"{directory}: {held / 2**20:.1f} MiB held (files), up to "
        f"{config.spool.max_bytes // 2**20} MiB",
    )
    try:
        CheckpointStore(config.checkpoint_file)
    except SocpipeError as exc:
        yield Check("checkpoints", "fail", str(exc))
        return
    parent = config.checkpoint_file.resolve().parent
    problem = spool_dir_writable(parent)
    yield Check("checkpoints", "fail" if problem else "ok", problem or str(config.checkpoint_file))


def _kafka_check(settings: Settings, timeout_s: float) -> Check:
    topic = raw_topic(settings)
    what = f"kafka {','.join(settings.kafka.bootstrap_servers)} → {topic}"
    beat = {
        "v": 1,
        "kind": "collector",
        "check": True,
        "time": datetime.now(UTC).isoformat(),
        "agency": {"id": settings.agency.id, "tier": settings.agency.tier.value},
        "collector": {"id": settings.collector.id, "version": __version__},
        "host": settings.collector.host,
        "sources": [],
    }
    ms = int(timeout_s * 1000)
    try:
        producer = make_producer(
            settings.kafka,
            max_block_ms=ms,
            request_timeout_ms=ms,
            delivery_timeout_ms=ms + 1000,
            reconnect_backoff_max_ms=1000,
            bootstrap_timeout_ms=ms,
        )
    except Exception as exc:
        return Check(what, "fail", f"cannot connect: {type(exc).__name__}: {exc}")
    try:
        future = producer.send(
            topic,
            key=f"{settings.agency.id}/{settings.collector.host}".encode(),
            value=orjson.dumps(beat),
            headers=[(KIND_HEADER, HEARTBEAT_KIND)],
        )
        metadata = future.get(timeout=timeout_s + 2)
    except Exception as exc:
        return Check(what, "fail", _kafka_reason(exc, topic))
    finally:
        producer.close(timeout=2)
    return Check(what, "ok", f"a test heartbeat was acknowledged (partition {metadata.partition})")


def _kafka_reason(exc: Exception, topic: str) -> str:
    name = type(exc).__name__
    text = str(exc)
    if "TopicAuthorization" in name or "TopicAuthorization" in text:
        return f"this credential may not write {topic} (ask the SOC to provision the agency)"
    if "Authentication" in name or "SaslAuthentication" in text:
        return f"the SOC refused the credential: {text}"
    if "UnknownTopicOrPartition" in name or "not in metadata" in text:
        return f"{topic} does not exist (ask the SOC to provision the agency)"
    return f"{name}: {text}"


def ready(checks: list[Check]) -> bool:
    """Whether nothing failed."""
    return all(check.verdict != "fail" for check in checks)
