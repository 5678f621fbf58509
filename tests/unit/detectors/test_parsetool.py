"""``socpipe parse``: files, stdin, .evtx, and a clear error for an unknown format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "socpipe", "parse", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_parses_a_file_one_json_line_per_line(shared_data: Path) -> None:
    path = shared_data / "loghub" / "OpenSSH" / "OpenSSH_2k.log"
    result = run(str(path), "--format", "syslog")
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 2000
    assert all(e["process"]["name"] == "sshd" for e in events)
    assert b"parsed 2000, unparsed 0" in result.stderr


def test_reads_stdin_and_detects_the_format() -> None:
    line = (
        '203.0.113.7 - - [27/Nov/2026:09:30:01 +0700] "GET /dich-vu-cong HTTP/1.1" 200 512 '
        '"-" "Mozilla/5.0"\nkhông phải một dòng nhật ký\n'
    )
    result = run(stdin=line.encode())
    assert result.returncode == 0, result.stderr
    first, second = (orjson.loads(x) for x in result.stdout.splitlines())
    assert first["http"]["response"]["status_code"] == 200
    assert second["tags"] == ["unparsed"]
    assert second["message"] == "không phải một dòng nhật ký"


def test_reads_evtx_files(shared_data: Path) -> None:
    evtx = next((shared_data / "sigma" / "regression_data").rglob("*.evtx"))
    result = run(str(evtx))
    assert result.returncode == 0, result.stderr
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert events and all("winlog" in e for e in events)


def test_unknown_format_is_refused_with_the_known_ones() -> None:
    result = run("--format", "nginxx", stdin=b"x\n")
    assert result.returncode == 2
    assert b"unknown format 'nginxx'" in result.stderr and b"nginx.access" in result.stderr
