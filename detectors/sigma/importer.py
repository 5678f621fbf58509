"""Importing a SigmaHQ checkout: the rules socpipe can run, installed whole and at once.

:func:`import_rules` (``socpipe rules import DIR [--into PATH]``) reads DIR as a SigmaHQ
checkout (its ``rules/``, ``rules-emerging-threats/``, ``rules-threat-hunting/``,
``rules-placeholder/`` and ``rules-compliance/``) or, when it has none of those, as a folder of
rules. Folders named ``deprecated`` or ``unsupported`` are left out unless asked for; so are
hidden folders and rule tests files (``*.tests.yml``). Every rule is loaded as the detector
loads it (:func:`load_rules`, the default pipeline) and compiled (:func:`compile_rule`).

A file is installed, whole and at its path relative to DIR, when one of its rules loads and
compiles (or one of its correlations resolves); else it is *skipped*, with the reason of each
of its rules: ``unsupported log source``, ``load error``, ``compile failure: <why>`` (e.g.
``unfilled placeholder``), or ``no detection rule``. Rules that do not load in a file that is
installed anyway (a file of several documents) are listed as *inactive*. ``IMPORT.json`` beside
the rules says where they came from (DIR, its git commit when DIR/.git exists), when, the
counts, every installed file, and every skipped or inactive rule with file, line and reason.

The install is atomic for readers: the rules are written to a temporary sibling of the target,
which is then swapped in (the old import renamed away, the new one renamed in, the old one
removed), so a detector reading the target sees the old import or the new one, never a mix;
only between the two renames is there no folder at all. Re-importing replaces the previous
import. The target must be absent, empty, or a previous import (it has ``IMPORT.json``): any
other folder is refused rather than replaced, and so is an import that would install nothing.
"""

from __future__ import annotations

import enum
import re
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson
from sigma.processing.pipeline import ProcessingPipeline

from detectors.sigma.compiler import SigmaCompileError, compile_rule
from detectors.sigma.loader import RULE_SUFFIXES, Problem, is_tests_file, load_rules
from detectors.sigma.pipelines import resolve_pipelines
from detectors.sigma.ruletest import failure_line
from socpipe.records import utcnow

SIGMAHQ_FOLDERS: Final = (
    "rules", "rules-emerging-threats", "rules-threat-hunting", "rules-placeholder",
    "rules-compliance",
)  # fmt: skip
ASIDE_FOLDERS: Final = frozenset({"deprecated", "unsupported"})
MANIFEST: Final = "IMPORT.json"
MANIFEST_VERSION: Final = 1
_SHA: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class RuleImportError(Exception):
    """An import that cannot be done (bad source or target, nothing to install, I/O error);
    the previous import, if any, is untouched."""


class SkipReason(enum.StrEnum):
    """Why a rule of the source will not run (compile failures add the compiler's reason)."""

    UNSUPPORTED_LOGSOURCE = "unsupported log source"
    LOAD_ERROR = "load error"
    COMPILE_FAILURE = "compile failure"
    NO_RULE = "no detection rule"


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """Why one rule of a file, or the whole file, will not run."""

    line: int | None
    reason: str
    message: str
    rule_id: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class FileIssues:
    """A file's path relative to the source, its main reason, and each of its rules' issues."""

    file: str
    reason: str
    issues: tuple[RuleIssue, ...]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's entry for the file."""
        issues = [
            {key: value for key, value in asdict(issue).items() if value is not None}
            for issue in self.issues
        ]
        return {"file": self.file, "reason": self.reason, "issues": issues}


