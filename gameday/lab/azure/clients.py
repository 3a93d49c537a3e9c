"""The real azure-mgmt clients, configured for the emulator (or any ARM endpoint): gameday's own
`ArmClients` and static credential, with the options a test or the lab picks."""

from __future__ import annotations

from typing import Any

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.trafficmanager import TrafficManagerManagementClient

from activities.azure import ArmClients, StaticTokenCredential

__all__ = ["ArmClients", "connect"]


def connect(endpoint: str, ca_bundle: str | None, subscription: str, **options: Any) -> ArmClients:
    """Clients with `base_url=endpoint`, the static credential, `connection_verify=ca_bundle` and
    `polling_interval=0`; `options` (e.g. `retry_total=0`) go to every client."""
    settings: dict[str, Any] = {"base_url": endpoint.rstrip("/"), "polling_interval": 0}
    if ca_bundle:
        settings["connection_verify"] = ca_bundle
    settings.update(options)
    credential = StaticTokenCredential()
    return ArmClients(
        network=NetworkManagementClient(credential, subscription, **settings),
        compute=ComputeManagementClient(credential, subscription, **settings),
        traffic=TrafficManagerManagementClient(credential, subscription, **settings),
    )
