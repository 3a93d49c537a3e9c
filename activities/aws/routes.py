"""What a region partition reads on AWS: the route tables of some VPCs (which table each subnet
uses, explicitly or as its VPC's main table) and what leads to the peer regions (VPC peering
connections, transit gateways peered with one of a peer region, the peer regions' VPC CIDRs)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from activities.aws.api import TAG_RUN, TAG_STEP, AwsApi, tags_of

_DESTINATIONS = ("DestinationCidrBlock", "DestinationIpv6CidrBlock", "DestinationPrefixListId")
_TARGETS = ("GatewayId", "NatGatewayId", "InstanceId", "NetworkInterfaceId",
            "VpcPeeringConnectionId", "TransitGatewayId", "EgressOnlyInternetGatewayId",
            "LocalGatewayId", "CarrierGatewayId", "CoreNetworkArn")
_LOST = {"deleted", "deleting", "rejected", "failed", "expired"}


def route_key(route: dict[str, Any]) -> str:
    return next(str(route[k]) for k in _DESTINATIONS if route.get(k))


def static_route(route: dict[str, Any]) -> dict[str, str]:
    """The route as CreateRoute takes it: its destination and its one target (EC2 describes an
    instance route with the instance and its network interface: the interface is the target)."""
    kept = {k: str(route[k]) for k in (*_DESTINATIONS, *_TARGETS) if route.get(k)}
    if "NetworkInterfaceId" in kept:
        kept.pop("InstanceId", None)
    return kept


def overlaps(cidr: str, ranges: Iterable[str]) -> bool:
    mine = ipaddress.ip_network(cidr, strict=False)
    return any(mine.version == (other := ipaddress.ip_network(r, strict=False)).version
               and mine.overlaps(other)
               for r in ranges)


@dataclass
class PeerPaths:
    """What leads from the region to the peer regions: peering connections and transit gateways
    (each with the peer regions it reaches), and the peer regions' VPC CIDRs."""

    peerings: dict[str, str] = field(default_factory=dict)
    gateways: dict[str, set[str]] = field(default_factory=dict)
    cidrs: dict[str, list[str]] = field(default_factory=dict)

    def leads_to(self, route: dict[str, Any]) -> str | None:
        """The peer region this route leads to, or None."""
        if route.get("Origin") == "CreateRouteTable" or route.get("GatewayId") == "local":
            return None
        if route.get("VpcPeeringConnectionId"):
            return self.peerings.get(route["VpcPeeringConnectionId"])
        destination = route.get("DestinationCidrBlock") or route.get("DestinationIpv6CidrBlock")
        if route.get("TransitGatewayId") and destination:
            for region in sorted(self.gateways.get(route["TransitGatewayId"], ())):
                if overlaps(destination, self.cidrs.get(region, [])):
                    return region
        return None


@dataclass
class Tables:
    """The route tables of some VPCs, and which table each of their subnets uses."""

    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    main_of: dict[str, str] = field(default_factory=dict)
    explicit: dict[str, tuple[str, str]] = field(default_factory=dict)
    """subnet → (table, association id)."""

    def made_by(self, run_id: str, step_id: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.tables.values() if tags_of(t).get(TAG_RUN) == run_id
                and (step_id is None or tags_of(t).get(TAG_STEP) == step_id)]

    def table_of(self, subnet: dict[str, Any]) -> str:
        held = self.explicit.get(subnet["SubnetId"])
        return held[0] if held else self.main_of.get(subnet["VpcId"], "")


def read_tables(api: AwsApi, ec2: Any, vpc_ids: Iterable[str]) -> Tables:
    """The route tables of the VPCs, one paged read per VPC."""
    found = Tables()
    for vpc_id in sorted(set(vpc_ids)):
        for table in api.pages(ec2, "describe_route_tables", "RouteTables",
                                    Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]):
            found.tables[table["RouteTableId"]] = table
            for association in table.get("Associations", []):
                if association.get("Main"):
                    found.main_of[vpc_id] = table["RouteTableId"]
                elif association.get("SubnetId"):
                    found.explicit[association["SubnetId"]] = (
                        table["RouteTableId"], association["RouteTableAssociationId"])
    return found

def peer_paths(api: AwsApi, ec2: Any, region: str, peer_regions: list[str],
               account: str | None = None) -> PeerPaths:
    """What leads from `region` to `peer_regions` (the peer regions' VPCs are read only when a
    transit gateway is peered with one of them)."""
    paths = PeerPaths()
    for peering in api.pages(ec2, "describe_vpc_peering_connections",
                                  "VpcPeeringConnections"):
        if peering.get("Status", {}).get("Code") in _LOST:
            continue
        sides = [peering.get("RequesterVpcInfo", {}), peering.get("AccepterVpcInfo", {})]
        others = [s.get("Region", region) for s in sides if s.get("Region", region) != region]
        if others and others[0] in peer_regions:
            paths.peerings[peering["VpcPeeringConnectionId"]] = others[0]
    for attachment in api.pages(ec2, "describe_transit_gateway_peering_attachments",
                                     "TransitGatewayPeeringAttachments"):
        if attachment.get("State") in _LOST:
            continue
        sides = [attachment.get("RequesterTgwInfo", {}), attachment.get("AccepterTgwInfo", {})]
        for mine, theirs in (sides, sides[::-1]):
            if mine.get("Region") == region and theirs.get("Region") in peer_regions:
                paths.gateways.setdefault(mine["TransitGatewayId"], set()).add(
                    theirs["Region"])
    if paths.gateways:
        for peer in peer_regions:
            vpcs = api.pages(api.ec2(peer, account), "describe_vpcs", "Vpcs")
            paths.cidrs[peer] = [a["CidrBlock"] for v in vpcs
                                 for a in v.get("CidrBlockAssociationSet", [])
                                 if a.get("CidrBlockState", {}).get("State") != "disassociated"
                                 ] or [v["CidrBlock"] for v in vpcs]
            paths.cidrs[peer] += [a["Ipv6CidrBlock"] for v in vpcs
                                  for a in v.get("Ipv6CidrBlockAssociationSet", [])]
    return paths
