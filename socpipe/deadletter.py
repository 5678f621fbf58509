"""The dead-letter path: what a stage cannot handle goes to soc.dlq with stage and reason."""

from __future__ import annotations

import logging
from typing import Any, Literal

from kafka import KafkaProducer

from socpipe.records import DeadLetter, stable_id, utcnow

log = logging.getLogger(__name__)

Stage = Literal["collect", "detect", "correlate", "anomaly", "alert", "index"]


class DeadLetterWriter:
    """Sends dead letters to the DLQ topic; the caller waits for the futures before committing."""

    def __init__(self, producer: KafkaProducer, topic: str, stage: Stage) -> None:
        self.producer = producer
        self.topic = topic
        self.stage = stage
        self.count = 0

    def send(
        self,
        reason: str,
        original: bytes | str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        agency: str | None = None,
        record_id: str | None = None,
    ) -> Any:
        """Queue one dead letter; returns the send future."""
        text = original.decode("utf-8", "replace") if isinstance(original, bytes) else original
        letter = DeadLetter(
            id=stable_id(self.stage, topic, partition, offset, record_id, text[:256]),
            stage=self.stage,
            reason=reason,
            at=utcnow(),
            topic=topic,
            partition=partition,
            offset=offset,
            agency=agency,
            record_id=record_id,
            original=text,
        )
        self.count += 1
        where = f"{topic}/{partition}@{offset}" if topic is not None else "input"
        log.warning("dead letter from %s (%s, agency %s): %s", where, self.stage, agency, reason)
        return self.producer.send(self.topic, key=(agency or "").encode(), value=letter.to_json())

    def refuse(self, message: Any, why: str, *, agency: str | None = None) -> Any:
        """Dead-letter a Kafka record (``message``: a consumer record) as it came, its reason
        starting with where it was read (``topic/partition@offset: why``)."""
        return self.send(
            f"{message.topic}/{message.partition}@{message.offset}: {why}",
            message.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            agency=agency,
        )
