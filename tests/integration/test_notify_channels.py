"""The notification channels against real servers started in the test process: aiosmtpd for
email (plain, STARTTLS with login, implicit TLS), and HTTP servers on 127.0.0.1 standing in for
a webhook receiver that verifies the signature and for the Telegram Bot API.

No marker: these need no service outside the test process, so they run with the unit tests
(pyproject declares no ``integration`` marker, and ``--strict-markers`` refuses undeclared ones).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from alerting.notify import (
    DeliveryError,
    EmailSender,
    MessageRenderer,
    NotificationCenter,
    RetryPolicy,
    WebhookSender,
)
from alerting.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER
from alerting.store import AlertChange
from socpipe.records import Alert, DetectorRef, Entities, RuleRef, Severity
from socpipe.settings import (
    EmailChannel,
    NotificationRoute,
    NotificationSettings,
    TelegramChannel,
    Tier,
    WebhookChannel,
)
from tests.support.stages import free_port

SEEN = datetime(2026, 11, 28, 2, 15, tzinfo=UTC)
SECRET = "khóa-bí-mật-của-webhook-0123456789"
TOKEN = "7654321:AAH-test-bot-token_abc"
PASSWORDS = ["mật-khẩu-0123456789", "ascii-password-0123456789"]


def make_alert(n: int, severity: Severity = Severity.HIGH) -> Alert:
    """The n-th alert: password guessing against a portal of the province."""
    return Alert(
        id=f"alert-{n:05d}",
        dedup_key=f"key-{n}",
        count=n + 1,
        first_seen=SEEN + timedelta(minutes=n),
        last_seen=SEEN + timedelta(minutes=n + 5),
        window_start=SEEN,
        detector=DetectorRef(type="sigma", id="sigma", version="1"),
        rule=RuleRef(
            id="rule-ssh",
            title="Đăng nhập SSH thất bại nhiều lần",
            level=severity,
            tactics=["credential_access"],
            techniques=["T1110"],
        ),
        severity=severity,
        risk_score=severity.risk_score,
        entities=Entities(
            agency="so-tttt",
            tier=Tier.PROVINCE,
            host="dvc-portal-01",
            user="trần.thị.bình",
            source_ip="173.234.31.186",
        ),
    )


# --- an SMTP server ---------------------------------------------------------------------------


class Mailbox:
    """aiosmtpd's handler: keeps each message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accepts the user soc with either of PASSWORDS (in UTF-8, as SASL carries them)."""
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"soc"
    ok = ok and auth_data.password in [p.encode("utf-8") for p in PASSWORDS]
    # handled=False: aiosmtpd answers a failure itself (535), as a real server does.
    return AuthResult(success=ok, handled=False)


@dataclass
class Tls:
    server: ssl.SSLContext
    ca_file: Path


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A CA of the test's own, and a server certificate for 127.0.0.1 it signed."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(context, ca_file)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Mailbox, int]]]:
    """Starts aiosmtpd servers on 127.0.0.1 with the given options; stops them after."""
    started: list[Controller] = []

    def start(**options: Any) -> tuple[Mailbox, int]:
        mailbox, port = Mailbox(), free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return mailbox, port

    yield start
    for controller in started:
        controller.stop()


def email_channel(port: int, **changes: Any) -> EmailChannel:
    options: dict[str, Any] = {
        "name": "mail",
        "host": "127.0.0.1",
        "port": port,
        "starttls": False,
        "sender": "soc@tinh.gov.vn",
        "recipients": ["truc-ban@tinh.gov.vn", "lanh-dao@tinh.gov.vn"],
    }
    return EmailChannel(**(options | changes))


def assert_same_message(received: EmailMessage, subject: str, text: str) -> None:
    assert received["Subject"] == subject
    assert received.get_content_type() == "text/plain"
    assert received.get_content_charset() == "utf-8"
    # SMTP carries lines as CRLF.
    assert received.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")
    assert received["Message-ID"] and received["Date"]


