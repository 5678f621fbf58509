"""Kafka and Elasticsearch on one machine, from Maven Central, without Docker.

``socpipe services up|down|status|logs`` drives this module. What it fetches is declared in
``deploy/local/pom.xml``; Maven's ``~/.m2`` and the unpacked copies in the state directory mean a
second run downloads nothing. Layout of the state directory (``local.home``; by default
``/var/lib/socpipe`` for root, ``~/.local/share/socpipe`` otherwise)::

    cache/kafka-<v>/libs/         Kafka's runtime classpath (copied by Maven)
    cache/downloads/              the Elasticsearch integ-test zip
    elasticsearch-<v>/            the unpacked zip, owned by the Elasticsearch user
    conf/                         generated server.properties and Elasticsearch's config copy
    tls/                          the local CA and the agency listener's certificate (tlsfiles)
    data/kafka, data/elasticsearch
    logs/kafka.out, logs/elasticsearch.out, logs/kafka/, logs/elasticsearch/
    run/kafka.pid, run/elasticsearch.pid

Elasticsearch refuses to run as root, so when we are root it runs as a system user
(``local.es_user``, created on first use).

Kafka has two client listeners: PLAINTEXT on ``local.kafka_port`` for the SOC's own processes
(unauthenticated, all-powerful, loopback only) and AGENCY, SASL_SSL with SCRAM-SHA-512 on
``kafka_port + 2``, where each agency's user may only write its own raw topic (socpipe/agencies.py,
docs/agencies.md). Collectors trust ``LocalServices.ca_file`` and connect to ``agency_bootstrap``.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import string
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from socpipe.errors import ServiceError
from socpipe.settings import LocalServicesSettings
from socpipe.tlsfiles import CA_FILE, ServerTls, ensure_server_tls

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_LOCAL = REPO_ROOT / "deploy" / "local"
SERVICES = ("kafka", "elasticsearch")


def default_home() -> Path:
    """Where local services keep their state when settings do not say."""
    if env := os.environ.get("SOCPIPE_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/socpipe")
    return Path.home() / ".local" / "share" / "socpipe"


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` reports for one service."""

    name: str
    running: bool
    healthy: bool
    pid: int | None
    url: str
    log_file: Path
    rss_bytes: int
    detail: str = ""


@dataclass(frozen=True)
class Versions:
    """Versions pinned in deploy/local/pom.xml."""

    kafka: str
    elasticsearch: str

    @classmethod
    def from_pom(cls, pom: Path) -> Versions:
        ns = {"m": "http://maven.apache.org/POM/4.0.0"}
        root = ET.parse(pom).getroot()  # noqa: S314 - our own file
        props = root.find("m:properties", ns)
        if props is None:
            raise ServiceError(f"{pom}: no <properties>")

        def prop(name: str) -> str:
            node = props.find(f"m:{name}", ns) if props is not None else None
            if node is None or not (node.text or "").strip():
                raise ServiceError(f"{pom}: property {name} is missing")
            return (node.text or "").strip()

        return cls(kafka=prop("kafka.version"), elasticsearch=prop("elasticsearch.version"))


