"""The compiler on real SigmaHQ rules: metadata, required literals, robustness, the corpus."""

from __future__ import annotations

import collections
import json
import random
import time
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaLogSource, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from detectors.sigma import (
    KEYWORDS,
    CompiledRule,
    CompileReport,
    FailureReason,
    LiteralGroup,
    LogSource,
    SigmaCompileError,
    compile_rule,
    compile_rules,
    field_texts,
    keyword_texts,
)

SIGMA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sigma"
PROCESS_CREATION = SIGMA / "rules" / "windows" / "process_creation"

# The only reasons a corpus rule may fail to compile: its values name placeholders that only a
# deployment's pipeline can fill (the rules-placeholder folder and a few emerging-threat rules).
ALLOWED_FAILURES = {FailureReason.UNFILLED_PLACEHOLDER}


def need_corpus() -> None:
    if not SIGMA.is_dir():
        pytest.skip(f"Sigma corpus not found at {SIGMA}")


def load(paths: Iterable[str | Path]) -> list[SigmaRule]:
    collection = SigmaCollection.load_ruleset(list(paths), collect_errors=True)
    return [rule for rule in collection.rules if isinstance(rule, SigmaRule)]


def real_rule(name: str) -> CompiledRule:
    need_corpus()
    (path,) = SIGMA.glob(f"rules*/**/{name}")
    (rule,) = load([path])
    return compile_rule(rule)


def literals(rule: CompiledRule) -> set[frozenset[tuple[str | None, str]]]:
    """The required literals as a set of groups of (field, literal) pairs, for comparison."""
    return {
        frozenset((name, literal) for name, values in group.alternatives for literal in values)
        for group in rule.required_literals
    }


# --- metadata ----------------------------------------------------------------------------------


def test_metadata_of_a_real_rule() -> None:
    rule = real_rule("proc_creation_win_certutil_download.yml")
    assert rule.id == "19b08b1c-861d-4e75-a1ef-ea0c1baf202b"
    assert rule.title == "Suspicious Download Via Certutil.EXE"
    assert rule.level == "medium"
    assert "attack.t1027" in rule.tags
    assert rule.logsource == LogSource(product="windows", category="process_creation")
    assert rule.path is not None
    assert rule.path.name == "proc_creation_win_certutil_download.yml"
    assert rule.matches(
        {
            "Image": "C:\\Windows\\System32\\certutil.exe",
            "CommandLine": "certutil.exe -urlcache -split -f http://10.0.0.1/a.exe a.exe",
        }
    )
    assert not rule.matches({"Image": "C:\\Windows\\System32\\certutil.exe"})


def test_the_reported_logsource_can_be_the_one_before_the_pipeline() -> None:
    need_corpus()
    (path,) = SIGMA.glob("rules/**/proc_creation_win_certutil_download.yml")
    (rule,) = load([path])
    rule.logsource = SigmaLogSource(product="windows", category="process_creation", service="x")
    original = SigmaLogSource(product="windows", category="process_creation")
    assert compile_rule(rule).logsource.service == "x"
    assert compile_rule(rule, logsource=original).logsource == LogSource(
        product="windows", category="process_creation"
    )


# --- required literals -------------------------------------------------------------------------


def test_literals_of_an_and_of_selections() -> None:
    rule = real_rule("proc_creation_win_certutil_download.yml")
    assert literals(rule) == {
        frozenset({("Image", "\\certutil.exe"), ("OriginalFileName", "certutil.exe")}),
        frozenset(
            {("CommandLine", "urlcache "), ("CommandLine", "verifyctl "), ("CommandLine", "url ")}
        ),
        frozenset({("CommandLine", "http")}),
    }


def test_literals_of_one_of_selections_are_one_group() -> None:
    rule = real_rule("proc_creation_win_hktl_mimikatz_command_line.yml")
    (group,) = rule.required_literals
    assert group.alternatives[0][0] == "CommandLine"
    assert len(group.alternatives) == 1
    assert {"dumpcreds", "mimikatz", "::printnightmare", "sekurlsa::", "lsadump::"} <= (
        group.literals
    )
    assert len(group.literals) == 23