@dataclass(frozen=True)
class ImportReport:
    """What an import found, installed and skipped, and why."""

    source: Path
    target: Path
    commit: str | None
    imported_at: datetime
    roots: list[str]
    excluded: list[str]
    files: int
    rules_loaded: int
    rules_compiled: int
    correlations: int
    installed: list[str]
    rules_installed: int
    skipped: list[FileIssues] = field(default_factory=list)
    inactive: list[FileIssues] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped_by_reason(self) -> Counter[str]:
        """How many files were skipped, by their main reason."""
        return Counter(entry.reason for entry in self.skipped)

    def to_manifest(self) -> dict[str, Any]:
        """The content of ``IMPORT.json``."""
        return {
            "version": MANIFEST_VERSION,
            "source": str(self.source),
            "commit": self.commit,
            "imported_at": self.imported_at.isoformat(),
            "roots": self.roots,
            "excluded": self.excluded,
            "counts": {
                "files": self.files,
                "rules_loaded": self.rules_loaded,
                "rules_compiled": self.rules_compiled,
                "correlations": self.correlations,
                "files_installed": len(self.installed),
                "rules_installed": self.rules_installed,
                "files_skipped": len(self.skipped),
                "skipped": dict(sorted(self.skipped_by_reason.items())),
            },
            "installed": self.installed,
            "skipped": [entry.to_dict() for entry in self.skipped],
            "inactive": [entry.to_dict() for entry in self.inactive],
        }

    def format_report(self, *, verbose: bool = False) -> list[str]:
        """A summary, skipped files by reason, and with ``verbose`` every skipped rule."""
        commit = f" (commit {self.commit[:12]})" if self.commit else ""
        lines = [
            f"imported {self.source}{commit} into {self.target} in {self.seconds:.1f} s",
            f"{self.files} files: {self.rules_loaded} rules loaded, {self.rules_compiled} "
            f"compiled, {self.correlations} correlations; {len(self.installed)} files installed "
            f"({self.rules_installed} rules), {len(self.skipped)} skipped",
        ]
        for reason, count in sorted(self.skipped_by_reason.items()):
            lines.append(f"  skipped, {reason}: {count}")
        if self.inactive:
            lines.append(f"  installed with inactive rules: {len(self.inactive)} files")
        if self.excluded:
            lines.append(f"  not imported: {', '.join(self.excluded)}")
        if verbose:
            for entry in [*self.skipped, *self.inactive]:
                for issue in entry.issues:
                    where = f"{entry.file}:{issue.line}" if issue.line else entry.file
                    lines.append(f"{where}: {issue.reason}: {issue.message}")
        return lines


def import_rules(
    source: Path,
    target: Path,
    *,
    include_aside: bool = False,
    pipeline: ProcessingPipeline | None = None,
) -> ImportReport:
    """Load and compile every rule of ``source``; install those that run into ``target``.

    ``include_aside`` also imports ``deprecated/`` and ``unsupported/`` folders. Raises
    :class:`RuleImportError` when the import cannot be done; see the module docstring.
    """
    started = time.monotonic()
    source, target = Path(source).resolve(), Path(target).resolve()
    _check_places(source, target)
    sigmahq = [source / name for name in SIGMAHQ_FOLDERS if (source / name).is_dir()]
    aside = [source / name for name in sorted(ASIDE_FOLDERS) if (source / name).is_dir()]
    roots = (sigmahq + aside if include_aside else sigmahq) if sigmahq else [source]
    files, excluded = _rule_files(roots, source, include_aside)
    if sigmahq and not include_aside:
        excluded = sorted({*excluded, *(folder.name for folder in aside)})
    result = load_rules(files, pipeline=pipeline or resolve_pipelines())
    issues: dict[Path, list[RuleIssue]] = {}
    for problem in result.problems:
        issues.setdefault(problem.path, []).append(_issue(problem))
    working: Counter[Path] = Counter()
    compiled = 0
    for loaded in result.loaded:
        try:
            compile_rule(loaded.rule)
        except SigmaCompileError as error:
            rule = loaded.rule
            issues.setdefault(loaded.path, []).append(
                RuleIssue(
                    failure_line(loaded, error.reason), f"{SkipReason.COMPILE_FAILURE}: "
                    f"{error.reason}", error.message,
                    str(rule.id) if rule.id else None, rule.title or None,
                )
            )  # fmt: skip
            continue
        compiled += 1
        working[loaded.path] += 1
    for correlation in result.correlations:
        if correlation.source is not None:
            working[Path(correlation.source.path)] += 1
    installed = [file for file in files if working[file]]
    if not installed:
        raise RuleImportError(f"{source}: no rule loads and compiles: nothing to install")
    skipped, inactive = [], []
    for file in files:
        found = issues.get(file)
        if not working[file]:
            found = found or [RuleIssue(None, str(SkipReason.NO_RULE), "the file holds no rule")]
            skipped.append(_file_issues(file, source, found))
        elif found:
            inactive.append(_file_issues(file, source, found))
    report = ImportReport(
        source=source,
        target=target,
        commit=git_commit(source),
        imported_at=utcnow(),
        roots=[str(root.relative_to(source)) for root in roots],
        excluded=excluded,
        files=len(files),
        rules_loaded=len(result.loaded),
        rules_compiled=compiled,
        correlations=len(result.correlations),
        installed=[str(file.relative_to(source)) for file in installed],
        rules_installed=sum(working.values()),
        skipped=skipped,
        inactive=inactive,
    )
    _install(source, target, installed, report)
    return replace(report, seconds=time.monotonic() - started)


