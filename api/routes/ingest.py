"""``POST /ingest``: a collector key's JSON events, into its agency's raw topic.

The body is one JSON object or an array of objects (``Content-Type: application/json``), or one
object per line (``application/x-ndjson``, ``application/jsonl``), optionally gzip; at most
``api.max_body_bytes``, compressed and decompressed. Each object becomes one ``RawRecord`` with
the object as ``data``: source type ``http``, format ``json``, the key's name as collector (and
``source.token``), the caller's address as ``source.peer``. The agency is the key's, always
(``principal.agency``): whatever an object says stays data, so a collector cannot speak for
another agency.

Records go, in ``RawBatch`` messages (``socpipe-kind: raw``), to the agency's own topic
``soc.raw.<agency>`` when it exists (``socpipe.agencies.agency_topic``; the detectors check that
its records claim that agency), else to ``soc.raw``, over the SOC's own Kafka connection. The
answer, 202 with the count, comes once Kafka acknowledged every message. A record's id comes
from the key's name, a digest of the (decompressed) body and its position in it, so sending
the same body again after a 503 gives the same ids, and the repeat is recognisable downstream.

Refused: 400 for invalid JSON (with its line, and column) or an item that is not an object (its
index or line), 413 for a larger body, 415 for another content type or encoding, 503 with
``Retry-After`` while Kafka does not acknowledge.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from api.deps import Ingester
from api.routes.collectors import AgenciesDep, app_service
from api.security import Principal
from collectors.httpsource import (
    JSON_TYPE,
    IngestError,
    gunzip,
    is_gzip,
    media_type,
    parse_json,
    parse_lines,
)
from detectors.enrich import AgencyRegistry
from socpipe import __version__
from socpipe.agencies import agency_topic
from socpipe.kafka import make_admin, make_producer
from socpipe.records import (
    KIND_HEADER,
    RAW_KIND,
    AgencyRef,
    CollectorRef,
    RawBatch,
    RawRecord,
    SourceRef,
    utcnow,
)
from socpipe.settings import KafkaSettings, Settings, Tier

log = logging.getLogger(__name__)

router = APIRouter(prefix="/ingest", tags=["ingest"])

# One Kafka message holds records up to about this many bytes of JSON: well below the raw
# topic's 16 MiB, and what a detector takes in one go.
MESSAGE_BYTES: Final = 4 * 1024 * 1024
RETRY_AFTER_S: Final = 10
_UTF8_BOM: Final = b"\xef\xbb\xbf"


class RawBatchSender(ABC):
    """Where ingested batches go. ``send`` returns once every message is acknowledged, and
    raises (``KafkaError``) otherwise."""

    @abstractmethod
    def topic_for(self, agency: str) -> str:
        """The agency's own topic if it exists, else the shared raw topic."""

    @abstractmethod
    def send(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        """Send ``values`` (RawBatch JSON) to ``topic``, waiting for the acknowledgements."""


class KafkaRawBatchSender(RawBatchSender):
    """Kafka through the SOC's own connection: one producer for the app, made on first use."""

    # A topic made since is seen within this long (an enrollment makes the agency's).
    TOPICS_TTL_S: Final = 30.0

    def __init__(self, settings: KafkaSettings, *, ack_timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.ack_timeout_s = ack_timeout_s
        self._producer: KafkaProducer | None = None
        self._topics: set[str] = set()
        self._listed = float("-inf")
        self._lock = threading.Lock()

    def topic_for(self, agency: str) -> str:
        topic = agency_topic(self.settings, agency)
        with self._lock:
            if topic not in self._topics and time.monotonic() - self._listed > self.TOPICS_TTL_S:
                admin = make_admin(self.settings)
                try:
                    self._topics = set(admin.list_topics())
                finally:
                    admin.close()
                self._listed = time.monotonic()
            return topic if topic in self._topics else self.settings.topics.raw

    def send(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        producer = self._connected()
        futures = [
            producer.send(topic, key=key, value=value, headers=[(KIND_HEADER, RAW_KIND)])
            for value in values
        ]
        for future in futures:
            future.get(timeout=self.ack_timeout_s)

    def _connected(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                # Not the default 60 s: a request thread waits at most this for Kafka.
                self._producer = make_producer(self.settings, max_block_ms=10_000)
            return self._producer

    def close(self) -> None:
        """Send what is pending and close the producer."""
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=10)
                self._producer = None


class InMemoryRawBatchSender(RawBatchSender):
    """The test double: ``sent`` holds (topic, key, value); ``topics`` are those that exist."""

    def __init__(self, raw: str = "soc.raw", topics: Sequence[str] = ()) -> None:
        self.raw = raw
        self.topics = set(topics)
        self.sent: list[tuple[str, bytes, bytes]] = []

    def topic_for(self, agency: str) -> str:
        topic = f"{self.raw}.{agency}"
        return topic if topic in self.topics else self.raw

    def send(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        self.sent.extend((topic, key, value) for value in values)


def _sender(settings: Settings, real: bool) -> RawBatchSender:
    if real:
        return KafkaRawBatchSender(settings.kafka)
    return InMemoryRawBatchSender(settings.kafka.topics.raw)


def get_raw_sender(request: Request) -> RawBatchSender:
    """Where the app sends ingested batches (``app.state.raw_sender``)."""
    return app_service(request.app, "raw_sender", _sender)


def close_raw_sender(app: FastAPI) -> None:
    """Close the app's Kafka producer, if one was made (for the app's shutdown)."""
    sender = getattr(app.state, "raw_sender", None)
    if isinstance(sender, KafkaRawBatchSender):
        sender.close()


RawSenderDep = Annotated[RawBatchSender, Depends(get_raw_sender)]


class IngestAccepted(BaseModel):
    """How many records Kafka acknowledged, where, and the ids of the first and last."""

    accepted: int
    topic: str | None
    ids: list[str]


_BODY = {
    "required": True,
    "content": {
        JSON_TYPE: {"schema": {"type": ["object", "array"]}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


@router.post(
    "",
    response_model=IngestAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={"requestBody": _BODY},
)
async def ingest(
    request: Request, user: Ingester, agencies: AgenciesDep, sender: RawSenderDep
) -> Any:
    """Ship the body's JSON objects as raw records of the key's agency (see the module)."""
    if user.agency is None:  # a collector key always has one (ApiToken refuses it without)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this key speaks for no agency")
    settings: Settings = request.app.state.settings
    limit = settings.api.max_body_bytes
    peer = request.client.host if request.client else None
    try:
        media = media_type(request.headers.get("content-type"))
        gzip = is_gzip(request.headers.get("content-encoding"))
        body = await _read_body(request, limit)
        records = await run_in_threadpool(
            _records, body, media, gzip, limit, user, agencies, peer, request.url.scheme
        )
    except IngestError as refused:
        log.warning("ingest from %s (%s) refused: %s", user.name, peer, refused.message)
        return JSONResponse(
            {"detail": refused.message, **refused.where}, refused.status, refused.headers
        )
    except ClientDisconnect:
        return JSONResponse({"detail": "the request body did not arrive whole"}, 400)
    if not records:
        return IngestAccepted(accepted=0, topic=None, ids=[])
    agency = records[0].agency.id
    try:
        topic = await run_in_threadpool(sender.topic_for, agency)
        values = _messages(records)
        await run_in_threadpool(sender.send, topic, f"{agency}/{user.name}".encode(), values)
    except KafkaError as error:
        log.warning(
            "ingest from %s: Kafka did not take %d records: %s", user.name, len(records), error
        )
        return JSONResponse(
            {
                "detail": f"Kafka did not acknowledge the records ({type(error).__name__}); "
                "send the same body again later",
            },
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    request.state.audit = {
        "target_type": "topic",
        "target_id": topic,
        "detail": {"records": len(records), "messages": len(values)},
    }
    return IngestAccepted(accepted=len(records), topic=topic, ids=[records[0].id, records[-1].id])


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (a chunked body declares no length)."""
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise IngestError(413, f"the body is larger than {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def _records(
    body: bytes,
    media: str,
    gzip: bool,
    limit: int,
    user: Principal,
    agencies: AgencyRegistry,
    peer: str | None,
    scheme: str,
) -> list[RawRecord]:
    """The records of one body (in a worker thread: decompressing and parsing take time)."""
    if gzip:
        body = gunzip(body, limit)
    body = body.removeprefix(_UTF8_BOM)
    objects = parse_json(body) if media == JSON_TYPE else parse_lines(body)
    agency_id = str(user.agency)  # checked by the route
    known = agencies.get(agency_id)
    agency = AgencyRef(
        id=agency_id,
        tier=known.tier if known else Tier.PROVINCE,
        name=known.name if known else None,
    )
    collector = CollectorRef(id=user.name, version=__version__)
    source = SourceRef(
        type="http", path="/ingest", format="json", peer=peer, protocol=scheme, token=user.name
    )
    stream = f"{user.name}:{hashlib.blake2b(body, digest_size=16).hexdigest()}"
    received = utcnow()
    return [
        RawRecord(
            id=RawRecord.make_id(user.name, source, stream, position),
            agency=agency,
            collector=collector,
            host=user.name,
            source=source,
            received=received,
            position=position,
            data=item,
        )
        for position, item in enumerate(objects)
    ]


def _messages(records: list[RawRecord]) -> list[bytes]:
    """``records`` as RawBatch messages of at most about ``MESSAGE_BYTES`` each, in order."""
    messages: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for record in records:
        encoded = record.to_json()
        if chunk and size + len(encoded) > MESSAGE_BYTES:
            messages.append(_batch(chunk))
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        messages.append(_batch(chunk))
    return messages


def _batch(encoded: list[bytes]) -> bytes:
    # RawBatch.to_json of these records, joined from each record's JSON rather than encoding
    # them all a second time.
    return b'{"v":%d,"records":[' % RawBatch.VERSION + b",".join(encoded) + b"]}"


__all__ = [
    "InMemoryRawBatchSender",
    "IngestAccepted",
    "KafkaRawBatchSender",
    "RawBatchSender",
    "close_raw_sender",
    "router",
]
