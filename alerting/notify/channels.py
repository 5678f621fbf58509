"""The senders of the three channel types: webhook (HTTP POST of JSON), email (SMTP) and
Telegram (a bot's sendMessage). See ``alerting.notify.base`` for the contract and the errors.

Webhook signature. With a secret, each POST carries ``X-Socpipe-Timestamp`` (unix seconds) and
``X-Socpipe-Signature: sha256=<hex>``, the HMAC-SHA256 under the secret of the bytes
``<timestamp>.<body>``. A receiver recomputes it over the body bytes exactly as received (before
any JSON parsing), compares in constant time, and refuses a timestamp more than a few minutes
from its own clock, so that a captured request cannot be replayed later:
``verify_webhook_signature`` does all three.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import smtplib
import ssl
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import SecretStr

from alerting.notify.base import DeliveryError, Message, Sender
from socpipe.errors import ConfigError
from socpipe.settings import EmailChannel, TelegramChannel, WebhookChannel, read_secret_file

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Socpipe-Timestamp"
SIGNATURE_HEADER = "X-Socpipe-Signature"
USER_AGENT = "socpipe-notify/1"
# Telegram refuses a message longer than this (counted in UTF-16 code units).
TELEGRAM_MAX_TEXT = 4096
# How much of an error answer a reason quotes.
_ANSWER_CHARS = 200


def channel_secret(inline: SecretStr | None, path: Path | None, key: str) -> str | None:
    """A channel's secret, given inline (from the environment) or in a file; None if neither.

    ``key`` names the setting in errors (``alerting.notifications.channels[soc].secret``).
    """
    if inline is not None and path is not None:
        raise ConfigError(f"{key}: give the secret inline or in {key}_file, not both")
    if path is not None:
        return read_secret_file(path, f"{key}_file")
    return inline.get_secret_value() if inline is not None else None


def webhook_signature(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 under ``secret`` of ``<timestamp>.<body>``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_webhook_signature(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Whether a webhook request is ours and fresh: what a receiver checks (see the module
    docstring); ``timestamp`` and ``signature`` are the two headers' values."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(webhook_signature(secret, timestamp, body), signature)


def _origin(url: str) -> str:
    # Where a URL points, without its path or query: webhook URLs often carry a token there.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _answer(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_ANSWER_CHARS] + ("…" if len(text) > _ANSWER_CHARS else "")


def _retry_after(value: str | None) -> float | None:
    # Retry-After in seconds; its date form is rare from the services we post to.
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _transport_failure(exc: Exception, timeout_s: float, *secrets: str) -> str:
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer within {timeout_s:g} s ({type(exc).__name__})"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        reason = reason.replace(secret, "<redacted>")
    return reason


class WebhookSender(Sender):
    """POSTs a message as JSON: its payload (``kind`` and the alert or digest), ``subject`` and
    ``text``; signed when the channel has a secret (see the module docstring).

    HTTP 5xx, 408, 429, timeouts and connection errors may be retried; other answers are not.
    """

    def __init__(
        self,
        settings: WebhookChannel,
        *,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings.name)
        self.url = settings.url
        self.timeout_s = settings.timeout_s
        self._secret = channel_secret(
            settings.secret,
            settings.secret_file,
            f"alerting.notifications.channels[{self.name}].secret",
        )
        self._wall_clock = wall_clock
        self._where = _origin(settings.url)
        self._client = httpx.Client(
            timeout=settings.timeout_s, transport=transport, follow_redirects=False
        )

    def body(self, message: Message) -> bytes:
        """The JSON the receiver gets."""
        return orjson.dumps(
            {"v": 1, **message.payload, "subject": message.subject, "text": message.text}
        )

    def send(self, message: Message) -> None:
        body = self.body(message)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._secret is not None:
            timestamp = str(int(self._wall_clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = webhook_signature(self._secret, timestamp, body)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.InvalidURL as exc:
            reason = _transport_failure(exc, self.timeout_s, self.url)
            raise DeliveryError(self.name, f"{self._where}: {reason}", retryable=False) from exc
        except httpx.HTTPError as exc:
            reason = _transport_failure(exc, self.timeout_s, self.url)
            raise DeliveryError(self.name, f"{self._where}: {reason}", retryable=True) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        raise DeliveryError(
            self.name,
            f"{self._where} answered HTTP {status}: {_answer(response)}",
            retryable=status >= 500 or status in (408, 429),
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._client.close()


class _MailPolicy(EmailPolicy):
    """The default policy, but a non-ASCII Subject is encoded by ``email.header.Header``.

    CPython's own folding of a long non-ASCII header (3.11, 3.12) drops the space where it
    splits one encoded word from the next: "Đăng nhập" arrives as "Đăngnhập". ``Header`` keeps
    the space inside the encoded word. Only Subject: addresses need the structured folding.
    """

    def _ours(self, name: str, value: str) -> bool:
        return name.lower() == "subject" and not str(value).isascii()

    def fold(self, name: str, value: str) -> str:
        if not self._ours(name, value):
            return str(super().fold(name, value))
        encoded = Header(str(value), "utf-8", header_name=name).encode(linesep=self.linesep)
        return f"{name}: {encoded}{self.linesep}"

    def fold_binary(self, name: str, value: str) -> bytes:
        if not self._ours(name, value):
            return super().fold_binary(name, value)
        return self.fold(name, value).encode("ascii")


_MAIL_POLICY = _MailPolicy()


class EmailSender(Sender):
    """Mails a message over SMTP to the channel's recipients: the subject, and the text as
    text/plain in UTF-8 (headers encoded per RFC 2047, so any server carries Vietnamese).

    Implicit TLS with ``tls``, else STARTTLS with ``starttls`` (the server's certificate checked
    against ``ca_file``, or the system's CAs), login when ``username`` is set. SMTP 4xx answers
    and connection failures may be retried; 5xx, a refused login and a bad certificate are not.
    """

    def __init__(self, settings: EmailChannel) -> None:
        super().__init__(settings.name)
        self.settings = settings
        key = f"alerting.notifications.channels[{self.name}].password"
        self._password = channel_secret(settings.password, settings.password_file, key)
        if settings.username and self._password is None:
            raise ConfigError(f"{key}: username {settings.username!r} is set but no password")
        # make_msgid's default asks the resolver for this host's name, which can hang.
        self._domain = settings.sender.rpartition("@")[2]

    def compose(self, message: Message) -> EmailMessage:
        """The email of ``message``."""
        mail = EmailMessage(policy=_MAIL_POLICY)
        mail["Subject"] = message.subject
        mail["From"] = self.settings.sender
        mail["To"] = ", ".join(self.settings.recipients)
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid("socpipe", domain=self._domain)
        # RFC 3834: tells vacation responders not to answer.
        mail["Auto-Submitted"] = "auto-generated"
        # quoted-printable, not 8bit: a relay without 8BITMIME must not mangle the diacritics.
        mail.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
        return mail

    def _context(self) -> ssl.SSLContext:
        cafile = str(self.settings.ca_file) if self.settings.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def send(self, message: Message) -> None:
        s = self.settings
        mail = self.compose(message)
        where = f"{s.host}:{s.port}"
        try:
            smtp = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._context())
                if s.tls
                else smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            )
            with smtp:
                if s.starttls and not s.tls:
                    smtp.starttls(context=self._context())
                if s.username and self._password is not None:
                    _login(smtp, s.username, self._password)
                refused = smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                self.name,
                f"{where} refused the login of {s.username!r}: {exc.smtp_code} {_smtp_text(exc)}",
                retryable=False,
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                self.name,
                f"{where} refused every recipient: {exc.recipients}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                self.name,
                f"{where} answered {exc.smtp_code} {_smtp_text(exc)}",
                retryable=400 <= exc.smtp_code < 500,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            # The server lacks STARTTLS (a plain relay needs starttls: false) or SMTPUTF8.
            raise DeliveryError(self.name, f"{where}: {exc}", retryable=False) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                self.name,
                f"{where}: the server's certificate does not verify: {exc.verify_message}"
                " (ca_file names the CA that signed it)",
                retryable=False,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused or reset, a timeout, a dropped session: try again later.
            raise DeliveryError(
                self.name, f"{where}: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        if refused:
            # Some recipients took it: no retry (the others would get it twice), but say who not.
            log.warning("notification channel %s: %s refused %s", self.name, where, refused)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if (username + password).isascii():
        smtp.login(username, password)  # negotiates CRAM-MD5, PLAIN or LOGIN
        return
    # smtplib encodes credentials as ASCII; SASL PLAIN (RFC 4616) carries UTF-8, so a
    # Vietnamese password goes that way.
    smtp.ehlo_or_helo_if_needed()
    if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPException("the server offers no AUTH PLAIN, needed for a non-ASCII login")
    credentials = b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")
    code, answer = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(credentials).decode("ascii"))
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


def _smtp_text(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    return error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)


# httpx logs each request's URL at INFO, and a Telegram URL holds the bot's token.
_BOT_PATH = re.compile(r"/bot[^/\s]+/")


class _RedactBotTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            record.msg, record.args = _BOT_PATH.sub("/bot<redacted>/", message), ()
        return True


def _redact_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactBotTokens) for f in logger.filters):
        logger.addFilter(_RedactBotTokens())


def fit_telegram_text(text: str, limit: int = TELEGRAM_MAX_TEXT) -> str:
    """``text`` cut to Telegram's limit, at a line end or a space near the end when there is
    one, and marked with "…". The limit counts UTF-16 code units, as Telegram does."""
    if len(text.encode("utf-16-le")) // 2 <= limit:
        return text
    room = limit - 2  # for the mark, "\n…" or " …"
    used = end = 0
    for end, char in enumerate(text):  # noqa: B007 - end is used after the loop
        used += 2 if ord(char) > 0xFFFF else 1  # outside the BMP: a surrogate pair
        if used > room:
            break
    cut = text[:end]
    for separator, mark in (("\n", "\n…"), (" ", " …")):
        at = cut.rfind(separator)
        if at >= room * 3 // 4:
            return cut[:at].rstrip() + mark
    # No break near the end: cut inside a word, but never between a letter and its combining
    # marks (decomposed Vietnamese stacks two on one letter).
    if unicodedata.combining(text[end]):
        while end > 0 and unicodedata.combining(text[end - 1]):
            end -= 1
        end = max(end - 1, 0)
    return text[:end] + "…"


class TelegramSender(Sender):
    """Sends a message's text to one chat with a bot's ``sendMessage``.

    Telegram answers 429 with ``parameters.retry_after`` when the bot sends too fast: retried
    after at least that long; 5xx and connection errors are retried; other refusals (a wrong
    token, a chat the bot is not in) are not.
    """

    def __init__(
        self, settings: TelegramChannel, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(settings.name)
        key = f"alerting.notifications.channels[{self.name}].bot_token"
        token = channel_secret(settings.bot_token, settings.bot_token_file, key)
        if token is None:
            raise ConfigError(f"{key}: a Telegram channel needs bot_token or bot_token_file")
        self._token = token
        self.chat_id = settings.chat_id
        self.timeout_s = settings.timeout_s
        self._url = f"{settings.api_url.rstrip('/')}/bot{token}/sendMessage"
        self._where = _origin(settings.api_url)
        _redact_httpx_log()
        self._client = httpx.Client(
            timeout=settings.timeout_s, transport=transport, follow_redirects=False
        )

    def request_body(self, message: Message) -> dict[str, Any]:
        """What sendMessage is given: plain text (no parse_mode, so nothing needs escaping)."""
        return {
            "chat_id": self.chat_id,
            "text": fit_telegram_text(message.text),
            "disable_web_page_preview": True,
        }

    def send(self, message: Message) -> None:
        try:
            response = self._client.post(self._url, json=self.request_body(message))
        except httpx.InvalidURL as exc:
            reason = _transport_failure(exc, self.timeout_s, self._token)
            raise DeliveryError(self.name, f"{self._where}: {reason}", retryable=False) from exc
        except httpx.HTTPError as exc:
            reason = _transport_failure(exc, self.timeout_s, self._token)
            raise DeliveryError(self.name, f"{self._where}: {reason}", retryable=True) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if response.status_code == 200 and answer.get("ok") is True:
            return
        status = response.status_code
        description = answer.get("description") or _answer(response)
        parameters = answer.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise DeliveryError(
            self.name,
            f"Telegram ({self._where}) answered {status}: "
            f"{str(description).replace(self._token, '<redacted>')}",
            retryable=status == 429 or status >= 500,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )

    def close(self) -> None:
        self._client.close()


def make_sender(settings: WebhookChannel | EmailChannel | TelegramChannel) -> Sender:
    """The sender of a configured channel; ConfigError if its secret cannot be had."""
    if isinstance(settings, WebhookChannel):
        return WebhookSender(settings)
    if isinstance(settings, EmailChannel):
        return EmailSender(settings)
    return TelegramSender(settings)
