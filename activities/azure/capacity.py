"""Azure capacity denial, `deny_capacity` (contract §10): each named scale set neither scales nor
repairs.

Before: scale set S has an `automaticRepairsPolicy` (enabled or not, a grace period, a repair
action, or none at all), and the autoscale settings of its resource group whose
`targetResourceUri` is S are enabled or not.
After apply: each enabled setting of S is disabled and each S with repairs on has them off. Each
resource changed carries `gameday-run`, `gameday-step` and its value before
(`gameday-restore-enabled` = `true` on a setting; `gameday-restore-repairs` = `<grace>/<action>`
on a set), set in the same write as the change, so `gameday sweep` can undo it from the tags alone.
A set with repairs already off, and a setting already disabled, are not touched.
After restore: each setting's `enabled` and each set's whole policy exactly as recorded, without
gameday's tags (any other tag kept).

A scale set write is a long-running operation guarded by the set's etag (a stale read is read
again) and followed with heartbeats; a set another operation holds (409
`AnotherOperationInProgress`, `Retry-After`) is written again after the wait (`api.write`).
Insights offers no etag and answers synchronously; its patch model always sends
`properties.enabled` (false unless given), so every setting write names `enabled` itself. A set or
setting deleted meanwhile is said in the result's notes, never retried.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.mgmt.compute.models import (
    AutomaticRepairsPolicy,
    VirtualMachineScaleSet,
    VirtualMachineScaleSetUpdate,
    VirtualMachineScaleSetUpdateProperties,
)
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor.models import AutoscaleSettingResource, AutoscaleSettingResourcePatch
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
    listing,
    normalize_location,
    same_id,
    text,
    write,
)
from activities.azure.power import follow
from activities.base import progress
from gameday.errors import Refused, TargetNotFound
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
from gameday.sweep import Leftover
from gameday.targets import AzureCapacityTarget

TAG_ENABLED = "gameday-restore-enabled"
TAG_REPAIRS = "gameday-restore-repairs"
OURS = (TAG_RUN, TAG_STEP, TAG_ENABLED, TAG_REPAIRS)
SET_KIND, SETTING_KIND = "scale_set", "autoscale_setting"
LEFTOVER_KINDS = ("scale-set", "autoscale-setting")
"""The kinds of `gameday sweep` leftovers this fault leaves: a marked set or setting."""


class Repairs(BaseModel):
    """A scale set's automatic repairs policy before the fault (it was on: only those change)."""

    grace_period: str | None = None
    repair_action: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.grace_period or ''}/{self.repair_action or ''}"

    @classmethod
    def from_tag(cls, value: str) -> Repairs:
        grace, _, action = value.partition("/")
        return cls(grace_period=grace or None, repair_action=action or None)

    def policy(self) -> AutomaticRepairsPolicy:
        return AutomaticRepairsPolicy(enabled=True, grace_period=self.grace_period,
                                      repair_action=self.repair_action)


class SetRecord(BaseModel):
    id: str
    name: str
    repairs: Repairs


class SettingRecord(BaseModel):
    id: str
    name: str
    scale_set: str


class CapacityState(BaseModel):
    resource_group: str
    scale_sets: list[SetRecord]
    settings: list[SettingRecord]
    """Settings that were enabled: restore enables them again."""


def without_ours(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k not in OURS}


def repairs_on(vmss: VirtualMachineScaleSet) -> bool:
    policy = vmss.automatic_repairs_policy
    return bool(policy is not None and policy.enabled)


def repairs_of(vmss: VirtualMachineScaleSet) -> Repairs:
    policy = vmss.automatic_repairs_policy
    return Repairs(grace_period=getattr(policy, "grace_period", None),
                   repair_action=text(getattr(policy, "repair_action", None)) or None)


def read_set(arm: ArmClients, set_id: str) -> VirtualMachineScaleSet | None:
    _, group, name = id_parts(set_id)
    return find(f"reading scale set {name}",
                lambda: arm.compute.virtual_machine_scale_sets.get(group, name))


def read_setting(monitor: MonitorManagementClient, setting_id: str
                 ) -> AutoscaleSettingResource | None:
    _, group, name = id_parts(setting_id)
    return find(f"reading autoscale setting {name}",
                lambda: monitor.autoscale_settings.get(group, name))


