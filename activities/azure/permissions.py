"""`azure.check_permissions`: may the worker's live credentials make the plan's mutating calls?

ARM has no dry run for writes; it says what the caller may do on a scope:
`GET {scope}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01` lists entries of
`actions` and `notActions` (with `*` wildcards, compared case-insensitively). An action is allowed
when some entry's actions match it and none of that entry's notActions do. The scope asked is the
resource group of each resource a step changes (what a role assignment on the group, or above it,
grants), and each role action of the calls the step's apply and restore make (`MUTATING`) is
matched there. Read-only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from activities.azure.api import AzureConnection, cloud_error
from activities.base import beat
from gameday.permissions import Permission, PermissionReport, gathered
from gameday.plan import PermissionCheck, Resource

API_VERSION = "2022-04-01"
_NETWORK = "Microsoft.Network"
_NIC_JOINS = (f"{_NETWORK}/networkSecurityGroups/join/action",
              f"{_NETWORK}/virtualNetworks/subnets/join/action",
              f"{_NETWORK}/publicIPAddresses/join/action",
              f"{_NETWORK}/loadBalancers/backendAddressPools/join/action",
              f"{_NETWORK}/loadBalancers/inboundNatRules/join/action",
              f"{_NETWORK}/applicationSecurityGroups/joinIpConfiguration/action",
              f"{_NETWORK}/applicationGateways/backendAddressPools/join/action")
_BLACKHOLE = (f"{_NETWORK}/networkInterfaces/write", f"{_NETWORK}/networkSecurityGroups/write",
              f"{_NETWORK}/networkSecurityGroups/delete", *_NIC_JOINS)

MUTATING: dict[str, tuple[str, ...]] = {
    "blackhole_zone": _BLACKHOLE,
    "blackhole_region": _BLACKHOLE,
    # the endpoint's own type is added per resource (`_needed`)
    "evacuate_region": (),
    "stop_instances": ("Microsoft.Compute/virtualMachines/write",
                       "Microsoft.Compute/virtualMachines/powerOff/action",
                       "Microsoft.Compute/virtualMachines/start/action"),
    "deny_capacity": ("Microsoft.Compute/virtualMachineScaleSets/write",
                      "Microsoft.Insights/autoscalesettings/write"),
    "failover_database": ("Microsoft.DBforPostgreSQL/flexibleServers/write",
                          "Microsoft.DBforPostgreSQL/flexibleServers/restart/action"),
    "partition_regions": (f"{_NETWORK}/networkSecurityGroups/write",
                          f"{_NETWORK}/networkSecurityGroups/securityRules/write",
                          f"{_NETWORK}/networkSecurityGroups/securityRules/delete"),
    "evacuate_zone": (f"{_NETWORK}/loadBalancers/write",
                      f"{_NETWORK}/virtualNetworks/subnets/join/action",
                      f"{_NETWORK}/publicIPAddresses/join/action",
                      f"{_NETWORK}/virtualNetworks/joinLoadBalancer/action"),
}
"""The role actions of the calls each action's apply and restore make (its sweep makes the same):
the one list `gameday plan` checks."""

ENDPOINT_TYPES = ("azureEndpoints", "externalEndpoints", "nestedEndpoints")


def _needed(action: str, resource: Resource) -> tuple[str, ...]:
    """The role actions one resource of a step needs: a Traffic Manager endpoint's write is
    authorised per endpoint type."""
    if action == "evacuate_region":
        kind = resource.detail.get("type", "").rsplit("/", 1)[-1]
        kinds = [k for k in ENDPOINT_TYPES if k.lower() == kind.lower()] or list(ENDPOINT_TYPES)
        return tuple(f"{_NETWORK}/trafficManagerProfiles/{k}/write" for k in kinds)
    return MUTATING.get(action, ())


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in text.split("*")) + "$",
                      re.IGNORECASE)


def allowed(action: str, entries: Iterable[dict[str, Any]]) -> bool:
    """Whether ARM's permission entries grant `action`."""
    return any(any(_pattern(a).match(action) for a in entry.get("actions") or [])
               and not any(_pattern(n).match(action) for n in entry.get("notActions") or [])
               for entry in entries)


def group_scope(resource_id: str) -> str | None:
    """`/subscriptions/{s}/resourceGroups/{rg}` of an ARM id, or None for another id."""
    found = re.match(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+)", resource_id, re.IGNORECASE)
    return found.group(1) if found else None


class AzurePermissions:
    """The live check; built on the Azure faults' shared connection."""

    def __init__(self, connection: AzureConnection):
        self.connection = connection

    def check(self, request: PermissionCheck) -> PermissionReport:
        wanted: dict[tuple[str, str], set[str]] = {}  # (subscription, scope) -> actions
        for step in request.steps:
            subscription = step.scope.account
            for resource in step.resources:
                scope = group_scope(resource.id) or f"/subscriptions/{subscription}"
                wanted.setdefault((subscription, scope), set()).update(
                    _needed(step.action, resource))
        missing: list[Permission] = []
        for (subscription, scope), actions in sorted(wanted.items()):
            entries = self._entries(subscription, scope)
            missing += [Permission(cloud="azure", account=subscription, permission=action)
                        for action in actions if not allowed(action, entries)]
        return PermissionReport(missing=gathered(missing))

    def _entries(self, subscription: str, scope: str) -> list[dict[str, Any]]:
        """Every permission entry of the caller on `scope`, all pages."""
        url: str | None = (f"{scope}/providers/Microsoft.Authorization/permissions"
                           f"?api-version={API_VERSION}")
        entries: list[dict[str, Any]] = []
        with self.connection.clients(subscription) as arm:
            while url:
                beat()
                try:
                    response = arm.network.send_request(HttpRequest("GET", url))
                    response.raise_for_status()
                except HttpResponseError as exc:
                    raise cloud_error(exc, f"reading the permissions on {scope}") from exc
                page = response.json()
                entries += page.get("value", [])
                url = page.get("nextLink")
        return entries
