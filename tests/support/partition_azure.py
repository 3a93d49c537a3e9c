"""The Azure region partition (`partition_regions`) as a `CloudLab` for the scenario suite.

On top of the lab's seed, its peering topology (`gameday.lab.azure.peers_seed.seed_peers`, as
`gameday lab up` seeds it): `shop-vnet` (eastus) gains subnets `web` and `data`, both on the
shared NSG `edge-nsg`, while `app` goes on `app-nsg`; each NSG holds a few rules at various
priorities of both directions. `west-vnet` (westus, 10.1.0.0/16)
and `central-vnet` (centralus, 10.2.0.0/16) each peer with `shop-vnet` both ways. The step cuts
eastus off from westus only: `central-vnet`'s range must never be denied.
"""

from __future__ import annotations

from typing import Any

from activities.azure.api import text
from gameday.lab.azure.peers_seed import NSG_RULES, seed_peers
from tests.support.clouds import AzureLab


class AzurePartitionLab(AzureLab):
    apply_call = (f"PUT /subscriptions/{AzureLab.subscription}/resourceGroups/"
                  f"{AzureLab.resource_group}/providers/Microsoft.Network/networkSecurityGroups/")
    """Every rule write (`.../securityRules/gameday-partition-...`)."""
    restore_call = (f"DELETE /subscriptions/{AzureLab.subscription}/resourceGroups/"
                    f"{AzureLab.resource_group}/providers/Microsoft.Network/networkSecurityGroups/")

    def seed(self) -> None:
        super().seed()
        clients = self._connect()
        try:
            seed_peers(clients.network, self.resource_group)
        finally:
            clients.close()
        self.servers.azure_faults()  # the seed's own writes are not the fault's calls

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "partition_regions",
            "target": {"cloud": "azure", "subscription": self.subscription,
                       "resource_group": self.resource_group, "region": "eastus",
                       "peer_regions": ["westus"]},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(NSG_RULES)

    def snapshot(self) -> Any:
        """Every NSG's tags and rules (with their prefix lists), and every subnet's NSG."""
        clients = self._connect()
        try:
            nsgs = {
                nsg.name: {"tags": dict(nsg.tags or {}), "rules": sorted(
                    (r.name, text(r.direction), text(r.access), r.priority,
                     r.source_address_prefix, tuple(r.source_address_prefixes or ()),
                     r.destination_address_prefix, tuple(r.destination_address_prefixes or ()),
                     r.destination_port_range)
                    for r in nsg.security_rules or [])}
                for nsg in clients.network.network_security_groups.list_all()}
            subnets = {
                f"{vnet.name}/{s.name}": (s.network_security_group.id.lower()
                                          if s.network_security_group else None)
                for vnet in clients.network.virtual_networks.list(self.resource_group)
                for s in vnet.subnets or []}
        finally:
            clients.close()
        return {"nsgs": nsgs, "subnets": subnets}

    def blackholed(self) -> bool:
        """Both NSGs deny westus's range both ways, marked; central's range is never denied."""
        snapshot = self.snapshot()
        for name in NSG_RULES:
            nsg = snapshot["nsgs"][name]
            ours = [r for r in nsg["rules"] if r[0].startswith("gameday-partition-")]
            denied = {p for r in ours for p in r[5] + r[7]}
            if (len(ours) != 2 or denied != {"10.1.0.0/16"} or {r[2] for r in ours} != {"Deny"}
                    or "gameday-partition-run" not in nsg["tags"]):
                return False
            if any(r[3] >= min(o[3] for o in nsg["rules"] if o[1] == r[1]
                               and not o[0].startswith("gameday-")) for r in ours):
                return False
        return True

    def add_target(self) -> str:
        raise NotImplementedError("a partition's NSGs are fixed by the subnets")
