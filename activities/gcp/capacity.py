"""GCP capacity denial (contract §10, deny_capacity): the region's named MIGs neither scale nor heal.

Before: each named regional managed instance group M may have an autoscaler A (the one its
`status.autoscaler` names) whose `autoscalingPolicy.mode` is S (ON, OFF, ONLY_SCALE_OUT...), and
autohealing policies P (health check and initial delay).
After apply: A's mode is OFF and M has no autohealing policy (a fingerprinted patch with one
empty policy, which is how Compute Engine clears them; a stale fingerprint is read again and
retried). What is already so is left as it is: an autoscaler that was OFF stays OFF.
After restore: A's mode is S and M's policies are P again, read from the checkpoint alone; a MIG
or autoscaler deleted meanwhile is noted, not recreated.

No marks: a MIG has no labels, and the only free text an autoscaler offers (`description`) is
the owner's, absent where a MIG has no autoscaler, and too small to hold a MIG's policies. The
sweeper therefore cannot find a leftover from the cloud alone; the checkpoint (in the workflow's
history and handed to the watchdog) is what restores, as for region evacuations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from google.api_core import exceptions
from google.cloud import compute_v1
from pydantic import BaseModel

from activities.base import progress
from activities.gcp.api import (
    FINGERPRINT_ATTEMPTS,
    Compute,
    call,
    compute_clients,
    last,
    mutate,
    translated,
)
from gameday.errors import CloudError, TargetNotFound
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
from gameday.targets import GcpCapacityTarget

OFF = "OFF"
Outcome = Literal["changed", "unchanged", "gone"]


class HealingPolicy(BaseModel):
    health_check: str = ""
    initial_delay_sec: int | None = None

    def text(self) -> str:
        return f"{last(self.health_check) or 'instance status'} after {self.initial_delay_sec}s"


class DeniedGroup(BaseModel):
    """One MIG as it was before the fault: its autoscaler and mode, its autohealing policies."""

    name: str
    autoscaler: str | None = None
    mode: str | None = None
    policies: list[HealingPolicy] = []


class CapacityState(BaseModel):
    groups: list[DeniedGroup]


def _policies(manager: compute_v1.InstanceGroupManager) -> list[HealingPolicy]:
    return [HealingPolicy(health_check=p.health_check,
                          initial_delay_sec=p.initial_delay_sec if "initial_delay_sec" in p
                          else None)
            for p in manager.auto_healing_policies]


def _wire(policies: list[HealingPolicy]) -> list[compute_v1.InstanceGroupManagerAutoHealingPolicy]:
    """Policies as a patch sends them: none is one empty policy (an empty list is not sent)."""
    if not policies:
        return [compute_v1.InstanceGroupManagerAutoHealingPolicy()]
    sent = []
    for policy in policies:
        fields: dict[str, Any] = {}
        if policy.health_check:
            fields["health_check"] = policy.health_check
        if policy.initial_delay_sec is not None:
            fields["initial_delay_sec"] = policy.initial_delay_sec
        sent.append(compute_v1.InstanceGroupManagerAutoHealingPolicy(**fields))
    return sent


class GcpCapacityDenial:
    """The capacity denial's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = CapacityState

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    # --- reading ----------------------------------------------------------------------------

    def _manager(self, scope: Scope, name: str) -> compute_v1.InstanceGroupManager | None:
        try:
            return call(self._clients().managers.get, project=scope.account,
                        region=scope.region, instance_group_manager=name)
        except exceptions.NotFound:
            return None

    def _autoscaler(self, scope: Scope, name: str) -> compute_v1.Autoscaler | None:
        try:
            return call(self._clients().autoscalers.get, project=scope.account,
                        region=scope.region, autoscaler=name)
        except exceptions.NotFound:
            return None

    def _read(self, scope: Scope, step_id: str, name: str) -> DeniedGroup:
        """The MIG's autoscaler, mode and policies now; TargetNotFound when it does not exist."""
        manager = self._manager(scope, name)
        if manager is None:
            raise TargetNotFound(f"step {step_id}: managed instance group {name} does not exist "
                                 f"in region {scope.region} of project {scope.account}")
        group = DeniedGroup(name=name, policies=_policies(manager))
        if manager.status.autoscaler:
            scaler = self._autoscaler(scope, last(manager.status.autoscaler))
            if scaler is not None:
                group.autoscaler = scaler.name
                group.mode = scaler.autoscaling_policy.mode
        return group

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """Each named MIG with its autoscaler, mode and autohealing policies; an unknown MIG is
        TargetNotFound. Drift checks find nothing new: the MIGs are named."""
        target = request.step.target
        assert isinstance(target, GcpCapacityTarget)
        scope = Scope.of(target)
        resources = []
        if not request.only_new:
            with translated(f"reading managed instance groups in {target.region}"):
                for name in target.instance_group_managers:
                    group = self._read(scope, request.step.id, name)
                    resources.append(Resource(id=name, kind="instance-group-manager", name=name,
                                              detail={
                        "region": target.region, "autoscaler": group.autoscaler or "none",
                        "mode": group.mode or "none",
                        "autohealing": "; ".join(p.text() for p in group.policies) or "none"}))
        return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each planned MIG's autoscaler name and mode and its autohealing policies."""
        resolved = request.resolved
        with translated(f"reading managed instance groups in {resolved.scope.region}"):
            groups = [self._read(resolved.scope, resolved.step_id, r.name or r.id)
                      for r in resolved.resources]
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="deny_capacity", scope=resolved.scope, resources=len(groups),
                          state=CapacityState(groups=groups).model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Each recorded MIG's autoscaler OFF and its autohealing removed; what already is, is
        left."""
        scope = request.checkpoint.scope
        state = CapacityState.model_validate(request.checkpoint.state)
        result = FaultResult()
        with translated(f"denying capacity in {scope.region}"):
            for done, group in enumerate(state.groups):
                outcomes = [self.set_policies(scope, group.name, [])]
                if group.autoscaler:
                    outcomes.append(self.set_mode(scope, group.autoscaler, OFF))
                _count(result, group, outcomes, "was not changed")
                progress(done + 1, len(state.groups))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Each recorded MIG's autohealing policies and autoscaler mode exactly as recorded. Safe
        to repeat; a MIG or autoscaler gone meanwhile is noted."""
        scope = request.checkpoint.scope
        state = CapacityState.model_validate(request.checkpoint.state)
        result = FaultResult()
        with translated(f"restoring capacity in {scope.region}"):
            for done, group in enumerate(state.groups):
                outcomes = [self.set_policies(scope, group.name, group.policies)]
                if group.autoscaler and group.mode:
                    outcomes.append(self.set_mode(scope, group.autoscaler, group.mode))
                _count(result, group, outcomes, "has nothing to restore")
                progress(done + 1, len(state.groups))
        return result

    # --- one MIG --------------------------------------------------------------------------

    def set_mode(self, scope: Scope, name: str, mode: str) -> Outcome:
        """The autoscaler's mode set to `mode` unless it is so already (autoscalers have no
        fingerprint: the patch changes the mode alone)."""
        scaler = self._autoscaler(scope, name)
        if scaler is None:
            return "gone"
        if scaler.autoscaling_policy.mode == mode:
            return "unchanged"
        try:
            compute = self._clients()
            mutate(compute, compute.autoscalers.patch_unary,
                   request=compute_v1.PatchRegionAutoscalerRequest(
                       project=scope.account, region=scope.region, autoscaler=name,
                       autoscaler_resource=compute_v1.Autoscaler(
                           name=name, autoscaling_policy=compute_v1.AutoscalingPolicy(mode=mode))))
        except exceptions.NotFound:
            return "gone"
        return "changed"

    def set_policies(self, scope: Scope, name: str, wanted: list[HealingPolicy]) -> Outcome:
        """The MIG's autohealing policies set to `wanted`, with its fingerprint, read again on a
        stale one."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            manager = self._manager(scope, name)
            if manager is None:
                return "gone"
            if _policies(manager) == wanted:
                return "unchanged"
            try:
                compute = self._clients()
                mutate(compute, compute.managers.patch_unary,
                       request=compute_v1.PatchRegionInstanceGroupManagerRequest(
                           project=scope.account, region=scope.region, instance_group_manager=name,
                           instance_group_manager_resource=compute_v1.InstanceGroupManager(
                               fingerprint=manager.fingerprint,
                               auto_healing_policies=_wire(wanted))))
            except exceptions.PreconditionFailed:
                continue
            except exceptions.NotFound:
                return "gone"
            return "changed"
        raise CloudError(f"managed instance group {name} kept changing under gameday "
                         f"({FINGERPRINT_ATTEMPTS} stale fingerprints in a row)", retryable=True)


def _count(result: FaultResult, group: DeniedGroup, outcomes: list[Outcome], gone: str) -> None:
    if outcomes[0] == "gone":
        result.notes.append(f"managed instance group {group.name} no longer exists; it {gone}")
        return
    if "gone" in outcomes[1:]:
        result.notes.append(f"autoscaler {group.autoscaler} of managed instance group "
                            f"{group.name} no longer exists; its mode {gone}")
    if "changed" in outcomes:
        result.changed += 1
    else:
        result.unchanged += 1
