"""The compiled hot modules are never older than their source."""

from __future__ import annotations

import importlib.machinery
import os
from pathlib import Path

import pytest

from socpipe.native import MODULES, StaleNativeModuleError, check_current, stale

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, module: str, *, compiled_age: float) -> Path:
    source = tmp_path / module
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("x = 1\n")
    compiled = Path(f"{source.with_suffix('')}{SUFFIX}")
    compiled.write_bytes(b"\x7fELF")
    now = source.stat().st_mtime
    os.utime(compiled, (now + compiled_age, now + compiled_age))
    return compiled


def test_a_compiled_module_older_than_its_source_is_refused(tmp_path: Path) -> None:
    module = MODULES[0]
    _tree(tmp_path, module, compiled_age=-60)
    assert stale(tmp_path) == [module]
    with pytest.raises(StaleNativeModuleError, match="make native"):
        check_current(tmp_path)


def test_a_current_or_absent_compiled_module_is_fine(tmp_path: Path) -> None:
    _tree(tmp_path, MODULES[0], compiled_age=60)
    (tmp_path / MODULES[1]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / MODULES[1]).write_text("y = 2\n")  # never compiled: its source runs
    assert stale(tmp_path) == []
    check_current(tmp_path)


def test_the_compiled_modules_exist_in_the_tree() -> None:
    root = Path(__file__).resolve().parents[3]
    assert all((root / module).is_file() for module in MODULES)
