"""Rule-set bundles: the same files make the same version; a bundle is checked before it runs;
nothing in a bundle can write outside its folder."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import orjson
import pytest

from detectors.sigma.bundle import (
    MANIFEST,
    BundleError,
    bundle_files,
    check,
    pack,
    prune,
    refusals,
    unpack,
)

RULES = Path(__file__).resolve().parents[4] / "rules" / "socpipe"


def test_the_same_files_make_the_same_version_and_any_change_another() -> None:
    files = bundle_files([RULES])
    assert any(name.startswith("pipelines/") for name in files)
    assert all(not name.endswith(".tests.yml") or name.startswith("rules/") for name in files)
    first, again = pack(files), pack(dict(reversed(list(files.items()))))
    assert first.version == again.version
    changed = dict(files)
    name = next(n for n in files if n.endswith("sshd_invalid_user.yml"))
    changed[name] = files[name].replace(b"level: low", b"level: medium")
    assert pack(changed).version != first.version
    assert pack(files, placeholders={"admins": ["QTV-PC01"]}).version != first.version


def test_unpacked_bundles_load_as_the_rules_did(tmp_path: Path) -> None:
    bundle = pack(bundle_files([RULES]), placeholders={"admins": ["QTV-PC01"]})
    unpacked = unpack(bundle.data, tmp_path)
    assert unpacked.version == bundle.version
    assert unpacked.placeholders == {"admins": ["QTV-PC01"]}
    assert unpacked.pipelines is not None and (unpacked.pipelines / "linux.yml").is_file()
    report = check(unpacked)
    assert report.compiled >= 3 and refusals(report) == []
    assert unpack(bundle.data, tmp_path).root == unpacked.root  # a version is unpacked once
    prune(tmp_path, keep=[])
    assert not unpacked.root.exists()


def test_a_rule_that_does_not_load_refuses_the_set(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "title: x\nlogsource: {product: linux, service: sshd}\n"
        "detection:\n  sel: {event.action: ssh_login}\n  condition: sel and absent\n",
        encoding="utf-8",
    )
    report = check(unpack(pack(bundle_files([RULES, broken])).data, tmp_path / "u"))
    problems = refusals(report)
    assert problems and "absent" in " ".join(problems)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip at all", "not a rule-set bundle"),
        (_zip({"rules/0/a.yml": b"x"}), MANIFEST),
        (_zip({MANIFEST: b'{"version": "../../etc"}'}), "no valid version"),
        (
            _zip({MANIFEST: orjson.dumps({"version": "abc123"}), "../outside.yml": b"x"}),
            "leaves its folder",
        ),
        (
            _zip({MANIFEST: orjson.dumps({"version": "abc124"}), "/etc/cron.d/x": b"x"}),
            "leaves its folder",
        ),
    ],
)
def test_malformed_or_hostile_bundles_are_refused(
    tmp_path: Path, data: bytes, message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        unpack(data, tmp_path / "rulesets")
    assert not (tmp_path / "outside.yml").exists()
    leftovers = list((tmp_path / "rulesets").iterdir()) if (tmp_path / "rulesets").exists() else []
    assert leftovers == []
