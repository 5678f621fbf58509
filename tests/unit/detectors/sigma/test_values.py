"""Value matchers and field access: detectors.sigma.values and detectors.sigma.fields."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaQueryExpression,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
    TimestampPart,
)

from detectors.sigma import values
from detectors.sigma.fields import (
    MISSING,
    field_getter,
    field_texts,
    iter_scalars,
    keyword_texts,
    value_text,
)
from detectors.sigma.values import (
    CidrTest,
    FailureReason,
    FieldRefTest,
    PatternKind,
    PresenceTest,
    ScalarTest,
    TextPattern,
    ValueCompileError,
    as_number,
    compile_value,
    field_predicate,
    fieldref_predicate,
    keyword_predicate,
)

MULTI = SpecialChars.WILDCARD_MULTI
SINGLE = SpecialChars.WILDCARD_SINGLE


def predicate(value: Any) -> Any:
    """The fused field test of one Sigma value."""
    tests = compile_value(value)
    assert not any(isinstance(t, FieldRefTest) for t in tests)
    return field_predicate([t for t in tests if not isinstance(t, FieldRefTest)])


def pattern(text: str) -> TextPattern:
    (test,) = compile_value(SigmaString(text))
    assert isinstance(test, TextPattern)
    return test


# --- string patterns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "parts"),
    [
        ("cmd.exe", PatternKind.EQUALS, ("cmd.exe",)),
        ("", PatternKind.EQUALS, ("",)),
        ("C:\\Windows*", PatternKind.PREFIX, ("c:\\windows",)),
        ("*\\CMD.exe", PatternKind.SUFFIX, ("\\cmd.exe",)),
        ("*urlcache*", PatternKind.CONTAINS, ("urlcache",)),
        ("**urlcache***", PatternKind.CONTAINS, ("urlcache",)),
        ("*", PatternKind.ANY, ()),
        ("a*b", PatternKind.GLOB, ("a", "b")),
        ("*a*b*", PatternKind.GLOB, ("", "a", "b", "")),
        ("c:\\w*\\x*.exe", PatternKind.GLOB, ("c:\\w", "\\x", ".exe")),
        ("C:\\Windows\\*", PatternKind.EQUALS, ("c:\\windows*",)),  # \\* is a star
        ("a?c", PatternKind.WILDCARD, ("a", "c")),
        ("\\*literal\\?", PatternKind.EQUALS, ("*literal?",)),
    ],
)
def test_patterns_take_the_cheapest_kind(text: str, kind: PatternKind, parts: tuple[str]) -> None:
    test = pattern(text)
    assert test.kind is kind
    assert test.parts == parts
    assert not test.cased


def test_a_pattern_literal_is_its_longest_casefolded_run() -> None:
    assert pattern("*\\CertUtil.EXE").literal() == "\\certutil.exe"
    assert pattern("*Trojan*FOUND*").literal() == "trojan"
    assert pattern("ab?cdef").literal() == "cdef"
    assert pattern("*").literal() is None
    assert pattern("").literal() is None


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("cmd.exe", "CMD.EXE", True),
        ("cmd.exe", "cmd.exe ", False),
        ("*\\cmd.exe", "C:\\Windows\\System32\\CMD.exe", True),
        ("*\\cmd.exe", "C:\\Windows\\System32\\cmd.exe.bak", False),
        ("C:\\Windows*", "c:\\windows\\x", True),
        ("C:\\Windows*", "D:\\windows\\x", False),
        ("C:\\Windows\\*", "c:\\windows\\x", False),
        ("C:\\Windows\\*", "c:\\windows*", True),
        ("*urlcache*", "certutil -URLCACHE -f", True),
        ("*urlcache*", "certutil -url cache", False),
        ("a*b", "ab", True),
        ("a*b", "a", False),
        ("a*b*a", "aba", True),
        ("a*b*a", "aa", False),  # prefix and suffix must not overlap
        ("*a*b*c*", "xxAxxBxxCxx", True),
        ("*a*b*c*", "xxcxxbxxaxx", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("a?c", "A\nC", True),  # ? is any character, newline included
        ("a*c", "a\nb\nc", True),  # so is *
        ("*", "", True),
        ("*", "anything", True),
        ("", "", True),
        ("", "x", False),
        ("\\*literal", "*literal", True),
        ("\\*literal", "xliteral", False),
        ("50\\%", "50\\%", True),  # a backslash before a non-special character stays
        ("*straße*", "STRASSE", True),  # casefold, not lower
    ],
)
def test_string_patterns_match_case_insensitively(text: str, value: str, expected: bool) -> None:
    assert predicate(SigmaString(text))(value) is expected


def test_cased_strings_match_case_sensitively() -> None:
    check = predicate(SigmaCasedString.from_sigma_string(SigmaString("*Invoke-*")))
    assert check("x Invoke-Mimikatz")
    assert not check("x invoke-mimikatz")
    (test,) = compile_value(SigmaCasedString.from_sigma_string(SigmaString("AbC")))
    assert isinstance(test, TextPattern)
    assert test.cased
    assert test.literal() == "abc"  # literals are casefolded whatever the casing of the match


def test_strings_match_the_text_of_numbers_and_booleans() -> None:
    assert predicate(SigmaString("4688"))(4688)
    assert predicate(SigmaString("46*"))(4688)
    assert predicate(SigmaString("true"))(True)
    assert predicate(SigmaString("FALSE"))(False)
    assert not predicate(SigmaString("1"))(True)
    assert not predicate(SigmaString("*"))(None)
    assert not predicate(SigmaString("*"))(MISSING)
    assert not predicate(SigmaString("*"))({"a": "b"})


def test_a_list_value_matches_when_any_item_does() -> None:
    check = predicate(SigmaString("*\\cmd.exe"))
    assert check(["a", "c:\\cmd.exe"])
    assert check(["a", ["b", ["c:\\cmd.exe"]]])  # nested lists are flattened
    assert not check(["a", {"x": "c:\\cmd.exe"}])
    assert not check([])


def test_placeholders_without_value_fail_at_compile_time() -> None:
    value = SigmaString("%admins%").insert_placeholders()
    assert any(isinstance(part, Placeholder) for part in value.s)
    with pytest.raises(ValueCompileError) as failure:
        compile_value(value)
    assert failure.value.reason is FailureReason.UNFILLED_PLACEHOLDER
    assert str(failure.value) == "placeholder %admins% has no value"


def test_query_expressions_are_refused() -> None:
    with pytest.raises(ValueCompileError) as failure:
        compile_value(SigmaQueryExpression("{field} in list", "x"))
    assert failure.value.reason is FailureReason.UNSUPPORTED_VALUE


def test_large_contains_lists_give_the_same_answers() -> None:
    needles = [f"needle{i}-" for i in range(40)]
    check = predicate(SigmaExpansion([SigmaString(f"*{needle}*") for needle in needles]))
    assert check("x NEEDLE17- y")
    assert check("needle39-")
    assert not check("needle40-")
    assert not check("needle-")


def test_expansions_are_ored() -> None:
    expansion = SigmaExpansion([SigmaString("*-enc*"), SigmaString("*/enc*")])
    check = predicate(expansion)
    assert check("powershell /enc AAA")
    assert check("powershell -enc AAA")
    assert not check("powershell enc AAA")


# --- regular expressions -----------------------------------------------------------------------


def regex(source: str, *flags: SigmaRegularExpressionFlag) -> Any:
    return predicate(SigmaRegularExpression(source, set(flags)))


def test_regexes_search_case_sensitively() -> None:
    check = regex(r"-e(nc)?\s+[A-Za-z0-9+/]{8}")
    assert check("powershell.exe -enc SQBFAFgA")
    assert not check("powershell.exe -ENC SQBFAFgA")
    assert regex(r"^\d+$")(4688)  # numbers are matched by their text


def test_regex_flags() -> None:
    ignore, multi, dotall = (
        SigmaRegularExpressionFlag.IGNORECASE,
        SigmaRegularExpressionFlag.MULTILINE,
        SigmaRegularExpressionFlag.DOTALL,
    )
    assert regex("abc", ignore)("xABCx")
    assert not regex("^b$")("a\nb\nc")
    assert regex("^b$", multi)("a\nb\nc")
    assert not regex("a.c")("a\nc")
    assert regex("a.c", dotall)("a\nc")


@pytest.mark.parametrize("source", [r"(a)\1", r"(?=x)y", r"(?<!x)y", r"\Z"])
def test_regexes_re2_cannot_compile_fail_at_compile_time(source: str) -> None:
    with pytest.raises(ValueCompileError) as failure:
        compile_value(SigmaRegularExpression(source))
    assert failure.value.reason is FailureReason.UNSUPPORTED_REGEX
    assert source in failure.value.message


def test_regexes_survive_lone_surrogates_and_long_texts() -> None:
    check = regex("ab+c")
    assert check("\ud800abbc")
    assert not check("\udfff" * 10)
    assert check("x" * 1_000_000 + "abc")


def test_regexes_work_through_the_public_re2_api_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without google-re2's internals (a future release may move them), the public API serves."""
    monkeypatch.setattr(values, "_fast_search", lambda compiled: None)
    check = regex("ab+c")
    assert check("xabbc")
    assert check("\ud800abc")
    assert not check("ac")


