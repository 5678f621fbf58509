"""Alerts of many kinds, and the API on in-memory doubles, for the triage, case, stats and audit
tests (plain functions and classes, not fixtures)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from fastapi.testclient import TestClient

from alerting.store import AlertStore, InMemoryAlertStore, SourcedDetection
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.cases import InMemoryCaseStore
from api.users import InMemoryUserStore
from socpipe.records import Detection, DetectorRef, Entities, RuleRef, Severity, stable_id
from socpipe.settings import Settings, Tier, load_settings
from tests.support.factories import BASE_TIME

VIEWER_AGENCY = "phuong-phuc-xa"
AGENCIES = ("so-tttt", "phuong-phuc-xa", "xa-tan-lap")
RULES = (
    ("rule-ssh", "SSH authentication failure", ["credential_access"], ["T1110.001"], "medium"),
    ("rule-webshell", "Web shell upload", ["persistence"], ["T1505.003"], "high"),
    ("rule-rdp", "RDP from abroad", ["initial_access", "lateral_movement"], ["T1133"], "critical"),
    ("rule-scan", "Port scan", ["discovery"], ["T1046"], "low"),
)
USERS = ("nguyễn.văn.a", "trần.thị.b", None)
KEYS = {
    "admin": "admin-key-0123456789abcdef",
    "analyst": "analyst-key-0123456789abcdef",
    "lan": "lan-analyst-key-0123456789abc",
    "author": "author-key-0123456789abcdef",
    "viewer": "viewer-key-0123456789abcdef",
}
_ROLES = {
    "admin": "soc_admin",
    "analyst": "analyst",
    "lan": "analyst",
    "author": "rule_author",
    "viewer": "agency_viewer",
}


def auth(who: str) -> dict[str, str]:
    """The Authorization header of one of :data:`KEYS`."""
    return {"Authorization": f"Bearer {KEYS[who]}"}


def api_settings() -> Settings:
    """Settings with a key for each role of :data:`KEYS` (the viewer of VIEWER_AGENCY)."""
    tokens = [
        {"name": name, "token": KEYS[name], "role": role}
        | ({"agency": VIEWER_AGENCY} if role == "agency_viewer" else {})
        for name, role in _ROLES.items()
    ]
    return load_settings(api={"tokens": tokens, "jwt_secret": "k" * 40})


def varied_detection(n: int, copy: int = 0) -> Detection:
    """The ``copy``-th detection of the n-th alert of a mix: agencies, rules, severities,
    hosts, users and addresses cycle with n; alerts are 13 minutes apart."""
    rule_id, title, tactics, techniques, level = RULES[n % len(RULES)]
    agency = AGENCIES[n % len(AGENCIES)]
    severity = Severity(level)
    source_ip = f"10.{n % 4}.{n % 5}.{n % 250 + 1}" if n % 2 else f"203.113.{n % 8}.{n % 200 + 1}"
    return Detection(
        id=stable_id("varied", n, copy),
        timestamp=BASE_TIME + timedelta(minutes=13 * n, seconds=copy),
        detector=DetectorRef(type="sigma", id=rule_id, version="1"),
        rule=RuleRef(
            id=rule_id,
            title=title,
            level=severity,
            tags=[f"attack.{t}" for t in tactics],
            tactics=tactics,
            techniques=techniques,
        ),
        severity=severity,
        risk_score=severity.risk_score,
        entities=Entities(
            agency=agency,
            tier=Tier.PROVINCE if agency.startswith("so-") else Tier.COMMUNE,
            host=f"host-{n % 7}",
            user=USERS[(n // 2) % len(USERS)],
            source_ip=source_ip,
        ),
        dedup_key=f"varied-{n}",
        event_ids=[f"event-{n}-{copy}"],
        events=[{"message": f"sự kiện {n}/{copy}"}],
    )


def varied_batch(count: int, *, first: int = 0) -> list[SourcedDetection]:
    """Detections of ``count`` alerts, 1 to 3 each (n % 3 + 1), offsets in order."""
    batch = []
    offset = first * 3
    for n in range(first, first + count):
        for copy in range(n % 3 + 1):
            offset += 1
            batch.append(SourcedDetection(varied_detection(n, copy), "soc.detections:0", offset))
    return batch


@dataclass
class Rig:
    """The API on doubles, with the doubles at hand."""

    store: AlertStore
    audit: InMemoryAuditLog = field(default_factory=InMemoryAuditLog)
    cases: InMemoryCaseStore = field(default_factory=InMemoryCaseStore)
    client: TestClient = field(init=False)

    def __post_init__(self) -> None:
        app = create_app(
            api_settings(), store=self.store, users=InMemoryUserStore(), audit=self.audit
        )
        app.state.cases = self.cases
        self.client = TestClient(app)


def rig(count: int = 24) -> Rig:
    """The API over an in-memory store holding ``count`` varied alerts."""
    store = InMemoryAlertStore(3600)
    result = store.apply(varied_batch(count))
    assert result.failed == []
    return Rig(store)
