"""Azure `stop_instances`: the failure semantics of a power interruption, through the registry's
activities against the ARM emulator (the scenario suite runs the workflow through
`tests.support.power_azure.AzurePowerLab`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.mgmt.compute.models import VirtualMachineUpdate
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from activities.throttle import BUCKETS
from gameday.lab.azure.clients import ArmClients
from gameday.lab.faults import FaultRule
from gameday.lab.shop import start_shop
from gameday.plan import FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from gameday.runbook import Guardrails
from gameday.sweep import SweepScope
from tests.support.clouds import AzureLab
from tests.support.gameday import approve, phase_is, runbook, start, step_state, wait_for
from tests.support.power_azure import AzurePowerLab, power_of
from tests.support.servers import Servers
from workflows.watchdog import WatchdogStatus

RUN = "test-run-power"
RG = AzurePowerLab.resource_group
STEP_ID = "power-eastus-1"
TARGETS = {"web-1", "app-1"}
MARKS = {"gameday-run": RUN, "gameday-step": STEP_ID}


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzurePowerLab]:
    seeded = AzurePowerLab(servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    assert servers.azure is not None
    with servers.azure.lock:
        servers.azure.operations.seconds = 1.0
    servers.azure_faults()


@pytest.fixture
def arm(lab: AzurePowerLab) -> Iterator[ArmClients]:
    clients = lab._connect()
    yield clients
    clients.close()


@pytest.fixture
def azure() -> CloudActivities:
    return CloudActivities("azure")


def step(**target: Any) -> dict[str, Any]:
    return {"id": STEP_ID, "action": "stop_instances", "duration": "5m",
            "target": {"cloud": "azure", "subscription": AzurePowerLab.subscription,
                       "resource_group": RG, "region": "eastus", "zone": "1",
                       "tags": {"gameday": "enabled"}, **target}}


def resolve(azure: CloudActivities, run_id: str = RUN, **target: Any) -> ResolvedStep:
    book = runbook(step(**target))
    [fault_step] = book.fault_steps()
    return azure.by_name["azure.resolve_stop_instances"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))


def prepare(azure: CloudActivities, resolved: ResolvedStep, run_id: str = RUN,
            guardrails: Guardrails | None = None) -> FaultRequest:
    book = runbook(step())
    [fault_step] = book.fault_steps()
    rails = guardrails or book.guardrails
    checkpoint = azure.by_name["azure.prepare_stop_instances"](PrepareRequest(
        run_id=run_id, step=fault_step, resolved=resolved, guardrails=rails))
    return FaultRequest(checkpoint=checkpoint, guardrails=rails)


def apply(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.apply_stop_instances"](request)


def restore(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.restore_stop_instances"](request)


def power(arm: ArmClients, name: str) -> str:
    return power_of(arm.compute.virtual_machines.get(RG, name, expand="instanceView"))


def settled_power(arm: ArmClients, name: str, within: float = 10) -> str:
    """The VM's power state once it is not in transition (an operation nobody polls ends by
    itself)."""
    deadline = time.monotonic() + within
    while (state := power(arm, name)) in ("starting", "stopping", "deallocating"):
        assert time.monotonic() < deadline, f"{name} is still {state}"
        time.sleep(0.1)
    return state


def tags(arm: ArmClients, name: str) -> dict[str, str]:
    return dict(arm.compute.virtual_machines.get(RG, name).tags or {})


def power_posts(lab: AzurePowerLab, vm: str | None = None) -> list[str]:
    """The power actions sent (`web-1/powerOff`...), of one VM or of all."""
    posts = [c["key"].rsplit("/", 2) for c in lab.calls("/providers/Microsoft.Compute/")
             if c["key"].startswith("POST ")]
    return [f"{name}/{action}" for _, name, action in posts if vm is None or name == vm]


def slow_operations(lab: AzurePowerLab, seconds: float) -> None:
    """Operations nobody polls stay in progress this long (a VM stays `stopping`...)."""
    assert lab.servers.azure is not None
    with lab.servers.azure.lock:
        lab.servers.azure.operations.seconds = seconds


# --- the fault's promise --------------------------------------------------------------------


def test_only_running_vms_are_stopped_and_exactly_they_start_again(lab: AzurePowerLab,
                                                                    arm: ArmClients,
                                                                    azure: CloudActivities) -> None:
    before = lab.snapshot()
    assert (before["batch-1"]["power"], before["spare-1"]["power"]) == ("stopped", "deallocated")
    resolved = resolve(azure)
    assert {r.name: r.detail["power_state"] for r in resolved.resources} == {
        "web-1": "running", "app-1": "running"}
    request = prepare(azure, resolved)
    assert apply(azure, request).changed == 2
    assert lab.blackholed()
    assert all(tags(arm, vm).items() >= MARKS.items() for vm in TARGETS)
    assert restore(azure, request).changed == 2
    assert lab.snapshot() == before
    # a VM that was not running was never acted on, not even with a no-op
    assert power_posts(lab, "batch-1") == power_posts(lab, "spare-1") == []
    assert sorted(power_posts(lab)) == ["app-1/powerOff", "app-1/start", "web-1/powerOff",
                                        "web-1/start"]


def test_apply_repeated_after_a_crash_changes_nothing_more(lab: AzurePowerLab, arm: ArmClients,
                                                           azure: CloudActivities) -> None:
    before = lab.snapshot()
    request = prepare(azure, resolve(azure))
    # the crash came after web-1 was marked, before it was powered off
    arm.compute.virtual_machines.begin_update(RG, "web-1", VirtualMachineUpdate(
        tags={**tags(arm, "web-1"), **MARKS})).result()
    first = apply(azure, request)
    assert (first.changed, first.unchanged) == (2, 0)
    assert lab.blackholed()
    again = apply(azure, request)
    assert (again.changed, again.unchanged, again.notes) == (0, 2, [])
    assert sorted(power_posts(lab)) == ["app-1/powerOff", "web-1/powerOff"]
    restore(azure, request)
    assert lab.snapshot() == before


def test_restore_repeated_is_safe(lab: AzurePowerLab, azure: CloudActivities) -> None:
    before = lab.snapshot()
    request = prepare(azure, resolve(azure))
    apply(azure, request)
    assert restore(azure, request).changed == 2
    again = restore(azure, request)
    assert (again.changed, again.unchanged) == (0, 2)
    assert [p for p in power_posts(lab) if p.endswith("/start")].__len__() == 2
    assert lab.snapshot() == before


def test_a_restore_after_an_apply_that_never_ran_changes_nothing(lab: AzurePowerLab,
                                                                 azure: CloudActivities) -> None:
    before = lab.snapshot()
    result = restore(azure, prepare(azure, resolve(azure)))
    assert (result.changed, result.unchanged) == (0, 2)
    assert power_posts(lab) == []
    assert lab.snapshot() == before


# --- VMs in transition ----------------------------------------------------------------------


def test_a_vm_starting_when_the_fault_arrives_is_waited_for_then_stopped(
        lab: AzurePowerLab, arm: ArmClients, azure: CloudActivities) -> None:
    arm.compute.virtual_machines.begin_deallocate(RG, "app-1").result()
    slow_operations(lab, 2.0)
    arm.compute.virtual_machines.begin_start(RG, "app-1", polling=False)
    assert power(arm, "app-1") == "starting"
    resolved = resolve(azure)
    assert {r.name: r.detail["power_state"] for r in resolved.resources} == {
        "web-1": "running", "app-1": "starting"}
    request = prepare(azure, resolved)
    assert {vm["name"]: vm["power"] for vm in request.checkpoint.state["vms"]} == {
        "web-1": "running", "app-1": "running"}
    assert apply(azure, request).changed == 2
    assert power(arm, "app-1") == "stopped"
    restore(azure, request)
    assert power(arm, "app-1") == power(arm, "web-1") == "running"


def test_a_vm_stopping_when_apply_arrives_is_waited_for_and_not_taken(
        lab: AzurePowerLab, arm: ArmClients, azure: CloudActivities) -> None:
    """Someone powers web-1 off between the plan and the apply: apply waits until it is stopped,
    does not mark it as its own, and restore brings it back to the recorded `running`."""
    request = prepare(azure, resolve(azure))
    slow_operations(lab, 2.0)
    arm.compute.virtual_machines.begin_power_off(RG, "web-1", polling=False)
    assert power(arm, "web-1") == "stopping"
    started = time.monotonic()
    result = apply(azure, request)
    assert time.monotonic() - started >= 1.0  # it waited for the operation it found
    assert result.changed == 1 and len(result.notes) == 1 and "web-1" in result.notes[0]
    assert power(arm, "web-1") == "stopped" and "gameday-run" not in tags(arm, "web-1")
    assert power(arm, "app-1") == "stopped" and tags(arm, "app-1").items() >= MARKS.items()
    restore(azure, request)
    assert power(arm, "web-1") == power(arm, "app-1") == "running"


def test_a_vm_stopping_when_the_plan_is_made_is_not_a_target_and_stays_stopped(
        lab: AzurePowerLab, arm: ArmClients, azure: CloudActivities) -> None:
    slow_operations(lab, 2.0)
    arm.compute.virtual_machines.begin_power_off(RG, "app-1", polling=False)
    resolved = resolve(azure)
    assert [r.name for r in resolved.resources] == ["web-1"]
    request = prepare(azure, resolved)
    apply(azure, request)
    restore(azure, request)
    assert settled_power(arm, "app-1") == "stopped" and power(arm, "web-1") == "running"
    assert "gameday-run" not in tags(arm, "app-1")
    assert power_posts(lab, "app-1") == ["app-1/powerOff"]  # only the test's own


# --- refusals and empty zones ---------------------------------------------------------------


def test_a_vm_another_run_holds_is_refused_before_any_change(lab: AzurePowerLab, arm: ArmClients,
                                                             azure: CloudActivities) -> None:
    arm.compute.virtual_machines.begin_update(RG, "app-1", VirtualMachineUpdate(
        tags={**tags(arm, "app-1"), "gameday-run": "other-run", "gameday-step": "x"})).result()
    before = lab.snapshot()
    with pytest.raises(ApplicationError) as refused:
        prepare(azure, resolve(azure))
    assert refused.value.type == "Refused" and refused.value.non_retryable
    assert "app-1" in refused.value.message and "other-run" in refused.value.message
    assert lab.snapshot() == before


def test_max_resources_per_step_refuses_before_any_change(lab: AzurePowerLab,
                                                          azure: CloudActivities) -> None:
    before = lab.snapshot()
    rails = Guardrails(azure_subscriptions=[AzurePowerLab.subscription], max_resources_per_step=1)
    with pytest.raises(ApplicationError) as refused:
        prepare(azure, resolve(azure), guardrails=rails)
    assert refused.value.type == "Refused"
    assert lab.snapshot() == before and power_posts(lab) == []


def test_a_zone_whose_matching_vms_are_all_powered_off_has_nothing_to_stop(
        lab: AzurePowerLab, azure: CloudActivities) -> None:
    assert resolve(azure, tags={"tier": "batch"}).resources == []


def test_no_matching_vm_names_the_zone_and_tags(lab: AzurePowerLab, azure: CloudActivities) -> None:
    with pytest.raises(ApplicationError) as missing:
        resolve(azure, tags={"gameday": "nowhere"})
    assert missing.value.type == "TargetNotFound"
    assert missing.value.message == ("step power-eastus-1: no VM in zone 1 of eastus in resource "
                                     "group shop carries the tags gameday=nowhere")


# --- throttling and the sweeper -------------------------------------------------------------


def test_a_throttled_restore_finishes_exactly(lab: AzurePowerLab, azure: CloudActivities) -> None:
    before = lab.snapshot()
    request = prepare(azure, resolve(azure))
    apply(azure, request)
    throttle = {"status": 429, "code": "SubscriptionRequestsThrottled", "retry_after": 0}
    lab.faults(FaultRule(match="/start", count=2, **throttle),
               FaultRule(match="PATCH /subscriptions/", count=1, **throttle),
               FaultRule(match="/start", rate=0.4, **throttle), seed=3)
    result = restore(azure, request)
    assert result.changed == 2
    assert [c for c in lab.calls("/start") if c["injected"]]
    assert [c for c in lab.calls("PATCH /subscriptions/") if c["injected"]]
    assert lab.snapshot() == before


async def _left_behind(client: Any, task_queue: str) -> str:
    """A run killed for good mid-fault: the GameDay and its dead man's switch both terminated."""
    handle = await start(client, runbook({**step(), "duration": "10m"}), task_queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state(STEP_ID, "active"))
    await client.get_workflow_handle(f"{handle.id}-watchdog").terminate(reason="test")
    await handle.terminate(reason="test: leave the fault behind")
    return handle.id


