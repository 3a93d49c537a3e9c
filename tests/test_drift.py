"""Faults that hold against drift: new resources in the zone are brought under the fault (and
restored), resources that disappear do not break the restore."""

from __future__ import annotations

import boto3

from gameday.lab.aws import acl_snapshot
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.gameday import drift_unit_id


def test_drift_unit_ids_stay_valid_step_ids():
    assert drift_unit_id("blackhole-use1a", 2) == "blackhole-use1a-d2"
    long = "x" * 63
    assert len(drift_unit_id(long, 12)) <= 63 and drift_unit_id(long, 12).endswith("-d12")


def test_new_subnets_are_cut_and_vanished_ones_do_not_break_the_restore(aws, client, runner,
                                                                         task_queue):
    ec2 = boto3.client("ec2", region_name="us-east-1")
    shop = aws["vpcs"]["shop"]
    doomed = ec2.create_subnet(VpcId=shop, CidrBlock="10.0.200.0/24", AvailabilityZone="us-east-1a",
                               TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                                   {"Key": "gameday", "Value": "enabled"}]}])["Subnet"]["SubnetId"]
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m"), drift_interval="1s"),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        newcomer = ec2.create_subnet(
            VpcId=shop, CidrBlock="10.0.201.0/24", AvailabilityZone="us-east-1a",
            TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                {"Key": "gameday", "Value": "enabled"}, {"Key": "Name", "Value": "late"}]}],
        )["Subnet"]["SubnetId"]
        grown = await wait_for(handle, lambda s: any(e.kind == "drift" for e in s.events), timeout=30)
        during = acl_snapshot()
        ec2.delete_subnet(SubnetId=doomed)
        await abort(handle, reason="drift drill")
        return newcomer, grown, during, await handle.result()

    newcomer, grown, during, result = runner.run(scenario(), timeout=120)
    acls = during["acls"]
    assert acls[during["associations"][newcomer]]["tags"].get("gameday:step") == "blackhole-use1a-d1"
    assert grown.steps[0].resources == 5
    assert (result.outcome, result.restored) == ("aborted", True)
    after = acl_snapshot()
    default_acl = next(a for a, v in before["acls"].items() if v["vpc"] == shop and not v["tags"])
    assert after["associations"][newcomer] == default_acl  # a new subnet's own ACL: the default
    del before["associations"][doomed]
    del after["associations"][newcomer]
    subnets = {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    assert doomed not in subnets
    after["associations"].pop(doomed, None)  # moto keeps a deleted subnet's association; EC2 does not
    assert after == before
