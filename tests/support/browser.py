"""Debian's chromium for the browser tests: installed with apt when missing (never a browser a
test tool downloads), and the flags it needs on a machine with no outside network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (tests run as root in CI), and none of the background connections to
# Google's hosts that a closed network refuses by the dozen.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installing Debian's package first if it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError("chromium is missing and there is no apt-get to install it with")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, apt, "install", "-y", "-q", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # a fresh machine may not have read the package lists yet
        subprocess.run([*sudo, apt, "update", "-q"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"apt-get could not install chromium (exit {result.returncode}): "
            f"{(result.stderr or result.stdout)[-2000:]}"
        )
    return CHROMIUM
