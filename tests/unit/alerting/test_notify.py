"""Notifications of new alerts: routing, the rate limit and digests on a fake clock, retries,
the templates in both languages, the channels over httpx's MockTransport, and secrets kept out
of logs."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alerting.notify import (
    DeliveryError,
    EmailSender,
    Message,
    MessageRenderer,
    NotificationCenter,
    RecordingSender,
    RetryPolicy,
    Sender,
    TelegramSender,
    WebhookSender,
    verify_webhook_signature,
    webhook_signature,
)
from alerting.notify.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, fit_telegram_text
from alerting.store import AlertChange
from socpipe.errors import ConfigError
from socpipe.records import Alert, DetectorRef, Entities, RuleRef, Severity
from socpipe.settings import (
    EmailChannel,
    NotificationRoute,
    NotificationSettings,
    TelegramChannel,
    Tier,
    WebhookChannel,
)

# 02:15 UTC is 09:15 in Hanoi (GMT+7, no daylight saving).
SEEN = datetime(2026, 11, 28, 2, 15, tzinfo=UTC)
SEEN_IN_HANOI = "28/11/2026 09:15 (GMT+7)"


def make_alert(
    n: int,
    *,
    severity: Severity = Severity.HIGH,
    agency: str = "so-tttt",
    tier: Tier | None = Tier.PROVINCE,
    rule: str = "rule-ssh",
    title: str = "Dò mật khẩu SSH",
    count: int = 1,
) -> Alert:
    """The n-th alert: a password-guessing alert unless told otherwise."""
    return Alert(
        id=f"alert-{n:05d}",
        dedup_key=f"key-{n}",
        count=count,
        first_seen=SEEN + timedelta(seconds=n),
        last_seen=SEEN + timedelta(seconds=n, minutes=3),
        window_start=SEEN,
        detector=DetectorRef(type="sigma", id="sigma", version="1"),
        rule=RuleRef(
            id=rule,
            title=title,
            level=severity,
            tactics=["credential_access"],
            techniques=["T1110"],
        ),
        severity=severity,
        risk_score=severity.risk_score,
        entities=Entities(
            agency=agency,
            tier=tier,
            host="dvc-portal-01",
            user="nguyễn.văn.a",
            source_ip="173.234.31.186",
        ),
    )


def new(alert: Alert) -> AlertChange:
    return AlertChange(alert, True, 1)


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings(
    *routes: NotificationRoute,
    channels: tuple[str, ...] = ("hook",),
    **options: Any,
) -> NotificationSettings:
    return NotificationSettings(
        channels=[WebhookChannel(name=name, url=f"http://{name}.example") for name in channels],
        routes=list(routes) or [NotificationRoute(name="all", channels=list(channels))],
        **options,
    )


def recorders(*names: str) -> dict[str, RecordingSender]:
    return {name: RecordingSender(name) for name in names}


def center_with(
    config: NotificationSettings,
    senders: dict[str, RecordingSender],
    clock: FakeClock,
    retry: RetryPolicy | None = None,
) -> NotificationCenter:
    given: dict[str, Sender] = dict(senders)
    return NotificationCenter(config, clock=clock, senders=given, retry=retry)


# --- routing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_a_route_takes_alerts_at_or_above_its_minimum_severity(severity: Severity) -> None:
    config = settings(NotificationRoute(name="r", channels=["hook"], min_severity="medium"))
    center = center_with(config, recorders("hook"), FakeClock())
    order = list(Severity)
    expected = [("hook", "vi")] if order.index(severity) >= order.index(Severity.MEDIUM) else []
    assert center.targets(make_alert(1, severity=severity)) == expected


@pytest.mark.parametrize(
    ("route", "alert", "matches"),
    [
        ({"agencies": ["so-tttt"]}, {"agency": "so-tttt"}, True),
        ({"agencies": ["so-tttt"]}, {"agency": "ubnd-xa-a"}, False),
        ({"tiers": [Tier.COMMUNE]}, {"tier": Tier.COMMUNE}, True),
        ({"tiers": [Tier.COMMUNE]}, {"tier": Tier.PROVINCE}, False),
        ({"tiers": [Tier.COMMUNE]}, {"tier": None}, False),
        ({"rules": ["rule-ssh"]}, {"rule": "rule-ssh"}, True),
        ({"rules": ["rule-ssh"]}, {"rule": "rule-rdp"}, False),
        ({}, {"agency": "any", "tier": None, "rule": "any"}, True),
    ],
)
def test_routes_match_by_agency_tier_and_rule_and_empty_lists_match_all(
    route: dict[str, Any], alert: dict[str, Any], matches: bool
) -> None:
    config = settings(
        NotificationRoute(name="r", channels=["hook"], min_severity="informational", **route)
    )
    center = center_with(config, recorders("hook"), FakeClock())
    assert bool(center.targets(make_alert(1, **alert))) is matches


def test_a_channel_of_two_matching_routes_gets_an_alert_once_in_the_first_routes_language() -> None:
    config = settings(
        NotificationRoute(name="soc", channels=["hook", "mail"], language="en"),
        NotificationRoute(name="so-tttt", channels=["mail", "chat"], language="vi"),
        channels=("hook", "mail", "chat"),
    )
    senders = recorders("hook", "mail", "chat")
    center = center_with(config, senders, FakeClock())
    center.offer([new(make_alert(1))])
    center.pump()
    languages = {name: [m.payload["language"] for m in s.sent] for name, s in senders.items()}
    assert languages == {"hook": ["en"], "mail": ["en"], "chat": ["vi"]}
    assert senders["chat"].sent[0].text.startswith("Cảnh báo mới")
    assert senders["mail"].sent[0].text.startswith("New alert")


def test_only_new_alerts_notify_so_a_storm_of_one_alert_is_one_message() -> None:
    senders = recorders("hook")
    center = center_with(settings(), senders, FakeClock())
    alert = make_alert(1)
    changes = [new(alert)] + [
        AlertChange(alert.model_copy(update={"count": n}), False, 1) for n in range(2, 10_001)
    ]
    center.offer(changes)
    center.offer([new(alert)])  # the same batch applied again reports it new again
    center.pump()
    assert [m.payload["alert"]["id"] for m in senders["hook"].sent] == [alert.id]
    assert center.stats.sent == 1


def test_an_alert_first_met_as_grown_does_not_notify() -> None:
    # Created before this process started (or its message already sent): not new any more.
    senders = recorders("hook")
    center = center_with(settings(), senders, FakeClock())
    center.offer([AlertChange(make_alert(1, count=40), False, 3)])
    center.pump()
    assert senders["hook"].sent == [] and center.stats.sent == 0


@pytest.mark.parametrize("config", [settings(enabled=False), NotificationSettings()])
def test_offer_does_nothing_when_disabled_or_without_routes(config: NotificationSettings) -> None:
    center = NotificationCenter(config, clock=FakeClock())
    center.offer([new(make_alert(1))])
    center.pump()
    center.close(timeout_s=0)
    assert not center.active
    assert center.stats.sent == center.stats.dropped == 0


def test_a_disabled_center_does_not_read_secrets(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    config = NotificationSettings(
        enabled=False,
        channels=[TelegramChannel(name="tg", chat_id="-1", bot_token_file=missing)],
        routes=[NotificationRoute(name="r", channels=["tg"])],
    )
    NotificationCenter(config)  # no ConfigError: nothing is built
    with pytest.raises(ConfigError, match="bot_token_file"):
        NotificationCenter(config.model_copy(update={"enabled": True}))


def test_a_full_queue_drops_counts_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    senders = recorders("hook")
    center = NotificationCenter(settings(), clock=FakeClock(), senders=dict(senders), queue_size=3)
    with caplog.at_level(logging.WARNING, logger="alerting.notify"):
        center.offer([new(make_alert(n)) for n in range(5)])
    assert center.stats.dropped == 2
    assert "dropped" in caplog.text and make_alert(3).id in caplog.text
    center.pump()
    assert len(senders["hook"].sent) == 3


# --- rate limit and digest ------------------------------------------------------------------------


def test_alerts_over_the_rate_wait_for_one_digest_per_interval() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    config = settings(rate_per_minute=3, digest_interval_s=300)
    center = center_with(config, senders, clock)
    alerts = [make_alert(n) for n in range(10)]
    center.offer([new(a) for a in alerts])
    center.pump()
    sent = senders["hook"].sent
    assert [m.payload["kind"] for m in sent] == ["alert"] * 3
    assert center.stats.digested == 7

    clock.advance(299)
    center.pump()
    assert len(sent) == 3

    clock.advance(1)
    center.pump()
    assert len(sent) == 4
    digest = sent[-1]
    assert digest.payload["kind"] == "digest"
    assert digest.payload["total"] == 7
    assert {a["id"] for a in digest.payload["alerts"]} == {a.id for a in alerts[3:]}
    assert "Tổng hợp 7 cảnh báo mới" in digest.subject

    clock.advance(300)
    center.pump()
    assert len(sent) == 4  # nothing held: no empty digest


def test_the_rate_window_slides_over_sixty_seconds() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    center = center_with(settings(rate_per_minute=2), senders, clock)
    center.offer([new(make_alert(1)), new(make_alert(2))])
    center.pump()
    clock.advance(59.5)
    center.offer([new(make_alert(3))])
    center.pump()
    assert len(senders["hook"].sent) == 2 and center.stats.digested == 1
    clock.advance(0.5)  # the first two left the window
    center.offer([new(make_alert(4))])
    center.pump()
    assert [m.payload["alert"]["id"] for m in senders["hook"].sent[2:]] == [make_alert(4).id]


def test_a_storm_of_distinct_alerts_costs_the_rate_plus_a_digest_per_interval() -> None:
    clock = FakeClock()
    senders = recorders("hook", "chat")
    rate, interval = 6, 300
    config = settings(channels=("hook", "chat"), rate_per_minute=rate, digest_interval_s=interval)
    center = center_with(config, senders, clock)
    storm, seconds = 5000, 900
    for n in range(storm):
        clock.now = 1000.0 + n * seconds / storm
        center.offer([new(make_alert(n))])
        center.pump()
    clock.advance(interval)
    center.pump()
    minutes = (clock.now - 1000.0) / 60
    for sender in senders.values():
        alerts = [m for m in sender.sent if m.payload["kind"] == "alert"]
        digests = [m for m in sender.sent if m.payload["kind"] == "digest"]
        assert len(alerts) <= rate * (minutes + 1)
        assert len(digests) <= (clock.now - 1000.0) // interval + 1
        # Every alert is told about, one by one or in a digest.
        assert len(alerts) + sum(d.payload["total"] for d in digests) == storm
    assert center.stats.sent == sum(len(s.sent) for s in senders.values())


def test_a_digest_lists_the_most_severe_first_then_says_how_many_more() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    config = settings(
        NotificationRoute(name="all", channels=["hook"], min_severity="informational"),
        rate_per_minute=1,
        digest_interval_s=60,
    )
    center = center_with(config, senders, clock)
    levels = list(Severity)
    alerts = [make_alert(n, severity=levels[n % len(levels)]) for n in range(1, 52)]
    center.offer([new(make_alert(0))] + [new(a) for a in alerts])
    center.pump()
    clock.advance(60)
    center.pump()
    digest = senders["hook"].sent[-1]
    listed = digest.payload["alerts"]
    shown = MessageRenderer.DIGEST_LISTED
    assert len(listed) == shown
    ranks = [levels.index(Severity(a["severity"])) for a in listed]
    assert ranks == sorted(ranks, reverse=True)
    worst = sorted(alerts, key=lambda a: (-levels.index(a.severity), a.first_seen))[:shown]
    assert [a["id"] for a in listed] == [a.id for a in worst]
    assert f"và {len(alerts) - shown} cảnh báo khác" in digest.text
    assert digest.payload["counts"] == {
        s.value: sum(a.severity == s for a in alerts)
        for s in reversed(levels)
        if any(a.severity == s for a in alerts)
    }


# --- failures and retries -------------------------------------------------------------------------

NO_JITTER = RetryPolicy(attempts=4, base_s=10.0, cap_s=300.0, jitter=0.0)


def retryable(reason: str = "HTTP 503", retry_after: float | None = None) -> DeliveryError:
    return DeliveryError("hook", reason, retryable=True, retry_after=retry_after)


def test_a_retryable_failure_is_retried_with_growing_waits() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    senders["hook"].fail_next(retryable(), retryable())
    center = center_with(settings(), senders, clock, NO_JITTER)
    center.offer([new(make_alert(1))])
    center.pump()
    assert senders["hook"].attempts == 1
    clock.advance(NO_JITTER.base_s - 1)
    center.pump()
    assert senders["hook"].attempts == 1
    clock.advance(1)
    center.pump()
    assert senders["hook"].attempts == 2
    clock.advance(NO_JITTER.base_s)  # the second wait is twice the first
    center.pump()
    assert senders["hook"].attempts == 2
    clock.advance(NO_JITTER.base_s)
    center.pump()
    assert senders["hook"].attempts == 3 and len(senders["hook"].sent) == 1
    assert center.stats.sent == 1 and center.stats.failed == 0


def test_the_wait_honours_what_the_channel_asked() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    asked = NO_JITTER.base_s * 3
    senders["hook"].fail_next(retryable("HTTP 429", retry_after=asked))
    center = center_with(settings(), senders, clock, NO_JITTER)
    center.offer([new(make_alert(1))])
    center.pump()
    clock.advance(NO_JITTER.base_s)
    center.pump()
    assert senders["hook"].attempts == 1
    clock.advance(asked - NO_JITTER.base_s)
    center.pump()
    assert senders["hook"].attempts == 2 and len(senders["hook"].sent) == 1


def test_jitter_only_shortens_the_wait() -> None:
    import random

    policy = RetryPolicy(base_s=4.0, cap_s=20.0, jitter=0.5)
    rng = random.Random(7)
    for failures in range(1, 8):
        nominal = min(policy.cap_s, policy.base_s * 2 ** (failures - 1))
        waits = [policy.delay(failures, rng) for _ in range(50)]
        assert all(nominal * (1 - policy.jitter) <= w <= nominal for w in waits)


def test_a_channel_that_keeps_failing_gives_up_after_the_attempts_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    senders = recorders("hook")
    senders["hook"].fail_next(*[retryable("hooks.example answered HTTP 502")] * 10)
    center = center_with(settings(), senders, clock, NO_JITTER)
    center.offer([new(make_alert(1))])
    with caplog.at_level(logging.INFO, logger="alerting.notify"):
        for _ in range(10):
            center.pump()
            clock.advance(NO_JITTER.cap_s)
    assert senders["hook"].attempts == NO_JITTER.attempts
    assert center.stats.failed == 1 and center.stats.sent == 0
    gave_up = [r for r in caplog.records if "gave up" in r.getMessage()]
    assert len(gave_up) == 1
    assert "hook" in gave_up[0].getMessage() and "HTTP 502" in gave_up[0].getMessage()


def test_a_refusal_is_not_retried() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    senders["hook"].fail_next(DeliveryError("hook", "HTTP 404", retryable=False))
    center = center_with(settings(), senders, clock, NO_JITTER)
    center.offer([new(make_alert(1)), new(make_alert(2))])
    for _ in range(3):
        center.pump()
        clock.advance(NO_JITTER.cap_s)
    assert senders["hook"].attempts == 2
    assert center.stats.failed == 1 and center.stats.sent == 1


def test_a_failing_channel_does_not_hold_up_another() -> None:
    clock = FakeClock()
    senders = recorders("hook", "chat")
    senders["hook"].fail_next(retryable())
    config = settings(channels=("hook", "chat"))
    center = center_with(config, senders, clock, NO_JITTER)
    center.offer([new(make_alert(1))])
    center.pump()
    assert len(senders["chat"].sent) == 1 and not senders["hook"].sent


class BlockingSender(Sender):
    """Blocks in send until released: a channel whose server does not answer."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.entered.set()
        self.release.wait(60)
        self.sent.append(message)


