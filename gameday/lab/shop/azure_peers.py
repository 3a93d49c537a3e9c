"""The Azure shop's view of a region partition: does every subnet of the region's VNets still reach
the address space of each VNet in another region it peers with, in both directions?

A flow from subnet range A to range B passes A's NSG outbound and B's NSG inbound (a subnet
without an NSG lets everything through). A direction of an NSG cuts the flow when a Deny rule of
all traffic (protocol and destination ports `*`) whose prefixes cover both ends comes before, at a
lower priority number, every Allow rule that covers them: ARM evaluates the lowest number first,
and Azure's own default rules (65000 and up) allow traffic between peered VNets. A peering that is
not `Connected` carries nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from gameday.lab.shop.verdicts import last_segment, verdict, wire_text

PARTITION_RULE_PREFIX = "gameday-partition-"  # activities.azure.partition.RULE_PREFIX
_EVERYWHERE = {"*", "any", "0.0.0.0/0"}
_PRIVATE = [ipaddress.ip_network(r) for r in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


def location(value: str | None) -> str:
    """`East US` and `eastus` name the same Azure region."""
    return (value or "").replace(" ", "").lower()


def _covers(prefixes: Iterable[str | None], cidr: str) -> bool:
    """`cidr` lies inside one of a rule's prefixes (`*`, `VirtualNetwork` for a private range,
    or a CIDR); service tags and application security groups cover nothing here."""
    inner = ipaddress.ip_network(cidr, strict=False)
    for prefix in (p for p in prefixes if p):
        if prefix.lower() in _EVERYWHERE:
            return True
        if prefix.lower() == "virtualnetwork":
            if any(inner.version == p.version and inner.subnet_of(p)  # type: ignore[arg-type]
                   for p in _PRIVATE):
                return True
            continue
        try:
            outer = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            continue
        if inner.version == outer.version and inner.subnet_of(outer):  # type: ignore[arg-type]
            return True
    return False


def _matches(rule: Any, source: str, destination: str) -> bool:
    return (_covers([rule.source_address_prefix, *(rule.source_address_prefixes or [])], source)
            and _covers([rule.destination_address_prefix,
                         *(rule.destination_address_prefixes or [])], destination))


def nsg_cut(nsg: Any, direction: str, source: str, destination: str) -> str | None:
    """Why `nsg` drops every flow `source` → `destination` in `direction`, or None."""
    rules = [r for r in nsg.security_rules or [] if wire_text(r.direction) == direction
             and r.priority is not None and _matches(r, source, destination)]
    allows = [r.priority for r in rules if wire_text(r.access) == "Allow"]
    denies = sorted((r.priority, r.name) for r in rules if wire_text(r.access) == "Deny"
                    and wire_text(r.protocol) in ("*", "")
                    and (r.destination_port_range or "*") == "*"
                    and not r.destination_port_ranges)
    if not denies or (allows and denies[0][0] >= min(allows)):
        return None
    priority, name = denies[0]
    by = " (gameday's)" if name.startswith(PARTITION_RULE_PREFIX) else ""
    return (f"{direction.lower()} rule {name}{by} of NSG {nsg.name} denies it at priority "
            f"{priority}" + (f", before every allow (first at {min(allows)})" if allows else ""))


def _subnets(vnet: Any) -> list[tuple[str, str, str | None]]:
    """(subnet name, prefix, NSG id lowercase or None) of every prefix of the VNet's subnets."""
    found = []
    for subnet in vnet.subnets or []:
        nsg = (subnet.network_security_group.id or "").lower() or None \
            if subnet.network_security_group else None
        for prefix in [subnet.address_prefix, *(subnet.address_prefixes or [])]:
            if prefix:
                found.append((subnet.name, prefix, nsg))
    return found


def _space(vnet: Any) -> list[str]:
    return list(vnet.address_space.address_prefixes or []) if vnet.address_space else []


def flow_cut(nsgs: Mapping[str, Any], local: tuple[str, str, str | None], remote_vnet: Any,
             remote_prefix: str) -> str | None:
    """Why the local subnet and `remote_prefix` of `remote_vnet` do not reach each other both
    ways, or None: the local subnet's NSG, then the NSGs of the remote subnets in that range."""
    _, prefix, nsg_id = local
    checks: list[tuple[str | None, str, str, str]] = [
        (nsg_id, "Outbound", prefix, remote_prefix), (nsg_id, "Inbound", remote_prefix, prefix)]
    for _, theirs, their_nsg in _subnets(remote_vnet):
        if _covers([remote_prefix], theirs):
            checks += [(their_nsg, "Inbound", prefix, theirs),
                       (their_nsg, "Outbound", theirs, prefix)]
    for held, direction, source, destination in checks:
        nsg = nsgs.get(held) if held else None
        cut = nsg_cut(nsg, direction, source, destination) if nsg is not None else None
        if cut:
            return cut
    return None


def peers_verdict(region: str, group: str, vnets: list[Any],
                  nsgs: Mapping[str, Any]) -> dict[str, Any]:
    """Serving while every subnet of the VNets of resource group `group` in `region` reaches each
    VNet of another region that they peer with, both ways; the reason names the first pair cut.
    `vnets`: every VNet of the subscription; `nsgs`: its NSGs by lowercase id."""
    by_id = {(v.id or "").lower(): v for v in vnets}
    held = f"/resourcegroups/{group.lower()}/"
    mine = sorted((v for v in vnets if location(v.location) == region
                   and held in (v.id or "").lower()), key=lambda v: v.name)
    if not mine:
        return verdict("azure", region, True, f"no VNet in {region} (resource group {group}): a "
                       "region outside the lab, assumed to reach its peers", modelled=False)
    reached: set[str] = set()
    for vnet in mine:
        for peering in sorted(vnet.virtual_network_peerings or [], key=lambda p: p.name):
            remote_id = peering.remote_virtual_network.id if peering.remote_virtual_network else ""
            remote = by_id.get((remote_id or "").lower())
            if remote is None or location(remote.location) == region:
                continue
            where = location(remote.location)
            state = wire_text(peering.peering_state) or "Connected"
            if state != "Connected" or peering.allow_virtual_network_access is False:
                why = (f"peering {peering.name} is {state}" if state != "Connected" else
                       f"peering {peering.name} does not allow virtual network access")
                return verdict("azure", region, False, f"VNet {vnet.name} is cut off {where} "
                               f"(VNet {remote.name}): {why}", modelled=True)
            for local in _subnets(vnet):
                for remote_prefix in _space(remote):
                    cut = flow_cut(nsgs, local, remote, remote_prefix)
                    if cut:
                        return verdict(
                            "azure", region, False,
                            f"subnet {local[0]} ({local[1]}) of VNet {vnet.name} is cut off "
                            f"{where} ({remote_prefix}, VNet {remote.name}): {cut}",
                            modelled=True)
            reached.add(where)
    return verdict("azure", region, True, f"every subnet of {region} reaches "
                   f"{', '.join(sorted(reached)) or 'no other region'}", modelled=True,
                   vnets=[last_segment(v.id) for v in mine])
