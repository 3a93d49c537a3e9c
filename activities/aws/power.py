"""AWS power interruption (contract §10, `stop_instances`): a zone's instances lose power.

Before: each instance of the zone with the target's tags is `running` (or `pending`, on its way
there); its Auto Scaling group, if any, has some processes suspended (often none).
After apply: each of them is `stopped`, stopped abruptly (`StopInstances` with `Force`, as a power
loss would) and tagged with the run and step; each of their groups has `HealthCheck` and
`ReplaceUnhealthy` suspended, so that the group does not replace the stopped instances, and
carries the step's hold (`gameday:hold:<step>:<digest of the run>` = the run id) and
`gameday:suspended`: the processes gameday suspended (those that were not suspended before).
After restore: each instance gameday stopped is `running` again and its marks are gone; the
step's hold is gone from each group, and once no hold is left (a group spans zones: several
steps may hold it) exactly the processes of `gameday:suspended` are resumed, so the group has
the processes suspended that it had before the first hold. Instances that were not running
when the step was prepared (`stopped`, `stopping`: on their way down already) are never touched.

An instance `pending` when the fault arrives is taken: it is waited for until it runs, then
stopped. One still `stopping` when the restore arrives is waited for until it is stopped, then
started. An instance whose root device is instance-store cannot be stopped (EC2 refuses; its data
would be lost), nor one whose stop protection (`DisableApiStop`) is on: the step is refused before
anything changes. Waiting polls with heartbeats.

EC2 allows 50 tags per resource (Auto Scaling 50 per group), values up to 256 characters: an
instance or group without room for gameday's marks is refused before anything changes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from activities.aws.api import MAX_TAG_VALUE, TAG_RUN, TAG_STEP, AwsApi, tags_of
from activities.base import beat, fan_out, parallel_calls
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
from gameday.targets import AwsInstancesTarget

TAG_SUSPENDED = "gameday:suspended"
TAG_HOLD = "gameday:hold:"
MAX_TAG_KEY = 128
PROCESSES = ("HealthCheck", "ReplaceUnhealthy")
"""What a group would do to a stopped instance: find it unhealthy, then replace it."""
TAKEN = ("pending", "running")
LISTED = ("pending", "running", "stopping", "stopped")
GONE = ("shutting-down", "terminated")
MAX_TAGS = 50
POWER_BATCH = 1000  # StopInstances, StartInstances, CreateTags and DeleteTags take 1000 ids
FILTER_VALUES = 200  # values per EC2 filter
ASG_BATCH = 50  # DescribeAutoScalingInstances and ...Groups take 50 ids or names
WAIT_LIMIT = 900.0


class PoweredInstance(BaseModel):
    """One instance the fault stops: its state when prepared and its group ("" for none)."""

    id: str
    state: str
    group: str = ""


class GroupHold(BaseModel):
    """One Auto Scaling group of those instances: what was suspended before, what gameday
    suspends (the rest of `PROCESSES`)."""

    name: str
    suspended_before: list[str]
    suspends: list[str]


class PowerState(BaseModel):
    instances: list[PoweredInstance]
    groups: list[GroupHold]


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def marked_by(tags: dict[str, str], run_id: str, step_id: str) -> bool:
    return tags.get(TAG_RUN) == run_id and tags.get(TAG_STEP) == step_id


def hold_key(run_id: str, step_id: str) -> str:
    """The group tag of one step's hold: the step, and a digest of the run (keys are short)."""
    return f"{TAG_HOLD}{step_id}:{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


def holds_of(tags: dict[str, str]) -> dict[str, str]:
    """A group's holds: tag key -> the run id."""
    return {k: v for k, v in tags.items() if k.startswith(TAG_HOLD)}


def group_tags(group: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group.get("Tags", [])}