def test_threads_deliver_to_a_channel_while_another_is_stuck() -> None:
    stuck = BlockingSender("hook")
    delivered = threading.Event()

    class SignallingSender(RecordingSender):
        def send(self, message: Message) -> None:
            super().send(message)
            delivered.set()

    chat = SignallingSender("chat")
    config = settings(channels=("hook", "chat"))
    center = NotificationCenter(config, senders={"hook": stuck, "chat": chat})
    center.start()
    try:
        center.offer([new(make_alert(1))])
        assert stuck.entered.wait(30)
        assert delivered.wait(30)
        assert not stuck.sent
    finally:
        stuck.release.set()
        center.close(timeout_s=30)
    assert len(stuck.sent) == 1 and len(chat.sent) == 1
    assert center.stats.sent == 2


def test_close_sends_the_pending_digest() -> None:
    clock = FakeClock()
    senders = recorders("hook")
    center = center_with(settings(rate_per_minute=1), senders, clock)
    center.offer([new(make_alert(n)) for n in range(3)])
    center.pump()
    center.offer([new(make_alert(3))])
    center.close(timeout_s=5)
    kinds = [m.payload["kind"] for m in senders["hook"].sent]
    assert kinds == ["alert", "digest"]
    assert senders["hook"].sent[-1].payload["total"] == 3
    center.offer([new(make_alert(4))])
    center.pump()
    assert len(senders["hook"].sent) == 2  # closed: no more


