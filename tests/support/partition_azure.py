"""The Azure region partition (`partition_regions`) as a `CloudLab` for the scenario suite.

On top of the lab's seed (`seed_peers`, through azure-mgmt-network): `shop-vnet` (eastus) gains
subnets `web` and `data`, both on the shared NSG `edge-nsg`, while `app` goes on `app-nsg`; each
NSG holds a few rules at various priorities of both directions. `west-vnet` (westus, 10.1.0.0/16)
and `central-vnet` (centralus, 10.2.0.0/16) each peer with `shop-vnet` both ways. The step cuts
eastus off from westus only: `central-vnet`'s range must never be denied.
"""

from __future__ import annotations

from typing import Any

from activities.azure.api import text
from tests.support.clouds import AzureLab

PEERS = {"west-vnet": ("westus", "10.1.0.0/16"), "central-vnet": ("centralus", "10.2.0.0/16")}
NSG_RULES = {
    "app-nsg": [("allow-https", "Inbound", 200, "443"), ("allow-out", "Outbound", 300, "*")],
    "edge-nsg": [("allow-web", "Inbound", 150, "80"), ("deny-telnet", "Inbound", 400, "23"),
                 ("allow-dns", "Outbound", 120, "53")],
}
SUBNETS = [("app", "10.0.0.0/17", "app-nsg"), ("web", "10.0.128.0/24", "edge-nsg"),
           ("data", "10.0.129.0/24", "edge-nsg")]


def seed_peers(network: Any, rg: str) -> None:
    """The NSGs, subnets, peer VNets and peerings above (create-or-update: seeding twice is one)."""
    nsgs = {}
    for name, rules in NSG_RULES.items():
        nsgs[name] = network.network_security_groups.begin_create_or_update(rg, name, {
            "location": "eastus", "tags": {"app": "shop"},
            "properties": {"securityRules": [
                {"name": rule, "properties": {
                    "protocol": "Tcp", "access": "Deny" if rule.startswith("deny") else "Allow",
                    "direction": direction, "priority": priority,
                    "sourceAddressPrefix": "*", "sourcePortRange": "*",
                    "destinationAddressPrefix": "*", "destinationPortRange": port}}
                for rule, direction, priority, port in rules]},
        }).result()
    shop = network.virtual_networks.begin_create_or_update(rg, "shop-vnet", {
        "location": "eastus", "tags": {"app": "shop"},
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": name, "properties": {
                "addressPrefix": prefix, "networkSecurityGroup": {"id": nsgs[nsg].id}}}
                for name, prefix, nsg in SUBNETS],
        },
    }).result()
    for name, (location, prefix) in PEERS.items():
        peer = network.virtual_networks.begin_create_or_update(rg, name, {
            "location": location, "tags": {"app": "shop"},
            "properties": {"addressSpace": {"addressPrefixes": [prefix]}, "subnets": [
                {"name": "app", "properties": {"addressPrefix": prefix.replace("/16", "/24")}}]},
        }).result()
        for vnet, remote in (("shop-vnet", peer.id), (name, shop.id)):
            network.virtual_network_peerings.begin_create_or_update(
                rg, vnet, f"{vnet}-to-{remote.rsplit('/', 1)[-1]}",
                {"properties": {"remoteVirtualNetwork": {"id": remote},
                                "allowVirtualNetworkAccess": True}}).result()


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