def _check_places(source: Path, target: Path) -> None:
    """Refuse a missing source, a target inside it (or around it), or a foreign target."""
    if not source.is_dir():
        raise RuleImportError(f"{source}: not a folder")
    if target.is_relative_to(source) or source.is_relative_to(target):
        raise RuleImportError(f"{target}: the target must lie outside {source}, and not hold it")
    if target.exists() and not target.is_dir():
        raise RuleImportError(f"{target}: exists and is not a folder")
    if target.is_dir() and not (target / MANIFEST).is_file() and any(target.iterdir()):
        raise RuleImportError(
            f"{target}: not empty and not a previous import (no {MANIFEST}): refusing to "
            "replace it; choose another target or empty it"
        )


def _rule_files(
    roots: Iterable[Path], source: Path, include_aside: bool
) -> tuple[list[Path], list[str]]:
    """Rule files under ``roots`` (sorted), and the aside folders left out."""
    files: list[Path] = []
    excluded: set[str] = set()
    for root in roots:
        for path in root.rglob("*"):
            if path.suffix not in RULE_SUFFIXES or is_tests_file(path) or not path.is_file():
                continue
            parts = path.relative_to(source).parts
            if any(part.startswith(".") for part in parts):
                continue  # .git, .github: not rules
            aside = next((i for i, part in enumerate(parts[:-1]) if part in ASIDE_FOLDERS), None)
            if aside is not None and not include_aside:
                excluded.add("/".join(parts[: aside + 1]))
                continue
            files.append(path)
    return sorted(set(files)), sorted(excluded)


def _issue(problem: Problem) -> RuleIssue:
    unsupported = problem.kind == "unsupported-logsource" and problem.severity == "warning"
    reason = SkipReason.UNSUPPORTED_LOGSOURCE if unsupported else SkipReason.LOAD_ERROR
    return RuleIssue(problem.line, str(reason), problem.message, problem.rule_id, problem.title)


def _file_issues(file: Path, source: Path, issues: list[RuleIssue]) -> FileIssues:
    """The file's issues; its main reason is the worst: load error, compile, unsupported."""

    def rank(issue: RuleIssue) -> int:
        if issue.reason.startswith(SkipReason.COMPILE_FAILURE):
            return 1
        return 0 if issue.reason == SkipReason.UNSUPPORTED_LOGSOURCE else 2

    main = max(issues, key=rank).reason
    return FileIssues(str(file.relative_to(source)), main, tuple(issues))


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder`` (``.git`` a folder, or a file naming the git dir
    of a worktree or submodule), from HEAD and the ref file or packed-refs; None if unknown."""
    git = folder / ".git"
    try:
        if git.is_file():
            pointer = git.read_text(encoding="utf-8").strip()
            if not pointer.startswith("gitdir:"):
                return None
            git = folder / pointer.removeprefix("gitdir:").strip()
        if not git.is_dir():
            return None
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if _SHA.fullmatch(head) else None
        ref = head.removeprefix("ref:").strip()
        # A worktree keeps HEAD itself but shares refs with the main git dir (commondir).
        common = git / "commondir"
        shared = git / common.read_text(encoding="utf-8").strip() if common.is_file() else git
        for base in dict.fromkeys((git, shared)):
            loose = base / ref
            if loose.is_file():
                sha = loose.read_text(encoding="utf-8").strip()
                return sha if _SHA.fullmatch(sha) else None
        packed = shared / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref and _SHA.fullmatch(sha):
                    return sha
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _install(source: Path, target: Path, files: list[Path], report: ImportReport) -> None:
    """Copy ``files`` and the manifest into a temporary sibling of ``target``, then swap."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.import-", dir=parent))
    except OSError as error:
        raise RuleImportError(f"{parent}: cannot create the import folder: {error}") from error
    try:
        # mkdtemp makes the folder private; the detector may run as another user.
        staging.chmod(target.stat().st_mode & 0o777 if target.is_dir() else 0o755)
        for file in files:
            destination = staging / file.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, destination)
        manifest = orjson.dumps(report.to_manifest(), option=orjson.OPT_INDENT_2)
        (staging / MANIFEST).write_bytes(manifest + b"\n")
        _swap(staging, target)
    except OSError as error:
        raise RuleImportError(f"{target}: import failed, previous import kept: {error}") from error
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` in place of ``target``: old renamed away, new renamed in, old removed."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
        target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)  # put the previous import back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "ASIDE_FOLDERS",
    "MANIFEST",
    "SIGMAHQ_FOLDERS",
    "FileIssues",
    "ImportReport",
    "RuleImportError",
    "RuleIssue",
    "SkipReason",
    "git_commit",
    "import_rules",
]
