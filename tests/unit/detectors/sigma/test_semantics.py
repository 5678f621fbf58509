"""Sigma semantics, rule by rule: small inline rules, events that must and must not match.

Each case is a rule's ``detection`` section (pySigma parses it, with its modifiers) and events
with Sigma's own field names: the matcher does not care whether a pipeline renamed them.
"""

from __future__ import annotations

import textwrap
from base64 import b64encode
from pathlib import Path
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    QueryExpressionPlaceholderTransformation,
    ValueListPlaceholderTransformation,
    WildcardPlaceholderTransformation,
)
from sigma.rule import SigmaRule

from detectors.sigma import CompiledRule, FailureReason, SigmaCompileError, compile_rule

HEADER = """\
title: Semantics case
id: 0b9d0c3e-4f4a-4c55-9a65-1d2d4b6f7a01
status: test
level: high
logsource:
    product: windows
    category: process_creation
detection:
"""


def sigma_rule(detection: str) -> SigmaRule:
    text = HEADER + textwrap.indent(textwrap.dedent(detection).strip("\n"), "    ") + "\n"
    (rule,) = SigmaCollection.from_yaml(text).rules
    assert isinstance(rule, SigmaRule)
    return rule


def compiled(detection: str) -> CompiledRule:
    return compile_rule(sigma_rule(detection))


def b64(data: bytes) -> str:
    return b64encode(data).decode()


