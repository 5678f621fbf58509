"""The rule set the API manages: every version of every rule, correlation and filter.

Each change is a new :class:`RuleVersion` (``rule_id``, ``version`` 1, 2, ...), never an
overwrite; the latest version of a rule is the rule. :class:`ElasticsearchRuleStore` keeps one
document per version in ``<prefix>-rules`` (strict mapping, :data:`RULES_MAPPING`), named
``<rule id>:<version>`` and written with ``op_type=create``, so two authors saving the same rule
at once cannot both write version n: the second gets :class:`VersionConflictError`. The latest
version carries ``latest: true`` (cleared on its predecessor after the new one is written), which
is what listings search. :class:`InMemoryRuleStore` is the test double.

A store starts empty and is seeded on first use (:meth:`RuleStore.ensure_seeded`) from
``detector.rules_paths`` (:func:`seed_versions`): every rule, correlation and filter file, as
version 1 of each; processing pipelines in those paths are not rules and are skipped (a bundle
takes them from ``rules/pipelines``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from elasticsearch import ConflictError, Elasticsearch, NotFoundError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.sigma.detection import rule_ref_of
from detectors.sigma.loader import RULE_SUFFIXES, is_tests_file
from detectors.sigma.pipelines import PIPELINE_DIR

log = logging.getLogger(__name__)

RuleKind = Literal["rule", "correlation", "filter"]
RULE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_RULE_ID: Final = re.compile(RULE_ID_PATTERN)
ANY_RULE: Final = "*"
"""A filter's target when it applies to every rule of its log source (``rules: any``)."""
_DOCUMENT_SEPARATOR: Final = re.compile(r"^---[ \t]*$", re.MULTILINE)
_LEVELS: Final = frozenset({"informational", "low", "medium", "high", "critical"})
_PAGE: Final = 1000


class VersionConflictError(Exception):
    """Someone else wrote this version of the rule first: read it again and retry."""


class RuleMeta(BaseModel):
    """What a rule's YAML says about it, as listings show and filter it."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    kind: RuleKind
    title: str
    name: str | None = None
    description: str | None = None
    level: str | None = None
    status: str | None = None
    logsource: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    # A correlation's rules, by id or name.
    references: list[str] = Field(default_factory=list)
    # The rules a filter applies to (ANY_RULE: every rule of its log source).
    targets: list[str] = Field(default_factory=list)
    # The agencies (organization.id) a filter is confined to; none: every agency.
    agencies: list[str] = Field(default_factory=list)


class RuleVersion(RuleMeta):
    """One version of a rule: its YAML, whether it runs, who made it, when and why."""

    version: int = Field(ge=1)
    enabled: bool = True
    yaml: str
    author: str
    created: AwareDatetime
    comment: str = ""
    # "api", or "seed:<file>" for the versions seeded from detector.rules_paths.
    origin: str = "api"
    # For an exception made through /exceptions: the body it was made from.
    exception: dict[str, Any] | None = None

    @property
    def names(self) -> set[str]:
        """What a correlation or filter may call this rule: id, name, title."""
        return {value for value in (self.rule_id, self.name, self.title) if value}


@dataclass(frozen=True)
class RuleQuery:
    """Filters for listing the latest versions; all optional; ``text`` searches title,
    description, id and name."""

    text: str | None = None
    level: str | None = None
    tactic: str | None = None
    enabled: bool | None = None
    kind: RuleKind | None = None
    target: str | None = None  # filters that name this rule (or every rule)
    agency: str | None = None  # filters confined to this agency
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class RulePage:
    """A page of latest versions and how many matched."""

    versions: list[RuleVersion]
    total: int


def describe(data: Mapping[str, Any]) -> RuleMeta:
    """The metadata of a rule document (a YAML mapping with an ``id``)."""
    kind: RuleKind = (
        "correlation" if "correlation" in data else "filter" if "filter" in data else "rule"
    )
    rule_id = str(data["id"])
    title = _text(data.get("title")) or rule_id
    tags = [str(tag) for tag in data.get("tags") or [] if isinstance(tag, str | int)]
    level = _text(data.get("level"))
    level = level.lower() if level and level.lower() in _LEVELS else None
    ref = rule_ref_of(rule_id, title, level, tags)
    logsource = data.get("logsource")
    sources = {
        key: str(logsource[key])
        for key in ("product", "category", "service")
        if isinstance(logsource, Mapping) and logsource.get(key)
    }
    correlation, sigma_filter = data.get("correlation"), data.get("filter")
    references = correlation.get("rules") if isinstance(correlation, Mapping) else None
    targets = sigma_filter.get("rules") if isinstance(sigma_filter, Mapping) else None
    return RuleMeta(
        rule_id=rule_id,
        kind=kind,
        title=title,
        name=_text(data.get("name")),
        description=_text(data.get("description")),
        level=level,
        status=_text(data.get("status")),
        logsource=sources,
        tags=tags,
        tactics=ref.tactics,
        techniques=ref.techniques,
        references=_names(references),
        targets=[ANY_RULE] if isinstance(targets, str) else _names(targets),
        agencies=_agencies(sigma_filter) if isinstance(sigma_filter, Mapping) else [],
    )


def _agencies(sigma_filter: Mapping[str, Any]) -> list[str]:
    """The ``organization.id`` values a filter's selections test (exactly, no modifier)."""
    found: list[str] = []
    for name, selection in sigma_filter.items():
        if name in ("rules", "condition") or not isinstance(selection, Mapping):
            continue
        value = selection.get("organization.id")
        found += _names(value) if isinstance(value, str | list) else []
    return sorted(set(found))


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return str(value) if value is not None and str(value).strip() else None


