"""``socpipe rules test``: each rule's cases through the parsers and the engine, failures and
malformed tests files reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.sigma import ruletest
from detectors.sigma.engine import SigmaEngine
from detectors.sigma.logsource import LogsourceRouter
from detectors.sigma.ruletest import RuleTestReport, find_tests_file, is_tests_file, run_tests

DATA = Path(__file__).resolve().parent / "data" / "ruletest"
GOOD, BAD = DATA / "good", DATA / "bad"
SSHD = GOOD / "linux" / "sshd_root_failed_password.yml"


def _lines(path: Path, text: str) -> list[int]:
    """The numbers of the lines of ``path`` that hold ``text`` (so fixtures can be edited)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, 1) if text in line]


def _line(path: Path, text: str) -> int:
    """The number of the one line of ``path`` that holds ``text``."""
    (found,) = _lines(path, text)
    return found


def _errors(report: RuleTestReport) -> set[tuple[str, int | None]]:
    return {(problem.path.name, problem.line) for problem in report.errors}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_rules_pass_through_parser_and_engine() -> None:
    report = run_tests([GOOD])
    assert report.exit_code == 0, report.format_report()
    assert (report.rules, report.cases, report.passed, report.failed) == (2, 11, 11, 0)
    assert report.problems == [] and report.untested == [] and report.not_run == 0
    assert report.format_report() == [
        "2 rules, 11 cases: 11 passed, 0 failed, 0 not run; 0 errors, 0 warnings; "
        "0 rules without tests"
    ]
    verbose = report.format_report(verbose=True)
    tests = SSHD.with_name("sshd_root_failed_password.tests.yml")
    first = _line(tests, "name: failed root password from outside")
    assert f"{tests}:{first}: PASS: failed root password from outside " in "\n".join(verbose)
    assert sum(": PASS: " in line for line in verbose) == 11


def test_wrong_expectations_fail_with_line_and_reason() -> None:
    rule = BAD / "wrong_expectation.yml"
    tests = find_tests_file(rule)
    assert tests is not None
    report = run_tests([rule])
    assert report.exit_code == 1
    assert (report.cases, report.passed, report.failed) == (3, 1, 2)
    assert report.errors == []
    failed = {result.name: result for result in report.results if not result.passed}
    quiet = failed["wrongly expected quiet"]
    assert quiet.line == _line(tests, "name: wrongly expected quiet")
    assert (quiet.expected, quiet.matched) == (False, True)
    assert "rule 'SSH Accepted Password For Root' ({product: linux, service: sshd}): its " \
        "condition holds" in quiet.details  # fmt: skip
    sudo = failed["wrongly expected to fire on sudo"]
    assert (sudo.expected, sudo.matched) == (True, False)
    assert any("not of its log source" in detail for detail in sudo.details)
    assert "event.dataset: system.auth" in sudo.details
    assert "  process.name: sudo" in sudo.details
    assert "raw: parsed as syslog (format syslog)" in sudo.details
    lines = report.format_report()
    assert f"{tests}:{quiet.line}: FAIL: wrongly expected quiet [SSH Accepted Password For " \
        "Root]: matched, but should not" in lines  # fmt: skip
    assert f"{tests}:{sudo.line}: FAIL: wrongly expected to fire on sudo [SSH Accepted " \
        "Password For Root]: expected a match, got none" in lines  # fmt: skip
    assert "    event.dataset: system.auth" in lines
    assert not any(": PASS: " in line for line in lines)
    assert lines[-1].startswith("1 rules, 3 cases: 1 passed, 2 failed, 0 not run; 0 errors")


def test_malformed_tests_file_is_an_error_at_its_line() -> None:
    report = run_tests([BAD / "malformed.yml"])
    assert report.exit_code == 1
    assert report.cases == 0
    assert _errors(report) == {("malformed.tests.yml", 5)}  # the misindented "- name"
    assert "invalid YAML" in report.errors[0].message