CASES: list[tuple[str, str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    (
        "plain value: equality, case-insensitive",
        """
        sel:
            Image: 'C:\\Windows\\System32\\cmd.exe'
        condition: sel
        """,
        [{"Image": "C:\\Windows\\System32\\cmd.exe"}, {"Image": "c:\\windows\\system32\\CMD.EXE"}],
        [{"Image": "C:\\Windows\\System32\\cmd.exe "}, {"Image": "cmd.exe"}, {}],
    ),
    (
        "contains",
        """
        sel:
            CommandLine|contains: 'urlcache'
        condition: sel
        """,
        [{"CommandLine": "certutil -URLCache -f"}, {"CommandLine": "urlcache"}],
        [{"CommandLine": "certutil -url-cache"}, {"CommandLine": None}, {"Other": "urlcache"}],
    ),
    (
        "startswith",
        """
        sel:
            Image|startswith: 'C:\\Users\\'
        condition: sel
        """,
        [{"Image": "c:\\users\\bob\\a.exe"}],
        [{"Image": "D:\\c:\\users\\bob\\a.exe"}],
    ),
    (
        "endswith",
        """
        sel:
            Image|endswith: '\\rundll32.exe'
        condition: sel
        """,
        [{"Image": "C:\\Windows\\System32\\RUNDLL32.exe"}],
        [{"Image": "C:\\Windows\\System32\\rundll32.exe.mui"}, {"Image": "rundll32.exe"}],
    ),
    (
        "list of values is OR",
        """
        sel:
            Image|endswith:
                - '\\cmd.exe'
                - '\\powershell.exe'
        condition: sel
        """,
        [{"Image": "x\\cmd.exe"}, {"Image": "x\\powershell.exe"}],
        [{"Image": "x\\pwsh.exe"}],
    ),
    (
        "contains|all is AND",
        """
        sel:
            CommandLine|contains|all:
                - ' -urlcache '
                - ' -f '
        condition: sel
        """,
        [{"CommandLine": "certutil -urlcache -f http://x"}],
        [{"CommandLine": "certutil -urlcache http://x"}, {"CommandLine": "certutil -f x"}],
    ),
    (
        "a map is AND",
        """
        sel:
            Image|endswith: '\\certutil.exe'
            CommandLine|contains: 'http'
        condition: sel
        """,
        [{"Image": "c:\\certutil.exe", "CommandLine": "certutil http://x"}],
        [{"Image": "c:\\certutil.exe", "CommandLine": "certutil -decode"}, {"CommandLine": "http"}],
    ),
    (
        "a list of maps is OR",
        """
        sel:
            - Image|endswith: '\\certutil.exe'
            - OriginalFileName: 'CertUtil.exe'
        condition: sel
        """,
        [{"Image": "c:\\certutil.exe"}, {"OriginalFileName": "certutil.exe"}],
        [{"Image": "c:\\other.exe", "OriginalFileName": "other.exe"}],
    ),
    (
        "wildcards * and ?",
        """
        sel:
            CommandLine: '*\\AppData\\\\*\\a?c.exe'
        condition: sel
        """,
        # In YAML that is *\AppData\\*\a?c.exe: "\\" before a wildcard is one backslash
        [{"CommandLine": "C:\\Users\\x\\AppData\\Local\\abc.exe"}],
        [
            {"CommandLine": "C:\\Users\\x\\AppData\\Local\\ac.exe"},
            {"CommandLine": "abc.exe"},
            {"CommandLine": "C:\\Users\\x\\AppData*\\abc.exe"},
        ],
    ),
    (
        "escaped wildcards are literal",
        """
        sel:
            CommandLine|contains: ' -Filter \\*'
        condition: sel
        """,
        [{"CommandLine": "Get-ADUser -Filter *"}],
        [{"CommandLine": "Get-ADUser -Filter x"}],
    ),
    (
        "escaped question mark",
        """
        sel:
            Query: 'what\\?'
        condition: sel
        """,
        [{"Query": "WHAT?"}],
        [{"Query": "whatx"}],
    ),
    (
        "re",
        """
        sel:
            CommandLine|re: '-[eE][nN][cC]\\s+[A-Za-z0-9+/=]{12,}'
        condition: sel
        """,
        [{"CommandLine": "powershell -enc SQBFAFgAIAAoAE4A"}],
        [{"CommandLine": "powershell -enc SQBF"}, {"CommandLine": "powershell -ENC"}],
    ),
    (
        "re is case-sensitive by default",
        """
        sel:
            CommandLine|re: 'Invoke-Mimikatz'
        condition: sel
        """,
        [{"CommandLine": "x Invoke-Mimikatz y"}],
        [{"CommandLine": "x invoke-mimikatz y"}],
    ),
    (
        "re|i",
        """
        sel:
            CommandLine|re|i: 'invoke-mimikatz'
        condition: sel
        """,
        [{"CommandLine": "x INVOKE-MIMIKATZ y"}],
        [{"CommandLine": "x invoke mimikatz y"}],
    ),
    (
        "re|m",
        """
        sel:
            ScriptBlockText|re|m: '^iex$'
        condition: sel
        """,
        [{"ScriptBlockText": "$a = 1\niex\n$b"}],
        [{"ScriptBlockText": "$a = 1\niex $b"}],
    ),
    (
        "re|s",
        """
        sel:
            ScriptBlockText|re|s: 'begin.+end'
        condition: sel
        """,
        [{"ScriptBlockText": "begin\n\nend"}],
        [{"ScriptBlockText": "end begin"}],
    ),
    (
        "windash",
        """
        sel:
            CommandLine|windash|contains: ' -exec bypass'
        condition: sel
        """,
        [
            {"CommandLine": "powershell -exec bypass"},
            {"CommandLine": "powershell /exec bypass"},
            {"CommandLine": "powershell \u2013exec bypass"},
            {"CommandLine": "powershell \u2014exec bypass"},
            {"CommandLine": "powershell \u2015exec bypass"},
        ],
        [{"CommandLine": "powershell exec bypass"}, {"CommandLine": "powershell +exec bypass"}],
    ),
    (
        "base64",
        """
        sel:
            CommandLine|base64: 'iex'
        condition: sel
        """,
        [{"CommandLine": b64(b"iex")}],
        [{"CommandLine": b64(b"iex(")}, {"CommandLine": "iex"}],
    ),
    (
        "base64offset|contains",
        """
        sel:
            CommandLine|base64offset|contains: 'http://'
        condition: sel
        """,
        [
            {"CommandLine": "powershell -e " + b64(b"http://evil")},
            {"CommandLine": "powershell -e " + b64(b"x" + b"http://evil")},
            {"CommandLine": "powershell -e " + b64(b"xy" + b"http://evil")},
            {"CommandLine": "powershell -e " + b64(b"xyz" + b"http://evil")},
        ],
        [{"CommandLine": "powershell -e " + b64(b"https://evil")}],
    ),
    (
        "wide|base64offset|contains",
        """
        sel:
            CommandLine|wide|base64offset|contains: 'ping'
        condition: sel
        """,
        [
            {"CommandLine": "-e " + b64("ping 1.1.1.1".encode("utf-16le"))},
            {"CommandLine": "-e " + b64("cmd /c ping x".encode("utf-16le"))},
            {"CommandLine": "-e " + b64("x ping x".encode("utf-16le"))},
        ],
        [{"CommandLine": "-e " + b64(b"ping 1.1.1.1")}],
    ),
    (
        "utf16le|base64offset|contains (the specification's name for wide)",
        """
        sel:
            CommandLine|utf16le|base64offset|contains: 'ping'
        condition: sel
        """,
        [
            {"CommandLine": "-e " + b64("ping 1.1.1.1".encode("utf-16le"))},
            {"CommandLine": "-e " + b64("x ping x".encode("utf-16le"))},
        ],
        [{"CommandLine": "-e " + b64(b"ping 1.1.1.1")}],
    ),
    (
        "utf16be|base64offset|contains",
        """
        sel:
            CommandLine|utf16be|base64offset|contains: 'ping'
        condition: sel
        """,
        [{"CommandLine": b64("a ping".encode("utf-16be"))}],
        [{"CommandLine": b64(b"a ping")}, {"CommandLine": b64("a pong".encode("utf-16be"))}],
    ),
    (
        "utf16 (with byte order mark)|base64",
        """
        sel:
            CommandLine|utf16|base64|contains: 'ping'
        condition: sel
        """,
        # b64 of BOM + UTF-16LE text, as the modifier builds it from the UTF-8 of the wide text
        [{"CommandLine": "x " + b64(("\ufeff" + "ping".encode("utf-16le").decode()).encode())}],
        [{"CommandLine": b64("ping".encode("utf-16le"))}],
    ),
    (
        "wide|contains on wide text",
        """
        sel:
            Payload|wide|contains: 'cmd'
        condition: sel
        """,
        [{"Payload": "x c\x00m\x00d\x00 y"}],
        [{"Payload": "cmd"}],
    ),
    (
        "cidr",
        """
        sel:
            DestinationIp|cidr:
                - '10.0.0.0/8'
                - 'fc00::/7'
        condition: sel
        """,
        [{"DestinationIp": "10.20.30.40"}, {"DestinationIp": "fd00::1"}],
        [{"DestinationIp": "11.0.0.1"}, {"DestinationIp": "fe80::1"}, {"DestinationIp": "x"}],
    ),
    (
        "not cidr",
        """
        sel:
            Initiated: 'true'
        filter:
            DestinationIp|cidr: '192.168.0.0/16'
        condition: sel and not filter
        """,
        [{"Initiated": "true", "DestinationIp": "8.8.8.8"}, {"Initiated": True}],
        [{"Initiated": "true", "DestinationIp": "192.168.1.1"}, {"Initiated": "false"}],
    ),
    (
        "exists: true",
        """
        sel:
            Signature|exists: true
        condition: sel
        """,
        [{"Signature": "x"}, {"Signature": None}, {"Signature": ""}],
        [{}, {"signature": "x"}],
    ),
    (
        "exists: false",
        """
        sel:
            Signature|exists: false
        condition: sel
        """,
        [{}, {"Other": 1}],
        [{"Signature": "x"}, {"Signature": None}],
    ),
    (
        "null",
        """
        sel:
            Signature: null
        condition: sel
        """,
        [{}, {"Signature": None}],
        [{"Signature": ""}, {"Signature": "x"}],
    ),
    (
        "not null",
        """
        filter:
            Signature: null
        condition: not filter
        """,
        [{"Signature": ""}, {"Signature": "x"}],
        [{}, {"Signature": None}],
    ),
    (
        "empty string",
        """
        sel:
            Signature: ''
        condition: sel
        """,
        [{"Signature": ""}],
        [{}, {"Signature": None}, {"Signature": " "}],
    ),
    (
        "fieldref",
        """
        sel:
            SubjectUserName|fieldref: TargetUserName
        condition: sel
        """,
        [{"SubjectUserName": "alice", "TargetUserName": "ALICE"}],
        [{"SubjectUserName": "alice", "TargetUserName": "bob"}, {"SubjectUserName": "alice"}],
    ),
    (
        "fieldref|contains",
        """
        sel:
            CommandLine|fieldref|contains: TargetFilename
        condition: sel
        """,
        [{"CommandLine": "copy x C:\\Temp\\A.exe", "TargetFilename": "c:\\temp\\a.exe"}],
        [{"CommandLine": "copy x", "TargetFilename": "c:\\temp\\a.exe"}],
    ),
    (
        "fieldref|startswith",
        """
        sel:
            Image|fieldref|startswith: ParentImage
        condition: sel
        """,
        [{"Image": "c:\\a\\b.exe", "ParentImage": "c:\\a"}],
        [{"Image": "c:\\a\\b.exe", "ParentImage": "\\b.exe"}],
    ),
    (
        "not fieldref",
        """
        sel:
            SubjectUserName|fieldref: TargetUserName
        condition: not sel
        """,
        [{"SubjectUserName": "alice", "TargetUserName": "bob"}],
        [{"SubjectUserName": "alice", "TargetUserName": "alice"}],
    ),
    (
        "gt",
        """
        sel:
            Count|gt: 10
        condition: sel
        """,
        [{"Count": 11}, {"Count": "10.5"}],
        [{"Count": 10}, {"Count": "ten"}, {"Count": True}, {}],
    ),
    (
        "gte",
        """
        sel:
            Count|gte: 10
        condition: sel
        """,
        [{"Count": 10}, {"Count": "10"}],
        [{"Count": 9.99}],
    ),
    (
        "lt",
        """
        sel:
            Count|lt: 10
        condition: sel
        """,
        [{"Count": 9}, {"Count": "-1"}, {"Count": [20, 5]}],
        [{"Count": 10}, {"Count": None}],
    ),
    (
        "lte",
        """
        sel:
            Count|lte: 10
        condition: sel
        """,
        [{"Count": 10}, {"Count": " 3 "}],
        [{"Count": 11}],
    ),
    (
        "neq",
        """
        sel:
            LogonType|neq: 3
        condition: sel
        """,
        [{"LogonType": 2}, {"LogonType": "10"}],
        [{"LogonType": 3}, {"LogonType": "3"}],
    ),
    (
        "number equals number and numeric string",
        """
        sel:
            EventID: 4688
        condition: sel
        """,
        [{"EventID": 4688}, {"EventID": "4688"}, {"EventID": [1, 4688]}],
        [{"EventID": 46880}, {"EventID": "4689"}],
    ),
    (
        "list of numbers",
        """
        sel:
            EventID:
                - 4624
                - 4625
        condition: sel
        """,
        [{"EventID": 4624}, {"EventID": "4625"}],
        [{"EventID": 4626}],
    ),
    (
        "boolean",
        """
        sel:
            Enabled: false
        condition: sel
        """,
        [{"Enabled": False}, {"Enabled": "False"}],
        [{"Enabled": True}, {"Enabled": 0}, {}],
    ),
    (
        "cased",
        """
        sel:
            CommandLine|cased|contains: 'Invoke-Mimikatz'
        condition: sel
        """,
        [{"CommandLine": "x Invoke-Mimikatz"}],
        [{"CommandLine": "x invoke-mimikatz"}, {"CommandLine": "x INVOKE-MIMIKATZ"}],
    ),
    (
        "hour",
        """
        sel:
            UtcTime|hour: 3
        condition: sel
        """,
        [{"UtcTime": "2024-05-01 03:15:00.123"}],
        [{"UtcTime": "2024-05-01 13:15:00.123"}, {"UtcTime": "not a time"}],
    ),
    (
        "keywords search the original and the message",
        """
        keywords:
            - 'Trojan*FOUND'
            - 'Rootkit'
        condition: keywords
        """,
        [
            {"event": {"original": "clamd: x: Trojan.Agent FOUND"}},
            {"message": "found a ROOTKIT here"},
            {"message": ["a", "rootkit b"]},
        ],
        [{"event": {"original": "clamd: OK"}, "other": "Rootkit"}, {"message": "FOUND Trojan"}],
    ),
    (
        "keywords fall back to every string when there is no original or message",
        """
        keywords:
            - 'rootkit'
        condition: keywords
        """,
        [{"a": {"b": ["x", "the ROOTKIT"]}}],
        [{"a": {"rootkit": "x"}}, {}],
    ),
    (
        "keywords with a field: AND",
        """
        keywords:
            - 'error'
        sel:
            service: 'sshd'
        condition: keywords and sel
        """,
        [{"message": "fatal error", "service": "SSHD"}],
        [{"message": "fatal error", "service": "cron"}, {"message": "ok", "service": "sshd"}],
    ),
    (
        "and, or, not, parentheses",
        """
        a:
            A: 1
        b:
            B: 1
        c:
            C: 1
        condition: a and not (b or c)
        """,
        [{"A": 1}, {"A": 1, "B": 2, "C": 2}],
        [{"A": 1, "B": 1}, {"A": 1, "C": 1}, {"B": 1}],
    ),
    (
        "precedence: not binds tighter than and, and than or",
        """
        a:
            A: 1
        b:
            B: 1
        c:
            C: 1
        condition: a or b and not c
        """,
        [{"A": 1, "C": 1}, {"B": 1}],
        [{"B": 1, "C": 1}, {}],
    ),
    (
        "1 of sel*",
        """
        sel_a:
            A: 1
        sel_b:
            B: 1
        other:
            C: 1
        condition: 1 of sel* and other
        """,
        [{"A": 1, "C": 1}, {"B": 1, "C": 1}],
        [{"A": 1}, {"C": 1}],
    ),
    (
        "all of sel*",
        """
        sel_a:
            A: 1
        sel_b:
            B: 1
        condition: all of sel*
        """,
        [{"A": 1, "B": 1}],
        [{"A": 1}, {"B": 1}],
    ),
    (
        "1 of them",
        """
        x:
            A: 1
        y:
            B: 1
        condition: 1 of them
        """,
        [{"A": 1}, {"B": 1}],
        [{"A": 2, "B": 2}],
    ),
    (
        "all of them",
        """
        x:
            A: 1
        y:
            B: 1
        condition: all of them
        """,
        [{"A": 1, "B": 1}],
        [{"A": 1}],
    ),
    (
        "not 1 of filter*",
        """
        sel:
            A: 1
        filter_x:
            B: 1
        filter_y:
            C: 1
        condition: sel and not 1 of filter_*
        """,
        [{"A": 1}],
        [{"A": 1, "B": 1}, {"A": 1, "C": 1}],
    ),
    (
        "a list of conditions is OR",
        """
        a:
            A: 1
        b:
            B: 1
        condition:
            - a
            - b
        """,
        [{"A": 1}, {"B": 1}],
        [{"C": 1}],
    ),
    (
        "dotted ECS fields",
        """
        sel:
            winlog.event_id: 1
            winlog.event_data.Image|endswith: '\\cmd.exe'
        condition: sel
        """,
        [
            {"winlog": {"event_id": 1, "event_data": {"Image": "c:\\cmd.exe"}}},
            {"winlog": {"event_id": "1", "event_data.Image": "c:\\CMD.exe"}},
        ],
        [{"winlog": {"event_id": 2, "event_data": {"Image": "c:\\cmd.exe"}}}],
    ),
    (
        "lists of objects",
        """
        sel:
            process.args|contains: '-enc'
        condition: sel
        """,
        [{"process": [{"args": ["powershell", "-ENC"]}]}],
        [{"process": [{"args": ["powershell"]}, {"name": "-enc"}]}],
    ),
]


@pytest.mark.parametrize(
    ("detection", "positives", "negatives"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_semantics(
    detection: str, positives: list[dict[str, Any]], negatives: list[dict[str, Any]]
) -> None:
    rule = compiled(detection)
    for event in positives:
        assert rule.matches(event), f"should match: {event!r}"
    for event in negatives:
        assert not rule.matches(event), f"should not match: {event!r}"


def test_utf16le_is_read_as_wide() -> None:
    """The specification lists utf16le as an alias of wide; pySigma 1.5 does not know the name,
    so socpipe teaches it: both give the same values."""
    values = []
    for modifier in ("wide", "utf16le"):
        text = (
            HEADER
            + f"    sel:\n        CommandLine|{modifier}|base64: 'ping'\n    condition: sel\n"
        )
        (rule,) = SigmaCollection.from_yaml(text, collect_errors=True).rules
        assert isinstance(rule, SigmaRule) and not rule.errors
        values.append([str(v) for item in rule.detection.detections["sel"].detection_items
                       for v in item.value])  # fmt: skip
    assert values[0] == values[1]


def test_base64_values_match_case_insensitively_like_every_sigma_string() -> None:
    """pySigma hands base64 values over as plain strings, so Sigma's default applies: a
    case-changed encoding matches too (a source of rare false positives, not of misses)."""
    rule = compiled(
        """
        sel:
            CommandLine|base64offset|contains: 'ping'
        condition: sel
        """
    )
    encoded = b64(b"xping")
    assert rule.matches({"CommandLine": encoded})
    assert rule.matches({"CommandLine": encoded.swapcase()})


EXPAND = """
sel:
    User|expand: '%admins%'
condition: sel
"""


def test_expand_without_a_value_fails_at_compile_time() -> None:
    with pytest.raises(SigmaCompileError) as failure:
        compiled(EXPAND)
    assert failure.value.reason is FailureReason.UNFILLED_PLACEHOLDER
    assert "placeholder %admins% has no value" in str(failure.value)


def test_expand_with_values_from_a_pipeline() -> None:
    rule = sigma_rule(EXPAND)
    pipeline = ProcessingPipeline(
        items=[ProcessingItem(ValueListPlaceholderTransformation())],
        vars={"admins": ["alice", "bob*"]},
    )
    pipeline.apply(rule)
    matcher = compile_rule(rule)
    assert matcher.matches({"User": "Alice"})
    assert matcher.matches({"User": "bobby"})
    assert not matcher.matches({"User": "carol"})


def test_expand_with_a_wildcard_from_a_pipeline() -> None:
    rule = sigma_rule(EXPAND)
    ProcessingPipeline(items=[ProcessingItem(WildcardPlaceholderTransformation())]).apply(rule)
    matcher = compile_rule(rule)
    assert matcher.matches({"User": "anyone"})
    assert not matcher.matches({})


def test_expand_into_a_query_expression_is_refused() -> None:
    rule = sigma_rule(EXPAND)
    transformation = QueryExpressionPlaceholderTransformation(expression="{field} in list")
    ProcessingPipeline(items=[ProcessingItem(transformation)]).apply(rule)
    with pytest.raises(SigmaCompileError) as failure:
        compile_rule(rule)
    assert failure.value.reason is FailureReason.UNSUPPORTED_VALUE


@pytest.mark.parametrize("pattern", [r"(a)\1", r"x(?=y)", r"(?<=a)b", r"(?!x)y"])
def test_a_regex_re2_cannot_compile_fails_with_the_rules_path(tmp_path: Path, pattern: str) -> None:
    path = tmp_path / "rules" / "bad_regex.yml"
    path.parent.mkdir()
    path.write_text(HEADER + f"    sel:\n        CommandLine|re: '{pattern}'\n    condition: sel\n")
    (rule,) = SigmaCollection.load_ruleset([path]).rules
    assert isinstance(rule, SigmaRule)
    with pytest.raises(SigmaCompileError) as failure:
        compile_rule(rule)
    error = failure.value
    assert error.reason is FailureReason.UNSUPPORTED_REGEX
    assert error.path == path
    assert str(path) in str(error)
    assert pattern in str(error)
    assert error.rule_id == "0b9d0c3e-4f4a-4c55-9a65-1d2d4b6f7a01"


def test_an_undefined_detection_in_the_condition_fails_at_compile_time() -> None:
    with pytest.raises(SigmaCompileError) as failure:
        compiled(
            """
            sel:
                A: 1
            condition: sel and missing
            """
        )
    assert failure.value.reason is FailureReason.INVALID_CONDITION
