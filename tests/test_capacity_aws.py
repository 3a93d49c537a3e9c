"""AWS `deny_capacity` against moto behind the lab's proxy, driven through the registry's
activities and real boto3 (the scenario suite covers abort, cancel, throttling, SIGKILL...)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from activities.aws.capacity import (
    TAG_RESUMES,
    CapacityState,
    DeniedGroup,
    recorded_subnets,
    subnet_tags,
)
from activities.registry import CloudActivities
from gameday.lab.aws.fleet import GROUP, power_snapshot
from gameday.lab.aws.groups import capacity_snapshot
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, StepRequest
from gameday.sweep import SweepScope
from tests.support.gameday import (
    ACCOUNT,
    approve,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from tests.support.servers import Servers

ZONE = "us-east-1a"
RUN = "capacity-test-run"
STEP = "capacity-use1a"
MUTATIONS = ("UpdateAutoScalingGroup", "SuspendProcesses", "ResumeProcesses",
             "CreateOrUpdateTags", "DeleteTags")


@pytest.fixture(scope="module")
def activities(servers: Servers) -> CloudActivities:
    return CloudActivities("aws")


def step(groups: list[str], step_id: str = STEP) -> dict[str, Any]:
    return {"id": step_id, "action": "deny_capacity", "duration": "1m",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "auto_scaling_groups": groups}}


def prepared(activities: CloudActivities, groups: list[str], run_id: str = RUN) -> FaultRequest:
    book = runbook(step(groups))
    [fault_step] = book.fault_steps()
    resolved = activities.by_name["aws.resolve_deny_capacity"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))
    checkpoint = activities.by_name["aws.prepare_deny_capacity"](
        PrepareRequest(run_id=run_id, step=fault_step, resolved=resolved,
                       guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.apply_deny_capacity"](request)


def restore(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.restore_deny_capacity"](request)


def mutations(servers: Servers) -> list[str]:
    return [c["key"] for c in servers.aws_calls() if c["key"] in MUTATIONS]


def test_narrows_each_group_keeps_order_and_suspensions_and_restores_exactly(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before = capacity_snapshot()
    a, b, c = (aws["subnets"][z][1] for z in ("us-east-1a", "us-east-1b", "us-east-1c"))
    assert before["shop-app"]["subnets"] == f"{c},{a},{b}"
    request = prepared(activities, ["shop-web", "shop-app", "shop-jobs"])
    state = CapacityState.model_validate(request.checkpoint.state)
    assert [(g.name, g.removed, g.rebalance_suspended) for g in state.groups] == [
        ("shop-web", [aws["subnets"][ZONE][0]], False), ("shop-app", [a], True)]  # jobs left out

    servers.aws_faults()
    assert (apply(activities, request).changed, mutations(servers).count("SuspendProcesses")) == (2, 1)
    during = capacity_snapshot()
    assert during["shop-app"]["subnets"] == f"{c},{b}"
    assert during["shop-app"]["suspended"] == ["AZRebalance"]
    assert TAG_RESUMES not in during["shop-app"]["tags"]
    web = during["shop-web"]
    assert web["subnets"] == ",".join(aws["subnets"][z][0] for z in ("us-east-1b", "us-east-1c"))
    assert (web["suspended"], web["zones"]) == (["AZRebalance"], ["us-east-1b", "us-east-1c"])
    assert (web["tags"]["gameday:run"], web["tags"]["gameday:step"]) == ((RUN, False), (STEP, False))
    assert (during["shop-jobs"], during["batch-1a"]) == (before["shop-jobs"], before["batch-1a"])

    servers.aws_faults()
    again = apply(activities, request)
    assert (again.changed, again.unchanged, mutations(servers)) == (0, 2, [])

    assert restore(activities, request).changed == 2
    assert capacity_snapshot() == before  # shop-app: c,a,b again, AZRebalance still suspended
    servers.aws_faults()
    assert restore(activities, request).unchanged == 2 and mutations(servers) == []
    assert capacity_snapshot() == before


def test_a_group_that_would_have_no_subnet_left_is_refused_before_any_change(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before = capacity_snapshot()
    servers.aws_faults()
    with pytest.raises(Exception, match="Auto Scaling group batch-1a would have no subnet left"):
        prepared(activities, ["shop-web", "batch-1a"])
    with pytest.raises(Exception, match="group\\(s\\) nowhere do not exist in us-east-1"):
        prepared(activities, ["shop-web", "nowhere"])
    assert mutations(servers) == []
    assert capacity_snapshot() == before


def test_the_sweeper_restores_a_terminated_runs_groups_from_the_tags_alone(
        aws: dict[str, Any], activities: CloudActivities) -> None:
    before = capacity_snapshot()
    apply(activities, prepared(activities, ["shop-app", "shop-web"], run_id="terminated-run"))
    found = [f for f in activities.find_leftovers(SweepScope(aws_regions=["us-east-1"]))
             if f.kind == "capacity-denial"]
    assert sorted((f.id, f.run_id, f.step_id) for f in found) == [
        ("shop-app", "terminated-run", STEP), ("shop-web", "terminated-run", STEP)]
    assert {f.id: f.detail["subnets"] for f in found} == {
        name: before[name]["subnets"] for name in ("shop-app", "shop-web")}
    for leftover in found:
        activities.sweep_leftover(leftover)
    assert activities.find_leftovers(SweepScope(aws_regions=["us-east-1"])) == []
    assert capacity_snapshot() == before


def test_a_group_deleted_meanwhile_is_said_so_and_does_not_block_the_restore(
        aws: dict[str, Any], activities: CloudActivities) -> None:
    request = prepared(activities, ["shop-web", "shop-app"])
    apply(activities, request)
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName="shop-app", ForceDelete=True)
    result = restore(activities, request)
    assert result.changed == 1
    assert result.notes == ["Auto Scaling group shop-app no longer exists; nothing to restore"]
    assert capacity_snapshot()["shop-web"]["subnets"] == ",".join(
        aws["subnets"][z][0] for z in ("us-east-1a", "us-east-1b", "us-east-1c"))


def test_a_group_without_room_for_gameday_tags_is_refused(
        aws: dict[str, Any], activities: CloudActivities) -> None:
    """moto does not enforce Auto Scaling's 50 tags per group; gameday does, before any change."""
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    autoscaling.create_or_update_tags(Tags=[  # shop-web has `tier`: 47 tags, gameday needs 4
        {"ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": f"k{n}", "Value": "v",
         "PropagateAtLaunch": False} for n in range(46)])
    before = capacity_snapshot()
    with pytest.raises(Exception, match="shop-web has 47 tags: no room for gameday's 4"):
        prepared(activities, [GROUP])
    assert capacity_snapshot() == before


