"""GCP and Azure: blackhole_region through Temporal (one checkpoint per zone, restored zone by zone
newest first, exactly), and the sweeper's find/sweep against the emulators (plain classes and the
activity wrappers called directly), each leaving the cloud exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import compute_v1

from activities.azure import TAG_RESTORE, AzureSweeper, AzureZoneBlackhole
from activities.gcp import (
    UNKNOWN_RUN,
    GcpSweeper,
    GcpZoneBlackhole,
    blackhole_tag,
    compute_clients,
)
from activities.registry import CloudActivities
from gameday.errors import TargetNotFound
from gameday.plan import FaultRequest, PrepareRequest, StepRequest
from gameday.runbook import BlackholeRegionStep
from gameday.sweep import Leftover, SweepScope
from tests.support.clouds import AzureLab, GcpLab
from tests.support.gameday import approve, phase_is, runbook, start, step_state, wait_for
from tests.support.servers import Servers

GCP_REGION = "us-central1"
GCP_ZONES = ("us-central1-a", "us-central1-b", "us-central1-c")
AZURE_ZONES = ("1", "2", "3")
RUN = "sweep-test-run"


@pytest.fixture
def gcp_lab(servers: Servers) -> Iterator[GcpLab]:
    lab = GcpLab(servers)
    lab.seed()
    yield lab
    lab.faults()


@pytest.fixture
def azure_lab(servers: Servers) -> Iterator[AzureLab]:
    lab = AzureLab(servers)
    lab.seed()
    yield lab
    lab.faults()


def gcp_region_step(step_id: str = "blackout-usc1", region: str = GCP_REGION,
                    **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "blackhole_region",
            "target": {"cloud": "gcp", "project": GcpLab.project, "region": region,
                       "labels": {"gameday": "enabled"}}, **extra}


def azure_region_step(step_id: str = "blackout-eastus", region: str = "eastus",
                      **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "action": "blackhole_region",
            "target": {"cloud": "azure", "subscription": AzureLab.subscription,
                       "resource_group": AzureLab.resource_group, "region": region,
                       "tags": {"gameday": "enabled"}}, **extra}


def _region_gameday(client, task_queue, step: dict[str, Any], during):
    """Run a 3s blackhole_region GameDay; what `during()` sees while it is active, and the end."""
    async def scenario():
        handle = await start(client, runbook({**step, "duration": "3s"}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        active = await wait_for(handle, step_state(step["id"], "active"))
        return handle.id, active, during(), await handle.result()

    return scenario()


async def _leave_behind(client, task_queue, step: dict[str, Any]):
    """A run killed for good mid-fault: the GameDay and its dead man's switch both terminated."""
    handle = await start(client, runbook({**step, "duration": "10m"}), task_queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state(step["id"], "active"))
    await client.get_workflow_handle(f"{handle.id}-watchdog").terminate(reason="test")
    await handle.terminate(reason="test: leave the fault behind")
    return handle.id


def _restored_order(result) -> list[str]:
    return [e.detail.split(":")[0] for e in result.events if e.kind == "restored"]


THEN_WAIT = {"id": "then-wait", "action": "wait", "duration": "1m"}
"""After a step with no duration, so that it is held for some time and the runbook validates."""


def _resolve(fault: Any, step: dict[str, Any]):
    book = runbook(step, THEN_WAIT)
    [fault_step] = book.fault_steps()
    return fault.resolve(StepRequest(run_id=RUN, step=fault_step, guardrails=book.guardrails))


def _applied_zone(fault: Any, step: dict[str, Any]) -> FaultRequest:
    """Prepare and apply one zone step as the workflow does, outside Temporal."""
    book = runbook(step, THEN_WAIT)
    [fault_step] = book.fault_steps()
    resolved = fault.resolve(StepRequest(run_id=RUN, step=fault_step, guardrails=book.guardrails))
    checkpoint = fault.prepare(PrepareRequest(run_id=RUN, step=fault_step, resolved=resolved,
                                              guardrails=book.guardrails))
    request = FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)
    fault.apply(request)
    return request


# --- GCP blackhole_region ----------------------------------------------------------------------


