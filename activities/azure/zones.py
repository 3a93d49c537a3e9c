"""Azure zones by physical identity (contract §11): logical zone `1` of one subscription may be
another datacenter than `1` of the next. ARM's subscription locations
(`GET /subscriptions/{id}/locations?api-version=2022-12-01`) give, per region,
`availabilityZoneMappings` of each logical zone to its physical zone (`eastus-az1`); `AzureZones`
puts that physical zone in a zone step's scope, where ARM reports one.
"""

from __future__ import annotations

import threading
from typing import Any

from azure.mgmt.resource.subscriptions import SubscriptionClient

from activities.azure.api import AzureConnection, listing
from gameday.errors import CloudError
from gameday.plan import Scope
from gameday.runbook import FaultStep


def subscription_client(credential: Any, subscription: str, **settings: Any) -> SubscriptionClient:
    """`AzureConnection.client` builds clients of a subscription; this one is tenant-wide and is
    told the subscription at each call."""
    return SubscriptionClient(credential, **settings)


class AzureZones:
    """Logical → physical zones of each subscription and region, asked once per worker."""

    def __init__(self, connection: AzureConnection):
        self.connection = connection
        self._physical: dict[str, dict[tuple[str, str], str]] = {}
        self._lock = threading.Lock()

    def physical(self, subscription: str) -> dict[tuple[str, str], str]:
        """(region, logical zone) → physical zone of every region of the subscription that
        reports its mapping (one listing, then cached: a subscription's mapping never changes)."""
        with self._lock:
            known = self._physical.get(subscription)
        if known is not None:
            return known
        client: SubscriptionClient = self.connection.client(subscription_client, subscription)
        try:
            locations = listing(f"listing the locations of subscription {subscription}",
                                lambda: client.subscriptions.list_locations(subscription))
        except CloudError as exc:
            if exc.retryable:
                raise
            # a role assigned on resource groups only may not list the subscription's locations:
            # its zones are then known by their logical names only (leased per subscription)
            locations = []
        known = {(str(location.name), str(mapping.logical_zone)): str(mapping.physical_zone)
                 for location in locations
                 for mapping in (location.availability_zone_mappings or [])
                 if location.name and mapping.logical_zone and mapping.physical_zone}
        with self._lock:
            self._physical[subscription] = known
        return known

    def place(self, step: FaultStep, scope: Scope | None = None) -> FaultStep:
        """Azure targets name logical zones only: nothing to fill in."""
        return step

    def scope(self, scope: Scope) -> Scope:
        """The scope with its zone's physical zone, when ARM reports the mapping."""
        if scope.zone is None or scope.zone_id is not None or not scope.region:
            return scope
        physical = self.physical(scope.account).get((scope.region, scope.zone))
        return scope.model_copy(update={"zone_id": physical}) if physical else scope
