"""The detector's hot modules compiled to C with mypyc, and the check that they are current.

The detector spends its time per event in a few modules: the Windows parsers, the normalizer
and the Sigma engine's field access, values, compiled conditions, router and prefilters. They
are strictly typed (``mypy --strict``), so mypyc, mypy's compiler, turns them into C extension
modules without a change to the code: about twice the events per second
(``bench/sigma_throughput.py``). The pure-Python modules stay the reference; the compiled ones
are built in place beside them (``*.cpython-*.so``, which Python imports first) by
``python -m socpipe.native build``, which ``make`` runs whenever one of them changed.

This module lives in the spine, not in ``detectors``, so that it can build and clean whatever
state the compiled files are in; it imports nothing of the detector. A compiled module older
than its source would run old code: :func:`check_current` (which :mod:`detectors` runs when it is
imported) refuses that with a message saying how to rebuild or remove the
compiled files. Without a C compiler the build fails and the detector runs the same code as
Python, slower; ``python -m socpipe.native status`` says which is in use.

mypyc's rules for the compiled modules: classes defined there cannot be monkeypatched or
subclassed by interpreted code, and one name holds one type within a function (two ``except``
clauses of unrelated types need two names).
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
# Compiled together (one shared library, detectors/native__mypyc.*.so), so calls between them
# stay native.
MODULES: Final = (
    "detectors/normalize.py",
    "detectors/parsers/windows.py",
    "detectors/parsers/windows_families.py",
    "detectors/parsers/windows_fields.py",
    "detectors/parsers/windows_security.py",
    "detectors/parsers/windows_sysmon.py",
    "detectors/parsers/windows_values.py",
    "detectors/sigma/compiler.py",
    "detectors/sigma/engine.py",
    "detectors/sigma/fields.py",
    "detectors/sigma/logsource.py",
    "detectors/sigma/values.py",
)
GROUP: Final = "detectors.native"
_SUFFIXES: Final = tuple(importlib.machinery.EXTENSION_SUFFIXES)


class StaleNativeModuleError(ImportError):
    """A compiled module is older than its source."""


def compiled_files(module: str, root: Path = ROOT) -> list[Path]:
    """The compiled files of one module (``detectors/x.py`` -> ``detectors/x.cpython-*.so``)."""
    source = root / module
    stem = source.with_suffix("")
    return [path for suffix in _SUFFIXES if (path := Path(f"{stem}{suffix}")).is_file()]


def _group_files() -> list[Path]:
    stem = ROOT / (GROUP.replace(".", "/") + "__mypyc")
    return [path for suffix in _SUFFIXES if (path := Path(f"{stem}{suffix}")).is_file()]


def stale(root: Path = ROOT) -> list[str]:
    """The modules whose compiled file is older than their source."""
    found = []
    for module in MODULES:
        source = root / module
        for compiled in compiled_files(module, root):
            if compiled.stat().st_mtime < source.stat().st_mtime:
                found.append(module)
    return found


def check_current(root: Path = ROOT) -> None:
    """Raise :class:`StaleNativeModuleError` if a compiled module would run code older than its
    source; nothing to do when none is compiled."""
    old = stale(root)
    if old:
        raise StaleNativeModuleError(
            f"compiled modules older than their source: {', '.join(old)}; rebuild them with "
            "`make native` (or `python -m socpipe.native build`), or remove them with "
            "`python -m socpipe.native clean` to run the Python source"
        )


def in_use() -> bool:
    """Whether the detector runs the compiled modules (all of them are built)."""
    return bool(_group_files()) and all(compiled_files(module) for module in MODULES)


def build() -> None:
    """Compile :data:`MODULES` in place with mypyc (needs a C compiler and Python's headers)."""
    from mypyc.build import mypycify  # build-time only: mypy is a development dependency
    from setuptools import Distribution

    clean()
    extensions = mypycify([str(ROOT / module) for module in MODULES], group_name=GROUP)
    # The Distribution API, not setup(): setup() would read pyproject.toml's packaging
    # metadata, which is not this build's business.
    distribution = Distribution({"name": "socpipe-native", "ext_modules": extensions})
    command = distribution.get_command_obj("build_ext")
    command.inplace = True
    command.build_temp = str(ROOT / "build" / "native")
    distribution.run_command("build_ext")
    # build_ext copies files with their build times, and may reuse an unchanged one: they are
    # all built from the sources as they are now, which is what the staleness check compares.
    for path in [*_group_files(), *(p for module in MODULES for p in compiled_files(module))]:
        path.touch()


def clean() -> None:
    """Remove every compiled file, so that the Python source runs."""
    for path in [*_group_files(), *(p for module in MODULES for p in compiled_files(module))]:
        path.unlink()


def main(argv: list[str]) -> int:
    """``python -m socpipe.native build | ensure | clean | status`` (ensure: build if needed)."""
    command = argv[0] if argv else "status"
    if command == "build":
        os.chdir(ROOT)  # mypyc writes its generated C under ./build
        build()
        print(f"compiled {len(MODULES)} modules into {ROOT / 'detectors'}")
    elif command == "ensure":
        if in_use() and not stale():
            print("detector hot modules: compiled and current")
            return 0
        try:
            os.chdir(ROOT)
            build()
        except Exception as exc:  # no compiler, no headers: the Python source still runs
            clean()
            print(
                f"warning: could not compile the detector's hot modules ({type(exc).__name__}: "
                f"{exc}); the detector runs its Python source, about half as fast",
                file=sys.stderr,
            )
            return 0
        print(f"compiled {len(MODULES)} modules into {ROOT / 'detectors'}")
    elif command == "clean":
        clean()
        print("compiled modules removed: the detector runs its Python source")
    elif command == "status":
        old = stale()
        state = "compiled" if in_use() else "Python source (not compiled)"
        print(f"detector hot modules: {state}" + (f"; stale: {', '.join(old)}" if old else ""))
        return 1 if old else 0
    else:
        print("usage: python -m socpipe.native build | ensure | clean | status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
