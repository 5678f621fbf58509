"""Index templates with explicit mappings: what analysts search is typed, nothing guessed.

Three families (``alerting.indices`` names, creates and ages them):

- **alerts** (:data:`ALERT_PROPERTIES`): socpipe's alert documents, plus the ECS fields an ECS
  tool searches alerts by (:func:`alert_document`: ``@timestamp``, ``event.kind: alert``,
  ``event.severity``, ``threat.*`` from the rule's ATT&CK tags, ``organization.id``,
  ``host.name``, ``user.name``, ``source.ip``, ``labels.tier``); strict: an unknown field is an
  error, not a new mapping.
- **events** (:data:`EVENT_PROPERTIES`): the ECS events of ``soc.events`` for hunting. The ECS
  fields socpipe's parsers write are mapped with ECS's types (``ip``, ``long``, ``date``,
  ``keyword``; ``message`` as text); vendor fields a parser keeps (``winlog.event_data``, the
  portal's own fields) are ``flattened``, so any key is searchable without growing the mapping;
  other strings are keywords by a dynamic template. A value of the wrong type (text in an ``ip``
  field) makes Elasticsearch reject the document: the indexer dead-letters it with the reason.
- **audit** (:data:`AUDIT_PROPERTIES`): who did what through the API, ECS-shaped.
"""

from __future__ import annotations

from typing import Any, Final

from socpipe.records import Alert

_KEYWORD: Final = {"type": "keyword", "ignore_above": 1024}
_IP: Final = {"type": "ip"}
_LONG: Final = {"type": "long"}
_DATE: Final = {"type": "date"}
_FLAT: Final = {"type": "flattened", "ignore_above": 1024}


def _text_and_keyword() -> dict[str, Any]:
    return {"type": "text", "fields": {"keyword": _KEYWORD}}


def _keywords(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names, _KEYWORD)


def _obj(**properties: Any) -> dict[str, Any]:
    return {"properties": properties}


# --- alerts -------------------------------------------------------------------------------------

ALERT_PROPERTIES: dict[str, Any] = {
    "v": {"type": "short"},
    "id": _KEYWORD,
    "dedup_key": _KEYWORD,
    "status": _KEYWORD,
    "assignee": _KEYWORD,
    "verdict": _KEYWORD,
    "count": _LONG,
    "first_seen": _DATE,
    "last_seen": _DATE,
    "window_start": _DATE,
    "detector": _obj(type=_KEYWORD, id=_KEYWORD, version=_KEYWORD),
    "rule": _obj(
        id=_KEYWORD,
        title=_text_and_keyword(),
        level=_KEYWORD,
        tags=_KEYWORD,
        tactics=_KEYWORD,
        techniques=_KEYWORD,
    ),
    "severity": _KEYWORD,
    "risk_score": {"type": "integer"},
    "entities": _obj(agency=_KEYWORD, tier=_KEYWORD, host=_KEYWORD, user=_KEYWORD, source_ip=_IP),
    "detection_ids": _KEYWORD,
    # Copies of the triggering events are shown, not searched: stored, not indexed.
    "events": {"type": "object", "enabled": False},
    "anomaly": _obj(
        score={"type": "float"},
        threshold={"type": "float"},
        features={"type": "object", "enabled": False},
    ),
    "notes": _obj(at=_DATE, by=_KEYWORD, text={"type": "text"}),
    "history": _obj(
        at=_DATE, by=_KEYWORD, action=_KEYWORD, detail={"type": "object", "enabled": False}
    ),
    "source_offset": {"type": "object", "enabled": False},
    # The ECS view (alert_document).
    "@timestamp": _DATE,
    "event": _obj(kind=_KEYWORD, severity=_LONG, risk_score={"type": "float"}),
    "threat": _obj(
        framework=_KEYWORD,
        tactic=_obj(name=_KEYWORD),
        technique=_obj(id=_KEYWORD),
    ),
    "organization": _obj(id=_KEYWORD),
    "host": _obj(name=_KEYWORD),
    "user": _obj(name=_KEYWORD),
    "source": _obj(ip=_IP),
    "labels": _obj(tier=_KEYWORD),
}
_SEVERITY_NUMBER: Final = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
ECS_VIEW: Final = frozenset(
    {"@timestamp", "event", "threat", "organization", "host", "user", "source", "labels"}
)