def test_the_restore_record_fits_auto_scaling_tag_limits() -> None:
    many = [f"subnet-{n:017x}" for n in range(40)]
    tags = subnet_tags(many)
    assert len(tags) == 4 and all(len(v) <= 256 for v in tags.values())
    assert recorded_subnets(tags) == many
    group = DeniedGroup(name="g", subnets=many, removed=many[:1], rebalance_suspended=False)
    assert group.remaining == many[1:]


def test_a_power_step_and_a_capacity_step_over_one_group_restore_exactly(
        aws: dict[str, Any], client: Any, runner: Any, task_queue: str) -> None:
    """In parallel in one run: each fault restores only its own part of `shop-web` (the capacity
    step ends first, while the power step still holds the group's healing)."""
    power_before, capacity_before = power_snapshot(), capacity_snapshot()
    power = {"id": "power-use1a", "action": "stop_instances", "duration": "5s",
             "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                        "tags": {"gameday": "enabled"}}}
    capacity = step([GROUP]) | {"duration": "2s"}

    async def scenario() -> Any:
        handle = await start(client, runbook({"parallel": [power, capacity]}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        await wait_for(handle, lambda s: step_state("power-use1a", "active")(s)
                       and step_state(STEP, "active")(s), what="both faults active")
        both = capacity_snapshot()[GROUP]
        await wait_for(handle, step_state(STEP, "restored"), what="the capacity step restored")
        power_alone = capacity_snapshot()[GROUP]
        held = await handle.query("status")
        return both, power_alone, held, await handle.result()

    both, power_alone, held, result = runner.run(scenario(), timeout=120)
    assert both["suspended"] == ["AZRebalance", "HealthCheck", "ReplaceUnhealthy"]
    assert aws["subnets"][ZONE][0] not in both["subnets"]
    assert "power-use1a" in held["active_faults"]
    assert power_alone["suspended"] == ["HealthCheck", "ReplaceUnhealthy"]
    assert power_alone["subnets"] == capacity_before[GROUP]["subnets"]
    assert (result.outcome, result.restored) == ("completed", True)
    assert power_snapshot() == power_before
    assert capacity_snapshot() == capacity_before


def test_the_shop_follows_the_writer_of_orders(aws: dict[str, Any], servers: Servers) -> None:
    """Issue 15: the AWS region serves while its database writer is reachable; a failover is a
    short outage (the proxy shows `failing-over`), then recovery; a writer whose zone's database
    subnets are cut takes the region down."""
    import time

    import httpx

    from gameday.lab.aws.databases import seed_databases
    from gameday.lab.shop import start_shop

    seed_databases()

    def health(expect: int) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            answer = httpx.get(f"{url}/aws/us-east-1/health", timeout=5)
            if answer.status_code == expect or time.monotonic() > deadline:
                assert answer.status_code == expect, answer.json()
                return dict(answer.json())
            time.sleep(0.1)

    rds, ec2 = (boto3.client(s, region_name="us-east-1") for s in ("rds", "ec2"))
    servers.aws_proxy.failover.seconds = 1.5
    url, stop = start_shop(servers.env)
    try:
        body = health(200)
        assert (body["database"]["writer"], body["database"]["reachable"]) == ("orders-1", True)
        rds.failover_db_cluster(DBClusterIdentifier="orders", TargetDBInstanceIdentifier="orders-2")
        assert health(503)["reason"] == ("the writer of DB cluster orders (orders-2, us-east-1b) "
                                         "is not available: the cluster is failing-over")
        assert health(200)["database"]["zone"] == "us-east-1b"
        [db_b] = ec2.describe_subnets(Filters=[
            {"Name": "tag:Name", "Values": ["shop-db-us-east-1b"]}])["Subnets"]
        deny = ec2.create_network_acl(VpcId=aws["vpcs"]["shop"])["NetworkAcl"]["NetworkAclId"]
        [association] = [a for acl in ec2.describe_network_acls()["NetworkAcls"]
                         for a in acl["Associations"] if a["SubnetId"] == db_b["SubnetId"]]
        ec2.replace_network_acl_association(
            AssociationId=association["NetworkAclAssociationId"], NetworkAclId=deny)
        assert health(503)["reason"] == (
            "the writer of DB cluster orders (orders-2, us-east-1b) is unreachable: every db-tier "
            "subnet of us-east-1b is on a deny-all network ACL")
    finally:
        stop()
        servers.aws_proxy.failover.seconds = 0.0