def test_literals_ignore_not() -> None:
    assert literals(real_rule("proc_creation_win_renamed_whoami.yml")) == {
        frozenset({("OriginalFileName", "whoami.exe")})
    }
    assert literals(real_rule("proc_creation_win_vslsagent_agentextensionpath_load.yml")) == {
        frozenset({("Image", "\\vsls-agent.exe")}),
        frozenset({("CommandLine", "--agentextensionpath")}),
    }


def test_literals_of_keywords() -> None:
    rule = real_rule("lnx_clamav_relevant_message.yml")
    (group,) = rule.required_literals
    assert group.alternatives[0][0] is KEYWORDS
    assert {"trojan", "virtool", "webshell", "rootkit"} <= group.literals


def inline(detection: str) -> CompiledRule:
    text = "title: t\nlogsource: {product: windows}\ndetection:\n" + "".join(
        f"    {line}\n" for line in detection.strip("\n").splitlines()
    )
    (rule,) = SigmaCollection.from_yaml(text).rules
    assert isinstance(rule, SigmaRule)
    return compile_rule(rule)


def test_literals_are_dropped_when_a_branch_needs_none() -> None:
    # A regex, a number, a CIDR or a bare "*" gives no literal, and so no group for its OR.
    assert inline("sel:\n    A|re: 'abc'\ncondition: sel").required_literals == ()
    assert inline("sel:\n    A: [x1, '*']\ncondition: sel").required_literals == ()
    both = inline("a:\n    A: lit1\nb:\n    B: 4\ncondition: a or b")
    assert both.required_literals == ()
    anded = inline("a:\n    A: lit1\nb:\n    B: 4\ncondition: a and b")
    assert literals(anded) == {frozenset({("A", "lit1")})}
    assert inline("a:\n    A: lit1\ncondition: not a").required_literals == ()


def test_literals_pick_the_most_selective_group_of_each_branch() -> None:
    rule = inline(
        """
a:
    A: x
    B: longliteral
b:
    C|contains|all: [ab, abcdef]
condition: a or b
"""
    )
    assert literals(rule) == {frozenset({("B", "longliteral"), ("C", "abcdef")})}


def test_literals_of_all_and_wildcards() -> None:
    rule = inline("sel:\n    A|contains|all: [one, two]\n    B: 'x*long*y?z'\ncondition: sel")
    assert literals(rule) == {
        frozenset({("A", "one")}),
        frozenset({("A", "two")}),
        frozenset({("B", "long")}),
    }


def test_literal_group_satisfied_by() -> None:
    group = LiteralGroup((("A", frozenset({"abc"})), (KEYWORDS, frozenset({"zz"}))))
    texts = {"A": ["xabcx"], KEYWORDS: []}
    assert group.satisfied_by(lambda name: texts.get(name, []))
    assert not group.satisfied_by(lambda name: [])
    assert group.literals == {"abc", "zz"}


# --- failures ----------------------------------------------------------------------------------


CORRELATION = """
title: Base
name: base_rule
id: 6f1a2b3c-0000-4000-8000-000000000001
logsource: {product: windows, service: security}
detection: {sel: {EventID: 4625}, condition: sel}
---
title: Many failures
id: 6f1a2b3c-0000-4000-8000-000000000002
correlation:
  type: event_count
  rules: [base_rule]
  group-by: [TargetUserName]
  timespan: 5m
  condition: {gte: 10}
"""


def test_correlation_rules_are_skipped() -> None:
    collection = SigmaCollection.from_yaml(CORRELATION)
    report = compile_rules(collection.rules)
    assert [rule.title for rule in report.compiled] == ["Base"]
    assert [rule.title for rule in report.skipped] == ["Many failures"]
    assert report.failures == ()
    with pytest.raises(SigmaCompileError) as failure:
        compile_rule(collection.rules[1])  # type: ignore[arg-type]
    assert failure.value.reason is FailureReason.NOT_A_DETECTION_RULE


