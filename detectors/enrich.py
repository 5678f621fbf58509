"""Enrichment from files the SOC keeps: the agency registry and the asset list.

``AgencyRegistry`` (``deploy/config/agencies.yaml``) says which agencies exist, their names and
tiers, and their address blocks; the SOC's registry, not the collector, is the truth for name and
tier. ``AssetRegistry`` (``deploy/config/assets.yaml``) gives hosts and networks a criticality.
``address_scope`` classifies an address as private, public, loopback and so on.

Both files are validated when loaded: an unknown key or a bad value raises ConfigError naming
the file and the key's path, so a detector never starts with a half-read registry.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from socpipe.errors import ConfigError
from socpipe.settings import Tier

Criticality = Literal["low_impact", "medium_impact", "high_impact", "extreme_impact"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Agency(_Strict):
    """One agency of the province."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str = Field(min_length=1)
    tier: Tier
    networks: tuple[IpNetwork, ...] = ()


class Province(_Strict):
    """The province the SOC serves."""

    id: str
    name: str


class AgencyFile(_Strict):
    """The shape of agencies.yaml."""

    version: Literal[1]
    province: Province
    agencies: list[Agency]

    @field_validator("agencies")
    @classmethod
    def _unique(cls, agencies: list[Agency]) -> list[Agency]:
        seen: set[str] = set()
        duplicates = sorted({a.id for a in agencies if a.id in seen or seen.add(a.id)})  # type: ignore[func-returns-value]
        if duplicates:
            raise ValueError(f"agency ids listed twice: {', '.join(duplicates)}")
        return agencies


class HostAsset(_Strict):
    """A host and what it is worth."""

    name: str
    agency: str | None = None
    role: str = ""
    criticality: Criticality


class NetworkAsset(_Strict):
    """An address block and what it is worth."""

    cidr: IpNetwork
    role: str = ""
    criticality: Criticality


class AssetFile(_Strict):
    """The shape of assets.yaml."""

    version: Literal[1]
    default: Criticality | None = None
    hosts: list[HostAsset] = []
    networks: list[NetworkAsset] = []


def _load(path: Path, model: type[BaseModel]) -> Any:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            f"{'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path} is not a valid {model.__name__}:\n{problems}") from exc


class AgencyRegistry:
    """Agencies by id."""

    def __init__(self, province: Province, agencies: list[Agency]) -> None:
        self.province = province
        self.agencies = {agency.id: agency for agency in agencies}

    @classmethod
    def load(cls, path: Path) -> AgencyRegistry:
        """Read and validate an agencies.yaml; raises ConfigError on any problem."""
        parsed: AgencyFile = _load(path, AgencyFile)
        return cls(parsed.province, parsed.agencies)

    def get(self, agency_id: str) -> Agency | None:
        """The agency with this id, or None if the registry does not know it."""
        return self.agencies.get(agency_id)


class AssetRegistry:
    """Criticality of hosts (by name) and addresses (by the most specific network)."""

    def __init__(self, assets: AssetFile) -> None:
        self.default = assets.default
        self.hosts = {_host_key(h.name): h for h in assets.hosts}
        # Most specific first, so the first match is the best.
        self.networks = sorted(assets.networks, key=lambda n: n.cidr.prefixlen, reverse=True)

    @classmethod
    def load(cls, path: Path) -> AssetRegistry:
        """Read and validate an assets.yaml; raises ConfigError on any problem."""
        return cls(_load(path, AssetFile))

    def for_host(self, name: str | None) -> HostAsset | None:
        """The asset entry of a host name, if listed."""
        return self.hosts.get(_host_key(name)) if name else None

    def for_address(self, address: str | None) -> NetworkAsset | None:
        """The most specific network entry holding ``address``, if any."""
        if not address:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for network in self.networks:
            if ip.version == network.cidr.version and ip in network.cidr:
                return network
        return None


def _host_key(name: str | None) -> str:
    return (name or "").split(".", 1)[0].casefold()


Scope = Literal["private", "public", "loopback", "link_local", "multicast", "reserved", "invalid"]


@lru_cache(maxsize=65536)
def address_scope(address: str) -> Scope:
    """What kind of address this is; cached because the same addresses recur all day."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "invalid"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if _is_rfc1918_or_ula(ip):
        return "private"
    # Documentation, benchmarking, unspecified and other special blocks.
    if ip.is_private or ip.is_reserved or ip.is_unspecified:
        return "reserved"
    return "public"


_PRIVATE_BLOCKS = tuple(
    ipaddress.ip_network(block)
    for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def _is_rfc1918_or_ula(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == block.version and ip in block for block in _PRIVATE_BLOCKS)
