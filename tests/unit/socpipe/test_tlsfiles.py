"""The local CA and the agency listener's certificate: verified chains, names, reuse, renewal."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from socpipe.tlsfiles import (
    CA_FILE,
    CA_KEY_FILE,
    KEYSTORE_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    ServerTls,
    ensure_server_tls,
)


def _chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _verify(tls: ServerTls, name: x509.DNSName | x509.IPAddress, now: datetime) -> None:
    """RFC 5280 path validation of server.pem against ca.pem for ``name``."""
    leaf, *intermediates = _chain(tls.cert_file)
    (ca,) = _chain(tls.ca_file)
    verifier = PolicyBuilder().store(Store([ca])).time(now).build_server_verifier(name)
    verifier.verify(leaf, intermediates)


def _handshake(tls: ServerTls, server_hostname: str, cafile: Path | None = None) -> str:
    """A TLS handshake in memory: a server with server.pem/server.key, a client trusting
    ``cafile`` (ca.pem by default) and checking ``server_hostname``. Returns the protocol."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls.cert_file, tls.key_file)
    client_ctx = ssl.create_default_context(cafile=str(cafile or tls.ca_file))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    # Each side reads what the other wrote to the shared BIOs; a few rounds finish TLS 1.3.
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            break
    assert all(done.values()), done
    version = client.version()
    assert version is not None
    return version


def test_the_chain_verifies_with_the_ca_for_both_names(tmp_path: Path) -> None:
    tls = ensure_server_tls(tmp_path / "tls")
    now = datetime.now(UTC)
    _verify(tls, x509.IPAddress(ipaddress.ip_address("127.0.0.1")), now)
    _verify(tls, x509.DNSName("localhost"), now)
    with pytest.raises(VerificationError):
        _verify(tls, x509.DNSName("soc.example.vn"), now)
    assert _handshake(tls, "127.0.0.1").startswith("TLS")
    assert _handshake(tls, "localhost").startswith("TLS")


def test_a_client_trusting_another_ca_refuses_the_server(tmp_path: Path) -> None:
    tls = ensure_server_tls(tmp_path / "one")
    other = ensure_server_tls(tmp_path / "two")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls, "127.0.0.1", cafile=other.ca_file)


def test_the_certificate_names_the_loopback_address_and_localhost(tmp_path: Path) -> None:
    tls = ensure_server_tls(tmp_path)
    leaf, ca = _chain(tls.cert_file)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ca == _chain(tls.ca_file)[0]  # server.pem is the chain: leaf, then the CA
    assert leaf.fingerprint(hashes.SHA256()).hex() == tls.fingerprint
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=365) < lifetime <= timedelta(days=731)
    assert tls.not_after == leaf.not_valid_after_utc


def test_other_hosts_get_a_certificate_naming_them(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path)
    tls = ensure_server_tls(tmp_path, hosts=("soc.example.vn", "10.20.0.5", "127.0.0.1"))
    assert tls.fingerprint != first.fingerprint
    now = datetime.now(UTC)
    _verify(tls, x509.DNSName("soc.example.vn"), now)
    _verify(tls, x509.IPAddress(ipaddress.ip_address("10.20.0.5")), now)


def test_keys_are_unencrypted_pkcs8_readable_only_by_the_owner(tmp_path: Path) -> None:
    tls = ensure_server_tls(tmp_path)
    for name in (SERVER_KEY_FILE, CA_KEY_FILE, KEYSTORE_FILE):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    for name in (CA_FILE, SERVER_CERT_FILE):
        assert (tmp_path / name).stat().st_mode & 0o077 != 0o077, name
    key_pem = tls.key_file.read_bytes()
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not encrypted
    key = serialization.load_pem_private_key(key_pem, password=None)
    leaf = _chain(tls.cert_file)[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    # Kafka's PEM keystore: the same key, then the same chain, in one file.
    assert tls.keystore_file.read_bytes() == key_pem + tls.cert_file.read_bytes()


def test_files_are_reused_while_valid(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    again = ensure_server_tls(tmp_path)
    assert again == first
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_an_expired_server_certificate_is_issued_again_by_the_same_ca(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = ensure_server_tls(tmp_path, now=now - timedelta(days=3 * 365))
    assert old.not_after < now
    ca_before = (tmp_path / CA_FILE).read_bytes()
    renewed = ensure_server_tls(tmp_path)
    assert renewed.fingerprint != old.fingerprint
    assert renewed.not_after > now + timedelta(days=365)
    # Collectors that trust ca.pem keep trusting the broker.
    assert (tmp_path / CA_FILE).read_bytes() == ca_before
    _verify(renewed, x509.DNSName("localhost"), now)


def test_a_certificate_near_its_end_is_renewed(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = ensure_server_tls(tmp_path, now=now - timedelta(days=725))
    assert now < old.not_after  # still valid for a few days
    assert ensure_server_tls(tmp_path).fingerprint != old.fingerprint


def test_an_expired_ca_is_made_again_with_its_server_certificate(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ensure_server_tls(tmp_path, now=now - timedelta(days=11 * 365))
    ca_before = (tmp_path / CA_FILE).read_bytes()
    renewed = ensure_server_tls(tmp_path)
    assert (tmp_path / CA_FILE).read_bytes() != ca_before
    _verify(renewed, x509.IPAddress(ipaddress.ip_address("127.0.0.1")), now)


@pytest.mark.parametrize("name", [SERVER_KEY_FILE, SERVER_CERT_FILE])
def test_a_missing_or_damaged_server_file_is_made_again(tmp_path: Path, name: str) -> None:
    first = ensure_server_tls(tmp_path)
    (tmp_path / name).unlink()
    second = ensure_server_tls(tmp_path)
    assert second.fingerprint != first.fingerprint
    (tmp_path / name).write_bytes(b"-----BEGIN garbage-----\nnot base64\n")
    third = ensure_server_tls(tmp_path)
    assert third.fingerprint != second.fingerprint
    _verify(third, x509.DNSName("localhost"), datetime.now(UTC))


def test_a_server_key_of_another_certificate_is_replaced(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path / "a")
    other = ensure_server_tls(tmp_path / "b")
    (tmp_path / "a" / SERVER_KEY_FILE).write_bytes(other.key_file.read_bytes())
    again = ensure_server_tls(tmp_path / "a")
    assert again.fingerprint != first.fingerprint
    assert _handshake(again, "127.0.0.1").startswith("TLS")


def test_a_missing_ca_key_makes_a_new_ca(tmp_path: Path) -> None:
    first = ensure_server_tls(tmp_path)
    ca_before = (tmp_path / CA_FILE).read_bytes()
    (tmp_path / CA_KEY_FILE).unlink()
    again = ensure_server_tls(tmp_path)
    assert (tmp_path / CA_FILE).read_bytes() != ca_before
    assert again.fingerprint != first.fingerprint
    assert _handshake(again, "localhost").startswith("TLS")


def test_no_hosts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one host"):
        ensure_server_tls(tmp_path, hosts=())
