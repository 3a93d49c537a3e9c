"""Azure `deny_capacity`: the failure semantics of a capacity denial, through the registry's
activities against the ARM emulator (the scenario suite runs the workflow through
`tests.support.capacity_azure.AzureCapacityLab`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.rest import HttpRequest
from azure.mgmt.compute.models import (
    AutomaticRepairsPolicy,
    VirtualMachineScaleSetUpdate,
    VirtualMachineScaleSetUpdateProperties,
)
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from activities.throttle import BUCKETS
from gameday.lab.azure.autoscale import monitor_client
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from gameday.sweep import SweepScope
from tests.support.capacity_azure import NAMED, AzureCapacityLab
from tests.support.gameday import runbook
from tests.support.servers import Servers

RUN = "test-run-capacity"
RG = AzureCapacityLab.resource_group
SUB = AzureCapacityLab.subscription
STEP_ID = "capacity-eastus"


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzureCapacityLab]:
    seeded = AzureCapacityLab(servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    assert servers.azure is not None
    with servers.azure.lock:
        servers.azure.operations.seconds = 1.0
    servers.azure_faults()


@pytest.fixture
def azure() -> CloudActivities:
    return CloudActivities("azure")


def step(scale_sets: list[str] = NAMED) -> dict[str, Any]:
    return {"id": STEP_ID, "action": "deny_capacity", "duration": "5m",
            "target": {"cloud": "azure", "subscription": SUB, "resource_group": RG,
                       "region": "eastus", "scale_sets": scale_sets}}


def resolve(azure: CloudActivities, scale_sets: list[str] = NAMED) -> ResolvedStep:
    book = runbook(step(scale_sets))
    [fault_step] = book.fault_steps()
    return azure.by_name["azure.resolve_deny_capacity"](
        StepRequest(run_id=RUN, step=fault_step, guardrails=book.guardrails))


def prepare(azure: CloudActivities, run_id: str = RUN) -> FaultRequest:
    book = runbook(step())
    [fault_step] = book.fault_steps()
    checkpoint = azure.by_name["azure.prepare_deny_capacity"](PrepareRequest(
        run_id=run_id, step=fault_step, resolved=resolve(azure), guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.apply_deny_capacity"](request)


def restore(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.restore_deny_capacity"](request)


def test_exactly_what_was_on_is_turned_off_and_back_on(lab: AzureCapacityLab,
                                                        azure: CloudActivities) -> None:
    """`batch-vmss` (repairs already off, its setting already disabled) is neither planned nor
    touched, and stays off; apply and restore repeated change nothing more."""
    before = lab.snapshot()
    resolved = resolve(azure)
    assert sorted((r.kind, r.name) for r in resolved.resources) == [
        ("autoscale_setting", "web-vmss-autoscale"), ("scale_set", "web-vmss")]
    request = prepare(azure)
    assert apply(azure, request).changed == 2
    assert lab.blackholed()
    web = lab.snapshot()["scale_sets"]["web-vmss"]
    assert web["tags"] == {"app": "shop", "gameday-run": RUN, "gameday-step": STEP_ID,
                           "gameday-restore-repairs": "PT30M/Replace"}
    assert (apply(azure, request).changed, apply(azure, request).unchanged) == (0, 2)
    assert restore(azure, request).changed == 2
    assert lab.snapshot() == before
    assert (restore(azure, request).changed, restore(azure, request).unchanged) == (0, 2)
    assert not [c for c in lab.calls("batch-vmss") if not c["key"].startswith("GET ")]


def test_a_set_held_by_another_operation_is_written_after_its_retry_after(
        lab: AzureCapacityLab, azure: CloudActivities) -> None:
    """409 AnotherOperationInProgress with Retry-After: the write is sent again after the wait."""
    request = prepare(azure)
    assert lab.servers.azure is not None
    with lab.servers.azure.lock:
        lab.servers.azure.operations.seconds = 2.0
    arm = lab._connect()
    try:  # someone's update of web-vmss that nobody polls: it holds the set for 2 s
        held = arm.compute.send_request(HttpRequest(
            "PATCH", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/web-vmss", params={"api-version": "2024-07-01"},
            json=VirtualMachineScaleSetUpdate(tags={"app": "shop", "owner": "ops"}).as_dict()))
        assert held.status_code == 200
    finally:
        arm.close()
    assert apply(azure, request).changed == 2
    patches = [c for c in lab.calls("PATCH ") if "virtualMachineScaleSets/web-vmss" in c["key"]]
    assert [c["status"] for c in patches] == [200, 409, 200]
    web = lab.snapshot()["scale_sets"]["web-vmss"]
    assert (web["repairs"][0], web["tags"]["owner"]) == (False, "ops")  # on top of their change


def test_an_unknown_scale_set_is_refused_naming_it(lab: AzureCapacityLab,
                                                   azure: CloudActivities) -> None:
    with pytest.raises(ApplicationError) as refused:
        resolve(azure, ["web-vmss", "no-such-vmss"])
    assert refused.value.non_retryable
    assert "scale set no-such-vmss does not exist in resource group shop" in str(refused.value)


def test_a_setting_deleted_mid_fault_is_said_and_the_rest_restored(
        lab: AzureCapacityLab, azure: CloudActivities) -> None:
    request = prepare(azure)
    apply(azure, request)
    assert lab.servers.azure is not None
    monitor = monitor_client(lab.servers.azure.url, lab.servers.env["GAMEDAY_AZURE_CA_BUNDLE"], SUB)
    try:
        monitor.autoscale_settings.delete(RG, "web-vmss-autoscale")
    finally:
        monitor.close()
    result = restore(azure, request)
    assert result.changed == 1
    assert result.notes == [f"autoscale setting /subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                            "Microsoft.Insights/autoscaleSettings/web-vmss-autoscale no longer "
                            "exists; skipped"]
    assert lab.snapshot()["scale_sets"]["web-vmss"]["repairs"] == (True, "PT30M", "Replace")


def test_the_sweeper_restores_a_run_that_is_over_from_the_tags_alone(
        lab: AzureCapacityLab, azure: CloudActivities) -> None:
    before = lab.snapshot()
    apply(azure, prepare(azure, run_id="test-run-gone"))
    arm = lab._connect()
    try:  # someone changed the grace period meanwhile: the tag, not the set, says what to restore
        arm.compute.virtual_machine_scale_sets.begin_update(RG, "web-vmss", VirtualMachineScaleSetUpdate(
            properties=VirtualMachineScaleSetUpdateProperties(
                automatic_repairs_policy=AutomaticRepairsPolicy(grace_period="PT60M")))).result()
    finally:
        arm.close()
    found = [x for x in azure.find_leftovers(SweepScope(azure_subscriptions=[SUB]))
             if x.kind in ("scale-set", "autoscale-setting")]
    assert sorted((x.kind, x.id.rsplit("/", 1)[-1], x.run_id, x.detail["restore"]) for x in found) == [
        ("autoscale-setting", "web-vmss-autoscale", "test-run-gone", "true"),
        ("scale-set", "web-vmss", "test-run-gone", "PT30M/Replace")]
    assert sum(azure.sweep_leftover(x).changed for x in found) == 2
    assert lab.snapshot() == before
    assert sum(azure.sweep_leftover(x).changed for x in found) == 0
