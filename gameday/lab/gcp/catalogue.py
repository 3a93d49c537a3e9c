"""The fixed regions and zones the emulator serves, and each region's auto-mode subnet range."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class RegionInfo:
    name: str
    id: int
    zones: tuple[str, ...]
    ip_range: str
    description: str


REGIONS: dict[str, RegionInfo] = {
    region.name: region
    for region in (
        RegionInfo("us-central1", 1000, ("a", "b", "c", "f"), "10.128.0.0/20", "Iowa"),
        RegionInfo("us-east1", 1230, ("b", "c", "d"), "10.142.0.0/20", "South Carolina"),
        RegionInfo("us-east4", 1270, ("a", "b", "c"), "10.150.0.0/20", "Northern Virginia"),
        RegionInfo("us-west1", 1210, ("a", "b", "c"), "10.138.0.0/20", "Oregon"),
        RegionInfo("europe-west1", 1100, ("b", "c", "d"), "10.132.0.0/20", "Belgium"),
        RegionInfo("asia-east1", 1220, ("a", "b", "c"), "10.140.0.0/20", "Taiwan"),
    )
}

ZONES: dict[str, str] = {
    f"{region.name}-{suffix}": region.name for region in REGIONS.values() for suffix in region.zones
}
"""Zone name → region name, in catalogue order."""


def zone_id(zone: str) -> int:
    region = REGIONS[ZONES[zone]]
    return region.id * 10 + 1 + region.zones.index(zone.rsplit("-", 1)[1])


def network_ip(region: str, index: int) -> str:
    """The `index`-th address handed out in `region`: the region's auto-mode range from `.2` on.

    Past the /20 the addresses simply keep counting upwards, so 10,000 instances still get
    distinct addresses.
    """
    base = ipaddress.IPv4Network(REGIONS[region].ip_range).network_address
    return str(base + 2 + index)
