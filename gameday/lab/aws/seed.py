"""Seed the lab's AWS topology through boto3, and read back what a blackhole changes."""

from __future__ import annotations

from typing import Any

import boto3

from gameday.lab.aws.fleet import seed_fleet
from gameday.lab.aws.groups import seed_groups
from gameday.lab.aws.peering import seed_peering
from gameday.lab.aws.zonal_shift import seed_load_balancers

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def _tags(**tags: str) -> list[dict[str, Any]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def seed_aws(region: str = "us-east-1", subnets_per_zone: int = 2) -> dict[str, Any]:
    """A shop VPC across three zones with tagged subnets, two custom ACLs and a second VPC.

    Per zone: `subnets_per_zone` subnets tagged `gameday=enabled` (tier web, then app) and one
    untagged `ops` subnet that no tag-filtered GameDay may touch. Web subnets sit on a custom
    `shop-web` ACL, the second VPC's subnets on their own `batch` ACL. The web subnets hold the
    web instances and the Auto Scaling group of `gameday.lab.aws.fleet` (`instances`,
    `auto_scaling_group`).
    """
    ec2 = boto3.client("ec2", region_name=region)
    shop = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": _tags(Name="shop")}])["Vpc"]["VpcId"]
    batch = ec2.create_vpc(CidrBlock="10.1.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": _tags(Name="batch")}])["Vpc"]["VpcId"]
    web_acl = ec2.create_network_acl(VpcId=shop, TagSpecifications=[
        {"ResourceType": "network-acl", "Tags": _tags(Name="shop-web")}])["NetworkAcl"]["NetworkAclId"]
    batch_acl = ec2.create_network_acl(VpcId=batch, TagSpecifications=[
        {"ResourceType": "network-acl", "Tags": _tags(Name="batch")}])["NetworkAcl"]["NetworkAclId"]
    for acl in (web_acl, batch_acl):
        for egress in (False, True):
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Protocol="-1",
                                         RuleAction="allow", Egress=egress, CidrBlock="0.0.0.0/0")
    subnets: dict[str, list[str]] = {}
    cidr = 0
    for zone in ZONES:
        for index in range(subnets_per_zone + 1):
            tier = ("web", "app")[index % 2] if index < subnets_per_zone else "ops"
            tags = _tags(Name=f"shop-{tier}-{zone}-{index}", tier=tier)
            if tier != "ops":
                tags += _tags(gameday="enabled")
            subnet = ec2.create_subnet(VpcId=shop, CidrBlock=f"10.0.{cidr}.0/24",
                                       AvailabilityZone=zone, TagSpecifications=[
                                           {"ResourceType": "subnet", "Tags": tags}])["Subnet"]
            cidr += 1
            subnets.setdefault(zone, []).append(subnet["SubnetId"])
            if tier == "web":
                _associate(ec2, subnet["SubnetId"], web_acl)
        batch_subnet = ec2.create_subnet(VpcId=batch, CidrBlock=f"10.1.{cidr}.0/24",
                                         AvailabilityZone=zone, TagSpecifications=[
                                             {"ResourceType": "subnet",
                                              "Tags": _tags(Name=f"batch-{zone}", gameday="enabled")}
                                         ])["Subnet"]
        cidr += 1
        subnets[zone].append(batch_subnet["SubnetId"])
        _associate(ec2, batch_subnet["SubnetId"], batch_acl)
    hosted_zone = seed_route53()
    fleet = seed_fleet(region, {zone: subnets[zone][0] for zone in ZONES})
    fleet["auto_scaling_groups"] = seed_groups(region, subnets)  # deny_capacity
    fleet["load_balancers"] = seed_load_balancers(region, subnets)  # evacuate_zone
    if subnets_per_zone >= 2:  # partition_regions: the web and app subnets' route tables
        fleet["peering"] = seed_peering(region, {"shop": shop, "batch": batch}, subnets)
    return {"region": region, "vpcs": {"shop": shop, "batch": batch},
            "acls": {"shop-web": web_acl, "batch": batch_acl}, "subnets": subnets,
            "hosted_zone": hosted_zone, **fleet}


SHOP_DOMAIN = "shop.example.com"
WEIGHTS = {"us-east-1": 100, "us-west-2": 100, "eu-west-1": 50}


def seed_route53(domain: str = SHOP_DOMAIN) -> str:
    """A hosted zone with `www` and `api` weighted per region (`SetIdentifier` = region)."""
    route53 = boto3.client("route53", region_name="us-east-1")
    zone = route53.create_hosted_zone(Name=domain, CallerReference=f"gameday-lab-{domain}")
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    changes = []
    for index, (region, weight) in enumerate(WEIGHTS.items()):
        for name in ("www", "api"):
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {
                "Name": f"{name}.{domain}", "Type": "A", "SetIdentifier": region, "Weight": weight,
                "TTL": 60, "ResourceRecords": [{"Value": f"192.0.2.{10 + index}"}]}})
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return zone_id


