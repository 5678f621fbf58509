"""What every notification channel shares: the message, the error, the sender contract and the
sender's in-memory double.

Errors a sender raises::

    DeliveryError(channel, reason, retryable, retry_after)
      retryable=True    trying again later may work: a timeout, a dropped connection, HTTP 5xx,
                        429 (with ``retry_after`` when the channel said how long to wait), SMTP 4xx
      retryable=False   it will not until someone changes a setting: HTTP 4xx, a refused login,
                        refused recipients, a certificate that does not verify

A reason says what failed and where (the channel's host, the status and the answer), never a
secret: reasons are logged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """A rendered notification: ``subject`` (an email's subject), ``text`` (the plain-text body,
    complete by itself: chat channels send only this) and ``payload``, the same facts as
    JSON-ready data for machines (what a webhook receives)."""

    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """A message did not reach ``channel``; see the module docstring for ``retryable``."""

    def __init__(
        self, channel: str, reason: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.retryable = retryable
        # Seconds the channel asked us to wait (Telegram's parameters.retry_after, an HTTP
        # Retry-After header); the next attempt waits at least this long.
        self.retry_after = retry_after


class Sender(ABC):
    """Delivers messages to one channel.

    To implement one, subclass and provide ``send``: return once the channel accepted the
    message, or raise ``DeliveryError``. A sender neither retries nor sleeps (the notification
    center schedules retries, so that one channel's trouble delays no other), and keeps secrets
    out of its reasons. ``close`` frees connections. A sender is used by one thread at a time.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def send(self, message: Message) -> None:
        """Deliver ``message`` or raise DeliveryError."""

    def close(self) -> None:  # noqa: B027 - a hook: a sender without connections has nothing to do
        """Free connections; the default has none."""


class RecordingSender(Sender):
    """The in-memory double: keeps what it delivered in ``sent``; raises the errors it was given
    in ``failures`` first, one per attempt, in order."""

    def __init__(self, name: str, failures: Iterable[Exception] = ()) -> None:
        super().__init__(name)
        self.sent: list[Message] = []
        self.attempts = 0
        self._failures = list(failures)

    def fail_next(self, *errors: Exception) -> None:
        """Make the next attempts raise ``errors``, in order."""
        self._failures.extend(errors)

    def send(self, message: Message) -> None:
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        self.sent.append(message)