def patch_set(arm: ArmClients, set_id: str, wanted: Any) -> str:
    """Write the set's tags and repairs policy to `wanted(vmss)` (tags, policy) or leave it
    (None), guarded by its etag and followed to the end: "changed", "unchanged" or "gone"."""
    _, group, name = id_parts(set_id)

    def update() -> str:
        vmss = read_set(arm, set_id)
        if vmss is None:
            return "gone"
        change = wanted(vmss)
        if change is None:
            return "unchanged"
        tags, policy = change
        guard: dict[str, Any] = ({"etag": vmss.etag, "match_condition": MatchConditions.IfNotModified}
                                 if vmss.etag else {})
        follow(arm.compute.virtual_machine_scale_sets.begin_update(
            group, name, VirtualMachineScaleSetUpdate(
                tags=tags, properties=VirtualMachineScaleSetUpdateProperties(
                    automatic_repairs_policy=policy)),
            **guard), f"update of scale set {name}")
        return "changed"

    return write(f"updating scale set {name}", update)


def patch_setting(monitor: MonitorManagementClient, setting_id: str, wanted: Any) -> str:
    """Write the setting's tags and `enabled` to `wanted(setting)` (tags, enabled) or leave it
    (None): "changed", "unchanged" or "gone". Insights has no etag for it."""
    _, group, name = id_parts(setting_id)

    def update() -> str:
        setting = read_setting(monitor, setting_id)
        if setting is None:
            return "gone"
        change = wanted(setting)
        if change is None:
            return "unchanged"
        tags, enabled = change
        monitor.autoscale_settings.update(group, name, AutoscaleSettingResourcePatch(
            tags=tags, enabled=enabled))
        return "changed"

    return write(f"updating autoscale setting {name}", update)


def restore_set(arm: ArmClients, set_id: str, repairs: Repairs) -> str:
    """Repairs on again with the recorded grace period and action, gameday's tags gone."""
    def wanted(vmss: VirtualMachineScaleSet) -> Any:
        tags = dict(vmss.tags or {})
        if repairs_on(vmss) and repairs_of(vmss) == repairs and tags == without_ours(tags):
            return None
        return without_ours(tags), repairs.policy()

    return patch_set(arm, set_id, wanted)


def restore_setting(monitor: MonitorManagementClient, setting_id: str) -> str:
    """Enabled again, gameday's tags gone."""
    def wanted(setting: AutoscaleSettingResource) -> Any:
        tags = dict(setting.tags or {})
        if setting.enabled and tags == without_ours(tags):
            return None
        return without_ours(tags), True

    return patch_setting(monitor, setting_id, wanted)