def test_close_counts_what_it_could_not_send(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    senders = recorders("hook")
    senders["hook"].fail_next(retryable(), retryable())
    center = center_with(settings(), senders, clock, NO_JITTER)
    center.offer([new(make_alert(1))])
    center.pump()
    with caplog.at_level(logging.WARNING, logger="alerting.notify"):
        center.close(timeout_s=0)
    assert center.stats.failed == 1
    assert "not sent before close" in caplog.text and make_alert(1).id in caplog.text


# --- templates ------------------------------------------------------------------------------------

VI_SEVERITY = {
    Severity.INFORMATIONAL: "thông tin",
    Severity.LOW: "thấp",
    Severity.MEDIUM: "trung bình",
    Severity.HIGH: "cao",
    Severity.CRITICAL: "nghiêm trọng",
}


def test_the_vietnamese_alert_message_keeps_its_diacritics() -> None:
    alert = make_alert(0, title="Đăng nhập thất bại nhiều lần", count=7)
    message = MessageRenderer(console_url="https://soc.tinh.gov.vn/").alert(alert, "vi")
    lines = message.text.splitlines()
    assert lines[0] == f"Cảnh báo mới: {alert.rule.title}"
    for line in (
        f"Mức độ: cao (điểm rủi ro {alert.risk_score}/100)",
        f"Cơ quan: {alert.entities.agency} (cấp tỉnh)",
        f"Máy: {alert.entities.host}",
        f"Người dùng: {alert.entities.user}",
        f"Địa chỉ nguồn: {alert.entities.source_ip}",
        f"Kỹ thuật ATT&CK: {', '.join(alert.rule.techniques)}",
        f"Số lần phát hiện: {alert.count} lần",
        f"Lần đầu: {SEEN_IN_HANOI}",
        f"Xem chi tiết: https://soc.tinh.gov.vn/#/alerts/{alert.id}",
    ):
        assert line in lines
    assert message.subject == (
        f"[SOC] Cảnh báo mới, mức cao: {alert.rule.title} ({alert.entities.agency})"
    )
    assert "&amp;" not in message.text  # plain text: nothing escaped


def test_the_english_alert_message_says_the_same() -> None:
    alert = make_alert(0, tier=Tier.COMMUNE)
    message = MessageRenderer().alert(alert, "en")
    lines = message.text.splitlines()
    assert lines[0] == f"New alert: {alert.rule.title}"
    for line in (
        f"Severity: high (risk score {alert.risk_score}/100)",
        f"Agency: {alert.entities.agency} (commune)",
        f"Host: {alert.entities.host}",
        f"User: {alert.entities.user}",
        f"Source address: {alert.entities.source_ip}",
        f"ATT&CK techniques: {', '.join(alert.rule.techniques)}",
        f"First seen: {SEEN_IN_HANOI}",
    ):
        assert line in lines
    assert not any(line.startswith("Details:") for line in lines)  # no console_url


@pytest.mark.parametrize("severity", list(Severity))
def test_severity_names_are_translated(severity: Severity) -> None:
    renderer = MessageRenderer()
    vi = renderer.alert(make_alert(1, severity=severity), "vi")
    en = renderer.alert(make_alert(1, severity=severity), "en")
    assert f"Mức độ: {VI_SEVERITY[severity]} (" in vi.text
    assert f"Severity: {severity.value} (" in en.text


def test_no_english_word_is_left_in_the_vietnamese_templates() -> None:
    renderer = MessageRenderer(console_url="https://soc.example")
    alert = make_alert(1)
    english = renderer.alert(alert, "en").text + renderer.digest([alert] * 2, "en", total=30).text
    vietnamese = (
        renderer.alert(alert, "vi").text + renderer.digest([alert] * 2, "vi", total=30).text
    )

    def words(text: str) -> set[str]:
        stripped = (w.strip(".,:;()[]") for w in text.split())
        return {w for w in stripped if w.isascii() and w.isalpha() and len(w) > 3}

    # What is left in common is the alert's own facts (none here are plain words).
    assert words(english) & words(vietnamese) == set()
    assert {"Severity", "Agency", "Host", "more"} <= words(english)  # the check sees words


def test_times_are_shown_in_the_configured_zone() -> None:
    alert = make_alert(0)
    utc = MessageRenderer(timezone="UTC").alert(alert, "en")
    assert "First seen: 28/11/2026 02:15 (GMT)" in utc.text
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        MessageRenderer(timezone="Mars/Olympus")


# --- channels -----------------------------------------------------------------------------------

SECRET = "s3cr3t-webhook-key-0123456789"
TOKEN = "123456789:AAE-secret-bot-token_xyz"
MESSAGE = Message(
    subject="[SOC] Cảnh báo mới",
    text="Cảnh báo mới: Dò mật khẩu SSH\nMức độ: cao",
    payload={"kind": "alert", "alert": {"id": "alert-1"}},
)


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def webhook(
    handler: Callable[[httpx.Request], httpx.Response], secret: str | None = SECRET
) -> WebhookSender:
    channel = WebhookChannel(
        name="hook",
        url="https://hooks.example.vn/soc?token=path-token",
        secret=SecretStr(secret) if secret else None,
    )
    return WebhookSender(channel, transport=mock(handler), wall_clock=lambda: 1_790_000_000.0)


def test_the_webhook_posts_the_message_signed_so_a_receiver_can_verify_it() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    webhook(handler).send(MESSAGE)
    (request,) = seen
    body = request.content
    assert json.loads(body) == {
        "v": 1,
        **MESSAGE.payload,
        "subject": MESSAGE.subject,
        "text": MESSAGE.text,
    }
    timestamp = request.headers[TIMESTAMP_HEADER]
    # What a receiver does, by the documentation, with nothing of ours.
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    assert request.headers[SIGNATURE_HEADER] == f"sha256={expected.hexdigest()}"
    now = float(timestamp)
    signature = request.headers[SIGNATURE_HEADER]
    assert verify_webhook_signature(SECRET, timestamp, signature, body, now=now)
    assert not verify_webhook_signature(SECRET, timestamp, signature, body + b" ", now=now)
    assert not verify_webhook_signature("another-secret-16ch", timestamp, signature, body, now=now)
    assert not verify_webhook_signature(SECRET, timestamp, signature, body, now=now + 3600)
    assert not verify_webhook_signature(SECRET, None, signature, body, now=now)


def test_an_unsigned_webhook_carries_no_signature() -> None:
    seen: list[httpx.Request] = []
    webhook(lambda r: seen.append(r) or httpx.Response(200), secret=None).send(MESSAGE)
    assert SIGNATURE_HEADER not in seen[0].headers and TIMESTAMP_HEADER not in seen[0].headers


def test_webhook_signature_is_over_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    mac = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature("k" * 16, "1700000000", body) == f"sha256={mac}"


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
def test_webhook_errors_say_whether_to_retry(status: int, retryable: bool) -> None:
    sender = webhook(lambda r: httpx.Response(status, headers={"Retry-After": "7"}, text="no"))
    with pytest.raises(DeliveryError) as caught:
        sender.send(MESSAGE)
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == 7.0
    assert f"HTTP {status}" in caught.value.reason
    assert "path-token" not in str(caught.value)  # the URL's path and query stay out


def test_a_webhook_timeout_is_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(DeliveryError) as caught:
        webhook(handler).send(MESSAGE)
    assert caught.value.retryable and "no answer within" in caught.value.reason


def telegram(handler: Callable[[httpx.Request], httpx.Response]) -> TelegramSender:
    channel = TelegramChannel(
        name="tg",
        api_url="https://tg.example",
        bot_token=SecretStr(TOKEN),
        chat_id="-1001234567890",
    )
    return TelegramSender(channel, transport=mock(handler))


def test_telegram_sends_the_text_to_the_chat() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "result": {"message_id": 1}})

    telegram(handler).send(MESSAGE)
    (request,) = seen
    assert request.url.path == f"/bot{TOKEN}/sendMessage"
    assert json.loads(request.content) == {
        "chat_id": "-1001234567890",
        "text": MESSAGE.text,
        "disable_web_page_preview": True,
    }


