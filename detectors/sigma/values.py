"""Value matchers: how one Sigma value, as pySigma hands it over, tests an event's field.

pySigma applies a rule's modifiers when it parses the rule, so by the time the compiler sees a
value, ``contains``/``startswith``/``endswith``/``windash``/``base64``/``base64offset``/``wide``/
``utf16*`` have become a :class:`~sigma.types.SigmaString` (with wildcard parts) or a
:class:`~sigma.types.SigmaExpansion` of them; ``cased`` a :class:`~sigma.types.SigmaCasedString`;
``re`` (with flags ``i``, ``m``, ``s``) a :class:`~sigma.types.SigmaRegularExpression`; ``cidr``,
``gt``/``gte``/``lt``/``lte``, ``exists``, ``fieldref`` and the time-part modifiers their own
types; ``all`` and ``neq`` shape the condition tree instead. :func:`compile_value` turns one such
value into a list of :data:`ValueTest` (an expansion gives several, ORed), and
:func:`field_predicate` / :func:`keyword_predicate` fuse the tests ORed on one field into one
function, so a list of twenty ``endswith`` values costs one ``str.endswith(tuple)``.

Semantics, after the Sigma specification (sigma-appendix-modifiers):

- strings match case-insensitively (both sides :meth:`str.casefold`-ed) unless ``cased``;
  ``*`` is any run of characters (newlines included), ``?`` any one character, ``\\*`` a star;
  plain, prefix, suffix, contains and star-only patterns run as ``str`` methods, only patterns
  with ``?`` as RE2 regexes;
- ``re`` searches (is not anchored) with google-re2, case-sensitive unless ``i``; a pattern RE2
  cannot compile (backreferences, lookaround) fails when the rule compiles, never at match time;
- a field holding a list matches when any element does; numbers compare with strings by their
  decimal form, and numeric modifiers parse numeric strings;
- ``null`` matches a missing field or None; ``exists`` asks only whether the key is present.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import re2
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
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
    TimestampPart,
)

from detectors.sigma.fields import MISSING, field_getter, iter_scalars, texts_of, value_text


class FailureReason(enum.StrEnum):
    """Why a rule could not be compiled; the corpus test allows some of these by name."""

    UNFILLED_PLACEHOLDER = "unfilled placeholder"
    UNSUPPORTED_REGEX = "regex RE2 cannot compile"
    UNSUPPORTED_VALUE = "unsupported value type"
    INVALID_CONDITION = "invalid condition"
    INVALID_RULE = "invalid rule"
    NOT_A_DETECTION_RULE = "not a detection rule"


class ValueCompileError(ValueError):
    """A value the matcher cannot compile; the compiler adds the rule's path to it."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class PatternKind(enum.Enum):
    """How a wildcard string is checked, cheapest first."""

    ANY = enum.auto()  # "*": any value with a text
    EQUALS = enum.auto()
    PREFIX = enum.auto()
    SUFFIX = enum.auto()
    CONTAINS = enum.auto()
    GLOB = enum.auto()  # stars only: prefix, ordered middles, suffix
    WILDCARD = enum.auto()  # has "?": an RE2 regex


_PATTERN_COST: Final = {
    PatternKind.ANY: 1,
    PatternKind.EQUALS: 1,
    PatternKind.PREFIX: 2,
    PatternKind.SUFFIX: 2,
    PatternKind.CONTAINS: 3,
    PatternKind.GLOB: 4,
    PatternKind.WILDCARD: 8,
}


@dataclass(frozen=True, slots=True)
class TextPattern:
    """A Sigma string pattern, split into literal parts (casefolded unless ``cased``).

    ``parts`` is ``(literal,)`` for EQUALS, PREFIX, SUFFIX and CONTAINS; ``(prefix, *middles,
    suffix)`` for GLOB; the literal runs between wildcards for WILDCARD, whose RE2 source is
    ``regex``; empty for ANY.
    """

    kind: PatternKind
    cased: bool
    parts: tuple[str, ...]
    regex: str = ""

    @property
    def cost(self) -> int:
        """A relative cost, to check cheap tests first."""
        return _PATTERN_COST[self.kind]

    def literal(self) -> str | None:
        """The longest casefolded substring every matching text contains, if any."""
        best = max(self.parts, key=len, default="")
        return best.casefold() if best else None


