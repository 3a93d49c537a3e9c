"""GCP power interruption (contract §10, stop_instances): the zone's running instances lose power.

Before: instance I of the zone carries the target's labels and has status S.
Taken: S is RUNNING, or PROVISIONING/STAGING (powering on: apply waits until it runs, then stops
it). Left alone, not listed: TERMINATED (off before the run, and off after it), STOPPING (already
on its way down), SUSPENDING/SUSPENDED (its memory is saved: a stop would discard it and no start
brings it back) and REPAIRING.
Managed: a taken instance that a regional managed instance group M created (metadata `created-by`
names M) makes M a resource of the step too (kind `instance-group-manager`, so that two power
steps holding one MIG at once are refused by the planner's overlap rule); `activities.gcp.
groups_hold` records M's `defaultActionOnFailure`, sets it to DO_NOTHING before any member is
stopped (else M would start them again) and puts it back after the members run again.
Refused before any change: a member of a zonal MIG (not held yet); an instance with local SSDs,
whose data a stop discards.
After apply: I carries the labels `gameday-run` and `gameday-step` (`mark_labels`: the run and
step, label-encoded), set before it is stopped, and is TERMINATED (`instances.stop` without a
graceful shutdown, waited for until it is off).
After restore: I is RUNNING again (`instances.start`, waited for until it runs) and carries its
labels without gameday's; labels others changed meanwhile stay; then each held MIG's
`defaultActionOnFailure` is as recorded. Restore reads only the checkpoint:
an instance recorded running is started even if someone else stopped it after the prepare (apply
marks it all the same), and one suspended meanwhile (never by gameday) is noted and left.

The marks are what `gameday sweep` finds (`marked_instances`, `power_on`): an instance that carries
them was running until gameday stopped it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Literal

from google.api_core import exceptions
from google.cloud import compute_v1
from pydantic import BaseModel

from activities.base import fan_out, parallel_calls, poll_until
from activities.gcp.api import FINGERPRINT_ATTEMPTS, Compute, call, compute_clients, last, mutate, translated
from activities.gcp.groups_hold import DO_NOTHING, GroupsHold, HeldGroup, manager_of
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
from gameday.targets import GcpInstancesTarget

TAKEN = ("RUNNING", "PROVISIONING", "STAGING")
STARTING = {"PROVISIONING", "STAGING", "REPAIRING"}
MOVING = STARTING | {"STOPPING", "SUSPENDING"}
MARK_RUN = "gameday-run"
MARK_STEP = "gameday-step"
MAX_LABELS = 64
MAX_LABEL_VALUE = 63
POLL_INTERVAL = 1.0
"""Seconds between two reads of an instance that is between two states."""
SETTLE_DEADLINE = 600.0
"""Seconds an instance may stay between two states before the call is failed (and retried)."""

Outcome = Literal["changed", "unchanged", "gone", "suspended"]

# --- marks: the run and step in labels ------------------------------------------------------

_PLAIN = re.compile(r"[a-z0-9-]")
_MARK_KEY = re.compile(rf"(?P<mark>{MARK_RUN}|{MARK_STEP})(?:-(?P<part>[1-9][0-9]?))?")


def label_text(text: str) -> str:
    """`text` in label characters, reversibly: `[a-z0-9-]` as they are, any other character as
    `_` and the hex of its UTF-8 bytes (`Q4` → `_514`)."""
    return "".join(c if _PLAIN.fullmatch(c) else "".join(f"_{b:02x}" for b in c.encode())
                   for c in text)


def text_of(value: str) -> str:
    """The text `label_text` encoded."""
    out = bytearray()
    index = 0
    while index < len(value):
        if value[index] == "_":
            out += bytes.fromhex(value[index + 1:index + 3])
            index += 3
        else:
            out += value[index].encode()
            index += 1
    return out.decode()


def _parts(key: str, text: str) -> dict[str, str]:
    """`text` encoded in labels `key`, `key-1`, `key-2`... of at most 63 characters each."""
    encoded = label_text(text)
    chunks = [encoded[i:i + MAX_LABEL_VALUE] for i in range(0, len(encoded), MAX_LABEL_VALUE)]
    return {key if n == 0 else f"{key}-{n}": chunk for n, chunk in enumerate(chunks or [""])}


def mark_labels(run_id: str, step_id: str) -> dict[str, str]:
    """The labels that mark an instance stopped by (run, step)."""
    return {**_parts(MARK_RUN, run_id), **_parts(MARK_STEP, step_id)}


def is_mark(key: str) -> bool:
    return _MARK_KEY.fullmatch(key) is not None


def marked_by(labels: dict[str, str]) -> tuple[str, str] | None:
    """(run id, step id) of gameday's marks among `labels`; None when there are none."""
    parts: dict[str, dict[int, str]] = {MARK_RUN: {}, MARK_STEP: {}}
    for key, value in labels.items():
        found = _MARK_KEY.fullmatch(key)
        if found:
            parts[found["mark"]][int(found["part"] or 0)] = value
    if not parts[MARK_RUN]:
        return None
    try:
        run, step = ("".join(v for _, v in sorted(parts[m].items())) for m in (MARK_RUN, MARK_STEP))
        return text_of(run), text_of(step)
    except ValueError:
        return None