def test_bad_cases_are_errors_and_the_good_case_still_runs() -> None:
    rule = BAD / "invalid_cases.yml"
    tests = rule.with_name("invalid_cases.tests.yml")
    report = run_tests([rule])
    assert report.exit_code == 1
    assert [(result.name, result.passed) for result in report.results] == [
        ("netcat in a cron job", True)
    ]
    messages = {problem.line: problem.message for problem in report.errors}
    first_name, second_name = _lines(tests, "name: netcat in a cron job")
    assert messages[_line(tests, "name: no expectation")] == "'match' must be given, true or false"
    assert messages[_line(tests, "name: both raw and event")].startswith("a case has exactly one")
    assert messages[_line(tests, "name: neither raw nor event")].startswith("a case has exactly")
    assert messages[_line(tests, "format: sysl0g")].startswith("unknown format 'sysl0g'; known: ")
    assert "winlog.json" in messages[_line(tests, "format: sysl0g")]
    assert messages[_line(tests, "evnt:")].startswith("unknown keys ['evnt'] in case")
    assert messages[_line(tests, "name: no such rule")].startswith(
        "case 'no such rule': no rule 'Some Other Rule' in the file; it has "
        "6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9a13 (Cron Job Runs Netcat)"
    )
    assert messages[second_name] == (
        f"case name 'netcat in a cron job' is used twice (first at line {first_name})"
    )
    assert len(report.errors) == 7
    assert all(problem.path == tests for problem in report.errors)


def test_a_rule_that_does_not_compile_leaves_its_cases_not_run() -> None:
    report = run_tests([BAD / "placeholder.yml"])
    assert report.exit_code == 1
    assert (report.cases, report.not_run, len(report.results)) == (1, 1, 0)
    by_file = {problem.path.name: problem for problem in report.errors}
    compile_error = by_file["placeholder.yml"]
    assert compile_error.line == _line(BAD / "placeholder.yml", "|expand")
    assert compile_error.message == (
        "cannot compile (unfilled placeholder): placeholder %admin_users% has no value"
    )
    not_run = by_file["placeholder.tests.yml"]
    assert (not_run.line, not_run.message.split(":")[0]) == (1, "1 case not run")


def test_a_rule_of_an_unsupported_log_source_cannot_pass(tmp_path: Path) -> None:
    rule = _write(
        tmp_path,
        "aws.yml",
        "title: AWS Root Login\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection:\n  selection: {eventName: ConsoleLogin}\n  condition: selection\n",
    )
    _write(tmp_path, "aws.tests.yml", "tests:\n  - {name: login, match: true, event: {}}\n")
    report = run_tests([rule])
    assert report.exit_code == 1 and report.not_run == 1
    assert [problem.severity for problem in report.problems] == ["warning", "error"]
    assert "no socpipe events for log source" in report.problems[0].message


def test_missing_tests_file_is_a_warning_unless_required() -> None:
    rule = BAD / "untested.yml"
    report = run_tests([rule])
    assert report.exit_code == 0 and report.untested == [rule]
    assert [str(problem) for problem in report.problems] == [
        f"{rule}: warning: no tests file (untested.tests.yml)"
    ]
    strict = run_tests([rule], require_tests=True)
    assert strict.exit_code == 1 and strict.errors[0].path == rule


def test_every_bad_file_at_once() -> None:
    report = run_tests([BAD])
    assert report.exit_code == 1
    assert (report.rules, report.cases, report.passed, report.failed, report.not_run) == (
        5, 5, 2, 2, 1,
    )  # fmt: skip
    assert len(report.untested) == 1
    assert len(report.errors) == 1 + 7 + 2  # malformed, invalid cases, placeholder
    assert report.format_report()[-1] == (
        "5 rules, 5 cases: 2 passed, 2 failed, 1 not run; 10 errors, 1 warnings; "
        "1 rules without tests"
    )


def test_the_engine_decides_so_routing_is_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    # A router that names no log source: every rule's condition still holds for its events,
    # but the engine never offers them, so each case expecting a match must fail.
    monkeypatch.setattr(
        ruletest,
        "engine_of",
        lambda entries, pipeline=None: SigmaEngine(entries, LogsourceRouter([])),
    )
    report = run_tests([SSHD])
    failed = [result for result in report.results if not result.passed]
    assert {result.name for result in failed} == {
        "failed root password from outside",
        "an ECS event given directly",
    }
    for result in failed:
        assert "event log sources: none" in result.details
        assert any("never offers this event to it (routing)" in d for d in result.details)


