"""Events for the anomaly detector's tests: logons of a few users in Vietnam's working hours."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

BASE = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # a Monday, 08:00 in Hà Nội


def logon(user: str, at: datetime, *, failed: bool = False, host: str = "h1") -> dict[str, Any]:
    return {
        "@timestamp": at.isoformat(),
        "event": {
            "id": f"{user}-{at.timestamp()}-{host}",
            "category": ["authentication"],
            "action": "logon",
            "outcome": "failure" if failed else "success",
        },
        "user": {"name": user},
        "host": {"name": host},
        "source": {"ip": "10.20.0.4"},
        "organization": {"id": "so-tttt"},
    }


def baseline(
    days: int = 14, users: int = 8, seed: int = 3, start: datetime = BASE
) -> Iterator[dict[str, Any]]:
    """Working-hours logons of a few users from ``start`` (08:00 there), a failure now and
    then."""
    rng = random.Random(seed)
    for day in range(days):
        for user in range(users):
            for hour in range(8):
                for n in range(rng.randint(1, 4)):
                    at = start + timedelta(days=day, hours=hour, minutes=n * 7)
                    yield logon(f"user{user}", at, failed=rng.random() < 0.1)
