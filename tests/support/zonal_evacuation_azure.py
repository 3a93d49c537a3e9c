"""The Azure zonal evacuation (`evacuate_zone`) as a `CloudLab` for the scenario suite.

On top of the lab's seed (`shop-lb`: pool `web` over the three `web-*` NICs, `web-1`'s member
`Up` explicitly), this lab adds `api-lb`, whose pool `app` holds the first NIC of each `app-*` VM
(admin states unset), so that the step takes zone 1 Down in two load balancers, one PUT each (a
half-way apply changes one of them), each pool keeping zones 2 and 3.
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.network.models import BackendAddressPool

from activities.azure.api import text
from tests.support.clouds import AzureLab

BALANCERS = ["shop-lb", "api-lb"]
API_NICS = ["app-1-nic0", "app-2-nic0", "app-3-nic0"]


def join_pool(network: Any, rg: str, nic_name: str, pool_id: str) -> None:
    """The NIC's first IP configuration joins the pool (read-modify-write of the NIC)."""
    nic = network.network_interfaces.get(rg, nic_name)
    config = nic.ip_configurations[0]
    pools = list(config.load_balancer_backend_address_pools or [])
    if not any((p.id or "").lower() == pool_id.lower() for p in pools):
        config.load_balancer_backend_address_pools = [*pools, BackendAddressPool(id=pool_id)]
        network.network_interfaces.begin_create_or_update(rg, nic_name, nic).result()


def seed_api_lb(network: Any, rg: str, subnet_id: str, nics: list[str] = API_NICS) -> str:
    """`api-lb` with pool `app` over the NICs' first IP configurations; its id."""
    from gameday.lab.azure.seed import seed_load_balancer

    lb = seed_load_balancer(network, rg, subnet_id, "api-lb", "app")
    for nic in nics:
        join_pool(network, rg, nic, lb.backend_address_pools[0].id)
    return str(lb.id)


def members(network: Any) -> dict[str, dict[str, Any]]:
    """Every load balancer's tags and members: (pool, member) -> admin state as ARM shows it
    (None when unset)."""
    return {lb.name: {"tags": dict(lb.tags or {}), "members": {
        f"{pool.name}/{m.name}": text(m.admin_state) or None
        for pool in lb.backend_address_pools or []
        for m in pool.load_balancer_backend_addresses or []}}
        for lb in network.load_balancers.list_all()}


class AzureZonalEvacuationLab(AzureLab):
    apply_call = (f"PUT /subscriptions/{AzureLab.subscription}/resourceGroups/"
                  f"{AzureLab.resource_group}/providers/Microsoft.Network/loadBalancers/")
    restore_call = apply_call

    def seed(self) -> None:
        super().seed()
        clients = self._connect()
        try:
            subnet = clients.network.virtual_networks.get(self.resource_group, "shop-vnet")
            seed_api_lb(clients.network, self.resource_group, subnet.subnets[0].id)
        finally:
            clients.close()
        self.servers.azure_faults()  # the seed's own writes are not the fault's calls

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "evacuate_zone",
            "target": {"cloud": "azure", "subscription": self.subscription,
                       "resource_group": self.resource_group, "region": "eastus",
                       "zone": self.zone, "load_balancers": BALANCERS},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(BALANCERS)

    def balancers(self) -> dict[str, dict[str, Any]]:
        clients = self._connect()
        try:
            return members(clients.network)
        finally:
            clients.close()

    def snapshot(self) -> Any:
        return {**super().snapshot(), "load_balancers": self.balancers()}

    def blackholed(self) -> bool:
        """Zone 1's members Down in both load balancers, both marked; every other member as
        seeded."""
        rg = self.resource_group
        found = self.balancers()
        expected = {
            "shop-lb": {f"web/{rg}_web-1-nic0ipconfig1": "Down",
                        f"web/{rg}_web-2-nic0ipconfig1": None,
                        f"web/{rg}_web-3-nic0ipconfig1": None},
            "api-lb": {f"app/{rg}_app-1-nic0ipconfig1": "Down",
                       f"app/{rg}_app-2-nic0ipconfig1": None,
                       f"app/{rg}_app-3-nic0ipconfig1": None},
        }
        return all(found[name]["members"] == wanted
                   and "gameday-evacuate-run" in found[name]["tags"]
                   for name, wanted in expected.items())

    def add_target(self) -> str:
        raise NotImplementedError("evacuate_zone names its load balancers")
