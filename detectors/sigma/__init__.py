"""Sigma detection: pySigma rules compiled into Python matchers over ECS events."""

from sigma.modifiers import SigmaWideModifier, modifier_mapping

from detectors.sigma.compiler import (
    KEYWORDS,
    CompiledRule,
    CompileReport,
    LiteralGroup,
    LogSource,
    SigmaCompileError,
    compile_rule,
    compile_rules,
)
from detectors.sigma.fields import MISSING, field_getter, field_texts, keyword_texts
from detectors.sigma.values import FailureReason

# pySigma 1.5 knows wide, utf16 and utf16be but not utf16le, the Sigma specification's name for
# wide. Its parser looks modifiers up in this module-level mapping (the one its plugins extend),
# so the name is added when this package is imported, before any rule is parsed here.
modifier_mapping.setdefault("utf16le", SigmaWideModifier)

__all__ = [
    "KEYWORDS",
    "MISSING",
    "CompileReport",
    "CompiledRule",
    "FailureReason",
    "LiteralGroup",
    "LogSource",
    "SigmaCompileError",
    "compile_rule",
    "compile_rules",
    "field_getter",
    "field_texts",
    "keyword_texts",
]
