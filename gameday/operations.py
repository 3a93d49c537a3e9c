"""What the CLI asks of Temporal: start, plan, signal with confirmation, status, follow.

Every failure a user can cause (no such run, a closed run, a refused approval, no worker) becomes a
`UserError` with one sentence.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gameday.config import Settings
from gameday.errors import UserError
from gameday.guardrails import refusals
from gameday.plan import Scope
from gameday.runbook import Runbook
from gameday.status import CLOSED_PHASES, Abort, Approve, Event, GameDayInput, GameDayStatus, Reject

RUNBOOK_ATTRIBUTE = SearchAttributeKey.for_keyword("GameDayRunbook")
PHASE_ATTRIBUTE = SearchAttributeKey.for_keyword("GameDayPhase")
CLOUDS_ATTRIBUTE = SearchAttributeKey.for_keyword_list("GameDayClouds")
WORKFLOW = "GameDayWorkflow"
PLAN_WORKFLOW = "GameDayPlanWorkflow"


def static_refusals(runbook: Runbook) -> list[str]:
    """Guardrail refusals that need no cloud: a target outside the runbook's own scopes."""
    problems: list[str] = []
    for step in runbook.fault_steps():
        problems += refusals(step.id, Scope.of(step.target), runbook.guardrails)
    return problems


def default_run_id(runbook: Runbook) -> str:
    return f"{runbook.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def start_options(runbook: Runbook, settings: Settings) -> dict[str, Any]:
    """Options for starting a GameDay (from the CLI or a Schedule): queue, UI summary, attributes."""
    steps = ", ".join(s.id for s in runbook.all_steps())
    return {
        "task_queue": settings.task_queue,
        "search_attributes": TypedSearchAttributes([
            SearchAttributePair(RUNBOOK_ATTRIBUTE, runbook.name),
            SearchAttributePair(PHASE_ATTRIBUTE, "planning"),
            SearchAttributePair(CLOUDS_ATTRIBUTE, runbook.clouds()),
        ]),
        "static_summary": f"GameDay {runbook.name}",
        "static_details": (runbook.description or "") + f"\n\nsteps: {steps}\n\napprovers: "
        + ", ".join(runbook.approvers),
    }


async def start_gameday(client: Client, runbook: Runbook, source: str, run_id: str | None,
                        started_by: str | None) -> WorkflowHandle[Any, Any]:
    problems = static_refusals(runbook)
    if problems:
        raise UserError("; ".join(problems))
    workflow_id = run_id or default_run_id(runbook)
    if len(workflow_id) > 200:
        raise UserError("the run id is longer than 200 characters")
    try:
        return await client.start_workflow(
            WORKFLOW,
            GameDayInput(runbook=runbook, source=source, started_by=started_by),
            id=workflow_id,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            result_type=GameDayStatus,
            **start_options(runbook, Settings.from_env()),
        )
    except WorkflowAlreadyStartedError as exc:
        raise UserError(f"a GameDay with id {workflow_id} already exists; choose another --id") from exc
    except RPCError as exc:
        raise UserError(f"Temporal refused to start {workflow_id}: {exc.message}") from exc


async def plan(client: Client, runbook: Runbook, source: str, timeout: float) -> Any:
    from workflows.planning import PlanResult

    settings = Settings.from_env()
    try:
        return await client.execute_workflow(
            PLAN_WORKFLOW,
            GameDayInput(runbook=runbook, source=source),
            id=f"plan-{runbook.name}-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
            result_type=PlanResult,
            execution_timeout=timedelta(seconds=timeout),
        )
    except WorkflowFailureError as exc:
        if "timed out" in str(exc.cause).lower() or "timeout" in type(exc.cause).__name__.lower():
            raise UserError(
                f"no gameday worker answered on task queue {settings.task_queue} within "
                f"{timeout:.0f}s; start one with `gameday worker`"
            ) from exc
        raise UserError(f"planning failed: {exc.cause}") from exc


async def handle_for(client: Client, run_id: str) -> tuple[WorkflowHandle[Any, Any], Any]:
    handle = client.get_workflow_handle(run_id, result_type=GameDayStatus)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"no GameDay with id {run_id}") from exc
        raise UserError(f"cannot read GameDay {run_id}: {exc.message}") from exc
    if description.workflow_type != WORKFLOW:
        raise UserError(f"{run_id} is a {description.workflow_type}, not a GameDay")
    return handle, description


async def status(client: Client, run_id: str) -> GameDayStatus:
    """The run's status: its result once closed, else the `status` query."""
    handle, description = await handle_for(client, run_id)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    try:
        return await handle.query("status", result_type=GameDayStatus, rpc_timeout=timedelta(seconds=10))
    except RPCError as exc:
        state = description.status.name.lower() if description.status else "unknown"
        raise UserError(f"GameDay {run_id} is {state} and no worker answered its status query "
                        f"({exc.message})") from exc


async def _running(client: Client, run_id: str) -> WorkflowHandle[Any, Any]:
    handle, description = await handle_for(client, run_id)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        final: GameDayStatus = await handle.result()
        raise UserError(f"GameDay {run_id} has ended (outcome {final.outcome}; every fault "
                        f"restored: {final.restored})")
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = description.status.name.lower() if description.status else "closed"
        raise UserError(f"GameDay {run_id} is not running ({state})")
    return handle