def test_an_email_through_a_plain_relay_keeps_its_diacritics(
    smtp_server: Callable[..., tuple[Mailbox, int]],
) -> None:
    mailbox, port = smtp_server()
    message = MessageRenderer().alert(make_alert(1), "vi")
    EmailSender(email_channel(port)).send(message)
    (received,) = mailbox.messages
    assert_same_message(received, message.subject, message.text)
    assert "Cảnh báo mới" in received["Subject"]
    assert "Người dùng: trần.thị.bình" in received.get_content()
    assert mailbox.envelopes == [
        ("soc@tinh.gov.vn", ["truc-ban@tinh.gov.vn", "lanh-dao@tinh.gov.vn"])
    ]


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_email_over_starttls_with_login(
    smtp_server: Callable[..., tuple[Mailbox, int]], tls: Tls, password: str
) -> None:
    mailbox, port = smtp_server(
        tls_context=tls.server,
        require_starttls=True,
        auth_required=True,
        authenticator=check_password,
    )
    channel = email_channel(
        port, starttls=True, ca_file=tls.ca_file, username="soc", password=SecretStr(password)
    )
    message = MessageRenderer().digest([make_alert(n) for n in range(3)], "vi", total=40)
    EmailSender(channel).send(message)
    (received,) = mailbox.messages
    assert_same_message(received, message.subject, message.text)
    assert "và 37 cảnh báo khác" in received.get_content()


def test_an_email_over_implicit_tls(
    smtp_server: Callable[..., tuple[Mailbox, int]], tls: Tls
) -> None:
    mailbox, port = smtp_server(ssl_context=tls.server)
    message = MessageRenderer().alert(make_alert(2, Severity.CRITICAL), "en")
    EmailSender(email_channel(port, tls=True, ca_file=tls.ca_file)).send(message)
    (received,) = mailbox.messages
    assert_same_message(received, message.subject, message.text)


def test_a_certificate_from_another_ca_is_refused_for_good(
    smtp_server: Callable[..., tuple[Mailbox, int]], tls: Tls, tmp_path: Path
) -> None:
    _, port = smtp_server(tls_context=tls.server, require_starttls=True)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    sender = EmailSender(email_channel(port, starttls=True, ca_file=other))
    with pytest.raises(DeliveryError) as caught:
        sender.send(MessageRenderer().alert(make_alert(1), "vi"))
    assert not caught.value.retryable and "certificate" in caught.value.reason


