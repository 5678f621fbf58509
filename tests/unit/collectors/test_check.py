"""`socpipe collect check` verdicts, without a Kafka (the Kafka check then fails, saying why)."""

from __future__ import annotations

import socket
from pathlib import Path

import trustme

from collectors.check import ready, run_checks
from socpipe.settings import load_settings


def settings_for(tmp_path: Path, **collector: object) -> object:
    values: dict[str, object] = {
        "checkpoint_file": str(tmp_path / "cp.json"),
        "spool": {"dir": str(tmp_path / "spool")},
        **collector,
    }
    # Nothing listens on port 1 of loopback: the Kafka check fails at once.
    return load_settings(
        kafka={"bootstrap_servers": ["127.0.0.1:1"]}, agency={"id": "so-tttt"}, collector=values
    )


def by_what(checks: list, prefix: str) -> list:
    return [c for c in checks if c.what.startswith(prefix)]


def test_sources_disk_and_kafka_each_get_a_verdict(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("x\n")
    settings = settings_for(
        tmp_path,
        sources=[
            {"type": "file", "paths": [str(log), str(tmp_path / "later-*.log")]},
        ],
    )
    checks = run_checks(settings, kafka_timeout_s=2)  # type: ignore[arg-type]
    files = by_what(checks, "file")
    assert [c.verdict for c in files] == ["ok", "warn"]
    assert "appears" in files[1].detail
    assert by_what(checks, "spool")[0].verdict == "ok"
    kafka = by_what(checks, "kafka")[0]
    assert kafka.verdict == "fail"
    assert "soc.raw.so-tttt" in kafka.what
    assert not ready(checks)


def test_a_port_in_use_and_a_bad_certificate_fail(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "c.pem", tmp_path / "other.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    # A key that is not the certificate's.
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(keyfile))
    try:
        settings = settings_for(
            tmp_path,
            sources=[
                {
                    "type": "syslog",
                    "protocol": "tls",
                    "bind": "127.0.0.1",
                    "port": port,
                    "tls": {"certfile": str(certfile), "keyfile": str(keyfile)},
                }
            ],
        )
        checks = run_checks(settings, kafka_timeout_s=2)  # type: ignore[arg-type]
    finally:
        busy.close()
    syslog = by_what(checks, "syslog")
    assert [c.verdict for c in syslog] == ["fail", "fail"]
    assert "cannot listen" in syslog[0].detail
    assert "tls" in syslog[1].what
