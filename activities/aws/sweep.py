"""AWS sweep: what gameday left by runs that are over, found by its tags.

- `network-acl`: a gameday ACL (tag `gameday:run`) holds subnets, its tags map each to the ACL it
  had. After sweep: each subnet is back on that ACL, and the gameday ACL is deleted.
- `instance`: an instance a power interruption stopped (tags `gameday:run`, `gameday:step`).
  After sweep: it is running again (started, waited for) and its marks are gone.
- `auto-scaling-group`: one step's hold on a group whose healing a power interruption suspended
  (tag `gameday:hold:<step>:<digest>` = the run; `gameday:suspended` names what gameday
  suspended). After sweep: the step's instances in the region are running again first, then the
  hold is gone, and with the group's last hold exactly those processes are resumed.
- `db-cluster`: a cluster a database failover moved (tags `gameday:run`, `gameday:step`,
  `gameday:restore:writer`, `gameday:fail-back`). After sweep: unless the tags say not to fail
  back, the writer they name is the writer again; gameday's tags are gone.
- `capacity-denial`: a group a capacity denial narrowed (tags `gameday:run`, `gameday:step`,
  `gameday:restore:subnets:<n>`, `gameday:capacity:resumes`). After sweep: its
  `VPCZoneIdentifier` is the one the tags recorded, `AZRebalance` is resumed if the tags say gameday
  suspended it, and gameday's tags are gone.
- `route-table`: a gameday copy of a route table (tag `gameday:run`) a region partition moved
  subnets onto; its tags map each to the table it had (`main`: the VPC's main table). After sweep:
  each subnet is back on that table (or implicitly on the main table), and the copy is deleted.
- `zonal-shift`: an active ARC zonal shift whose comment is `gameday <run> <step>` (AWS allows no
  tags on a shift). After sweep: it is cancelled (one that expired meanwhile counts as done).
"""

from __future__ import annotations

import os

from activities.aws.api import TAG_RESTORE, TAG_RUN, TAG_STEP, AwsApi, tags_of
from activities.aws.blackhole import AwsZoneBlackhole
from activities.aws.capacity import AwsCapacityDenial
from activities.aws.database import AwsDatabaseFailover
from activities.aws.partition import AwsRegionPartition
from activities.aws.power import (
    GONE,
    TAG_HOLD,
    TAG_SUSPENDED,
    AwsPowerInterruption,
    group_tags,
    holds_of,
)
from activities.aws.zonal_shift import AwsZonalShift
from gameday.plan import FaultResult
from gameday.sweep import Leftover, SweepScope