def matches(version: RuleVersion, query: RuleQuery) -> bool:
    """Whether a latest version passes ``query``'s filters (the in-memory search)."""
    text = (query.text or "").casefold()
    searched = (version.title, version.description or "", version.rule_id, version.name or "")
    return (
        (not text or any(text in part.casefold() for part in searched))
        and (query.level is None or version.level == query.level)
        and (query.tactic is None or query.tactic in version.tactics)
        and (query.enabled is None or version.enabled == query.enabled)
        and (query.kind is None or version.kind == query.kind)
        and (query.target is None or bool({query.target, ANY_RULE} & set(version.targets)))
        and (query.agency is None or query.agency in version.agencies)
    )


class RuleStore(ABC):
    """Where rule versions are kept (see the module docstring)."""

    def __init__(self) -> None:
        self._seeded = False
        self._seed_lock = threading.Lock()

    def ensure_seeded(self, seed: Callable[[], Iterable[RuleVersion]]) -> None:
        """Prepare the store and, when it holds nothing yet, fill it with ``seed()``; once."""
        if self._seeded:
            return
        with self._seed_lock:
            if self._seeded:
                return
            self._prepare()
            if self._empty():
                versions = list(seed())
                self._add_all(versions)
                log.info("rule store seeded with %d rules", len(versions))
            self._seeded = True

    @abstractmethod
    def _prepare(self) -> None:
        """Create what the store needs (an index)."""

    @abstractmethod
    def _empty(self) -> bool:
        """Whether the store holds no version at all."""

    @abstractmethod
    def _add_all(self, versions: list[RuleVersion]) -> None:
        """Write first versions in bulk (seeding); one already there is left as it is."""

    @abstractmethod
    def add(self, version: RuleVersion) -> None:
        """Write a new version, the rule's latest; VersionConflictError when that number exists."""

    @abstractmethod
    def get(self, rule_id: str, version: int | None = None) -> RuleVersion | None:
        """The latest version of a rule, or version ``version``; None if there is none."""

    @abstractmethod
    def history(self, rule_id: str, limit: int = 100) -> tuple[list[RuleVersion], int]:
        """A rule's newest ``limit`` versions, newest first, and how many it has."""

    @abstractmethod
    def search(self, query: RuleQuery) -> RulePage:
        """Latest versions passing ``query``, by title."""

    @abstractmethod
    def lookup(self, names: Collection[str]) -> list[RuleVersion]:
        """Latest versions whose id, name or title is one of ``names``."""

    @abstractmethod
    def latest_all(self, *, enabled: bool | None = None) -> Iterator[RuleVersion]:
        """The latest version of every rule (only enabled or disabled ones if told), by id."""

    def filters_for(self, names: Collection[str]) -> list[RuleVersion]:
        """Enabled filters (latest versions) that apply to a rule called any of ``names``."""
        wanted = {*names, ANY_RULE}
        return [
            version
            for version in self.latest_all(enabled=True)
            if version.kind == "filter" and wanted & set(version.targets)
        ]