@dataclass(frozen=True, slots=True)
class ScalarTest:
    """A test of one event value that is not a list (numbers, booleans, regexes, time parts)."""

    name: str
    test: Callable[[Any], bool]
    cost: int
    # For numeric equality: the number (so an index can look the rule up by the event's value).
    number: int | float | None = None


@dataclass(frozen=True, slots=True)
class CidrTest:
    """``cidr``: the value is an IP address inside ``network`` (tests of a field are merged)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    cost: int = 3


@dataclass(frozen=True, slots=True)
class PresenceTest:
    """A test of the field's whole value, :data:`MISSING` included: ``null`` and ``exists``."""

    name: str
    test: Callable[[Any], bool]
    cost: int = 0


@dataclass(frozen=True, slots=True)
class FieldRefTest:
    """``fieldref``: the field's value equals (starts, ends with, contains) another field's."""

    field: str
    starts_with: bool = False
    ends_with: bool = False
    cost: int = 4


ValueTest = TextPattern | ScalarTest | CidrTest | PresenceTest | FieldRefTest

# Contains-lists at least this long run as one RE2 alternation: its cost hardly grows with the
# number of needles, while a loop of `in` grows linearly (the break-even was ~16 on a 200-char
# command line).
_ALTERNATION_MIN: Final = 16


def compile_value(value: SigmaType, *, keyword: bool = False) -> list[ValueTest]:
    """The tests one Sigma value stands for (ORed); ``keyword``: a value without a field.

    Raises :class:`ValueCompileError` for unfilled placeholders, regexes RE2 cannot compile and
    value types a matcher cannot evaluate (pipeline query expressions).
    """
    if isinstance(value, SigmaExpansion):
        return [test for item in value.values for test in compile_value(item, keyword=keyword)]
    if isinstance(value, SigmaString):
        return [_pattern(value, cased=isinstance(value, SigmaCasedString), keyword=keyword)]
    if isinstance(value, SigmaRegularExpression):
        return [_regex(value)]
    if isinstance(value, SigmaCIDRExpression):
        return [CidrTest(value.network)]
    if isinstance(value, SigmaCompareExpression):
        return [_compare(value)]
    if isinstance(value, SigmaTimestampPart):
        return [_time_part(value)]
    if isinstance(value, SigmaNumber):
        if keyword:
            return [TextPattern(PatternKind.CONTAINS, False, (str(value.number),))]
        return [_number_equals(value.number)]
    if isinstance(value, SigmaBool):
        if keyword:
            return [TextPattern(PatternKind.CONTAINS, False, (str(value.boolean).lower(),))]
        return [_bool_equals(value.boolean)]
    if isinstance(value, SigmaNull):
        return [PresenceTest("null", _is_null)]
    if isinstance(value, SigmaExists):
        return [PresenceTest("exists", _exists if value.exists else _absent)]
    if isinstance(value, SigmaFieldReference):
        return [FieldRefTest(value.field, value.starts_with, value.ends_with)]
    raise ValueCompileError(
        FailureReason.UNSUPPORTED_VALUE,
        f"value {value!r} of type {type(value).__name__} cannot be matched on events",
    )


# --- strings -----------------------------------------------------------------------------------