class AwsSweeper:
    """Finds what gameday changed by its tags (network ACLs, stopped instances, held groups,
    failed-over clusters) and undoes each from those tags alone."""

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()
        self.blackhole = AwsZoneBlackhole(self.api)
        self.power = AwsPowerInterruption(self.api)
        self.database = AwsDatabaseFailover(self.api)
        self.capacity = AwsCapacityDenial(self.api)
        self.zonal_shift = AwsZonalShift(self.api)
        self.partition = AwsRegionPartition(self.api)

    def regions(self, scope: SweepScope) -> list[str]:
        if scope.aws_regions:
            return scope.aws_regions
        ec2 = self.api.ec2(os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        found = self.api.call("DescribeRegions", ec2.describe_regions)
        return sorted(r["RegionName"] for r in found.get("Regions", []))

    def find(self, scope: SweepScope) -> list[Leftover]:
        """The leftovers of every region, in the worker's own account (unless
        `scope.aws_own_account` is false) and in each account of `scope.aws_accounts` (reached
        through its target role; one that cannot be assumed is `Refused`)."""
        own = self.api.own_account()
        leftovers = self._find(scope, None) if scope.aws_own_account else []
        for account in dict.fromkeys(scope.aws_accounts):
            if account != own:
                leftovers += self._find(scope, account)
        return leftovers

    def _find(self, scope: SweepScope, account: str | None) -> list[Leftover]:
        leftovers: list[Leftover] = []
        for region in self.regions(scope):
            ec2 = self.api.ec2(region, account)
            acls = self.api.pages(ec2, "describe_network_acls", "NetworkAcls",
                               Filters=[{"Name": "tag-key", "Values": [TAG_RUN]}])
            for acl in acls:
                tags = tags_of(acl)
                subnets = {k.removeprefix(TAG_RESTORE): v for k, v in tags.items()
                           if k.startswith(TAG_RESTORE)}
                held = [a["SubnetId"] for a in acl.get("Associations", [])]
                leftovers.append(Leftover(
                    cloud="aws", kind="network-acl", id=acl["NetworkAclId"], run_id=tags[TAG_RUN],
                    step_id=tags.get(TAG_STEP, ""), location=region, account=account or "",
                    detail={"vpc": acl["VpcId"], "subnets_held": ",".join(sorted(held)),
                            "restore_map": ",".join(f"{k}={v}" for k, v in sorted(subnets.items()))},
                ))
            leftovers += self._power_leftovers(region, account)
            leftovers += self.database.find(region, account)
            leftovers += self.capacity.find(region, account)
            leftovers += self.zonal_shift.find(region, account)
            leftovers += self.partition.find(region, account)
        return leftovers

    def _power_leftovers(self, region: str, account: str | None) -> list[Leftover]:
        """Instances, then groups (their sweep starts the instances first anyway)."""
        ec2 = self.api.ec2(region, account)
        found: list[Leftover] = []
        reservations = self.api.pages(ec2, "describe_instances", "Reservations",
                                      Filters=[{"Name": "tag-key", "Values": [TAG_RUN]}])
        for instance in (i for r in reservations for i in r.get("Instances", [])):
            if instance["State"]["Name"] in GONE:
                continue  # terminated meanwhile: nothing to start
            tags = tags_of(instance)
            found.append(Leftover(
                cloud="aws", kind="instance", id=instance["InstanceId"], run_id=tags[TAG_RUN],
                step_id=tags.get(TAG_STEP, ""), location=region, account=account or "",
                detail={"state": instance["State"]["Name"], "name": tags.get("Name", ""),
                        "zone": instance.get("Placement", {}).get("AvailabilityZone", "")}))
        autoscaling = self.api.client("autoscaling", region, account)
        groups = self.api.pages(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups",
                                Filters=[{"Name": "tag-key", "Values": [TAG_SUSPENDED]}])
        for group in groups:
            tags = group_tags(group)
            for key, run_id in sorted(holds_of(tags).items()):
                found.append(Leftover(
                    cloud="aws", kind="auto-scaling-group", id=group["AutoScalingGroupName"],
                    run_id=run_id, step_id=key.removeprefix(TAG_HOLD).rsplit(":", 1)[0],
                    location=region, account=account or "", detail={"hold": key,
                                             "suspended_by_gameday": tags[TAG_SUSPENDED]}))
        return found

    def sweep(self, leftover: Leftover) -> FaultResult:
        account = leftover.account or None
        if leftover.kind == "instance":
            return self.power.start_marked(self.api.ec2(leftover.location, account), [leftover.id],
                                           leftover.run_id, leftover.step_id)
        if leftover.kind == "auto-scaling-group":
            return self._sweep_group(leftover)
        if leftover.kind == "db-cluster":
            return self.database.sweep(leftover)
        if leftover.kind == "capacity-denial":
            return self.capacity.sweep(leftover)
        if leftover.kind == "zonal-shift":
            return self.zonal_shift.sweep(leftover)
        if leftover.kind == "route-table":
            return self.partition.sweep(leftover)
        ec2 = self.api.ec2(leftover.location, account)
        acls = self.api.pages(ec2, "describe_network_acls", "NetworkAcls",
                           Filters=[{"Name": "tag:" + TAG_RUN, "Values": [leftover.run_id]}])
        acl = next((a for a in acls if a["NetworkAclId"] == leftover.id), None)
        if acl is None:
            return FaultResult(notes=[f"{leftover.id} is already gone"])
        original = {k.removeprefix(TAG_RESTORE): v for k, v in tags_of(acl).items()
                    if k.startswith(TAG_RESTORE)}
        return self.blackhole.restore_subnets(ec2, original, [acl["VpcId"]], [leftover.id])

    def _sweep_group(self, leftover: Leftover) -> FaultResult:
        """Start the step's stopped instances first (the group must not replace them), then
        release the step's hold, from the tags alone."""
        ec2 = self.api.ec2(leftover.location, leftover.account or None)
        reservations = self.api.pages(ec2, "describe_instances", "Reservations", Filters=[
            {"Name": f"tag:{TAG_RUN}", "Values": [leftover.run_id]},
            {"Name": f"tag:{TAG_STEP}", "Values": [leftover.step_id]}])
        stopped = [i["InstanceId"] for r in reservations for i in r.get("Instances", [])]
        result = self.power.start_marked(ec2, stopped, leftover.run_id, leftover.step_id)
        autoscaling = self.api.client("autoscaling", leftover.location, leftover.account or None)
        if self.power.release_group(autoscaling, leftover.id, leftover.detail["hold"]):
            result.changed += 1
        else:
            result.notes.append(f"Auto Scaling group {leftover.id} is already gone")
        return result