class AwsPowerInterruption:
    """EC2 and Auto Scaling calls of `stop_instances`: resolve, prepare, apply and restore."""

    State = PowerState
    poll_seconds = 1.0

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    # --- reads ------------------------------------------------------------------------------

    def instances(self, ec2: Any, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The instances among `ids` that exist, as EC2 describes them (a filter, not
        `InstanceIds`, so that one gone instance does not fail the read)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(sorted(set(ids)), FILTER_VALUES):
            reservations = self.api.pages(ec2, "describe_instances", "Reservations",
                                          Filters=[{"Name": "instance-id", "Values": chunk}])
            for reservation in reservations:
                for instance in reservation.get("Instances", []):
                    found[instance["InstanceId"]] = instance
        return found

    def group_of(self, autoscaling: Any, ids: list[str]) -> dict[str, str]:
        """Instance id -> the Auto Scaling group it belongs to (instances in none are left out)."""
        found: dict[str, str] = {}
        for chunk in chunks(sorted(ids), ASG_BATCH):
            for member in self.api.pages(autoscaling, "describe_auto_scaling_instances",
                                         "AutoScalingInstances", InstanceIds=chunk):
                found[member["InstanceId"]] = member["AutoScalingGroupName"]
        return found

    def groups(self, autoscaling: Any, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in chunks(sorted(set(names)), ASG_BATCH):
            for group in self.api.pages(autoscaling, "describe_auto_scaling_groups",
                                        "AutoScalingGroups", AutoScalingGroupNames=chunk):
                found[group["AutoScalingGroupName"]] = group
        return found

    def _stop_protected(self, ec2: Any, instance_id: str) -> bool:
        """Whether the instance's stop protection is on (EC2 would refuse the whole stop)."""
        try:
            found = self.api.call(f"DescribeInstanceAttribute {instance_id}",
                                  ec2.describe_instance_attribute, InstanceId=instance_id,
                                  Attribute="disableApiStop")
        except CloudError as exc:
            if exc.code == "InvalidInstanceID.NotFound":
                return False
            raise
        return bool(found.get("DisableApiStop", {}).get("Value"))

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The instances of the zone with the target's tags that are `running` or `pending`,
        each with its state and group; refused when one of them cannot be stopped."""
        target = request.step.target
        assert isinstance(target, AwsInstancesTarget)
        scope = Scope.of(target)
        self.api.check_identity(scope)
        ec2 = self.api.ec2(target.region, scope.account)
        zones = self.api.call("DescribeAvailabilityZones", ec2.describe_availability_zones,
                              Filters=[{"Name": "region-name", "Values": [target.region]}])
        names = sorted(z["ZoneName"] for z in zones.get("AvailabilityZones", []))
        if target.zone not in names:
            raise TargetNotFound(f"step {request.step.id}: zone {target.zone} does not exist in "
                                 f"{target.region} (zones: {', '.join(names) or 'none'})")
        filters = [{"Name": "availability-zone", "Values": [target.zone]},
                   {"Name": "instance-state-name", "Values": list(TAKEN)}]
        filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(target.tags.items())]
        found = [i for r in self.api.pages(ec2, "describe_instances", "Reservations",
                                           Filters=filters) for i in r.get("Instances", [])]
        found = [i for i in found if i["State"]["Name"] in TAKEN]
        if request.only_new:
            found = [i for i in found if tags_of(i).get(TAG_RUN) != request.run_id]
        unstoppable = sorted(i["InstanceId"] for i in found
                             if i.get("RootDeviceType") == "instance-store")
        if unstoppable:
            raise Refused(f"step {request.step.id}: {', '.join(unstoppable)} cannot be stopped "
                          "(instance-store root device: EC2 refuses, and its data would be lost); "
                          "narrow the tags to leave them out")
        protected = sorted(i for i, on in fan_out([i["InstanceId"] for i in found],
                                                  lambda i: self._stop_protected(ec2, i),
                                                  parallel_calls("aws")) if on)
        if protected:
            raise Refused(f"step {request.step.id}: {', '.join(protected)} cannot be stopped "
                          "(stop protection, DisableApiStop, is on); narrow the tags to leave "
                          "them out")
        group_of = self.group_of(self.api.client("autoscaling", target.region, scope.account),
                                 [i["InstanceId"] for i in found])
        resources = [
            Resource(id=i["InstanceId"], kind="instance", name=tags_of(i).get("Name"),
                     detail={"zone": target.zone, "state": i["State"]["Name"],
                             "group": group_of.get(i["InstanceId"], ""),
                             "type": i.get("InstanceType", ""), "subnet": i.get("SubnetId", "")})
            for i in sorted(found, key=lambda i: i["InstanceId"])
        ]
        return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each instance's state and group, and each group's suspended processes;
        refuse what another gameday step holds or what has no room for gameday's tags."""
        resolved = request.resolved
        scope = resolved.scope
        if len(request.run_id) > MAX_TAG_VALUE:
            raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, EC2's tag limit")
        ec2 = self.api.ec2(scope.region, scope.account)
        autoscaling = self.api.client("autoscaling", scope.region, scope.account)
        current = self.instances(ec2, (r.id for r in resolved.resources))
        taken = [i for i in current.values() if i["State"]["Name"] in TAKEN]
        for instance in taken:
            self._check_room(f"instance {instance['InstanceId']}", tags_of(instance),
                             request.run_id, resolved.step_id, 2)
        group_of = self.group_of(autoscaling, [i["InstanceId"] for i in taken])
        holds: list[GroupHold] = []
        if len(hold_key(request.run_id, resolved.step_id)) > MAX_TAG_KEY:
            raise Refused(f"step id {resolved.step_id} is too long for an Auto Scaling tag key")
        for name, group in sorted(self.groups(autoscaling, group_of.values()).items()):
            tags = group_tags(group)
            if len(tags) + 2 > MAX_TAGS:
                raise Refused(f"Auto Scaling group {name} has {len(tags)} tags: no room for "
                              f"gameday's 2 (at most {MAX_TAGS} per group)")
            # what another hold of gameday suspended is gameday's to resume, not the group's own
            ours = set(tags.get(TAG_SUSPENDED, "").split(",")) if holds_of(tags) else set()
            suspended = {p["ProcessName"] for p in group.get("SuspendedProcesses", [])} - ours
            holds.append(GroupHold(name=name, suspended_before=sorted(suspended & set(PROCESSES)),
                                   suspends=[p for p in PROCESSES if p not in suspended]))
        state = PowerState(
            instances=[PoweredInstance(id=i["InstanceId"], state=i["State"]["Name"],
                                       group=group_of.get(i["InstanceId"], ""))
                       for i in sorted(taken, key=lambda i: i["InstanceId"])],
            groups=holds)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="stop_instances", scope=scope, resources=len(state.instances),
                          state=state.model_dump(mode="json"))

    @staticmethod
    def _check_room(what: str, tags: dict[str, str], run_id: str, step_id: str, ours: int) -> None:
        """An instance is held by one step at most, and needs room for its marks."""
        holder = tags.get(TAG_RUN)
        if holder and not marked_by(tags, run_id, step_id):
            raise Refused(f"{what} is already held by gameday run {holder} "
                          f"(step {tags.get(TAG_STEP, '?')})")
        others = [k for k in tags if not k.startswith("gameday:")]
        if len(others) + ours > MAX_TAGS:
            raise Refused(f"{what} has {len(others)} tags: no room for gameday's {ours} "
                          f"(at most {MAX_TAGS} per resource)")

    def apply(self, request: FaultRequest) -> FaultResult:
        """Suspend each group's healing, mark and then stop (with `Force`) each instance, group by
        group, and wait until every one is stopped. A repeat changes nothing changed already."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = PowerState.model_validate(checkpoint.state)
        self.api.check_identity(scope)
        ec2 = self.api.ec2(scope.region, scope.account)
        autoscaling = self.api.client("autoscaling", scope.region, scope.account)
        marks = {TAG_RUN: checkpoint.run_id, TAG_STEP: checkpoint.step_id}
        key = hold_key(checkpoint.run_id, checkpoint.step_id)
        groups = self.groups(autoscaling, (h.name for h in state.groups))
        for hold in state.groups:
            if hold.name not in groups:
                continue
            earlier = [p for p in group_tags(groups[hold.name]).get(TAG_SUSPENDED, "").split(",")
                       if p]  # what other holds of gameday suspended
            suspended = sorted(set(earlier) | set(hold.suspends))
            tags = {key: checkpoint.run_id, TAG_SUSPENDED: ",".join(suspended)}
            self.api.call(f"CreateOrUpdateTags {hold.name}", autoscaling.create_or_update_tags,
                          Tags=[{"ResourceId": hold.name, "ResourceType": "auto-scaling-group",
                                 "Key": k, "Value": v, "PropagateAtLaunch": False}
                                for k, v in tags.items()])
            if hold.suspends:
                self.api.call(f"SuspendProcesses {hold.name}", autoscaling.suspend_processes,
                              AutoScalingGroupName=hold.name, ScalingProcesses=hold.suspends)
        current = self.instances(ec2, (i.id for i in state.instances))
        result = FaultResult()
        for instance in state.instances:
            if instance.id not in current or current[instance.id]["State"]["Name"] in GONE:
                result.notes.append(f"instance {instance.id} no longer exists; skipped")
        unmarked = sorted(i for i, found in current.items()
                          if found["State"]["Name"] not in GONE
                          and not marked_by(tags_of(found), checkpoint.run_id, checkpoint.step_id))
        for chunk in chunks(unmarked, POWER_BATCH):
            self.api.call("CreateTags (mark instances)", ec2.create_tags, Resources=chunk,
                          Tags=[{"Key": k, "Value": v} for k, v in marks.items()])
        # group by group, each right after its healing was suspended; instances in none last
        order = sorted(state.instances, key=lambda i: (i.group == "", i.group, i.id))
        batches: dict[str, list[str]] = {}
        for instance in order:
            if instance.id in current:
                batches.setdefault(instance.group, []).append(instance.id)
        acted = self._power(ec2, list(batches.values()), "stopped")
        result.changed = len(acted)
        result.unchanged = sum(len(b) for b in batches.values()) - len(acted)
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Start every instance gameday stopped and wait until it runs, then resume what gameday
        suspended, then remove gameday's marks. Safe to repeat."""
        checkpoint = request.checkpoint
        state = PowerState.model_validate(checkpoint.state)
        ec2 = self.api.ec2(checkpoint.scope.region, checkpoint.scope.account)
        autoscaling = self.api.client("autoscaling", checkpoint.scope.region,
                                      checkpoint.scope.account)
        result = self.start_marked(ec2, [i.id for i in state.instances], checkpoint.run_id,
                                   checkpoint.step_id)
        names = [h.name for h in state.groups]
        for name in names:
            if not self.release_group(autoscaling, name,
                                      hold_key(checkpoint.run_id, checkpoint.step_id)):
                result.notes.append(f"Auto Scaling group {name} no longer exists")
        return result

    # --- shared with the sweeper ---------------------------------------------------------

    def start_marked(self, ec2: Any, ids: list[str], run_id: str, step_id: str) -> FaultResult:
        """Start each of `ids` that carries the run's and step's marks (those gameday stopped),
        wait until each runs, then remove the marks."""
        result = FaultResult()
        current = self.instances(ec2, ids)
        for instance_id in sorted(set(ids) - set(current)):
            result.notes.append(f"instance {instance_id} no longer exists; nothing to restore")
        marked = sorted(i for i, found in current.items()
                        if marked_by(tags_of(found), run_id, step_id)
                        and found["State"]["Name"] not in GONE)
        acted = self._power(ec2, [marked], "running")
        result.changed, result.unchanged = len(acted), len(current) - len(acted)
        for chunk in chunks(marked, POWER_BATCH):
            self.api.call("DeleteTags (instance marks)", ec2.delete_tags, Resources=chunk,
                          Tags=[{"Key": TAG_RUN}, {"Key": TAG_STEP}])
        return result

    def release_group(self, autoscaling: Any, name: str, key: str) -> bool:
        """Remove one hold from the group; once none is left, resume what gameday suspended and
        remove `gameday:suspended`. Read again after the removal, so that of two holds released
        at once the later one resumes. False when the group is gone."""
        group = self.groups(autoscaling, [name]).get(name)
        if group is None:
            return False
        if key in group_tags(group):
            self.api.call(f"DeleteTags {name} (hold)", autoscaling.delete_tags, Tags=[
                {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": key}])
            group = self.groups(autoscaling, [name]).get(name)
            if group is None:
                return False
        tags = group_tags(group)
        if holds_of(tags) or TAG_SUSPENDED not in tags:
            return True
        suspended = [p for p in tags[TAG_SUSPENDED].split(",") if p]
        if suspended:
            self.api.call(f"ResumeProcesses {name}", autoscaling.resume_processes,
                          AutoScalingGroupName=name, ScalingProcesses=suspended)
        self.api.call(f"DeleteTags {name}", autoscaling.delete_tags, Tags=[
            {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": TAG_SUSPENDED}])
        return True

    def _power(self, ec2: Any, batches: list[list[str]], goal: str) -> set[str]:
        """Bring every instance of `batches` to `goal` (`stopped` or `running`), one call per batch
        (at most `POWER_BATCH` ids), waiting out the states on the way (`pending` before a stop,
        `stopping` before a start) and then the instances' own transition. Instances that are
        gone are left out. Returns the instances this call stopped or started."""
        stopping = goal == "stopped"
        ready = "running" if stopping else "stopped"  # the state a call can act on
        ids = [i for batch in batches for i in batch]
        acted: set[str] = set()
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            states = {i: found["State"]["Name"] for i, found in self.instances(ec2, ids).items()}
            todo = [[i for i in batch if states.get(i) == ready] for batch in batches]
            waiting = sorted(i for i, s in states.items() if s not in (goal, *GONE))
            if not waiting:
                return acted
            try:
                for batch in todo:
                    for chunk in chunks(batch, POWER_BATCH):
                        if stopping:
                            self.api.call("StopInstances", ec2.stop_instances, InstanceIds=chunk,
                                          Force=True)
                        else:
                            self.api.call("StartInstances", ec2.start_instances, InstanceIds=chunk)
                        acted.update(chunk)
            except CloudError as exc:  # one changed state since the read: read again
                if exc.code != "IncorrectInstanceState":
                    raise
            if time.monotonic() > deadline:
                raise CloudError(f"instances {', '.join(waiting[:5])} are not {goal} after "
                                 f"{WAIT_LIMIT:.0f} s", retryable=True)
            beat()
            time.sleep(self.poll_seconds)