def _pattern(value: SigmaString, *, cased: bool, keyword: bool) -> TextPattern:
    """Classify a wildcard string into the cheapest check that decides it."""
    parts: list[str | SpecialChars] = []
    for part in value.s:
        if isinstance(part, Placeholder):
            raise ValueCompileError(
                FailureReason.UNFILLED_PLACEHOLDER, f"placeholder %{part.name}% has no value"
            )
        if isinstance(part, str):
            if not part:
                continue
            if parts and isinstance(parts[-1], str):
                parts[-1] += part
                continue
        elif part is SpecialChars.WILDCARD_MULTI and parts and parts[-1] is part:
            continue  # "**" is "*"
        parts.append(part)
    if keyword:  # a keyword is searched for anywhere in the text
        if not parts or parts[0] is not SpecialChars.WILDCARD_MULTI:
            parts.insert(0, SpecialChars.WILDCARD_MULTI)
        if parts[-1] is not SpecialChars.WILDCARD_MULTI:
            parts.append(SpecialChars.WILDCARD_MULTI)

    def fold(text: str) -> str:
        return text if cased else text.casefold()

    if SpecialChars.WILDCARD_SINGLE in parts:
        return _wildcard(parts, cased=cased, fold=fold)
    # Stars only: split into the literal runs around them.
    runs: list[str] = [""]
    for part in parts:
        if isinstance(part, str):
            runs[-1] = fold(part)
        else:
            runs.append("")
    if len(runs) == 1:
        return TextPattern(PatternKind.EQUALS, cased, (runs[0],))
    first, *middles, last = runs
    middles = [middle for middle in middles if middle]
    if not middles:
        if not first and not last:
            return TextPattern(PatternKind.ANY, cased, ())
        if not last:
            return TextPattern(PatternKind.PREFIX, cased, (first,))
        if not first:
            return TextPattern(PatternKind.SUFFIX, cased, (last,))
    elif not first and not last and len(middles) == 1:
        return TextPattern(PatternKind.CONTAINS, cased, (middles[0],))
    return TextPattern(PatternKind.GLOB, cased, (first, *middles, last))


def _wildcard(
    parts: list[str | SpecialChars], *, cased: bool, fold: Callable[[str], str]
) -> TextPattern:
    """A pattern with ``?``: an RE2 regex over the (casefolded) text, anchored at both ends."""
    pieces = []
    literals = []
    for part in parts:
        if isinstance(part, str):
            literals.append(fold(part))
            pieces.append(re2.escape(fold(part)))
        elif part is SpecialChars.WILDCARD_MULTI:
            pieces.append(".*")
        else:
            pieces.append(".")
    # A leading or trailing ".*" is what an unanchored search does anyway, and cheaper.
    head = "" if pieces[0] == ".*" else r"\A"
    tail = "" if pieces[-1] == ".*" else r"\z"
    body = pieces[(1 if not head else 0) : (len(pieces) - 1 if not tail else len(pieces))]
    source = "(?s)" + head + "".join(body) + tail
    _search(source)  # fail at compile time if RE2 refuses it
    return TextPattern(PatternKind.WILDCARD, cased, tuple(literals), source)


def _text_matcher(patterns: Sequence[TextPattern]) -> Callable[[str], bool]:
    """One function that says whether a text matches any of ``patterns`` (all of one casing)."""
    if any(pattern.kind is PatternKind.ANY for pattern in patterns):
        return _always
    equals = frozenset(p.parts[0] for p in patterns if p.kind is PatternKind.EQUALS)
    prefixes = tuple(p.parts[0] for p in patterns if p.kind is PatternKind.PREFIX)
    suffixes = tuple(p.parts[0] for p in patterns if p.kind is PatternKind.SUFFIX)
    needles = tuple(dict.fromkeys([p.parts[0] for p in patterns if p.kind is PatternKind.CONTAINS]))
    globs = [_glob(p.parts) for p in patterns if p.kind is PatternKind.GLOB]
    regexes = [_search(p.regex) for p in patterns if p.kind is PatternKind.WILDCARD]
    checks: list[Callable[[str], bool]] = []
    if equals:
        checks.append(equals.__contains__)
    if prefixes:
        checks.append(lambda text: text.startswith(prefixes))
    if suffixes:
        checks.append(lambda text: text.endswith(suffixes))
    if needles:
        checks.append(_contains_any(needles))
    checks.extend(globs)
    checks.extend(regexes)
    return _any_of(checks)