def test_gcp_blackhole_region_cuts_every_zone_with_one_checkpoint_each(gcp_lab, client, runner,
                                                                         task_queue):
    before = gcp_lab.snapshot()
    step = gcp_region_step()
    run_id, active, during, result = runner.run(_region_gameday(client, task_queue, step,
                                                                gcp_lab.snapshot))
    targets = {vm.name for vm in _lab_vms() if vm.zone.startswith(GCP_REGION + "-")
               and vm.labels.get("gameday") == "enabled"}
    assert active.steps[0].resources == len(targets) == 12
    tagged: dict[str, set[str]] = {}
    for name, instance in during["instances"].items():
        for tag in instance["tags"]:
            if tag.startswith("gameday-"):
                tagged.setdefault(tag, set()).add(name)
    assert set().union(*tagged.values()) == targets
    units = {f"{step['id']}-{zone}" for zone in GCP_ZONES}
    assert set(tagged) == {blackhole_tag(run_id, unit) for unit in units}
    described = {rule["description"].rsplit("step=", 1)[1]
                 for rule in during["firewalls"].values() if rule["name"].startswith("gameday-")}
    assert described == units
    assert _restored_order(result) == [f"{step['id']}-{zone}" for zone in reversed(GCP_ZONES)]
    assert (result.outcome, result.restored) == ("completed", True)
    assert gcp_lab.snapshot() == before


def _lab_vms():
    from gameday.lab.gcp.seed import lab_instances

    return lab_instances()


def test_gcp_region_resolve_names_each_zone_and_misses_clearly(gcp_lab):
    fault = GcpZoneBlackhole()
    resolved = _resolve(fault, gcp_region_step())
    assert resolved.action == "blackhole_region" and resolved.scope.zone is None
    assert {r.detail["zone"] for r in resolved.resources} == set(GCP_ZONES)
    zone = _resolve(fault, {**gcp_lab.zone_step("one-zone", None)})
    assert {r.detail["zone"] for r in zone.resources} == {GcpLab.zone}
    with pytest.raises(TargetNotFound, match="any zone of us-west1"):
        _resolve(fault, gcp_region_step(region="us-west1"))
    nobody = gcp_region_step()
    nobody["target"] = {**nobody["target"], "labels": {"gameday": "nobody"}}
    with pytest.raises(TargetNotFound, match="carries the labels gameday=nobody"):
        _resolve(fault, nobody)


# --- Azure blackhole_region --------------------------------------------------------------------


def test_azure_blackhole_region_cuts_every_zone_with_one_checkpoint_each(azure_lab, client, runner,
                                                                           task_queue):
    from gameday.lab.azure.seed import VMS

    before = azure_lab.snapshot()
    step = azure_region_step()
    _, active, during, result = runner.run(_region_gameday(client, task_queue, step,
                                                           azure_lab.snapshot))
    targets = {f"{vm}-nic{i}" for vm, _, enabled, nics in VMS if enabled for i in range(nics)}
    assert active.steps[0].resources == len(targets) == 9
    ours = {name: nsg for name, nsg in during["nsgs"].items() if nsg["tags"].get("gameday-run")}
    units = {f"{step['id']}-{zone}" for zone in AZURE_ZONES}
    assert {nsg["tags"]["gameday-step"] for nsg in ours.values()} == units
    cut = {name for name, nic in during["nics"].items()
           if nic["nsg"] and nic["nsg"].rsplit("/", 1)[-1] in ours}
    assert cut == targets
    assert _restored_order(result) == [f"{step['id']}-{zone}" for zone in reversed(AZURE_ZONES)]
    assert (result.outcome, result.restored) == ("completed", True)
    assert azure_lab.snapshot() == before


def test_azure_region_resolve_names_each_zone_and_misses_clearly(azure_lab):
    fault = AzureZoneBlackhole()
    resolved = _resolve(fault, azure_region_step())
    assert resolved.action == "blackhole_region" and resolved.scope.zone is None
    assert {r.detail["zone"] for r in resolved.resources} == set(AZURE_ZONES)
    region = BlackholeRegionStep.model_validate(azure_region_step())
    for zone in AZURE_ZONES:
        unit = _resolve(fault, region.zone_step(zone).model_dump(mode="json"))
        assert {r.id for r in unit.resources} == {r.id for r in resolved.resources
                                                   if r.detail["zone"] == zone}
    with pytest.raises(TargetNotFound, match="any zone"):
        _resolve(fault, azure_region_step(region="westus"))
    nobody = azure_region_step()
    nobody["target"] = {**nobody["target"], "tags": {"gameday": "nobody"}}
    with pytest.raises(TargetNotFound, match="carries the tags gameday=nobody"):
        _resolve(fault, nobody)


