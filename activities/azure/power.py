"""Azure zone power interruption, `stop_instances` (contract §10): every running VM of the zone with
the tags is powered off abruptly (`powerOff` with `skipShutdown=true`), then started again.

Before: VM V is `running` (or `starting`, which ends `running`: it is taken as running).
After apply: V carries the tags `gameday-run` and `gameday-step` (set before it is touched), and
is `stopped` (powered off, still allocated: it keeps its disks, NICs and addresses).
After restore: V is `running` again (started, and waited for), without gameday's tags.
VMs `stopped` or `deallocated` before the run (or `stopping`/`deallocating` when it resolves,
which end so) are not targets: they are neither listed nor touched, and stay as they were.

A VM in a transitional state (`starting`, `stopping`, `deallocating`) is waited for, with
heartbeats, until it settles; only then is it marked or acted on. Each action is a long-running
operation followed through `Azure-AsyncOperation` with the activity heartbeating; a VM another
operation holds (409 `AnotherOperationInProgress`) is sent again through `api.write`. Restore
works from the checkpoint alone; `gameday sweep` finds a VM left stopped from its tags.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.polling import LROPoller
from azure.mgmt.compute.models import VirtualMachine, VirtualMachineUpdate
from pydantic import BaseModel

from activities.azure.api import (
    MAX_TAG_VALUE,
    MAX_TAGS,
    TAG_RUN,
    TAG_STEP,
    ArmClients,
    AzureConnection,
    find,
    id_parts,
    normalize_location,
    write,
)
from activities.base import fan_out, parallel_calls, poll_until, progress
from activities.throttle import CallAbandoned, caller
from gameday.errors import CloudError, Refused, TargetNotFound
from gameday.plan import (
    Checkpoint,
    FaultRequest,
    FaultResult,
    PrepareRequest,
    ResolvedStep,
    Resource,
    Scope,
    StepRequest,
)
from gameday.targets import AzureInstancesTarget

RUNNING, STOPPED = "running", "stopped"
SETTLES_AS = {"starting": RUNNING, "stopping": STOPPED, "deallocating": "deallocated"}
"""Each transitional power state and the state it ends in."""
TAKEN = (RUNNING, "starting")
"""Power states of the VMs a power interruption stops."""
POLL = 0.5
"""Seconds between two reads of a VM (or an operation) that has not settled yet."""
SETTLE_WITHIN = 600.0
"""Seconds one activity attempt waits for a VM to settle, or an operation to end, before it fails
(retryably): the next attempt reads the VM again."""


class VmRecord(BaseModel):
    """One VM to power off, and its power state before the fault."""

    id: str
    name: str
    zone: str
    power: str


class PowerState(BaseModel):
    resource_group: str
    vms: list[VmRecord]


def power_state(vm: VirtualMachine) -> str:
    """The VM's power state from its instance view (`running`, `stopped`...), "" when unknown."""
    view = vm.instance_view
    for status in (view.statuses or []) if view is not None else []:
        code = status.code or ""
        if code.startswith("PowerState/"):
            return code.split("/", 1)[1]
    return ""


def marks(run_id: str, step_id: str) -> dict[str, str]:
    return {TAG_RUN: run_id, TAG_STEP: step_id}


def without_marks(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k not in (TAG_RUN, TAG_STEP)}


def follow(poller: LROPoller[Any], doing: str) -> None:
    """Wait for a long-running operation to end, polled by the SDK through `Azure-AsyncOperation`,
    giving up this attempt after `SETTLE_WITHIN` seconds (the activity heartbeats meanwhile) and
    at once when the activity stops; raises the operation's own failure."""
    deadline = time.monotonic() + SETTLE_WITHIN
    who = caller()
    while not poller.done():
        if who.stopped():
            raise CallAbandoned(f"the activity stopped while waiting for the {doing}")
        if time.monotonic() > deadline:
            raise CloudError(f"Azure did not finish the {doing} within {SETTLE_WITHIN:.0f} s",
                             retryable=True)
        poller.wait(POLL)
    poller.result()


def list_vms(arm: ArmClients, group: str) -> list[VirtualMachine] | None:
    """Every VM of the resource group with its instance view (paged by ARM), or None when the
    group does not exist: one listing instead of one read per VM."""
    return find(f"listing the VMs of resource group {group}", lambda: list(
        arm.compute.virtual_machines.list(group, expand="instanceView")))


def read_vm(arm: ArmClients, vm_id: str) -> VirtualMachine | None:
    """The VM with its instance view, or None when it does not exist."""
    _, group, name = id_parts(vm_id)
    return find(f"reading VM {name}", lambda: arm.compute.virtual_machines.get(
        group, name, expand="instanceView"))


