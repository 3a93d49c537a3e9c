"""AWS `partition_regions` against moto behind the lab's proxy, driven through the registry's
activities and real boto3 (the scenario suite covers abort, cancel, throttling, SIGKILL...)."""

from __future__ import annotations

import random
from typing import Any

import boto3
import pytest
from temporalio.exceptions import ApplicationError

from activities.aws.partition import MAIN, TAG_SOURCE, PartitionState
from activities.aws.sweep import AwsSweeper
from activities.registry import CloudActivities
from gameday.lab.aws.peering import OTHER_TGW_CIDR, PEER_CIDR, TGW_CIDR, route_snapshot
from gameday.lab.shop.reading import ShopConfig
from gameday.lab.shop.server import Shop
from gameday.lab.snapshot import aws_view
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, StepRequest
from gameday.sweep import SweepScope
from tests.support.gameday import ACCOUNT, runbook
from tests.support.servers import Servers

RUN = "partition-test-run"
STEP = "partition-use1"
MUTATIONS = ("CreateRouteTable", "CreateRoute", "ReplaceRouteTableAssociation",
             "AssociateRouteTable", "DisassociateRouteTable", "DeleteRouteTable", "CreateTags")


@pytest.fixture(scope="module")
def activities(servers: Servers) -> CloudActivities:
    return CloudActivities("aws")


def step(peers: list[str], vpc_ids: list[str] | None = None,
         step_id: str = STEP) -> dict[str, Any]:
    target: dict[str, Any] = {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                              "peer_regions": peers}
    if vpc_ids:
        target["vpc_ids"] = vpc_ids
    return {"id": step_id, "action": "partition_regions", "duration": "1m", "target": target}


def resolve(activities: CloudActivities, peers: list[str], vpc_ids: list[str] | None = None,
            run_id: str = RUN) -> Any:
    book = runbook(step(peers, vpc_ids))
    [fault_step] = book.fault_steps()
    return activities.by_name["aws.resolve_partition_regions"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))


