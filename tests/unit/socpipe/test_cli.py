"""The CLI fails at start, with the key's path, on a bad config; it never starts a stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("stage", ["collect", "detect", "alert", "api"])
def test_stage_refuses_a_bad_config_naming_the_key(stage: str, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("kafka:\n  bootstrap_server: [x:9092]\nalerting:\n  batch_size: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "socpipe", stage, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "kafka.bootstrap_server: unknown key" in result.stderr
    assert "alerting.batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(
        "agency:\n  id: so-tttt\n  name: Sở Thông tin và Truyền thông\n", encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "socpipe", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stderr
