"""The lab's Azure topology, built through the real azure-mgmt clients (any ARM endpoint works).

Resource group `shop` in eastus; VNet `shop-vnet` with subnet `app`; eight VMs over zones 1-3,
six tagged `gameday=enabled`; eleven NICs, the three of the `web-*` VMs associated with the
pre-existing NSG `web-nsg`; load balancer `shop-lb` whose pool `web` holds the `web-*` VMs' NICs
(one member per zone; `web-1`'s admin state `Up` explicitly, the others unset); Traffic Manager
profile `shop-tm` with enabled AzureEndpoints in eastus and westus. Seeding twice leaves the same
topology (every write is a create-or-update).

With `powered_off=True`, zone 1 also holds the VMs of `POWERED_OFF`, tagged `gameday=enabled` and
already out of power before any run: `batch-1` stopped (powered off, still allocated) and
`spare-1` deallocated, each with one NIC (what a power interruption must leave as it found it).
"""

from __future__ import annotations

from typing import Any

from azure.core.rest import HttpRequest

from gameday.lab.azure.clients import ArmClients, connect
from gameday.lab.azure.postgres import seed_servers
from gameday.lab.azure.scalesets import seed_scale_sets

LOCATION = "eastus"
GROUP_API_VERSION = "2021-04-01"

#: (VM name, zone, tagged gameday=enabled, NIC count)
VMS = [
    ("web-1", "1", True, 1), ("web-2", "2", True, 1), ("web-3", "3", True, 1),
    ("app-1", "1", True, 2), ("app-2", "2", True, 2), ("app-3", "3", True, 2),
    ("db-1", "1", False, 1), ("bastion-1", "2", False, 1),
]
#: (VM name, zone, power state it is left in): seeded with `powered_off=True` only
POWERED_OFF = [("batch-1", "1", "stopped"), ("spare-1", "1", "deallocated")]
WEB_RULES = [("allow-http", 100, "80"), ("allow-https", 110, "443")]
ENDPOINT_REGIONS = [("eastus", 1), ("westus", 2)]
LB_NAME, LB_POOL = "shop-lb", "web"
#: the NICs in `shop-lb`'s pool `web` (their `ipconfig1`), and the admin states set explicitly
LB_NICS = ["web-1-nic0", "web-2-nic0", "web-3-nic0"]
LB_STATES = {"web-1-nic0": "Up"}


def create_resource_group(clients: ArmClients, subscription: str, name: str,
                          location: str = LOCATION) -> dict[str, Any]:
    """PUT a resource group through the network client's pipeline (azure-mgmt-resource is not
    a dependency)."""
    request = HttpRequest(
        "PUT", f"/subscriptions/{subscription}/resourcegroups/{name}",
        params={"api-version": GROUP_API_VERSION}, json={"location": location})
    response = clients.network.send_request(request)
    response.raise_for_status()
    return response.json()


def seed_load_balancer(network: Any, rg: str, subnet_id: str, name: str, pool: str,
                       states: dict[str, str] | None = None) -> Any:
    """A Standard internal load balancer with one backend pool; its members are the NIC IP
    configurations that name the pool. `states`: admin state by member name (others unset)."""
    members = [{"name": member, "properties": {"adminState": state}}
               for member, state in (states or {}).items()]
    return network.load_balancers.begin_create_or_update(rg, name, {
        "location": LOCATION, "tags": {"app": "shop"},
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "frontendIPConfigurations": [{"name": "frontend", "zones": ["1", "2", "3"],
                                          "properties": {"subnet": {"id": subnet_id}}}],
            "backendAddressPools": [{"name": pool, "properties": {
                "loadBalancerBackendAddresses": members}}],
        },
    }).result()


def lb_member(rg: str, nic: str, config: str = "ipconfig1") -> str:
    """The name ARM gives a NIC-based pool member."""
    return f"{rg}_{nic}{config}"


def seed_azure(endpoint: str, ca_bundle: str,
               subscription: str = "00000000-0000-0000-0000-000000000000",
               resource_group: str = "shop", powered_off: bool = False) -> dict[str, Any]:
    """Build the lab topology at `endpoint` and return a summary of what exists; with
    `powered_off`, the VMs of `POWERED_OFF` too, each left in its power state."""
    clients = connect(endpoint, ca_bundle, subscription)
    try:
        summary = _seed(clients, subscription, resource_group)
        summary["flexible_servers"] = seed_servers(endpoint, ca_bundle, subscription, resource_group)
        summary["scale_sets"] = seed_scale_sets(endpoint, ca_bundle, subscription, resource_group)
        if powered_off:
            summary["powered_off"] = _powered_off(clients, resource_group, summary["subnet"])
        return summary
    finally:
        clients.close()


def _powered_off(clients: ArmClients, rg: str, subnet_id: str) -> dict[str, str]:
    """The VMs of `POWERED_OFF`, each powered off (`stopped`) or deallocated, waited for."""
    network, compute = clients.network, clients.compute
    states: dict[str, str] = {}
    for vm_name, zone, state in POWERED_OFF:
        nic = network.network_interfaces.begin_create_or_update(rg, f"{vm_name}-nic0", {
            "location": LOCATION, "tags": {"app": "shop"},
            "properties": {"ipConfigurations": [
                {"name": "ipconfig1", "properties": {"subnet": {"id": subnet_id}}}]},
        }).result()
        compute.virtual_machines.begin_create_or_update(rg, vm_name, {
            "location": LOCATION, "zones": [zone],
            "tags": {"app": "shop", "gameday": "enabled", "tier": "batch"},
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_B2s"},
                "osProfile": {"computerName": vm_name, "adminUsername": "azureuser"},
                "networkProfile": {"networkInterfaces": [{"id": nic.id}]},
            },
        }).result()
        if state == "deallocated":
            compute.virtual_machines.begin_deallocate(rg, vm_name).result()
        else:
            compute.virtual_machines.begin_power_off(rg, vm_name, skip_shutdown=True).result()
        states[vm_name] = state
    return states


