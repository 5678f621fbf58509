from __future__ import annotations

from pathlib import Path

import pytest

from socpipe.errors import ConfigError
from socpipe.settings import Tier, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SOCPIPE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "socpipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_fails_naming_its_path(tmp_path: Path) -> None:
    config = write(tmp_path, "kafka:\n  topics:\n    rw: soc.raw\n")
    with pytest.raises(ConfigError, match=r"kafka\.topics\.rw: unknown key"):
        load_settings(config)


def test_bad_value_fails_naming_its_path_and_value(tmp_path: Path) -> None:
    config = write(tmp_path, "api:\n  port: 70000\nagency:\n  tier: district\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "api.port: Input should be less than or equal to 65535 (got 70000)" in message
    assert "agency.tier" in message and "district" in message


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    config = write(tmp_path, "kafka:\n  compresion: lz4\nalerting:\n  dedup_window_s: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "kafka.compresion: unknown key" in str(caught.value)
    assert "alerting.dedup_window_s" in str(caught.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path, "kafka:\n  bootstrap_servers: [a\n")
    with pytest.raises(ConfigError, match=r"socpipe.yaml:\d+:\d+: not valid YAML"):
        load_settings(config)


def test_unknown_time_zone_fails_at_start(tmp_path: Path) -> None:
    config = write(tmp_path, "detector:\n  syslog_timezone: Asia/Hanoi_City\n")
    with pytest.raises(ConfigError, match=r"detector.syslog_timezone: .*unknown time zone"):
        load_settings(config)


def test_environment_overrides_file_with_nested_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path,
        "agency:\n  id: so-tttt\n  name: Sở Thông tin và Truyền thông\n"
        "kafka:\n  bootstrap_servers: [file:9092]\n",
    )
    monkeypatch.setenv("SOCPIPE_KAFKA__BOOTSTRAP_SERVERS", "a:9092, b:9092")
    monkeypatch.setenv("SOCPIPE_AGENCY__TIER", "commune")
    settings = load_settings(config)
    assert settings.kafka.bootstrap_servers == ["a:9092", "b:9092"]
    assert settings.agency.tier is Tier.COMMUNE
    assert settings.agency.id == "so-tttt"
    assert settings.agency.name == "Sở Thông tin và Truyền thông"


def test_lists_of_addresses_come_from_the_environment_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOCPIPE_ELASTICSEARCH__HOSTS", "https://es1:9200,https://es2:9200")
    monkeypatch.setenv("SOCPIPE_API__AGENCY_BOOTSTRAP_SERVERS", " soc-kafka:9094 ,, ")
    settings = load_settings()
    assert settings.elasticsearch.hosts == ["https://es1:9200", "https://es2:9200"]
    assert settings.api.agency_bootstrap_servers == ["soc-kafka:9094"]
    # A file gives a YAML list, taken as it is; an empty one is refused where one is needed.
    assert load_settings(elasticsearch={"hosts": ["http://a:9200"]}).elasticsearch.hosts == [
        "http://a:9200"
    ]
    monkeypatch.setenv("SOCPIPE_KAFKA__BOOTSTRAP_SERVERS", " , ")
    with pytest.raises(ConfigError, match=r"kafka\.bootstrap_servers"):
        load_settings()


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCPIPE_CONFIG", str(write(tmp_path, "api:\n  port: 8443\n")))
    assert load_settings().api.port == 8443


def test_secrets_never_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCPIPE_ELASTICSEARCH__API_KEY", "es-key-do-not-print")
    config = write(
        tmp_path,
        "kafka:\n  sasl_password: kafka-pass-do-not-print\n"
        "api:\n  tokens:\n    - {name: a, token: tok-do-not-print-0123}\n",
    )
    settings = load_settings(config)
    shown = repr(settings) + settings.model_dump_json()
    for secret in ("es-key-do-not-print", "kafka-pass-do-not-print", "tok-do-not-print-0123"):
        assert secret not in shown
    assert settings.elasticsearch.api_key is not None
    assert settings.elasticsearch.api_key.get_secret_value() == "es-key-do-not-print"


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    config = write(tmp_path, "api:\n  tokens:\n    - {name: a, token: short-secret}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "api.tokens.0.token" in str(caught.value)
    assert "short-secret" not in str(caught.value)


def test_topic_specs_merge_with_defaults_and_refuse_unknown_topics(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "kafka:\n  topic_specs:\n    raw: {partitions: 12}\n"))
    assert settings.kafka.topic_specs["raw"].partitions == 12
    assert settings.kafka.topic_specs["rules"].cleanup_policy == "compact"
    with pytest.raises(ConfigError, match="unknown topic rawz"):
        load_settings(write(tmp_path, "kafka:\n  topic_specs:\n    rawz: {partitions: 1}\n"))


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).kafka.topics.raw == "soc.raw"


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"))


def test_a_config_error_never_shows_a_secret_inside_a_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = '[{"type": "telegram", "chat_id": "1", "bot_token": "123456:SECRET-TOKEN"}]'
    monkeypatch.setenv("SOCPIPE_ALERTING__NOTIFICATIONS__CHANNELS", channel)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "alerting.notifications.channels.0.telegram.name" in message
    assert "SECRET-TOKEN" not in message