def test_telegram_too_many_requests_carries_retry_after() -> None:
    answer = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 9"}
    answer["parameters"] = {"retry_after": 9}
    sender = telegram(lambda r: httpx.Response(429, json=answer))
    with pytest.raises(DeliveryError) as caught:
        sender.send(MESSAGE)
    assert caught.value.retryable and caught.value.retry_after == 9
    assert "Too Many Requests" in caught.value.reason


def test_telegram_refusals_are_not_retried() -> None:
    answer = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    with pytest.raises(DeliveryError) as caught:
        telegram(lambda r: httpx.Response(400, json=answer)).send(MESSAGE)
    assert not caught.value.retryable and "chat not found" in caught.value.reason


def test_a_long_telegram_text_is_cut_at_a_line_end() -> None:
    line = "Cảnh báo mới: Dò mật khẩu SSH trên máy dvc-portal-01"
    text = "\n".join(f"{n} {line}" for n in range(200))
    cut = fit_telegram_text(text)
    assert len(text) > 4096 >= len(cut.encode("utf-16-le")) // 2
    assert cut.endswith("\n…")
    kept = cut.removesuffix("\n…").splitlines()
    assert kept == text.splitlines()[: len(kept)]  # whole lines only


def test_the_telegram_limit_counts_utf16_units_and_keeps_letters_whole() -> None:
    emoji = "🚨" * 3000  # two UTF-16 units each, no space to cut at
    cut = fit_telegram_text(emoji)
    assert len(cut.encode("utf-16-le")) // 2 <= 4096 and set(cut[:-1]) == {"🚨"}
    # Decomposed "ệ" is e + two combining marks: a cut never strands the marks.
    decomposed = "e\u0323\u0302" * 2000
    cut = fit_telegram_text(decomposed)
    assert len(cut) <= 4096 and cut.removesuffix("…").endswith("e\u0323\u0302")
    assert fit_telegram_text("ngắn") == "ngắn"