@pytest.mark.parametrize("wrong", ["sai-mật-khẩu-9876543210", "wrong-password-9876543210"])
def test_a_refused_login_is_not_retried_and_the_password_is_not_told(
    smtp_server: Callable[..., tuple[Mailbox, int]],
    tls: Tls,
    caplog: pytest.LogCaptureFixture,
    wrong: str,
) -> None:
    mailbox, port = smtp_server(
        tls_context=tls.server,
        require_starttls=True,
        auth_required=True,
        authenticator=check_password,
    )
    channel = email_channel(
        port, starttls=True, ca_file=tls.ca_file, username="soc", password=SecretStr(wrong)
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(DeliveryError) as caught:
        EmailSender(channel).send(MessageRenderer().alert(make_alert(1), "vi"))
    assert not caught.value.retryable and "refused the login" in caught.value.reason
    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert mailbox.messages == []


# --- HTTP servers: a webhook receiver, a Telegram Bot API ----------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


Answer = Callable[[Request], tuple[int, dict[str, Any]]]


class HttpServer:
    """An HTTP server on 127.0.0.1 in a thread: keeps each POST and answers what ``answer``
    says (a status and a JSON body)."""

    def __init__(self, answer: Answer) -> None:
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = Request(
                    self.path, dict(self.headers.items()), self.rfile.read(length), time.monotonic()
                )
                server.requests.append(request)
                status, payload = answer(request)
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # not on the test's stderr

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[Callable[[Answer], HttpServer]]:
    servers: list[HttpServer] = []

    def start(answer: Answer) -> HttpServer:
        servers.append(HttpServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def verifying_receiver(secret: str) -> Answer:
    """A webhook receiver as docs/notifications.md tells one to verify: 401 unless signed with
    ``secret`` within five minutes."""

    def answer(request: Request) -> tuple[int, dict[str, Any]]:
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
        if fresh and hmac.compare_digest(f"sha256={mac.hexdigest()}", signature):
            return 200, {"received": True}
        return 401, {"error": "bad signature"}

    return answer


def test_a_webhook_receiver_verifies_the_signature(
    http_server: Callable[[Answer], HttpServer],
) -> None:
    receiver = http_server(verifying_receiver(SECRET))
    alert = make_alert(3, Severity.CRITICAL)
    message = MessageRenderer(console_url="https://soc.tinh.gov.vn").alert(alert, "vi")
    channel = WebhookChannel(name="hook", url=f"{receiver.url}/soc", secret=SecretStr(SECRET))
    WebhookSender(channel).send(message)
    (request,) = receiver.requests
    assert request.path == "/soc"
    body = json.loads(request.body)
    assert body["kind"] == "alert" and body["text"] == message.text
    assert body["alert"]["id"] == alert.id
    assert body["alert"]["url"] == f"https://soc.tinh.gov.vn/#/alerts/{alert.id}"
    assert body["alert"]["user"] == "trần.thị.bình"


def test_a_webhook_signed_with_another_secret_is_refused(
    http_server: Callable[[Answer], HttpServer],
) -> None:
    receiver = http_server(verifying_receiver(SECRET))
    channel = WebhookChannel(
        name="hook", url=receiver.url, secret=SecretStr("another-secret-0123456789")
    )
    with pytest.raises(DeliveryError) as caught:
        WebhookSender(channel).send(MessageRenderer().alert(make_alert(1), "en"))
    assert not caught.value.retryable and "HTTP 401" in caught.value.reason


def telegram_api(token: str, answers: list[tuple[int, dict[str, Any]]]) -> Answer:
    """The Bot API's sendMessage: the scripted ``answers`` first, then ok."""

    def answer(request: Request) -> tuple[int, dict[str, Any]]:
        if request.path != f"/bot{token}/sendMessage":
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if answers:
            return answers.pop(0)
        sent = json.loads(request.body)
        return 200, {"ok": True, "result": {"message_id": 1, "text": sent["text"]}}

    return answer


def test_telegram_is_retried_after_the_wait_it_asked_for(
    http_server: Callable[[Answer], HttpServer],
) -> None:
    too_many = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    api = http_server(telegram_api(TOKEN, [(429, too_many)]))
    config = NotificationSettings(
        channels=[
            TelegramChannel(
                name="tg", api_url=api.url, bot_token=SecretStr(TOKEN), chat_id="-100222"
            )
        ],
        routes=[NotificationRoute(name="all", channels=["tg"])],
    )
    # Waits far shorter than Telegram's retry_after, so that only its wait can explain the gap.
    retry = RetryPolicy(attempts=3, base_s=0.01, jitter=0.0)
    center = NotificationCenter(config, retry=retry)
    center.start()
    center.offer([AlertChange(make_alert(1), True, 1)])
    center.close(timeout_s=60)
    first, second = api.requests
    assert second.at - first.at >= too_many["parameters"]["retry_after"]  # type: ignore[index]
    sent = json.loads(second.body)
    assert sent["chat_id"] == "-100222" and sent["disable_web_page_preview"] is True
    assert sent["text"].startswith("Cảnh báo mới: Đăng nhập SSH thất bại nhiều lần")
    assert center.stats.channels["tg"].sent == 1 and center.stats.failed == 0


def test_the_center_sends_each_new_alert_to_the_channels_of_its_routes(
    http_server: Callable[[Answer], HttpServer],
    smtp_server: Callable[..., tuple[Mailbox, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = http_server(verifying_receiver(SECRET))
    api = http_server(telegram_api(TOKEN, []))
    mailbox, port = smtp_server()
    config = NotificationSettings(
        channels=[
            WebhookChannel(name="hook", url=hook.url, secret=SecretStr(SECRET)),
            TelegramChannel(name="tg", api_url=api.url, bot_token=SecretStr(TOKEN), chat_id="1"),
            email_channel(port),
        ],
        routes=[
            NotificationRoute(
                name="critical", channels=["hook"], min_severity="critical", language="en"
            ),
            NotificationRoute(name="high", channels=["tg", "mail"], min_severity="high"),
        ],
        console_url="https://soc.tinh.gov.vn",
    )
    high, critical, medium = (
        make_alert(1, Severity.HIGH),
        make_alert(2, Severity.CRITICAL),
        make_alert(3, Severity.MEDIUM),
    )
    center = NotificationCenter(config)
    center.start()
    with caplog.at_level(logging.DEBUG):
        center.offer([AlertChange(a, True, 1) for a in (high, critical, medium)])
        center.offer([AlertChange(high.model_copy(update={"count": 9}), False, 8)])
        center.close(timeout_s=60)
    assert [json.loads(r.body)["alert"]["id"] for r in hook.requests] == [critical.id]
    assert json.loads(hook.requests[0].body)["text"].startswith("New alert")
    assert sorted(json.loads(r.body)["text"].splitlines()[0] for r in api.requests) == sorted(
        f"Cảnh báo mới: {a.rule.title}" for a in (high, critical)
    )
    subjects = sorted(m["Subject"] for m in mailbox.messages)
    renderer = MessageRenderer(console_url=config.console_url)
    assert subjects == sorted(renderer.alert(a, "vi").subject for a in (high, critical))
    assert center.stats.sent == 5 and center.stats.failed == 0
    assert SECRET not in caplog.text and TOKEN not in caplog.text