# --- numbers, booleans, comparisons, time ------------------------------------------------------


def test_numbers_equal_numbers_and_their_strings() -> None:
    check = predicate(SigmaNumber(4688))
    assert check(4688)
    assert check(4688.0)
    assert check("4688")
    assert check(" 4688 ")
    assert check(["1", 4688])
    assert not check("4689")
    assert not check(True)  # a bool is not the number 1
    assert not check(None)
    assert not check("1" * 100_000)
    assert predicate(SigmaNumber(1))(1)
    assert not predicate(SigmaNumber(1))(True)
    assert predicate(SigmaNumber(1.5))("1.50")


def test_booleans() -> None:
    check = predicate(SigmaBool(True))
    assert check(True)
    assert check("True")
    assert not check(1)
    assert not check(False)
    assert predicate(SigmaBool(False))("false")


@pytest.mark.parametrize(
    ("op", "bound", "value", "expected"),
    [
        (CompareOperators.GT, 10, 11, True),
        (CompareOperators.GT, 10, 10, False),
        (CompareOperators.GTE, 10, "10", True),
        (CompareOperators.LT, 10, "9.5", True),
        (CompareOperators.LT, 10, "abc", False),
        (CompareOperators.LTE, 10, 10.0, True),
        (CompareOperators.LTE, 10, True, False),
        (CompareOperators.GT, 10, "nan", False),
        (CompareOperators.GT, 10, "1e400", True),
        (CompareOperators.NEQ, 10, 11, True),
        (CompareOperators.NEQ, 10, 10, False),
    ],
)
def test_comparisons(op: CompareOperators, bound: int, value: Any, expected: bool) -> None:
    check = predicate(SigmaCompareExpression(SigmaNumber(bound), op))
    assert check(value) is expected