def settled(arm: ArmClients, vm_id: str) -> VirtualMachine | None:
    """The VM once its power state is not transitional, read every `POLL` seconds meanwhile
    (None: it does not exist)."""
    seen: list[VirtualMachine | None] = [None]

    def ready() -> bool:
        seen[0] = read_vm(arm, vm_id)
        return seen[0] is None or power_state(seen[0]) not in SETTLES_AS

    poll_until(ready, limit=SETTLE_WITHIN, interval=POLL, still=lambda: (
        f"VM {seen[0].name if seen[0] else vm_id} is still "
        f"{power_state(seen[0]) if seen[0] else 'settling'} after {SETTLE_WITHIN:.0f} s"))
    return seen[0]


def retag(arm: ArmClients, vm_id: str, change: Callable[[dict[str, str]], dict[str, str]],
          known: VirtualMachine | None = None) -> bool | None:
    """Set the settled VM's tags to `change(tags)` with a PATCH guarded by its etag (a stale read
    is read again): True when changed, False when already so, None when the VM is gone. The
    first try starts from `known`, a settled read of the VM, when given."""
    _, group, name = id_parts(vm_id)
    first = [known] if known is not None else []

    def update() -> bool | None:
        vm = first.pop() if first else settled(arm, vm_id)
        if vm is None:
            return None
        tags = dict(vm.tags or {})
        wanted = change(tags)
        if wanted == tags:
            return False
        guard: dict[str, Any] = ({"etag": vm.etag, "match_condition": MatchConditions.IfNotModified}
                                 if vm.etag else {})
        follow(arm.compute.virtual_machines.begin_update(
            group, name, VirtualMachineUpdate(tags=wanted), **guard), f"tag update of VM {name}")
        return True

    return write(f"updating the tags of VM {name}", update)


def power_off(arm: ArmClients, vm_id: str) -> None:
    """Power the VM off without shutting its OS down, followed to the end."""
    _, group, name = id_parts(vm_id)
    write(f"powering off VM {name}", lambda: follow(
        arm.compute.virtual_machines.begin_power_off(group, name, skip_shutdown=True),
        f"power-off of VM {name}"))


def start(arm: ArmClients, vm_id: str) -> None:
    """Start the VM, followed to the end."""
    _, group, name = id_parts(vm_id)
    write(f"starting VM {name}", lambda: follow(
        arm.compute.virtual_machines.begin_start(group, name), f"start of VM {name}"))


