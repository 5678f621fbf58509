from __future__ import annotations

from pathlib import Path

import pytest

from detectors.enrich import AgencyRegistry, AssetRegistry, address_scope
from socpipe.errors import ConfigError
from socpipe.settings import Tier

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "config"


def test_sample_registry_has_both_tiers_with_vietnamese_names() -> None:
    registry = AgencyRegistry.load(CONFIG / "agencies.yaml")
    tiers = [a.tier for a in registry.agencies.values()]
    assert tiers.count(Tier.PROVINCE) >= 25 and tiers.count(Tier.COMMUNE) >= 50
    agency = registry.get("phuong-phuc-xa")
    assert agency is not None and agency.name == "UBND phường Phúc Xá"
    assert registry.get("nowhere") is None


def test_a_bad_registry_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "agencies.yaml"
    path.write_text(
        "version: 1\nprovince: {id: p, name: P}\nagencies:\n"
        "  - {id: a-1, name: A, tier: district}\n"
        "  - {id: a-2, name: B, tier: commune, colour: red}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        AgencyRegistry.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "agencies.0.tier" in message
    assert "agencies.1.colour: unknown key" in message


def test_duplicate_agency_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "agencies.yaml"
    path.write_text(
        "version: 1\nprovince: {id: p, name: P}\nagencies:\n"
        "  - {id: a-1, name: A, tier: commune}\n  - {id: a-1, name: B, tier: commune}\n"
    )
    with pytest.raises(ConfigError, match="listed twice: a-1"):
        AgencyRegistry.load(path)


def test_assets_by_host_and_most_specific_network() -> None:
    assets = AssetRegistry.load(CONFIG / "assets.yaml")
    entry = assets.for_host("DC01.tinh-mau.local")
    assert entry is not None and entry.criticality == "extreme_impact"
    network = assets.for_address("10.10.0.20")
    assert network is not None and network.criticality == "high_impact"
    assert assets.for_address("192.0.2.1") is None
    assert assets.for_address("not an ip") is None


@pytest.mark.parametrize(
    ("address", "scope"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("8.8.8.8", "public"),
        ("2001:4860::8888", "public"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link_local"),
        ("224.0.0.1", "multicast"),
        ("203.0.113.5", "reserved"),
        ("0.0.0.0", "reserved"),  # noqa: S104 - an address to classify, not to bind
        ("300.1.1.1", "invalid"),
        ("", "invalid"),
    ],
)
def test_address_scope(address: str, scope: str) -> None:
    assert address_scope(address) == scope