def test_a_tests_file_given_by_name_runs_its_rule() -> None:
    report = run_tests([SSHD.with_name("sshd_root_failed_password.tests.yml")])
    assert (report.rules, report.cases, report.passed) == (1, 6, 6)


def test_rules_of_one_file_chosen_by_id_or_title(tmp_path: Path) -> None:
    rule = _write(
        tmp_path,
        "two.yml",
        """title: Root
id: 6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9a31
logsource: {product: linux, service: sshd}
detection: {keywords: ['for root'], condition: keywords}
---
title: Oracle
id: 6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9a32
logsource: {product: linux, service: sshd}
detection: {keywords: ['for oracle'], condition: keywords}
""",
    )
    line = "<38>Nov 27 10:00:01 web01 sshd[1]: Accepted password for oracle from 10.0.0.1 port 22"
    _write(
        tmp_path,
        "two.tests.yml",
        f"""tests:
  - {{name: either rule, match: true, format: syslog, raw: "{line}"}}
  - {{name: not root, match: false, rule: Root, format: syslog, raw: "{line}"}}
  - name: oracle by id
    match: true
    rule: 6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9a32
    format: syslog
    raw: "{line}"
""",
    )
    report = run_tests([rule])
    assert report.exit_code == 0, report.format_report()
    assert [(result.name, result.rule) for result in report.results] == [
        ("either rule", "Root | Oracle"),
        ("not root", "Root"),
        ("oracle by id", "Oracle"),
    ]


def test_duplicate_keys_and_odd_shapes_in_a_tests_file(tmp_path: Path) -> None:
    rule = _write(
        tmp_path,
        "r.yml",
        "title: R\nlogsource: {product: linux, service: sshd}\n"
        "detection: {keywords: [x], condition: keywords}\n",
    )
    tests = _write(
        tmp_path, "r.tests.yml", "tests:\n  - name: a\n    match: true\n    match: false\n"
    )
    report = run_tests([rule])
    assert _errors(report) == {("r.tests.yml", 4)}
    assert "duplicate key 'tests.0.match'" in report.errors[0].message
    for text, message in (
        ("- just a list\n", "a tests file is a mapping with a list under 'tests'"),
        ("tests: {name: a}\n", "a tests file is a mapping with a list under 'tests'"),
        ("tests:\n  - a scalar\n", "case 1 is not a mapping"),
        ("tests: []\n---\ntests: []\n", "a tests file is one YAML document"),
        ("tests: []\nextra: 1\n", "unknown keys ['extra']: only 'tests' is known"),
        ("tests:\n  - {match: true, raw: x}\n", "case 1 has no name"),
        ("tests:\n  - {name: a, match: true, raw: 3}\n", "'raw' must be a string"),
        ("tests:\n  - {name: a, match: true, event: [1]}\n", "'event' must be a mapping"),
        ("tests:\n  - {name: a, match: yes please, raw: x}\n", "'match' must be given"),
        ("tests:\n  - {name: a, match: true, format: json, event: {}}\n", "'format' applies"),
    ):
        tests.write_text(text, encoding="utf-8")
        errors = run_tests([rule]).errors
        assert [error.message[: len(message)] for error in errors] == [message], text


def test_missing_paths_and_tests_file_names(tmp_path: Path) -> None:
    report = run_tests([tmp_path / "nope.yml", tmp_path / "orphan.tests.yml"])
    assert report.rules == 0
    assert [problem.message for problem in report.errors] == ["no such file or directory"] * 2
    _write(tmp_path, "orphan.tests.yml", "tests: []\n")
    assert run_tests([tmp_path / "orphan.tests.yml"]).errors[0].message == (
        "no rule orphan.yml beside it"
    )
    assert is_tests_file(Path("a.tests.yaml")) and not is_tests_file(Path("tests.yml"))


