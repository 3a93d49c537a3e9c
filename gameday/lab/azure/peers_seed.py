"""The lab's Azure peering topology, for the region partition (`partition_regions`).

On top of `seed_azure`: `shop-vnet` (eastus) gains subnets `web` and `data`, both on the shared
NSG `edge-nsg`, while `app` goes on `app-nsg`; each NSG holds a few rules at various priorities of
both directions (all above 100, so gameday's deny rules find a free priority first). `west-vnet`
(westus, 10.1.0.0/16) and `central-vnet` (centralus, 10.2.0.0/16) each peer with `shop-vnet` both
ways. Every write is a create-or-update: seeding twice leaves the same topology.

`gameday lab up` seeds it after `seed_azure` (not inside it: other suites assert `shop-vnet` has
the one subnet `app` and `web-nsg` is the only NSG).
"""

from __future__ import annotations

from typing import Any

LOCATION = "eastus"
#: peer VNet -> (region, address space)
PEERS = {"west-vnet": ("westus", "10.1.0.0/16"), "central-vnet": ("centralus", "10.2.0.0/16")}
#: NSG -> (rule, direction, priority, destination port); a rule named `deny-*` denies
NSG_RULES = {
    "app-nsg": [("allow-https", "Inbound", 200, "443"), ("allow-out", "Outbound", 300, "*")],
    "edge-nsg": [("allow-web", "Inbound", 150, "80"), ("deny-telnet", "Inbound", 400, "23"),
                 ("allow-dns", "Outbound", 120, "53")],
}
#: `shop-vnet`'s subnets: (name, prefix, NSG)
SUBNETS = [("app", "10.0.0.0/17", "app-nsg"), ("web", "10.0.128.0/24", "edge-nsg"),
           ("data", "10.0.129.0/24", "edge-nsg")]


def seed_peers(network: Any, rg: str) -> dict[str, Any]:
    """The NSGs, subnets, peer VNets and peerings above through `network` (a
    NetworkManagementClient); a summary of what exists."""
    nsgs = {}
    for name, rules in NSG_RULES.items():
        nsgs[name] = network.network_security_groups.begin_create_or_update(rg, name, {
            "location": LOCATION, "tags": {"app": "shop"},
            "properties": {"securityRules": [
                {"name": rule, "properties": {
                    "protocol": "Tcp", "access": "Deny" if rule.startswith("deny") else "Allow",
                    "direction": direction, "priority": priority,
                    "sourceAddressPrefix": "*", "sourcePortRange": "*",
                    "destinationAddressPrefix": "*", "destinationPortRange": port}}
                for rule, direction, priority, port in rules]},
        }).result()
    shop = network.virtual_networks.begin_create_or_update(rg, "shop-vnet", {
        "location": LOCATION, "tags": {"app": "shop"},
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": name, "properties": {
                "addressPrefix": prefix, "networkSecurityGroup": {"id": nsgs[nsg].id}}}
                for name, prefix, nsg in SUBNETS],
        },
    }).result()
    peerings = []
    for name, (location, prefix) in PEERS.items():
        peer = network.virtual_networks.begin_create_or_update(rg, name, {
            "location": location, "tags": {"app": "shop"},
            "properties": {"addressSpace": {"addressPrefixes": [prefix]}, "subnets": [
                {"name": "app", "properties": {"addressPrefix": prefix.replace("/16", "/24")}}]},
        }).result()
        for vnet, remote in (("shop-vnet", peer.id), (name, shop.id)):
            peering = f"{vnet}-to-{remote.rsplit('/', 1)[-1]}"
            network.virtual_network_peerings.begin_create_or_update(
                rg, vnet, peering, {"properties": {"remoteVirtualNetwork": {"id": remote},
                                                   "allowVirtualNetworkAccess": True}}).result()
            peerings.append(peering)
    return {"nsgs": sorted(nsgs), "subnets": [name for name, _, _ in SUBNETS],
            "peer_vnets": {name: location for name, (location, _) in PEERS.items()},
            "peerings": peerings}


def seed_azure_peers(endpoint: str, ca_bundle: str,
                     subscription: str = "00000000-0000-0000-0000-000000000000",
                     resource_group: str = "shop") -> dict[str, Any]:
    """`seed_peers` at `endpoint`, in the resource group `seed_azure` made."""
    from gameday.lab.azure.clients import connect

    clients = connect(endpoint, ca_bundle, subscription)
    try:
        return seed_peers(clients.network, resource_group)
    finally:
        clients.close()
