"""In-memory stand-ins for kafka-python's producer and consumer records, for unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """The fields of kafka-python's ConsumerRecord that the stages read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class DoneFuture:
    """A send future that has already succeeded."""

    def __init__(self, message: Message) -> None:
        self.message = message

    def get(self, timeout: float | None = None) -> Message:
        return self.message


@dataclass
class InMemoryProducer:
    """Keeps what was sent, per topic, in order."""

    sent: dict[str, list[Message]] = field(default_factory=dict)

    def send(
        self,
        topic: str,
        key: bytes | None = None,
        value: bytes = b"",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        queue = self.sent.setdefault(topic, [])
        message = Message(topic, 0, len(queue), key, value, tuple(headers or ()))
        queue.append(message)
        return DoneFuture(message)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None
