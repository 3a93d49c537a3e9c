"""AWS `stop_instances` against moto behind the lab's proxy (which shows EC2's power states in
between, `gameday.lab.aws.power`), driven through the registry's activities and real boto3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from activities.aws.power import TAG_SUSPENDED, GroupHold, PowerState, hold_key
from activities.registry import CloudActivities
from gameday.lab.aws.fleet import GROUP, INSTANCE_STORE_AMI, launch, power_snapshot, wait_for_state
from gameday.lab.faults import FaultRule
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, StepRequest
from gameday.sweep import SweepScope
from tests.support.gameday import ACCOUNT, runbook
from tests.support.servers import Servers

ZONE = "us-east-1a"
RUN = "power-test-run"
STEP = "power-use1a"


@pytest.fixture
def lab(servers: Servers, aws: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The seeded lab with the proxy's transitions at their default length again afterwards."""
    power = servers.aws_proxy.power
    stop, start = power.stop_seconds, power.start_seconds
    yield aws
    power.stop_seconds, power.start_seconds = stop, start


@pytest.fixture(scope="module")
def activities(servers: Servers) -> CloudActivities:
    made = CloudActivities("aws")
    made.by_name  # noqa: B018 - built once
    return made


def step(**target: Any) -> dict[str, Any]:
    return {"id": STEP, "action": "stop_instances", "duration": "1m",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "tags": {"gameday": "enabled"}, **target}}