def _label_filter(labels: dict[str, str]) -> str | None:
    if not labels:
        return None
    return " ".join(f'(labels.{key} = "{value}")' for key, value in sorted(labels.items()))


def _unsafe(instance: compute_v1.Instance) -> str | None:
    """Why stopping this instance cannot be undone, or None."""
    manager = manager_of(instance)
    if manager is not None and manager[0] == "zones":
        return (f"instance {instance.name} belongs to zonal managed instance group {manager[2]}, "
                "whose repairs gameday holds only for regional groups")
    if any(disk.type_ == "SCRATCH" for disk in instance.disks):
        return f"instance {instance.name} has local SSDs, whose data a stop discards for good"
    return None


def _refuse_unsafe(step_id: str, instances: list[compute_v1.Instance]) -> None:
    reasons = [reason for i in instances if (reason := _unsafe(i))]
    if reasons:
        more = f" ({len(reasons) - 1} more instances likewise)" if len(reasons) > 1 else ""
        raise Refused(f"step {step_id}: {reasons[0]}, so gameday does not stop it{more}")


# --- the fault --------------------------------------------------------------------------------


class PoweredInstance(BaseModel):
    """An instance gameday powers off, and its status when prepared."""

    name: str
    status: str


class PowerState(BaseModel):
    marks: dict[str, str]
    instances: list[PoweredInstance]
    left: dict[str, str] = {}
    """Labelled instances of the zone left alone, and their status when prepared."""
    groups: list[HeldGroup] = []
    """The regional MIGs that created taken instances, with their `defaultActionOnFailure`."""


def _managers(instances: list[compute_v1.Instance]) -> list[tuple[str, str]]:
    """(region, name) of each regional MIG that created one of `instances`."""
    return sorted({(m[1], m[2]) for i in instances if (m := manager_of(i)) and m[0] == "regions"})


