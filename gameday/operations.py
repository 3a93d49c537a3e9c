"""What the CLI asks of Temporal: start (confirmed once planned), plan, the `approve`, `reject` and
`abort` Updates (confirmed by the workflow), status, follow, sweep (contract §9).

Every failure a user can cause (no such run, a closed run, a refused approval, no worker) becomes a
`UserError` with one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, ResetStickyTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gameday.config import Settings
from gameday.errors import UserError, first_sentence
from gameday.guardrails import refusals
from gameday.plan import Scope
from gameday.runbook import Runbook
from gameday.status import (
    CLOSED_PHASES,
    Abort,
    Approve,
    Event,
    GameDayInput,
    GameDayStatus,
    Reject,
    UpdateAnswer,
    status_from_failure,
)

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
        + ", ".join(runbook.approver_ids()),
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
    from gameday.plan import PlanResult

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
        raise UserError(f"planning failed: {failure_sentence(exc)}") from exc


async def handle_for(client: Client, run_id: str) -> tuple[WorkflowHandle[Any, Any], Any]:
    handle = client.get_workflow_handle(run_id, result_type=GameDayStatus)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise UserError(f"no GameDay with id {run_id}") from exc
        raise UserError(f"cannot read GameDay {run_id}: {first_sentence(exc.message)}") from exc
    if description.workflow_type != WORKFLOW:
        raise UserError(f"{run_id} is a {description.workflow_type}, not a GameDay")
    return handle, description


def failure_sentence(error: BaseException) -> str:
    """The innermost message of a Temporal failure, first line only (the rest is for the log)."""
    while isinstance(error, FailureError) and error.cause is not None:
        error = error.cause
    message = error.message if isinstance(error, FailureError) else str(error)
    return first_sentence(message or type(error).__name__)


def _state(description: WorkflowExecutionDescription) -> str:
    return description.status.name.lower() if description.status else "closed"


class RunEnded(UserError):
    """The run closed before it could be told anything."""


async def _result(handle: WorkflowHandle[Any, Any], state: str = "failed") -> GameDayStatus:
    """The status a GameDay ends with: its result when it closes as Completed, the status its
    `GameDayFailed` failure carries when it closes as Failed (contract §7)."""
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        carried = status_from_failure(exc)
        if carried is not None:
            return carried
        raise UserError(f"GameDay {handle.id} ended as {state} without a status: "
                        f"{failure_sentence(exc)}") from exc


async def final_status(handle: WorkflowHandle[Any, Any],
                       description: WorkflowExecutionDescription) -> GameDayStatus:
    """The status of a closed GameDay (see `_result`)."""
    return await _result(handle, _state(description))


async def status(client: Client, run_id: str) -> GameDayStatus:
    """The run's status: its final status once closed, else the `status` query."""
    handle, description = await handle_for(client, run_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        return await final_status(handle, description)
    try:
        return await handle.query("status", result_type=GameDayStatus, rpc_timeout=timedelta(seconds=10))
    except RPCError as exc:
        raise UserError(f"GameDay {run_id} is running and no worker answered its status query "
                        f"({first_sentence(exc.message)})") from exc


async def _running(client: Client, run_id: str) -> WorkflowHandle[Any, Any]:
    handle, description = await handle_for(client, run_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        if description.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
            final = await final_status(handle, description)
            raise UserError(f"GameDay {run_id} has ended (outcome {final.outcome}; every fault "
                            f"restored: {final.restored})")
        raise UserError(f"GameDay {run_id} is not running ({_state(description)})")
    return handle


# --- run: confirmed once planned (contract §9) ------------------------------------------------

PLANNED_PHASES: frozenset[str] = frozenset({"awaiting_approval", "running", "restoring"})


async def _workflow_pollers(client: Client, task_queue: str) -> int | None:
    """How many workers poll the task queue for workflow tasks (None: the server did not say)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    try:
        answer = await client.workflow_service.describe_task_queue(request,
                                                                   timeout=timedelta(seconds=5))
    except RPCError:
        return None
    return len(answer.pollers)


async def _workflow_task_failure(handle: WorkflowHandle[Any, Any],
                                 description: WorkflowExecutionDescription) -> str | None:
    """Why the run's workflow task keeps failing, when it is being retried after a failure."""
    pending = description.raw_description.pending_workflow_task
    if not description.raw_description.HasField("pending_workflow_task") or pending.attempt < 2:
        return None
    failure: str | None = None
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_completed_event_attributes"):
            failure = None  # an earlier failure that a later attempt got past
        elif event.HasField("workflow_task_failed_event_attributes"):
            message = event.workflow_task_failed_event_attributes.failure.message
            failure = first_sentence(message) if message else "no message"
    return failure


async def wait_until_planned(client: Client, handle: WorkflowHandle[Any, Any], timeout: float,
                             interval: float = 0.3) -> GameDayStatus:
    """The run's status once it has planned (awaiting approval, or already running).

    Raises a one-sentence `UserError` when planning failed or was refused, when the workflow task
    keeps failing, or when no worker answered within `timeout` seconds."""
    settings = Settings.from_env()
    deadline = time.monotonic() + timeout
    answered = False
    current: GameDayStatus | None = None
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            final = await final_status(handle, description)
            raise UserError(f"GameDay {handle.id} {final.outcome} while planning: "
                            f"{first_sentence(final.reason or 'no reason recorded')}")
        stuck = await _workflow_task_failure(handle, description)
        if stuck is not None:
            attempt = description.raw_description.pending_workflow_task.attempt
            raise UserError(f"GameDay {handle.id} cannot plan: its workflow task has failed "
                            f"{attempt - 1} times ({stuck}); see the worker's log and end it with "
                            f"`temporal workflow terminate --workflow-id {handle.id}`")
        pollers = await _workflow_pollers(client, settings.task_queue)
        remaining = deadline - time.monotonic()
        if pollers != 0 and remaining > 0:
            try:
                current = await handle.query("status", result_type=GameDayStatus,
                                             rpc_timeout=timedelta(seconds=max(1.0, min(5.0, remaining))))
                answered = True
            except RPCError:
                current = None
        if current is not None and current.phase in PLANNED_PHASES:
            return current
        if current is not None and current.phase in CLOSED_PHASES:
            raise UserError(f"GameDay {handle.id} {current.phase} while planning: "
                            f"{first_sentence(current.reason or 'no reason recorded')}")
        if time.monotonic() >= deadline:
            raise UserError(_no_plan_sentence(client, handle.id, settings, timeout, pollers, answered))
        await asyncio.sleep(interval)


def _no_plan_sentence(client: Client, run_id: str, settings: Settings, timeout: float,
                      pollers: int | None, answered: bool) -> str:
    if answered:
        return (f"GameDay {run_id} is still planning after {timeout:.0f}s; follow it with "
                f"`gameday status {run_id}` (or raise --timeout)")
    address = client.service_client.config.target_host
    polling = ("no worker polls it" if pollers == 0 else
               "workers poll it but none answered; check their logs")
    return (f"no gameday worker answered GameDay {run_id} within {timeout:.0f}s on task queue "
            f"{settings.task_queue} ({polling}): start one with `gameday worker` with "
            f"GAMEDAY_TASK_QUEUE={settings.task_queue} and TEMPORAL_ADDRESS={address}; the run "
            f"plans when one does, or end it with `gameday abort {run_id}`")


# --- approve, reject, abort: confirmed by the workflow (contract §9) --------------------------


async def _update(handle: WorkflowHandle[Any, Any], name: str, payload: Any, what: str,
                  timeout: float) -> UpdateAnswer:
    """The workflow's answer to the `name` Update; a `UserError` when no worker answered in time,
    the validator refused the payload, or the run has ended."""
    try:
        return await asyncio.wait_for(
            handle.execute_update(name, payload, result_type=UpdateAnswer), timeout)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise UserError(f"no worker confirmed the {what} of GameDay {handle.id} within "
                        f"{timeout:.0f}s; the run may still act on it when a worker picks it up "
                        f"(check `gameday status {handle.id}`)") from exc
    except WorkflowUpdateFailedError as exc:
        raise UserError(f"{what} refused: {failure_sentence(exc)}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunEnded(f"GameDay {handle.id} has ended; nothing was recorded") from exc
        raise UserError(f"Temporal refused the {what} of GameDay {handle.id}: "
                        f"{first_sentence(exc.message)}") from exc


async def _unstick(client: Client, run_id: str) -> None:
    """Let any live worker take the run's next task: if the worker that has the run cached died,
    its sticky queue would hold an abort until the sticky timeout. Costs one replay at most."""
    request = ResetStickyTaskQueueRequest(namespace=client.namespace,
                                          execution=WorkflowExecution(workflow_id=run_id))
    with contextlib.suppress(RPCError):
        await client.workflow_service.reset_sticky_task_queue(request)


async def _confirmed(handle: WorkflowHandle[Any, Any], name: str, payload: Any, what: str,
                     timeout: float) -> UpdateAnswer:
    answer = await _update(handle, name, payload, what, timeout)
    if not answer.accepted:
        raise UserError(f"{what} refused: {first_sentence(answer.detail)}")
    return answer


async def approve(client: Client, run_id: str, approver: str, step: str | None, note: str | None,
                  plan_hash: str | None, timeout: float = 15,
                  sign_with: Path | None = None) -> UpdateAnswer:
    """The approval as the workflow recorded it; a `UserError` unless it counted.

    With `sign_with`, the approval is signed over this run, gate and plan (contract §8): the plan
    hash is `plan_hash` if given, else the one the run's `status` shows once it has planned."""
    from gameday.signatures import approval_text
    from gameday.signing import sign_approval

    handle = await _running(client, run_id)
    signature = signed_text = None
    if sign_with is not None:
        if plan_hash is None:
            plan_hash = (await wait_until_planned(client, handle, timeout)).plan_hash
        if plan_hash is None:
            raise UserError(f"GameDay {run_id} shows no plan hash to sign; check `gameday status {run_id}`")
        signed_text = approval_text(handle.id, step or "start", plan_hash)
        signature = await asyncio.to_thread(sign_approval, signed_text, sign_with)
    payload = Approve(approver=approver, step=step, note=note, plan_hash=plan_hash,
                      request_id=uuid.uuid4().hex, signature=signature, signed_text=signed_text)
    return await _confirmed(handle, "approve", payload, "approval", timeout)


async def reject(client: Client, run_id: str, approver: str, reason: str | None,
                 timeout: float = 15) -> UpdateAnswer:
    handle = await _running(client, run_id)
    payload = Reject(approver=approver, reason=reason, request_id=uuid.uuid4().hex)
    return await _confirmed(handle, "reject", payload, "rejection", timeout)


async def abort(client: Client, run_id: str, by: str, reason: str, timeout: float = 15) -> UpdateAnswer:
    handle = await _running(client, run_id)
    payload = Abort(by=by, reason=reason, request_id=uuid.uuid4().hex)
    await _unstick(client, run_id)
    return await _confirmed(handle, "abort", payload, "abort", timeout)


async def follow(client: Client, run_id: str, on_event: Callable[[Event], None],
                 on_status: Callable[[GameDayStatus], None] | None = None,
                 interval: float = 0.5) -> GameDayStatus:
    """Report each new event until the run closes; return its final status."""
    handle, _ = await handle_for(client, run_id)
    seen = 0
    while True:
        description = await handle.describe()
        closed = description.status != WorkflowExecutionStatus.RUNNING
        try:
            current = await (final_status(handle, description) if closed else handle.query(
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


async def sweep(client: Client, restore: bool, clouds: list[str] | None = None,
                timeout: float = 600) -> Any:
    """Sweep the clouds named (none: every cloud the worker has configured)."""
    from gameday.sweep import SweepInput, SweepReport

    settings = Settings.from_env()
    try:
        return await client.execute_workflow(
            "GameDaySweepWorkflow", SweepInput(restore=restore, clouds=clouds or []),
            id=f"sweep-{uuid.uuid4().hex[:8]}", task_queue=settings.task_queue,
            result_type=SweepReport, execution_timeout=timedelta(seconds=timeout),
            static_summary="sweep: gameday artifacts left by runs that are over"
                           + (" (restore)" if restore else " (report only)"))
    except WorkflowFailureError as exc:
        if "timed out" in failure_sentence(exc).lower():
            raise UserError(f"the sweep did not finish within {timeout:.0f}s; is a gameday worker "
                            f"running on task queue {settings.task_queue}?") from exc
        raise UserError(f"the sweep did not finish: {failure_sentence(exc)}") from exc


async def running_gamedays(client: Client) -> list[str]:
    query = f'WorkflowType="{WORKFLOW}" AND ExecutionStatus="Running"'
    return [execution.id async for execution in client.list_workflows(query)]


ABORT_ALL_LISTINGS = 3
ABORT_ALL_RELIST = 1.0


async def abort_all(client: Client, by: str, reason: str,
                    on_done: Callable[[str, GameDayStatus | None, float | None], None],
                    timeout: float = 300,
                    on_error: Callable[[str, str], None] | None = None) -> list[GameDayStatus]:
    """Abort every running GameDay at once, the aborts sent concurrently.

    Each run is reported with the seconds from the moment this command sent its abort until the
    run closed (its faults restored): a worker that is slow to pick the abort up shows in the
    figure. A run that has not closed within `timeout` is reported with no status; a run whose
    abort was refused, or that closed without a status, goes to `on_error` with the sentence.

    The listing of running GameDays (Temporal's visibility) can lag a start by a moment, so it is
    read `ABORT_ALL_LISTINGS` times, `ABORT_ALL_RELIST` seconds apart, and each run that appears is
    aborted as soon as it does: the first aborts are sent at once, a run started just before the
    command is not missed."""

    async def one(run_id: str) -> GameDayStatus | None:
        handle = client.get_workflow_handle(run_id, result_type=GameDayStatus)
        payload = Abort(by=by, reason=reason, request_id=uuid.uuid4().hex)
        sent = time.monotonic()
        try:
            await _unstick(client, run_id)
            answer = await _update(handle, "abort", payload, "abort", timeout)
            if not answer.accepted:
                raise UserError(f"abort refused: {first_sentence(answer.detail)}")
            left = max(0.0, timeout - (time.monotonic() - sent))
            final = await asyncio.wait_for(_result(handle), left)
        except RunEnded:
            return None  # it closed between the listing and the abort
        except TimeoutError:
            on_done(run_id, None, None)
            return None
        except UserError as exc:
            if on_error is not None:
                on_error(run_id, str(exc))
            return None
        on_done(run_id, final, time.monotonic() - sent)
        return final

    seen: set[str] = set()
    aborts: list[asyncio.Future[GameDayStatus | None]] = []
    for listing in range(ABORT_ALL_LISTINGS):
        if listing:
            await asyncio.sleep(ABORT_ALL_RELIST)
        for run_id in await running_gamedays(client):
            if run_id not in seen:
                seen.add(run_id)
                aborts.append(asyncio.ensure_future(one(run_id)))
    results = await asyncio.gather(*aborts)
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
            task_queue=settings.task_queue,
            static_summary="scheduled sweep: gameday artifacts left by runs that are over"),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(SWEEP_SCHEDULE, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(SWEEP_SCHEDULE)
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
    return SWEEP_SCHEDULE
