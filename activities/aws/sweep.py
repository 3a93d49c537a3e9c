"""AWS sweep: gameday's network ACLs left by runs that are over, found by their tags.

Before: a gameday ACL (tag `gameday:run`) holds subnets, its tags map each to the ACL it had.
After sweep: each subnet is back on that ACL, and the gameday ACL is deleted.
"""

from __future__ import annotations

import os

from activities.aws.api import TAG_RESTORE, TAG_RUN, TAG_STEP, AwsApi, tags_of
from activities.aws.blackhole import AwsZoneBlackhole
from gameday.plan import FaultResult
from gameday.sweep import Leftover, SweepScope


class AwsSweeper:
    """Finds gameday's network ACLs by their tags and undoes them from those tags alone."""

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()
        self.blackhole = AwsZoneBlackhole(self.api)

    def regions(self, scope: SweepScope) -> list[str]:
        if scope.aws_regions:
            return scope.aws_regions
        ec2 = self.api.ec2(os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        found = self.api.call("DescribeRegions", ec2.describe_regions)
        return sorted(r["RegionName"] for r in found.get("Regions", []))

    def find(self, scope: SweepScope) -> list[Leftover]:
        leftovers: list[Leftover] = []
        for region in self.regions(scope):
            ec2 = self.api.ec2(region)
            acls = self.api.pages(ec2, "describe_network_acls", "NetworkAcls",
                               Filters=[{"Name": "tag-key", "Values": [TAG_RUN]}])
            for acl in acls:
                tags = tags_of(acl)
                subnets = {k.removeprefix(TAG_RESTORE): v for k, v in tags.items()
                           if k.startswith(TAG_RESTORE)}
                held = [a["SubnetId"] for a in acl.get("Associations", [])]
                leftovers.append(Leftover(
                    cloud="aws", kind="network-acl", id=acl["NetworkAclId"], run_id=tags[TAG_RUN],
                    step_id=tags.get(TAG_STEP, ""), location=region,
                    detail={"vpc": acl["VpcId"], "subnets_held": ",".join(sorted(held)),
                            "restore_map": ",".join(f"{k}={v}" for k, v in sorted(subnets.items()))},
                ))
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        ec2 = self.api.ec2(leftover.location)
        acls = self.api.pages(ec2, "describe_network_acls", "NetworkAcls",
                           Filters=[{"Name": "tag:" + TAG_RUN, "Values": [leftover.run_id]}])
        acl = next((a for a in acls if a["NetworkAclId"] == leftover.id), None)
        if acl is None:
            return FaultResult(notes=[f"{leftover.id} is already gone"])
        original = {k.removeprefix(TAG_RESTORE): v for k, v in tags_of(acl).items()
                    if k.startswith(TAG_RESTORE)}
        return self.blackhole.restore_subnets(ec2, original, [acl["VpcId"]], [leftover.id])