class InMemoryRuleStore(RuleStore):
    """The test double: versions in a dict."""

    def __init__(self, versions: Iterable[RuleVersion] = ()) -> None:
        super().__init__()
        self._versions: dict[str, list[RuleVersion]] = {}
        self._lock = threading.Lock()
        for version in versions:
            self.add(version)

    def _prepare(self) -> None:
        pass  # nothing to create

    def _empty(self) -> bool:
        return not self._versions

    def _add_all(self, versions: list[RuleVersion]) -> None:
        for version in versions:
            if version.rule_id not in self._versions:
                self.add(version)

    def add(self, version: RuleVersion) -> None:
        with self._lock:
            versions = self._versions.setdefault(version.rule_id, [])
            if any(known.version == version.version for known in versions):
                raise VersionConflictError(f"{version.rule_id} version {version.version} exists")
            versions.append(version)
            versions.sort(key=lambda known: known.version)

    def get(self, rule_id: str, version: int | None = None) -> RuleVersion | None:
        versions = self._versions.get(rule_id) or []
        if version is None:
            return versions[-1] if versions else None
        return next((known for known in versions if known.version == version), None)

    def history(self, rule_id: str, limit: int = 100) -> tuple[list[RuleVersion], int]:
        versions = self._versions.get(rule_id) or []
        return list(reversed(versions))[:limit], len(versions)

    def search(self, query: RuleQuery) -> RulePage:
        found = [version for version in self.latest_all() if matches(version, query)]
        found.sort(key=lambda version: (version.title, version.rule_id))
        return RulePage(found[query.offset : query.offset + query.limit], len(found))

    def lookup(self, names: Collection[str]) -> list[RuleVersion]:
        wanted = set(names)
        return [version for version in self.latest_all() if version.names & wanted]

    def latest_all(self, *, enabled: bool | None = None) -> Iterator[RuleVersion]:
        for rule_id in sorted(self._versions):
            latest = self._versions[rule_id][-1]
            if enabled is None or latest.enabled == enabled:
                yield latest


_KEYWORD: Final = {"type": "keyword", "ignore_above": 1024}
RULES_MAPPING: Final[dict[str, Any]] = {
    "dynamic": "strict",
    "properties": {
        "rule_id": _KEYWORD,
        "version": {"type": "integer"},
        "latest": {"type": "boolean"},
        "kind": _KEYWORD,
        "title": {"type": "text", "fields": {"keyword": _KEYWORD}},
        "name": _KEYWORD,
        "description": {"type": "text"},
        "level": _KEYWORD,
        "status": _KEYWORD,
        "logsource": {
            "properties": {"product": _KEYWORD, "category": _KEYWORD, "service": _KEYWORD}
        },
        "tags": _KEYWORD,
        "tactics": _KEYWORD,
        "techniques": _KEYWORD,
        "references": _KEYWORD,
        "targets": _KEYWORD,
        "agencies": _KEYWORD,
        "enabled": {"type": "boolean"},
        # The rule itself: kept, shown, not searched (up to 256 KiB).
        "yaml": {"type": "text", "index": False},
        "author": _KEYWORD,
        "created": {"type": "date"},
        "comment": {"type": "text"},
        "origin": _KEYWORD,
        "exception": {"type": "object", "enabled": False},
    },
}
"""The strict mapping of ``<prefix>-rules``: one document per version."""


