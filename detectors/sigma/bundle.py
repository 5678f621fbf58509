"""Rule-set bundles: rules, filters and pipelines as one versioned record of ``soc.rules``.

``socpipe rules publish PATH...`` packs every rule file under the paths, with the processing
pipelines (``rules/pipelines`` unless told otherwise), into one zip: ``rules/<n>/...`` per path
given, ``pipelines/*.yml``, and ``BUNDLE.json`` (version, when, by whom, the file list). The
version is a digest of every file's path and bytes, so the same files always make the same
version. The bundle is checked first (loaded and compiled exactly as a detector would; any
error refuses it) and then written to the compacted ``soc.rules`` topic under one key, so the
topic always holds the rule set in force; detectors watch it (``detectors.reload``).

A bundle is read back with :func:`unpack` into a folder of its own per version; nothing in it is
trusted: names are checked to stay inside that folder, and sizes are bounded.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import orjson

from detectors.sigma.hunt import EngineReport, build_hunter
from detectors.sigma.loader import RULE_SUFFIXES
from detectors.sigma.pipelines import PIPELINE_DIR
from detectors.sigma.values import FailureReason
from socpipe.records import utcnow

# The one key of soc.rules: compaction keeps the latest bundle, the rule set in force.
RULESET_KEY: Final = b"ruleset"
MANIFEST: Final = "BUNDLE.json"
# A SigmaHQ checkout zips to about 3 MB; the topic accepts up to MAX_BUNDLE_BYTES.
MAX_BUNDLE_BYTES: Final = 32 * 1024 * 1024
_MAX_UNPACKED_BYTES: Final = 256 * 1024 * 1024
_MAX_FILES: Final = 50_000


class BundleError(Exception):
    """A bundle that cannot be made or read: what is wrong, and where."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """A packed rule set: its version, manifest and zip bytes."""

    version: str
    manifest: Mapping[str, Any]
    data: bytes


@dataclass(frozen=True, slots=True)
class Unpacked:
    """A bundle written to disk: where its rules and pipelines are."""

    version: str
    root: Path
    rules: list[Path]
    pipelines: Path | None  # None: the bundle has none, socpipe's own apply
    placeholders: dict[str, list[str]]


def bundle_files(paths: Sequence[Path], pipelines: Path | None = None) -> dict[str, bytes]:
    """The files a bundle of ``paths`` holds, by their name in the bundle."""
    files: dict[str, bytes] = {}
    for number, path in enumerate(map(Path, paths)):
        if path.is_file():
            files[f"rules/{number}/{path.name}"] = path.read_bytes()
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix in RULE_SUFFIXES:
                    relative = file.relative_to(path).as_posix()
                    files[f"rules/{number}/{relative}"] = file.read_bytes()
        else:
            raise BundleError(f"{path}: no such file or directory")
    for file in sorted((pipelines or PIPELINE_DIR).glob("*.yml")):
        files[f"pipelines/{file.name}"] = file.read_bytes()
    return files


def version_of(files: Mapping[str, bytes], placeholders: Mapping[str, Sequence[str]]) -> str:
    """A digest of every file's name and bytes, and the placeholder values."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(files):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(hashlib.blake2b(files[name], digest_size=16).digest())
    digest.update(orjson.dumps(placeholders, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def pack(
    files: Mapping[str, bytes],
    *,
    placeholders: Mapping[str, Sequence[str]] | None = None,
    publisher: str = "",
    now: datetime | None = None,
) -> Bundle:
    """A zip of ``files`` with its manifest."""
    values = {name: list(items) for name, items in (placeholders or {}).items()}
    version = version_of(files, values)
    manifest = {
        "version": version,
        "created": (now or utcnow()).isoformat(),
        "publisher": publisher,
        "placeholders": values,
        "files": sorted(files),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        for name in sorted(files):
            archive.writestr(name, files[name])
    data = buffer.getvalue()
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"the bundle is {len(data):,} bytes, over the {MAX_BUNDLE_BYTES:,} soc.rules takes"
        )
    return Bundle(version, manifest, data)


def check(unpacked: Unpacked) -> EngineReport:
    """Load and compile the bundle's rules as a detector would; the report says what failed."""
    return build_hunter(unpacked.rules, unpacked.placeholders, unpacked.pipelines).report


def refusals(report: EngineReport) -> list[str]:
    """What makes a rule set unfit to run: load errors, and compile failures other than
    placeholders without values (those rules are left out, as the detector's config decides)."""
    unfilled = report.reasons.get(str(FailureReason.UNFILLED_PLACEHOLDER), 0)
    if not report.problems and report.failed == unfilled:
        return []
    return [message for message in report.messages if "has no value" not in message]


def manifest_of(data: bytes) -> dict[str, Any]:
    """A bundle's manifest (``BUNDLE.json``), checked; :class:`BundleError` if it has none."""
    with _open(data) as archive:
        return _read_manifest(archive)


def _open(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise BundleError(f"not a rule-set bundle: {error}") from None


def _read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = orjson.loads(archive.read(MANIFEST))
    except (KeyError, orjson.JSONDecodeError) as error:
        raise BundleError(f"bundle without a readable {MANIFEST}: {error}") from None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if not isinstance(version, str) or not version.isalnum():
        raise BundleError(f"{MANIFEST} has no valid version")
    return manifest  # type: ignore[no-any-return]


def unpack(data: bytes, into: Path) -> Unpacked:
    """Write a bundle under ``into/<version>`` (once: a version already there is reused).

    Raises :class:`BundleError` for anything that is not a well-formed bundle.
    """
    with _open(data) as archive:
        manifest = _read_manifest(archive)
        version = manifest["version"]
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > _MAX_FILES or sum(m.file_size for m in members) > _MAX_UNPACKED_BYTES:
            raise BundleError("bundle too large once unpacked")
        target = into / version
        if not target.is_dir():
            into.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=into))
            try:
                for info in members:
                    name = PurePosixPath(info.filename)
                    if name.is_absolute() or ".." in name.parts:
                        raise BundleError(f"bundle member {info.filename!r} leaves its folder")
                    destination = staging.joinpath(*name.parts)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.read(info))
                try:
                    staging.replace(target)
                except OSError:
                    if not target.is_dir():
                        raise
                    # Another detector on this machine unpacked the same version first.
                    shutil.rmtree(staging, ignore_errors=True)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    folder = target / "rules"
    rules = sorted(folder.iterdir()) if folder.is_dir() else []
    pipelines = target / "pipelines"
    placeholders = manifest.get("placeholders") or {}
    return Unpacked(version, target, rules, pipelines if pipelines.is_dir() else None, placeholders)


def prune(into: Path, keep: Iterable[str]) -> None:
    """Remove unpacked versions other than ``keep`` (the one running, the one loading)."""
    kept = set(keep)
    if not into.is_dir():
        return
    for child in into.iterdir():
        if child.is_dir() and child.name not in kept:
            shutil.rmtree(child, ignore_errors=True)
