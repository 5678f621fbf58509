"""The console's files, checked without a browser (tests/e2e/test_console.py drives one): every
module parses, both languages have the same keys, every key the code asks for has a text, no
file builds markup from data or reaches outside the console's origin, and the package ships
every file."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerting.store import InMemoryAlertStore
from api.app import create_app
from api.audit import InMemoryAuditLog
from api.users import InMemoryUserStore
from socpipe.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]
STATIC = ROOT / "api" / "static"
MODULES = sorted((STATIC / "js").rglob("*.js"))
PARTS = sorted((STATIC / "js" / "i18n").glob("*.js"))
# Texts that are the same in both languages on purpose (names of the languages themselves).
SAME_IN_BOTH = {"language.vi", "language.en", "common.none"}


def _node() -> str:
    node = shutil.which("node")
    assert node, "node (Node.js, on every machine of this kind) checks the console's modules"
    return node


@cache
def dictionaries() -> dict[str, dict[str, dict[str, str]]]:
    """Each i18n part as node imports it: {part: {"vi": {...}, "en": {...}}}."""
    script = (
        "const parts = {};"
        "for (const file of process.argv.slice(1)) {"
        "  parts[file] = (await import(file)).default;"
        "}"
        "console.log(JSON.stringify(parts));"
    )
    result = subprocess.run(
        [_node(), "--input-type=module", "-e", script, *map(str, PARTS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {Path(k).stem: v for k, v in json.loads(result.stdout).items()}


def test_every_module_parses() -> None:
    for module in MODULES:
        result = subprocess.run(
            [_node(), "--check", str(module)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{module.relative_to(ROOT)}: {result.stderr}"


def test_both_languages_have_the_same_keys_and_different_texts() -> None:
    seen: dict[str, str] = {}
    for part, languages in dictionaries().items():
        assert set(languages) == {"vi", "en"}, part
        vi, en = languages["vi"], languages["en"]
        assert set(vi) == set(en), (
            f"{part}: only vi {set(vi) - set(en)}, only en {set(en) - set(vi)}"
        )
        for key in vi:
            assert key not in seen, f"{key} is in both {seen[key]} and {part}"
            seen[key] = part
            assert vi[key].strip() and en[key].strip(), f"{part}: {key} is empty"
            # The same {placeholders} in both, or one language would show a raw "{name}".
            assert set(re.findall(r"\{(\w+)\}", vi[key])) == set(
                re.findall(r"\{(\w+)\}", en[key])
            ), f"{part}: {key} has other placeholders in vi and en"
        untranslated = {k for k in vi if vi[k] == en[k] and not k.startswith("language.")}
        assert untranslated <= SAME_IN_BOTH, f"{part}: same text in vi and en: {untranslated}"
    # Vietnamese is written with its diacritics (text without them is hard to read).
    vietnamese = [text for part in dictionaries().values() for text in part["vi"].values()]
    with_marks = [
        text
        for text in vietnamese
        if re.search(r"[ăâđêôơưàáạảãèéẹẻẽìíịỉĩòóọỏõùúụủũỳýỵỷỹ]", text, re.I)
    ]
    assert len(with_marks) > 0.8 * len(vietnamese)


def _code(path: Path) -> str:
    """A file without its comment lines (which may name what the code avoids)."""
    return re.sub(r"^\s*(//|/\*|\*).*$", "", path.read_text(encoding="utf-8"), flags=re.M)


def _keys() -> set[str]:
    return {key for part in dictionaries().values() for key in part["en"]}


def test_every_text_the_code_asks_for_exists() -> None:
    keys = _keys()
    for module in MODULES:
        if module.parent.name == "i18n":
            continue
        source = _code(module)
        for key in re.findall(r"\bt\(\s*\"([^\"]+)\"", source):
            assert key in keys, f"{module.relative_to(ROOT)} asks for {key!r}, which has no text"
        # t(`severity.${x}`): some text must start so.
        for prefix in re.findall(r"\bt\(\s*`([^`$]*)\$\{", source):
            assert any(k.startswith(prefix) for k in keys), f"{module.name}: no text {prefix}…"


@pytest.mark.parametrize("path", sorted(p for p in STATIC.rglob("*") if p.is_file()), ids=str)
def test_no_markup_from_data_and_nothing_from_elsewhere(path: Path) -> None:
    text = _code(path)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in text, f"{path.name} uses {sink}"
    assert "style=" not in text or path.suffix == ".svg", f"{path.name}: inline style (CSP)"
    addresses = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
    assert not addresses, f"{path.name} reaches outside the console: {addresses}"


def test_the_package_ships_every_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["api"]
    for path in STATIC.rglob("*"):
        if path.is_file() and path.name != "package.json":
            relative = path.relative_to(ROOT / "api").as_posix()
            assert any(
                fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/")
                for p in patterns
            ), f"{relative} is not in the package data"


def test_the_api_serves_each_module_as_javascript() -> None:
    settings = load_settings(api={"tokens": []})
    client = TestClient(
        create_app(
            settings,
            store=InMemoryAlertStore(3600),
            users=InMemoryUserStore(),
            audit=InMemoryAuditLog(),
        )
    )
    for module in MODULES:
        answer = client.get("/" + module.relative_to(STATIC).as_posix())
        assert answer.status_code == 200, module
        assert answer.headers["content-type"].startswith("text/javascript"), module
