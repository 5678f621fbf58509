"""``socpipe`` run as a process, as an operator runs it (plain function, not a fixture)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_socpipe(
    config: Path, *args: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m socpipe ARGS --config CONFIG``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "socpipe", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
