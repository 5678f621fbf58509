"""A local certificate authority and a server certificate for the broker's agency listener.

``ensure_server_tls(directory)`` keeps these files in ``directory`` (``<local.home>/tls``)::

    ca.pem                 the CA certificate: what a collector trusts (``kafka.ssl_cafile``)
    ca.key                 the CA's private key (PKCS#8, mode 0600)
    server.pem             the server certificate followed by the CA certificate (the chain)
    server.key             the server's private key (PKCS#8, unencrypted, mode 0600)
    server-keystore.pem    server.key then server.pem, mode 0600: Kafka's PEM keystore wants
                           the key and its chain in one file

They are made once and reused. The server certificate is issued again (by the same CA, so
collectors keep trusting it) when it is absent, unreadable, near its end, does not name every
wanted host, or does not verify with the CA; the CA is made again, with a new server certificate,
when the CA itself is absent, unreadable or near its end.

This is for one machine (dev, CI, the demo). In production the broker's certificate comes from
the province's own CA and ``kafka.ssl_cafile`` of each collector names that CA.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server.key"
KEYSTORE_FILE = "server-keystore.pem"

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
SERVER_VALIDITY = timedelta(days=730)
CA_VALIDITY = timedelta(days=3650)
# Issued again this long before the end, so a broker started today does not serve an expired
# certificate next week.
RENEW_BEFORE = timedelta(days=30)
# Certificates start a little in the past: a client whose clock is behind still accepts them.
BACKDATE = timedelta(hours=1)

_PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerTls:
    """The files of a local CA and its server certificate, and what the certificate says."""

    directory: Path
    not_after: datetime
    # SHA-256 of the server certificate (DER, hex): changes whenever the certificate does.
    fingerprint: str

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_FILE

    @property
    def ca_key_file(self) -> Path:
        return self.directory / CA_KEY_FILE

    @property
    def cert_file(self) -> Path:
        return self.directory / SERVER_CERT_FILE

    @property
    def key_file(self) -> Path:
        return self.directory / SERVER_KEY_FILE

    @property
    def keystore_file(self) -> Path:
        return self.directory / KEYSTORE_FILE


def ensure_server_tls(
    directory: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    now: datetime | None = None,
) -> ServerTls:
    """Make or reuse the CA and a server certificate for ``hosts`` (IP addresses or DNS names)
    in ``directory``; see the module docstring for when they are made again."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    now = now or datetime.now(UTC)
    directory.mkdir(parents=True, exist_ok=True)
    ca = _load_ca(directory, now)
    if ca is None:
        log.info("making a local certificate authority in %s", directory)
        ca = _make_ca(now)
        _write(directory / CA_KEY_FILE, _key_pem(ca[1]), secret=True)
        _write(directory / CA_FILE, ca[0].public_bytes(serialization.Encoding.PEM))
        server = None
    else:
        server = _load_server(directory, ca[0], hosts, now)
    if server is None:
        log.info("issuing a server certificate for %s in %s", ", ".join(hosts), directory)
        server = _make_server(ca, hosts, now)
        _write(directory / SERVER_KEY_FILE, _key_pem(server[1]), secret=True)
        _write(directory / SERVER_CERT_FILE, _chain_pem(server[0], ca[0]))
    cert, key = server
    keystore = _key_pem(key) + _chain_pem(cert, ca[0])
    if _read(directory / KEYSTORE_FILE) != keystore:
        _write(directory / KEYSTORE_FILE, keystore, secret=True)
    return ServerTls(
        directory=directory,
        not_after=cert.not_valid_after_utc,
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
    )


# --- reading what is there ------------------------------------------------------------------


def _load_ca(directory: Path, now: datetime) -> tuple[x509.Certificate, _PrivateKey] | None:
    pair = _load_pair(directory / CA_FILE, directory / CA_KEY_FILE)
    if pair is None:
        return None
    cert, key = pair
    if not _current(cert, now):
        log.info(
            "the local CA in %s ends %s: making a new one", directory, cert.not_valid_after_utc
        )
        return None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    return (cert, key) if constraints.ca else None


def _load_server(
    directory: Path, ca: x509.Certificate, hosts: Sequence[str], now: datetime
) -> tuple[x509.Certificate, _PrivateKey] | None:
    pair = _load_pair(directory / SERVER_CERT_FILE, directory / SERVER_KEY_FILE)
    if pair is None:
        return None
    cert, key = pair
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        log.info("the server certificate in %s is not the local CA's: issuing a new one", directory)
        return None
    if not _current(cert, now):
        log.info(
            "the server certificate in %s ends %s: issuing a new one",
            directory,
            cert.not_valid_after_utc,
        )
        return None
    if not set(_wanted_names(hosts)) <= set(_names_of(cert)):
        log.info("the server certificate in %s lacks a wanted host: issuing a new one", directory)
        return None
    return cert, key


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, _PrivateKey] | None:
    """The first certificate of ``cert_path`` and the key of ``key_path``, if both read and the
    key is the certificate's."""
    cert_pem, key_pem = _read(cert_path), _read(key_path)
    if cert_pem is None or key_pem is None:
        return None
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, IndexError) as exc:
        log.warning("cannot read %s or %s (%s): making them again", cert_path, key_path, exc)
        return None
    if not isinstance(key, _PrivateKey) or _spki(key.public_key()) != _spki(cert.public_key()):
        return None
    return cert, key


def _current(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _names_of(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san)


def _wanted_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


# --- making new ones ------------------------------------------------------------------------


def _make_ca(now: datetime) -> tuple[x509.Certificate, _PrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "socpipe local services"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"socpipe local CA {os.uname().nodename}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server(
    ca: tuple[x509.Certificate, _PrivateKey], hosts: Sequence[str], now: datetime
) -> tuple[x509.Certificate, _PrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    # Not past the CA's own end: a chain is only as long-lived as its shortest link.
    not_after = min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_wanted_names(hosts)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# --- files ----------------------------------------------------------------------------------


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _chain_pem(cert: x509.Certificate, ca: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )


def _spki(public_key: object) -> bytes:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return b""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Replace ``path`` at once; a key file is never readable by others, not even briefly."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = 0o600 if secret else 0o644
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)  # the umask may have taken bits from a certificate's 0644
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