class GcpPowerInterruption:
    """The power interruption's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = PowerState

    def __init__(self, clients: Callable[[], Compute] = compute_clients,
                 hold: GroupsHold | None = None):
        self._clients = clients
        self._hold = hold or GroupsHold()

    def _labelled(self, compute: Compute, project: str, zone: str, labels: dict[str, str],
                  step_id: str) -> list[compute_v1.Instance]:
        try:
            call(compute.zones.get, project=project, zone=zone)
        except exceptions.NotFound as exc:
            raise TargetNotFound(f"step {step_id}: zone {zone} does not exist in project "
                                 f"{project}") from exc
        found = list(call(compute.instances.list, request=compute_v1.ListInstancesRequest(
            project=project, zone=zone, filter=_label_filter(labels))))
        if not found:
            text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
            raise TargetNotFound(f"step {step_id}: no instance in {zone} of project {project}"
                                 + (f" carries the labels {text}" if text else ""))
        return sorted(found, key=lambda i: i.name)

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The labelled instances of the zone that are running or powering on, each with its
        status, and the regional MIGs that created them; refused when one cannot be stopped
        safely."""
        target = request.step.target
        assert isinstance(target, GcpInstancesTarget)
        with translated(f"listing instances in {target.zone}"):
            found = self._labelled(self._clients(), target.project, target.zone, target.labels,
                                   request.step.id)
        taken = [i for i in found if i.status in TAKEN]
        if request.only_new:
            taken = [i for i in taken if marked_by(dict(i.labels)) is None]
        _refuse_unsafe(request.step.id, taken)
        resources = [Resource(id=i.name, kind="instance", name=i.name, detail={
            "zone": target.zone, "status": i.status, "machine_type": last(i.machine_type)})
            for i in taken]
        resources += [Resource(id=name, kind="instance-group-manager", name=name, detail={
            "region": region, "hold": f"defaultActionOnFailure {DO_NOTHING}"})
            for region, name in _managers(taken)]
        return ResolvedStep(step_id=request.step.id, action=request.step.action,
                            scope=Scope.of(target), resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each planned instance still running or powering on, the marks to set, and each
        MIG that created one with its `defaultActionOnFailure`."""
        resolved = request.resolved
        scope = resolved.scope
        target = request.step.target
        assert isinstance(target, GcpInstancesTarget) and scope.zone is not None
        with translated(f"reading instances in {scope.zone}"):
            found = self._labelled(self._clients(), scope.account, scope.zone, target.labels,
                                   resolved.step_id)
        planned = {r.id for r in resolved.resources}
        taken = [i for i in found if i.name in planned and i.status in TAKEN]
        _refuse_unsafe(resolved.step_id, taken)
        marks = mark_labels(request.run_id, resolved.step_id)
        for instance in taken:
            kept = [k for k in instance.labels if not is_mark(k)]
            if len(kept) + len(marks) > MAX_LABELS:
                raise Refused(f"step {resolved.step_id}: instance {instance.name} has "
                              f"{len(kept)} labels, leaving no room for gameday's {len(marks)} "
                              f"(Compute Engine allows {MAX_LABELS})")
        with translated(f"reading managed instance groups of instances in {scope.zone}"):
            groups = self._hold.recorded(scope.account, resolved.step_id, _managers(taken))
        state = PowerState(marks=marks, groups=groups,
                           instances=[PoweredInstance(name=i.name, status=i.status) for i in taken],
                           left={i.name: i.status for i in found if i.name not in
                                 {t.name for t in taken}})
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="stop_instances", scope=scope, resources=len(taken),
                          state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Hold each recorded MIG's repairs (DO_NOTHING), then mark and stop each recorded
        instance (one powering on is stopped once it runs); what is already so is left as it
        is."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = PowerState.model_validate(checkpoint.state)
        result = FaultResult()
        with translated(f"holding the repairs of managed instance groups in {scope.zone}"):
            for group in state.groups:
                held(result, group, self._hold.set_on_failure(scope.account, group, DO_NOTHING),
                     "was not held")
        with translated(f"stopping instances in {scope.zone}"):
            compute = self._clients()
            for member, outcome in fan_out(
                    state.instances, lambda m: self.power_off(compute, scope, m.name, state.marks),
                    parallel_calls("gcp")):
                count(result, outcome, member.name, "was not stopped")
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Start each recorded instance and wait until it runs, then remove gameday's marks, then
        put each recorded MIG's `defaultActionOnFailure` back. Safe to repeat; a gone instance or
        MIG is noted."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = PowerState.model_validate(checkpoint.state)
        owner = marked_by(state.marks)
        result = FaultResult()
        with translated(f"starting instances in {scope.zone}"):
            compute = self._clients()
            for member, outcome in fan_out(
                    state.instances, lambda m: self.power_on(compute, scope, m.name, owner),
                    parallel_calls("gcp")):
                count(result, outcome, member.name, "has nothing to start")
        with translated(f"restoring the repairs of managed instance groups in {scope.zone}"):
            for group in state.groups:
                held(result, group, self._hold.set_on_failure(scope.account, group,
                                                             group.on_failure),
                     "has nothing to restore")
        return result

    # --- one instance ---------------------------------------------------------------------

    def power_off(self, compute: Compute, scope: Scope, name: str,
                  marks: dict[str, str]) -> Outcome:
        """Mark the instance, then stop it (abruptly) and wait until it is TERMINATED; one
        powering on is waited for first, one suspended meanwhile is left as it is."""
        instance = self.settled(compute, scope, name, STARTING)
        if instance is None:
            return "gone"
        if instance.status in ("SUSPENDING", "SUSPENDED"):
            return "suspended"
        marked = self.relabel(compute, scope, name, lambda labels: {
            **{k: v for k, v in labels.items() if not is_mark(k)}, **marks}, instance)
        if marked == "gone":
            return "gone"
        stopped = instance.status == "RUNNING"
        if stopped:
            self._power(compute, compute.instances.stop_unary, compute_v1.StopInstanceRequest(
                project=scope.account, zone=scope.zone, instance=name, no_graceful_shutdown=True,
                request_id=str(uuid.uuid4())))
        if self.settled(compute, scope, name, MOVING) is None:
            return "gone"
        return "changed" if stopped or marked == "changed" else "unchanged"

    def power_on(self, compute: Compute, scope: Scope, name: str,
                 owner: tuple[str, str] | None) -> Outcome:
        """Start the instance unless it runs, wait until it runs, then remove the marks of
        `owner` (run, step); a suspended instance (suspended by someone, not gameday) stays."""
        instance = self.settled(compute, scope, name, MOVING)
        if instance is None:
            return "gone"
        started = False
        if instance.status == "TERMINATED":
            self._power(compute, compute.instances.start_unary, compute_v1.StartInstanceRequest(
                project=scope.account, zone=scope.zone, instance=name,
                request_id=str(uuid.uuid4())))
            instance = self.settled(compute, scope, name, MOVING)
            if instance is None:
                return "gone"
            if instance.status != "RUNNING":
                raise CloudError(f"instance {name} is {instance.status} after its start",
                                 retryable=True)
            started = True
        unmarked = self.relabel(compute, scope, name, lambda labels: (
            {k: v for k, v in labels.items() if not is_mark(k)}
            if owner is None or marked_by(labels) == owner else labels), instance)
        if instance.status in ("SUSPENDING", "SUSPENDED") and not started:
            return "suspended"
        return "changed" if started or unmarked == "changed" else "unchanged"

    @staticmethod
    def _power(compute: Compute, method: Callable[..., compute_v1.Operation],
               request: compute_v1.StopInstanceRequest | compute_v1.StartInstanceRequest) -> None:
        """One stop or start, waited for until its operation is DONE; its request id makes a
        resent call the same call."""
        mutate(compute, method, request=request)

    def settled(self, compute: Compute, scope: Scope, name: str,
                waiting: set[str]) -> compute_v1.Instance | None:
        """The instance once its status is none of `waiting` (read every `POLL_INTERVAL`), or
        None when it does not exist."""
        seen: list[compute_v1.Instance | None] = [None]

        def ready() -> bool:
            try:
                seen[0] = call(compute.instances.get, project=scope.account, zone=scope.zone,
                               instance=name)
            except exceptions.NotFound:
                seen[0] = None
            return seen[0] is None or seen[0].status not in waiting

        poll_until(ready, limit=SETTLE_DEADLINE, interval=POLL_INTERVAL, still=lambda: (
            f"instance {name} is still {seen[0].status if seen[0] else 'settling'} after "
            f"{SETTLE_DEADLINE:.0f}s"))
        return seen[0]

    @staticmethod
    def relabel(compute: Compute, scope: Scope, name: str,
                change: Callable[[dict[str, str]], dict[str, str]],
                known: compute_v1.Instance | None = None) -> Literal["changed", "unchanged", "gone"]:
        """Set an instance's labels to `change(current labels)`, starting from `known`, re-reading
        on a stale fingerprint."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            if known is None:
                try:
                    known = call(compute.instances.get, project=scope.account, zone=scope.zone,
                                 instance=name)
                except exceptions.NotFound:
                    return "gone"
            current = dict(known.labels)
            wanted = change(current)
            if wanted == current:
                return "unchanged"
            try:
                mutate(compute, compute.instances.set_labels_unary, project=scope.account,
                       zone=scope.zone, instance=name,
                       instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                           labels=wanted, label_fingerprint=known.label_fingerprint))
            except exceptions.PreconditionFailed:
                known = None
                continue
            except exceptions.NotFound:
                return "gone"
            return "changed"
        raise CloudError(f"the labels of instance {name} kept changing under gameday "
                         f"({FINGERPRINT_ATTEMPTS} stale fingerprints in a row)", retryable=True)

    # --- the sweep ------------------------------------------------------------------------

    @staticmethod
    def owner_now(compute: Compute, scope: Scope, name: str) -> tuple[str, str] | None:
        """(run, step) that the instance's marks name now; None when it has none or is gone."""
        try:
            instance = call(compute.instances.get, project=scope.account, zone=scope.zone,
                            instance=name)
        except exceptions.NotFound:
            return None
        return marked_by(dict(instance.labels))

    @staticmethod
    def marked_instances(compute: Compute,
                         project: str) -> list[tuple[str, compute_v1.Instance, tuple[str, str]]]:
        """(zone, instance, (run, step)) for every instance of the project gameday's marks name."""
        found = []
        listed = call(compute.instances.aggregated_list,
                      request=compute_v1.AggregatedListInstancesRequest(project=project))
        for where, scoped in listed:
            for instance in scoped.instances:
                owner = marked_by(dict(instance.labels))
                if owner is not None:
                    found.append((last(where), instance, owner))
        return sorted(found, key=lambda item: (item[0], item[1].name))


def count(result: FaultResult, outcome: Outcome, name: str, gone: str) -> None:
    if outcome == "changed":
        result.changed += 1
    elif outcome == "unchanged":
        result.unchanged += 1
    elif outcome == "suspended":
        result.notes.append(f"instance {name} is suspended, not by gameday; left as it is")
    else:
        result.notes.append(f"instance {name} no longer exists; it {gone}")


def held(result: FaultResult, group: HeldGroup, outcome: Outcome, gone: str) -> None:
    if outcome == "changed":
        result.changed += 1
    elif outcome == "unchanged":
        result.unchanged += 1
    else:
        result.notes.append(f"managed instance group {group.name} no longer exists; it {gone}")