class LocalServices:
    """Fetches, starts, checks and stops the local Kafka and Elasticsearch."""

    def __init__(self, settings: LocalServicesSettings, deploy_dir: Path = DEPLOY_LOCAL) -> None:
        self.settings = settings
        self.deploy_dir = deploy_dir
        self.home = settings.home or default_home()
        self.versions = Versions.from_pom(deploy_dir / "pom.xml")

    # --- paths --------------------------------------------------------------------------------

    @property
    def kafka_libs(self) -> Path:
        return self.home / "cache" / f"kafka-{self.versions.kafka}" / "libs"

    @property
    def es_zip(self) -> Path:
        return (
            self.home / "cache" / "downloads" / f"elasticsearch-{self.versions.elasticsearch}.zip"
        )

    @property
    def es_dir(self) -> Path:
        return self.home / f"elasticsearch-{self.versions.elasticsearch}"

    def log_file(self, name: str) -> Path:
        """The file a service's console output goes to."""
        return self.home / "logs" / f"{name}.out"

    def pid_file(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def agency_port(self) -> int:
        """The SASL_SSL listener of the agencies' collectors."""
        return self.settings.kafka_agency_port

    @property
    def agency_bootstrap(self) -> str:
        """``host:port`` of the agency listener (SASL_SSL, SCRAM-SHA-512)."""
        return f"127.0.0.1:{self.agency_port}"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"

    @property
    def ca_file(self) -> Path:
        """The local CA certificate that agency clients trust (made by ``up``)."""
        return self.tls_dir / CA_FILE

    @property
    def kafka_properties(self) -> Path:
        """The broker's generated configuration."""
        return self.home / "conf" / "server.properties"

    @property
    def es_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.es_port}"

    # --- fetch and install --------------------------------------------------------------------

    def fetch(self) -> bool:
        """Get the jars and the zip through Maven unless they are here. True if Maven ran."""
        if self._kafka_libs_complete() and self.es_zip.is_file():
            return False
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
        cache = self.home / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        log.info(
            "fetching Kafka %s and Elasticsearch %s through Maven into %s",
            self.versions.kafka,
            self.versions.elasticsearch,
            cache,
        )
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-ntp",
                "-q",
                "-f",
                str(self.deploy_dir / "pom.xml"),
                "package",
                f"-Dsocpipe.cache={cache}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            out = (result.stdout + result.stderr).strip().splitlines()
            raise ServiceError(
                "Maven could not fetch the local services (deploy/local/pom.xml):\n"
                + "\n".join(out[-25:])
            )
        if not self._kafka_libs_complete():
            raise ServiceError(f"Maven ran but {self.kafka_libs} has no kafka_2.13 jar")
        return True

    def _kafka_libs_complete(self) -> bool:
        jar = self.kafka_libs / f"kafka_2.13-{self.versions.kafka}.jar"
        return jar.is_file() and any(self.kafka_libs.glob("log4j-core-*.jar"))

    def install_elasticsearch(self) -> None:
        """Unpack the zip once, keeping exec bits, and give it to the Elasticsearch user."""
        marker = self.es_dir / ".socpipe-unpacked"
        if not marker.exists():
            if self.es_dir.exists():
                shutil.rmtree(self.es_dir)
            tmp = self.home / f".unpack-{os.getpid()}"
            if tmp.exists():
                shutil.rmtree(tmp)
            with zipfile.ZipFile(self.es_zip) as archive:
                for member in archive.infolist():
                    target = Path(archive.extract(member, tmp))
                    mode = (member.external_attr >> 16) & 0o777
                    if mode and not member.is_dir():
                        target.chmod(mode)
            (top,) = list(tmp.iterdir())
            top.rename(self.es_dir)
            tmp.rmdir()
            marker.touch()
        owner = self._es_owner()
        conf = self.home / "conf" / "elasticsearch"
        if not conf.exists():
            shutil.copytree(self.es_dir / "config", conf)
        for path in (
            conf,
            self.home / "data" / "elasticsearch",
            self.home / "logs" / "elasticsearch",
        ):
            path.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                _chown_tree(path, owner)
        if owner is not None:
            # ES writes nothing under its home, but its launcher needs to read and run it.
            for parent in (self.home, self.home / "conf", self.home / "data", self.home / "logs"):
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)

    def _es_owner(self) -> pwd.struct_passwd | None:
        """The user Elasticsearch runs as: a system user when we are root, else ourselves."""
        if os.geteuid() != 0:
            return None
        name = self.settings.es_user
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"cannot create user {name} for Elasticsearch: {result.stderr.strip()}"
            )
        return pwd.getpwnam(name)

    # --- start and stop -----------------------------------------------------------------------

    def up(
        self,
        progress: Callable[[str], None] = lambda _msg: None,
        names: Sequence[str] = SERVICES,
    ) -> list[ServiceStatus]:
        """Start the named services that do not answer yet and wait until they do; restart a
        Kafka we started whose server.properties would now differ (a new template, ports or
        certificate). Idempotent."""
        unknown = sorted(set(names) - set(SERVICES))
        if unknown:
            raise ServiceError(
                f"unknown service {', '.join(unknown)}; known: {', '.join(SERVICES)}"
            )
        for path in ("run", "logs", "conf", "data"):
            (self.home / path).mkdir(parents=True, exist_ok=True)
        progress("fetching through Maven (cached after the first run)")
        self.fetch()
        started: dict[str, subprocess.Popen[bytes]] = {}
        if "kafka" in names:
            properties = self.render_kafka_properties(ensure_server_tls(self.tls_dir))
            if not self._kafka_healthy():
                progress(f"starting Kafka {self.versions.kafka}")
                started["kafka"] = self._start_kafka(properties)
            elif self._pid("kafka") is not None and self._kafka_properties_differ(properties):
                progress("Kafka's configuration changed: restarting it")
                self._stop("kafka")
                started["kafka"] = self._start_kafka(properties)
            else:
                progress(f"Kafka already answers at {self.kafka_bootstrap}")
        if "elasticsearch" in names:
            if self._es_healthy():
                progress(f"Elasticsearch already answers at {self.es_url}")
            else:
                self.install_elasticsearch()
                progress(f"starting Elasticsearch {self.versions.elasticsearch}")
                started["elasticsearch"] = self._start_elasticsearch()
        checks = {"kafka": self._kafka_healthy, "elasticsearch": self._es_healthy}
        deadline = time.monotonic() + self.settings.start_timeout_s
        for name, proc in started.items():
            progress(f"waiting for {name}")
            while not checks[name]():
                if proc.poll() is not None:
                    raise ServiceError(
                        f"{name} exited with code {proc.returncode} while starting; "
                        f"see {self.log_file(name)}\n{self._tail(name, 15)}"
                    )
                if time.monotonic() > deadline:
                    limit = self.settings.start_timeout_s
                    raise ServiceError(
                        f"{name} did not become healthy within {limit:.0f}s;"
                        f" see {self.log_file(name)}\n{self._tail(name, 15)}"
                    )
                time.sleep(1.0)
        return self.status()

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], user: pwd.struct_passwd | None = None
    ) -> subprocess.Popen[bytes]:
        log_path = self.log_file(name)
        with log_path.open("ab") as out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            out.write(f"\n--- socpipe starting {name} at {stamp}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.home,
                start_new_session=True,  # its own process group: `down` stops the whole tree
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        self.pid_file(name).write_text(str(proc.pid))
        return proc

    def _java(self, home: Path | None) -> str:
        if home is not None:
            return str(home / "bin" / "java")
        if env := os.environ.get("JAVA_HOME"):
            return str(Path(env) / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise ServiceError("no java on PATH; install a JDK 17+ or set local.java_home")
        return found

    def render_kafka_properties(self, tls: ServerTls) -> str:
        """The broker's server.properties: the template filled in for these settings and
        certificate."""
        template = string.Template((self.deploy_dir / "kafka" / "server.properties").read_text())
        return template.substitute(
            kafka_port=self.settings.kafka_port,
            controller_port=self.settings.kafka_controller_port,
            agency_port=self.agency_port,
            log_dirs=self.home / "data" / "kafka",
            tls_keystore=tls.keystore_file,
            tls_fingerprint=f"sha256 {tls.fingerprint}",
        )

    def _kafka_properties_differ(self, properties: str) -> bool:
        """Whether the running broker was started with other properties than ``properties``."""
        try:
            return self.kafka_properties.read_text() != properties
        except OSError:
            return True

    def _start_kafka(self, properties: str) -> subprocess.Popen[bytes]:
        self._stop_stale("kafka")
        data_dir = self.home / "data" / "kafka"
        logs_dir = self.home / "logs" / "kafka"
        data_dir.mkdir(parents=True, exist_ok=True)
        logs_dir.mkdir(parents=True, exist_ok=True)
        props = self.kafka_properties
        # Listeners, SASL and the authorizer are read at start: a data directory formatted
        # under an older template needs no new format.
        props.write_text(properties)
        java = self._java(self.settings.java_home)
        classpath = f"{self.kafka_libs}/*"
        log_opts = [
            f"-Dlog4j2.configurationFile=file:{self.deploy_dir / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={logs_dir}",
        ]
        env = dict(os.environ)
        if not (data_dir / "meta.properties").exists():
            cluster_id = _cluster_id()
            result = subprocess.run(
                [
                    java,
                    *log_opts,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if result.returncode != 0:
                output = result.stdout + result.stderr
                raise ServiceError(f"formatting Kafka's storage in {data_dir} failed:\n{output}")
        heap = self.settings.kafka_heap
        argv = [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            *log_opts,
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ]
        return self._spawn("kafka", argv, env)

    def _start_elasticsearch(self) -> subprocess.Popen[bytes]:
        self._stop_stale("elasticsearch")
        owner = self._es_owner()
        java_home = (
            self.settings.es_java_home or self.settings.java_home or _java_home_of(self._java(None))
        )
        heap = self.settings.es_heap
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "ES_JAVA_HOME": str(java_home),
            "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}",
            "ES_PATH_CONF": str(self.home / "conf" / "elasticsearch"),
            "LANG": "C.UTF-8",
        }
        if owner is None:
            env["HOME"] = str(Path.home())
        argv = [
            str(self.es_dir / "bin" / "elasticsearch"),
            "-Ediscovery.type=single-node",
            "-Expack.security.enabled=false",
            "-Enetwork.host=127.0.0.1",
            f"-Ehttp.port={self.settings.es_port}",
            f"-Etransport.port={self.settings.es_transport_port}",
            f"-Epath.data={self.home / 'data' / 'elasticsearch'}",
            f"-Epath.logs={self.home / 'logs' / 'elasticsearch'}",
            "-Ecluster.name=socpipe-local",
            "-Ecluster.routing.allocation.disk.threshold_enabled=false",
            "-Eaction.destructive_requires_name=false",
        ]
        return self._spawn("elasticsearch", argv, env, user=owner)

    def _stop_stale(self, name: str) -> None:
        """A process we started that no longer answers is stopped before a new one starts."""
        if self._pid(name) is not None:
            log.warning("%s is running but not healthy; restarting it", name)
            self._stop(name)

    def down(self) -> list[str]:
        """Stop both services; returns the names that were running."""
        return self.stop(SERVICES)

    def stop(self, names: Sequence[str]) -> list[str]:
        """Stop the named services (those started by ``up``); returns those that were running."""
        unknown = sorted(set(names) - set(SERVICES))
        if unknown:
            raise ServiceError(
                f"unknown service {', '.join(unknown)}; known: {', '.join(SERVICES)}"
            )
        return [name for name in SERVICES if name in names and self._stop(name)]

    def _stop(self, name: str, timeout_s: float = 60.0) -> bool:
        pid = self._pid(name)
        if pid is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _group_alive(pid):
            log.warning("%s did not stop within %.0fs; killing it", name, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    def _pid(self, name: str) -> int | None:
        """The pid in the pid file, if that process is alive and is the service."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _group_alive(pid) else None

    # --- health and status --------------------------------------------------------------------

    def _kafka_healthy(self) -> bool:
        # A closed port answers at once; only then is the (slower) Kafka handshake worth it.
        try:
            socket.create_connection(("127.0.0.1", self.settings.kafka_port), timeout=1.0).close()
        except OSError:
            return False
        # The admin client's bootstrap sends ApiVersions; listing topics proves the broker serves.
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[self.kafka_bootstrap],
                request_timeout_ms=3000,
                bootstrap_timeout_ms=5000,
            )
        except (KafkaError, OSError) as exc:
            log.debug("Kafka at %s does not answer yet: %s", self.kafka_bootstrap, exc)
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError) as exc:
            log.debug("Kafka at %s does not serve yet: %s", self.kafka_bootstrap, exc)
            return False
        finally:
            admin.close()

    def _es_healthy(self) -> bool:
        try:
            response = httpx.get(
                f"{self.es_url}/_cluster/health",
                params={"wait_for_status": "yellow", "timeout": "2s"},
                timeout=5.0,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("status") in ("yellow", "green")

    def status(self) -> list[ServiceStatus]:
        """Running, healthy, pid, memory and log file of each service."""
        out = []
        for name, healthy, url in (
            ("kafka", self._kafka_healthy(), self.kafka_bootstrap),
            ("elasticsearch", self._es_healthy(), self.es_url),
        ):
            pid = self._pid(name)
            detail = "" if pid or not healthy else "answers, but was not started by socpipe"
            out.append(
                ServiceStatus(
                    name=name,
                    running=pid is not None or healthy,
                    healthy=healthy,
                    pid=pid,
                    url=url,
                    log_file=self.log_file(name),
                    rss_bytes=_group_rss(pid) if pid else 0,
                    detail=detail,
                )
            )
        return out

    def _tail(self, name: str, lines: int) -> str:
        return "\n".join(self.tail(name, lines))

    def tail(self, name: str, lines: int = 50) -> list[str]:
        """The last lines of a service's console log (and its own log, for Kafka's server.log)."""
        if name not in SERVICES:
            raise ServiceError(f"unknown service {name}; known: {', '.join(SERVICES)}")
        path = self.log_file(name)
        if not path.exists():
            return [f"(no log yet at {path})"]
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            text = handle.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]


def _java_home_of(java: str) -> Path:
    return Path(java).resolve().parent.parent


def _chown_tree(path: Path, owner: pwd.struct_passwd) -> None:
    if path.stat().st_uid == owner.pw_uid:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, owner.pw_uid, owner.pw_gid)
        for entry in dirs + files:
            os.chown(Path(root) / entry, owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after the command: state, ppid, pgrp, ...; a zombie holds no memory.
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    return bool(_group_members(pgid))


def _group_rss(pgid: int) -> int:
    total = 0
    for pid in _group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _cluster_id() -> str:
    """A random Kafka cluster id (base64url of a UUID) that does not start with "-": the
    storage tool would read one that does as an option (1 time in 64), which is why Kafka's
    own ``Uuid.randomUuid`` draws again in that case."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id
