"""Every fault gameday can inject, keyed by (cloud, action), and the one adapter that turns each into
Temporal activities.

A fault is a plain class of its cloud's package (`activities/<cloud>/<fault>.py`) that offers the
`Fault` verbs; its constructor takes the cloud's shared connection (`activities/<cloud>/api.py`,
`connect()`). The adapter (`FaultAdapter`, `CloudActivities`) adds what every fault needs and no
fault writes itself: the span named like the activity, the guardrail re-check before any change,
the checkpoint's state checked against the fault's own `State` model before any cloud call, and
the mapping of domain errors onto Temporal's retry rules (`temporal_errors`, `restore_errors`),
each failure one sentence with its full text in the details.

Adding a fault: one module per cloud, plus one entry per cloud in `FAULTS`. A cloud that cannot
offer an action says so in `gameday.support.NOT_SUPPORTED`, which `FAULTS` holds as `NotSupported`:
`gameday validate` refuses such a step at its `action` line, and a run that got past validate is
refused by the resolve with the same sentence (`NotSupported.sentence`), non-retryable. The activity
names (`aws.apply_blackhole_zone`...) are those running histories hold: never rename them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from temporalio import activity

from activities.base import check_guardrails, cloud_span, restore_errors, temporal_errors
from activities.drift import DriftLooks
from gameday.errors import UserError
from gameday.permissions import PermissionReport
from gameday.plan import (
    ActivityVerb,
    Checkpoint,
    DriftWatchReport,
    DriftWatchRequest,
    FaultRequest,
    FaultResult,
    PermissionCheck,
    PrepareRequest,
    ResolvedStep,
    Scope,
    StepRequest,
    activity_name,
    watch_activity_name,
)
from gameday.runbook import FaultStep
from gameday.support import NOT_SUPPORTED, unsupported_sentence
from gameday.sweep import Leftover, SweepScope

Cloud = Literal["aws", "gcp", "azure"]
Action = Literal["blackhole_zone", "blackhole_region", "evacuate_region", "stop_instances",
                 "deny_capacity", "failover_database", "partition_regions", "evacuate_zone"]

CLOUDS: tuple[Cloud, ...] = ("aws", "gcp", "azure")
ACTIONS: tuple[Action, ...] = ("blackhole_zone", "blackhole_region", "evacuate_region",
                               "stop_instances", "deny_capacity", "failover_database",
                               "partition_regions", "evacuate_zone")
VERBS: tuple[ActivityVerb, ...] = ("resolve", "prepare", "apply", "restore")


@runtime_checkable
class Fault(Protocol):
    """One fault on one cloud: what the workflow asks of every (cloud, action) pair.

    resolve lists what would change (read-only); prepare records the state before any change in
    the checkpoint; apply is idempotent; restore returns every touched resource to its recorded
    state from the checkpoint alone, and is safe to repeat."""

    State: type[BaseModel]
    """The model of the checkpoint's `state` that prepare writes and apply/restore read."""

    def resolve(self, request: StepRequest) -> ResolvedStep: ...
    def prepare(self, request: PrepareRequest) -> Checkpoint: ...
    def apply(self, request: FaultRequest) -> FaultResult: ...
    def restore(self, request: FaultRequest) -> FaultResult: ...


@runtime_checkable
class Sweeper(Protocol):
    """What `gameday sweep` asks of a cloud: find gameday's artifacts by their tags, and undo one
    from its tags alone."""

    def find(self, scope: SweepScope) -> list[Leftover]: ...
    def sweep(self, leftover: Leftover) -> FaultResult: ...


@dataclass(frozen=True)
class Offered:
    """A fault the cloud offers: `module:Class` inside `activities.<cloud>`, and the verbs the
    workflow calls under this action's name (a region blackhole is resolved as a region and then
    prepared, applied and restored zone by zone, as `blackhole_zone`)."""

    fault: str
    verbs: tuple[ActivityVerb, ...] = VERBS


@dataclass(frozen=True)
class NotSupported:
    """An action the cloud does not offer, and why: `gameday validate` refuses it with `sentence`."""

    reason: str

    def sentence(self, cloud: str, action: str) -> str:
        return unsupported_sentence(cloud, action, self.reason)


Entry = Offered | NotSupported

RESOLVE_ONLY: tuple[ActivityVerb, ...] = ("resolve",)

