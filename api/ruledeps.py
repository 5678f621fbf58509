"""Dependencies of ``/rules`` and ``/exceptions``: the rule store, the events backtests read,
the publisher, the normalizer rule tests parse with, as ``Annotated`` aliases.

Each is taken from the app's state when a test put a double there (``app.state.rule_store``,
``rule_events``, ``rule_publisher``), else made on first use and kept there: on Elasticsearch and
Kafka when the app's alert store is Elasticsearch's, else (an app built on the in-memory doubles,
in tests) the in-memory doubles, so that no test reaches a real service by accident. The store
is seeded from ``detector.rules_paths`` on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar

from elasticsearch import Elasticsearch
from fastapi import Depends, Request

from alerting.store import ElasticsearchAlertStore
from api.backtest import ElasticsearchEventSource, EventSource, InMemoryEventSource
from api.rulecheck import InMemoryRulePublisher, KafkaRulePublisher, RulePublisher
from api.rulestore import ElasticsearchRuleStore, InMemoryRuleStore, RuleStore, seed_versions
from detectors.normalize import Normalizer
from detectors.worker import build_normalizer
from socpipe.elastic import make_elasticsearch
from socpipe.records import utcnow
from socpipe.settings import Settings

_T = TypeVar("_T")
# Made once per app; reentrant, since the store and the event source make the client first.
_MAKING: Final = threading.RLock()


def _kept(request: Request, name: str, make: Callable[[Settings], _T]) -> _T:
    state = request.app.state
    value: Any = getattr(state, name, None)
    if value is None:
        with _MAKING:
            value = getattr(state, name, None)
            if value is None:
                value = make(state.settings)
                setattr(state, name, value)
    return value  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def _real(request: Request) -> bool:
    """Whether the app runs on the real services (its alert store is Elasticsearch's)."""
    return isinstance(request.app.state.store, ElasticsearchAlertStore)


def _client(request: Request) -> Elasticsearch:
    return _kept(request, "rules_elasticsearch", lambda s: make_elasticsearch(s.elasticsearch))


def get_rule_store(request: Request) -> RuleStore:
    """The rule store, seeded from ``detector.rules_paths`` the first time."""

    def make(settings: Settings) -> RuleStore:
        if not _real(request):
            return InMemoryRuleStore()
        es = settings.elasticsearch
        return ElasticsearchRuleStore(_client(request), es.index_prefix, es.index_replicas)

    store = _kept(request, "rule_store", make)
    paths = get_settings(request).detector.rules_paths
    store.ensure_seeded(lambda: seed_versions(paths, utcnow()))
    return store


def get_rule_events(request: Request) -> EventSource:
    """The indexed events backtests read."""

    def make(settings: Settings) -> EventSource:
        if not _real(request):
            return InMemoryEventSource()
        return ElasticsearchEventSource(_client(request), settings.elasticsearch.index_prefix)

    return _kept(request, "rule_events", make)


def get_rule_publisher(request: Request) -> RulePublisher:
    """What puts a rule set in force (soc.rules)."""

    def make(settings: Settings) -> RulePublisher:
        if not _real(request):
            return InMemoryRulePublisher(settings.detector.placeholders)
        return KafkaRulePublisher(settings)

    return _kept(request, "rule_publisher", make)


def get_rule_normalizer(request: Request) -> Normalizer:
    """The detectors' normalizer (their formats, time zone, agencies), for rule tests."""
    return _kept(request, "rule_normalizer", lambda s: build_normalizer(s.detector))


SettingsDep = Annotated[Settings, Depends(get_settings)]
RuleStoreDep = Annotated[RuleStore, Depends(get_rule_store)]
EventsDep = Annotated[EventSource, Depends(get_rule_events)]
PublisherDep = Annotated[RulePublisher, Depends(get_rule_publisher)]
NormalizerDep = Annotated[Normalizer, Depends(get_rule_normalizer)]

__all__ = [
    "EventsDep",
    "NormalizerDep",
    "PublisherDep",
    "RuleStoreDep",
    "SettingsDep",
    "get_rule_events",
    "get_rule_normalizer",
    "get_rule_publisher",
    "get_rule_store",
    "get_settings",
]