def alert_document(alert: Alert) -> dict[str, Any]:
    """The document an alert is stored as: its fields and the ECS view of them."""
    document = alert.to_dict()
    entities = alert.entities
    document["@timestamp"] = document["last_seen"]
    document["event"] = {
        "kind": "alert",
        "severity": _SEVERITY_NUMBER[alert.severity.value],
        "risk_score": float(alert.risk_score),
    }
    if alert.rule.tactics or alert.rule.techniques:
        threat: dict[str, Any] = {"framework": "MITRE ATT&CK"}
        if alert.rule.tactics:
            threat["tactic"] = {"name": list(alert.rule.tactics)}
        if alert.rule.techniques:
            threat["technique"] = {"id": list(alert.rule.techniques)}
        document["threat"] = threat
    document["organization"] = {"id": entities.agency}
    for field, value in (("host", entities.host), ("user", entities.user)):
        if value is not None:
            document[field] = {"name": value}
    if entities.source_ip is not None:
        document["source"] = {"ip": entities.source_ip}
    if entities.tier is not None:
        document["labels"] = {"tier": entities.tier.value}
    return document


def alert_from_document(source: dict[str, Any]) -> Alert:
    """An alert from its stored document (the ECS view left out)."""
    return Alert.model_validate({k: v for k, v in source.items() if k not in ECS_VIEW})


def alert_template(alias: str, replicas: int = 0) -> dict[str, Any]:
    """The index template for ``<alias>-*`` alert indices, all joined to ``alias``."""
    # Alerts are few and analysts wait for them: searchable twice a second.
    mappings = {"dynamic": "strict", "properties": ALERT_PROPERTIES}
    return _template(alias, replicas, mappings, refresh="500ms")


# --- events -------------------------------------------------------------------------------------


def _endpoint() -> dict[str, Any]:
    """client, server, source and destination (ECS)."""
    return _obj(
        ip=_IP,
        port=_LONG,
        address=_KEYWORD,
        domain=_KEYWORD,
        mac=_KEYWORD,
        bytes=_LONG,
        packets=_LONG,
        nat=_obj(ip=_IP, port=_LONG),
        user=_obj(**_keywords("name", "id", "domain")),
    )


def _process() -> dict[str, Any]:
    own = {
        **_keywords("name", "executable", "command_line", "args", "entity_id", "working_directory"),
        "pid": _LONG,
        "thread": _obj(id=_LONG),
    }
    return _obj(**own, parent=_obj(**own), user=_obj(**_keywords("name", "id", "domain")))


_USER_FIELDS: Final = _keywords("name", "id", "domain", "email", "full_name", "roles", "hash")