class AzureCapacityDenial:
    """The capacity denial's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = CapacityState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def _monitor(self, subscription: str) -> MonitorManagementClient:
        return self.connection.client(MonitorManagementClient, subscription)

    def _found(self, arm: ArmClients, monitor: MonitorManagementClient, step_id: str,
               target: AzureCapacityTarget) -> list[tuple[VirtualMachineScaleSet,
                                                          list[AutoscaleSettingResource]]]:
        """Each named set with its autoscale settings; TargetNotFound for one that does not exist
        (or is in another region than the target names)."""
        group = target.resource_group
        sets = []
        for name in dict.fromkeys(target.scale_sets):
            vmss = read_set(arm, f"/subscriptions/{target.subscription}/resourceGroups/{group}/"
                                 f"providers/Microsoft.Compute/virtualMachineScaleSets/{name}")
            if vmss is None:
                raise TargetNotFound(f"step {step_id}: scale set {name} does not exist in "
                                     f"resource group {group} of subscription {target.subscription}")
            if target.region and normalize_location(vmss.location) != normalize_location(target.region):
                raise TargetNotFound(f"step {step_id}: scale set {name} is in {vmss.location}, "
                                     f"not in {target.region}")
            sets.append(vmss)
        settings = listing(f"listing the autoscale settings of resource group {group}",
                           lambda: monitor.autoscale_settings.list_by_resource_group(group))
        return [(vmss, sorted((s for s in settings if same_id(s.target_resource_uri, vmss.id)),
                              key=lambda s: str(s.id).lower()))
                for vmss in sets]

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The named sets with repairs on and their enabled settings (read-only); with
        `only_new`, those the run has not marked yet."""
        target = request.step.target
        assert isinstance(target, AzureCapacityTarget)
        resources: list[Resource] = []
        with self.connection.clients(target.subscription) as arm:
            monitor: MonitorManagementClient = self._monitor(target.subscription)
            for vmss, settings in self._found(arm, monitor, request.step.id, target):
                for setting in settings:
                    if setting.enabled and not (request.only_new and
                                                (setting.tags or {}).get(TAG_RUN) == request.run_id):
                        resources.append(Resource(id=str(setting.id), kind=SETTING_KIND,
                                                  name=setting.name,
                                                  detail={"scale_set": str(vmss.name)}))
                if repairs_on(vmss) and not (request.only_new and
                                             (vmss.tags or {}).get(TAG_RUN) == request.run_id):
                    resources.append(Resource(id=str(vmss.id), kind=SET_KIND, name=vmss.name,
                                              detail={"zones": ",".join(vmss.zones or []),
                                                      "repairs": repairs_of(vmss).tag}))
        return ResolvedStep(step_id=request.step.id, action=request.step.action,
                            scope=Scope.of(target), resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each planned set's repairs policy and each planned setting (it was enabled);
        one already marked by this step is recorded from its tags (an earlier attempt changed
        it); one held by another run, or without room for gameday's tags, is refused."""
        resolved = request.resolved
        target = request.step.target
        assert isinstance(target, AzureCapacityTarget)
        if len(request.run_id) > MAX_TAG_VALUE or len(resolved.step_id) > MAX_TAG_VALUE:
            raise Refused(f"run or step id is longer than {MAX_TAG_VALUE} characters, ARM's tag "
                          "limit")
        sets: list[SetRecord] = []
        settings: list[SettingRecord] = []
        with self.connection.clients(resolved.scope.account) as arm:
            monitor: MonitorManagementClient = self._monitor(resolved.scope.account)
            for done, resource in enumerate(resolved.resources, start=1):
                progress(done, len(resolved.resources))
                found: Any = (read_set(arm, resource.id) if resource.kind == SET_KIND
                              else read_setting(monitor, resource.id))
                if found is None:
                    continue
                tags = dict(found.tags or {})
                ours = tags.get(TAG_RUN) == request.run_id and tags.get(TAG_STEP) == resolved.step_id
                if TAG_RUN in tags and not ours:
                    raise Refused(f"{resource.kind.replace('_', ' ')} {found.name} is already held "
                                  f"by gameday run {tags[TAG_RUN]} (step {tags.get(TAG_STEP, '?')})")
                if len(without_ours(tags)) > MAX_TAGS - 3:
                    raise Refused(f"{resource.kind.replace('_', ' ')} {found.name} already carries "
                                  f"{len(tags)} tags; ARM allows {MAX_TAGS} and gameday needs three")
                if resource.kind == SET_KIND:
                    if ours and TAG_REPAIRS in tags:
                        sets.append(SetRecord(id=str(found.id), name=str(found.name),
                                              repairs=Repairs.from_tag(tags[TAG_REPAIRS])))
                    elif repairs_on(found):
                        sets.append(SetRecord(id=str(found.id), name=str(found.name),
                                              repairs=repairs_of(found)))
                elif found.enabled or (ours and TAG_ENABLED in tags):
                    settings.append(SettingRecord(id=str(found.id), name=str(found.name),
                                                  scale_set=resource.detail.get("scale_set", "")))
        state = CapacityState(resource_group=target.resource_group, scale_sets=sets,
                              settings=settings)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="deny_capacity", scope=resolved.scope,
                          resources=len(sets) + len(settings), state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Disable each recorded setting, then turn each recorded set's repairs off, each in one
        write with gameday's tags; what is already so with our marks is left as it is."""
        checkpoint = request.checkpoint
        state = CapacityState.model_validate(checkpoint.state)
        marks = {TAG_RUN: checkpoint.run_id, TAG_STEP: checkpoint.step_id}
        result = FaultResult()
        total = len(state.settings) + len(state.scale_sets)
        with self.connection.clients(checkpoint.scope.account) as arm:
            monitor: MonitorManagementClient = self._monitor(checkpoint.scope.account)
            for done, setting in enumerate(state.settings, start=1):
                def disable(found: AutoscaleSettingResource) -> Any:
                    tags = dict(found.tags or {})
                    if not found.enabled and tags.get(TAG_RUN) == checkpoint.run_id:
                        return None
                    return {**tags, **marks, TAG_ENABLED: "true"}, False

                _tally(result, f"autoscale setting {setting.id}",
                       patch_setting(monitor, setting.id, disable))
                progress(done, total)
            for done, record in enumerate(state.scale_sets, start=len(state.settings) + 1):
                def repairs_off(found: VirtualMachineScaleSet, record: SetRecord = record) -> Any:
                    tags = dict(found.tags or {})
                    if not repairs_on(found) and tags.get(TAG_RUN) == checkpoint.run_id:
                        return None
                    off = AutomaticRepairsPolicy(enabled=False,
                                                 grace_period=record.repairs.grace_period,
                                                 repair_action=record.repairs.repair_action)
                    return {**tags, **marks, TAG_REPAIRS: record.repairs.tag}, off

                _tally(result, f"scale set {record.id}", patch_set(arm, record.id, repairs_off))
                progress(done, total)
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Each recorded set's repairs policy and each recorded setting's `enabled` exactly as
        recorded, then gameday's tags removed; from the checkpoint alone."""
        checkpoint = request.checkpoint
        state = CapacityState.model_validate(checkpoint.state)
        result = FaultResult()
        total = len(state.settings) + len(state.scale_sets)
        with self.connection.clients(checkpoint.scope.account) as arm:
            monitor: MonitorManagementClient = self._monitor(checkpoint.scope.account)
            for done, record in enumerate(state.scale_sets, start=1):
                _tally(result, f"scale set {record.id}", restore_set(arm, record.id, record.repairs))
                progress(done, total)
            for done, setting in enumerate(state.settings, start=len(state.scale_sets) + 1):
                _tally(result, f"autoscale setting {setting.id}",
                       restore_setting(monitor, setting.id))
                progress(done, total)
        return result


    # --- gameday sweep: leftovers from their tags alone -----------------------------------

    def leftovers(self, subscription: str) -> list[Leftover]:
        """Every scale set and autoscale setting of the subscription that carries a run's mark."""
        with self.connection.clients(subscription) as arm:
            sets = listing(f"listing the scale sets of subscription {subscription}",
                           arm.compute.virtual_machine_scale_sets.list_all)
        monitor: MonitorManagementClient = self._monitor(subscription)
        settings = listing(f"listing the autoscale settings of subscription {subscription}",
                           monitor.autoscale_settings.list_by_subscription)
        found = []
        for kind, items in (("scale-set", sets), ("autoscale-setting", settings)):
            for item in sorted(items, key=lambda i: str(i.id).lower()):
                tags = item.tags or {}
                if TAG_RUN not in tags:
                    continue
                restore = tags.get(TAG_REPAIRS if kind == "scale-set" else TAG_ENABLED, "")
                found.append(Leftover(cloud="azure", kind=kind, id=str(item.id),
                                      run_id=tags[TAG_RUN], step_id=tags.get(TAG_STEP, ""),
                                      location=subscription,
                                      detail={"resource_group": id_parts(str(item.id))[1],
                                              "restore": restore}))
        return found

    def sweep(self, leftover: Leftover, result: FaultResult) -> None:
        """Repairs on again (a set's tag holds its grace period and action) or the setting
        enabled again, then gameday's tags gone; one marked by another run is left alone."""
        with self.connection.clients(leftover.location) as arm:
            monitor: MonitorManagementClient = self._monitor(leftover.location)
            found: Any = (read_set(arm, leftover.id) if leftover.kind == "scale-set"
                          else read_setting(monitor, leftover.id))
            if found is None:
                result.notes.append(f"{leftover.kind} {leftover.id} no longer exists; nothing to "
                                    "restore")
                return
            tags = dict(found.tags or {})
            if tags.get(TAG_RUN) != leftover.run_id:
                result.notes.append(f"{leftover.kind} {leftover.id} no longer carries the mark of "
                                    f"run {leftover.run_id}; left alone")
                result.unchanged += 1
                return
            if leftover.kind == "scale-set":
                outcome = (restore_set(arm, leftover.id, Repairs.from_tag(tags[TAG_REPAIRS]))
                           if TAG_REPAIRS in tags else patch_set(arm, leftover.id, _untag_set))
            else:
                outcome = (restore_setting(monitor, leftover.id) if TAG_ENABLED in tags
                           else patch_setting(monitor, leftover.id, _untag_setting))
            _tally(result, f"{leftover.kind} {leftover.id}", outcome)


def _untag_set(vmss: VirtualMachineScaleSet) -> Any:
    return without_ours(dict(vmss.tags or {})), vmss.automatic_repairs_policy


def _untag_setting(setting: AutoscaleSettingResource) -> Any:
    return without_ours(dict(setting.tags or {})), bool(setting.enabled)


def _tally(result: FaultResult, what: str, outcome: str) -> None:
    if outcome == "changed":
        result.changed += 1
    elif outcome == "unchanged":
        result.unchanged += 1
    else:
        result.notes.append(f"{what} no longer exists; skipped")
