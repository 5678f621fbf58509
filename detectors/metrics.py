"""Prometheus counters of the detector: records per agency, format and outcome."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, start_http_server

Outcome = Literal["parsed", "unparsed", "dead_lettered", "spoofed"]


class DetectorMetrics:
    """Counters in a registry of their own (no import-time globals), served on request."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records = Counter(
            "socpipe_detector_records",
            "Raw records the detector handled, by agency, format and outcome",
            ["agency", "format", "outcome"],
            registry=self.registry,
        )
        self.detections = Counter(
            "socpipe_detector_detections",
            "Detections produced, by agency and rule",
            ["agency", "rule"],
            registry=self.registry,
        )

    def count(self, agency: str, fmt: str, outcome: Outcome) -> None:
        """One more record of this agency and format with this outcome."""
        self.records.labels(agency=agency, format=fmt, outcome=outcome).inc()

    def value(self, agency: str, fmt: str, outcome: Outcome) -> float:
        """The current count (for tests and the completeness report)."""
        sample = self.registry.get_sample_value(
            "socpipe_detector_records_total", {"agency": agency, "format": fmt, "outcome": outcome}
        )
        return sample or 0.0

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Serve /metrics on ``address:port`` from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)
