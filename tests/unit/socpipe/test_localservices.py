"""Local services' pieces that need no JVM: the Kafka cluster id."""

from __future__ import annotations

import uuid

import pytest

from socpipe import localservices


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 makes the first base64url digit 62, "-": the storage tool would take it for an option.
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(localservices.uuid, "uuid4", lambda: next(drawn))
    cluster_id = localservices._cluster_id()
    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert len(cluster_id) == 22