FAULTS: dict[tuple[Cloud, Action], Entry] = {
    ("aws", "blackhole_zone"): Offered("blackhole:AwsZoneBlackhole"),
    ("aws", "blackhole_region"): Offered("blackhole:AwsZoneBlackhole", RESOLVE_ONLY),
    ("aws", "evacuate_region"): Offered("evacuation:AwsRegionEvacuation"),
    ("aws", "stop_instances"): Offered("power:AwsPowerInterruption"),
    ("aws", "failover_database"): Offered("database:AwsDatabaseFailover"),
    ("aws", "deny_capacity"): Offered("capacity:AwsCapacityDenial"),
    ("aws", "evacuate_zone"): Offered("zonal_shift:AwsZonalShift"),
    ("aws", "partition_regions"): Offered("partition:AwsRegionPartition"),
    ("gcp", "blackhole_zone"): Offered("blackhole:GcpZoneBlackhole"),
    ("gcp", "blackhole_region"): Offered("blackhole:GcpZoneBlackhole", RESOLVE_ONLY),
    ("gcp", "evacuate_region"): Offered("evacuation:GcpRegionEvacuation"),
    ("gcp", "stop_instances"): Offered("power:GcpPowerInterruption"),
    ("gcp", "failover_database"): Offered("database:GcpDatabaseFailover"),
    ("gcp", "deny_capacity"): Offered("capacity:GcpCapacityDenial"),
    ("gcp", "evacuate_zone"): Offered("zonal_evacuation:GcpZonalEvacuation"),
    ("gcp", "partition_regions"): Offered("partition:GcpRegionPartition"),
    ("azure", "blackhole_zone"): Offered("blackhole:AzureZoneBlackhole"),
    ("azure", "blackhole_region"): Offered("blackhole:AzureZoneBlackhole", RESOLVE_ONLY),
    ("azure", "evacuate_region"): Offered("evacuation:AzureRegionEvacuation"),
    ("azure", "stop_instances"): Offered("power:AzurePowerInterruption"),
    ("azure", "deny_capacity"): Offered("capacity:AzureCapacityDenial"),
    ("azure", "failover_database"): Offered("database:AzureDatabaseFailover"),
    ("azure", "partition_regions"): Offered("partition:AzureRegionPartition"),
    ("azure", "evacuate_zone"): Offered("zonal_evacuation:AzureZonalEvacuation"),
    **{key: NotSupported(reason) for key, reason in NOT_SUPPORTED.items()},
}
"""The registry: every (cloud, action) a runbook can name, offered or explicitly not (the gaps
come from `gameday.support`, which `validate` reads too)."""

ZONES: dict[Cloud, str] = {
    "aws": "zones:AwsZones",
    "azure": "zones:AzureZones",
}
"""Each cloud whose zone names are not physical (`module:Class` inside `activities.<cloud>`): AWS
zone names and Azure logical zones differ per account. GCP zone names are physical already."""


@runtime_checkable
class Zones(Protocol):
    """A cloud's zones by physical identity (contract §11)."""

    def place(self, step: FaultStep, scope: Scope | None = None) -> FaultStep:
        """The step with its target's zone named both ways where the target can say (AWS
        `zone`/`zone_id`); `scope`, a resolve's answer, saves the look-up."""
        ...

    def scope(self, scope: Scope) -> Scope:
        """The scope with its zone's physical zone, where the cloud reports it."""
        ...


SWEEPERS: dict[Cloud, str] = {
    "aws": "sweep:AwsSweeper",
    "gcp": "sweep:GcpSweeper",
    "azure": "sweep:AzureSweeper",
}
"""Each cloud's sweeper (`module:Class` inside `activities.<cloud>`)."""

PERMISSION_CHECKS: dict[Cloud, str] = {
    "aws": "permissions:AwsPermissions",
    "gcp": "permissions:GcpPermissions",
    "azure": "permissions:AzurePermissions",
}
"""Each cloud's live permission check for `gameday plan` (`<cloud>.check_permissions`)."""


