"""What a GameDay will change, and the record that lets every change be undone.

These are the payloads between the workflow and the cloud activities. The workflow never reads
inside a checkpoint's `state`: only the cloud module that wrote it does, so each cloud keeps its
whole behaviour in one file.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from gameday.permissions import Permission
from gameday.runbook import Cloud, FaultStep, Guardrails
from gameday.targets import Target, target_scope


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(Model):
    """Where a step acts: account/project/subscription, region and (for zone faults) zone: its
    name in the account (`us-east-1a`, Azure `1`) and, once resolved where the cloud tells, its
    physical zone (`zone_id`: an AWS zone ID like `use1-az6`, an Azure physical zone like
    `eastus-az1`), the same place in every account. GCP zone names are physical already."""

    cloud: Cloud
    account: str
    region: str
    zone: str | None = None
    zone_id: str | None = None

    @classmethod
    def of(cls, target: Target) -> Scope:
        zone = getattr(target, "zone", None)
        zone_id = getattr(target, "zone_id", None)
        region = target.region or ""  # an Azure database target may leave its region to ARM
        return cls(cloud=target.cloud, account=target_scope(target), region=region, zone=zone,
                   zone_id=zone_id)

    @property
    def where(self) -> str:
        """The zone for people, `us-east-1a (use1-az6)`, or the region when the step has none."""
        if self.zone is None:
            return self.zone_id or self.region
        return f"{self.zone} ({self.zone_id})" if self.zone_id else self.zone


class Resource(Model):
    """One thing a step changes: a subnet, instance, NIC, record, backend or endpoint."""

    id: str
    kind: str
    name: str | None = None
    detail: dict[str, str] = {}


class ResolvedStep(Model):
    """A fault step with its target resolved to concrete resources, read-only."""

    step_id: str
    action: str
    scope: Scope
    resources: list[Resource]
    refusals: list[str] = Field([], description="why a guardrail would refuse this step")


class Plan(Model):
    runbook: str
    steps: list[ResolvedStep]

    @property
    def hash(self) -> str:
        return plan_hash(self.steps)


def plan_hash(steps: list[ResolvedStep]) -> str:
    """A stable hash of what will change: step ids, actions, scopes and resource ids."""
    canonical = [
        {
            "step": s.step_id,
            "action": s.action,
            # without a physical zone, a scope hashes as it did before `zone_id` existed
            "scope": s.scope.model_dump(exclude={"zone_id"} if s.scope.zone_id is None else None),
            "resources": sorted(r.id for r in s.resources),
        }
        for s in sorted(steps, key=lambda s: s.step_id)
    ]
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    return f"sha256:{digest[:32]}"


class Checkpoint(Model):
    """Everything needed to undo one step, recorded before anything changes."""

    run_id: str
    step_id: str
    action: str
    scope: Scope
    resources: int = Field(description="how many resources the fault changes")
    state: JsonValue = Field(description="the cloud module's own record of the original state")

    @property
    def unit_id(self) -> str:
        """The id of the checkpointed unit (a step, a zone of a region step, a drift round): unique
        within the run (contract §7). Stored as `step_id`, the name running histories carry."""
        return self.step_id


# --- activity inputs and outputs ----------------------------------------------------------------


class StepRequest(Model):
    """Input of resolve: the step as the runbook says it, and the runbook's guardrails."""

    run_id: str
    step: FaultStep
    guardrails: Guardrails
    only_new: bool = False
    """Drift checks: leave out resources a fault of this run already holds, so that the answer
    (which lands in the history at every check) carries only what is new."""


class DriftWatchRequest(Model):
    """Input of a drift watch (`<cloud>.watch_for_new_resources`): look for the step's resources
    every `interval` for at most `window`, and report the first look that finds any beyond
    `covered` (those under the fault already, or left alone)."""

    step: StepRequest
    covered: list[str]
    interval: timedelta
    window: timedelta


class DriftWatchReport(Model):
    """What a drift watch saw: how many looks it made, and the step with only the new resources
    of the look that found some (None when its window passed with nothing new)."""

    looks: int
    found: ResolvedStep | None = None


class PrepareRequest(Model):
    run_id: str
    step: FaultStep
    resolved: ResolvedStep
    guardrails: Guardrails


class FaultRequest(Model):
    """Input of apply and restore: the checkpoint alone is enough to act and to undo."""

    checkpoint: Checkpoint
    guardrails: Guardrails


class FaultResult(Model):
    changed: int = Field(0, description="resources changed by this call")
    unchanged: int = Field(0, description="resources already in the wanted state")
    notes: list[str] = []


ActivityVerb = Literal["resolve", "prepare", "apply", "restore"]


def activity_name(cloud: str, verb: ActivityVerb, action: str) -> str:
    """Activities are named by cloud, verb and action, e.g. `aws.apply_blackhole_zone`."""
    return f"{cloud}.{verb}_{action}"


def watch_activity_name(cloud: str) -> str:
    """The drift watch of a cloud's faults: `aws.watch_for_new_resources`."""
    return f"{cloud}.watch_for_new_resources"


class PlanResult(BaseModel):
    """The read-only plan workflow's answer (`gameday plan`)."""

    runbook: str
    steps: list[ResolvedStep] = []
    plan_hash: str | None = None
    problems: list[str] = []
    """Why the GameDay would be refused: unresolvable targets and guardrail refusals."""
    missing_permissions: list[Permission] = []
    """Each mutating call of the plan the worker's live credentials may not make (contract §11)."""
    unchecked_permissions: list[Permission] = []
    """Each mutating call of the plan that could not be tried (no dry run on that API)."""


class PermissionCheck(Model):
    """Input of `<cloud>.check_permissions`: the plan's resolved steps on that cloud."""

    steps: list[ResolvedStep]