def test_as_number() -> None:
    assert as_number("  12 ") == 12
    assert as_number("1.25") == 1.25
    assert as_number(7) == 7
    assert as_number(True) is None
    assert as_number("1_000") is None
    assert as_number("9" * 5000) is None
    assert as_number(None) is None


def test_time_parts() -> None:
    hour = predicate(SigmaTimestampPart(TimestampPart.HOUR, 3))
    assert hour("2024-05-01T03:15:00Z")
    assert hour(datetime(2024, 5, 1, 3, 0, tzinfo=UTC))
    assert not hour("2024-05-01T04:15:00Z")
    assert not hour("not a date")
    assert not hour(3)
    assert predicate(SigmaTimestampPart(TimestampPart.YEAR, 2024))("2024-05-01")
    assert predicate(SigmaTimestampPart(TimestampPart.WEEK, 18))("2024-05-01")


# --- CIDR --------------------------------------------------------------------------------------


def test_cidr_v4_and_v6() -> None:
    tests = [
        test
        for cidr in ("10.0.0.0/8", "192.168.0.0/16", "fc00::/7", "::1/128")
        for test in compile_value(SigmaCIDRExpression(cidr))
    ]
    assert all(isinstance(test, CidrTest) for test in tests)
    check = field_predicate([t for t in tests if isinstance(t, CidrTest)])
    assert check("10.1.2.3")
    assert check("192.168.255.255")
    assert not check("192.169.0.1")
    assert check("fd12::1")
    assert check("::1")
    assert not check("::2")
    assert check("::ffff:10.0.0.1")  # an IPv4-mapped address is its IPv4 address
    assert check("fd00::1%eth0")  # a zone id does not hide the address
    assert not check("fe80::1")
    assert not check("10.0.0")
    assert not check("not an ip")
    assert not check(167772161)  # an integer is not an address text
    assert check(["8.8.8.8", "10.9.9.9"])