def _contains_any(needles: tuple[str, ...]) -> Callable[[str], bool]:
    if len(needles) == 1:
        (needle,) = needles
        return lambda text: needle in text
    if len(needles) >= _ALTERNATION_MIN:
        try:
            return _search("|".join(re2.escape(needle) for needle in needles))
        except ValueCompileError:
            pass  # too large for RE2's memory budget: the loop below is correct, only slower

    def contains_any(text: str) -> bool:
        for needle in needles:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
            if needle in text:
                return True
        return False

    return contains_any


def _glob(parts: tuple[str, ...]) -> Callable[[str], bool]:
    """``prefix*m1*m2*suffix``: leftmost-first search for the middles is exact for star-only."""
    prefix, *middle_list, suffix = parts
    middles = tuple(middle_list)
    fixed = len(prefix) + len(suffix)

    def glob(text: str) -> bool:
        if len(text) < fixed or not text.startswith(prefix) or not text.endswith(suffix):
            return False
        start = len(prefix)
        end = len(text) - len(suffix)
        for middle in middles:
            found = text.find(middle, start, end)
            if found < 0:
                return False
            start = found + len(middle)
        return True

    return glob


# --- regular expressions -----------------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors become ValueCompileError; RE2's own log is noise
_RE2_OPTIONS.never_capture = True  # we only ask whether it matches


def _search(source: str) -> Callable[[str], bool]:
    """An unanchored RE2 search over a text; raises ValueCompileError if RE2 refuses it."""
    try:
        compiled = re2.compile(source, _RE2_OPTIONS)
    except (re2.error, UnicodeError, ValueError, TypeError) as error:
        detail: object = error
        if isinstance(error, re2.error) and error.args:
            detail = error.args[0]  # RE2 reports its reason as bytes
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
        raise ValueCompileError(
            FailureReason.UNSUPPORTED_REGEX, f"regex '{source}' is not supported by RE2: {detail}"
        ) from None
    fast = _fast_search(compiled)
    if fast is None:

        def public_search(text: str) -> bool:
            try:
                return compiled.search(text) is not None
            except UnicodeError:  # lone surrogates: RE2 takes UTF-8; search without them
                clean = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                return compiled.search(clean) is not None

        return public_search

    return fast