def test_a_raw_record_no_parser_knows_is_a_warning(tmp_path: Path) -> None:
    # An unparsed event is of no log source, so "match: false" would pass whatever the rule.
    rule = _write(
        tmp_path,
        "r.yml",
        "title: R\nlogsource: {product: linux, service: sshd}\n"
        "detection: {keywords: [x], condition: keywords}\n",
    )
    _write(tmp_path, "r.tests.yml", "tests:\n  - {name: noise, match: false, raw: '???'}\n")
    report = run_tests([rule])
    assert report.exit_code == 0 and report.passed == 1
    assert [(problem.severity, problem.line) for problem in report.problems] == [("warning", 2)]
    assert "no parser recognised the raw record (format auto)" in report.problems[0].message


def test_the_projects_own_rules_pass_their_tests() -> None:
    """rules/socpipe/ and the filters of rules/filters/: every rule and filter has a tests
    file, and every case passes (as CI checks)."""
    rules = Path(__file__).resolve().parents[4] / "rules"
    report = run_tests([rules / "socpipe", rules / "filters"], require_tests=True)
    assert report.rules >= 3
    assert report.cases >= 3 * report.rules
    assert report.exit_code == 0, "\n".join(report.format_report())


def test_a_filter_naming_no_rule_of_the_set_is_reported(tmp_path: Path) -> None:
    (tmp_path / "typo.yml").write_text(
        "title: A filter with a mistyped rule id\n"
        "logsource: {product: linux, service: sshd}\n"
        "filter:\n  rules: [00000000-0000-4000-8000-000000000000]\n"
        "  selection: {source.ip: 10.0.0.1}\n  condition: not selection\n",
        encoding="utf-8",
    )
    report = run_tests([SSHD.parent, tmp_path])
    idle = [p for p in report.problems if "applies to no rule" in p.message]
    assert len(idle) == 1 and idle[0].severity == "warning"
    assert idle[0].path == tmp_path / "typo.yml"


# Correlation cases: a stream of events through the base rules and the correlations.

_BASE = """title: SSH failure
id: 6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9b01
name: ssh_failure
logsource: {product: linux, service: sshd}
detection:
  selection: {event.action: ssh_login, event.outcome: failure}
  condition: selection
"""
_BURST = """title: SSH burst
id: 6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9b02
name: ssh_burst
correlation:
  type: event_count
  rules: [ssh_failure]
  group-by: [source.ip]
  timespan: 5m
  condition: {gte: 3}
"""


def _failure(time: str, address: str = "113.160.12.9") -> str:
    """An sshd failure line at ``time`` (hh:mm:ss, 27 November) from ``address``."""
    return (
        f'{{raw: "<38>Nov 27 {time} srv sshd[1]: Failed password for root from {address} '
        'port 4000 ssh2"}'
    )


def _stream(*items: str) -> str:
    return "".join(f"\n      - {item}" for item in items)


def test_a_correlation_fires_over_a_stream_and_its_base_rule_in_the_same_file(
    tmp_path: Path,
) -> None:
    rule = _write(tmp_path, "burst.yml", f"{_BASE}---\n{_BURST}")
    three = _stream(_failure("10:00:01"), _failure("10:01:00"), _failure("10:05:01"))
    spread = _stream(_failure("10:00:01"), _failure("10:03:00"), _failure("10:05:02"))
    two_addresses = _stream(
        _failure("10:00:01"), _failure("10:00:02", "14.161.22.8"), _failure("10:00:03")
    )
    tests = _write(
        tmp_path,
        "burst.tests.yml",
        f"""tests:
  - name: one failure is the base rule's
    match: true
    rule: ssh_failure
    format: syslog
    raw: "<38>Nov 27 10:00:01 srv sshd[1]: Failed password for root from 10.0.0.1 port 1 ssh2"
  - name: three within five minutes
    match: true
    count: 1
    format: syslog
    stream:{three}
  - name: three over five minutes and a second
    match: false
    format: syslog
    stream:{spread}
  - name: two addresses
    match: false
    rule: SSH burst
    format: syslog
    stream:{two_addresses}
  - name: six give two hits
    match: true
    count: 2
    format: syslog
    stream:{three}{_stream(_failure("10:06:02"), _failure("10:07:00"), _failure("10:09:00"))}
  - name: given directly
    match: true
    stream:
      - event: &failure
          "@timestamp": "2024-11-27T03:00:01Z"
          event: {{dataset: system.auth, action: ssh_login, outcome: failure}}
          process: {{name: sshd}}
          source: {{ip: 10.0.0.9}}
      - event: *failure
      - event: *failure
""",
    )
    report = run_tests([rule])
    assert report.exit_code == 0, report.format_report(verbose=True)
    assert report.problems == []
    assert [(r.name, r.rule, r.hits) for r in report.results] == [
        ("one failure is the base rule's", "SSH failure", None),
        ("three within five minutes", "SSH burst", 1),
        ("three over five minutes and a second", "SSH burst", 0),
        ("two addresses", "SSH burst", 0),
        ("six give two hits", "SSH burst", 2),
        ("given directly", "SSH burst", 1),
    ]
    verbose = report.format_report(verbose=True)
    line = _line(tests, "name: three within five minutes")
    assert f"{tests}:{line}: PASS: three within five minutes [SSH burst]" in verbose


