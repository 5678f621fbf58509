"""HTTP JSON ingest: clients POST events with a bearer token; the answer means they are safe.

One route, ``POST <settings.path>`` (``/ingest``), takes

- ``Content-Type: application/json``: one object, or an array of objects;
- ``application/x-ndjson`` or ``application/jsonl``: one object per line, blank lines skipped;

optionally with ``Content-Encoding: gzip``. ``GET /health`` answers ``{"status": "ok"}`` without a
token (a load balancer's probe); every other path is 404, every other method 405.

Every object becomes one raw record with the object as ``data``, attributed to the collector's
agency (whatever an ``agency`` key in the object says stays data: a client cannot speak for
another agency) and to the token's name (``source.token``), with the client's address
(``source.peer``). A record's position is the index of its object in the body, and the id's
stream is the token's name and a digest of the (decompressed) body, so a client that sends the
same body again, after a timeout or a 503, produces the same ids and the repeat is recognisable
downstream.

Answers:

- 200 ``{"accepted": n, "ids": [first id, last id]}`` only once the sink called ``on_durable``
  for every record (Kafka acknowledged them or they are in the disk spool): a client may forget
  the body once it has this answer.
- 400 the body is not what it claims: invalid JSON (with the line, for NDJSON, and the column),
  an item that is not an object (its index or line), broken gzip. The whole request is refused
  if any part is bad, rather than taking the good lines: a client can then fix or drop the body
  and send it again whole, and no half of it is ever shipped twice under two different bodies.
- 401 no token or an unknown one (``WWW-Authenticate: Bearer``); 408 the body took longer than
  ``BODY_TIMEOUT_S`` to arrive; 413 the body, compressed or decompressed, is larger than
  ``settings.max_body_bytes`` (a gzip bomb stops at the limit, it is never inflated whole);
  415 another content type or encoding, or a charset other than UTF-8.
- 503 with ``Retry-After`` while the collector is full (Kafka away and the spool full) or the
  records were not durable within the timeout. Some of them may have been queued already; they
  are shipped, and the client's retry repeats them with the same ids.

Errors are JSON: ``{"error": "what went wrong", "line": 3, "column": 7}`` (``line``, ``column``
or ``index`` when they apply). Each refused request (400, 401, 408, 413, 415) counts in
``stats.unreadable`` and is described in ``stats.error`` with the client and the reason.

The server is uvicorn with its own event loop in a background thread; parsing, hashing and
``Sink.offer`` (which may block) run in worker threads so the loop keeps serving other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from collectors.base import RecordDict, RecordMaker, Sink, SourceStats, received_now
from socpipe.errors import ConfigError
from socpipe.settings import HttpSourceSettings, HttpToken, read_secret_file

log = logging.getLogger(__name__)

# How long an offer may wait for room in a full collector before the client gets a 503.
OFFER_TIMEOUT_S = 5.0
# How long the records of one request may take to become durable before the client gets a 503.
DURABLE_TIMEOUT_S = 60.0
# What a 503 tells the client to wait before sending the same body again.
RETRY_AFTER_S = 10
# A slow or stalled upload must not hold a connection and its buffer forever.
BODY_TIMEOUT_S = 60.0
# Records per offer: a big body is queued in slices the shipper can batch and acknowledge.
OFFER_CHUNK_RECORDS = 1000
# Connections and requests at once (uvicorn answers 503 beyond): each request may hold up to
# twice max_body_bytes (compressed and decompressed) and its records.
START_TIMEOUT_S = 10.0
MIN_TOKEN_CHARS = 16
HEALTH_PATH = "/health"

JSON_TYPE = "application/json"
LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
# Python's own default suites (forward secrecy, AEAD or SHA-2 MACs); uvicorn would otherwise
# set "TLSv1", which lets in SHA-1 suites.
TLS_CIPHERS = "ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"

_UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104


class IngestError(Exception):
    """A request the source refuses: the HTTP status, what is wrong, and where in the body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        where: dict[str, int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.where = where or {}
        self.headers = headers or {}


def load_tokens(tokens: list[HttpToken]) -> list[tuple[str, bytes]]:
    """Each client's name and token, read from the settings or their files.

    Raises ConfigError naming the token when one is missing, unreadable, empty, short, shared
    with another client, or holds characters an Authorization header cannot carry.
    """
    loaded: list[tuple[str, bytes]] = []
    owners: dict[str, str] = {}
    for entry in tokens:
        where = f"HTTP source token {entry.name!r}"
        if any(name == entry.name for name, _ in loaded):
            raise ConfigError(f"{where} is configured twice; token names must be unique")
        if (entry.token is None) == (entry.token_file is None):
            raise ConfigError(f"{where}: give either token or token_file")
        if entry.token_file is not None:
            secret = read_secret_file(entry.token_file, f"{where}: token_file")
        else:
            assert entry.token is not None
            secret = entry.token.get_secret_value()
            if not secret.strip():
                raise ConfigError(f"{where}: the token is empty")
        if not all(33 <= ord(char) <= 126 for char in secret):
            raise ConfigError(
                f"{where}: the token may hold only visible ASCII characters "
                "(no spaces, line breaks or accents)"
            )
        if len(secret) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where}: the token has {len(secret)} characters, fewer than "
                f"{MIN_TOKEN_CHARS}; make one with `openssl rand -hex 32`"
            )
        if secret in owners:
            raise ConfigError(
                f"{where} has the same token as {owners[secret]!r}; give each client its own"
            )
        owners[secret] = entry.name
        loaded.append((entry.name, secret.encode("ascii")))
    return loaded