EVENT_PROPERTIES: dict[str, Any] = {
    "@timestamp": _DATE,
    "message": {"type": "text"},
    "tags": _KEYWORD,
    "labels": {"type": "object", "dynamic": True},
    "ecs": _obj(version=_KEYWORD),
    "agent": _obj(**_keywords("id", "name", "type", "version", "ephemeral_id")),
    "client": _endpoint(),
    "server": _endpoint(),
    "source": _endpoint(),
    "destination": _endpoint(),
    "dns": _obj(
        question=_obj(**_keywords("name", "type", "class", "registered_domain")),
        answers=_obj(**_keywords("name", "type", "class", "data"), ttl=_LONG),
        **_keywords("response_code", "type", "id", "op_code", "header_flags"),
    ),
    "error": _obj(message={"type": "text"}, **_keywords("type", "code", "id", "stack_trace")),
    "event": _obj(
        **_keywords(
            "action",
            "category",
            "code",
            "dataset",
            "id",
            "kind",
            "module",
            "outcome",
            "provider",
            "reason",
            "type",
            "timezone",
            "hash",
            "agent_id_status",
        ),
        created=_DATE,
        ingested=_DATE,
        start=_DATE,
        end=_DATE,
        duration=_LONG,
        sequence=_LONG,
        severity=_LONG,
        risk_score={"type": "float"},
        # ECS: the original is kept, not searched.
        original={"type": "keyword", "index": False, "doc_values": False},
    ),
    "file": _obj(
        **_keywords("path", "name", "extension", "directory", "target_path", "type"), size=_LONG
    ),
    "group": _obj(**_keywords("name", "id", "domain")),
    "host": _obj(
        **_keywords("name", "hostname", "id", "domain", "mac", "architecture", "type"),
        ip=_IP,
        os=_obj(**_keywords("name", "family", "version", "platform", "kernel", "type")),
    ),
    "http": _obj(
        version=_KEYWORD,
        request=_obj(**_keywords("method", "referrer", "mime_type", "id"), body=_obj(bytes=_LONG)),
        response=_obj(status_code=_LONG, mime_type=_KEYWORD, bytes=_LONG, body=_obj(bytes=_LONG)),
    ),
    "log": _obj(
        level=_KEYWORD,
        logger=_KEYWORD,
        file=_obj(path=_KEYWORD),
        offset=_LONG,
        syslog=_obj(
            priority=_LONG,
            facility=_obj(code=_LONG, name=_KEYWORD),
            severity=_obj(code=_LONG, name=_KEYWORD),
            **_keywords("hostname", "appname", "procid", "msgid", "version"),
        ),
    ),
    "network": _obj(
        **_keywords(
            "protocol",
            "transport",
            "type",
            "direction",
            "application",
            "community_id",
            "iana_number",
        ),
        bytes=_LONG,
        packets=_LONG,
    ),
    "observer": _obj(
        **_keywords("name", "hostname", "product", "vendor", "type", "serial_number", "version"),
        ip=_IP,
        ingress=_obj(interface=_obj(name=_KEYWORD)),
        egress=_obj(interface=_obj(name=_KEYWORD)),
    ),
    "organization": _obj(**_keywords("id", "name")),
    "process": _process(),
    "related": _obj(ip=_IP, **_keywords("user", "hosts", "hash")),
    "rule": _obj(**_keywords("id", "name", "ruleset", "category", "uuid", "version")),
    "service": _obj(**_keywords("name", "type", "environment", "version", "id")),
    "tls": _obj(
        **_keywords("version", "version_protocol", "cipher"), established={"type": "boolean"}
    ),
    "trace": _obj(id=_KEYWORD),
    "transaction": _obj(id=_KEYWORD),
    "url": _obj(
        **_keywords(
            "original",
            "full",
            "path",
            "query",
            "domain",
            "scheme",
            "extension",
            "fragment",
            "username",
        ),
        port=_LONG,
    ),
    "user": _obj(
        **_USER_FIELDS,
        target=_obj(**_USER_FIELDS),
        effective=_obj(**_USER_FIELDS),
        changes=_obj(**_USER_FIELDS),
        group=_obj(**_keywords("name", "id", "domain")),
    ),
    "user_agent": _obj(
        original=_KEYWORD,
        **_keywords("name", "version"),
        os=_obj(**_keywords("name", "version", "full")),
        device=_obj(name=_KEYWORD),
    ),
    "winlog": _obj(
        **_keywords(
            "channel",
            "provider_name",
            "provider_guid",
            "computer_name",
            "record_id",
            "event_id",
            "task",
            "opcode",
            "keywords",
            "version",
            "activity_id",
            "api",
        ),
        logon=_obj(**_keywords("type", "id"), failure=_obj(reason=_KEYWORD)),
        process=_obj(pid=_LONG, thread=_obj(id=_LONG)),
        user=_obj(**_keywords("identifier", "name", "domain", "type")),
        # Each event id has its own keys: flattened keeps them searchable without a mapping each.
        event_data=_FLAT,
        user_data=_FLAT,
    ),
    "portal": _FLAT,
}

# Strings nobody mapped are keywords (ECS's default), numbers longs or doubles as they come.
_DYNAMIC_TEMPLATES: Final = [
    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": _KEYWORD}},
]


def event_template(alias: str, replicas: int = 0) -> dict[str, Any]:
    """The index template for ``<alias>-*`` event indices."""
    mappings = {
        "dynamic": True,
        "dynamic_templates": _DYNAMIC_TEMPLATES,
        "properties": EVENT_PROPERTIES,
    }
    return _template(alias, replicas, mappings, refresh="5s", fields_limit=4000)


# --- audit --------------------------------------------------------------------------------------

AUDIT_PROPERTIES: dict[str, Any] = {
    "@timestamp": _DATE,
    "event": _obj(
        **_keywords("id", "kind", "category", "type", "action", "outcome", "reason"),
        duration=_LONG,
    ),
    "user": _obj(**_keywords("name", "id", "roles"), agency=_KEYWORD),
    "source": _obj(ip=_IP, port=_LONG, address=_KEYWORD),
    "user_agent": _obj(original=_KEYWORD),
    "http": _obj(request=_obj(**_keywords("method", "id")), response=_obj(status_code=_LONG)),
    "url": _obj(path=_KEYWORD, query=_KEYWORD),
    "target": _obj(**_keywords("type", "id")),
    "message": {"type": "text"},
    # What changed: shown, not searched.
    "detail": {"type": "object", "enabled": False},
}


def audit_template(alias: str, replicas: int = 0) -> dict[str, Any]:
    """The index template for ``<alias>-*`` audit indices; strict like alerts."""
    return _template(alias, replicas, {"dynamic": "strict", "properties": AUDIT_PROPERTIES})


def _template(
    alias: str,
    replicas: int,
    mappings: dict[str, Any],
    *,
    refresh: str = "1s",
    fields_limit: int = 1000,
) -> dict[str, Any]:
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 200,
        "template": {
            "settings": {
                "number_of_shards": 1,
                "number_of_replicas": replicas,
                "refresh_interval": refresh,
                "mapping.total_fields.limit": fields_limit,
            },
            "aliases": {alias: {}},
            "mappings": mappings,
        },
    }
