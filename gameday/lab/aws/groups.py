"""The lab's further Auto Scaling groups (beside `fleet.GROUP`), seeded through boto3: what a
capacity denial (`deny_capacity`) narrows, leaves out or refuses.

- `shop-app`: the app subnets of zones c, a and b, in that order (a restore must keep it), with
  `AZRebalance` already suspended by its owners (it must stay suspended);
- `shop-jobs`: the app subnets of zones b and c (nothing in zone a: left out of a zone-a step);
- `batch-1a`: the batch VPC's subnet of zone a alone (a zone-a denial would leave it with no
  subnet: refused).

None of them runs an instance (desired capacity 0), so the shop's health is unchanged.
"""

from __future__ import annotations

from typing import Any

import boto3

from gameday.lab.aws.fleet import GROUP

APP, BATCH = 1, 3
"""Where the app and batch subnets sit in each zone's list of `seed_aws`'s subnets."""
GROUPS: dict[str, tuple[tuple[str, int], ...]] = {
    "shop-app": (("us-east-1c", APP), ("us-east-1a", APP), ("us-east-1b", APP)),
    "shop-jobs": (("us-east-1b", APP), ("us-east-1c", APP)),
    "batch-1a": (("us-east-1a", BATCH),),
}
"""Group → its subnets in order, as (zone, index in the zone's subnets)."""
SUSPENDED = {"shop-app": ["AZRebalance"]}


def seed_groups(region: str, subnets: dict[str, list[str]]) -> dict[str, str]:
    """Create `GROUPS` from the launch template of `fleet.GROUP`; returns each group's
    `VPCZoneIdentifier`."""
    autoscaling = boto3.client("autoscaling", region_name=region)
    made: dict[str, str] = {}
    for name, where in GROUPS.items():
        made[name] = ",".join(subnets[zone][index] for zone, index in where)
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": GROUP}, MinSize=0,
            MaxSize=3, DesiredCapacity=0, VPCZoneIdentifier=made[name],
            Tags=[{"Key": "tier", "Value": name.split("-")[-1], "PropagateAtLaunch": True}])
        if name in SUSPENDED:
            autoscaling.suspend_processes(AutoScalingGroupName=name,
                                          ScalingProcesses=SUSPENDED[name])
    return made


def capacity_snapshot(region: str = "us-east-1") -> dict[str, Any]:
    """Every group's `VPCZoneIdentifier` (in order), zones, suspended processes and tags: what a
    capacity denial's 'restored' compares."""
    autoscaling = boto3.client("autoscaling", region_name=region)
    return {
        g["AutoScalingGroupName"]: {
            "subnets": g.get("VPCZoneIdentifier", ""),
            "zones": sorted(g.get("AvailabilityZones", [])),
            "suspended": sorted(p["ProcessName"] for p in g.get("SuspendedProcesses", [])),
            "tags": {t["Key"]: (t["Value"], t.get("PropagateAtLaunch")) for t in g.get("Tags", [])},
        }
        for g in autoscaling.get_paginator("describe_auto_scaling_groups").paginate()
        .build_full_result()["AutoScalingGroups"]
    }
