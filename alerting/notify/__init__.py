"""Notifications of new alerts: webhook, email and Telegram, routed by severity, agency, tier and
rule, paced per channel with digests, in Vietnamese or English.

The alert worker builds a ``NotificationCenter`` from ``alerting.notifications``, ``start``s it,
hands it each batch's ``AlertChange``s with ``offer`` once Elasticsearch acknowledged them, and
``close``s it on the way out. See docs/notifications.md.
"""

from alerting.notify.base import DeliveryError, Message, RecordingSender, Sender
from alerting.notify.center import NotificationCenter, NotificationStats
from alerting.notify.channels import (
    EmailSender,
    TelegramSender,
    WebhookSender,
    make_sender,
    verify_webhook_signature,
    webhook_signature,
)
from alerting.notify.lane import ChannelStats, RetryPolicy
from alerting.notify.render import MessageRenderer

__all__ = [
    "ChannelStats",
    "DeliveryError",
    "EmailSender",
    "Message",
    "MessageRenderer",
    "NotificationCenter",
    "NotificationStats",
    "RecordingSender",
    "RetryPolicy",
    "Sender",
    "TelegramSender",
    "WebhookSender",
    "make_sender",
    "verify_webhook_signature",
    "webhook_signature",
]
