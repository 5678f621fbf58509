"""The engine over real data: the SigmaHQ regression cases end to end, and the literal index
giving the same answers as evaluating every rule."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from detectors.normalize import Normalizer
from detectors.sigma.compiler import SigmaCompileError, compile_rule
from detectors.sigma.engine import SigmaEngine
from detectors.sigma.hunt import EngineReport, build_engine
from detectors.sigma.loader import load_rules
from socpipe.records import RawRecord, SourceRef
from socpipe.samples import otrf_lines

CORPUS = (
    "rules",
    "rules-emerging-threats",
    "rules-threat-hunting",
    "rules-placeholder",
    "rules-compliance",
)


@pytest.fixture(scope="module")
def corpus_engine(shared_data: Path) -> tuple[SigmaEngine, EngineReport]:
    return build_engine([shared_data / "sigma" / name for name in CORPUS])


def _objects(text: str) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        value, index = decoder.raw_decode(text, index)
        yield from (value if isinstance(value, list) else [value])


def _event(data: dict[str, Any], number: int, fmt: str = "winlog.evtx") -> dict[str, Any]:
    source = SourceRef(type="evtx", path="regression", format=fmt)
    raw = RawRecord.model_validate(
        {
            "id": f"r{number}",
            "agency": {"id": "so-tttt", "tier": "province"},
            "collector": {"id": "c", "version": "0"},
            "host": "h",
            "source": source,
            "received": datetime(2026, 11, 27, tzinfo=UTC),
            "position": number,
            "data": data,
        }
    )
    return Normalizer().normalize(raw).document


def test_every_regression_case_matches_its_rule(
    shared_data: Path, corpus_engine: tuple[SigmaEngine, EngineReport]
) -> None:
    engine, report = corpus_engine
    cases = passed = 0
    failures = []
    for info in sorted((shared_data / "sigma" / "regression_data").rglob("info.yml")):
        meta = yaml.safe_load(info.read_text(encoding="utf-8"))
        rule_id = meta["rule_metadata"][0]["id"]
        tests = [t for t in meta.get("regression_tests_info", []) if t.get("type") == "evtx"]
        data_files = list(info.parent.glob("*.json"))
        if not tests or not data_files:
            continue
        cases += 1
        wanted = tests[0].get("match_count") or 1
        events = list(_objects(data_files[0].read_text(encoding="utf-8", errors="replace")))
        hits = sum(
            any(rule.id == rule_id for rule in engine.match(_event(event, n)))
            for n, event in enumerate(events)
        )
        if hits >= wanted:
            passed += 1
        else:
            failures.append(f"{info.parent.name}: {hits} of {wanted}")
    print(
        f"\nregression: {passed} of {cases} cases; corpus {report.compiled} compiled, "
        f"{report.failed} not ({dict(report.reasons)})"
    )
    assert cases == 202
    assert failures == []


def test_the_literal_index_changes_no_answer(
    shared_data: Path, corpus_engine: tuple[SigmaEngine, EngineReport]
) -> None:
    engine, _ = corpus_engine
    lines = otrf_lines(limit=3000, root=shared_data / "otrf")
    matched = 0
    for number, line in enumerate(lines):
        event = _event(json.loads(line), number, fmt="winlog.json")
        indexed = [rule.id for rule in engine.match(event)]
        assert indexed == [rule.id for rule in engine.match_naive(event)]
        matched += bool(indexed)
    assert matched > 0


def test_only_unfilled_placeholders_fail_to_compile(
    corpus_engine: tuple[SigmaEngine, EngineReport],
) -> None:
    _, report = corpus_engine
    assert report.problems == 0
    assert report.compiled > 3200
    assert set(report.reasons) <= {"unfilled placeholder"}


def test_every_corpus_rule_loads_and_all_but_unfilled_placeholders_compile(
    shared_data: Path,
) -> None:
    """Rules of log sources socpipe has no events for (cloud, macOS...) are kept out of the
    engine, but they load and compile too: only placeholders without values stop a rule."""
    result = load_rules([shared_data / "sigma" / name for name in CORPUS])
    assert result.errors == []
    assert len(result.loaded) + len(result.unsupported) == result.files == 3780
    reasons: Counter[str] = Counter()
    for rule in [*(loaded.rule for loaded in result.loaded), *result.unsupported]:
        try:
            compile_rule(rule)
        except SigmaCompileError as error:
            reasons[str(error.reason)] += 1
    print(f"\n3780 files: {len(result.loaded)} routed, {len(result.unsupported)} without events; "
          f"not compiled: {dict(reasons)}")  # fmt: skip
    assert set(reasons) == {"unfilled placeholder"}
