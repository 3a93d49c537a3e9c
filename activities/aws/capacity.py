"""AWS capacity denial (contract §10, `deny_capacity`): Auto Scaling stops launching into the zone.

Before: each named Auto Scaling group launches into the subnets of its `VPCZoneIdentifier` (some
of them in the zone), with some processes suspended (often none).
After apply: each group that had subnets in the zone has them removed from its
`VPCZoneIdentifier` (the others keep their order) and `AZRebalance` suspended, so that it neither
launches into the zone nor rebalances towards it. Each carries the run and step (`gameday:run`,
`gameday:step`), its whole `VPCZoneIdentifier` before (`gameday:restore:subnets:1`, `:2`...,
whole subnet ids, each value at most 256 characters) and, when gameday suspended `AZRebalance`,
`gameday:capacity:resumes` = `AZRebalance`: enough for `gameday sweep` to undo it from the tags
alone.
After restore: each group's `VPCZoneIdentifier` is exactly as recorded (same subnets, same order),
`AZRebalance` is resumed only if gameday suspended it, and gameday's tags are gone.

A named group with no subnet in the zone is left out (the resolve logs it); an unknown group is
`TargetNotFound`; a group that would be left with no subnet is refused before anything changes,
as is one another GameDay step holds or one without room for gameday's tags (Auto Scaling allows
50 per group). Suspending is done before the subnets are removed, so that the group does not
rebalance in reaction. On real AWS, removing a subnet may make the group replace the instances it
runs there (they are outside its subnets now); the lab (moto) does not model that.

The power interruption (`activities.aws.power`) holds a group's `HealthCheck` and
`ReplaceUnhealthy` under its own tags; this fault touches only `AZRebalance`, the subnets and its
own tags, so each restores only its own part of a group both hold.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio import activity

from activities.aws.api import MAX_TAG_VALUE, TAG_RESTORE, TAG_RUN, TAG_STEP, AwsApi
from activities.base import progress
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
from gameday.sweep import Leftover
from gameday.targets import AwsCapacityTarget

PROCESS = "AZRebalance"
TAG_SUBNETS = f"{TAG_RESTORE}subnets:"
TAG_RESUMES = "gameday:capacity:resumes"
MAX_TAGS = 50
ASG_BATCH = 50  # DescribeAutoScalingGroups takes 50 names
BUSY = ("ScalingActivityInProgressFault", "ResourceContentionFault")
"""Auto Scaling's answers while another change of the group is under way: try again later."""


class DeniedGroup(BaseModel):
    """One group the fault narrows: its subnets before (in order), those in the zone, and whether
    `AZRebalance` was suspended before."""

    name: str
    subnets: list[str]
    removed: list[str]
    rebalance_suspended: bool

    @property
    def remaining(self) -> list[str]:
        return [s for s in self.subnets if s not in self.removed]


class CapacityState(BaseModel):
    groups: list[DeniedGroup]


def group_tags(group: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group.get("Tags", [])}


def subnets_of(group: dict[str, Any]) -> list[str]:
    return [s.strip() for s in (group.get("VPCZoneIdentifier") or "").split(",") if s.strip()]


def suspended_of(group: dict[str, Any]) -> set[str]:
    return {p["ProcessName"] for p in group.get("SuspendedProcesses", [])}


def subnet_tags(subnets: list[str]) -> dict[str, str]:
    """The subnets in order, as few numbered tags as fit (whole ids, values ≤ 256 characters)."""
    values: list[str] = []
    for subnet in subnets:
        if values and len(values[-1]) + 1 + len(subnet) <= MAX_TAG_VALUE:
            values[-1] += f",{subnet}"
        else:
            values.append(subnet)
    return {f"{TAG_SUBNETS}{n}": v for n, v in enumerate(values, start=1)}


def recorded_subnets(tags: dict[str, str]) -> list[str]:
    """The `VPCZoneIdentifier` the tags recorded, in order."""
    numbered = sorted((int(k.removeprefix(TAG_SUBNETS)), v) for k, v in tags.items()
                      if k.startswith(TAG_SUBNETS) and k.removeprefix(TAG_SUBNETS).isdigit())
    return [s for _, value in numbered for s in value.split(",") if s]


