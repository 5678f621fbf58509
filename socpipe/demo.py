"""``socpipe demo``: the whole pipeline on one machine, fed with the logs of three agencies.

Starts the local services, creates the topics, installs the SigmaHQ rules from the shared data
(``socpipe rules import``) beside socpipe's own (``rules/socpipe``), writes a config for this run
into the state directory, starts each stage as its own process (a collector per agency, a
detector running the Sigma engine, the correlator, the anomaly scorer, the alerting worker and
the API), replays sshd lines and recorded Windows attacks (OTRF) into the agencies' log files at
a steady rate with current timestamps, and prints the console's URL, a user to sign in with
(admin) and an API token. After ``train_after`` seconds of feed it trains the anomaly model on
what was indexed so far and publishes it, as an operator would (``socpipe model train --from
elasticsearch``, ``socpipe model publish``); the running scorer takes it over, and from then on
the feed slips in, every few minutes, a burst of failed logons from a new address at one commune
for the model to find. Without the shared data, generated sshd lines and socpipe's own rules
only. Ctrl-C stops the stages; the services stay up for the next run (`socpipe services down`
stops them).
"""

from __future__ import annotations

import importlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from rich.console import Console

from socpipe.agencies import generate_password, provision_agency
from socpipe.elastic import make_elasticsearch
from socpipe.errors import ServiceError
from socpipe.kafka import ensure_topics
from socpipe.localservices import LocalServices
from socpipe.samples import (
    REPO_ROOT,
    loghub_openssh,
    otrf_lines,
    restamp,
    restamp_winlog,
    shared_data_dir,
    sshd_lines,
)
from socpipe.settings import KafkaSettings, Role, Settings, read_secret_file


@dataclass(frozen=True)
class DemoAgency:
    """One agency of the demo and the machine whose log it ships (in ``format``)."""

    id: str
    tier: str
    name: str
    host: str
    format: str = "syslog"

    @property
    def log_name(self) -> str:
        return f"{self.id}-winlog.json" if self.format == "winlog.json" else f"{self.id}-auth.log"


AGENCIES = (
    DemoAgency("so-tttt", "province", "Sở Thông tin và Truyền thông", "dvc-portal-01"),
    DemoAgency("phuong-phuc-xa", "commune", "UBND phường Phúc Xá", "ubnd-phucxa-srv"),
)
# Windows events, when the shared data has the OTRF recordings (host names are the events').
WINDOWS_AGENCY = DemoAgency(
    "so-noi-vu", "province", "Sở Nội vụ", "so-noi-vu-dc", format="winlog.json"
)
# OTRF lines kept per recording: every attack appears within the first minutes of the feed.
_OTRF_PER_DATASET = 2_000
# The console's user (a soc_admin), made by the demo with a password of its own.
DEMO_USER = "admin"
# The demo's anomaly model: each host's minutes, measured against the feed's first minutes.
MODEL_ENTITY, MODEL_WINDOW = "host", "1m"
# Once the model runs: a burst of failed logons from a new address every few minutes.
BURST_EVERY_S, BURST_LINES = 180.0, 400