def _fast_search(compiled: Any) -> Callable[[str], bool] | None:
    """A search through google-re2's underlying RE2 object, or None if it is not there.

    The package's public search() wraps each call in a generator, offset decoding and a match
    object (~3.5 µs); the RE2 object it wraps answers the same question in ~1 µs. Callers fall
    back to the public API if a future release moves it.
    """
    match = getattr(getattr(compiled, "_regexp", None), "Match", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    if match is None or anchor is None:
        return None

    def search(text: str) -> bool:
        # surrogatepass: JSON may carry lone surrogates; RE2 treats the bytes as invalid UTF-8.
        data = text.encode("utf-8", "surrogatepass")
        return bool(match(anchor, data, 0, len(data))[0][0] != -1)

    return search


def _regex(value: SigmaRegularExpression) -> ScalarTest:
    if value.regexp.contains_placeholder():
        names = [part.name for part in value.regexp.s if isinstance(part, Placeholder)]
        raise ValueCompileError(
            FailureReason.UNFILLED_PLACEHOLDER, f"placeholder %{names[0]}% has no value"
        )
    flags = "".join(
        sorted(
            {
                SigmaRegularExpressionFlag.IGNORECASE: "i",
                SigmaRegularExpressionFlag.MULTILINE: "m",
                SigmaRegularExpressionFlag.DOTALL: "s",
            }[flag]
            for flag in value.flags
        )
    )
    source = str(value.regexp)
    search = _search(f"(?{flags}){source}" if flags else source)

    def regex(item: Any) -> bool:
        if type(item) is str:
            return search(item)
        text = value_text(item)
        return text is not None and search(text)

    return ScalarTest(f"re:{source}", regex, 8)


# --- numbers, booleans, comparisons, time parts ------------------------------------------------


def as_number(item: Any) -> int | float | None:
    """A number from an int, a float or a numeric string (``" 4688 "``, ``"1.5"``); else None."""
    kind = type(item)
    if kind is int or kind is float:
        return item  # type: ignore[no-any-return]
    if kind is str:
        text = item.strip()
        # Length-bounded: int() of a huge digit string is slow (and limited since 3.11).
        if not text or len(text) > 64 or "_" in text:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return None
    if isinstance(item, bool) or not isinstance(item, int | float):
        return None
    return item


def _number_equals(number: int | float) -> ScalarTest:
    text = str(number)

    def equals(item: Any) -> bool:
        kind = type(item)
        if kind is int or kind is float:
            return bool(item == number)
        if kind is str and item == text:
            return True
        found = as_number(item)
        return found is not None and found == number

    return ScalarTest(f"= {number}", equals, 1, number)


def _bool_equals(expected: bool) -> ScalarTest:
    text = "true" if expected else "false"

    def equals(item: Any) -> bool:
        if type(item) is bool:
            return bool(item is expected)
        return isinstance(item, str) and item.strip().casefold() == text

    return ScalarTest(f"= {text}", equals, 1)


_COMPARE: Final[dict[CompareOperators, Callable[[float, float], bool]]] = {
    CompareOperators.LT: lambda a, b: a < b,
    CompareOperators.LTE: lambda a, b: a <= b,
    CompareOperators.GT: lambda a, b: a > b,
    CompareOperators.GTE: lambda a, b: a >= b,
    CompareOperators.NEQ: lambda a, b: a != b,
}


def _compare(value: SigmaCompareExpression) -> ScalarTest:
    bound = value.number.number
    operator = _COMPARE[value.op]

    def compare(item: Any) -> bool:
        found = as_number(item)
        return found is not None and operator(found, bound)

    return ScalarTest(f"{value.op.name.lower()} {bound}", compare, 2)


def _time_part(value: SigmaTimestampPart) -> ScalarTest:
    """``minute``/``hour``/``day``/``week``/``month``/``year`` of a datetime or ISO 8601 text."""
    part = value.timestamp_part
    expected = value.number

    def extract(moment: date) -> int:
        if part is TimestampPart.YEAR:
            return moment.year
        if part is TimestampPart.MONTH:
            return moment.month
        if part is TimestampPart.WEEK:
            return moment.isocalendar()[1]
        if part is TimestampPart.DAY:
            return moment.day
        if not isinstance(moment, datetime):
            return -1
        return moment.hour if part is TimestampPart.HOUR else moment.minute

    def time_part(item: Any) -> bool:
        moment: date
        if isinstance(item, date):
            moment = item
        elif isinstance(item, str) and len(item) <= 64:
            try:
                moment = datetime.fromisoformat(item.strip())
            except ValueError:
                return False
        else:
            return False
        return extract(moment) == expected

    return ScalarTest(f"{part.name.lower()} = {expected}", time_part, 5)


# --- presence ----------------------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    if value is MISSING or value is None:
        return True
    if type(value) is list or type(value) is tuple:  # [] and [None] hold no value either
        return all(item is None for item in iter_scalars(value))
    return False


def _exists(value: Any) -> bool:
    return value is not MISSING


def _absent(value: Any) -> bool:
    return value is MISSING


# --- CIDR --------------------------------------------------------------------------------------


def _cidr_matcher(networks: Sequence[CidrTest]) -> Callable[[Any], bool]:
    """One address parse for all of a field's CIDRs, then integer range checks."""
    ranges4 = tuple(
        (int(t.network.network_address), int(t.network.broadcast_address))
        for t in networks
        if t.network.version == 4
    )
    ranges6 = tuple(
        (int(t.network.network_address), int(t.network.broadcast_address))
        for t in networks
        if t.network.version == 6
    )

    def in_ranges(number: int, ranges: tuple[tuple[int, int], ...]) -> bool:
        for low, high in ranges:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
            if low <= number <= high:
                return True
        return False

    def cidr(item: Any) -> bool:
        if not isinstance(item, str) or len(item) > 64:
            return False
        try:
            address = ipaddress.ip_address(item.strip())
        except ValueError:
            return False
        if address.version == 4:
            return in_ranges(int(address), ranges4)
        if in_ranges(int(address), ranges6):
            return True
        # ::ffff:10.0.0.1 is 10.0.0.1 (Elasticsearch stores IPv4 that way too).
        mapped = address.ipv4_mapped
        return mapped is not None and in_ranges(int(mapped), ranges4)

    return cidr


# --- fusing the tests of one field or of the keywords ------------------------------------------


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _any_of(checks: Sequence[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if not checks:
        return _never
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda item: first(item) or second(item)
    fixed = tuple(checks)

    def any_of(item: Any) -> bool:
        for check in fixed:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
            if check(item):
                return True
        return False

    return any_of


def scalar_predicate(
    tests: Sequence[TextPattern | ScalarTest | CidrTest],
) -> Callable[[Any], bool]:
    """One function of one (non-list) event value: does it pass any of ``tests``?"""
    folded = [t for t in tests if isinstance(t, TextPattern) and not t.cased]
    cased = [t for t in tests if isinstance(t, TextPattern) and t.cased]
    checks: list[Callable[[Any], bool]] = []
    if folded:
        match_folded = _text_matcher(folded)

        def folded_check(item: Any) -> bool:
            if type(item) is str:
                return match_folded(item.casefold())
            text = value_text(item)
            return text is not None and match_folded(text.casefold())

        checks.append(folded_check)
    if cased:
        match_cased = _text_matcher(cased)

        def cased_check(item: Any) -> bool:
            if type(item) is str:
                return match_cased(item)
            text = value_text(item)
            return text is not None and match_cased(text)

        checks.append(cased_check)
    networks = [t for t in tests if isinstance(t, CidrTest)]
    if networks:
        checks.append(_cidr_matcher(networks))
    scalars = sorted((t for t in tests if isinstance(t, ScalarTest)), key=lambda t: t.cost)
    checks.extend(t.test for t in scalars)
    return _any_of(checks)


def field_predicate(
    tests: Sequence[TextPattern | ScalarTest | CidrTest | PresenceTest],
) -> Callable[[Any], bool]:
    """One function of a field's fetched value (maybe :data:`MISSING`, None or a list): does it
    pass any of ``tests``? A list passes when any of its (flattened) items does."""
    presence = [t.test for t in tests if isinstance(t, PresenceTest)]
    scalar = scalar_predicate([t for t in tests if not isinstance(t, PresenceTest)])
    present = _any_of(presence)

    def on_value(value: Any) -> bool:
        if type(value) is list or type(value) is tuple:
            for item in iter_scalars(value):  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
                if scalar(item):
                    return True
            return False
        return scalar(value)

    if not presence:
        return on_value
    if scalar is _never:
        return present
    return lambda value: present(value) or on_value(value)


def keyword_predicate(
    tests: Sequence[TextPattern | ScalarTest | CidrTest],
) -> Callable[[list[str]], bool]:
    """One function of the keyword texts of an event: does any text pass any of ``tests``?"""
    scalar = scalar_predicate(tests)

    def keywords(texts: list[str]) -> bool:
        for text in texts:  # noqa: SIM110  # hot path: a loop is 2x any(<genexpr>)
            if scalar(text):
                return True
        return False

    return keywords


def fieldref_predicate(test: FieldRefTest) -> Callable[[Mapping[str, Any], Any], bool]:
    """A test of (event, the referring field's fetched value) against the referenced field.

    Case-insensitive, like Sigma's other string matches; with ``startswith``/``endswith``/
    ``contains`` the referring value starts with, ends with or contains the referenced one. Lists
    on either side match when any pair does; a missing side never matches.
    """
    get_other = field_getter(test.field)
    starts, ends = test.starts_with, test.ends_with

    def compare(text: str, other: str) -> bool:
        if starts and ends:
            return other in text
        if starts:
            return text.startswith(other)
        if ends:
            return text.endswith(other)
        return text == other

    def refers(event: Mapping[str, Any], value: Any) -> bool:
        texts = texts_of(value)
        if not texts:
            return False
        others = texts_of(get_other(event))
        return any(compare(text, other) for text in texts for other in others)

    return refers