class ElasticsearchRuleStore(RuleStore):
    """Rule versions in the index ``<prefix>-rules`` (see the module docstring)."""

    def __init__(self, client: Elasticsearch, prefix: str, replicas: int = 0) -> None:
        super().__init__()
        self.client = client
        self.index = f"{prefix}-rules"
        self.replicas = replicas

    def _prepare(self) -> None:
        if self.client.indices.exists(index=self.index):
            return
        try:
            self.client.indices.create(
                index=self.index,
                mappings=RULES_MAPPING,
                settings={"number_of_shards": 1, "number_of_replicas": self.replicas},
            )
        except Exception:  # created meanwhile by another API process
            if not self.client.indices.exists(index=self.index):
                raise

    def _empty(self) -> bool:
        return int(self.client.count(index=self.index)["count"]) == 0

    def _add_all(self, versions: list[RuleVersion]) -> None:
        for start in range(0, len(versions), 500):
            operations: list[dict[str, Any]] = []
            for version in versions[start : start + 500]:
                operations += [
                    {"create": {"_index": self.index, "_id": _doc_id(version)}},
                    _document(version, latest=True),
                ]
            answer = self.client.bulk(operations=operations, refresh="wait_for")
            for item in answer["items"]:
                outcome = item["create"]
                # 409: another API process seeded that rule first, which is as good.
                if outcome.get("status") not in (200, 201, 409):
                    raise RuntimeError(f"seeding {outcome.get('_id')}: {outcome.get('error')}")

    def add(self, version: RuleVersion) -> None:
        try:
            self.client.create(
                index=self.index,
                id=_doc_id(version),
                document=_document(version, latest=True),
                refresh="wait_for",
            )
        except ConflictError as error:
            raise VersionConflictError(
                f"{version.rule_id} version {version.version} exists"
            ) from error
        if version.version > 1:
            # A gap in the numbers is harmless: the highest version wins anyway.
            with contextlib.suppress(NotFoundError):
                self.client.update(
                    index=self.index,
                    id=f"{version.rule_id}:{version.version - 1}",
                    doc={"latest": False},
                    refresh="wait_for",
                )

    def get(self, rule_id: str, version: int | None = None) -> RuleVersion | None:
        if version is not None:
            try:
                found = self.client.get(index=self.index, id=f"{rule_id}:{version}")
            except NotFoundError:
                return None
            return _version(found["_source"])
        versions, _ = self.history(rule_id, 1)
        return versions[0] if versions else None

    def history(self, rule_id: str, limit: int = 100) -> tuple[list[RuleVersion], int]:
        answer = self._search(
            query={"term": {"rule_id": rule_id}},
            sort=[{"version": "desc"}],
            size=limit,
            track_total_hits=True,
        )
        hits = answer["hits"]["hits"]
        return [_version(hit["_source"]) for hit in hits], int(answer["hits"]["total"]["value"])

    def search(self, query: RuleQuery) -> RulePage:
        filters: list[dict[str, Any]] = [{"term": {"latest": True}}]
        for field, value in (
            ("level", query.level),
            ("tactics", query.tactic),
            ("enabled", query.enabled),
            ("kind", query.kind),
            ("agencies", query.agency),
        ):
            if value is not None:
                filters.append({"term": {field: value}})
        if query.target is not None:
            filters.append({"terms": {"targets": [query.target, ANY_RULE]}})
        must: list[dict[str, Any]] = []
        if query.text:
            words = {"query": query.text, "fields": ["title^3", "description"]}
            should = [
                {"multi_match": words},
                {"term": {"rule_id": query.text}},
                {"term": {"name": query.text}},
            ]
            must.append({"bool": {"should": should}})
        answer = self._search(
            query={"bool": {"filter": filters, "must": must}},
            sort=[{"title.keyword": "asc"}, {"rule_id": "asc"}],
            from_=query.offset,
            size=query.limit,
            track_total_hits=True,
        )
        versions = _newest_per_rule(_version(hit["_source"]) for hit in answer["hits"]["hits"])
        return RulePage(versions, int(answer["hits"]["total"]["value"]))

    def lookup(self, names: Collection[str]) -> list[RuleVersion]:
        if not names:
            return []
        wanted = list(names)
        query = {
            "bool": {
                "filter": [{"term": {"latest": True}}],
                "should": [
                    {"terms": {"rule_id": wanted}},
                    {"terms": {"name": wanted}},
                    {"terms": {"title.keyword": wanted}},
                ],
                "minimum_should_match": 1,
            }
        }
        hits = self._search(query=query, size=_PAGE)["hits"]["hits"]
        return _newest_per_rule(_version(hit["_source"]) for hit in hits)

    def latest_all(self, *, enabled: bool | None = None) -> Iterator[RuleVersion]:
        filters: list[dict[str, Any]] = [{"term": {"latest": True}}]
        if enabled is not None:
            filters.append({"term": {"enabled": enabled}})
        after: list[Any] | None = None
        previous: RuleVersion | None = None
        while True:
            page = self._search(
                query={"bool": {"filter": filters}},
                sort=[{"rule_id": "asc"}, {"version": "desc"}],
                size=_PAGE,
                **({"search_after": after} if after else {}),
            )["hits"]["hits"]
            for hit in page:
                version = _version(hit["_source"])
                # Two "latest" of one rule only if a write failed between its two steps.
                if previous is None or version.rule_id != previous.rule_id:
                    yield version
                previous = version
            if len(page) < _PAGE:
                return
            after = page[-1]["sort"]

    def filters_for(self, names: Collection[str]) -> list[RuleVersion]:
        query = {
            "bool": {
                "filter": [
                    {"term": {"latest": True}},
                    {"term": {"enabled": True}},
                    {"term": {"kind": "filter"}},
                    {"terms": {"targets": [*names, ANY_RULE]}},
                ]
            }
        }
        hits = self._search(query=query, size=_PAGE, sort=[{"rule_id": "asc"}])["hits"]["hits"]
        return _newest_per_rule(_version(hit["_source"]) for hit in hits)

    def _search(self, **request: Any) -> Any:
        try:
            return self.client.search(index=self.index, **request)
        except NotFoundError:
            return {"hits": {"hits": [], "total": {"value": 0}}}


