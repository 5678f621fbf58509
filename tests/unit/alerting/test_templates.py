"""Alert documents: the ECS view added on write and left out on read; every field mapped."""

from __future__ import annotations

from alerting.grouping import Grouping, fold
from alerting.templates import ALERT_PROPERTIES, ECS_VIEW, alert_document, alert_from_document
from socpipe.records import Alert
from tests.support.factories import make_detection


def _alert() -> Alert:
    alert = fold(None, make_detection(1), grouping=Grouping("k", 3600), source="d:0", offset=1)
    assert alert is not None
    return alert


def test_an_alert_document_has_the_ecs_view_and_reads_back_as_the_alert() -> None:
    alert = _alert()
    document = alert_document(alert)
    assert document["event"] == {"kind": "alert", "severity": 3, "risk_score": 47.0}
    assert document["threat"]["technique"] == {"id": ["T1110"]}
    assert document["organization"] == {"id": "so-tttt"}
    assert document["source"] == {"ip": "173.234.31.186"}
    assert document["@timestamp"] == document["last_seen"]
    assert set(document) - set(alert.to_dict()) <= ECS_VIEW
    assert alert_from_document(document) == alert


def test_every_field_of_an_alert_is_mapped() -> None:
    # The alert mapping is strict: a field the template lacks would be refused by Elasticsearch.
    fields = {info.alias or name for name, info in Alert.model_fields.items()}
    assert fields <= set(ALERT_PROPERTIES)
    assert set(ALERT_PROPERTIES) >= ECS_VIEW
