"""Planning, shared by the GameDay and the read-only plan workflow: resolve every fault step on
the worker (which holds the credentials) and check the result against the guardrails."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from gameday.guardrails import refusals
    from gameday.plan import PlanResult, ResolvedStep, StepRequest, activity_name, plan_hash
    from gameday.runbook import FaultStep, ParallelGroup, Runbook, WaitStep
    from gameday.status import GameDayInput
    from workflows.errors import describe
    from workflows.permissions import check_permissions
    from workflows.routing import HEARTBEAT, cloud_queue

PATCH_PLAN_CHECKS_PERMISSIONS = "plan-checks-permissions"
"""Plans started before this change made no permission check."""
RESOLVE_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1),
                            non_retryable_error_types=["TargetNotFound", "Refused", "UserError"])


async def resolve_step(step: FaultStep, runbook: Runbook, only_new: bool = False) -> ResolvedStep:
    """The step's resources as the cloud shows them now; with `only_new`, only those no fault of
    this run holds yet (a drift check)."""
    target = step.target
    return await workflow.execute_activity(
        activity_name(target.cloud, "resolve", step.action),
        StepRequest(run_id=workflow.info().workflow_id, step=step, guardrails=runbook.guardrails,
                    only_new=only_new),
        task_queue=cloud_queue(target.cloud),
        result_type=ResolvedStep,
        start_to_close_timeout=timedelta(minutes=10),
        heartbeat_timeout=HEARTBEAT,
        retry_policy=RESOLVE_RETRY,
        summary=(f"look for new resources of {step.id} on {target.cloud}" if only_new
                 else f"resolve {step.id}: {step.action} on {target.cloud}"),
    )


def guardrail_problems(runbook: Runbook, resolved: list[ResolvedStep]) -> list[str]:
    problems: list[str] = []
    for step in resolved:
        problems += refusals(step.step_id, step.scope, runbook.guardrails, len(step.resources))
    return problems + overlap_problems(runbook, resolved)


ASPECTS = {"blackhole_zone": "network", "blackhole_region": "network",
           "evacuate_region": "traffic", "stop_instances": "power", "deny_capacity": "capacity",
           "failover_database": "writer", "partition_regions": "cross-region routes",
           "evacuate_zone": "traffic"}
"""What of a resource each action changes: a zone's power interruption beside its network cut
stops the instances whose network tags the cut changes, and each restores only its own part."""


def overlap_problems(runbook: Runbook, resolved: list[ResolvedStep]) -> list[str]:
    """Two faults of one run that may be in effect at once must not change the same resource in
    the same way (`ASPECTS`): the second would checkpoint the first's fault as the state to
    restore, and one of them would then leave it behind. Steps of one item are in effect
    together; an earlier step is still in effect in a later item when it is held until the run
    ends (no duration)."""
    placed: dict[str, tuple[int, bool]] = {}
    for index, item in enumerate(runbook.steps):
        for step in item.parallel if isinstance(item, ParallelGroup) else [item]:
            if not isinstance(step, WaitStep):
                placed[step.id] = (index, step.held_for is None)
    touched = {r.step_id: {f"the {ASPECTS.get(r.action, r.action)} of {resource.id}"
                           for resource in r.resources} for r in resolved}
    problems = []
    ordered = [r.step_id for r in resolved if r.step_id in placed]
    for position, first in enumerate(ordered):
        for second in ordered[position + 1:]:
            (item_a, to_end_a), (item_b, to_end_b) = placed[first], placed[second]
            together = item_a == item_b or (to_end_a if item_a < item_b else to_end_b)
            shared = sorted(touched[first] & touched[second])
            if together and shared:
                problems.append(
                    f"steps {first} and {second} would both change {len(shared)} resources while "
                    f"both are in effect (e.g. {shared[0]}); give them disjoint targets, or give the "
                    "earlier one a duration so that it is restored before the later one starts")
    return problems


@workflow.defn(name="GameDayPlanWorkflow")
class GameDayPlanWorkflow:
    """Read-only: what a runbook would change, resolved by the worker, with every refusal."""

    @workflow.run
    async def run(self, input: GameDayInput) -> PlanResult:
        runbook = input.runbook
        steps = runbook.fault_steps()
        outcomes = await asyncio.gather(*(resolve_step(s, runbook) for s in steps),
                                        return_exceptions=True)
        result = PlanResult(runbook=runbook.name)
        for step, outcome in zip(steps, outcomes, strict=True):
            if isinstance(outcome, ResolvedStep):
                result.steps.append(outcome)
            elif isinstance(outcome, ActivityError):
                message = describe(outcome)
                prefix = f"step {step.id}: "
                result.problems.append(message if message.startswith(prefix) else prefix + message)
            elif isinstance(outcome, BaseException):
                raise outcome
        result.problems += guardrail_problems(runbook, result.steps)
        if workflow.patched(PATCH_PLAN_CHECKS_PERMISSIONS):
            await check_permissions(result)
        if not result.problems:
            result.plan_hash = plan_hash(result.steps)
        return result


def unit_collisions(units: list[tuple[str, str]]) -> list[str]:
    """Sentences naming each unit id that two units of a plan would share, for `(step id, unit id)`
    pairs. Empty once `gameday validate` refuses colliding step ids; a cloud may still report an
    unexpected zone name, and two units under one id would leave one of them to no dead man's
    switch."""
    owners: dict[str, list[str]] = {}
    for step_id, unit_id in units:
        owners.setdefault(unit_id, []).append(step_id)
    return [f"unit id {unit_id} would be shared by steps {' and '.join(dict.fromkeys(steps))}"
            if len(set(steps)) > 1 else f"unit id {unit_id} would be used twice by step {steps[0]}"
            for unit_id, steps in owners.items() if len(steps) > 1]
