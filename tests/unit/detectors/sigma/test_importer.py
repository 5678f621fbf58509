"""``socpipe rules import``: what loads and compiles is installed whole, at once, with a manifest
saying why every other rule file was left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from detectors.sigma import importer
from detectors.sigma.compiler import SigmaCompileError, compile_rule
from detectors.sigma.importer import (
    MANIFEST,
    SIGMAHQ_FOLDERS,
    RuleImportError,
    git_commit,
    import_rules,
)
from detectors.sigma.loader import load_rules

TREE = Path(__file__).resolve().parent / "data" / "importer" / "sigmahq"
SHA = "8eaafff1f2845a696050e05e72ba1140ee190698"
INSTALLED = [
    "rules/linux/builtin/sshd/sshd_root_bruteforce.yml",
    "rules/linux/builtin/sshd/sshd_root_failed_password.yml",
    "rules/linux/builtin/sshd/sshd_two_documents.yml",
    "rules/windows/process_creation/proc_creation_win_whoami_all.yml",
]


def _manifest(target: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    return data


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _siblings(target: Path) -> list[str]:
    return sorted(path.name for path in target.parent.iterdir())


def test_import_installs_what_runs_and_says_why_the_rest_does_not(tmp_path: Path) -> None:
    target = tmp_path / "rules" / "sigmahq"
    report = import_rules(TREE, target)
    assert _files(target) == sorted([MANIFEST, *INSTALLED])  # no tests file, no deprecated/
    assert (target / INSTALLED[1]).read_bytes() == (TREE / INSTALLED[1]).read_bytes()
    assert _siblings(target) == ["sigmahq"]  # no temporary folder left
    manifest = _manifest(target)
    assert manifest == report.to_manifest()
    assert manifest["source"] == str(TREE) and manifest["commit"] is None
    assert manifest["roots"] == ["rules", "rules-threat-hunting", "rules-placeholder"]
    assert manifest["excluded"] == ["deprecated"]
    assert manifest["installed"] == INSTALLED
    assert manifest["counts"] == {
        "files": 8,  # regression_data/ and the tests file are not rules
        "rules_loaded": 4,
        "rules_compiled": 3,
        "correlations": 1,
        "files_installed": 4,
        "rules_installed": 4,  # two single rules, one of two documents, one correlation
        "files_skipped": 4,
        "skipped": {
            "compile failure: unfilled placeholder": 1,
            "load error": 1,
            "no detection rule": 1,
            "unsupported log source": 1,
        },
    }
    skipped = {entry["file"]: entry for entry in manifest["skipped"]}
    assert {file: entry["reason"] for file, entry in skipped.items()} == {
        "rules/cloud/aws/aws_root_console_login.yml": "unsupported log source",
        "rules/windows/process_creation/proc_creation_win_broken.yml": "load error",
        "rules-placeholder/windows/win_security_admin_logon.yml": (
            "compile failure: unfilled placeholder"
        ),
        "rules-threat-hunting/linux/empty.yml": "no detection rule",
    }
    placeholder = skipped["rules-placeholder/windows/win_security_admin_logon.yml"]["issues"]
    assert placeholder == [
        {
            "line": 10,  # the |expand key
            "reason": "compile failure: unfilled placeholder",
            "message": "placeholder %admin_users% has no value",
            "rule_id": "6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9a14",
            "title": "Logon By A Listed Admin",
        }
    ]
    broken = skipped["rules/windows/process_creation/proc_creation_win_broken.yml"]["issues"]
    assert broken[0]["line"] == 5 and broken[0]["message"].startswith("invalid YAML")
    aws = skipped["rules/cloud/aws/aws_root_console_login.yml"]["issues"][0]
    assert "{product: aws, service: cloudtrail}" in aws["message"]
    # The file of two documents is installed whole; its bad rule is listed as inactive.
    assert manifest["inactive"] == [
        {
            "file": "rules/linux/builtin/sshd/sshd_two_documents.yml",
            "reason": "load error",
            "issues": [
                {
                    "line": 21,
                    "reason": "load error",
                    "message": "Unknown modifier 'containz'",
                    "rule_id": "6f1d2a57-0c4e-4d2b-9a51-1f0e2b7c9a23",
                    "title": "SSH Login As Postgres With A Typo",
                }
            ],
        }
    ]
    lines = report.format_report()
    assert lines[1] == (
        "8 files: 4 rules loaded, 3 compiled, 1 correlations; 4 files installed (4 rules), "
        "4 skipped"
    )
    assert "  skipped, unsupported log source: 1" in lines
    assert "  not imported: deprecated" in lines
    verbose = report.format_report(verbose=True)
    assert (
        "rules-placeholder/windows/win_security_admin_logon.yml:10: compile failure: unfilled "
        "placeholder: placeholder %admin_users% has no value"
    ) in verbose
    # What was installed loads as the detector would load it: nothing but the good rules.
    installed = load_rules([target])
    assert (len(installed.loaded), len(installed.correlations)) == (3, 1)
    assert [problem.message for problem in installed.errors] == ["Unknown modifier 'containz'"]


def test_aside_folders_on_request(tmp_path: Path) -> None:
    report = import_rules(TREE, tmp_path / "all", include_aside=True)
    assert "deprecated/windows/proc_creation_win_old_whoami.yml" in report.installed
    assert report.excluded == [] and "deprecated" in report.roots


def test_a_plain_folder_of_rules(tmp_path: Path) -> None:
    source = tmp_path / "ours"
    shutil.copytree(TREE / "rules" / "linux", source / "linux")
    shutil.copytree(TREE / "deprecated", source / "linux" / "deprecated")
    report = import_rules(source, tmp_path / "target")
    assert report.roots == ["."]
    assert report.excluded == ["linux/deprecated"]
    assert _files(tmp_path / "target") == sorted(
        [MANIFEST, *(path.removeprefix("rules/") for path in INSTALLED[:3])]
    )


def test_reimport_replaces_the_previous_import(tmp_path: Path) -> None:
    target = tmp_path / "sigmahq"
    import_rules(TREE, target)
    smaller = tmp_path / "smaller"
    shutil.copytree(TREE / "rules" / "windows", smaller / "rules" / "windows")
    report = import_rules(smaller, target)
    assert report.installed == [INSTALLED[3]]
    assert _files(target) == [MANIFEST, INSTALLED[3]]  # the old rules are gone
    assert _manifest(target)["source"] == str(smaller)
    assert _siblings(target) == ["sigmahq", "smaller"]  # no temporary or old folder left


def test_a_failed_import_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sigmahq"
    import_rules(TREE, target)
    before = _files(target)

    def failing_copy(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(importer.shutil, "copy2", failing_copy)
    with pytest.raises(RuleImportError, match=r"previous import kept: .*No space left"):
        import_rules(TREE, target)
    assert _files(target) == before
    assert _siblings(target) == ["sigmahq"]


def test_targets_that_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "etc"
    foreign.mkdir()
    (foreign / "passwd").write_text("root:x:0:0\n", encoding="utf-8")
    with pytest.raises(RuleImportError, match="not a previous import"):
        import_rules(TREE, foreign)
    assert _files(foreign) == ["passwd"]
    source = tmp_path / "source"
    shutil.copytree(TREE / "rules" / "windows", source / "rules" / "windows")
    for inside in (source, source / "rules" / "installed", tmp_path):
        with pytest.raises(RuleImportError, match="must lie outside"):
            import_rules(source, inside)
    with pytest.raises(RuleImportError, match="not a folder"):
        import_rules(tmp_path / "missing", tmp_path / "target")
    empty = tmp_path / "empty"
    (empty / "rules").mkdir(parents=True)
    with pytest.raises(RuleImportError, match="nothing to install"):
        import_rules(empty, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def _git(folder: Path) -> Path:
    git = folder / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/master\n", encoding="utf-8")
    return git


def test_the_commit_from_a_git_checkout(tmp_path: Path) -> None:
    source = tmp_path / "sigma"
    shutil.copytree(TREE, source)
    git = _git(source)
    (git / "packed-refs").write_text(
        f"# pack-refs with: peeled fully-peeled sorted\n{'1' * 40} refs/heads/other\n"
        f"{SHA} refs/heads/master\n^{'2' * 40}\n",
        encoding="utf-8",
    )
    assert git_commit(source) == SHA
    report = import_rules(source, tmp_path / "target")
    assert _manifest(tmp_path / "target")["commit"] == SHA
    assert ".git" not in " ".join(report.installed)
    (git / "refs" / "heads" / "master").write_text(f"{'a' * 40}\n", encoding="utf-8")
    assert git_commit(source) == "a" * 40  # a loose ref wins over packed-refs
    (git / "HEAD").write_text(f"{'b' * 40}\n", encoding="utf-8")
    assert git_commit(source) == "b" * 40  # a detached HEAD
    (git / "HEAD").write_text("ref: refs/heads/gone\n", encoding="utf-8")
    assert git_commit(source) is None


def test_the_commit_of_a_worktree(tmp_path: Path) -> None:
    main = _git(tmp_path / "main")
    (main / "refs" / "heads" / "master").write_text(f"{SHA}\n", encoding="utf-8")
    worktree_git = main / "worktrees" / "wt"
    worktree_git.mkdir(parents=True)
    (worktree_git / "HEAD").write_text("ref: refs/heads/master\n", encoding="utf-8")
    (worktree_git / "commondir").write_text("../..\n", encoding="utf-8")
    checkout = tmp_path / "wt"
    checkout.mkdir()
    (checkout / ".git").write_text(f"gitdir: {worktree_git}\n", encoding="utf-8")
    assert git_commit(checkout) == SHA
    assert git_commit(tmp_path) is None


@pytest.mark.slow
def test_the_sigmahq_corpus(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "sigma"
    target = tmp_path / "sigmahq"
    report = import_rules(source, target)
    # What load + compile accept, counted apart from the importer.
    result = load_rules([source / name for name in SIGMAHQ_FOLDERS])
    accepted: set[str] = set()
    for loaded in result.loaded:
        try:
            compile_rule(loaded.rule)
        except SigmaCompileError:
            continue
        accepted.add(str(loaded.path.relative_to(source)))
    assert report.files == result.files
    assert set(report.installed) == accepted
    assert report.rules_installed == len(accepted) + len(result.correlations)
    manifest = _manifest(target)
    corpus = {
        str(path.relative_to(source))
        for name in SIGMAHQ_FOLDERS
        for path in (source / name).rglob("*.yml")
    }
    skipped = {entry["file"]: entry for entry in manifest["skipped"]}
    assert set(manifest["installed"]) | set(skipped) == corpus
    assert not set(manifest["installed"]) & set(skipped)
    assert all(entry["reason"] and entry["issues"] for entry in skipped.values())
    assert set(manifest["counts"]["skipped"]) <= {
        "unsupported log source",
        "compile failure: unfilled placeholder",
    }
    assert _files(target) == sorted([MANIFEST, *manifest["installed"]])
    assert _siblings(target) == ["sigmahq"]
