"""The detector's Prometheus counters, read over HTTP as a scraper would."""

from __future__ import annotations

import socket

import httpx

from detectors.metrics import DetectorMetrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_counts_are_served_per_agency_format_and_outcome() -> None:
    metrics = DetectorMetrics()
    for _ in range(3):
        metrics.count("phuong-phuc-xa", "syslog", "parsed")
    metrics.count("phuong-phuc-xa", "syslog", "unparsed")
    metrics.count("unknown", "unknown", "dead_lettered")
    port = free_port()
    metrics.serve(port)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    labels = 'agency="phuong-phuc-xa",format="syslog",outcome="parsed"'
    assert f"socpipe_detector_records_total{{{labels}}} 3.0" in text
    assert 'outcome="unparsed"} 1.0' in text
    assert 'outcome="dead_lettered"} 1.0' in text
    assert metrics.value("phuong-phuc-xa", "syslog", "parsed") == 3