# --- GCP sweeper --------------------------------------------------------------------------------


def test_gcp_sweep_finds_and_undoes_what_a_dead_region_run_left(gcp_lab, client, runner,
                                                                task_queue):
    before = gcp_lab.snapshot()
    step = gcp_region_step("cut-usc1")
    dead = runner.run(_leave_behind(client, task_queue, step), timeout=180)
    assert gcp_lab.snapshot() != before

    activities = CloudActivities("gcp")
    scope = SweepScope(gcp_projects=[GcpLab.project])
    found = activities.find_leftovers(scope)
    assert {x.run_id for x in found} == {dead}
    assert {x.cloud for x in found} == {"gcp"}
    tags = [x for x in found if x.kind == "instance-tag"]
    rules = [x for x in found if x.kind == "firewall-rule"]
    assert len(tags) == 12 and len(rules) == 12  # 3 zones x 2 networks x 2 directions
    units = {f"cut-usc1-{zone}" for zone in GCP_ZONES}
    assert {x.step_id for x in tags} == {x.step_id for x in rules} == units
    assert all(x.location == x.detail["zone"] for x in tags)
    assert {x.location for x in rules} == {GcpLab.project}
    assert len({x.id for x in found}) == len(found)

    for leftover in found:
        assert activities.sweep_leftover(leftover).notes == []
    assert gcp_lab.snapshot() == before
    assert activities.find_leftovers(scope) == []
    again = [activities.sweep_leftover(x) for x in found]  # sweeping twice changes nothing
    assert sum(r.changed for r in again) == 0
    assert gcp_lab.snapshot() == before


def test_gcp_sweep_maps_tags_through_rules_and_still_removes_orphan_tags(gcp_lab, servers):
    before = gcp_lab.snapshot()
    _applied_zone(GcpZoneBlackhole(), gcp_lab.zone_step("cut-a", None))
    sweeper = GcpSweeper()
    scope = SweepScope(gcp_projects=[GcpLab.project])
    found = sweeper.find(scope)
    assert {x.run_id for x in found} == {RUN} and {x.step_id for x in found} == {"cut-a"}

    compute = compute_clients()  # the rules are gone: the run is not recoverable from the tag
    for rule in [x for x in found if x.kind == "firewall-rule"]:
        operation = compute.firewalls.delete_unary(project=GcpLab.project, firewall=rule.id)
        compute.global_operations.wait(project=GcpLab.project, operation=operation.name)
    orphans = sweeper.find(scope)
    assert {x.kind for x in orphans} == {"instance-tag"}
    assert {x.run_id for x in orphans} == {UNKNOWN_RUN}
    assert {x.step_id for x in orphans} == {"cut-a"}
    assert len(orphans) == gcp_lab.target_count()
    for leftover in orphans:
        assert sweeper.sweep(leftover).changed == 1
    assert gcp_lab.snapshot() == before


def test_gcp_sweep_keeps_other_tags_and_leaves_a_rule_of_another_run(gcp_lab):
    _applied_zone(GcpZoneBlackhole(), gcp_lab.zone_step("cut-a", None))
    sweeper = GcpSweeper()
    found = sweeper.find(SweepScope(gcp_projects=[GcpLab.project]))
    compute = compute_clients()
    leftover = next(x for x in found if x.kind == "instance-tag")
    name, zone = leftover.detail["instance"], leftover.detail["zone"]
    instance = compute.instances.get(project=GcpLab.project, zone=zone, instance=name)
    operation = compute.instances.set_tags_unary(
        project=GcpLab.project, zone=zone, instance=name, tags_resource=compute_v1.Tags(
            items=[*instance.tags.items, "added-meanwhile"],
            fingerprint=instance.tags.fingerprint))
    compute.zone_operations.wait(project=GcpLab.project, zone=zone, operation=operation.name)
    assert sweeper.sweep(leftover).changed == 1
    left = list(compute.instances.get(project=GcpLab.project, zone=zone, instance=name).tags.items)
    assert "added-meanwhile" in left and leftover.detail["tag"] not in left

    rule = next(x for x in found if x.kind == "firewall-rule")
    other = rule.model_copy(update={"run_id": "another-run"})
    assert "left alone" in sweeper.sweep(other).notes[0]
    assert compute.firewalls.get(project=GcpLab.project, firewall=rule.id).name == rule.id


