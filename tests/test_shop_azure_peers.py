"""The shop's `/azure/<region>/peers` over the lab's peering topology (`peers_seed`), cut by the
real `partition_regions` fault through the registry's activities against the ARM emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from activities.registry import CloudActivities
from activities.throttle import BUCKETS
from gameday.lab.shop import start_shop
from tests.support.partition_azure import AzurePartitionLab
from tests.support.servers import Servers
from tests.test_partition_azure import apply, prepare, restore


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzurePartitionLab]:
    seeded = AzurePartitionLab(servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    servers.azure_faults()


@pytest.fixture
def shop(servers: Servers) -> Iterator[str]:
    url, stop = start_shop(servers.env)
    yield url
    stop()


def eventually(url: str, path: str, status: int, timeout: float = 5) -> dict[str, Any]:
    """The answer of `path` once it is `status` (the shop caches its reads for half a second)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}{path}", timeout=5)
        if response.status_code == status:
            return dict(response.json())
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} is still {response.status_code}, not {status}: "
                                 f"{response.text}")
        time.sleep(0.1)


def test_a_partition_cuts_the_peers_check_and_leaves_the_region_serving(
        lab: AzurePartitionLab, shop: str) -> None:
    azure = CloudActivities("azure")
    before = eventually(shop, "/azure/eastus/peers", 200)
    assert before["modelled"] is True
    assert before["reason"] == "every subnet of eastus reaches centralus, westus"
    assert eventually(shop, "/azure/westus/peers", 200)["modelled"] is True

    request = prepare(azure)
    apply(azure, request)
    cut = eventually(shop, "/azure/eastus/peers", 503)
    assert cut["reason"].startswith("subnet app (10.0.0.0/17) of VNet shop-vnet is cut off "
                                    "westus (10.1.0.0/16, VNet west-vnet): outbound rule "
                                    "gameday-partition-out-")
    assert "(gameday's) of NSG app-nsg denies it at priority 100" in cut["reason"]
    # westus's own subnet has no NSG, but eastus's NSGs drop its flows at their end
    far = eventually(shop, "/azure/westus/peers", 503)
    assert "inbound rule gameday-partition-in-" in far["reason"]
    assert eventually(shop, "/azure/centralus/peers", 200)["reason"] == \
        "every subnet of centralus reaches eastus"
    assert eventually(shop, "/azure/eastus/health", 200)["serving"] is True

    restore(azure, request)
    assert eventually(shop, "/azure/eastus/peers", 200)["reason"] == before["reason"]
    assert eventually(shop, "/azure/westus/peers", 200)["serving"] is True
    assert eventually(shop, "/azure/eastus/health", 200)["serving"] is True


def test_a_lower_allow_wins_over_a_deny_and_a_region_without_vnet_is_not_modelled(
        lab: AzurePartitionLab, shop: str) -> None:
    """ARM evaluates the lowest priority first: a deny-all at 400 behind an allow at 150 of the
    same flow cuts nothing; without that allow it cuts, naming the rule."""
    arm = lab._connect()
    try:
        def rule(name: str, access: str, priority: int) -> None:
            arm.network.security_rules.begin_create_or_update(
                lab.resource_group, "edge-nsg", name, {"properties": {
                    "protocol": "*", "access": access, "direction": "Inbound",
                    "priority": priority, "sourceAddressPrefix": "10.2.0.0/16",
                    "sourcePortRange": "*", "destinationAddressPrefix": "*",
                    "destinationPortRange": "*"}}).result()

        rule("allow-central", "Allow", 140)
        rule("deny-central", "Deny", 145)
        assert eventually(shop, "/azure/eastus/peers", 200)["serving"] is True
        arm.network.security_rules.begin_delete(lab.resource_group, "edge-nsg",
                                                "allow-central").result()
    finally:
        arm.close()
    cut = eventually(shop, "/azure/eastus/peers", 503)
    assert cut["reason"] == ("subnet web (10.0.128.0/24) of VNet shop-vnet is cut off centralus "
                             "(10.2.0.0/16, VNet central-vnet): inbound rule deny-central of NSG "
                             "edge-nsg denies it at priority 145, before every allow (first at "
                             "150)")
    outside = eventually(shop, "/azure/westeurope/peers", 200)
    assert outside["modelled"] is False and "a region outside the lab" in outside["reason"]
