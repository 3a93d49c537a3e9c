"""Driving GameDays in tests: runbooks with short durations, start, signal, wait on status."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from gameday.runbook import Runbook
from gameday.status import Abort, Approve, GameDayInput, GameDayStatus, Reject, status_from_failure
from workflows.gameday import GameDayWorkflow

APPROVER = "ic@example.com"
ACCOUNT = "123456789012"


def aws_zone_step(step_id: str = "blackhole-use1a", zone: str = "us-east-1a",
                  duration: str | None = "3s", **extra: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id, "action": "blackhole_zone",
        "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": zone,
                   "tags": {"gameday": "enabled"}},
    }
    if duration:
        step["duration"] = duration
    step.update(extra)
    return step


def runbook(*steps: dict[str, Any], **fields: Any) -> Runbook:
    document: dict[str, Any] = {
        "name": "test-gameday",
        "approvers": [APPROVER, "second@example.com"],
        "approval_timeout": "1m",
        "max_duration": "10m",
        "guardrails": {"aws_accounts": [ACCOUNT], "gcp_projects": ["gameday-lab"],
                       "azure_subscriptions": ["00000000-0000-0000-0000-000000000000"]},
        "steps": list(steps) or [aws_zone_step()],
    }
    document.update(fields)
    return Runbook.model_validate(document)


async def start(client: Client, book: Runbook, task_queue: str,
                workflow_id: str | None = None) -> WorkflowHandle[Any, GameDayStatus]:
    return await client.start_workflow(
        GameDayWorkflow.run,
        GameDayInput(runbook=book, source="test", started_by="pytest",
                     watchdog_poll=timedelta(seconds=2)),
        id=workflow_id or f"test-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
    )


async def final(handle: WorkflowHandle[Any, Any]) -> GameDayStatus:
    """The closed GameDay's status, whether it closed as Completed (its result) or as Failed
    (contract §7: the `GameDayFailed` failure carries the status)."""
    try:
        return GameDayStatus.model_validate(await handle.result())
    except WorkflowFailureError as error:
        closed = status_from_failure(error)
        if closed is None:
            raise
        return closed


async def status(handle: WorkflowHandle[Any, Any]) -> GameDayStatus:
    """The `status` query; once the run has closed, its final status (as `gameday status` does: a
    query on a closed run is answered by replaying it, which the SDK can fail)."""
    try:
        return await handle.query(GameDayWorkflow.status)
    except (WorkflowQueryFailedError, RPCError):
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            raise
        return await final(handle)


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Callable[[GameDayStatus], bool],
                   timeout: float = 60, what: str = "condition") -> GameDayStatus:
    """Poll the status until `predicate` holds; a query a busy worker failed to answer is asked
    again until the deadline."""
    deadline = time.monotonic() + timeout
    last: GameDayStatus | None = None
    refused: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = await status(handle)
        except (WorkflowQueryFailedError, RPCError) as error:
            refused = error
        else:
            if predicate(last):
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last status: "
                         f"{last.model_dump_json(indent=1) if last else None}"
                         + (f"; last query refused: {refused}" if refused else ""))


async def terminate(handle: WorkflowHandle[Any, Any], reason: str) -> None:
    """Terminate the run unless it has already closed."""
    if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        try:
            await handle.terminate(reason=reason)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise


async def approve(handle: WorkflowHandle[Any, Any], step: str | None = None,
                  approver: str = APPROVER, **extra: Any) -> None:
    await handle.signal(GameDayWorkflow.approve, Approve(approver=approver, step=step, **extra))


async def reject(handle: WorkflowHandle[Any, Any], approver: str = APPROVER,
                 reason: str = "not today") -> None:
    await handle.signal(GameDayWorkflow.reject, Reject(approver=approver, reason=reason))


async def abort(handle: WorkflowHandle[Any, Any], by: str = APPROVER,
                reason: str = "test abort") -> None:
    await handle.signal(GameDayWorkflow.abort, Abort(by=by, reason=reason))


def phase_is(*phases: str) -> Callable[[GameDayStatus], bool]:
    return lambda s: s.phase in phases


def step_state(step_id: str, *states: str) -> Callable[[GameDayStatus], bool]:
    return lambda s: any(x.id == step_id and x.state in states for x in s.steps)


def apply_without_temporal(activities: Any, book: Runbook, run_id: str) -> None:
    """Apply the runbook's one blackhole by calling the AWS activities directly, as a run would
    that Temporal never heard of (so: over): a leftover for the sweep and the watchdog to find."""
    from gameday.plan import FaultRequest, PrepareRequest, StepRequest

    [step] = book.fault_steps()
    resolved = activities.by_name["aws.resolve_blackhole_zone"](
        StepRequest(run_id=run_id, step=step, guardrails=book.guardrails))
    checkpoint = activities.by_name["aws.prepare_blackhole_zone"](
        PrepareRequest(run_id=run_id, step=step, resolved=resolved, guardrails=book.guardrails))
    activities.by_name["aws.apply_blackhole_zone"](
        FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails))
