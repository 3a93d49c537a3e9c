"""The AWS shop's view of a region partition: does every web-tier subnet of the shop VPC still
route to each peer region the lab connects it to (a cross-region VPC peering connection, or a
transit gateway peered with one of that region)?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gameday.lab.shop.verdicts import verdict

AWS_RUN_TAG = "gameday:run"  # activities.aws.TAG_RUN
_LOST = {"deleted", "deleting", "rejected", "failed", "expired"}


def peer_links(region: str, vpc_ids: list[str], peerings: list[Mapping[str, Any]],
               attachments: list[Mapping[str, Any]]) -> dict[str, str]:
    """Peering connection or transit gateway id → the other region it leads to."""
    links: dict[str, str] = {}
    for peering in peerings:
        if peering.get("Status", {}).get("Code") in _LOST:
            continue
        sides = [peering.get("RequesterVpcInfo", {}), peering.get("AccepterVpcInfo", {})]
        if not any(s.get("VpcId") in vpc_ids for s in sides):
            continue
        for side in sides:
            if side.get("Region", region) != region:
                links[peering["VpcPeeringConnectionId"]] = side["Region"]
    for attachment in attachments:
        if attachment.get("State") in _LOST:
            continue
        sides = [attachment.get("RequesterTgwInfo", {}), attachment.get("AccepterTgwInfo", {})]
        for mine, theirs in (sides, sides[::-1]):
            if mine.get("Region") == region and theirs.get("Region") != region:
                links[mine["TransitGatewayId"]] = theirs["Region"]
    return links


def peers_verdict(region: str, subnets: list[Mapping[str, Any]],
                  tables: list[Mapping[str, Any]], links: dict[str, str]) -> dict[str, Any]:
    """Serving while each subnet's table (explicit, or its VPC's main) has a route over a link to
    every region the links lead to; the reason names the first subnet and region cut."""
    explicit: dict[str, Mapping[str, Any]] = {}
    main: dict[str, Mapping[str, Any]] = {}
    for table in tables:
        for association in table.get("Associations", []):
            if association.get("Main"):
                main[table["VpcId"]] = table
            elif association.get("SubnetId"):
                explicit[association["SubnetId"]] = table
    wanted = sorted(set(links.values()))
    for subnet in sorted(subnets, key=lambda s: s["SubnetId"]):
        table = explicit.get(subnet["SubnetId"]) or main.get(subnet["VpcId"]) or {}
        reached = {links[target] for r in table.get("Routes", [])
                   for target in (r.get("VpcPeeringConnectionId"), r.get("TransitGatewayId"))
                   if target in links and r.get("State") != "blackhole"}
        for peer in wanted:
            if peer not in reached:
                tags = {t["Key"]: t["Value"] for t in table.get("Tags", [])}
                name = next((t["Value"] for t in subnet.get("Tags", []) if t["Key"] == "Name"),
                            subnet["SubnetId"])
                by = (f" (gameday run {tags[AWS_RUN_TAG]}'s route table)"
                      if tags.get(AWS_RUN_TAG) else "")
                return verdict("aws", region, False,
                               f"subnet {name} is cut off {peer}: its route table "
                               f"{table.get('RouteTableId', '?')}{by} has no route to it",
                               modelled=True)
    return verdict("aws", region, True, f"every web-tier subnet of {region} reaches "
                   f"{', '.join(wanted) or 'no other region'}", modelled=bool(wanted))