def _doc_id(version: RuleVersion) -> str:
    return f"{version.rule_id}:{version.version}"


def _document(version: RuleVersion, *, latest: bool) -> dict[str, Any]:
    return {**version.model_dump(mode="json", exclude_none=True), "latest": latest}


def _version(source: Mapping[str, Any]) -> RuleVersion:
    return RuleVersion.model_validate({k: v for k, v in source.items() if k != "latest"})


def _newest_per_rule(versions: Iterable[RuleVersion]) -> list[RuleVersion]:
    """One version per rule, the highest, in the order first seen."""
    kept: dict[str, RuleVersion] = {}
    for version in versions:
        known = kept.get(version.rule_id)
        if known is None or version.version > known.version:
            kept[version.rule_id] = version
    return list(kept.values())


def seed_versions(paths: Iterable[Path], now: datetime) -> list[RuleVersion]:
    """Version 1 of every rule, correlation and filter under ``paths`` (files or folders);
    tests files and processing pipelines are not rules and are skipped."""
    pipelines = PIPELINE_DIR.resolve()
    found: dict[str, RuleVersion] = {}
    for path in map(Path, paths):
        if not path.exists():
            log.warning("rule seed: %s does not exist", path)
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())
        else:
            files = [path]
        for file in files:
            if is_tests_file(file) or file.resolve().is_relative_to(pipelines):
                continue
            for text in split_documents(file.read_text(encoding="utf-8")):
                version = _seed_version(file, text, now)
                if version is not None and version.rule_id not in found:
                    found[version.rule_id] = version
    return list(found.values())


def split_documents(text: str) -> list[str]:
    """The YAML documents of a file's text (``---`` lines apart), the empty ones left out."""
    parts = _DOCUMENT_SEPARATOR.split(text)
    return [part.lstrip("\n") for part in parts if part.strip()]


def _seed_version(file: Path, text: str, now: datetime) -> RuleVersion | None:
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as error:
        log.warning("rule seed: %s is not valid YAML, skipped: %s", file, error)
        return None
    if not isinstance(data, dict) or not ({"detection", "correlation", "filter"} & set(data)):
        return None  # a pipeline, or not a rule at all
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        log.warning("rule seed: %s has no usable id, skipped", file)
        return None
    return RuleVersion(
        **describe(data).model_dump(),
        version=1,
        yaml=text,
        author="socpipe",
        created=now,
        comment=f"seeded from {file}",
        origin=f"seed:{file}",
    )


__all__ = [
    "ANY_RULE",
    "RULES_MAPPING",
    "RULE_ID_PATTERN",
    "ElasticsearchRuleStore",
    "InMemoryRuleStore",
    "RuleKind",
    "RuleMeta",
    "RulePage",
    "RuleQuery",
    "RuleStore",
    "RuleVersion",
    "VersionConflictError",
    "describe",
    "matches",
    "seed_versions",
    "split_documents",
]
