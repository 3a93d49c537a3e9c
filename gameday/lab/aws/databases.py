"""The lab's Aurora clusters (moto's RDS): what a `failover_database` step fails over and back.

`orders` and `payments` have their writer in us-east-1a and readers in 1b and 1c; `catalog` has
its writer in us-east-1b (a failover of 1a leaves it alone); `sessions` has its writer and its one
reader in us-east-1a (nothing to fail over to: refused). moto fails over at once, where Aurora
shows the cluster `failing-over` for 30–60 s: the lab does not model that wait.
"""

from __future__ import annotations

from typing import Any

import boto3

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
    made: dict[str, list[str]] = {}
    for cluster, zones in CLUSTERS.items():
        rds.create_db_cluster(DBClusterIdentifier=cluster, Engine="aurora-postgresql",
                              MasterUsername="shop", MasterUserPassword="lab-password-1",
                              Tags=[{"Key": "tier", "Value": "db"}])
        for number, zone in enumerate(zones, start=1):
            rds.create_db_instance(DBInstanceIdentifier=f"{cluster}-{number}",
                                   DBClusterIdentifier=cluster, Engine="aurora-postgresql",
                                   DBInstanceClass="db.r6g.large", AvailabilityZone=zone,
                                   PromotionTier=number)
            made.setdefault(cluster, []).append(f"{cluster}-{number}")
    return made


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
