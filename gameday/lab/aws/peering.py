"""The lab's cross-region paths for `partition_regions`, seeded through boto3 (moto serves route
tables, cross-region VPC peering and transit gateway peering as EC2 does), and their snapshot.

us-west-2 gets two VPCs: `shop-peer` (10.2.0.0/16), peered with us-east-1's `shop` VPC, and
`shop-peer-tgw` (10.3.0.0/16), reached over a transit gateway of each region peered with each
other. In `shop` (us-east-1):
- route table `shop-web`, shared by every web subnet: local, 0.0.0.0/0 → the internet gateway,
  10.2.0.0/16 → the cross-region peering;
- route table `shop-app`, shared by every app subnet: local, 10.2.0.0/16 → the peering,
  10.3.0.0/16 → the transit gateway (leads to us-west-2), 10.50.0.0/16 → the same transit gateway
  (no VPC of us-west-2 has that range: not cut), 10.1.0.0/16 → the same-region peering with
  `batch` (not cut);
- the main table gains 10.2.0.0/16 → the peering, so the ops subnets (on it implicitly) are cut;
- `batch` keeps its main table alone: nothing of it routes to another region.
"""

from __future__ import annotations

from typing import Any

import boto3

PEER_REGION = "us-west-2"
PEER_CIDR = "10.2.0.0/16"
TGW_CIDR = "10.3.0.0/16"
OTHER_TGW_CIDR = "10.50.0.0/16"


def _tags(resource: str, name: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource, "Tags": [{"Key": "Name", "Value": name}]}]


def seed_peering(region: str, vpcs: dict[str, str],
                 subnets: dict[str, list[str]]) -> dict[str, Any]:
    """The paths above; `subnets` per zone as `seed_aws` makes them (web, app, ops, batch)."""
    ec2 = boto3.client("ec2", region_name=region)
    west = boto3.client("ec2", region_name=PEER_REGION)
    shop, batch = vpcs["shop"], vpcs["batch"]
    peer = west.create_vpc(CidrBlock=PEER_CIDR, TagSpecifications=_tags("vpc", "shop-peer"))
    peer_tgw_vpc = west.create_vpc(CidrBlock=TGW_CIDR,
                                   TagSpecifications=_tags("vpc", "shop-peer-tgw"))
    peering = ec2.create_vpc_peering_connection(
        VpcId=shop, PeerVpcId=peer["Vpc"]["VpcId"], PeerRegion=PEER_REGION,
        TagSpecifications=_tags("vpc-peering-connection", "shop-to-west"),
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    west.accept_vpc_peering_connection(VpcPeeringConnectionId=peering)
    local = ec2.create_vpc_peering_connection(
        VpcId=shop, PeerVpcId=batch, TagSpecifications=_tags("vpc-peering-connection",
                                                             "shop-to-batch"),
    )["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=local)
    gateway = ec2.create_transit_gateway(TagSpecifications=_tags("transit-gateway", "shop"))[
        "TransitGateway"]["TransitGatewayId"]
    west_gateway = west.create_transit_gateway(TagSpecifications=_tags(
        "transit-gateway", "shop-peer"))["TransitGateway"]["TransitGatewayId"]
    ec2.create_transit_gateway_vpc_attachment(
        TransitGatewayId=gateway, VpcId=shop, SubnetIds=[subnets[z][1] for z in sorted(subnets)])
    west.create_transit_gateway_vpc_attachment(
        TransitGatewayId=west_gateway, VpcId=peer_tgw_vpc["Vpc"]["VpcId"], SubnetIds=[
            west.create_subnet(VpcId=peer_tgw_vpc["Vpc"]["VpcId"], CidrBlock="10.3.0.0/24",
                               AvailabilityZone=f"{PEER_REGION}a")["Subnet"]["SubnetId"]])
    attachment = ec2.create_transit_gateway_peering_attachment(
        TransitGatewayId=gateway, PeerTransitGatewayId=west_gateway, PeerRegion=PEER_REGION,
        PeerAccountId=boto3.client("sts", region_name=region).get_caller_identity()["Account"],
    )["TransitGatewayPeeringAttachment"]["TransitGatewayAttachmentId"]
    west.accept_transit_gateway_peering_attachment(TransitGatewayAttachmentId=attachment)
    internet = ec2.create_internet_gateway(TagSpecifications=_tags("internet-gateway", "shop"))[
        "InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=internet, VpcId=shop)

    web = ec2.create_route_table(VpcId=shop, TagSpecifications=_tags("route-table", "shop-web"))[
        "RouteTable"]["RouteTableId"]
    app = ec2.create_route_table(VpcId=shop, TagSpecifications=_tags("route-table", "shop-app"))[
        "RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=web, DestinationCidrBlock="0.0.0.0/0", GatewayId=internet)
    for table in (web, app):
        ec2.create_route(RouteTableId=table, DestinationCidrBlock=PEER_CIDR,
                         VpcPeeringConnectionId=peering)
    ec2.create_route(RouteTableId=app, DestinationCidrBlock=TGW_CIDR, TransitGatewayId=gateway)
    ec2.create_route(RouteTableId=app, DestinationCidrBlock=OTHER_TGW_CIDR,
                     TransitGatewayId=gateway)
    ec2.create_route(RouteTableId=app, DestinationCidrBlock="10.1.0.0/16",
                     VpcPeeringConnectionId=local)
    main = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [shop]}, {"Name": "association.main", "Values": ["true"]},
    ])["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=main, DestinationCidrBlock=PEER_CIDR,
                     VpcPeeringConnectionId=peering)
    for zone in sorted(subnets):
        web_subnet, app_subnet = subnets[zone][0], subnets[zone][1]
        ec2.associate_route_table(RouteTableId=web, SubnetId=web_subnet)
        ec2.associate_route_table(RouteTableId=app, SubnetId=app_subnet)
    return {"peer_region": PEER_REGION, "peering": peering, "local_peering": local,
            "transit_gateway": gateway, "route_tables": {"shop-web": web, "shop-app": app,
                                                         "shop-main": main}}


def route_snapshot(region: str = "us-east-1") -> dict[str, Any]:
    """Every route table of the region with its routes and tags, and every subnet's explicit
    table: what a partition's 'restored' compares."""
    ec2 = boto3.client("ec2", region_name=region)
    tables: dict[str, Any] = {}
    associations: dict[str, str] = {}
    for table in ec2.get_paginator("describe_route_tables").paginate().build_full_result()[
            "RouteTables"]:
        main = any(a.get("Main") for a in table.get("Associations", []))
        for association in table.get("Associations", []):
            if association.get("SubnetId"):
                associations[association["SubnetId"]] = table["RouteTableId"]
        tables[table["RouteTableId"]] = {
            "vpc": table["VpcId"], "main": main,
            "routes": sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "State"))
                             for r in table.get("Routes", [])),
            "tags": {t["Key"]: t["Value"] for t in table.get("Tags", [])},
        }
    return {"tables": tables, "associations": associations}
