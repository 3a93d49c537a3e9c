"""Azure physical zones (contract §11): the ARM emulator answers Subscriptions - List Locations
with a mapping of logical to physical zones per subscription, read through the real
azure-mgmt-resource-subscriptions client, and a zone step's resolved scope carries its physical
zone."""

from __future__ import annotations

from typing import Any

from activities.azure.api import AzureConnection
from activities.azure.zones import AzureZones, subscription_client
from activities.registry import CloudActivities
from gameday.plan import StepRequest
from tests.support.gameday import runbook
from tests.test_azure import lab, zone_step  # noqa: F401  (the seeded lab fixture)

LAB = "00000000-0000-0000-0000-000000000000"
OTHER = "11111111-2222-3333-4444-555555555555"


def test_each_subscription_has_its_own_mapping_of_logical_to_physical_zones(servers: Any):
    connection = AzureConnection()
    try:
        client = connection.client(subscription_client, LAB)
        eastus = {location.name: location for location in client.subscriptions.list_locations(LAB)}
        mapped = {m.logical_zone: m.physical_zone
                  for m in eastus["eastus"].availability_zone_mappings}
        assert mapped == {"1": "eastus-az1", "2": "eastus-az2", "3": "eastus-az3"}
        assert not eastus["westus"].availability_zone_mappings  # a region without zones
        zones = AzureZones(connection)
        other = {logical: physical for (region, logical), physical in zones.physical(OTHER).items()
                 if region == "eastus"}
        assert sorted(other.values()) == sorted(mapped.values())  # the same datacenters
        assert all(other[logical] != mapped[logical] for logical in mapped)  # named otherwise
    finally:
        connection.close()


def test_a_zone_step_s_scope_carries_its_physical_zone(lab):  # noqa: F811
    book = runbook(zone_step())
    [step] = book.fault_steps()
    resolved = CloudActivities("azure").by_name["azure.resolve_blackhole_zone"](
        StepRequest(run_id="zones", step=step, guardrails=book.guardrails))
    assert (resolved.scope.zone, resolved.scope.zone_id) == ("1", "eastus-az1")
    assert resolved.scope.where == "1 (eastus-az1)"