def test_cidr_edges() -> None:
    check = predicate(SigmaCIDRExpression("172.16.0.0/12"))
    network = ipaddress.ip_network("172.16.0.0/12")
    assert check(str(network.network_address))
    assert check(str(network.broadcast_address))
    assert not check(str(network.broadcast_address + 1))
    assert not check(str(network.network_address - 1))


# --- null, exists, fieldref --------------------------------------------------------------------


def test_null_is_missing_or_none() -> None:
    check = predicate(SigmaNull())
    assert check(MISSING)
    assert check(None)
    assert check([])
    assert check([None])
    assert not check("")
    assert not check(0)
    assert not check(["x"])


def test_exists_asks_for_the_key_only() -> None:
    exists, absent = predicate(SigmaExists(True)), predicate(SigmaExists(False))
    values: list[Any] = [None, "", 0, [], {}]
    for value in values:
        assert exists(value)
        assert not absent(value)
    assert not exists(MISSING)
    assert absent(MISSING)


def test_presence_and_values_are_ored() -> None:
    tests = compile_value(SigmaNull()) + compile_value(SigmaString("x"))
    check = field_predicate([t for t in tests if isinstance(t, PresenceTest | TextPattern)])
    assert check(MISSING)
    assert check("X")
    assert not check("y")


def test_fieldref() -> None:
    (test,) = compile_value(SigmaFieldReference("user.target.name"))
    assert isinstance(test, FieldRefTest)
    refers = fieldref_predicate(test)
    event = {"user": {"name": "Alice", "target": {"name": "ALICE"}}}
    assert refers(event, "alice")
    assert refers(event, ["bob", "Alice"])
    assert not refers(event, "bob")
    assert not refers(event, MISSING)
    assert not refers({"user": {}}, "alice")
    contains = fieldref_predicate(FieldRefTest("other", starts_with=True, ends_with=True))
    assert contains({"other": "LIC"}, "alice")
    starts = fieldref_predicate(FieldRefTest("other", starts_with=True))
    assert starts({"other": "al"}, "alice")
    assert not starts({"other": "ce"}, "alice")
    ends = fieldref_predicate(FieldRefTest("other", ends_with=True))
    assert ends({"other": "ce"}, "alice")


# --- keywords ----------------------------------------------------------------------------------


def test_keywords_are_contains_searches() -> None:
    (test,) = compile_value(SigmaString("Trojan*FOUND"), keyword=True)
    assert isinstance(test, TextPattern)
    assert test.kind is PatternKind.GLOB
    check = keyword_predicate([test])
    assert check(["clamd: /tmp/x: Trojan.Agent FOUND now"])
    assert not check(["clamd: /tmp/x: FOUND Trojan"])
    (number,) = compile_value(SigmaNumber(4688), keyword=True)
    assert isinstance(number, TextPattern)
    assert number.kind is PatternKind.CONTAINS
    assert keyword_predicate([number])(["EventID 4688 seen"])
    assert not keyword_predicate([number])(["EventID 4689 seen"])


def test_keyword_texts_prefer_original_and_message() -> None:
    event = {"event": {"original": "raw line"}, "message": "msg", "other": "ignored"}
    assert keyword_texts(event) == ["raw line", "msg"]
    assert keyword_texts({"message": ["a", "b", 3]}) == ["a", "b"]
    fallback = keyword_texts({"a": "x", "b": {"c": ["y", 1, {"d": "z"}]}, "e": None})
    assert sorted(fallback) == ["x", "y", "z"]


# --- fields ------------------------------------------------------------------------------------


def test_field_getter_walks_nested_dicts() -> None:
    get = field_getter("winlog.event_data.CommandLine")
    event = {"winlog": {"event_data": {"CommandLine": "cmd /c"}}}
    assert get(event) == "cmd /c"
    assert get({"winlog": {"event_data": {}}}) is MISSING
    assert get({"winlog": "not a dict"}) is MISSING
    assert get({"winlog": {"event_data": {"CommandLine": None}}}) is None
    assert field_getter("Image")({"Image": 1}) == 1
    assert field_getter("Image")({}) is MISSING


