"""Azure `partition_regions`: deny rules on the region's subnet NSGs against the peer regions'
address spaces, through the registry's activities against the ARM emulator (the scenario suite
runs the workflow through `tests.support.partition_azure.AzurePartitionLab`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from activities.throttle import BUCKETS
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from tests.support.gameday import runbook
from tests.support.partition_azure import AzurePartitionLab
from tests.support.servers import Servers

RUN = "test-run-partition"
RG = AzurePartitionLab.resource_group
STEP_ID = "partition-eastus"


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzurePartitionLab]:
    seeded = AzurePartitionLab(servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    servers.azure_faults()


@pytest.fixture
def azure() -> CloudActivities:
    return CloudActivities("azure")


def step(peers: list[str] | None = None) -> dict[str, Any]:
    return {"id": STEP_ID, "action": "partition_regions", "duration": "5m",
            "target": {"cloud": "azure", "subscription": AzurePartitionLab.subscription,
                       "resource_group": RG, "region": "eastus",
                       "peer_regions": peers or ["westus"]}}


def resolve(azure: CloudActivities, peers: list[str] | None = None,
            run_id: str = RUN) -> ResolvedStep:
    book = runbook(step(peers))
    [fault_step] = book.fault_steps()
    return azure.by_name["azure.resolve_partition_regions"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))


def prepare(azure: CloudActivities, peers: list[str] | None = None,
            run_id: str = RUN) -> FaultRequest:
    book = runbook(step(peers))
    [fault_step] = book.fault_steps()
    checkpoint = azure.by_name["azure.prepare_partition_regions"](PrepareRequest(
        run_id=run_id, step=fault_step, resolved=resolve(azure, peers, run_id),
        guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.apply_partition_regions"](request)


def restore(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.restore_partition_regions"](request)


def test_partition_denies_the_peer_and_restores_every_rule_exactly(
        lab: AzurePartitionLab, azure: CloudActivities) -> None:
    """Both NSGs planned (edge-nsg once for its two subnets); apply and restore repeated change
    nothing more; the snapshot after restore equals the one before."""
    before = lab.snapshot()
    resolved = resolve(azure)
    assert sorted(r.name for r in resolved.resources) == ["app-nsg", "edge-nsg"]
    edge = next(r for r in resolved.resources if r.name == "edge-nsg")
    assert edge.detail["deny"] == "10.1.0.0/16"
    assert len(edge.detail["subnets"].split(",")) == 2
    request = prepare(azure)
    assert apply(azure, request).changed == 4
    assert lab.blackholed()
    assert (apply(azure, request).changed, apply(azure, request).unchanged) == (0, 4)
    assert restore(azure, request).changed == 4
    assert lab.snapshot() == before
    assert (restore(azure, request).changed, restore(azure, request).unchanged) == (0, 4)
    assert lab.snapshot() == before


def test_an_nsg_held_by_another_run_is_refused_and_nothing_changes(
        lab: AzurePartitionLab, azure: CloudActivities) -> None:
    apply(azure, prepare(azure, run_id="other-run"))
    held = lab.snapshot()
    with pytest.raises(ApplicationError) as refused:
        prepare(azure)
    assert refused.value.non_retryable
    assert "is already partitioned by gameday run other-run" in str(refused.value)
    assert lab.snapshot() == held


def test_a_rule_at_priority_100_leaves_no_free_priority_and_is_refused(
        lab: AzurePartitionLab, azure: CloudActivities) -> None:
    arm = lab._connect()
    try:
        arm.network.security_rules.begin_create_or_update(RG, "app-nsg", "first", {
            "properties": {"protocol": "*", "access": "Allow", "direction": "Outbound",
                           "priority": 100, "sourceAddressPrefix": "*", "sourcePortRange": "*",
                           "destinationAddressPrefix": "*", "destinationPortRange": "*"}}).result()
    finally:
        arm.close()
    before = lab.snapshot()
    with pytest.raises(ApplicationError) as refused:
        resolve(azure)
    assert "has a outbound rule at priority 100" in str(refused.value)
    assert lab.snapshot() == before


def test_a_subnet_without_an_nsg_is_refused_naming_it(
        lab: AzurePartitionLab, azure: CloudActivities) -> None:
    arm = lab._connect()
    try:
        arm.network.subnets.begin_create_or_update(
            RG, "shop-vnet", "bare", {"properties": {"addressPrefix": "10.0.130.0/24"}}).result()
    finally:
        arm.close()
    before = lab.snapshot()
    with pytest.raises(ApplicationError) as refused:
        resolve(azure)
    assert "subnets/bare has no NSG to hold gameday's deny rules" in str(refused.value)
    assert lab.snapshot() == before


def test_a_region_without_peering_to_the_peer_regions_is_refused(
        lab: AzurePartitionLab, azure: CloudActivities) -> None:
    with pytest.raises(ApplicationError) as refused:
        resolve(azure, ["westeurope"])
    assert "peers with a VNet in westeurope" in str(refused.value)


def test_the_sweeper_undoes_a_leftover_from_its_marks_alone(
        lab: AzurePartitionLab, azure: CloudActivities) -> None:
    from activities.azure.sweep import AzureSweeper
    from gameday.sweep import SweepScope

    before = lab.snapshot()
    apply(azure, prepare(azure))  # a run whose restore never came
    sweeper = AzureSweeper()
    leftovers = [left for left in sweeper.find(SweepScope(
        azure_subscriptions=[AzurePartitionLab.subscription])) if left.kind == "partitioned-nsg"]
    assert sorted(left.id.rsplit("/", 1)[-1] for left in leftovers) == ["app-nsg", "edge-nsg"]
    assert {left.run_id for left in leftovers} == {RUN}
    for left in leftovers:
        assert sweeper.sweep(left).changed == 2
    assert lab.snapshot() == before