class DemoRun:
    """Starts, feeds and stops one demo."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.services = LocalServices(settings.local)
        self.dir = self.services.home / "demo"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stop = threading.Event()
        self.model_ready = threading.Event()  # the anomaly model is published
        self.windows = otrf_lines(per_dataset=_OTRF_PER_DATASET)
        self.agencies = (*AGENCIES, WINDOWS_AGENCY) if self.windows else AGENCIES

    def run(self, duration: float = 0.0, rate: float = 40.0, train_after: float = 600.0) -> None:
        """Run until Ctrl-C, or for ``duration`` seconds when it is above zero; train and
        publish the anomaly model after ``train_after`` seconds of feed (0: never)."""
        say = self.console.print
        self.services.up(progress=lambda msg: say(f"[cyan]•[/] {msg}"))
        token = secrets.token_urlsafe(24)
        rules = self._install_rules(say)
        config = self._write_config(token, rules)
        demo_settings = Settings.model_validate(yaml.safe_load(config.read_text()))
        soc_kafka = demo_settings.kafka
        ensure_topics(soc_kafka)
        self._publish_rules(demo_settings, rules, say)
        credentials = self._provision_agencies(soc_kafka, say)
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        try:
            self._start_stages(config, credentials)
            url = f"http://{self.settings.api.host}:{self.settings.api.port}/"
            self._wait_for_api(url)
            admin_password = self._ensure_console_user()
            source = loghub_openssh() or "generated sshd lines (no ../shared/data here)"
            feeder = threading.Thread(target=self._feed, args=(rate,), daemon=True)
            feeder.start()
            if train_after > 0:
                trainer = threading.Thread(
                    target=self._train_model, args=(config, train_after, say), daemon=True
                )
                trainer.start()
            say(
                f"\n[bold green]socpipe is running.[/] Feeding {source} for "
                f"{', '.join(a.name for a in AGENCIES)}"
                + (
                    f"; {len(self.windows):,} recorded Windows attack events (OTRF) for "
                    f"{WINDOWS_AGENCY.name}."
                    if self.windows
                    else "."
                )
            )
            say(f"  console:   [bold]{url}[/]")
            say(
                f"  sign in:   {DEMO_USER} / {admin_password}   (a soc_admin; the password is "
                f"also in {self.dir / 'console-password'})"
            )
            say(f"  API token: {token}   (also in {self.dir / 'api-token'})")
            say(f"  try:       curl -H 'Authorization: Bearer {token}' {url}alerts")
            if train_after > 0:
                say(
                    f"  anomaly:   the model ({MODEL_ENTITY} per {MODEL_WINDOW}) is trained on "
                    f"the first {train_after / 60:.0f} minutes of feed, then published"
                )
            say(f"  stage logs in {self.dir / 'logs'}; Ctrl-C stops the demo.\n")
            deadline = time.monotonic() + duration if duration > 0 else None
            while not self.stop.is_set():
                self._check_stages()
                if deadline is not None and time.monotonic() > deadline:
                    break
                self.stop.wait(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop.set()
            self._stop_stages()
            say("demo stopped; Kafka and Elasticsearch are still up (socpipe services down)")

    def _install_rules(self, say: Callable[[str], object]) -> list[Path]:
        """socpipe's rules, and SigmaHQ's imported from the shared data when it is there."""
        rules = [REPO_ROOT / "rules" / "socpipe", REPO_ROOT / "rules" / "filters"]
        corpus = shared_data_dir() / "sigma"
        if (corpus / "rules").is_dir():
            # By name, as the CLI imports stages: the spine does not depend on them.
            importer = importlib.import_module("detectors.sigma.importer")
            target = self.services.home / "rules" / "sigmahq"
            report = importer.import_rules(corpus, target)
            say(
                f"[cyan]•[/] SigmaHQ rules: {len(report.installed):,} installed into {target} "
                f"({len(report.skipped)} left out, reasons in {target / 'IMPORT.json'})"
            )
            rules.append(target)
        return rules

    def _publish_rules(
        self, settings: Settings, rules: list[Path], say: Callable[[str], object]
    ) -> None:
        """Make the demo's rules the set in force on soc.rules: detectors take a published set
        over their configured one, and one left there by earlier work on this machine (a test,
        a rule author's publish) would otherwise judge the demo's events."""
        publishing = importlib.import_module("detectors.sigma.publish")
        result = publishing.publish(rules, settings)
        if not result.published:
            raise ServiceError(
                "the demo's rules do not pass the detectors' check: " + "; ".join(result.errors[:5])
            )
        say(
            f"[cyan]•[/] rule set {result.bundle.version} in force: {result.report.compiled:,} "
            "rules (socpipe rules status)"
        )

    def _write_config(self, token: str, rules: list[Path]) -> Path:
        for sub in ("logs", "spool", "checkpoints"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        token_file = self.dir / "api-token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        base = self.settings.model_dump(mode="json", exclude={"api", "collector", "agency"})
        base["elasticsearch"].pop("api_key", None)
        base["elasticsearch"].pop("password", None)
        base["kafka"].pop("sasl_password", None)
        config_dir = REPO_ROOT / "deploy" / "config"
        base["detector"]["agencies_file"] = base["detector"]["agencies_file"] or str(
            config_dir / "agencies.yaml"
        )
        base["detector"]["assets_file"] = base["detector"]["assets_file"] or str(
            config_dir / "assets.yaml"
        )
        base["detector"]["rules_paths"] = base["detector"]["rules_paths"] or [
            str(path) for path in rules
        ]
        # The demo's feed is live and in order: windows are judged a minute after they end.
        base["anomaly"]["lateness_s"] = 60
        base["kafka"]["bootstrap_servers"] = [self.services.kafka_bootstrap]
        base["elasticsearch"]["hosts"] = [self.services.es_url]
        base["api"] = {
            "host": self.settings.api.host,
            "port": self.settings.api.port,
            "tokens": [{"name": "demo-analyst", "token": token, "role": "analyst"}],
        }
        config = self.dir / "config.yaml"
        config.write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False))
        config.chmod(0o600)
        return config

    def _ensure_console_user(self) -> str:
        """The console's sign-in: a local soc_admin user, its password kept (0600) in the demo
        folder so that it stays the same from one run to the next."""
        from api.users import ElasticsearchUserStore

        password_file = self.dir / "console-password"
        if password_file.exists():
            password = read_secret_file(password_file, "demo console password")
        else:
            password = generate_password()
            password_file.write_text(password + "\n", encoding="utf-8")
            password_file.chmod(0o600)
        es = self.settings.elasticsearch.model_copy(update={"hosts": [self.services.es_url]})
        client = make_elasticsearch(es)
        try:
            users = ElasticsearchUserStore(client, es.index_prefix)
            users.ensure_ready()
            if users.get(DEMO_USER) is None:
                users.add(DEMO_USER, password, Role.SOC_ADMIN)
            else:
                users.set_password(DEMO_USER, password)
        finally:
            client.close()
        return password

    def _spawn(self, name: str, args: list[str], config: Path, env: dict[str, str]) -> None:
        log_file = (self.dir / "logs" / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "socpipe", *args, "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env, "PYTHONUTF8": "1"},
        )
        log_file.close()

    def _provision_agencies(
        self, soc_kafka: KafkaSettings, say: Callable[[str], object]
    ) -> dict[str, Path]:
        """Each demo agency's own Kafka credential and topic, as the SOC gives them: its
        collector ships over SASL_SSL and may write only soc.raw.<agency>."""
        directory = self.dir / "credentials"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        files = {}
        for agency in self.agencies:
            password_file = directory / f"{agency.id}.password"
            if password_file.exists():
                password = read_secret_file(password_file, f"demo credential of {agency.id}")
            else:
                password = generate_password()
                password_file.write_text(password + "\n", encoding="utf-8")
                password_file.chmod(0o600)
            provision_agency(soc_kafka, agency.id, password)
            files[agency.id] = password_file
        say(
            f"[cyan]•[/] agencies provisioned: {', '.join(files)} (each collector writes only "
            f"its own topic, over SASL_SSL at {self.services.agency_bootstrap})"
        )
        return files

    def _start_stages(self, config: Path, credentials: dict[str, Path]) -> None:
        for agency in self.agencies:
            log_path = self.dir / agency.log_name
            log_path.touch()
            self._spawn(
                f"collect-{agency.id}",
                ["collect", "--path", str(log_path)],
                config,
                {
                    "SOCPIPE_AGENCY__ID": agency.id,
                    "SOCPIPE_AGENCY__TIER": agency.tier,
                    "SOCPIPE_AGENCY__NAME": agency.name,
                    "SOCPIPE_COLLECTOR__ID": f"demo-{agency.id}",
                    "SOCPIPE_COLLECTOR__HOST": agency.host,
                    "SOCPIPE_COLLECTOR__FORMAT": agency.format,
                    "SOCPIPE_COLLECTOR__CHECKPOINT_FILE": str(
                        self.dir / "checkpoints" / f"{agency.id}.json"
                    ),
                    "SOCPIPE_KAFKA__BOOTSTRAP_SERVERS": self.services.agency_bootstrap,
                    "SOCPIPE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
                    "SOCPIPE_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
                    "SOCPIPE_KAFKA__SASL_USERNAME": agency.id,
                    "SOCPIPE_KAFKA__SASL_PASSWORD_FILE": str(credentials[agency.id]),
                    "SOCPIPE_KAFKA__SSL_CAFILE": str(self.services.ca_file),
                },
            )
        self._spawn("detect", ["detect"], config, {})
        self._spawn("correlate", ["correlate"], config, {})
        self._spawn("anomaly", ["anomaly"], config, {})
        self._spawn("watch", ["watch"], config, {})
        self._spawn("alert", ["alert"], config, {})
        self._spawn("api", ["api"], config, {})

    def _wait_for_api(self, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_stages()
            try:
                if httpx.get(url + "health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the API did not answer at {url} within {timeout_s:.0f}s; "
            f"see {self.dir / 'logs' / 'api.log'}"
        )

    def _check_stages(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"stage {name} exited with code {proc.returncode}; "
                    f"see {self.dir / 'logs' / f'{name}.log'}"
                )

    def _stop_stages(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.processes.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.console.print(f"[yellow]{name} did not stop in 30s; killing it[/]")
                proc.kill()

    def _train_model(self, config: Path, after_s: float, say: Callable[[str], object]) -> None:
        """After ``after_s`` seconds of feed, train the anomaly model on the events indexed so
        far and publish it, with the CLI as an operator runs it (log: logs/model.log)."""
        if self.stop.wait(after_s):
            return
        model = self.dir / f"{MODEL_ENTITY}-{MODEL_WINDOW}.skops"
        since = f"{max(2, round(after_s / 60) + 1)}m"
        steps = [
            ["model", "train", "--from", "elasticsearch", "--since", since,
             "--entity", MODEL_ENTITY, "--window", MODEL_WINDOW, "-o", str(model)],
            ["model", "publish", str(model)],
        ]  # fmt: skip
        with (self.dir / "logs" / "model.log").open("ab") as log_file:
            for step in steps:
                done = subprocess.run(
                    [sys.executable, "-m", "socpipe", *step, "--config", str(config)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUTF8": "1", "COLUMNS": "200"},
                    check=False,
                )
                if done.returncode != 0:
                    say(
                        f"[yellow]the anomaly model was not {step[1]}ed; see "
                        f"{self.dir / 'logs' / 'model.log'}[/]"
                    )
                    return
        self.model_ready.set()
        say(
            f"[cyan]•[/] anomaly model {MODEL_ENTITY}-{MODEL_WINDOW} trained on the feed so far "
            "and published (socpipe model status); bursts of failed logons now slip in at "
            f"{AGENCIES[1].name} every {BURST_EVERY_S / 60:.0f} minutes"
        )

    def _burst(self, number: int) -> list[str]:
        """Failed logons for root from one new address (TEST-NET-3), sshd lines."""
        address = f"203.0.113.{number % 250 + 1}"
        return [
            f"Dec 10 06:55:46 LabSZ sshd[{30000 + n}]: Failed password for root from {address} "
            f"port {40000 + n} ssh2"
            for n in range(BURST_LINES)
        ]

    def _feed(self, rate: float) -> None:
        """Append samples to each agency's log in blocks, with current timestamps, forever;
        once the anomaly model runs, a burst at the commune now and then."""
        lines = sshd_lines()
        bursts = 0
        next_burst = 0.0
        block = max(1, int(rate))
        handles = {a.id: (self.dir / a.log_name).open("a", encoding="utf-8") for a in self.agencies}
        try:
            position = windows_position = 0
            while not self.stop.is_set():
                if self.model_ready.is_set() and not next_burst:
                    # The scorer starts the model at its next whole window: burst after it.
                    next_burst = time.monotonic() + 75.0
                burst = bool(next_burst) and time.monotonic() >= next_burst
                if burst:
                    bursts += 1
                    next_burst = time.monotonic() + BURST_EVERY_S
                for index, agency in enumerate(AGENCIES):
                    start = (position + index * len(lines) // 2) % len(lines)
                    chunk = [lines[(start + i) % len(lines)] for i in range(block)]
                    if burst and index == 1:
                        chunk += self._burst(bursts)
                    handles[agency.id].write("\n".join(restamp(chunk, agency.host)) + "\n")
                    handles[agency.id].flush()
                position = (position + block) % len(lines)
                if self.windows:
                    chunk_bytes = [
                        self.windows[(windows_position + i) % len(self.windows)]
                        for i in range(block)
                    ]
                    windows_position = (windows_position + block) % len(self.windows)
                    handle = handles[WINDOWS_AGENCY.id]
                    handle.write("\n".join(restamp_winlog(chunk_bytes)) + "\n")
                    handle.flush()
                self.stop.wait(1.0)
        finally:
            for handle in handles.values():
                handle.close()
