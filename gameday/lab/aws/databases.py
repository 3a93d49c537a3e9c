"""The lab's Aurora clusters (moto's RDS): what a `failover_database` step fails over and back.

`orders` and `payments` have their writer in us-east-1a and readers in 1b and 1c; `catalog` has
its writer in us-east-1b (a failover of 1a leaves it alone); `sessions` has its writer and its one
reader in us-east-1a (nothing to fail over to: refused).

The clusters live in the DB subnet group `shop-db`: one `tier=db` subnet per zone in the `shop`
VPC, not tagged `gameday=enabled` (the data tier is left out of the lab's tag-filtered network
cuts; an untagged blackhole of a zone cuts it). The shop needs the writer of `orders` available
and in a zone whose database subnets are reachable (`gameday.lab.shop.aws`).

moto fails over at once, where Aurora shows the cluster `failing-over` for 30–60 s. The AWS proxy
asks `FailoverModel` to show it: after a `FailoverDBCluster`, `DescribeDBClusters` says
`failing-over` for `seconds` (the lab's `GAMEDAY_LAB_AWS_FAILOVER_SECONDS`, 0.5 s by default: a
short outage of the shop, short enough for the lab's runbooks, whose probes tolerate one failed
check; 0 in the tests unless a test sets it), and RDS's `InvalidDBClusterStateFault` answers a
second failover of the cluster meanwhile.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import boto3

from gameday.lab.aws.power import Forward, _child, _local, _serialise, _text, form_of
from gameday.lab.emulator import ApiError, Request, Response

CLUSTERS: dict[str, tuple[str, ...]] = {
    "orders": ("us-east-1a", "us-east-1b", "us-east-1c"),
    "payments": ("us-east-1a", "us-east-1c", "us-east-1b"),
    "catalog": ("us-east-1b", "us-east-1a"),
    "sessions": ("us-east-1a", "us-east-1a"),
}
"""Cluster → the zone of each instance, the writer's first (promotion tiers in this order)."""


def seed_databases(region: str = "us-east-1") -> dict[str, list[str]]:
    """Create `CLUSTERS`: each cluster's instances `<cluster>-1`... in the listed zones."""
    rds = boto3.client("rds", region_name=region)
    subnet_group = seed_database_subnets(region)
    made: dict[str, list[str]] = {}
    for cluster, zones in CLUSTERS.items():
        rds.create_db_cluster(DBClusterIdentifier=cluster, Engine="aurora-postgresql",
                              MasterUsername="shop", MasterUserPassword="lab-password-1",
                              Tags=[{"Key": "tier", "Value": "db"}],
                              **({"DBSubnetGroupName": subnet_group} if subnet_group else {}))
        for number, zone in enumerate(zones, start=1):
            rds.create_db_instance(DBInstanceIdentifier=f"{cluster}-{number}",
                                   DBClusterIdentifier=cluster, Engine="aurora-postgresql",
                                   DBInstanceClass="db.r6g.large", AvailabilityZone=zone,
                                   PromotionTier=number)
            made.setdefault(cluster, []).append(f"{cluster}-{number}")
    return made


SUBNET_GROUP = "shop-db"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def seed_database_subnets(region: str = "us-east-1") -> str:
    """One `tier=db` subnet per zone in the `shop` VPC (when the lab has one), grouped as the DB
    subnet group `SUBNET_GROUP`; returns its name ("" without a `shop` VPC)."""
    ec2 = boto3.client("ec2", region_name=region)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["shop"]}])["Vpcs"]
    if not vpcs:
        return ""
    subnets = [ec2.create_subnet(
        VpcId=vpcs[0]["VpcId"], CidrBlock=f"10.0.{100 + n}.0/24", AvailabilityZone=zone,
        TagSpecifications=[{"ResourceType": "subnet", "Tags": [
            {"Key": "Name", "Value": f"shop-db-{zone}"}, {"Key": "tier", "Value": "db"}]}],
    )["Subnet"]["SubnetId"] for n, zone in enumerate(ZONES)]
    boto3.client("rds", region_name=region).create_db_subnet_group(
        DBSubnetGroupName=SUBNET_GROUP, DBSubnetGroupDescription="the shop's databases",
        SubnetIds=subnets)
    return SUBNET_GROUP


class FailoverModel:
    """Which clusters are failing over, until when, as Aurora shows them (moto shows none)."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._until.clear()

    def _failing_over(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            self._until = {c: until for c, until in self._until.items() if until > now}
            return set(self._until)

    def failover_call(self, request: Request, forward: Forward) -> Response:
        """`FailoverDBCluster`: refused while the cluster is failing over already, else forwarded
        and the cluster shown `failing-over` for `seconds`."""
        cluster = (form_of(request).get("DBClusterIdentifier") or [""])[0]
        if cluster in self._failing_over():
            raise ApiError(400, "InvalidDBClusterStateFault",
                           f"DbCluster {cluster} is not in the available state (failing-over).")
        response = forward(request)
        if response.status == 200 and self.seconds > 0:
            with self._lock:
                self._until[cluster] = time.monotonic() + self.seconds
        return response

    def describe_clusters(self, request: Request, forward: Forward) -> Response:
        """`DescribeDBClusters` with the clusters that are failing over shown so."""
        response = forward(request)
        failing = self._failing_over()
        if response.status != 200 or not failing:
            return response
        root = ET.fromstring(response.body)
        for node in root.iter():
            if _local(node.tag) == "DBCluster" and _text(node, "DBClusterIdentifier") in failing:
                status = _child(node, "Status")
                if status is not None:
                    status.text = "failing-over"
        return Response(response.status, _serialise(root), response.headers)


def database_snapshot(region: str = "us-east-1") -> dict[str, Any]:
    """Each cluster's writer, status and tags, as RDS describes them."""
    rds = boto3.client("rds", region_name=region)
    view: dict[str, Any] = {}
    for cluster in rds.describe_db_clusters()["DBClusters"]:
        writer = next((m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]
                       if m["IsClusterWriter"]), None)
        view[cluster["DBClusterIdentifier"]] = {
            "writer": writer, "status": cluster["Status"],
            "tags": {t["Key"]: t["Value"] for t in cluster.get("TagList", [])}}
    return view