async def _answer(handle: WorkflowHandle[Any, Any], request_id: str, timeout: float) -> Event | None:
    """The event the workflow recorded for this request, once it has handled the signal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current: GameDayStatus = await handle.query("status", result_type=GameDayStatus,
                                                        rpc_timeout=timedelta(seconds=5))
        except RPCError:
            current = None  # type: ignore[assignment]
        if current is not None:
            for event in current.events:
                if event.request_id == request_id:
                    return event
            if current.phase in CLOSED_PHASES:
                return None
        await asyncio.sleep(0.2)
    return None


async def approve(client: Client, run_id: str, approver: str, step: str | None, note: str | None,
                  plan_hash: str | None, timeout: float = 15) -> Event:
    handle = await _running(client, run_id)
    request_id = uuid.uuid4().hex
    await handle.signal("approve", Approve(approver=approver, step=step, note=note,
                                           plan_hash=plan_hash, request_id=request_id))
    event = await _answer(handle, request_id, timeout)
    if event is None:
        raise UserError(f"GameDay {run_id} did not confirm the approval within {timeout:.0f}s; "
                        "check `gameday status`")
    if event.kind != "approved":
        raise UserError(f"approval refused: {event.detail}")
    return event


async def reject(client: Client, run_id: str, approver: str, reason: str | None,
                 timeout: float = 15) -> Event:
    handle = await _running(client, run_id)
    request_id = uuid.uuid4().hex
    await handle.signal("reject", Reject(approver=approver, reason=reason, request_id=request_id))
    event = await _answer(handle, request_id, timeout)
    if event is None:
        raise UserError(f"GameDay {run_id} did not confirm the rejection within {timeout:.0f}s")
    if event.kind != "rejected_by":
        raise UserError(f"rejection refused: {event.detail}")
    return event


async def abort(client: Client, run_id: str, by: str, reason: str, timeout: float = 15) -> Event | None:
    handle = await _running(client, run_id)
    request_id = uuid.uuid4().hex
    await handle.signal("abort", Abort(by=by, reason=reason, request_id=request_id))
    return await _answer(handle, request_id, timeout)


async def follow(client: Client, run_id: str, on_event: Callable[[Event], None],
                 on_status: Callable[[GameDayStatus], None] | None = None,
                 interval: float = 0.5) -> GameDayStatus:
    """Report each new event until the run closes; return its final status."""
    handle, _ = await handle_for(client, run_id)
    seen = 0
    while True:
        description = await handle.describe()
        closed = description.status != WorkflowExecutionStatus.RUNNING
        if closed and description.status != WorkflowExecutionStatus.COMPLETED:
            state = description.status.name.lower() if description.status else "closed"
            raise UserError(f"GameDay {run_id} ended as {state} without a result")
        try:
            current = await (handle.result() if closed else handle.query(
                "status", result_type=GameDayStatus, rpc_timeout=timedelta(seconds=10)))
        except RPCError:
            await asyncio.sleep(interval)
            continue
        for event in current.events[seen:]:
            on_event(event)
        seen = len(current.events)
        if on_status:
            on_status(current)
        if closed:
            return current
        await asyncio.sleep(interval)


async def sweep(client: Client, restore: bool, timeout: float = 600) -> Any:
    from gameday.sweep import SweepInput, SweepReport

    settings = Settings.from_env()
    try:
        return await client.execute_workflow(
            "GameDaySweepWorkflow", SweepInput(restore=restore),
            id=f"sweep-{uuid.uuid4().hex[:8]}", task_queue=settings.task_queue,
            result_type=SweepReport, execution_timeout=timedelta(seconds=timeout))
    except WorkflowFailureError as exc:
        raise UserError(f"the sweep did not finish: {exc.cause}") from exc


async def running_gamedays(client: Client) -> list[str]:
    query = f'WorkflowType="{WORKFLOW}" AND ExecutionStatus="Running"'
    return [execution.id async for execution in client.list_workflows(query)]


async def abort_all(client: Client, by: str, reason: str,
                    on_done: Callable[[str, GameDayStatus | None, float | None], None],
                    timeout: float = 300) -> list[GameDayStatus]:
    """Abort every running GameDay at once; report each with seconds from signal to last restore
    (a run that has not closed within `timeout` is reported with no status)."""
    ids = await running_gamedays(client)

    async def one(run_id: str) -> GameDayStatus | None:
        request_id = uuid.uuid4().hex
        handle = client.get_workflow_handle(run_id, result_type=GameDayStatus)
        try:
            await handle.signal("abort", Abort(by=by, reason=reason, request_id=request_id))
        except RPCError:
            return None  # it closed between the listing and the signal
        try:
            final: GameDayStatus = await asyncio.wait_for(handle.result(), timeout)
        except TimeoutError:
            on_done(run_id, None, None)
            return None
        signalled = next((e.at for e in final.events if e.request_id == request_id), None)
        restores = [e.at for e in final.events if e.kind == "restored"]
        seconds = (max(restores) - signalled).total_seconds() if signalled and restores else None
        on_done(run_id, final, seconds)
        return final

    results = await asyncio.gather(*(one(run_id) for run_id in ids))
    return [r for r in results if r is not None]


SWEEP_SCHEDULE = "gameday-sweep"


async def install_sweep_schedule(client: Client, every: timedelta, restore: bool) -> str:
    """A Temporal Schedule that sweeps every `every` (replacing an earlier one): the belt to the
    dead man's switch's braces, for artifacts a run killed for good left behind."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleUpdate,
    )

    from gameday.sweep import SweepInput

    settings = Settings.from_env()
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            "GameDaySweepWorkflow", SweepInput(restore=restore), id=f"{SWEEP_SCHEDULE}-run",
            task_queue=settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SWEEP_SCHEDULE, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(SWEEP_SCHEDULE)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
    return SWEEP_SCHEDULE
