"""What the lab serves for `partition_regions`, through real boto3: moto's route tables, cross-region
VPC peering and transit gateway peering as the seed made them, and the proxy's EC2 refusals of
`AssociateRouteTable` that moto skips."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from gameday.lab.aws.peering import PEER_REGION


def code(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return str(caught.value.response["Error"]["Code"])


def test_the_seed_peers_the_shop_across_regions(aws: dict[str, Any]) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    west = boto3.client("ec2", region_name=PEER_REGION)
    peering = aws["peering"]
    [seen] = west.describe_vpc_peering_connections(
        VpcPeeringConnectionIds=[peering["peering"]])["VpcPeeringConnections"]
    assert seen["Status"]["Code"] == "active"
    assert (seen["RequesterVpcInfo"]["Region"], seen["AccepterVpcInfo"]["Region"]) == (
        "us-east-1", PEER_REGION)
    # moto lists the VPC attachments here too (EC2 does not): the peering is the one with sides
    [attachment] = [a for a in ec2.describe_transit_gateway_peering_attachments()[
        "TransitGatewayPeeringAttachments"] if "AccepterTgwInfo" in a]
    assert attachment["AccepterTgwInfo"]["Region"] == PEER_REGION
    tables = {t["RouteTableId"]: t for t in ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [aws["vpcs"]["shop"]]}])["RouteTables"]}
    web = tables[peering["route_tables"]["shop-web"]]
    assert {a["SubnetId"] for a in web["Associations"]} == {
        aws["subnets"][z][0] for z in aws["subnets"]}  # one table shared by the web subnets
    main = tables[peering["route_tables"]["shop-main"]]
    assert [a["Main"] for a in main["Associations"]] == [True]  # the ops subnets: implicitly
    assert {r.get("VpcPeeringConnectionId") for r in main["Routes"]} >= {peering["peering"]}


def test_associate_is_refused_as_ec2_refuses_it(aws: dict[str, Any]) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    web_subnet = aws["subnets"]["us-east-1a"][0]
    app_table = aws["peering"]["route_tables"]["shop-app"]
    assert code(lambda: ec2.associate_route_table(RouteTableId=app_table,
                                                  SubnetId=web_subnet)) == (
        "Resource.AlreadyAssociated")
    ops_subnet = aws["subnets"]["us-east-1a"][2]
    assert code(lambda: ec2.associate_route_table(RouteTableId="rtb-0123456789abcdef0",
                                                  SubnetId=ops_subnet)) == (
        "InvalidRouteTableID.NotFound")
    association = ec2.associate_route_table(RouteTableId=app_table, SubnetId=ops_subnet)
    ec2.disassociate_route_table(AssociationId=association["AssociationId"])  # back on main
    assert code(lambda: ec2.delete_route_table(RouteTableId=app_table)) == "DependencyViolation"
