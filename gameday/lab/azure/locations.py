"""A subscription's locations with their zone mappings, as ARM's Subscriptions - List Locations
answers (`GET /subscriptions/{s}/locations?api-version=2022-12-01`): `{"value": [{"id", "name",
"type": "Region", "displayName", "regionalDisplayName", "metadata", "availabilityZoneMappings":
[{"logicalZone": "1", "physicalZone": "eastus-az1"}, ...]}]}`.

Azure maps logical zones to physical zones per subscription; the lab does too, the same on every
run: the lab's own subscription (`LAB_SUBSCRIPTION`) maps `n` to `<region>-az<n>`, any other
rotates that by a step taken from its id, never 0. Regions without zones have no mappings.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from gameday.lab.azure.arm import SUB, Json
from gameday.lab.azure.identity import LAB_SUBSCRIPTION
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

ZONED = {"eastus": "East US", "eastus2": "East US 2", "westus2": "West US 2",
         "westus3": "West US 3", "centralus": "Central US", "northeurope": "North Europe",
         "westeurope": "West Europe", "uksouth": "UK South"}
UNZONED = {"westus": "West US", "northcentralus": "North Central US"}


def physical_zones(subscription: str, region: str) -> dict[str, str]:
    """Logical zone → physical zone of a zoned region in the subscription ({} when unzoned)."""
    if region not in ZONED:
        return {}
    step = 0 if subscription.lower() == LAB_SUBSCRIPTION else (
        1 + int(hashlib.sha256(subscription.lower().encode()).hexdigest(), 16) % 2)
    return {str(n): f"{region}-az{(n - 1 + step) % 3 + 1}" for n in (1, 2, 3)}


class LocationsProvider:
    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        arm.route("GET", SUB + "/locations", self.list_locations)

    def list_locations(self, request: Request) -> Response:
        sub = request.params["sub"]
        value: list[Json] = []
        for name, display in sorted({**ZONED, **UNZONED}.items()):
            location: Json = {
                "id": f"/subscriptions/{sub}/locations/{name}", "subscriptionId": sub,
                "name": name, "type": "Region", "displayName": display,
                "regionalDisplayName": display,
                "metadata": {"regionType": "Physical", "regionCategory": "Recommended"},
            }
            zones = physical_zones(sub, name)
            if zones:
                location["availabilityZoneMappings"] = [
                    {"logicalZone": logical, "physicalZone": physical}
                    for logical, physical in zones.items()]
            value.append(location)
        return Response(200, {"value": value})