def prepared(activities: CloudActivities, peers: list[str], vpc_ids: list[str] | None = None,
             run_id: str = RUN) -> FaultRequest:
    book = runbook(step(peers, vpc_ids))
    [fault_step] = book.fault_steps()
    resolved = resolve(activities, peers, vpc_ids, run_id)
    checkpoint = activities.by_name["aws.prepare_partition_regions"](
        PrepareRequest(run_id=run_id, step=fault_step, resolved=resolved,
                       guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.apply_partition_regions"](request)


def restore(activities: CloudActivities, request: FaultRequest) -> FaultResult:
    return activities.by_name["aws.restore_partition_regions"](request)


def mutations(servers: Servers) -> list[str]:
    return [c["key"] for c in servers.aws_calls() if c["key"] in MUTATIONS]


def destinations(table: dict[str, Any]) -> set[str]:
    return {dict(r).get("DestinationCidrBlock", "") for r in table["routes"]}


def test_cuts_peer_routes_keeps_the_rest_and_restores_exactly(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before, view = route_snapshot(), aws_view()
    tables = aws["peering"]["route_tables"]
    web, app, ops = ([aws["subnets"][z][i] for z in sorted(aws["subnets"])] for i in (0, 1, 2))
    resolved = resolve(activities, ["us-west-2"])
    assert {r.id for r in resolved.resources} == {*web, *app, *ops}  # batch: nothing to cut
    assert {r.id: r.detail["route_table"] for r in resolved.resources} == {
        **dict.fromkeys(web, tables["shop-web"]), **dict.fromkeys(app, tables["shop-app"]),
        **dict.fromkeys(ops, tables["shop-main"])}
    assert {r.detail["association"] for r in resolved.resources if r.id in ops} == {MAIN}

    request = prepared(activities, ["us-west-2"])
    state = PartitionState.model_validate(request.checkpoint.state)
    assert sorted(c.source for c in state.copies) == sorted(tables.values())
    servers.aws_faults()
    assert apply(activities, request).changed == 9
    during = route_snapshot()
    copies = {t["tags"][TAG_SOURCE]: t for t in during["tables"].values()
              if t["tags"].get("gameday:run") == RUN}
    assert set(copies) == set(tables.values())
    assert destinations(copies[tables["shop-web"]]) == {"10.0.0.0/16", "0.0.0.0/0"}
    assert destinations(copies[tables["shop-app"]]) == {"10.0.0.0/16", OTHER_TGW_CIDR,
                                                        "10.1.0.0/16"}
    assert destinations(copies[tables["shop-main"]]) == {"10.0.0.0/16"}
    for subnet in (*web, *app, *ops):
        assert during["associations"][subnet] in {t for t, v in during["tables"].items()
                                                  if v["tags"].get("gameday:run") == RUN}
    assert {k: v for k, v in during["tables"].items() if k in before["tables"]} == before["tables"]

    shown = aws_view()  # the demo's before/after view shows each subnet moved
    assert {k for k in shown if shown[k] != view.get(k)} >= {
        f"aws subnet shop-{tier}-{zone}-{i} route table" for zone in sorted(aws["subnets"])
        for i, tier in enumerate(("web", "app", "ops"))}
    servers.aws_faults()
    again = apply(activities, request)
    assert (again.changed, again.unchanged, mutations(servers)) == (0, 9, [])

    assert restore(activities, request).changed == 9
    assert route_snapshot() == before and aws_view() == view
    assert {c["key"] for c in servers.aws_calls() if c["key"] in MUTATIONS} >= {
        "DisassociateRouteTable", "ReplaceRouteTableAssociation", "DeleteRouteTable"}
    servers.aws_faults()
    assert restore(activities, request).changed == 0 and mutations(servers) == []
    assert route_snapshot() == before


def test_a_half_done_apply_restores_from_the_checkpoint_alone(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before = route_snapshot()
    request = prepared(activities, ["us-west-2"])
    from gameday.lab.faults import FaultRule

    servers.aws_faults(FaultRule(match="ReplaceRouteTableAssociation", status=400,
                                 code="InvalidParameterValue", after=2))
    with pytest.raises(ApplicationError):
        apply(activities, request)
    half = route_snapshot()
    moved = [s for s, t in half["associations"].items()
             if half["tables"][t]["tags"].get("gameday:run") == RUN]
    assert 2 <= len(moved) < 9  # the copies exist, some subnets moved, not all
    servers.aws_faults()
    fresh = FaultRequest.model_validate_json(request.model_dump_json())
    restore(activities, fresh)
    assert route_snapshot() == before


def test_nothing_to_cut_is_refused_in_one_sentence_before_any_change(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before = route_snapshot()
    servers.aws_faults()
    with pytest.raises(ApplicationError, match="no route table of .* routes to eu-west-1 over a VPC "
                                        "peering connection or a peered transit gateway"):
        resolve(activities, ["eu-west-1"])
    with pytest.raises(ApplicationError, match="nothing to cut"):
        resolve(activities, ["us-west-2"], [aws["vpcs"]["batch"]])
    assert mutations(servers) == [] and route_snapshot() == before


def test_a_table_a_copy_cannot_reproduce_is_refused_before_any_change(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    web = aws["peering"]["route_tables"]["shop-web"]
    endpoint = ec2.create_vpc_endpoint(
        VpcId=aws["vpcs"]["shop"], ServiceName="com.amazonaws.us-east-1.s3",
        VpcEndpointType="Gateway", RouteTableIds=[web])["VpcEndpoint"]["VpcEndpointId"]
    before = route_snapshot()
    servers.aws_faults()
    with pytest.raises(ApplicationError) as refused:
        prepared(activities, ["us-west-2"])
    assert refused.value.non_retryable
    assert f"route table {web} has routes of gateway endpoint {endpoint}, which " \
           "partition_regions does not copy" in str(refused.value)
    assert mutations(servers) == [] and route_snapshot() == before


def test_a_subnet_another_run_holds_is_refused_and_nothing_changes(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    stale = resolve(activities, ["us-west-2"])
    other = prepared(activities, ["us-west-2"], run_id="other-run")
    apply(activities, other)
    during = route_snapshot()
    servers.aws_faults()
    for attempt in (lambda: resolve(activities, ["us-west-2"]),
                    lambda: prepare_resolved(activities, stale)):
        with pytest.raises(ApplicationError) as refused:
            attempt()
        assert refused.value.non_retryable
        assert "is already partitioned by gameday run other-run" in str(refused.value)
    assert mutations(servers) == [] and route_snapshot() == during
    restore(activities, other)


def prepare_resolved(activities: CloudActivities, resolved: Any) -> Any:
    book = runbook(step(["us-west-2"]))
    [fault_step] = book.fault_steps()
    return activities.by_name["aws.prepare_partition_regions"](
        PrepareRequest(run_id=RUN, step=fault_step, resolved=resolved,
                       guardrails=book.guardrails))


def test_the_sweeper_undoes_a_leftover_from_its_tags_alone(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    before = route_snapshot()
    apply(activities, prepared(activities, ["us-west-2"]))
    sweeper = AwsSweeper()
    found = [x for x in sweeper.find(SweepScope(aws_regions=["us-east-1"]))
             if x.kind == "route-table"]
    assert len(found) == 3 and {x.run_id for x in found} == {RUN}
    for leftover in found:
        sweeper.sweep(leftover)
    assert route_snapshot() == before
    assert [x for x in sweeper.find(SweepScope(aws_regions=["us-east-1"]))
            if x.kind == "route-table"] == []


def test_the_shop_reaches_its_peer_region_until_the_partition(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    shop = Shop(servers.env, ShopConfig(), answer_within=5)
    assert shop.health("aws", "us-east-1/peers")["serving"] is True
    request = prepared(activities, ["us-west-2"])
    apply(activities, request)
    shop = Shop(servers.env, ShopConfig(), answer_within=5)
    cut = shop.health("aws", "us-east-1/peers")
    assert cut["serving"] is False and "us-west-2" in cut["reason"] and RUN in cut["reason"]
    assert shop.health("aws", "us-east-1")["serving"] is True
    restore(activities, request)
    shop = Shop(servers.env, ShopConfig(), answer_within=5)
    assert shop.health("aws", "us-east-1/peers")["serving"] is True


def test_random_topologies_restore_exactly(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    """A seeded generator adds tables shared by random subnets, some with a peer route, some
    without, and moves some subnets back to the main table: the restore is exact each time."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    shop = aws["vpcs"]["shop"]
    peering = aws["peering"]["peering"]
    subnets = [s for z in sorted(aws["subnets"]) for s in aws["subnets"][z][:3]]
    for seed in range(3):
        rng = random.Random(seed)
        for _ in range(rng.randint(1, 3)):
            table = ec2.create_route_table(VpcId=shop)["RouteTable"]["RouteTableId"]
            if rng.random() < 0.7:
                ec2.create_route(RouteTableId=table, DestinationCidrBlock=PEER_CIDR,
                                 VpcPeeringConnectionId=peering)
            if rng.random() < 0.5:
                ec2.create_route(RouteTableId=table, DestinationCidrBlock=TGW_CIDR,
                                 TransitGatewayId=aws["peering"]["transit_gateway"])
            for subnet in rng.sample(subnets, rng.randint(1, 3)):
                associations = ec2.describe_route_tables(Filters=[
                    {"Name": "association.subnet-id", "Values": [subnet]}])["RouteTables"]
                held = [a["RouteTableAssociationId"] for t in associations
                        for a in t["Associations"] if a.get("SubnetId") == subnet]
                if held and rng.random() < 0.3:
                    ec2.disassociate_route_table(AssociationId=held[0])
                elif held:
                    ec2.replace_route_table_association(AssociationId=held[0],
                                                        RouteTableId=table)
                else:
                    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
        before = route_snapshot()
        request = prepared(activities, ["us-west-2"], run_id=f"random-{seed}")
        apply(activities, request)
        apply(activities, request)
        during = route_snapshot()
        for copy in (t for t in during["tables"].values() if t["tags"].get("gameday:run")):
            assert not destinations(copy) & {PEER_CIDR, TGW_CIDR}
        restore(activities, request)
        assert route_snapshot() == before


def test_a_table_of_many_subnets_gets_several_copies_within_the_tag_limit(
        aws: dict[str, Any], activities: CloudActivities, servers: Servers) -> None:
    """EC2 allows 50 tags per resource: 41 subnets on one table make two copies (40 + 1)."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    web = aws["peering"]["route_tables"]["shop-web"]
    for index in range(38):
        subnet = ec2.create_subnet(VpcId=aws["vpcs"]["shop"], CidrBlock=f"10.0.{100 + index}.0/24",
                                   AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
        ec2.associate_route_table(RouteTableId=web, SubnetId=subnet)
    before = route_snapshot()
    request = prepared(activities, ["us-west-2"])
    copies = PartitionState.model_validate(request.checkpoint.state).copies
    assert sorted((c.chunk, len(c.subnets)) for c in copies if c.source == web) == [(0, 40), (1, 1)]
    apply(activities, request)
    during = route_snapshot()
    ours = [t for t in during["tables"].values() if t["tags"].get(TAG_SOURCE) == web]
    assert len(ours) == 2 and all(len(t["tags"]) <= 50 for t in ours)
    restore(activities, request)
    assert route_snapshot() == before
