"""Loading rules: the whole SigmaHQ corpus, correlations, and bad rules that stop nothing."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sigma.exceptions import SigmaError

from detectors.sigma.loader import Problem, load_rules

SIGMA = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "sigma"
CORPUS = ("rules", "rules-emerging-threats", "rules-threat-hunting", "rules-placeholder",
          "rules-compliance")  # fmt: skip
# Problems the corpus may have, and why they are not errors of ours: SigmaHQ has rules for log
# sources socpipe has no events of (cloud services, macOS, Zeek, applications, Windows ETW
# file access); they load as "unsupported", each with a warning.
ALLOWED_KINDS = {("warning", "unsupported-logsource")}

GOOD = """
title: Whoami
id: 6a3b8a3c-1f3e-4a58-9c8e-000000000001
logsource: {product: windows, category: process_creation}
detection:
    selection: {Image|endswith: '\\\\whoami.exe'}
    condition: selection
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_whole_sigmahq_corpus_loads_in_seconds() -> None:
    folders = [SIGMA / name for name in CORPUS if (SIGMA / name).is_dir()]
    if not folders:
        pytest.skip(f"SigmaHQ rules not found at {SIGMA}")
    started = time.perf_counter()
    result = load_rules(folders)
    elapsed = time.perf_counter() - started
    kinds = Counter((problem.severity, problem.kind) for problem in result.problems)
    sources = Counter(
        problem.message for problem in result.problems if problem.kind == "unsupported-logsource"
    )
    print(
        f"\n{result.files} files in {elapsed:.1f}s: {len(result.rules)} rules loaded, "
        f"{len(result.correlations)} correlations, {len(result.unsupported)} unsupported, "
        f"{len(result.problems)} problems {dict(kinds)}"
    )
    for message, count in sources.most_common():
        print(f"  {count:4} {message}")
    unexpected = [str(p) for p in result.problems if (p.severity, p.kind) not in ALLOWED_KINDS]
    assert not unexpected, unexpected
    assert result.files == 3780
    assert len(result.rules) + len(result.unsupported) == 3780
    assert len(result.rules) > 3200
    assert elapsed < 30
    # Every loaded rule has its log source as written, a file and a line.
    assert all(loaded.path.is_file() and loaded.line for loaded in result.loaded)


def test_a_bad_file_stops_no_other_rule(tmp_path: Path) -> None:
    _write(tmp_path, "a_good.yml", GOOD)
    _write(tmp_path, "b_broken.yml", "title: x\nlogsource: [\n")
    _write(tmp_path, "c_not_a_rule.yml", "- just\n- a list\n")
    _write(tmp_path, "d_empty.yml", "")
    _write(
        tmp_path,
        "sub/e_unknown_logsource.yml",
        "title: Cloud\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection: {selection: {eventName: X}, condition: selection}\n",
    )
    (tmp_path / "f_latin1.yml").write_bytes(b"title: caf\xe9\n")
    result = load_rules([tmp_path, tmp_path / "missing.yml"])
    assert [rule.title for rule in result.rules] == ["Whoami"]
    assert [rule.title for rule in result.unsupported] == ["Cloud"]
    by_file = {problem.path.name: problem for problem in result.problems}
    assert by_file["b_broken.yml"].kind == "yaml" and by_file["b_broken.yml"].line == 3
    assert "mapping" in by_file["c_not_a_rule.yml"].message
    assert by_file["e_unknown_logsource.yml"].severity == "warning"
    assert "aws" in by_file["e_unknown_logsource.yml"].message
    assert by_file["f_latin1.yml"].kind == "file"
    assert by_file["missing.yml"].kind == "file"
    assert "d_empty.yml" not in by_file


def test_problems_carry_rule_id_title_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "two.yml",
        GOOD
        + """---
title: Second
id: 6a3b8a3c-1f3e-4a58-9c8e-000000000002
status: nonsense
logsource: {product: windows, category: process_creation}
detection:
    selection: {Image|endswith: x}
    condition: selection
""",
    )
    result = load_rules([tmp_path])
    assert len(result.rules) == 1
    (problem,) = result.problems
    assert problem.rule_id == "6a3b8a3c-1f3e-4a58-9c8e-000000000002"
    assert problem.title == "Second"
    assert problem.line == 11  # the status key, in the second document
    assert str(problem).startswith(f"{tmp_path / 'two.yml'}:11: error: ")


def test_duplicate_rule_ids_are_reported(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", GOOD)
    _write(tmp_path, "b.yml", GOOD.replace("Whoami", "Copy"))
    result = load_rules([tmp_path])
    assert [rule.title for rule in result.rules] == ["Whoami"]
    (problem,) = result.problems
    assert problem.kind == "duplicate-id" and problem.path.name == "b.yml"
    assert problem.line == 3


def test_collection_actions_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "global.yml", "action: global\ntitle: t\n---\ntitle: u\n")
    result = load_rules([tmp_path])
    assert not result.rules
    assert "action" in result.problems[0].message


def test_without_collect_errors_the_first_error_raises(tmp_path: Path) -> None:
    _write(tmp_path, "bad.yml", "title: x\nlogsource: [\n")
    with pytest.raises(SigmaError, match=r"bad\.yml:3"):
        load_rules([tmp_path], collect_errors=False)


BASE = """
title: Failed logon
id: 0e95725d-7320-415d-80f7-004da920fc11
name: failed_logon
logsource: {product: windows, service: security}
detection:
    selection: {EventID: 4625}
    condition: selection
"""
CORRELATION = """
title: Many failed logons
id: 0e95725d-7320-415d-80f7-004da920fc12
correlation:
    type: event_count
    rules: [failed_logon]
    group-by: [TargetUserName, IpAddress]
    timespan: 5m
    condition: {gte: 10}
"""


def test_correlations_are_kept_apart_their_references_resolved(tmp_path: Path) -> None:
    _write(tmp_path, "base.yml", BASE)
    _write(tmp_path, "corr.yml", CORRELATION)
    result = load_rules([tmp_path])
    assert not result.problems, [str(p) for p in result.problems]
    assert [rule.title for rule in result.rules] == ["Failed logon"]
    (correlation,) = result.correlations
    assert correlation.rules is not None
    assert correlation.rules[0].rule is result.rules[0]
    # Group-by fields name the same event fields as the rules they count.
    assert correlation.group_by == [
        "winlog.event_data.TargetUserName",
        "winlog.event_data.IpAddress",
    ]


def test_a_correlation_of_a_missing_rule_is_a_problem(tmp_path: Path) -> None:
    _write(tmp_path, "corr.yml", CORRELATION)
    result = load_rules([tmp_path])
    assert not result.correlations
    (problem,) = result.problems
    assert problem.kind == "reference" and problem.severity == "error"
    assert problem.line is not None


def test_problem_text_without_a_line() -> None:
    problem = Problem(Path("r.yml"), None, "no such file or directory", kind="file")
    assert str(problem) == "r.yml: error: no such file or directory"


_YAMLISH = st.text(alphabet=st.sampled_from(list("abc:|-[]{}'\"\n #*&!%@`\t\\")), max_size=200)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _YAMLISH,
        st.text(max_size=300),
        st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace")),
    )
)
def test_no_text_makes_the_loader_raise(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.yml"
        path.write_text(text, encoding="utf-8")
        result = load_rules([path])
    assert all(problem.path == path for problem in result.problems)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "title",
                "id",
                "logsource",
                "detection",
                "status",
                "level",
                "tags",
                "date",
                "correlation",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_no_rule_shape_makes_the_loader_raise(document: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.yml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        load_rules([path])