def test_a_failed_stream_case_says_what_each_event_matched_and_what_fired(
    tmp_path: Path,
) -> None:
    rule = _write(tmp_path, "burst.yml", f"{_BASE}---\n{_BURST}")
    three = _stream(_failure("10:00:01"), _failure("10:01:00"), _failure("10:02:00"))
    tests = _write(
        tmp_path,
        "burst.tests.yml",
        f"""tests:
  - {{name: expected quiet, match: false, format: syslog, stream: [{_failure("10:00:01")}]}}
  - name: wrongly quiet
    match: false
    format: syslog
    stream:{three}
  - name: wrongly loud
    match: true
    format: syslog
    stream:{_stream(_failure("10:00:01"), "{event: {message: noise}}")}
  - name: wrong count
    match: true
    count: 2
    format: syslog
    stream:{three}
""",
    )
    report = run_tests([rule])
    assert report.exit_code == 1
    assert (report.passed, report.failed) == (1, 3)
    failed = {result.name: result for result in report.results if not result.passed}
    quiet, loud, count = failed["wrongly quiet"], failed["wrongly loud"], failed["wrong count"]
    assert str(quiet).endswith("FAIL: wrongly quiet [SSH burst]: 1 hits, expected none")
    assert str(loud).endswith("FAIL: wrongly loud [SSH burst]: expected a hit, got none")
    assert str(count).endswith("FAIL: wrong count [SSH burst]: expected 2 hits, got 1")
    first = _lines(tests, "Nov 27 10:00:01")[1]
    assert quiet.details[0] == (
        f"item 1 (line {first}): raw: parsed as syslog (format syslog); "
        "2024-11-27T03:00:01+00:00; matched 'SSH failure'"
    )
    assert quiet.details[3] == "hits: 1 of the correlations tested, 1 in all"
    assert quiet.details[4].startswith(
        "hit of 'SSH burst': {source.ip: 113.160.12.9}, 2024-11-27T03:00:01+00:00 to "
        "2024-11-27T03:02:00+00:00, event_count 3, 3 events"
    )
    assert loud.details[1].endswith("event: given directly; no @timestamp; matched no rule")
    assert loud.details[2] == "hits: 0 of the correlations tested, 0 in all"