def parity_problems(faults: dict[tuple[Cloud, Action], Entry]) -> list[str]:
    """Each (cloud, action) missing from `faults` while another cloud offers the action: every
    cloud must offer it or say `NotSupported`, so that no gap is silent."""
    problems = []
    for action in ACTIONS:
        offering = [cloud for cloud in CLOUDS if isinstance(faults.get((cloud, action)), Offered)]
        for cloud in CLOUDS:
            if offering and (cloud, action) not in faults:
                problems.append(f"{cloud} has no entry for {action}, which {', '.join(offering)} "
                                f"offer(s): add its fault module, or NotSupported(reason)")
    return problems


def _load(cloud: str, where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(f"activities.{cloud}.{module}"), name)


def connect(cloud: str) -> Any:
    """The cloud's shared connection (clients, credentials), handed to each of its faults."""
    return importlib.import_module(f"activities.{cloud}.api").connect()


# --- the adapter ----------------------------------------------------------------------------


class CheckpointRefused(UserError):
    """A checkpoint whose state the fault cannot read: a history from another version, say."""


@dataclass(frozen=True)
class FaultAdapter:
    """A fault as the workflow sees it: each verb in its span; resolve, prepare and apply behind
    the guardrails; the checkpoint's state checked against the fault's model before any call.
    Cloud errors keep their domain type here; the activities map them onto Temporal's rules."""

    cloud: str
    action: str
    fault: Fault
    zones: Zones | None = None
    """The cloud's physical zones (`ZONES`): the fault sees the zone named both ways, and the
    resolved scope carries the physical zone."""

    def resolve(self, request: StepRequest) -> ResolvedStep:
        scope = Scope.of(request.step.target)
        with self._span("resolve", scope) as span:
            if scope.zone is not None or scope.zone_id is None:
                check_guardrails(request.step.id, scope, request.guardrails, None)
            if self.zones is not None:
                # a step named by zone ID learns its zone's name (a read) before the guardrails,
                # which compare zone names with the worker's own
                request = request.model_copy(update={"step": self.zones.place(request.step)})
                scope = Scope.of(request.step.target)
                check_guardrails(request.step.id, scope, request.guardrails, None)
            resolved = self.fault.resolve(request)
            if self.zones is not None:
                resolved = resolved.model_copy(update={"scope": self.zones.scope(resolved.scope)})
            span.set_attribute("gameday.resources", len(resolved.resources))
            return resolved

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        resolved = request.resolved
        with self._span("prepare", resolved.scope, len(resolved.resources)):
            check_guardrails(resolved.step_id, resolved.scope, request.guardrails,
                             len(resolved.resources))
            if self.zones is not None:
                request = request.model_copy(
                    update={"step": self.zones.place(request.step, resolved.scope)})
            return self.fault.prepare(request)

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        with self._span("apply", checkpoint.scope, checkpoint.resources):
            check_guardrails(checkpoint.step_id, checkpoint.scope, request.guardrails,
                             checkpoint.resources)
            self._check_state(checkpoint)
            return self.fault.apply(request)

    def restore(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        with self._span("restore", checkpoint.scope, checkpoint.resources):
            self._check_state(checkpoint)
            return self.fault.restore(request)

    @contextmanager
    def _span(self, verb: ActivityVerb, scope: Scope,
              resources: int | None = None) -> Iterator[trace.Span]:
        with cloud_span(activity_name(self.cloud, verb, self.action), scope, resources) as span:
            yield span

    def _check_state(self, checkpoint: Checkpoint) -> None:
        try:
            self.fault.State.model_validate(checkpoint.state)
        except ValidationError as exc:
            raise CheckpointRefused(
                f"step {checkpoint.step_id}: the checkpoint's state is not a {self.cloud} "
                f"{checkpoint.action} state ({exc.error_count()} problems)") from exc


def _verb_activity(name: str, verb: ActivityVerb, adapter: FaultAdapter) -> Callable[..., Any]:
    """One Temporal activity for one verb of one adapted fault."""
    if verb == "resolve":
        def resolve(request: StepRequest) -> ResolvedStep:
            return adapter.resolve(request)
        return activity.defn(name=name)(temporal_errors(resolve))
    if verb == "prepare":
        def prepare(request: PrepareRequest) -> Checkpoint:
            return adapter.prepare(request)
        return activity.defn(name=name)(temporal_errors(prepare))
    if verb == "apply":
        def apply(request: FaultRequest) -> FaultResult:
            return adapter.apply(request)
        return activity.defn(name=name)(temporal_errors(apply))

    def restore(request: FaultRequest) -> FaultResult:
        return adapter.restore(request)
    return activity.defn(name=name)(restore_errors(restore))


def _refusing_resolve(name: str, sentence: str) -> Callable[..., Any]:
    """The resolve of an action the cloud does not offer: a plan or run that gets past `validate`
    (a scheduled run, an older CLI) is refused with the registry's sentence, not retried."""
    def resolve(request: StepRequest) -> ResolvedStep:
        raise UserError(f"step {request.step.id}: {sentence}")
    return activity.defn(name=name)(temporal_errors(resolve))


def _drift_activity(name: str, looks: DriftLooks) -> Callable[..., Any]:
    def watch_for_new_resources(request: DriftWatchRequest) -> DriftWatchReport:
        return looks.watch(request)
    return activity.defn(name=name)(temporal_errors(watch_for_new_resources))


def _sweep_activities(cloud: str, sweeper: Sweeper) -> dict[str, Callable[..., Any]]:
    def find_leftovers(scope: SweepScope) -> list[Leftover]:
        return sweeper.find(scope)

    def sweep_leftover(leftover: Leftover) -> FaultResult:
        return sweeper.sweep(leftover)

    find, sweep = f"{cloud}.find_leftovers", f"{cloud}.sweep_leftover"
    return {find: activity.defn(name=find)(temporal_errors(find_leftovers)),
            sweep: activity.defn(name=sweep)(restore_errors(sweep_leftover))}


def _permission_activity(cloud: str, checker: Any) -> dict[str, Callable[..., Any]]:
    def check_permissions(request: PermissionCheck) -> PermissionReport:
        return checker.check(request)

    name = f"{cloud}.check_permissions"
    return {name: activity.defn(name=name)(temporal_errors(check_permissions))}


class CloudActivities:
    """A cloud's activities, generated from the registry: `<cloud>.<verb>_<action>` for every
    offered action and verb, `<cloud>.find_leftovers` / `<cloud>.sweep_leftover` and
    `<cloud>.check_permissions`. All share
    one connection (`connection`, else the cloud's `connect()`), so a worker builds each SDK
    client once."""

    def __init__(self, cloud: str, connection: Any = None):
        if cloud not in CLOUDS:
            raise ValueError(f"unknown cloud {cloud!r}; gameday knows {', '.join(CLOUDS)}")
        self.cloud = cloud
        self.connection = connection if connection is not None else connect(cloud)
        self.by_name: dict[str, Callable[..., Any]] = {}
        self.resolves: dict[str, Callable[[StepRequest], ResolvedStep]] = {}
        made: dict[str, Fault] = {}  # one instance per class: resolve and apply share caches
        zones: Zones | None = _load(cloud, ZONES[cloud])(self.connection) if cloud in ZONES else None
        for (of, action), entry in FAULTS.items():
            if of != cloud:
                continue
            if isinstance(entry, NotSupported):
                name = activity_name(cloud, "resolve", action)
                self.by_name[name] = _refusing_resolve(name, entry.sentence(cloud, action))
                continue
            if entry.fault not in made:
                made[entry.fault] = _load(cloud, entry.fault)(self.connection)
            adapter = FaultAdapter(cloud, action, made[entry.fault], zones)
            self.resolves[action] = adapter.resolve
            for verb in entry.verbs:
                name = activity_name(cloud, verb, action)
                self.by_name[name] = _verb_activity(name, verb, adapter)
        self.sweeper: Sweeper = _load(cloud, SWEEPERS[cloud])(self.connection)
        self.by_name.update(_sweep_activities(cloud, self.sweeper))
        self.drift = DriftLooks(self.resolves)
        watch = watch_activity_name(cloud)
        self.by_name[watch] = _drift_activity(watch, self.drift)
        checker = _load(cloud, PERMISSION_CHECKS[cloud])(self.connection)
        self.by_name.update(_permission_activity(cloud, checker))

    def all(self) -> list[Callable[..., Any]]:
        return list(self.by_name.values())

    def find_leftovers(self, scope: SweepScope) -> list[Leftover]:
        return self.by_name[f"{self.cloud}.find_leftovers"](scope)

    def sweep_leftover(self, leftover: Leftover) -> FaultResult:
        return self.by_name[f"{self.cloud}.sweep_leftover"](leftover)