def test_failures_are_collected() -> None:
    text = (
        "title: bad\nlogsource: {product: windows}\n"
        "detection:\n    sel:\n        A|re: '(a)\\1'\n    condition: sel\n"
        "---\n"
        "title: good\nlogsource: {product: windows}\n"
        "detection:\n    sel:\n        A: a\n    condition: sel\n"
    )
    report = compile_rules(SigmaCollection.from_yaml(text).rules)
    assert [rule.title for rule in report.compiled] == ["good"]
    (failure,) = report.failures
    assert failure.reason is FailureReason.UNSUPPORTED_REGEX
    assert failure.title == "bad"
    assert "rule bad:" in str(failure)  # no file: the title says which rule


# --- robustness: ~50 real rules against arbitrary events ---------------------------------------


@cache
def sample_rules() -> tuple[tuple[SigmaRule, CompiledRule], ...]:
    need_corpus()
    paths = sorted(PROCESS_CREATION.glob("*.yml"))[::23][:50]
    rules = load(paths)
    return tuple((rule, compile_rule(rule)) for rule in rules)


def leaves(rule: SigmaRule) -> list[tuple[str | None, SigmaType]]:
    """The (field, value) leaves of a rule's condition trees; field None for keywords."""
    found: list[tuple[str | None, SigmaType]] = []

    def walk(node: object) -> None:
        if isinstance(node, ConditionAND | ConditionOR | ConditionNOT):
            for arg in node.args:
                walk(arg)
        elif isinstance(node, ConditionFieldEqualsValueExpression):
            found.append((node.field, node.value))
        elif isinstance(node, ConditionValueExpression):
            found.append((None, node.value))

    for condition in rule.detection.parsed_condition:
        walk(condition.parse())
    return found


@cache
def sample_vocabulary() -> tuple[list[str], list[str]]:
    """Field names and literal strings of the sample rules, to aim random events at them."""
    need_corpus()
    names: set[str] = {"event", "message", "original"}
    words: set[str] = set()
    for rule, _ in sample_rules():
        for name, value in leaves(rule):
            if name:
                names.add(name)
            for item in value.values if isinstance(value, SigmaExpansion) else [value]:
                if isinstance(item, SigmaString):
                    words.update(part for part in item.s if isinstance(part, str))
    return sorted(names), sorted(words)


def json_values(words: list[str]) -> st.SearchStrategy[Any]:
    text = st.one_of(
        st.sampled_from(words),
        st.text(max_size=40),
        st.builds(
            lambda a, b, c: a + b + c,
            st.text(max_size=5),
            st.sampled_from(words),
            st.text(max_size=5),
        ),
        st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace")),
        st.sampled_from(["\ud800", "\u0130", "ß", "\x00", "A" * 1_000_000, "1" * 5000, "::1"]),
    )
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=12,
    )