def mail_channel(**changes: Any) -> EmailChannel:
    options: dict[str, Any] = {
        "name": "mail",
        "host": "127.0.0.1",
        "sender": "soc@tinh.gov.vn",
        "recipients": ["truc-ban@tinh.gov.vn", "lanh-dao@tinh.gov.vn"],
    }
    return EmailChannel(**(options | changes))


def test_the_email_is_utf8_text_with_its_headers() -> None:
    mail = EmailSender(mail_channel()).compose(MESSAGE)
    parsed = email.message_from_bytes(mail.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == MESSAGE.subject
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().rstrip("\n") == MESSAGE.text
    assert parsed["To"] == "truc-ban@tinh.gov.vn, lanh-dao@tinh.gov.vn"
    assert parsed["Message-ID"].endswith("@tinh.gov.vn>") and parsed["Date"]
    assert mail.as_bytes().isascii()  # diacritics encoded, so any relay carries them


def test_channel_secrets_come_inline_or_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    seen: list[httpx.Request] = []
    channel = TelegramChannel(name="tg", api_url="https://tg.example", chat_id="1")
    from_file = TelegramSender(
        channel.model_copy(update={"bot_token_file": token_file}),
        transport=mock(lambda r: seen.append(r) or httpx.Response(200, json={"ok": True})),
    )
    from_file.send(MESSAGE)
    assert seen[0].url.path == f"/bot{TOKEN}/sendMessage"
    with pytest.raises(ConfigError, match="not both"):
        TelegramSender(
            channel.model_copy(update={"bot_token": SecretStr(TOKEN), "bot_token_file": token_file})
        )
    with pytest.raises(ConfigError, match="bot_token"):
        TelegramSender(channel)
    with pytest.raises(ConfigError, match="no password"):
        EmailSender(mail_channel(username="soc"))


# --- secrets stay out of logs ---------------------------------------------------------------------


def test_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    password = "mật-khẩu-thư-0123456789"
    password_file = tmp_path / "smtp-password"
    password_file.write_text(password, encoding="utf-8")
    answers = iter(
        [
            httpx.Response(500, text="upstream down"),
            httpx.Response(401, json={"ok": False, "description": "Unauthorized"}),
        ]
    )

    def leaky(request: httpx.Request) -> httpx.Response:
        answer = next(answers, None)
        if answer is None:
            # An error whose text holds the URL, and so the token.
            raise httpx.ConnectError(f"cannot reach {request.url}", request=request)
        return answer

    config = NotificationSettings(
        channels=[
            WebhookChannel(name="hook", url="https://hooks.example", secret=SecretStr(SECRET)),
            TelegramChannel(name="tg", bot_token=SecretStr(TOKEN), chat_id="1"),
            # Nothing listens on port 9 (discard) of this host: connecting fails.
            mail_channel(port=9, starttls=False, username="soc", password_file=password_file),
        ],
        routes=[NotificationRoute(name="all", channels=["hook", "tg", "mail"])],
    )
    hook_channel, tg_channel = config.channels[0], config.channels[1]
    assert isinstance(hook_channel, WebhookChannel) and isinstance(tg_channel, TelegramChannel)
    senders: dict[str, Sender] = {
        "hook": WebhookSender(hook_channel, transport=mock(leaky)),
        "tg": TelegramSender(tg_channel, transport=mock(leaky)),
    }
    clock = FakeClock()
    retry = RetryPolicy(attempts=3, base_s=1.0, jitter=0.0)
    center = NotificationCenter(config, clock=clock, senders=senders, retry=retry)
    with caplog.at_level(logging.DEBUG):
        center.offer([new(make_alert(n)) for n in range(2)])
        for _ in range(6):
            center.pump()
            clock.advance(10)
        center.close(timeout_s=0)
    assert center.stats.failed >= 3  # something failed on every channel, and was logged
    for name in ("hook", "tg", "mail"):
        assert f"notification channel {name}: gave up" in caplog.text
    assert "/bot<redacted>/" in caplog.text  # httpx's own request log, redacted
    for secret in (SECRET, TOKEN, password):
        assert secret not in caplog.text
