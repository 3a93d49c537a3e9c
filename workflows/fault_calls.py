"""The cloud calls of a fault: the units a fault step is checkpointed and applied in, the checkpoint
taken before any change (prepare), and the apply and restore of a checkpoint.

The GameDay and its dead man's switch schedule the same `fault_activity`; each passes its own
timeout, retry policy, cancellation type and summary, because those are part of the scheduled
command that running histories replay against.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from gameday.plan import (
        ActivityVerb,
        Checkpoint,
        FaultRequest,
        FaultResult,
        PrepareRequest,
        ResolvedStep,
        activity_name,
    )
    from gameday.runbook import BlackholeRegionStep, FaultStep, Guardrails
    from gameday.units import zone_unit_id
    from workflows.planning import RESOLVE_RETRY
    from workflows.routing import HEARTBEAT, cloud_queue


def fault_units(step: FaultStep, resolved: ResolvedStep) -> list[tuple[FaultStep, ResolvedStep]]:
    """What is checkpointed and applied separately: the step itself, or each of its zones."""
    if not isinstance(step, BlackholeRegionStep):
        return [(step, resolved)]
    units: list[tuple[FaultStep, ResolvedStep]] = []
    for zone in sorted({r.detail["zone"] for r in resolved.resources}):
        unit = step.zone_step(zone).model_copy(update={"id": zone_unit_id(step.id, zone)})
        units.append((unit, ResolvedStep(
            step_id=unit.id, action=unit.action,
            scope=resolved.scope.model_copy(update={"zone": zone}),
            resources=[r for r in resolved.resources if r.detail["zone"] == zone])))
    return units


async def prepare_activity(step: FaultStep, resolved: ResolvedStep, guardrails: Guardrails) -> Checkpoint:
    """The unit's checkpoint: every change it will make and the state before, read before any."""
    return await workflow.execute_activity(
        activity_name(step.target.cloud, "prepare", step.action),
        PrepareRequest(run_id=workflow.info().workflow_id, step=step,
                       resolved=resolved, guardrails=guardrails),
        task_queue=cloud_queue(step.target.cloud),
        result_type=Checkpoint,
        start_to_close_timeout=timedelta(minutes=10),
        heartbeat_timeout=HEARTBEAT,
        retry_policy=RESOLVE_RETRY,
        summary=f"checkpoint {step.id} before any change",
    )


async def fault_activity(
    verb: ActivityVerb,
    checkpoint: Checkpoint,
    guardrails: Guardrails,
    *,
    start_to_close_timeout: timedelta,
    retry_policy: RetryPolicy,
    summary: str,
    cancellation_type: workflow.ActivityCancellationType = workflow.ActivityCancellationType.TRY_CANCEL,
) -> FaultResult:
    """Apply or restore a checkpoint on its cloud's task queue; the activity re-checks the
    guardrails itself, so a bug here cannot widen the blast radius."""
    scope = checkpoint.scope
    return await workflow.execute_activity(
        activity_name(scope.cloud, verb, checkpoint.action),
        FaultRequest(checkpoint=checkpoint, guardrails=guardrails),
        task_queue=cloud_queue(scope.cloud),
        result_type=FaultResult,
        start_to_close_timeout=start_to_close_timeout,
        heartbeat_timeout=HEARTBEAT,
        retry_policy=retry_policy,
        cancellation_type=cancellation_type,
        summary=summary,
    )


FAULT_ACTIVITY_TIMEOUT = timedelta(hours=2)
"""At a cloud's rate limit a large zone takes long (10,000 subnets at EC2's 5 mutations a second:
~35 min); the heartbeat timeout, not this, notices a dead worker."""


async def run_fault(verb: ActivityVerb, checkpoint: Checkpoint, guardrails: Guardrails,
                    retry: RetryPolicy) -> FaultResult:
    """The GameDay's apply or restore of a checkpoint: cancelled, it waits until the activity has
    stopped, so that no call of it can land after."""
    scope = checkpoint.scope
    where = scope.zone or scope.region
    return await fault_activity(
        verb, checkpoint, guardrails,
        start_to_close_timeout=FAULT_ACTIVITY_TIMEOUT,
        retry_policy=retry,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=f"{verb} {checkpoint.step_id}: {checkpoint.action} {scope.cloud} {where} "
                f"({checkpoint.resources} resources)",
    )
