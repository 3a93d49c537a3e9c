"""The lab's EC2 instances and Auto Scaling group, seeded through boto3, and read back as what a
power interruption (`stop_instances`) changes."""

from __future__ import annotations

import time
from typing import Any

import boto3
import httpx

GROUP = "shop-web"
AMI = "ami-12c6146b"  # one of moto's Amazon images, EBS-backed
INSTANCE_STORE_AMI = "ami-04681a1dbd79675b6"  # moto's one instance-store Amazon image

FLEET: tuple[tuple[str, str, bool, bool, bool], ...] = (
    # name, zone, tagged gameday=enabled and tier=web, in the group, running
    ("web-1a-0", "us-east-1a", True, True, True),
    ("web-1a-1", "us-east-1a", True, False, True),
    ("web-1a-2", "us-east-1a", True, False, False),
    ("ops-1a", "us-east-1a", False, False, True),
    ("web-1b-0", "us-east-1b", True, True, True),
    ("web-1b-1", "us-east-1b", True, False, True),
    ("web-1c-0", "us-east-1c", True, True, True),
)
"""Per zone, web instances in the zone's `tier=web` subnet: in zone a one already stopped and one
untagged (an ops box: neither `gameday` nor `tier` tag); the group holds one web instance of each
zone."""


def _tags(**tags: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def launch(ec2: Any, name: str, subnet: str, tags: dict[str, str],
           image: str = AMI) -> str:
    """One instance in `subnet`, tagged with its Name and `tags`."""
    made = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                             SubnetId=subnet, TagSpecifications=[
                                 {"ResourceType": "instance", "Tags": _tags(Name=name, **tags)}])
    return str(made["Instances"][0]["InstanceId"])


def wait_for_state(ec2: Any, ids: list[str], state: str, timeout: float = 30) -> None:
    """Until each instance shows `state` (the lab's proxy shows `stopping`/`pending` first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                 for i in r["Instances"]]
        if all(i["State"]["Name"] == state for i in found):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"instances {ids} are not {state} after {timeout} s")
        time.sleep(0.05)


def seed_fleet(region: str, web_subnets: dict[str, str]) -> dict[str, Any]:
    """`FLEET` in the web subnet of each zone (`web_subnets`: zone -> subnet id), and the group
    `GROUP` (no process suspended) holding its members; returns the instance ids by name."""
    ec2 = boto3.client("ec2", region_name=region)
    autoscaling = boto3.client("autoscaling", region_name=region)
    ids: dict[str, str] = {}
    for name, zone, tagged, _, _ in FLEET:
        tags = {"gameday": "enabled", "tier": "web"} if tagged else {}
        ids[name] = launch(ec2, name, web_subnets[zone], tags)
    stopped = [ids[name] for name, *_, running in FLEET if not running]
    ec2.stop_instances(InstanceIds=stopped)
    ec2.create_launch_template(LaunchTemplateName=GROUP, LaunchTemplateData={
        "ImageId": AMI, "InstanceType": "t3.micro"})
    members = [ids[name] for name, _, _, grouped, _ in FLEET if grouped]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, LaunchTemplate={"LaunchTemplateName": GROUP}, MinSize=0,
        MaxSize=6, DesiredCapacity=0, VPCZoneIdentifier=",".join(web_subnets.values()),
        Tags=[{"Key": "tier", "Value": "web", "PropagateAtLaunch": True}])
    autoscaling.attach_instances(AutoScalingGroupName=GROUP, InstanceIds=members)
    settle = httpx.post(f"{ec2.meta.endpoint_url}/_emulator/settle", timeout=5)
    if settle.status_code != 204:  # not the lab's proxy: wait the stop out
        wait_for_state(ec2, stopped, "stopped")
    return {"instances": ids, "auto_scaling_group": GROUP}


def power_snapshot(region: str = "us-east-1") -> dict[str, Any]:
    """Every instance's power state and tags, and every group's members, suspended processes and
    tags: what a power interruption's 'restored' compares."""
    ec2 = boto3.client("ec2", region_name=region)
    autoscaling = boto3.client("autoscaling", region_name=region)
    instances = {
        i["InstanceId"]: {"state": i["State"]["Name"],
                          "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
        for r in ec2.get_paginator("describe_instances").paginate().build_full_result()[
            "Reservations"]
        for i in r["Instances"]
    }
    groups = {
        g["AutoScalingGroupName"]: {
            "instances": sorted(i["InstanceId"] for i in g.get("Instances", [])),
            "suspended": sorted(p["ProcessName"] for p in g.get("SuspendedProcesses", [])),
            "tags": {t["Key"]: (t["Value"], t.get("PropagateAtLaunch")) for t in g.get("Tags", [])},
        }
        for g in autoscaling.get_paginator("describe_auto_scaling_groups").paginate()
        .build_full_result()["AutoScalingGroups"]
    }
    return {"instances": instances, "groups": groups}