def route53_snapshot() -> dict[str, Any]:
    """Every record set of every hosted zone: what an evacuation's 'restored' compares."""
    route53 = boto3.client("route53", region_name="us-east-1")
    records: dict[str, Any] = {}
    for zone in route53.list_hosted_zones()["HostedZones"]:
        sets = route53.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=zone["Id"]).build_full_result()["ResourceRecordSets"]
        for record in sets:
            key = f"{zone['Name']}|{record['Name']}|{record['Type']}|{record.get('SetIdentifier', '')}"
            records[key] = {k: v for k, v in record.items() if k != "ResourceRecords"} | {
                "values": sorted(str(v) for v in record.get("ResourceRecords", []))}
    return records


def _associate(ec2: Any, subnet_id: str, acl_id: str) -> None:
    for acl in ec2.describe_network_acls()["NetworkAcls"]:
        for association in acl["Associations"]:
            if association["SubnetId"] == subnet_id:
                ec2.replace_network_acl_association(
                    AssociationId=association["NetworkAclAssociationId"], NetworkAclId=acl_id)
                return


def acl_snapshot(region: str = "us-east-1", ec2: Any = None) -> dict[str, Any]:
    """Every subnet's ACL, and every ACL with its entries and tags: what 'restored' compares
    (of the account `ec2` is for; by default the lab's own)."""
    ec2 = ec2 or boto3.client("ec2", region_name=region)
    associations: dict[str, str] = {}
    acls: dict[str, Any] = {}
    for acl in ec2.get_paginator("describe_network_acls").paginate().build_full_result()[
        "NetworkAcls"
    ]:
        for association in acl["Associations"]:
            associations[association["SubnetId"]] = acl["NetworkAclId"]
        acls[acl["NetworkAclId"]] = {
            "vpc": acl["VpcId"],
            "entries": sorted(
                (e["RuleNumber"], e["Egress"], e["RuleAction"], e.get("CidrBlock", ""),
                 e.get("Ipv6CidrBlock", "")) for e in acl["Entries"]
            ),
            "tags": {t["Key"]: t["Value"] for t in acl.get("Tags", [])},
        }
    return {"associations": associations, "acls": acls}


def seed_large_region(region: str = "us-east-1", subnets: int = 1500, targets: int = 453,
                      zone: str = "us-east-1a", per_vpc: int = 250,
                      threads: int = 8) -> dict[str, Any]:
    """A region of `subnets` subnets over VPCs of `per_vpc`, of which the first `targets` lie in
    `zone` tagged `gameday=enabled` (the shape of issue 20: 453 of ~1,500); 47 more in `zone`
    are untagged and the rest, tagged, lie in the other zones. Every VPC has a custom `app` ACL
    (allow all) that every seventh subnet is associated with, so a restore must put back more
    than the default ACL. Returns the VPC, ACL and target subnet ids."""
    from concurrent.futures import ThreadPoolExecutor

    ec2 = boto3.client("ec2", region_name=region)
    others = [z for z in ZONES if z != zone]
    vpc_count = (subnets + per_vpc - 1) // per_vpc
    vpcs = [ec2.create_vpc(CidrBlock=f"10.{20 + v}.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": _tags(Name=f"region-{v}")}])["Vpc"]["VpcId"]
        for v in range(vpc_count)]
    app_acls = []
    for vpc in vpcs:
        acl = ec2.create_network_acl(VpcId=vpc, TagSpecifications=[
            {"ResourceType": "network-acl", "Tags": _tags(Name="app")}])["NetworkAcl"]["NetworkAclId"]
        for egress in (False, True):
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Protocol="-1",
                                         RuleAction="allow", Egress=egress, CidrBlock="0.0.0.0/0")
        app_acls.append(acl)
    untagged_in_zone = min(47, subnets - targets)

    def make(index: int) -> str:
        vpc, slot = index % vpc_count, index // vpc_count
        tags = _tags(Name=f"region-{index}")
        where = zone
        if index < targets:
            tags += _tags(gameday="enabled")
        elif index >= targets + untagged_in_zone:
            where = others[index % len(others)]
            tags += _tags(gameday="enabled")
        return ec2.create_subnet(VpcId=vpcs[vpc], CidrBlock=f"10.{20 + vpc}.{slot}.0/24",
                                 AvailabilityZone=where, TagSpecifications=[
                                     {"ResourceType": "subnet", "Tags": tags}])["Subnet"]["SubnetId"]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        made = list(pool.map(make, range(subnets)))
        associations: dict[str, str] = {}
        for vpc in vpcs:
            for acl in ec2.get_paginator("describe_network_acls").paginate(
                    Filters=[{"Name": "vpc-id", "Values": [vpc]}]).build_full_result()["NetworkAcls"]:
                for association in acl["Associations"]:
                    associations[association["SubnetId"]] = association["NetworkAclAssociationId"]
        moved = [index for index in range(subnets) if index % 7 == 0]
        list(pool.map(lambda index: ec2.replace_network_acl_association(
            AssociationId=associations[made[index]],
            NetworkAclId=app_acls[index % vpc_count]), moved))
    return {"region": region, "zone": zone, "vpcs": vpcs, "app_acls": app_acls,
            "targets": made[:targets], "subnets": made}
