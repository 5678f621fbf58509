"""The CLI fails at start, with the key's path, on a bad config; it never starts a stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
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


RULE_DATA = Path(__file__).resolve().parents[1] / "detectors" / "sigma" / "data"


def _socpipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "socpipe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rules_test_exits_zero_when_every_case_passes_and_one_when_not() -> None:
    good = _socpipe("rules", "test", str(RULE_DATA / "ruletest" / "good"), "-v")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "PASS" in good.stdout and "0 failed" in good.stdout
    bad = _socpipe("rules", "test", str(RULE_DATA / "ruletest" / "bad"))
    assert bad.returncode == 1
    assert "FAIL" in bad.stdout and "Traceback" not in bad.stderr


def test_rules_import_installs_what_runs_and_says_why_the_rest_does_not(tmp_path: Path) -> None:
    target = tmp_path / "rules" / "sigmahq"
    result = _socpipe(
        "rules", "import", str(RULE_DATA / "importer" / "sigmahq"), "--into", str(target)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "IMPORT.json").is_file()
    assert "skipped" in result.stdout
    refused = _socpipe("rules", "import", str(tmp_path / "missing"), "--into", str(target))
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr


def test_hunt_evaluates_correlations_over_the_files_as_one_stream(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("base_rules.yml", "sshd_brute_force.yml"):
        (rules / name).write_bytes((RULE_DATA / "correlation" / name).read_bytes())

    def lines(ip: str, count: int, second: int) -> str:
        return "".join(
            f"Nov 27 10:0{second // 60}:{second % 60:02d} ubnd-phucxa-srv sshd[{100 + n}]: "
            f"Failed password for root from {ip} port {4000 + n} ssh2\n"
            for n in range(count)
        )

    # The attacker's six failures are split over two files; the other address fails twice.
    (tmp_path / "auth.log.1").write_text(lines("113.160.12.9", 3, 10), encoding="utf-8")
    (tmp_path / "auth.log").write_text(
        lines("113.160.12.9", 3, 70) + lines("10.20.1.15", 2, 80), encoding="utf-8"
    )
    result = _socpipe(
        "hunt", "-r", str(rules),
        "-e", str(tmp_path / "auth.log.1"), "-e", str(tmp_path / "auth.log"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hits = [orjson.loads(line) for line in result.stdout.splitlines()]
    correlations = [hit for hit in hits if "correlation" in hit]
    assert len(correlations) == 1
    (brute,) = correlations
    assert brute["rule"]["title"] == "SSH brute force from one source"
    assert brute["correlation"]["group"] == {"source.ip": "113.160.12.9"}
    assert brute["correlation"]["event_count"] == 5  # fires at the fifth, as gte 5 says
    # generate: false, Sigma's default: the base rule's matches feed the correlation only.
    assert [hit for hit in hits if "correlation" not in hit] == []
    assert "1 correlations" in result.stderr


def test_agency_add_refuses_a_bad_id_before_touching_kafka(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    # Nothing listens there: a connection attempt would time out instead of this answer.
    config.write_text("kafka:\n  bootstrap_servers: [127.0.0.1:1]\n")
    result = subprocess.run(
        [sys.executable, "-m", "socpipe", "agency", "add", "Sở Nội vụ", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid agency id" in result.stderr
    assert "Traceback" not in result.stderr
