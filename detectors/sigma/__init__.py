"""Sigma detection: pySigma rules compiled into Python matchers over ECS events."""

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