def gunzip(data: bytes, limit: int) -> bytes:
    """The decompressed ``data``: IngestError 413 once it grows past ``limit``, 400 if broken.

    Concatenated gzip members (``cat a.gz b.gz``) are one gzip stream, as gzip itself reads them.
    """
    parts: list[bytes] = []
    size = 0
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    pending = data
    while pending:
        try:
            # At most one byte past the limit: enough to know it is too large, never more.
            part = decompressor.decompress(pending, limit + 1 - size)
        except zlib.error as exc:
            raise IngestError(400, f"the body is not valid gzip: {exc}") from exc
        size += len(part)
        if size > limit:
            raise IngestError(413, f"the body decompresses to more than {limit} bytes")
        parts.append(part)
        if decompressor.eof:
            pending = decompressor.unused_data
            if pending:
                decompressor = zlib.decompressobj(_GZIP_WBITS)
        else:
            # Output below the limit means zlib holds nothing back: what is left is input.
            pending = decompressor.unconsumed_tail
    if not decompressor.eof:
        raise IngestError(400, "the body is not valid gzip: it ends before the gzip stream does")
    return b"".join(parts)


def parse_json(body: bytes) -> list[dict[str, Any]]:
    """The objects of a JSON body (one object or an array of objects); IngestError 400 if not."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(
            400,
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            where={"line": exc.lineno, "column": exc.colno},
        ) from exc
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise IngestError(400, f"the body is a JSON {_kind(value)}, not an object or an array")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise IngestError(
                400,
                f"item {index} of the array is a JSON {_kind(item)}, not an object",
                where={"index": index},
            )
    return value


def parse_lines(body: bytes) -> list[dict[str, Any]]:
    """The objects of an NDJSON body, one per line, blank lines skipped; IngestError 400 naming
    the first bad line otherwise."""
    objects: list[dict[str, Any]] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise IngestError(
                400,
                f"line {number}: invalid JSON at column {exc.colno}: {exc.msg}",
                where={"line": number, "column": exc.colno},
            ) from exc
        if not isinstance(value, dict):
            raise IngestError(
                400,
                f"line {number} is a JSON {_kind(value)}, not an object",
                where={"line": number, "index": len(objects)},
            )
        objects.append(value)
    return objects


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def media_type(content_type: str | None) -> str:
    """The accepted media type of a Content-Type header; IngestError 415 for any other."""
    accepted = f"{JSON_TYPE}, {', '.join(sorted(LINES_TYPES))}"
    media, *params = (content_type or "").split(";")
    media = media.strip().lower()
    if media != JSON_TYPE and media not in LINES_TYPES:
        raise IngestError(
            415,
            f"Content-Type {media or '(none)'} is not accepted; send one of {accepted}",
            headers={"Accept-Post": accepted},
        )
    for param in params:
        key, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise IngestError(415, f"charset {charset} is not accepted; JSON is sent as UTF-8")
    return media


def is_gzip(content_encoding: str | None) -> bool:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return True
    if encoding == "identity":
        return False
    raise IngestError(
        415,
        f"Content-Encoding {encoding} is not accepted; send gzip or no encoding",
        headers={"Accept-Encoding": "gzip"},
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # A restarted collector binds again at once, despite connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


class HttpSource:
    """Serves the HTTP ingest route of ``settings`` and offers what it receives to ``sink``.

    ``start()`` binds (``settings.port`` 0 picks a free port: see ``port`` and ``url``) and
    serves from a background thread; ``stop()`` stops accepting, lets requests in flight finish
    within the timeout, and ends the thread. Tokens are read when the source is made, so a
    missing token file fails then, with ConfigError.
    """

    def __init__(
        self,
        settings: HttpSourceSettings,
        maker: RecordMaker,
        sink: Sink,
        *,
        offer_timeout: float = OFFER_TIMEOUT_S,
        durable_timeout: float = DURABLE_TIMEOUT_S,
    ) -> None:
        if not settings.path.startswith("/") or settings.path == HEALTH_PATH:
            raise ConfigError(
                f"HTTP source path {settings.path!r} must start with / and not be {HEALTH_PATH}"
            )
        self.settings = settings
        self.stats: SourceStats = maker.stats
        self.port = settings.port
        self._maker = maker
        self._sink = sink
        self._tokens = load_tokens(settings.tokens)
        self._offer_timeout = offer_timeout
        self._durable_timeout = durable_timeout
        self._protocol = "https" if settings.tls is not None else "http"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients reach this source at (a wildcard bind as the loopback address)."""
        host = _WILDCARD_HOSTS.get(self.settings.bind, self.settings.bind)
        if ":" in host:
            host = f"[{host}]"
        return f"{self._protocol}://{host}:{self.port}"

    def start(self) -> None:
        """Bind, load the TLS certificate, and serve in a background thread until ``stop``.

        Raises OSError if the address cannot be bound or the certificate files cannot be read.
        """
        if self._thread is not None:
            raise RuntimeError("the HTTP source is already started")
        sock = _listening_socket(self.settings.bind, self.settings.port)
        try:
            config = self._config()
            # Loaded here rather than in the server's thread, so that a bad certificate or key
            # fails start() instead of a thread nobody watches.
            config.load()
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=self._serve, args=(server, sock), name=f"http-source-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop(1.0)
                raise OSError(f"the HTTP source on {self.url} did not start; see the log")
            thread.join(0.01)
        log.info("HTTP source listening on %s%s", self.url, self.settings.path)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting; requests in flight get up to ``timeout`` seconds to be answered."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        # uvicorn waits this long for requests in flight, then cancels them; a second is kept
        # for closing the loop.
        server.config.timeout_graceful_shutdown = max(0, math.floor(timeout) - 1)
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(1.0)
        if thread.is_alive():
            log.warning("the HTTP source on %s did not stop within %.1f s", self.url, timeout)
        self._server = self._thread = None

    # --- the server -----------------------------------------------------------------------

    def _config(self) -> uvicorn.Config:
        tls = self.settings.tls
        return uvicorn.Config(
            self._app(),
            lifespan="off",
            # The collector configures logging; uvicorn must not replace it.
            log_config=None,
            access_log=False,
            server_header=False,
            # The peer recorded is the socket's: a header must not let a client claim another.
            proxy_headers=False,
            limit_concurrency=self.settings.max_connections,
            ssl_certfile=tls.certfile if tls else None,
            ssl_keyfile=tls.keyfile if tls else None,
            ssl_ca_certs=str(tls.client_cafile) if tls and tls.client_cafile else None,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.client_cafile else ssl.CERT_NONE,
            ssl_ciphers=TLS_CIPHERS,
        )

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        # uvicorn installs signal handlers only in the main thread, so the collector keeps its
        # own; its loop lives and ends in this thread.
        try:
            server.run(sockets=[sock])
        except BaseException:  # uvicorn ends a failed start with SystemExit
            log.exception("the HTTP source on %s stopped with an error", self.url)
        finally:
            sock.close()

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(self.settings.path, self._ingest, methods=["POST"]),
                Route(HEALTH_PATH, self._health, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error, 500: self._server_error},
        )

    async def _health(self, request: Request) -> Response:
        return _json({"status": "ok"}, 200)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json({"error": exc.detail}, exc.status_code, dict(exc.headers or {}))

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        self.stats.error(f"HTTP {_peer(request) or 'client'}: internal error: {exc!r}")
        return _json({"error": "internal error; see the collector's log"}, 500)

    # --- one request ----------------------------------------------------------------------

    async def _ingest(self, request: Request) -> Response:
        peer = _peer(request)
        who = peer or "unknown client"
        name: str | None = None
        try:
            name = self._authenticate(request)
            media = media_type(request.headers.get("content-type"))
            gzip = is_gzip(request.headers.get("content-encoding"))
            body = await self._read_body(request)
            records = await anyio.to_thread.run_sync(self._records, body, media, gzip, name, peer)
        except IngestError as refused:
            return self._refuse(refused, who, name)
        except ClientDisconnect:
            self.stats.error(f"HTTP {who} ({name}): the client went away while sending")
            return _json({"error": "the request body did not arrive whole"}, 400)
        return await self._deliver(records, who, name)

    def _authenticate(self, request: Request) -> str:
        """The name of the request's token; IngestError 401 if it has none or an unknown one."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise IngestError(
                401,
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="socpipe"'},
            )
        # Headers arrive decoded as Latin-1; back to their bytes for the comparison.
        given = credential.encode("latin-1")
        found: str | None = None
        for name, secret in self._tokens:
            # Every token is compared, whichever matches, so timing tells nothing about which.
            if hmac.compare_digest(given, secret) and found is None:
                found = name
        if found is None:
            raise IngestError(
                401,
                "unknown token",
                headers={"WWW-Authenticate": 'Bearer realm="socpipe", error="invalid_token"'},
            )
        return found

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            # Answered before reading: uvicorn discards what the client still sends.
            raise IngestError(413, f"the body of {declared} bytes is larger than {limit} bytes")
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                async for part in request.stream():
                    size += len(part)
                    if size > limit:
                        raise IngestError(413, f"the body is larger than {limit} bytes")
                    parts.append(part)
        except TimeoutError as exc:
            raise IngestError(
                408, f"the body did not arrive within {BODY_TIMEOUT_S:.0f} s"
            ) from exc
        return b"".join(parts)

    def _records(
        self, body: bytes, media: str, gzip: bool, name: str, peer: str | None
    ) -> list[RecordDict]:
        """The records of one body (in a worker thread: decompressing and parsing take time)."""
        if gzip:
            body = gunzip(body, self.settings.max_body_bytes)
        # Windows tools may begin UTF-8 with a byte-order mark; JSON parsers may skip it.
        body = body.removeprefix(_UTF8_BOM)
        objects = parse_json(body) if media == JSON_TYPE else parse_lines(body)
        stream = f"{name}:{hashlib.blake2b(body, digest_size=16).hexdigest()}"
        maker = self._maker.with_source(token=name, peer=peer, protocol=self._protocol)
        received = received_now()
        return [maker.data(stream, position, obj, received) for position, obj in enumerate(objects)]

    async def _deliver(self, records: list[RecordDict], peer: str, name: str) -> Response:
        """Offer the records in slices and answer once all of them are durable."""
        if not records:
            return _json({"accepted": 0, "ids": []}, 200)
        loop = asyncio.get_running_loop()
        durable: list[asyncio.Future[None]] = []
        for start in range(0, len(records), OFFER_CHUNK_RECORDS):
            chunk = records[start : start + OFFER_CHUNK_RECORDS]
            future: asyncio.Future[None] = loop.create_future()
            taken = await anyio.to_thread.run_sync(
                self._sink.offer,
                self.stats,
                chunk,
                self._on_durable(loop, future, len(chunk)),
                self._offer_timeout,
            )
            if not taken:
                return self._unavailable(
                    f"the collector is full (Kafka unreachable and the spool full); "
                    f"{start} of {len(records)} records were queued",
                    peer,
                    name,
                )
            self.stats.read += len(chunk)
            self.stats.lag += len(chunk)
            durable.append(future)
        _, waiting = await asyncio.wait(durable, timeout=self._durable_timeout)
        if waiting:
            return self._unavailable(
                f"{len(records)} records were queued but not durable within "
                f"{self._durable_timeout:g} s",
                peer,
                name,
            )
        return _json({"accepted": len(records), "ids": [records[0]["id"], records[-1]["id"]]}, 200)

    def _on_durable(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], count: int
    ) -> Callable[[], None]:
        def settle() -> None:  # in the loop's thread, so the counters have one writer
            self.stats.lag -= count
            if not future.done():
                future.set_result(None)

        def durable() -> None:  # in the shipper's thread
            # The loop is closed once the source stopped; nobody waits for the answer then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle)

        return durable

    def _refuse(self, refused: IngestError, peer: str, name: str | None) -> Response:
        self.stats.unreadable += 1
        client = f"{peer} ({name})" if name else peer
        message = f"HTTP {client}: refused with {refused.status}: {refused.message}"
        self.stats.error(message)
        log.warning("%s", message)
        return _json({"error": refused.message, **refused.where}, refused.status, refused.headers)

    def _unavailable(self, reason: str, peer: str, name: str) -> Response:
        message = f"HTTP {peer} ({name}): answered 503: {reason}"
        self.stats.error(message)
        log.warning("%s", message)
        return _json(
            {"error": f"{reason}; send the same body again later", "retry_after": RETRY_AFTER_S},
            503,
            {"Retry-After": str(RETRY_AFTER_S)},
        )


def _peer(request: Request) -> str | None:
    client = request.client
    if client is None:
        return None
    host = f"[{client.host}]" if ":" in client.host else client.host
    return f"{host}:{client.port}"