def test_field_getter_accepts_dotted_keys() -> None:
    assert field_getter("winlog.event_id")({"winlog.event_id": 4688}) == 4688
    assert field_getter("a.b.c")({"a": {"b.c": 1}}) == 1
    assert field_getter("a.b.c")({"a.b": {"c": 2}}) == 2
    # The nested walk wins when it finds the field; dotted keys are the fallback.
    assert field_getter("a.b")({"a.b": 1, "a": {"b": 2}}) == 2
    assert sorted(field_getter("a.b.c")({"a.b": {"c": 1}, "a": {"b.c": 2}})) == [1, 2]


def test_field_getter_reads_any_mapping_and_stops_at_scalars() -> None:
    event = MappingProxyType({"a": MappingProxyType({"b": 1})})
    assert field_getter("a.b")(event) == 1
    assert field_getter("a")(event) == event["a"]
    assert field_getter("a.b.c")({"a": {"b": "scalar"}}) is MISSING
    assert field_getter("a.b")({"a": {"x.y": 1}}) is MISSING


def test_field_getter_goes_through_lists_of_objects() -> None:
    event = {"threat": [{"id": "a"}, {"id": ["b", "c"]}, {"other": 1}, "x"]}
    assert field_getter("threat.id")(event) == ["a", "b", "c"]
    assert field_getter("threat.id")({"threat": [{"id": "a"}]}) == "a"
    assert field_getter("threat.id")({"threat": []}) is MISSING


def test_field_getter_survives_deep_nesting() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    event = {"a": deep}
    assert field_getter("a.b")(event) is MISSING
    assert predicate(SigmaString("x"))(field_getter("a")(event))
    nested: Any = {}
    node = nested
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    assert field_getter("a.b")(nested) is MISSING
    assert keyword_texts(nested) == []


def test_iter_scalars_flattens() -> None:
    assert list(iter_scalars([1, [2, [3, (4,)]], [], "x"])) == [1, 2, 3, 4, "x"]


def test_value_text_and_field_texts() -> None:
    assert value_text("a") == "a"
    assert value_text(4688) == "4688"
    assert value_text(1.5) == "1.5"
    assert value_text(True) == "true"
    assert value_text(None) is None
    assert value_text({"a": 1}) is None
    assert value_text(MISSING) is None
    event = {"a": {"b": ["X", 2, None, {"c": 1}, True]}}
    assert field_texts(event, "a.b") == ["x", "2", "true"]
    assert field_texts(event, "a.z") == []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30).map(lambda b: b.decode("utf-8", "replace")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "a.b", "c", ""]), children, max_size=4)
    ),
    max_leaves=20,
)

ALL_VALUES = [
    SigmaString("*a?b*"),
    SigmaString("x*y"),
    SigmaString("*\\cmd.exe"),
    SigmaCasedString.from_sigma_string(SigmaString("A*")),
    SigmaNumber(5),
    SigmaBool(False),
    SigmaRegularExpression("a+b"),
    SigmaCIDRExpression("10.0.0.0/8"),
    SigmaCompareExpression(SigmaNumber(3), CompareOperators.GTE),
    SigmaTimestampPart(TimestampPart.MINUTE, 5),
    SigmaNull(),
    SigmaExists(True),
]


@settings(max_examples=300, deadline=None)
@given(event=st.dictionaries(st.sampled_from(["a", "b", "a.b"]), json_values, max_size=4))
def test_value_tests_never_raise(event: dict[str, Any]) -> None:
    for path in ("a", "a.b", "b.a.b"):
        value = field_getter(path)(event)
        for sigma_value in ALL_VALUES:
            assert predicate(sigma_value)(value) in (True, False)
        field_texts(event, path)
    for sigma_value in ALL_VALUES[:3]:
        tests = [
            t
            for t in compile_value(sigma_value, keyword=True)
            if isinstance(t, TextPattern | ScalarTest | CidrTest)
        ]
        assert keyword_predicate(tests)(keyword_texts(event)) in (True, False)