# --- Azure sweeper ------------------------------------------------------------------------------


def test_azure_sweep_finds_and_undoes_what_a_dead_region_run_left(azure_lab, client, runner,
                                                                  task_queue):
    before = azure_lab.snapshot()
    step = azure_region_step("cut-eastus")
    dead = runner.run(_leave_behind(client, task_queue, step), timeout=180)
    assert azure_lab.snapshot() != before

    activities = CloudActivities("azure")
    scope = SweepScope(azure_subscriptions=[AzureLab.subscription])
    found = activities.find_leftovers(scope)
    assert {x.run_id for x in found} == {dead}
    nics = [x for x in found if x.kind == "network-interface"]
    nsgs = [x for x in found if x.kind == "network-security-group"]
    assert len(nics) == 9 and len(nsgs) == 3
    units = {f"cut-eastus-{zone}" for zone in AZURE_ZONES}
    assert {x.step_id for x in nics} == {x.step_id for x in nsgs} == units
    assert {x.location for x in found} == {AzureLab.subscription}

    for leftover in found:
        assert activities.sweep_leftover(leftover).notes == []
    assert azure_lab.snapshot() == before
    assert activities.find_leftovers(scope) == []
    again = [activities.sweep_leftover(x) for x in found]
    assert sum(r.changed for r in again) == 0
    assert azure_lab.snapshot() == before


def test_azure_sweeping_the_nsg_alone_restores_its_nics_from_their_tags(azure_lab):
    before = azure_lab.snapshot()
    _applied_zone(AzureZoneBlackhole(), azure_lab.zone_step("cut-1", None))
    sweeper = AzureSweeper()
    found = sweeper.find(SweepScope(azure_subscriptions=[AzureLab.subscription]))
    assert {x.run_id for x in found} == {RUN}
    [nsg] = [x for x in found if x.kind == "network-security-group"]
    assert len(nsg.detail["nics_held"].split(",")) == azure_lab.target_count()
    result = sweeper.sweep(nsg)
    assert result.changed == azure_lab.target_count()
    assert azure_lab.snapshot() == before
    assert sweeper.sweep(nsg).notes == [f"NSG {nsg.id} is already gone"]


def test_azure_a_nic_moved_off_gameday_keeps_its_nsg_and_loses_the_stale_tag(azure_lab):
    _applied_zone(AzureZoneBlackhole(), azure_lab.zone_step("cut-1", None))
    sweeper = AzureSweeper()
    clients = azure_lab._connect()
    try:
        nic = clients.network.network_interfaces.get(AzureLab.resource_group, "app-1-nic0")
        nic.network_security_group = None  # someone takes the NIC off gameday's NSG by hand
        clients.network.network_interfaces.begin_create_or_update(
            AzureLab.resource_group, "app-1-nic0", nic).result()
        found = sweeper.find(SweepScope(azure_subscriptions=[AzureLab.subscription]))
        moved = next(x for x in found if x.id.endswith("/app-1-nic0"))
        assert moved.run_id == "(unknown)"
        result = sweeper.sweep(moved)
        assert result.changed == 1 and "only its restore tag" in result.notes[0]
        after = clients.network.network_interfaces.get(AzureLab.resource_group, "app-1-nic0")
        assert after.network_security_group is None
        assert TAG_RESTORE not in (after.tags or {})
    finally:
        clients.close()


def test_an_unknown_leftover_kind_is_a_user_error(servers):
    from gameday.errors import UserError

    odd = Leftover(cloud="gcp", kind="bucket", id="x", run_id="r", step_id="s", location="p")
    with pytest.raises(UserError):
        GcpSweeper(clients=lambda: None).sweep(odd)  # type: ignore[arg-type,return-value]
    with pytest.raises(UserError):
        AzureSweeper().sweep(odd.model_copy(update={"cloud": "azure"}))