def prepared(activities: CloudActivities, run_id: str = RUN, **target: Any) -> FaultRequest:
    book = runbook(step(**target))
    [fault_step] = book.fault_steps()
    resolved = activities.by_name["aws.resolve_stop_instances"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))
    checkpoint = activities.by_name["aws.prepare_stop_instances"](
        PrepareRequest(run_id=run_id, step=fault_step, resolved=resolved,
                       guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.apply_stop_instances"](request)


def restore(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.restore_stop_instances"](request)


def recorded_state(request: FaultRequest) -> PowerState:
    return PowerState.model_validate(request.checkpoint.state)


def states(snapshot: dict[str, Any], topology: dict[str, Any]) -> dict[str, str]:
    return {name: snapshot["instances"][i]["state"] for name, i in topology["instances"].items()}


def ec2() -> Any:
    return boto3.client("ec2", region_name="us-east-1")


def test_stops_the_zones_running_tagged_instances_and_restores_exactly(
        lab: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before = power_snapshot()
    request = prepared(activities)
    assert request.checkpoint.resources == 2
    servers.aws_faults()  # clears the call log
    result = apply(activities, request)
    assert (result.changed, result.unchanged) == (2, 0)
    during = power_snapshot()
    assert states(during, lab) == {
        "web-1a-0": "stopped", "web-1a-1": "stopped", "web-1a-2": "stopped", "ops-1a": "running",
        "web-1b-0": "running", "web-1b-1": "running", "web-1c-0": "running"}
    for name in ("web-1a-0", "web-1a-1"):
        tags = during["instances"][lab["instances"][name]]["tags"]
        assert (tags["gameday:run"], tags["gameday:step"]) == (RUN, STEP)
    group = during["groups"][GROUP]
    assert group["suspended"] == ["HealthCheck", "ReplaceUnhealthy"]
    assert group["tags"][TAG_SUSPENDED] == ("HealthCheck,ReplaceUnhealthy", False)
    assert group["tags"][hold_key(RUN, STEP)] == (RUN, False)
    stops = servers.aws_calls("StopInstances")
    assert len(stops) == 2  # the group's batch, then the instances in no group

    restored = restore(activities, request)
    assert restored.changed == 2
    assert power_snapshot() == before


def test_an_instance_pending_when_the_fault_arrives_is_waited_for_then_stopped(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    servers.aws_proxy.power.start_seconds = 3
    web = lab["instances"]["web-1a-1"]
    ec2().stop_instances(InstanceIds=[web])
    wait_for_state(ec2(), [web], "stopped")
    ec2().start_instances(InstanceIds=[web])
    request = prepared(activities)
    recorded = {i.id: i.state for i in recorded_state(request).instances}
    assert recorded == {lab["instances"]["web-1a-0"]: "running", web: "pending"}

    servers.aws_faults()
    result = apply(activities, request)
    assert result.changed == 2
    assert states(power_snapshot(), lab)["web-1a-1"] == "stopped"
    refused = [c for c in servers.aws_calls("StopInstances") if c["status"] != 200]
    assert not refused, "a pending instance was sent a stop"
    restore(activities, request)
    assert states(power_snapshot(), lab)["web-1a-1"] == "running"


def test_an_instance_stopping_or_stopped_before_the_run_stays_stopped(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    servers.aws_proxy.power.stop_seconds = 3
    web = lab["instances"]["web-1a-1"]
    ec2().stop_instances(InstanceIds=[web])  # someone else's stop, still under way
    request = prepared(activities)
    assert [i.id for i in recorded_state(request).instances] == [lab["instances"]["web-1a-0"]]
    apply(activities, request)
    wait_for_state(ec2(), [web], "stopped")
    restore(activities, request)
    after = states(power_snapshot(), lab)
    assert (after["web-1a-0"], after["web-1a-1"], after["web-1a-2"]) == ("running", "stopped",
                                                                          "stopped")


def test_apply_repeated_after_a_crash_changes_nothing_and_restore_repeated_is_safe(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    """The first apply dies right after its stops (its next read fails for good), with the
    instances still stopping; the repeat only waits, the restore waits for `stopped` to start."""
    servers.aws_proxy.power.stop_seconds = 3
    before = power_snapshot()
    request = prepared(activities)
    servers.aws_faults(FaultRule(match="DescribeInstances", after=2, count=1, status=403,
                                 code="UnauthorizedOperation"))
    with pytest.raises(Exception, match="UnauthorizedOperation"):
        apply(activities, request)
    assert len(servers.aws_calls("StopInstances")) == 2
    assert set(states(power_snapshot(), lab).values()) >= {"stopping"}

    servers.aws_faults()
    again = apply(activities, request)
    assert (again.changed, again.unchanged) == (0, 2)
    assert servers.aws_calls("StopInstances") == [] and servers.aws_calls("CreateTags") == []
    assert set(states(power_snapshot(), lab).values()) == {"running", "stopped"}

    servers.aws_faults()
    first = restore(activities, request)
    assert first.changed == 2
    assert all(c["status"] == 200 for c in servers.aws_calls("StartInstances"))
    servers.aws_faults()
    second = restore(activities, request)
    assert (second.changed, second.unchanged) == (0, 2)
    assert servers.aws_calls("StartInstances") == [] and servers.aws_calls("ResumeProcesses") == []
    assert power_snapshot() == before


def test_a_throttled_restore_finishes_exactly(lab: dict[str, Any], servers: Servers,
                                              activities: CloudActivities) -> None:
    before = power_snapshot()
    request = prepared(activities)
    apply(activities, request)
    throttle = {"status": 503, "code": "RequestLimitExceeded", "retry_after": 0}
    servers.aws_faults(FaultRule(match="StartInstances", count=2, **throttle),
                       FaultRule(match="ResumeProcesses", count=1, **throttle),
                       FaultRule(match="DeleteTags", rate=0.5, count=3, **throttle))
    restore(activities, request)
    assert len([c for c in servers.aws_calls("StartInstances") if c["injected"]]) == 2
    assert power_snapshot() == before


def test_only_the_processes_gameday_suspended_are_resumed(
        lab: dict[str, Any], activities: CloudActivities) -> None:
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    autoscaling.suspend_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["ReplaceUnhealthy"])
    before = power_snapshot()
    request = prepared(activities)
    assert recorded_state(request).groups == [GroupHold(
        name=GROUP, suspended_before=["ReplaceUnhealthy"], suspends=["HealthCheck"])]
    apply(activities, request)
    group = power_snapshot()["groups"][GROUP]
    assert group["suspended"] == ["HealthCheck", "ReplaceUnhealthy"]
    assert group["tags"][TAG_SUSPENDED] == ("HealthCheck", False)
    restore(activities, request)
    assert power_snapshot()["groups"][GROUP]["suspended"] == ["ReplaceUnhealthy"]
    assert power_snapshot() == before


def test_the_sweeper_undoes_a_terminated_runs_stop_from_the_tags_alone(
        lab: dict[str, Any], activities: CloudActivities) -> None:
    before = power_snapshot()
    apply(activities, prepared(activities, run_id="terminated-run"))  # its checkpoint is lost
    found = activities.find_leftovers(SweepScope(aws_regions=["us-east-1"]))
    kinds = sorted((f.kind, f.id) for f in found if f.run_id == "terminated-run")
    assert kinds == sorted([("auto-scaling-group", GROUP),
                            ("instance", lab["instances"]["web-1a-0"]),
                            ("instance", lab["instances"]["web-1a-1"])])
    group = next(f for f in found if f.kind == "auto-scaling-group")
    assert group.detail["suspended_by_gameday"] == "HealthCheck,ReplaceUnhealthy"
    # the group first: its sweep starts the step's instances before the group may heal again
    activities.sweep_leftover(group)
    assert states(power_snapshot(), lab)["web-1a-1"] == "running"
    for leftover in found:
        if leftover.kind == "instance":
            activities.sweep_leftover(leftover)
    assert activities.find_leftovers(SweepScope(aws_regions=["us-east-1"])) == []
    assert power_snapshot() == before


def test_an_instance_store_instance_is_refused_before_any_change(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    ephemeral = launch(ec2(), "web-1a-ephemeral", lab["subnets"][ZONE][0],
                       {"gameday": "enabled", "tier": "web"}, image=INSTANCE_STORE_AMI)
    before = power_snapshot()
    servers.aws_faults()
    with pytest.raises(Exception, match=f"{ephemeral} cannot be stopped"):
        prepared(activities)
    assert power_snapshot() == before
    assert not [c for c in servers.aws_calls() if c["key"] in (
        "CreateTags", "StopInstances", "SuspendProcesses", "CreateOrUpdateTags")]


def test_an_instance_without_room_for_gameday_tags_is_refused(
        lab: dict[str, Any], activities: CloudActivities) -> None:
    web = lab["instances"]["web-1a-1"]
    existing = len(power_snapshot()["instances"][web]["tags"])
    ec2().create_tags(Resources=[web], Tags=[{"Key": f"k{n}", "Value": "v"}
                                             for n in range(49 - existing)])
    with pytest.raises(Exception, match=f"instance {web} has 49 tags: no room"):
        prepared(activities)
    ec2().delete_tags(Resources=[web], Tags=[{"Key": f"k{n}"} for n in range(49 - existing)])


def test_a_restore_arriving_while_instances_are_still_stopping_waits_then_starts(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    servers.aws_proxy.power.stop_seconds = 3
    before = power_snapshot()
    request = prepared(activities)
    servers.aws_faults(FaultRule(match="DescribeInstances", after=2, count=1, status=403,
                                 code="UnauthorizedOperation"))
    with pytest.raises(Exception, match="UnauthorizedOperation"):
        apply(activities, request)  # the abort's restore comes at once
    assert "stopping" in states(power_snapshot(), lab).values()
    servers.aws_faults()
    assert restore(activities, request).changed == 2
    starts = servers.aws_calls("StartInstances")
    assert starts and all(c["status"] == 200 for c in starts), "a stopping instance was started"
    assert power_snapshot() == before


def test_the_shop_follows_the_power_of_its_web_instances(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    import time

    import httpx

    from gameday.lab.shop import start_shop

    def health(expect: int) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while True:
            answer = httpx.get(f"{url}/aws/us-east-1/health", timeout=5)
            if answer.status_code == expect or time.monotonic() > deadline:
                assert answer.status_code == expect, answer.json()
                return dict(answer.json())
            time.sleep(0.1)

    url, stop = start_shop(servers.env)
    requests: list[FaultRequest] = []
    try:
        assert health(200)["reason"] == "serving from us-east-1a, us-east-1b, us-east-1c"
        requests.append(prepared(activities))
        apply(activities, requests[-1])
        body = health(200)
        while body["zones"][ZONE]["serving"]:  # the cache may still hold the read before
            body = health(200)
        assert body["reason"] == "serving from us-east-1b, us-east-1c"
        for zone in ("us-east-1b", "us-east-1c"):
            book = runbook(step(zone=zone) | {"id": f"power-{zone}"})
            [fault_step] = book.fault_steps()
            resolved = activities.by_name["aws.resolve_stop_instances"](
                StepRequest(run_id=RUN, step=fault_step, guardrails=book.guardrails))
            checkpoint = activities.by_name["aws.prepare_stop_instances"](PrepareRequest(
                run_id=RUN, step=fault_step, resolved=resolved, guardrails=book.guardrails))
            requests.append(FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails))
            apply(activities, requests[-1])
        assert health(503)["reason"] == ("no running web-tier instance in a reachable web-tier "
                                         "subnet of shop in us-east-1 (zones us-east-1a, "
                                         "us-east-1b, us-east-1c)")
        for request in reversed(requests):
            restore(activities, request)
        assert health(200)["reason"] == "serving from us-east-1a, us-east-1b, us-east-1c"
    finally:
        stop()


def test_a_group_spanning_zones_heals_again_only_when_its_last_hold_is_released(
        lab: dict[str, Any], activities: CloudActivities) -> None:
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    autoscaling.suspend_processes(AutoScalingGroupName=GROUP, ScalingProcesses=["AZRebalance"])
    before = power_snapshot()
    zone_a = prepared(activities)
    apply(activities, zone_a)
    zone_b = prepared(activities, run_id="another-run", zone="us-east-1b")
    assert recorded_state(zone_b).groups == [GroupHold(  # zone a's suspension is not the group's
        name=GROUP, suspended_before=[], suspends=["HealthCheck", "ReplaceUnhealthy"])]
    apply(activities, zone_b)
    group = power_snapshot()["groups"][GROUP]
    assert group["suspended"] == ["AZRebalance", "HealthCheck", "ReplaceUnhealthy"]
    assert {k for k in group["tags"] if k.startswith("gameday:hold:")} == {
        hold_key(RUN, STEP), hold_key("another-run", STEP)}
    restore(activities, zone_a)
    assert power_snapshot()["groups"][GROUP]["suspended"] == [
        "AZRebalance", "HealthCheck", "ReplaceUnhealthy"], "zone b's stopped instance may be replaced"
    restore(activities, zone_b)
    assert power_snapshot() == before


def test_an_instance_with_stop_protection_is_refused_before_any_change(
        lab: dict[str, Any], servers: Servers, activities: CloudActivities) -> None:
    made = ec2().run_instances(
        ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1,
        SubnetId=lab["subnets"][ZONE][0], DisableApiStop=True, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "gameday", "Value": "enabled"}]}])
    protected = made["Instances"][0]["InstanceId"]
    before = power_snapshot()
    servers.aws_faults()
    with pytest.raises(Exception, match=f"{protected} cannot be stopped \\(stop protection"):
        prepared(activities)
    assert power_snapshot() == before
    assert not [c for c in servers.aws_calls() if c["key"] in ("CreateTags", "StopInstances")]