def _seed(clients: ArmClients, subscription: str, rg: str) -> dict[str, Any]:
    network, compute, traffic = clients.network, clients.compute, clients.traffic
    create_resource_group(clients, subscription, rg)
    vnet = network.virtual_networks.begin_create_or_update(rg, "shop-vnet", {
        "location": LOCATION, "tags": {"app": "shop"},
        "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "app", "properties": {"addressPrefix": "10.0.0.0/17"}}],
        },
    }).result()
    subnet_id = vnet.subnets[0].id
    nsg = network.network_security_groups.begin_create_or_update(rg, "web-nsg", {
        "location": LOCATION, "tags": {"app": "shop"},
        "properties": {"securityRules": [
            {"name": name, "properties": {
                "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": priority,
                "sourceAddressPrefix": "*", "sourcePortRange": "*",
                "destinationAddressPrefix": "*", "destinationPortRange": port}}
            for name, priority, port in WEB_RULES]},
    }).result()
    pool_id = seed_load_balancer(network, rg, subnet_id, LB_NAME, LB_POOL) \
        .backend_address_pools[0].id

    zones: dict[str, list[str]] = {"1": [], "2": [], "3": []}
    nic_count = 0
    for vm_name, zone, enabled, nics in VMS:
        nic_ids = []
        for index in range(nics):
            body: dict[str, Any] = {
                "location": LOCATION, "tags": {"app": "shop"},
                "properties": {"ipConfigurations": [
                    {"name": "ipconfig1", "properties": {"subnet": {"id": subnet_id}}}]},
            }
            if vm_name.startswith("web-"):
                body["properties"]["networkSecurityGroup"] = {"id": nsg.id}
            if f"{vm_name}-nic{index}" in LB_NICS:
                body["properties"]["ipConfigurations"][0]["properties"][
                    "loadBalancerBackendAddressPools"] = [{"id": pool_id}]
            nic = network.network_interfaces.begin_create_or_update(
                rg, f"{vm_name}-nic{index}", body).result()
            nic_ids.append(nic.id)
        nic_count += len(nic_ids)
        tags = {"app": "shop", **({"gameday": "enabled"} if enabled else {})}
        compute.virtual_machines.begin_create_or_update(rg, vm_name, {
            "location": LOCATION, "zones": [zone], "tags": tags,
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_B2s"},
                "storageProfile": {"imageReference": {
                    "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                    "version": "latest"}},
                "osProfile": {"computerName": vm_name, "adminUsername": "azureuser"},
                "networkProfile": {"networkInterfaces": [
                    {"id": nic_id, "properties": {"primary": i == 0}}
                    for i, nic_id in enumerate(nic_ids)]},
            },
        }).result()
        zones[zone].append(vm_name)

    balancer = seed_load_balancer(network, rg, subnet_id, LB_NAME, LB_POOL, {
        lb_member(rg, nic): state for nic, state in LB_STATES.items()})
    group_id = f"/subscriptions/{subscription}/resourceGroups/{rg}"
    profile = traffic.profiles.create_or_update(rg, "shop-tm", {
        "location": "global", "tags": {"app": "shop"},
        "properties": {
            "profileStatus": "Enabled", "trafficRoutingMethod": "Priority",
            "dnsConfig": {"relativeName": f"shop-tm-{subscription[:8]}", "ttl": 30},
            "monitorConfig": {"protocol": "HTTPS", "port": 443, "path": "/health"},
            "endpoints": [
                {"name": f"shop-{region}",
                 "type": "Microsoft.Network/trafficManagerProfiles/azureEndpoints",
                 "properties": {
                     "targetResourceId": f"{group_id}/providers/Microsoft.Network/"
                                         f"publicIPAddresses/shop-{region}-ip",
                     "endpointStatus": "Enabled", "endpointLocation": region,
                     "priority": priority}}
                for region, priority in ENDPOINT_REGIONS],
        },
    })
    return {
        "subscription": subscription,
        "resource_group": rg,
        "location": LOCATION,
        "virtual_network": vnet.id,
        "subnet": subnet_id,
        "vms": len(VMS),
        "vms_by_zone": zones,
        "gameday_enabled_vms": sum(1 for _, _, enabled, _ in VMS if enabled),
        "nics": nic_count,
        "nsgs": [nsg.name],
        "nics_with_nsg": sum(n for name, _, _, n in VMS if name.startswith("web-")),
        "load_balancers": [balancer.name],
        "traffic_manager_profile": profile.name,
        "endpoints": [e.name for e in profile.endpoints or []],
    }


def main(argv: list[str] | None = None) -> None:
    """`python -m gameday.lab.azure.seed --endpoint URL --ca-bundle CA`: seed and print the summary."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m gameday.lab.azure.seed", description=main.__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--ca-bundle", required=True)
    parser.add_argument("--subscription", default="00000000-0000-0000-0000-000000000000")
    parser.add_argument("--resource-group", default="shop")
    parser.add_argument("--powered-off", action="store_true",
                        help="also the VMs of POWERED_OFF, already stopped or deallocated")
    args = parser.parse_args(argv)
    summary = seed_azure(args.endpoint, args.ca_bundle, args.subscription, args.resource_group,
                         powered_off=args.powered_off)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