def marks_of(group: DeniedGroup, run_id: str, step_id: str) -> dict[str, str]:
    """Every tag this fault puts on the group."""
    marks = {TAG_RUN: run_id, TAG_STEP: step_id, **subnet_tags(group.subnets)}
    if not group.rebalance_suspended:
        marks[TAG_RESUMES] = PROCESS
    return marks


def ours(key: str) -> bool:
    return key in (TAG_RUN, TAG_STEP, TAG_RESUMES) or key.startswith(TAG_SUBNETS)


class AwsCapacityDenial:
    """Auto Scaling calls of `deny_capacity`: resolve, prepare, apply and restore."""

    State = CapacityState

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    # --- reads ------------------------------------------------------------------------------

    def groups(self, region: str, names: list[str],
               account: str | None = None) -> dict[str, dict[str, Any]]:
        autoscaling = self.api.client("autoscaling", region, account)
        found: dict[str, dict[str, Any]] = {}
        unique = sorted(set(names))
        for start in range(0, len(unique), ASG_BATCH):
            for group in self.api.pages(autoscaling, "describe_auto_scaling_groups",
                                        "AutoScalingGroups",
                                        AutoScalingGroupNames=unique[start:start + ASG_BATCH]):
                found[group["AutoScalingGroupName"]] = group
        return found

    def zones_of(self, region: str, subnets: list[str],
                 account: str | None = None) -> dict[str, str]:
        """Subnet id -> its zone, for the subnets that exist."""
        if not subnets:
            return {}
        ec2 = self.api.ec2(region, account)
        found = self.api.pages(ec2, "describe_subnets", "Subnets",
                               Filters=[{"Name": "subnet-id", "Values": sorted(set(subnets))}])
        return {s["SubnetId"]: s["AvailabilityZone"] for s in found}

    def _denied(self, step_id: str, region: str, zone: str, name: str,
                group: dict[str, Any], account: str | None = None) -> DeniedGroup | None:
        """What the fault would do to one group (None: it has no subnet in the zone); refused when
        the group would be left with no subnet."""
        subnets = subnets_of(group)
        if not subnets:
            raise Refused(f"step {step_id}: Auto Scaling group {name} has no subnets (it launches "
                          "by Availability Zones alone); deny_capacity narrows its subnets")
        zones = self.zones_of(region, subnets, account)
        removed = [s for s in subnets if zones.get(s) == zone]
        if not removed:
            return None
        if len(removed) == len(subnets):
            raise Refused(f"step {step_id}: Auto Scaling group {name} would have no subnet left "
                          f"(all of {', '.join(subnets)} are in {zone}); leave it out, or give it "
                          "a subnet in another zone")
        return DeniedGroup(name=name, subnets=subnets, removed=removed,
                           rebalance_suspended=PROCESS in suspended_of(group))

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """Each named group with subnets in the zone, with the subnets it would lose."""
        target = request.step.target
        assert isinstance(target, AwsCapacityTarget)
        scope = Scope.of(target)
        self.api.check_identity(scope)
        found = self.groups(target.region, target.auto_scaling_groups, scope.account)
        unknown = [n for n in target.auto_scaling_groups if n not in found]
        if unknown:
            raise TargetNotFound(f"step {request.step.id}: Auto Scaling group(s) "
                                 f"{', '.join(unknown)} do not exist in {target.region}")
        resources: list[Resource] = []
        for name in target.auto_scaling_groups:
            group = found[name]
            if request.only_new and group_tags(group).get(TAG_RUN) == request.run_id:
                continue
            denied = self._denied(request.step.id, target.region, target.zone_name, name, group,
                                  scope.account)
            if denied is None:
                if activity.in_activity():
                    activity.logger.info("step %s: Auto Scaling group %s has no subnet in %s; "
                                         "left out", request.step.id, name, target.zone)
                continue
            resources.append(Resource(
                id=name, kind="auto-scaling-group", name=name,
                detail={"zone": target.zone, "removes": ",".join(denied.removed),
                        "keeps": ",".join(denied.remaining),
                        "suspends": "" if denied.rebalance_suspended else PROCESS}))
        return ResolvedStep(step_id=request.step.id, action="deny_capacity", scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each group's `VPCZoneIdentifier` and whether `AZRebalance` was suspended, read
        again now; refuse a group held by another step, left without a subnet, or without room
        for gameday's tags."""
        resolved = request.resolved
        scope = resolved.scope
        zone = scope.zone or ""
        if len(request.run_id) > MAX_TAG_VALUE:
            raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, Auto Scaling's tag "
                          "limit")
        names = [r.name or r.id for r in resolved.resources]
        found = self.groups(scope.region, names, scope.account)
        denied: list[DeniedGroup] = []
        for name in names:
            group = found.get(name)
            if group is None:
                raise TargetNotFound(f"step {resolved.step_id}: Auto Scaling group {name} no "
                                     f"longer exists in {scope.region}")
            tags = group_tags(group)
            holder = tags.get(TAG_RUN)
            if holder and (holder, tags.get(TAG_STEP)) != (request.run_id, resolved.step_id):
                raise Refused(f"step {resolved.step_id}: Auto Scaling group {name} is held by "
                              f"GameDay {holder} (step {tags.get(TAG_STEP, '?')}); let it finish, "
                              "or `gameday sweep` it")
            if holder and recorded_subnets(tags):  # a prepare repeated after the apply began
                record = DeniedGroup(name=name, subnets=recorded_subnets(tags),
                                     removed=[], rebalance_suspended=TAG_RESUMES not in tags)
                zones = self.zones_of(scope.region, record.subnets, scope.account)
                record.removed = [s for s in record.subnets if zones.get(s) == zone]
            else:
                made = self._denied(resolved.step_id, scope.region, zone, name, group,
                                    scope.account)
                if made is None:
                    continue  # its subnets in the zone went away meanwhile
                record = made
            others = [k for k in tags if not ours(k)]
            needed = len(marks_of(record, request.run_id, resolved.step_id))
            if len(others) + needed > MAX_TAGS:
                raise Refused(f"step {resolved.step_id}: Auto Scaling group {name} has "
                              f"{len(others)} tags: no room for gameday's {needed} (at most "
                              f"{MAX_TAGS} per group)")
            denied.append(record)
        state = CapacityState(groups=denied)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id, action="deny_capacity",
                          scope=scope, resources=len(denied), state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Per group: tag it, suspend `AZRebalance` unless it was suspended before, then remove
        the zone's subnets. A repeat changes nothing changed already."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        self.api.check_identity(scope)
        state = CapacityState.model_validate(checkpoint.state)
        autoscaling = self.api.client("autoscaling", scope.region, scope.account)
        found = self.groups(scope.region, [g.name for g in state.groups], scope.account)
        result = FaultResult()
        for done, record in enumerate(state.groups):
            group = found.get(record.name)
            if group is None:
                result.notes.append(f"Auto Scaling group {record.name} no longer exists")
                continue
            marks = marks_of(record, checkpoint.run_id, checkpoint.step_id)
            tags = group_tags(group)
            missing = {k: v for k, v in marks.items() if tags.get(k) != v}
            if missing:
                self.api.call(f"CreateOrUpdateTags {record.name}", autoscaling.create_or_update_tags,
                              Tags=[{"ResourceId": record.name, "ResourceType": "auto-scaling-group",
                                     "Key": k, "Value": v, "PropagateAtLaunch": False}
                                    for k, v in missing.items()])
            changed = False
            if not record.rebalance_suspended and PROCESS not in suspended_of(group):
                self._busy(f"SuspendProcesses {record.name}", autoscaling.suspend_processes,
                           AutoScalingGroupName=record.name, ScalingProcesses=[PROCESS])
                changed = True
            if subnets_of(group) != record.remaining:
                self._busy(f"UpdateAutoScalingGroup {record.name}",
                           autoscaling.update_auto_scaling_group, AutoScalingGroupName=record.name,
                           VPCZoneIdentifier=",".join(record.remaining))
                changed = True
            result.changed += changed
            result.unchanged += not changed
            progress(done + 1, len(state.groups))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Per group, from the checkpoint alone: its `VPCZoneIdentifier` as recorded, `AZRebalance`
        resumed if gameday suspended it, gameday's tags removed. Safe to repeat."""
        checkpoint = request.checkpoint
        state = CapacityState.model_validate(checkpoint.state)
        result = FaultResult()
        for done, record in enumerate(state.groups):
            self.restore_group(checkpoint.scope.region, record, result, checkpoint.scope.account)
            progress(done + 1, len(state.groups))
        return result

    # --- shared with the sweeper ---------------------------------------------------------

    def restore_group(self, region: str, record: DeniedGroup, result: FaultResult,
                      account: str | None = None) -> None:
        autoscaling = self.api.client("autoscaling", region, account)
        group = self.groups(region, [record.name], account).get(record.name)
        if group is None:
            result.notes.append(f"Auto Scaling group {record.name} no longer exists; nothing to "
                                "restore")
            return
        changed = False
        if subnets_of(group) != record.subnets:
            self._busy(f"UpdateAutoScalingGroup {record.name}",
                       autoscaling.update_auto_scaling_group, AutoScalingGroupName=record.name,
                       VPCZoneIdentifier=",".join(record.subnets))
            changed = True
        if not record.rebalance_suspended and PROCESS in suspended_of(group):
            self._busy(f"ResumeProcesses {record.name}", autoscaling.resume_processes,
                       AutoScalingGroupName=record.name, ScalingProcesses=[PROCESS])
            changed = True
        keys = sorted(k for k in group_tags(group) if ours(k))
        if keys:
            self.api.call(f"DeleteTags {record.name}", autoscaling.delete_tags, Tags=[
                {"ResourceId": record.name, "ResourceType": "auto-scaling-group", "Key": k}
                for k in keys])
        result.changed += changed
        result.unchanged += not changed

    def _busy(self, doing: str, fn: Any, **kwargs: Any) -> None:
        """One Auto Scaling change; the group being changed by someone else is worth a retry."""
        try:
            self.api.call(doing, fn, **kwargs)
        except CloudError as exc:
            if exc.code in BUSY:
                raise CloudError(f"{doing}: the group is being changed already ({exc.code}); "
                                 "trying again", retryable=True, code=exc.code) from exc
            raise

    # --- the sweeper's part -----------------------------------------------------------------

    def find(self, region: str, account: str | None = None) -> list[Leftover]:
        """Every group of the region that a capacity denial tagged, from its tags alone."""
        autoscaling = self.api.client("autoscaling", region, account)
        leftovers = []
        for group in self.api.pages(autoscaling, "describe_auto_scaling_groups",
                                    "AutoScalingGroups",
                                    Filters=[{"Name": "tag-key", "Values": [f"{TAG_SUBNETS}1"]}]):
            tags = group_tags(group)
            if TAG_RUN not in tags:
                continue
            leftovers.append(Leftover(
                cloud="aws", kind="capacity-denial", id=group["AutoScalingGroupName"],
                run_id=tags[TAG_RUN], step_id=tags.get(TAG_STEP, ""), location=region,
                account=account or "",
                detail={"subnets": ",".join(recorded_subnets(tags)),
                        "resumes": tags.get(TAG_RESUMES, "")}))
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Put back the `VPCZoneIdentifier` the tags recorded, resume what they say gameday
        suspended, and remove gameday's tags."""
        record = DeniedGroup(name=leftover.id, subnets=leftover.detail["subnets"].split(","),
                             removed=[], rebalance_suspended=leftover.detail.get("resumes") != PROCESS)
        result = FaultResult()
        self.restore_group(leftover.location, record, result, leftover.account or None)
        return result