@st.composite
def sample_events(draw: st.DrawFn) -> dict[str, Any]:
    names, words = sample_vocabulary()
    keys = st.sampled_from(names) | st.text(max_size=10)
    return draw(st.dictionaries(keys, json_values(words), max_size=8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=sample_events())
def test_matching_never_raises(event: dict[str, Any]) -> None:
    for _, compiled in sample_rules():
        assert compiled.matches(event) in (True, False)


def test_events_that_are_not_mappings_match_nothing_and_raise_nothing() -> None:
    odd: list[Any] = [None, [], "CommandLine", 5, [{"CommandLine": "x"}], object()]
    for event in odd:
        for _, compiled in sample_rules():
            assert compiled.matches(event) in (True, False)


def test_odd_events_against_the_sample() -> None:
    names, _ = sample_vocabulary()
    huge = "A" * 1_000_000 + "\\cmd.exe -enc " + "B" * 1_000_000
    odd_values: list[Any] = [
        huge,
        {"nested": huge},
        [{"a": 1}, [huge]],
        12345678901234567890123,
        -0.0,
        float("nan"),
        "\ud800\udfff\x00\u202e",
        b"bytes",
        ("tuple", "of", "strings"),
    ]
    for value in odd_values:
        event = dict.fromkeys(names, value)
        for _, compiled in sample_rules():
            assert compiled.matches(event) in (True, False)


# --- required literals are sound: matches(event) implies every group is present ---------------


def witness(value: SigmaType, rng: random.Random) -> Any:
    """A random event value aimed at satisfying ``value`` (often, not always)."""
    if isinstance(value, SigmaExpansion):
        return witness(rng.choice(value.values), rng) if value.values else "x"
    if isinstance(value, SigmaString):
        out = []
        for part in value.s:
            if isinstance(part, str):
                out.append(part.upper() if rng.random() < 0.2 else part)
            elif part is SpecialChars.WILDCARD_MULTI:
                out.append(rng.choice(["", " ", "x\\y", "ß ", "123"]))
            elif part is SpecialChars.WILDCARD_SINGLE:
                out.append(rng.choice("a9\\-"))
        return "".join(out)
    if isinstance(value, SigmaNumber):
        return rng.choice([value.number, str(value.number)])
    if isinstance(value, SigmaBool):
        return value.boolean
    if isinstance(value, SigmaCIDRExpression):
        return str(value.network.network_address)
    if isinstance(value, SigmaCompareExpression):
        return value.number.number + rng.choice([-1, 0, 1])
    if isinstance(value, SigmaNull):
        return None
    return rng.choice(["", "x", "0"])


def witness_event(found: list[tuple[str | None, SigmaType]], rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {}
    keywords: list[str] = []
    for name, value in found:
        roll = rng.random()
        if roll < 0.25:
            continue  # leave the field out (or to another leaf)
        made = witness(value, rng) if roll < 0.85 else rng.choice(["noise", 7, None, ""])
        if name is None:
            keywords.append(str(made))
        elif name in event and rng.random() < 0.5:
            previous = event[name]
            event[name] = [*previous, made] if isinstance(previous, list) else [previous, made]
        else:
            event[name] = made
    if keywords:
        event["message"] = " ".join(keywords)
    return event


def literals_present(rule: CompiledRule, event: dict[str, Any]) -> bool:
    keyword = [text.casefold() for text in keyword_texts(event)]

    def texts_of(name: str | None) -> list[str]:
        return keyword if name is None else field_texts(event, name)

    return all(group.satisfied_by(texts_of) for group in rule.required_literals)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=49), rng=st.randoms(use_true_random=False))
def test_required_literals_are_sound_on_the_sample(index: int, rng: random.Random) -> None:
    rules = sample_rules()
    rule, compiled = rules[index % len(rules)]
    event = witness_event(leaves(rule), rng)
    if compiled.matches(event):
        assert literals_present(compiled, event), (compiled.title, event)


# --- the whole corpus --------------------------------------------------------------------------


@cache
def corpus() -> tuple[list[Any], CompileReport, float]:
    need_corpus()
    folders: list[str | Path] = sorted(path for path in SIGMA.glob("rules*") if path.is_dir())
    collection = SigmaCollection.load_ruleset(folders, collect_errors=True)
    started = time.perf_counter()
    report = compile_rules(collection.rules)
    return list(collection.rules), report, time.perf_counter() - started


@pytest.mark.slow
def test_the_whole_corpus_compiles() -> None:
    rules, report, seconds = corpus()
    reasons = collections.Counter(failure.reason for failure in report.failures)
    print(
        f"\nSigma corpus: {len(rules)} rules, {len(report.compiled)} compiled, "
        f"{len(report.failures)} failed, {len(report.skipped)} skipped (correlation/filter), "
        f"compiled in {seconds:.2f} s"
    )
    for reason, count in reasons.most_common():
        print(f"  {count:4d}  {reason}")
    for failure in report.failures:
        print(f"        {failure}")
    unexpected = [f for f in report.failures if f.reason not in ALLOWED_FAILURES]
    assert not unexpected, "\n".join(str(failure) for failure in unexpected)
    assert len(report.compiled) + len(report.failures) + len(report.skipped) == len(rules)
    assert len(report.compiled) >= 3700
    assert seconds < 30, f"compiling the corpus took {seconds:.1f} s"