def test_terminating_the_gameday_mid_fault_the_watchdog_restores_exactly(
        lab: AzurePowerLab, client: Any, runner: Any, task_queue: str) -> None:
    """The proof of exact restoration after a terminate: the dead man's switch restores from the
    checkpoint alone."""
    before = lab.snapshot()

    async def scenario() -> Any:
        handle = await start(client, runbook({**step(), "duration": "10m"}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state(STEP_ID, "active"))
        assert lab.blackholed()
        await handle.terminate(reason="operator pulled the plug")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        return await watchdog.result()

    status = runner.run(scenario(), timeout=120)
    assert "terminated" in status.fired and status.in_effect == []
    assert lab.snapshot() == before


def test_the_sweeper_finds_and_restarts_the_vms_of_a_terminated_run(
        lab: AzurePowerLab, azure: CloudActivities, client: Any, runner: Any,
        task_queue: str) -> None:
    before = lab.snapshot()
    dead = runner.run(_left_behind(client, task_queue), timeout=120)
    assert lab.blackholed()
    scope = SweepScope(azure_subscriptions=[AzurePowerLab.subscription])
    found = [x for x in azure.find_leftovers(scope) if x.kind == "virtual-machine"]
    assert {x.id.rsplit("/", 1)[-1] for x in found} == TARGETS
    assert {(x.run_id, x.step_id) for x in found} == {(dead, STEP_ID)}
    assert sum(azure.sweep_leftover(x).changed for x in found) == 2
    assert lab.snapshot() == before
    assert azure.find_leftovers(scope) == []
    assert sum(azure.sweep_leftover(x).changed for x in found) == 0
    assert lab.snapshot() == before


def test_a_network_cut_and_a_power_loss_of_one_zone_together_restore_exactly(
        lab: AzurePowerLab, client: Any, runner: Any, task_queue: str) -> None:
    """The power interruption runbook's shape: the zone's NICs cut and its VMs powered off at
    once (writes to the VMs and to their NICs interleave), then both undone."""
    network = AzureLab(lab.servers)
    before = (lab.snapshot(), network.snapshot())
    cut = {**network.zone_step("network-eastus-1", "3s")}
    power = {**step(), "duration": "3s"}

    async def scenario() -> Any:
        handle = await start(client, runbook({"parallel": [cut, power]}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, lambda s: all(x.state == "active" for x in s.steps))
        during = (lab.blackholed(), network.snapshot())
        return during, await handle.result()

    (stopped, nics), result = runner.run(scenario(), timeout=120)
    assert stopped and nics != before[1]
    assert (result.outcome, result.restored) == ("completed", True)
    assert (lab.snapshot(), network.snapshot()) == before


# --- the shop follows -----------------------------------------------------------------------


def test_the_shop_region_stops_serving_once_every_web_vm_is_powered_off(
        lab: AzurePowerLab, arm: ArmClients, servers: Servers) -> None:
    url, stop = start_shop(servers.env)
    try:
        def health() -> tuple[int, dict[str, Any]]:
            response = httpx.get(f"{url}/azure/eastus/health", timeout=5)
            return response.status_code, response.json()

        def eventually(status: int, serving_zones: set[str]) -> dict[str, Any]:
            """The answer once it is `status` with exactly these zones serving (reads are cached
            for half a second)."""
            deadline = time.monotonic() + 5
            while True:
                got, body = health()
                serving = {z for z, v in body.get("zones", {}).items() if v["serving"]}
                if (got, serving) == (status, serving_zones) or time.monotonic() > deadline:
                    assert (got, serving) == (status, serving_zones), body
                    return body
                time.sleep(0.1)

        eventually(200, {"1", "2", "3"})
        for vm in ("web-1", "web-2"):
            arm.compute.virtual_machines.begin_power_off(RG, vm, skip_shutdown=True).result()
        body = eventually(200, {"3"})
        assert body["zones"]["1"]["vms"][0]["cut"] == "VM web-1 is stopped (not running)"
        arm.compute.virtual_machines.begin_deallocate(RG, "web-3").result()
        body = eventually(503, set())
        assert "running and reachable" in body["reason"]
        arm.compute.virtual_machines.begin_start(RG, "web-2").result()
        eventually(200, {"2"})
    finally:
        stop()
