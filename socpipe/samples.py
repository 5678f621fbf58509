"""Realistic log samples for the demo, the end-to-end tests and the benchmarks.

sshd lines: loghub's OpenSSH log (2,000 lines from a lab server under brute force) from the
shared data folder, when it is there; otherwise a seeded generator writes lines of the same
kinds in the same proportions. Windows events: the OTRF Security-Datasets (recorded attacks, as
NXLog ships them), when the shared data is there. Either way, timestamps can be moved to "now"
so that a replay looks like live traffic.
"""

from __future__ import annotations

import os
import random
import re
import zipfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
_BSD_HEADER = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) (?P<rest>.*)$"
)


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$SOCPIPE_SHARED_DATA``."""
    return Path(os.environ.get("SOCPIPE_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")


def loghub_openssh() -> Path | None:
    """The loghub OpenSSH sample, if the shared data folder has it."""
    path = shared_data_dir() / "loghub" / "OpenSSH" / "OpenSSH_2k.log"
    return path if path.is_file() else None


def generated_sshd_lines(count: int, seed: int = 7) -> list[str]:
    """``count`` sshd lines of the kinds a brute-forced server logs, from a seeded generator."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    users = ["root", "admin", "oracle", "test", "ubuntu", "nguyen.van.a", "tran.thi.b", "pi"]
    attackers = [
        f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in range(12)
    ]
    staff = ["10.20.1.15", "10.20.1.16", "10.20.3.40"]
    lines = []
    pid = 24000
    for _ in range(count):
        pid += rng.randint(0, 3)
        ip = rng.choice(attackers)
        port = rng.randint(1024, 65535)
        user = rng.choice(users)
        kind = rng.random()
        if kind < 0.45:
            message = f"Failed password for {user} from {ip} port {port} ssh2"
        elif kind < 0.60:
            message = f"Failed password for invalid user {user}x from {ip} port {port} ssh2"
        elif kind < 0.70:
            message = f"Invalid user {user}x from {ip}"
        elif kind < 0.78:
            message = (
                f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
                f"tty=ssh ruser= rhost={ip}  user={user}"
            )
        elif kind < 0.88:
            message = f"Received disconnect from {ip}: 11: Bye Bye [preauth]"
        elif kind < 0.95:
            message = f"Connection closed by {ip} [preauth]"
        else:
            who = rng.choice(["nguyen.van.a", "tran.thi.b"])
            message = f"Accepted publickey for {who} from {rng.choice(staff)} port {port} ssh2"
        lines.append(f"Dec 10 06:55:46 LabSZ sshd[{pid}]: {message}")
    return lines


def sshd_lines() -> list[str]:
    """The loghub sample if present, else 2,000 generated lines."""
    path = loghub_openssh()
    if path is not None:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    return generated_sshd_lines(2000)


def restamp(
    lines: list[str], host: str, zone: str = "Asia/Ho_Chi_Minh", now: datetime | None = None
) -> Iterator[str]:
    """The lines with their BSD syslog time set to ``now`` in ``zone`` and the host replaced."""
    moment = (now or datetime.now(ZoneInfo(zone))).astimezone(ZoneInfo(zone))
    stamp = f"{moment:%b} {moment.day:>2} {moment:%H:%M:%S}"
    for line in lines:
        match = _BSD_HEADER.match(line)
        yield f"{stamp} {host} {match['rest']}" if match else line


def otrf_lines(limit: int = 0, per_dataset: int = 0, root: Path | None = None) -> list[bytes]:
    """Windows events (flat JSON, one per line) of the OTRF Security-Datasets in shared data.

    Each zip is one recorded attack (Mimikatz, PowerView, lateral movement...) among the
    machine's ordinary events. ``per_dataset`` keeps the first so many lines of each, so that a
    sample has every attack; ``limit`` caps the whole (0: no cap). Empty without the data.
    """
    lines: list[bytes] = []
    for archive in sorted((root or shared_data_dir() / "otrf").glob("*.zip")):
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if member.startswith("__MACOSX/"):
                    continue  # a macOS resource fork zipped along, not events
                found = [line for line in zipped.read(member).splitlines() if line.strip()]
                lines.extend(found[:per_dataset] if per_dataset else found)
    return lines[:limit] if limit else lines


def restamp_winlog(
    lines: Iterable[bytes], zone: str = "Asia/Ho_Chi_Minh", now: datetime | None = None
) -> Iterator[str]:
    """Flat Windows events with their times set to ``now``: NXLog's local ``EventTime`` and
    ``EventReceivedTime`` (in ``zone``), the shipper's ``@timestamp`` and Sysmon's ``UtcTime``.
    Lines that are not JSON objects are left out."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    local = moment.astimezone(ZoneInfo(zone))
    stamps = {
        "EventTime": f"{local:%Y-%m-%d %H:%M:%S}",
        "EventReceivedTime": f"{local:%Y-%m-%d %H:%M:%S}",
        "@timestamp": f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z",
        "UtcTime": f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}",
    }
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        event.update({key: value for key, value in stamps.items() if key in event})
        yield orjson.dumps(event).decode()