@pytest.mark.slow
def test_required_literals_are_sound_on_the_whole_corpus() -> None:
    rules, report, _ = corpus()
    compiled_by_path: dict[tuple[Path | None, str], CompiledRule] = {
        (rule.path, rule.title): rule for rule in report.compiled
    }
    rng = random.Random(20240501)
    matched_rules = 0
    violations: list[str] = []
    for rule in rules:
        if not isinstance(rule, SigmaRule):
            continue
        key = (rule.source.path if rule.source else None, rule.title)
        compiled = compiled_by_path.get(key)
        if compiled is None:
            continue
        found = leaves(rule)
        matched = False
        for _ in range(30):
            event = witness_event(found, rng)
            if compiled.matches(event):
                matched = True
                if not literals_present(compiled, event):
                    violations.append(f"{compiled.path}: {event!r}")
        matched_rules += matched
    print(f"\nliteral soundness: {matched_rules} of {len(report.compiled)} rules matched a witness")
    assert not violations, "\n".join(violations[:20])
    assert matched_rules > len(report.compiled) // 2


def test_compiled_rules_are_cheap_to_call() -> None:
    """A smoke check of the naive path: 50 rules on one event take microseconds, not ms."""
    event = {
        "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "CommandLine": "powershell.exe -NoProfile -ExecutionPolicy Bypass -enc SQBFAFgA",
        "ParentImage": "C:\\Windows\\explorer.exe",
        "event": {"original": "x"},
    }
    matchers: list[Callable[[Any], bool]] = [compiled.matches for _, compiled in sample_rules()]
    started = time.perf_counter()
    for _ in range(100):
        for matcher in matchers:
            matcher(event)
    per_event = (time.perf_counter() - started) / 100
    assert per_event < 0.005, f"{per_event * 1e6:.0f} µs for {len(matchers)} rules"


# --- SigmaHQ's regression data: real attack events, Sigma field names --------------------------


def json_objects(text: str) -> list[Any]:
    """The JSON objects of an evtx_dump file (several may follow one another, not in an array)."""
    decoder = json.JSONDecoder()
    objects: list[Any] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return objects
        found, index = decoder.raw_decode(text, index)
        objects.append(found)


def sigma_fields(record: dict[str, Any]) -> dict[str, Any]:
    """An evtx_dump record flattened to Sigma's Windows field names (what a pipeline would map
    to ECS): System's values (``Provider_Name`` from its attributes), EventData's (Defender's
    "Source Name" as ``SourceName``), and UserData's leaves."""
    event = record.get("Event", record)
    flat: dict[str, Any] = {}
    for key, value in (event.get("System") or {}).items():
        if isinstance(value, dict):
            for name, item in (value.get("#attributes") or {}).items():
                flat[f"{key}_{name}"] = item
        else:
            flat[key] = value
    data = event.get("EventData")
    if isinstance(data, dict):
        flat.update({k.replace(" ", ""): v for k, v in data.items() if k != "#attributes"})
    stack = [event.get("UserData")]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict):
                    stack.append(value)
                elif key != "#attributes":
                    flat.setdefault(key, value)
    return flat


@pytest.mark.slow
def test_the_regression_data_matches() -> None:
    """Each rule with regression data matches at least ``match_count`` of its attack's events
    (the detection logic alone: without a pipeline, log-source conditions are not added)."""
    _, report, _ = corpus()
    by_id = {rule.id: rule for rule in report.compiled}
    passed, failed = 0, []
    for info in sorted(SIGMA.glob("regression_data/**/info.yml")):
        meta = yaml.safe_load(info.read_text(encoding="utf-8"))
        files = sorted(info.parent.glob("*.json"))
        if not files:
            continue  # not Windows event logs (e.g. raw Cisco CLI text)
        rule = by_id[meta["rule_metadata"][0]["id"]]
        events = [
            sigma_fields(record)
            for path in files
            for record in json_objects(path.read_text(encoding="utf-8"))
        ]
        for test in meta.get("regression_tests_info") or [{}]:
            needed = test.get("match_count") or 1
            matched = sum(rule.matches(event) for event in events)
            if matched >= needed:
                passed += 1
            else:
                failed.append(f"{info.parent.name}: {matched} of {len(events)}, need {needed}")
    print(f"\nregression data: {passed} tests pass")
    assert not failed, "\n".join(failed)
    assert passed >= 190