class AzurePowerInterruption:
    """The power interruption's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = PowerState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The VMs of the zone with the tags that are `running` or `starting` (read-only); with
        `only_new`, those the run has not marked yet."""
        target = request.step.target
        assert isinstance(target, AzureInstancesTarget)
        with self.connection.clients(target.subscription) as arm:
            vms = self.in_zone(arm, request.step.id, target)
        resources = [
            Resource(id=str(vm.id), kind="virtual_machine", name=vm.name,
                     detail={"zone": target.zone, "power_state": power_state(vm),
                             "size": str(getattr(vm.hardware_profile, "vm_size", "") or "")})
            for vm in vms if power_state(vm) in TAKEN
            and not (request.only_new and (vm.tags or {}).get(TAG_RUN) == request.run_id)
        ]
        return ResolvedStep(step_id=request.step.id, action=request.step.action,
                            scope=Scope.of(target), resources=resources)

    @staticmethod
    def in_zone(arm: ArmClients, step_id: str, target: AzureInstancesTarget) -> list[VirtualMachine]:
        """Every VM of the resource group in the zone with the tags, with its instance view, by id;
        TargetNotFound when there is none (as for a blackhole of the zone)."""
        group = target.resource_group
        listed = list_vms(arm, group)
        if listed is None:
            raise TargetNotFound(f"step {step_id}: resource group {group} does not exist in "
                                 f"subscription {target.subscription}")
        region = normalize_location(target.region)
        vms = [vm for vm in listed if target.zone in (vm.zones or [])
               and normalize_location(vm.location) == region
               and all((vm.tags or {}).get(k) == v for k, v in target.tags.items())]
        if not vms:
            tags = ", ".join(f"{k}={v}" for k, v in sorted(target.tags.items()))
            raise TargetNotFound(f"step {step_id}: no VM in zone {target.zone} of {target.region} "
                                 f"in resource group {group}"
                                 + (f" carries the tags {tags}" if tags else ""))
        return sorted(vms, key=lambda vm: str(vm.id).lower())

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each planned VM's power state, waiting for one in transition to settle; a VM
        that is no longer running (or gone) is left out, one another gameday run holds is refused,
        and so is one with no room left for gameday's two tags."""
        resolved = request.resolved
        target = request.step.target
        assert isinstance(target, AzureInstancesTarget)
        if len(request.run_id) > MAX_TAG_VALUE or len(resolved.step_id) > MAX_TAG_VALUE:
            raise Refused(f"run or step id is longer than {MAX_TAG_VALUE} characters, ARM's tag "
                          "limit")
        records: list[VmRecord] = []
        with self.connection.clients(resolved.scope.account) as arm:
            listed = {str(vm.id).lower(): vm for vm in list_vms(arm, target.resource_group) or []}
            for done, resource in enumerate(resolved.resources, start=1):
                progress(done, len(resolved.resources))
                vm = listed.get(resource.id.lower())
                if vm is not None and power_state(vm) in SETTLES_AS:
                    vm = settled(arm, resource.id)
                if vm is None:
                    continue
                tags = vm.tags or {}
                ours = tags.get(TAG_RUN) == request.run_id and tags.get(TAG_STEP) == resolved.step_id
                if TAG_RUN in tags and not ours:
                    raise Refused(f"VM {vm.name} is already held by gameday run {tags[TAG_RUN]} "
                                  f"(step {tags.get(TAG_STEP, '?')})")
                if len(without_marks(tags)) > MAX_TAGS - 2:
                    raise Refused(f"VM {vm.name} already carries {len(tags)} tags; ARM allows "
                                  f"{MAX_TAGS} and gameday needs two for its marks")
                if power_state(vm) == RUNNING or ours:  # ours: an earlier attempt's, so it ran
                    records.append(VmRecord(id=str(vm.id), name=str(vm.name),
                                            zone=target.zone, power=RUNNING))
        state = PowerState(resource_group=target.resource_group, vms=records)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="stop_instances", scope=resolved.scope, resources=len(records),
                          state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Mark each recorded VM with the run and step, then power it off without shutdown,
        `parallel_calls("azure")` at a time; a VM already stopped with our marks is left as it
        is (a repeat after a crash), one that someone else stopped meanwhile is noted."""
        checkpoint = request.checkpoint
        state = PowerState.model_validate(checkpoint.state)
        wanted = marks(checkpoint.run_id, checkpoint.step_id)
        result = FaultResult()
        with self.connection.clients(checkpoint.scope.account) as arm:

            def stop(record: VmRecord) -> str:
                found = settled(arm, record.id)
                if found is None:
                    return "gone"
                tags = found.tags or {}
                ours = all(tags.get(k) == v for k, v in wanted.items())
                if power_state(found) != RUNNING:
                    return "unchanged" if ours else "stopped-by-someone"
                if retag(arm, record.id, lambda tags: {**tags, **wanted}, found) is None:
                    return "gone"
                power_off(arm, record.id)
                return "changed"

            for done, (record, outcome) in enumerate(
                    fan_out(state.vms, stop, parallel_calls("azure")), start=1):
                _tally(result, record, outcome)
                progress(done, len(state.vms))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Each recorded VM running again (started and waited for, whoever stopped it), then
        gameday's tags removed; a VM already running without them is left alone."""
        checkpoint = request.checkpoint
        state = PowerState.model_validate(checkpoint.state)
        result = FaultResult()
        with self.connection.clients(checkpoint.scope.account) as arm:

            def put_back(record: VmRecord) -> str:
                return restore_vm(arm, record.id, record.power)

            for done, (record, outcome) in enumerate(
                    fan_out(state.vms, put_back, parallel_calls("azure")), start=1):
                _tally(result, record, outcome)
                progress(done, len(state.vms))
        return result


def restore_vm(arm: ArmClients, vm_id: str, power: str) -> str:
    """Bring one VM back to `power` (only `running` is ever recorded), then drop gameday's tags:
    "changed", "unchanged" or "gone"."""
    found = settled(arm, vm_id)
    if found is None:
        return "gone"
    started = False
    if power == RUNNING and power_state(found) != RUNNING:
        start(arm, vm_id)
        started = True
        found = settled(arm, vm_id)
        if found is not None and power_state(found) != RUNNING:
            raise CloudError(f"VM {found.name} is {power_state(found)} after its start",
                             retryable=True)
    untagged = retag(arm, vm_id, without_marks, found)
    return "changed" if started or untagged else "unchanged"


def _tally(result: FaultResult, record: VmRecord, outcome: str) -> None:
    if outcome == "changed":
        result.changed += 1
    elif outcome == "unchanged":
        result.unchanged += 1
    elif outcome == "gone":
        result.notes.append(f"VM {record.id} no longer exists; skipped")
    else:
        result.notes.append(f"VM {record.id} was already powered off when gameday came to it; "
                            "left as it was, and started again on restore")
