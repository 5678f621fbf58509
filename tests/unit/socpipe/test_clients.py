"""Client options built from settings: TLS, SASL and credentials reach the clients."""

from __future__ import annotations

from pathlib import Path

from socpipe.elastic import make_elasticsearch
from socpipe.kafka import client_options
from socpipe.settings import ElasticsearchSettings, KafkaSettings


def test_plaintext_has_no_tls_or_sasl_options() -> None:
    options = client_options(KafkaSettings())
    assert options["security_protocol"] == "PLAINTEXT"
    assert not {"ssl_cafile", "sasl_mechanism", "sasl_plain_password"} & set(options)


def test_sasl_ssl_passes_credentials_and_certificates(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = KafkaSettings(
        bootstrap_servers=["soc-kafka:9093"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="phuong-phuc-xa",
        sasl_password="s3cret-pass",  # type: ignore[arg-type]
        ssl_cafile=ca,
    )
    options = client_options(settings)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "phuong-phuc-xa"
    assert options["sasl_plain_password"] == "s3cret-pass"
    assert options["ssl_cafile"] == str(ca)
    assert options["ssl_check_hostname"] is True
    assert "s3cret-pass" not in repr(settings)


def test_elasticsearch_api_key_and_tls() -> None:
    client = make_elasticsearch(
        ElasticsearchSettings(
            hosts=["https://es.soc.example:9200"],
            api_key="an-api-key",  # type: ignore[arg-type]
            verify_certs=True,
        )
    )
    assert client._headers["authorization"] == "ApiKey an-api-key"
    (node,) = client.transport.node_pool.all()
    assert node.config.scheme == "https"
    client.close()


def test_elasticsearch_basic_auth() -> None:
    client = make_elasticsearch(
        ElasticsearchSettings(
            username="soc",
            password="pw-123",  # type: ignore[arg-type]
        )
    )
    assert client._headers["authorization"].startswith("Basic ")
    client.close()
