"""AWS `evacuate_zone` through ARC zonal shift, served by the lab's AWS proxy, driven through the
registry's activities and the real boto3 client (the scenario suite covers abort, cancel,
throttling, SIGKILL...)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.aws.zonal_shift import MARGIN, MAX_EXPIRY, expires_in
from activities.registry import CloudActivities
from gameday.errors import Refused
from gameday.lab.aws.zonal_shift import zonal_shift_snapshot
from gameday.lab.faults import FaultRule
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from gameday.sweep import SweepScope
from tests.support.gameday import ACCOUNT, runbook
from tests.support.servers import Servers

ZONE = "us-east-1a"
RUN = "zonal-shift-test-run"
STEP = "shift-use1a"


@pytest.fixture(scope="module")
def activities(servers: Servers) -> CloudActivities:
    return CloudActivities("aws")


def step(resources: list[str], duration: str = "1m") -> dict[str, Any]:
    return {"id": STEP, "action": "evacuate_zone", "duration": duration,
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "resources": resources}}


def resolved(activities: CloudActivities, resources: list[str],
             run_id: str = RUN) -> tuple[Any, ResolvedStep]:
    book = runbook(step(resources))
    [fault_step] = book.fault_steps()
    return book, activities.by_name["aws.resolve_evacuate_zone"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))


def prepared(activities: CloudActivities, resources: list[str], run_id: str = RUN) -> FaultRequest:
    book, plan = resolved(activities, resources, run_id)
    [fault_step] = book.fault_steps()
    checkpoint = activities.by_name["aws.prepare_evacuate_zone"](
        PrepareRequest(run_id=run_id, step=fault_step, resolved=plan, guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.apply_evacuate_zone"](request)


def restore(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.restore_evacuate_zone"](request)


def starts(servers: Servers) -> list[dict[str, Any]]:
    return [c for c in servers.aws_calls() if c["key"].startswith(("POST /zonalshifts",
                                                                  "DELETE /zonalshifts"))]


def zone_id() -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    return str(ec2.describe_availability_zones(ZoneNames=[ZONE])["AvailabilityZones"][0]["ZoneId"])


def test_shifts_each_load_balancer_off_the_zone_and_restores_exactly(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    arns = sorted(aws["load_balancers"].values())
    before = zonal_shift_snapshot()
    _, plan = resolved(activities, arns)
    assert [(r.id, r.detail["away_from"]) for r in plan.resources] == [(a, zone_id()) for a in arns]
    request = prepared(activities, arns)
    assert (apply(activities, request).changed, apply(activities, request).changed) == (2, 0)
    during = zonal_shift_snapshot()
    assert during == [(a, zone_id(), f"gameday {RUN} {STEP}") for a in arns]
    arc = boto3.client("arc-zonal-shift", region_name="us-east-1")
    [shift, _] = arc.list_zonal_shifts(status="ACTIVE")["items"]
    lasts = shift["expiryTime"] - shift["startTime"]
    assert timedelta(minutes=1) + MARGIN <= lasts <= timedelta(minutes=1) + MARGIN + \
        timedelta(seconds=5)
    assert restore(activities, request).changed == 2
    assert zonal_shift_snapshot() == before
    servers.aws_faults()
    assert restore(activities, request).unchanged == 2  # repeated: nothing more
    assert starts(servers) == []


def test_a_half_done_apply_is_restored_from_the_checkpoint_alone_and_an_expiry_counts(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    arns = sorted(aws["load_balancers"].values())
    request = prepared(activities, arns)
    servers.aws_faults(FaultRule(match="POST /zonalshifts", after=1, count=1, status=403,
                                 code="AccessDeniedException"))
    with pytest.raises(Exception, match="StartZonalShift"):
        apply(activities, request)
    assert len(zonal_shift_snapshot()) == 1
    fresh = CloudActivities("aws")  # another worker: nothing but the checkpoint
    again = FaultRequest.model_validate_json(request.model_dump_json())
    assert restore(fresh, again).changed == 1
    assert zonal_shift_snapshot() == []
    apply(activities, request)
    servers.aws_proxy.zonal_shift.expire_all()  # AWS ended the shifts itself
    assert restore(activities, request).unchanged == 2
    assert zonal_shift_snapshot() == []


def test_refusals_are_one_sentence_before_any_change(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    web, api = aws["load_balancers"]["shop-web"], aws["load_balancers"]["shop-api"]
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    elsewhere = elbv2.create_load_balancer(
        Name="batch-lb", Type="network",
        Subnets=[aws["subnets"]["us-east-1b"][0], aws["subnets"]["us-east-1c"][0]],
    )["LoadBalancers"][0]["LoadBalancerArn"]
    arc = boto3.client("arc-zonal-shift", region_name="us-east-1")
    human = arc.start_zonal_shift(resourceIdentifier=api, awayFrom=zone_id(), expiresIn="1h",
                                  comment="on-call drill")
    before = zonal_shift_snapshot()
    servers.aws_faults()
    missing = web.replace("shop-web", "nowhere")
    with pytest.raises(Exception, match=f"{missing} is not registered with ARC zonal shift"):
        prepared(activities, [web, missing])
    with pytest.raises(Exception, match=f"{elsewhere} is not in zone {ZONE}"):
        prepared(activities, [web, elsewhere])
    with pytest.raises(Exception, match=f"{api} already has an active zonal shift "
                                        f"\\({human['zonalShiftId']}"):
        prepared(activities, [web, api])
    with pytest.raises(Refused, match="a zonal shift lasts at most 3 days"):
        expires_in(timedelta(days=3), STEP)
    assert starts(servers) == []
    assert zonal_shift_snapshot() == before


def test_the_sweeper_cancels_a_terminated_runs_shifts_from_their_comment(
        aws: dict[str, Any], activities: CloudActivities) -> None:
    arns = sorted(aws["load_balancers"].values())
    apply(activities, prepared(activities, arns, run_id="terminated-run"))
    found = [f for f in activities.find_leftovers(SweepScope(aws_regions=["us-east-1"]))
             if f.kind == "zonal-shift"]
    assert sorted((f.detail["resource"], f.run_id, f.step_id) for f in found) == [
        (a, "terminated-run", STEP) for a in arns]
    for leftover in found:
        activities.sweep_leftover(leftover)
    assert [f for f in activities.find_leftovers(SweepScope(aws_regions=["us-east-1"]))
            if f.kind == "zonal-shift"] == []
    assert zonal_shift_snapshot() == []


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1, max_value=int((MAX_EXPIRY - MARGIN).total_seconds())))
def test_the_expiry_covers_the_step_and_its_margin_by_under_a_minute(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    minutes = int(expires_in(duration, STEP).removesuffix("m"))
    assert duration + MARGIN <= timedelta(minutes=minutes) < duration + MARGIN + timedelta(minutes=1)
    assert minutes <= MAX_EXPIRY.total_seconds() / 60


def test_the_shop_sends_a_shifted_zone_nothing_and_serves_from_the_others(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    from gameday.lab.shop.reading import ShopConfig
    from gameday.lab.shop.server import Shop

    before = Shop(servers.env, ShopConfig(), answer_within=5).health("aws", "us-east-1")
    assert before["serving"] and before["zones"][ZONE]["serving"], before
    request = prepared(activities, [aws["load_balancers"]["shop-web"]])
    apply(activities, request)
    shifted = Shop(servers.env, ShopConfig(), answer_within=5).health("aws", "us-east-1")
    assert shifted["serving"] is True, shifted
    assert not shifted["zones"][ZONE]["serving"] and "zonal shift" in shifted["zones"][ZONE]["shifted"]
    assert ZONE not in shifted["reason"] and shifted["reason"].startswith("serving from")
    restore(activities, request)
    after = Shop(servers.env, ShopConfig(), answer_within=5).health("aws", "us-east-1")
    assert after["zones"][ZONE]["serving"] and "shifted" not in after["zones"][ZONE], after