def test_base_rules_in_another_file_and_a_window_decided_at_its_end(tmp_path: Path) -> None:
    _write(tmp_path, "base.yml", _BASE)
    _write(tmp_path, "base.tests.yml", "tests:\n  - {name: a, match: false, event: {}}\n")
    exactly = _write(
        tmp_path,
        "exactly.yml",
        _BURST.replace("SSH burst", "Exactly three").replace("{gte: 3}", "{eq: 3}")
        .replace("b02", "b03").replace("ssh_burst", "exactly_three"),
    )  # fmt: skip
    three = [_failure("10:00:01"), _failure("10:01:00"), _failure("10:02:00")]
    four = [*three, _failure("10:03:00")]
    _write(
        tmp_path,
        "exactly.tests.yml",
        # Flow style puts a stream on one line: its events still have ids of their own.
        f"""tests:
  - {{name: three, match: true, count: 1, format: syslog, stream: [{", ".join(three)}]}}
  - {{name: four, match: false, format: syslog, stream: [{", ".join(four)}]}}
  - name: three, block style
    match: true
    format: syslog
    stream:{_stream(*three)}
""",
    )
    report = run_tests([tmp_path])
    assert report.exit_code == 0, report.format_report()
    assert (report.rules, report.cases, report.passed) == (2, 4, 4)
    assert [(result.name, result.hits) for result in report.results] == [
        ("a", None), ("three", 1), ("four", 0), ("three, block style", 1),
    ]  # fmt: skip
    # Alone, the correlation's rules are missing: it does not load, its cases do not run.
    alone = run_tests([exactly])
    assert alone.exit_code == 1 and alone.not_run == 3 and alone.results == []
    assert [problem.kind for problem in alone.errors] == ["reference", "rule"]
    assert alone.errors[1].message.startswith("3 cases not run: no rule of ")


def test_a_quiet_inner_correlation_is_still_tested(tmp_path: Path) -> None:
    # generate: false on the outer one would hide the inner one's hits in production.
    rule = _write(
        tmp_path,
        "chain.yml",
        f"""{_BASE}---
{_BURST}---
title: Burst then success
correlation:
  type: temporal_ordered
  rules: [ssh_burst, ssh_failure]
  group-by: [source.ip]
  timespan: 10m
""",
    )
    three = _stream(_failure("10:00:01"), _failure("10:01:00"), _failure("10:02:00"))
    _write(
        tmp_path,
        "chain.tests.yml",
        f"""tests:
  - name: the inner one by its name
    match: true
    rule: ssh_burst
    format: syslog
    stream:{three}
  - name: the outer one by its title
    match: true
    rule: Burst then success
    format: syslog
    stream:{three}{_stream(_failure("10:04:00"))}
  - name: both, summed
    match: true
    count: 2
    format: syslog
    stream:{three}{_stream(_failure("10:04:00"))}
""",
    )
    report = run_tests([rule])
    assert report.exit_code == 0, report.format_report()
    assert [result.hits for result in report.results] == [1, 1, 2]


def test_a_case_of_the_wrong_kind_for_its_file_is_not_run(tmp_path: Path) -> None:
    base = _write(tmp_path, "base.yml", _BASE)
    tests = _write(
        tmp_path,
        "base.tests.yml",
        f"tests:\n  - name: a stream\n    match: true\n    format: syslog\n"
        f"    stream:{_stream(_failure('10:00:01'))}\n",
    )
    burst = _write(tmp_path, "burst.yml", _BURST)
    _write(tmp_path, "burst.tests.yml", "tests:\n  - {name: one, match: true, event: {}}\n")
    report = run_tests([base, burst])
    assert report.exit_code == 1 and report.not_run == 2 and report.results == []
    messages = {problem.path.name: problem for problem in report.errors}
    assert messages["base.tests.yml"].line == _line(tests, "name: a stream")
    assert messages["base.tests.yml"].message == (
        f"case 'a stream' not run: {base} has no correlation that loaded and can run, and a "
        "stream tests correlations"
    )
    assert messages["burst.tests.yml"].message.startswith(
        f"case 'one' not run: {burst} has no per-event rule that loaded and compiled"
    )


