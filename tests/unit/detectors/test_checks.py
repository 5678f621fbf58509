"""Tests of detectors.checks: FailedPasswordCheck and the Check base."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from detectors.checks import Check, FailedPasswordCheck, entities_of
from detectors.normalize import Normalizer
from socpipe.errors import RecordError
from socpipe.records import (
    Detection,
    DetectorRef,
    EcsEvent,
    RawRecord,
    RuleRef,
    Severity,
    stable_id,
)
from socpipe.settings import Tier

RECEIVED = datetime(2024, 12, 11, 8, 0, tzinfo=UTC)


def _event(message: str, *, raw_id: str = "raw-1", agency: str = "so-tttt") -> EcsEvent:
    raw = RawRecord.model_validate(
        {
            "id": raw_id,
            "agency": {"id": agency, "tier": "commune", "name": "UBND xã Tân Phú"},
            "collector": {"id": "collector-1", "version": "0.1.0"},
            "host": "collector-host",
            "source": {"type": "file", "path": "/var/log/auth.log", "format": "syslog"},
            "received": RECEIVED,
            "position": 0,
            "message": f"Dec 10 06:55:46 LabSZ sshd[24200]: {message}",
        }
    )
    return Normalizer().normalize(raw).event


FAILED_ROOT = "Failed password for root from 183.62.140.253 port 43144 ssh2"


@pytest.mark.parametrize(
    "message",
    [
        FAILED_ROOT,
        "Failed password for invalid user admin from 119.4.203.64 port 2191 ssh2",
        "Failed none for invalid user 0 from 5.188.10.180 port 49811 ssh2",
        "Failed publickey for git from 10.9.8.7 port 3 ssh2: RSA SHA256:q",
        "Failed password for invalid user nguyễn.văn.a from 10.1.2.3 port 22 ssh2",
        "message repeated 5 times: [ Failed password for root from 5.36.59.76 port 42393 ssh2]",
    ],
)
def test_fires_on_a_failed_ssh_login(message: str) -> None:
    assert FailedPasswordCheck().evaluate(_event(message)) is not None


@pytest.mark.parametrize(
    "message",
    [
        "Accepted password for fztu from 119.137.62.142 port 49116 ssh2",
        "Invalid user webmaster from 173.234.31.186",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost=183.62.140.253  user=root",
        "Received disconnect from 183.62.140.253: 11: Bye Bye [preauth]",
        "pam_unix(sshd:auth): check pass; user unknown",
    ],
)
def test_does_not_fire_on_other_events(message: str) -> None:
    assert FailedPasswordCheck().evaluate(_event(message)) is None


def test_detection_describes_the_event() -> None:
    event = _event(FAILED_ROOT)
    detection = FailedPasswordCheck().evaluate(event)

    assert detection is not None
    assert detection.detector == DetectorRef(type="check", id="failed-password", version="1")
    assert detection.rule.title == "SSH authentication failure"
    assert detection.rule.level is Severity.MEDIUM
    assert detection.rule.tags == ["attack.credential_access", "attack.t1110"]
    assert detection.rule.tactics == ["credential_access"]
    assert detection.rule.techniques == ["T1110"]
    assert detection.severity is Severity.MEDIUM
    assert detection.risk_score == Severity.MEDIUM.risk_score == 47
    assert detection.timestamp == event.timestamp
    assert detection.entities.model_dump() == {
        "agency": "so-tttt",
        "tier": Tier.COMMUNE,
        "host": "LabSZ",
        "user": "root",
        "source_ip": "183.62.140.253",
    }
    assert detection.event_ids == ["raw-1"]
    assert detection.events == [event.to_dict()]
    assert detection.id == stable_id(detection.rule.id, "raw-1")
    assert detection.dedup_key == stable_id(detection.rule.id, "so-tttt", "LabSZ", "183.62.140.253")
    assert Detection.from_json(detection.to_json()) == detection


def test_the_same_event_always_makes_the_same_detection() -> None:
    first = FailedPasswordCheck().evaluate(_event(FAILED_ROOT))
    again = FailedPasswordCheck().evaluate(_event(FAILED_ROOT))

    assert first is not None and again is not None
    assert again.to_json() == first.to_json()


def test_rule_id_is_a_fixed_uuid() -> None:
    assert FailedPasswordCheck.rule.id == "0bf5816a-a6b8-4bc5-957a-c74e7ce82d3f"


def test_dedup_key_groups_by_agency_host_and_source_not_by_event() -> None:
    check = FailedPasswordCheck()
    one = check.evaluate(_event(FAILED_ROOT, raw_id="raw-1"))
    two = check.evaluate(_event(FAILED_ROOT.replace("root", "admin"), raw_id="raw-2"))
    elsewhere = check.evaluate(_event(FAILED_ROOT.replace("183.62.140.253", "10.0.0.1")))
    other_agency = check.evaluate(_event(FAILED_ROOT, agency="ubnd-xa-tan-phu"))

    assert one is not None and two is not None
    assert elsewhere is not None and other_agency is not None
    assert one.id != two.id
    assert one.dedup_key == two.dedup_key
    assert elsewhere.dedup_key != one.dedup_key
    assert other_agency.dedup_key != one.dedup_key


def test_detections_do_not_share_the_rule() -> None:
    detection = FailedPasswordCheck().evaluate(_event(FAILED_ROOT))

    assert detection is not None
    detection.rule.tags.append("changed")
    assert "changed" not in FailedPasswordCheck.rule.tags


def test_an_event_without_id_cannot_make_a_detection() -> None:
    event = _event(FAILED_ROOT)
    event.event.id = None

    with pytest.raises(RecordError, match=r"no event\.id"):
        FailedPasswordCheck().evaluate(event)


def test_entities_of_a_bare_event() -> None:
    event = EcsEvent.model_validate({"@timestamp": RECEIVED, "event": {"id": "e1"}})

    assert entities_of(event).model_dump() == {
        "agency": "",
        "tier": None,
        "host": None,
        "user": None,
        "source_ip": None,
    }


def test_a_check_must_implement_evaluate() -> None:
    class Unfinished(Check):  # abstract on purpose
        pass

    with pytest.raises(TypeError, match="evaluate"):
        Unfinished()  # type: ignore[abstract]


def test_a_check_written_as_the_base_says() -> None:
    class RootLoginCheck(Check):
        detector = DetectorRef(type="check", id="root-login", version="1")
        rule = RuleRef(id="r-root", title="Root logged in over SSH", level=Severity.HIGH)

        def evaluate(self, event: EcsEvent) -> Detection | None:
            if event.event.action != "ssh_login" or event.event.outcome != "success":
                return None
            if event.user is None or event.user.name != "root":
                return None
            entities = entities_of(event)
            return self.detection(event, entities, dedup_parts=(entities.agency, entities.host))

    detection = RootLoginCheck().evaluate(
        _event("Accepted publickey for root from 10.0.0.8 port 5 ssh2")
    )

    assert detection is not None
    assert (detection.severity, detection.risk_score) == (Severity.HIGH, 73)