def test_malformed_streams_are_errors_at_their_lines(tmp_path: Path) -> None:
    rule = _write(tmp_path, "burst.yml", f"{_BASE}---\n{_BURST}")
    tests = tmp_path / "burst.tests.yml"
    ok = _failure("10:00:01")
    for text, message in (
        ("stream: x", "'stream' is a list of events, each a mapping with 'raw' or 'event'"),
        ("stream: []", "'stream' is a list of events"),
        (f"stream: [{ok}, 3]", "stream item 2 is not a mapping"),
        (f"stream: [{ok}, {{raw: x, event: {{}}}}]", "stream item 2: an item has exactly one"),
        ("stream: [{}]", "stream item 1: an item has exactly one of 'raw' and 'event'"),
        ("stream: [{raw: x, name: y}]", "unknown keys ['name'] in stream item 1; known: agency"),
        ("stream: [{raw: x, format: sysl0g}]", "stream item 1: unknown format 'sysl0g'"),
        ("stream: [{event: {}, format: syslog}]", "stream item 1: 'format' applies to 'raw'"),
        ("stream: [{raw: 3}]", "stream item 1: 'raw' must be a string"),
        ("stream: [{raw: x, agency: ''}]", "stream item 1: 'agency' is the id of the agency"),
        (f"format: sysl0g, stream: [{ok}]", "unknown format 'sysl0g'"),
        (f"count: 0, stream: [{ok}]", "'count' is how many hits a stream gives"),
        (f"count: 1.5, stream: [{ok}]", "'count' is how many hits"),
        (f"count: true, stream: [{ok}]", "'count' is how many hits"),
        ("count: 1, raw: x", "'count' is how many hits"),
        (f"stream: [{ok}], raw: x", "a case has exactly one of 'raw', 'event' and 'stream'"),
        (f"rule: nope, stream: [{ok}]", "case 'a': no rule 'nope' in the file; it has "
         "6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9b02 / ssh_burst (SSH burst)"),
    ):  # fmt: skip
        tests.write_text(f"tests:\n  - {{name: a, match: true, {text}}}\n", encoding="utf-8")
        errors = run_tests([rule]).errors
        assert [error.message[: len(message)] for error in errors] == [message], text
        assert errors[0].line == 2
    tests.write_text(
        "tests:\n  - name: a\n    match: false\n    count: 1\n    stream:\n"
        "      - raw: x\n      - raw: y\n        format: sysl0g\n",
        encoding="utf-8",
    )
    assert [(error.line, error.message[:26]) for error in run_tests([rule]).errors] == [
        (4, "'count' is how many hits a"),
        (8, "stream item 2: unknown for"),
    ]


def test_late_untimed_and_unparsed_events_of_a_stream_are_warnings(tmp_path: Path) -> None:
    rule = _write(tmp_path, "burst.yml", f"{_BASE}---\n{_BURST}")
    tests = _write(
        tmp_path,
        "burst.tests.yml",
        f"""tests:
  - name: out of order
    match: false
    format: syslog
    stream:{_stream(_failure("10:03:00"), _failure("10:00:01"), _failure("10:01:00"))}
      - {{event: {{event: {{dataset: system.auth, action: ssh_login, outcome: failure}},
          process: {{name: sshd}}, source: {{ip: 113.160.12.9}}}}}}
      - {{raw: "not a syslog line"}}
""",
    )
    report = run_tests([rule])
    assert report.exit_code == 0 and report.passed == 1
    assert [(problem.severity, problem.line) for problem in report.problems] == [
        ("warning", _line(tests, "not a syslog line")),
        ("warning", _line(tests, "name: out of order")),
    ]
    unparsed, late = (problem.message for problem in report.problems)
    assert unparsed == (
        "case 'out of order': stream item 5: no parser recognised the raw record (format "
        "syslog); no rule can match it"
    )
    assert late.startswith(
        "case 'out of order': 2 events more than 60 s older than one before them and 1 "
        "without @timestamp were not used"
    )


def test_a_correlation_that_cannot_run_is_an_error_and_its_cases_do_not_run(
    tmp_path: Path,
) -> None:
    rule = _write(
        tmp_path,
        "spread.yml",
        f"{_BASE}---\n"
        + _BURST.replace("event_count", "value_sum").replace("{gte: 3}", "{field: [a, b], gte: 3}"),
    )
    _write(
        tmp_path,
        "spread.tests.yml",
        f"tests:\n  - {{name: a, match: true, format: syslog, stream: [{_failure('10:00:01')}]}}\n",
    )
    report = run_tests([rule])
    assert report.exit_code == 1 and report.not_run == 1
    assert "aggregates one field" in report.errors[0].message
    assert report.errors[1].message.startswith("case 'a' not run: ")
