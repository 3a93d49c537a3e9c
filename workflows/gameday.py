"""GameDayWorkflow: plan, approve, inject, hold, restore, whatever happens to the run.

The promise: no fault outlives its run. Each fault is prepared (a checkpoint of what will change),
pushed onto the saga stack, and only then applied. Compensation is driven from that stack, not
from exception handlers: the main loop waits for the body to finish, an abort signal, a
cancellation or the `max_duration` deadline, stops the body, and restores every entry in reverse
order in tasks that the workflow's cancellation does not reach, retrying without end.

The workflow reads like the runbook: plan, gate, lease and arm, baseline, groups, compensate,
recovery. Its helpers keep the rest: the approval rules (approvals.py) and the gates that wait on
them and answer approve, reject and abort (gates.py), the zone leases (leases.py), the saga's order
(saga.py), the plan (run_plan.py), the restores it drives and the close-out (compensation.py), what
the world sees (status_board.py), the steady state (steady_state.py), drift (drift.py), the cloud
calls of a fault (fault_calls.py), the dead man's switch (watchdog.py) and continue-as-new
(handover.py): a GameDay held for days hands over to a next run under the same workflow id while
its faults hold, so that no run's history grows past Temporal's limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from opentelemetry import trace

    from gameday.durations import format_duration
    from gameday.plan import (
        ActivityVerb,
        Checkpoint,
        FaultResult,
        ResolvedStep,
    )
    from gameday.runbook import FaultStep, ParallelGroup, WaitStep
    from gameday.status import (
        GAMEDAY_FAILED,
        Abort,
        Approve,
        Carried,
        GameDayInput,
        GameDayStatus,
        Reject,
        SteadyStateNow,
        UpdateAnswer,
    )
    from gameday.units import drift_unit_id as drift_unit_id
    from workflows.approvals import ApprovalDesk
    from workflows.compensation import PATCH_RESTORE_IN_ROUNDS as PATCH_RESTORE_IN_ROUNDS
    from workflows.compensation import Compensation, finish, shielded
    from workflows.drift import PATCH_DRIFT_STOPS_WHEN_TOLD as PATCH_DRIFT_STOPS_WHEN_TOLD
    from workflows.drift import DriftWatch
    from workflows.errors import Refused, describe
    from workflows.fault_calls import fault_units, prepare_activity, run_fault
    from workflows.gates import Gates, Rejected
    from workflows.handover import Handover
    from workflows.leases import RunLeases
    from workflows.payloads import first_error, malformed, parse
    from workflows.run_plan import make_plan
    from workflows.saga import Saga, SagaEntry
    from workflows.status_board import StatusBoard
    from workflows.steady_state import PATCH_WATCH_UNTIL_RESTORE as PATCH_WATCH_UNTIL_RESTORE
    from workflows.steady_state import SteadyState
    from workflows.watchdog import WatchdogLink

APPLY_RETRY = RetryPolicy(maximum_attempts=10, initial_interval=timedelta(seconds=1),
                          maximum_interval=timedelta(seconds=20),
                          non_retryable_error_types=["TargetNotFound", "Refused", "UserError"])
tracer = trace.get_tracer("gameday.workflow")


PATCH_ARM_WITH_LEASES = "arm-watchdog-with-leases"
"""Runs started before this change armed the watchdog after the baseline check."""
PATCH_RESTORE_AT_ONCE = "restore-while-applies-stop"
"""Runs started before this change began restoring only once every apply had stopped."""
PATCH_BODY_STOPS_ON_ABORT = "body-stops-on-abort"
"""Runs started before this change went on past an abort when the activity its cancellation
reached completed first (the SDK then returns the result, not a `CancelledError`): they waited at
the next gate, or held the next fault for its whole duration, before they restored and closed."""
PATCH_NO_APPLY_AFTER_ABORT = "no-apply-after-abort"
"""Runs started before this change counted a unit as applying only once its apply was scheduled,
and applied it even when the abort came while its checkpoint was being recorded."""

MAX_RUN = timedelta(days=7)
"""The longest a GameDay may last (the runbook model bounds `max_duration` to it too): the
deadline arithmetic never overflows, and no run is left waiting for ever."""

WORKFLOW_BUGS: tuple[type[BaseException], ...] = (
    ArithmeticError, AssertionError, AttributeError, LookupError, TypeError, ValueError,
)
"""A bug in the workflow's code fails the execution (visible in Temporal, the watchdog restores)
instead of failing its task again and again behind a phase that says `planning`. Deliberately not
`Exception`: a non-determinism error must leave the run in place for a fixed worker to resume."""


@workflow.defn(name="GameDayWorkflow", failure_exception_types=list(WORKFLOW_BUGS))
class GameDayWorkflow:
    @workflow.init
    def __init__(self, input: GameDayInput) -> None:
        self._input = input
        self._runbook = input.runbook
        carried = input.carried
        self._started = carried.started if carried else workflow.now()
        self._deadline = (carried.deadline if carried
                          else self._started + min(self._runbook.max_duration, MAX_RUN))
        self._desk = ApprovalDesk(self._runbook, workflow.info().workflow_id)
        self._saga = Saga()
        self._board = StatusBoard(self._runbook, self._desk, self._saga, self._started, self._deadline)
        self._gates = Gates(self._runbook, self._desk, self._board, self._deadline)
        self._body: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._watchdog = WatchdogLink(self._runbook, self._deadline, input.watchdog_poll, self._board)
        self._leases = RunLeases(workflow.info().workflow_id, self._board)
        self._steady = SteadyState(self._runbook, self._board, self._saga, self._gates.request_abort)
        self._drift = DriftWatch(self._runbook, self._board, self._inject, input.drift_window)
        self._compensation = Compensation(self._saga, self._board, self._watchdog,
                                          self._fault_activity)
        self._handover = Handover(self._board, self._gates, self._saga, self._steady, self._drift,
                                  self._leases, self._watchdog, input.handover_events)
        self._resumed_drift = self._handover.take_over(carried) if carried is not None else []

    # --- the run ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: GameDayInput) -> GameDayStatus:
        """The status once closed; a GameDay that failed, or left a fault it could not restore,
        closes as Failed (`ApplicationError` of type `GameDayFailed`, the status as its detail)."""
        try:
            carried = await self._conduct(input)
        except Exception as error:
            carried = None
            await self._close_after_bug(error)
        if carried is not None:
            workflow.continue_as_new(input.model_copy(update={"carried": carried}))
        handlers = asyncio.create_task(workflow.wait_condition(workflow.all_handlers_finished))
        await shielded(self._board, handlers,
                       "cancellation while closing; the run closes with its own outcome")
        status = self.status()
        if status.outcome == "failed" or not status.restored:
            raise ApplicationError(status.reason or "the GameDay failed", status.model_dump(mode="json"),
                                   type=GAMEDAY_FAILED, non_retryable=True)
        return status

    async def _close_after_bug(self, error: Exception) -> None:
        """A bug in this workflow: stop the body, restore what the saga holds, close as failed. If
        that fails too, the execution fails (`WORKFLOW_BUGS`) and the watchdog restores."""
        workflow.logger.exception("GameDay workflow failed", exc_info=error)
        if self._body is not None and not self._body.done():
            self._body.cancel()
            await self._settle(self._body)
        reason = f"the GameDay workflow failed: {describe(error)}"
        self._board.end("failed", reason)
        try:
            await self._compensation.compensate()
            await self._finish()
        except Exception as again:
            workflow.logger.exception("GameDay workflow failed while closing", exc_info=again)
            raise ApplicationError(reason, type=GAMEDAY_FAILED, non_retryable=True) from again

    async def _conduct(self, input: GameDayInput) -> Carried | None:
        """Carry out the runbook and close; or, handing over to a next run, what it takes over."""
        carried = input.carried
        if carried is None:
            self._board.event("started", f"GameDay {self._runbook.name} started"
                              + (f" by {input.started_by}" if input.started_by else "")
                              + f"; every fault is restored by {self._deadline.isoformat()}")
            body = self._body = asyncio.create_task(self._carry_out())
        else:
            self._board.event("continued", f"run {carried.run} of the GameDay takes over from the "
                              "last (continue-as-new keeps each run's history bounded)")
            body = self._body = asyncio.create_task(self._carry_on(carried))
        self._board.publish()
        try:
            while True:
                await workflow.wait_condition(
                    lambda: (body.done() or self._gates.abort is not None
                             or self._handover.due()),
                    timeout=self._remaining(),
                    timeout_summary=f"deadline: max_duration {format_duration(self._runbook.max_duration)}, "
                                    f"then abort and restore")
                if body.done() or self._gates.abort is not None:
                    break
                handed = await self._handover.hand_over(body, self._watching,
                                                        carried.run + 1 if carried else 2, self._remaining())
                if handed is not None:
                    return handed
                if not self._handover.too_large:
                    break  # an abort, or the body ended: close as usual
        except TimeoutError:
            self._gates.request_abort(Abort(by="gameday", reason=(
                f"max_duration {format_duration(self._runbook.max_duration)} reached")))
        except asyncio.CancelledError:
            self._gates.request_abort(Abort(by="temporal", reason="the workflow was cancelled"))
        early: asyncio.Task[None] | None = None
        if not body.done():
            body.cancel()
            if workflow.patched(PATCH_RESTORE_AT_ONCE):
                # restores first: an apply learns of its cancellation only through its next
                # heartbeat, and its cloud calls are not worth waiting for; whatever it did
                # meanwhile is undone by a second restore once it has stopped
                early = asyncio.create_task(self._compensation.compensate())
        await self._settle(body)
        # a cancellation from here on (the run is already stopping) must not cut off the restore,
        # the recovery check or the close-out: they run in a task of their own
        await shielded(self._board, asyncio.create_task(self._close_out(early)),
                       "cancellation while closing; restoring and closing go on")
        return None

    # --- continue-as-new (workflows/handover.py) ---------------------------------------------

    async def _carry_on(self, carried: Carried) -> None:
        """A run that took over: its steady-state watch and drift go on, the holds the last run
        interrupted end when they would have, then the items after them run."""
        self._board.set_phase("running")
        if self._runbook.steady_state is not None:
            self._watching = asyncio.create_task(self._steady.watch())
        steps = {s.id: s for s in self._runbook.fault_steps()}
        watches = {f.step_id: self._drift.resume(steps[f.step_id], f) for f in self._resumed_drift}
        item = self._runbook.steps[carried.group]
        members = item.parallel if isinstance(item, ParallelGroup) else [item]
        self._handover.open.update(step.id for step in members if step.id in carried.holds)
        async with asyncio.TaskGroup() as group:
            for step in members:
                until = carried.holds.get(step.id)
                if until is None:
                    continue
                if isinstance(step, WaitStep):
                    group.create_task(self._tracked(step.id, self._wait_until(step, until)))
                else:
                    group.create_task(self._tracked(step.id, self._hold(step, watches.get(step.id), until)))
        if self._handover.handing_over:
            return
        await self._run_items(carried.group + 1)

    async def _close_out(self, early: asyncio.Task[None] | None) -> None:
        if self._watching is not None and not self._watching.done():
            self._watching.cancel()
        await self._drift.stop_all()
        if early is not None:
            await shielded(self._board, early)
        await self._compensation.compensate()
        await self._steady.check_recovery()
        await self._finish()

    def _remaining(self) -> timedelta:
        return max(self._deadline - workflow.now(), timedelta(milliseconds=1))

    async def _carry_out(self) -> None:
        if self._runbook.max_duration > MAX_RUN:
            raise Refused(f"max_duration {format_duration(self._runbook.max_duration)} is longer than "
                          f"the {format_duration(MAX_RUN)} a GameDay may last; nothing was changed")
        self._drift.unit_ids.update(await make_plan(self._runbook, self._board))
        self._stop_if_aborted()
        await self._gates.wait_for("start")
        self._board.set_phase("running")
        if workflow.patched(PATCH_ARM_WITH_LEASES):
            # one round trip instead of two; both always finish before a failure is raised
            outcomes = await asyncio.gather(self._leases.take(self._board.plan.values()),
                                            self._watchdog.arm(), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self._check_baseline()
        else:
            await self._leases.take(self._board.plan.values())
            await self._check_baseline()
            await self._watchdog.arm()
        self._stop_if_aborted()
        if self._runbook.steady_state is not None:
            self._watching = asyncio.create_task(self._steady.watch())
        await self._run_items(0)

    async def _run_items(self, first: int) -> None:
        """The runbook's items from `first` on, one after the other; the run completes after the
        last, unless it hands over first."""
        for index, item in enumerate(self._runbook.steps[first:], start=first):
            self._stop_if_aborted()
            if self._handover.handing_over:
                return
            self._handover.group = index
            members = item.parallel if isinstance(item, ParallelGroup) else [item]
            self._handover.open.update(step.id for step in members)  # open before they start
            async with asyncio.TaskGroup() as group:
                for step in members:
                    group.create_task(self._tracked(step.id, self._run_step(step, index)))
        if self._handover.handing_over:
            return
        self._board.outcome = "completed"

    async def _tracked(self, step_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Carry out one step's part (counted as open from before it starts)."""
        try:
            await work
        finally:
            self._handover.open.discard(step_id)

    async def _settle(self, body: asyncio.Task[None]) -> None:
        """Wait until the body has stopped, then read how it ended."""
        while not body.done():
            try:
                await workflow.wait([body])
            except asyncio.CancelledError:
                self._board.event("cancel_ignored", "cancellation while stopping the run; it goes on")
        error = None if body.cancelled() else body.exception()
        error = first_error(error) if error is not None else None
        if isinstance(error, Rejected):
            self._board.end("rejected", str(error))
        elif self._gates.abort is not None:
            self._board.end("aborted", f"aborted by {self._gates.abort.by}: {self._gates.abort.reason}")
        elif isinstance(error, Refused):
            self._board.end("failed", str(error))
        elif error is not None:
            self._board.end("failed", describe(error))
            if not isinstance(error, FailureError):
                workflow.logger.exception("GameDay body failed", exc_info=error)

    # --- what people ask: the contract's signals and updates (workflows/gates.py answers) -----

    @workflow.signal
    def approve(self, payload: Any) -> None:
        """Approve the start or a step's gate. The payload is checked here, not by the converter:
        a malformed signal is recorded as refused instead of failing the workflow task."""
        signal = parse(Approve, payload)
        if isinstance(signal, str):
            self._board.event("approval_refused", f"malformed approve signal: {signal}")
            return
        self._gates.approval_signalled(signal)

    @workflow.update(name="approve")
    async def approve_update(self, payload: Any) -> UpdateAnswer:
        """The `approve` signal, answered: an approval sent while the run still plans waits here
        until the plan exists, so that it is checked against that plan."""
        signal = parse(Approve, payload)
        return await self._gates.answer_approval(signal)

    @approve_update.validator
    def _validate_approve(self, payload: Any) -> None:
        malformed(Approve, payload)

    @workflow.signal
    def reject(self, payload: Any) -> None:
        signal = parse(Reject, payload)
        if isinstance(signal, str):
            self._board.event("rejection_refused", f"malformed reject signal: {signal}")
            return
        self._gates.record_rejection(signal)

    @workflow.update(name="reject")
    def reject_update(self, payload: Any) -> UpdateAnswer:
        """The `reject` signal, answered."""
        signal = parse(Reject, payload)
        return self._gates.record_rejection(signal)

    @reject_update.validator
    def _validate_reject(self, payload: Any) -> None:
        malformed(Reject, payload)

    @workflow.signal
    def abort(self, payload: Any) -> None:
        """Anyone may stop a GameDay: stopping is always safe, so it needs no approval, and even a
        malformed abort signal aborts."""
        signal = parse(Abort, payload)
        if isinstance(signal, str):
            signal = Abort(by="unknown", reason=f"malformed abort signal ({signal})")
        self._gates.request_abort(signal)

    @workflow.update(name="abort")
    def abort_update(self, payload: Any) -> UpdateAnswer:
        """The `abort` signal, answered; a malformed request is refused by the validator."""
        signal = parse(Abort, payload)
        return self._gates.request_abort(signal)

    @abort_update.validator
    def _validate_abort(self, payload: Any) -> None:
        malformed(Abort, payload)

    # --- one step -----------------------------------------------------------------------------

    async def _run_step(self, step: FaultStep | WaitStep, group: int) -> None:
        attributes = {"gameday.step": step.id, "gameday.action": step.action}
        if not isinstance(step, WaitStep):
            attributes["cloud.provider"] = step.target.cloud
        with tracer.start_as_current_span(f"step {step.id}", attributes=attributes):
            await self._carry_out_step(step, group)

    def _stop_if_aborted(self) -> None:
        """Stop the body here once an abort came: its cancellation can be lost on the way, when
        the activity it reached completed first and the SDK handed back the result instead."""
        if self._gates.abort is not None and workflow.patched(PATCH_BODY_STOPS_ON_ABORT):
            raise asyncio.CancelledError()

    async def _carry_out_step(self, step: FaultStep | WaitStep, group: int) -> None:
        status = self._board.steps[step.id]
        self._stop_if_aborted()
        if step.approval == "required":
            await self._gates.wait_for(step.id)
            self._stop_if_aborted()
        if isinstance(step, WaitStep):
            status.state = "active"
            self._board.event("waiting", f"{step.id}: waiting {format_duration(step.duration)}",
                              step=step.id)
            self._board.publish()
            await self._wait_until(step, workflow.now() + step.duration)
            return
        status.state = "injecting"
        self._board.publish()
        entries: list[SagaEntry] = []
        try:
            async with asyncio.TaskGroup() as tasks:
                for index, (unit, resolved) in enumerate(self._units(step)):
                    tasks.create_task(self._inject(step.id, unit, index, resolved, group, entries))
        except BaseException as error:
            status.state = "failed" if self._gates.abort is None else ("restoring" if entries else "skipped")
            status.error = describe(first_error(error))
            raise
        self._stop_if_aborted()
        status.state = "active"
        status.injected_at = workflow.now()
        status.resources = sum(e.checkpoint.resources for e in entries)
        self._board.event("injected", f"{step.id}: {step.action} on {status.resources} resources"
                          + (f" in {len(entries)} zones" if len(entries) > 1 else ""), step=step.id)
        self._board.publish()
        watch = self._drift.watch(step, self._board.plan[step.id], group, len(entries))
        held = step.held_for
        if held is not None:
            await self._hold(step, watch, workflow.now() + held)

    async def _wait_until(self, step: WaitStep, until: datetime) -> None:
        if not await self._handover.held_until(step.id, until, f"{step.id}: wait"):
            self._board.steps[step.id].state = "restored"

    async def _hold(self, step: FaultStep, watch: asyncio.Task[None] | None, until: datetime) -> None:
        """Hold the fault until `until`, then stop its drift and restore it; or leave it held for
        the next run when this one hands over."""
        self._steady.hold_ends[step.id] = until
        if await self._handover.held_until(step.id, until, f"{step.id}: hold the fault"):
            return
        await self._drift.stop([watch] if watch else [])
        await self._compensation.restore_step(step.id)

    def _units(self, step: FaultStep) -> list[tuple[FaultStep, ResolvedStep]]:
        return fault_units(step, self._board.plan[step.id])

    async def _inject(self, step_id: str, unit: FaultStep, index: int, resolved: ResolvedStep,
                      group: int, entries: list[SagaEntry]) -> None:
        """Prepare, record the compensation, and only then apply."""
        checkpoint = await prepare_activity(unit, resolved, self._runbook.guardrails)
        entry = SagaEntry(step_id, checkpoint, group, index)
        self._saga.record(entry)
        entries.append(entry)
        guarded = workflow.patched(PATCH_NO_APPLY_AFTER_ABORT)
        if guarded:
            # from the record on, a restore is repeated once this unit's apply has stopped (or
            # never started): an abort during the watchdog's signal restores "nothing changed"
            # while the apply it did not cancel yet is about to change everything
            entry.applying = True
        try:
            await self._watchdog.tell("record", checkpoint, required=True)
            if guarded and self._gates.abort is not None:
                return  # aborted while recording: no apply
            entry.applying = True
            await self._fault_activity("apply", checkpoint, APPLY_RETRY)
        finally:
            entry.applying = False  # the apply waits for its cancellation: no call of it can land
        await self._watchdog.tell("applied", checkpoint.unit_id)

    async def _fault_activity(self, verb: ActivityVerb, checkpoint: Checkpoint,
                              retry: RetryPolicy) -> FaultResult:
        return await run_fault(verb, checkpoint, self._runbook.guardrails, retry)

    # --- the steady-state hypothesis ---------------------------------------------------------

    async def _check_baseline(self) -> None:
        """Before anything changes: a steady state that does not hold ends the run untouched."""
        failures = await self._steady.baseline_failures()
        if failures is not None:
            self._board.skip_all()
            raise Refused(f"the steady state does not hold before any fault: {failures}")

    # --- the close-out (compensation.py restores) -------------------------------------------

    async def _finish(self) -> None:
        await finish(self._board, self._gates, self._watchdog, self._leases)

    # --- what the world sees -----------------------------------------------------------------

    @workflow.signal(name="steady_state_seen")
    def steady_state_seen(self, payload: Any) -> None:
        """The steady-state watch's latest check, sent while its window is still open: the board
        shows it at once. Display only: aborts and objectives follow the window's own report."""
        seen = parse(SteadyStateNow, payload)
        if not isinstance(seen, str):
            self._board.see_steady_state(seen)

    @workflow.query
    def status(self) -> GameDayStatus:
        return self._board.status()

    @workflow.query
    def plan(self) -> list[ResolvedStep]:
        return list(self._board.plan.values())

    @workflow.query
    def checkpoints(self) -> list[Checkpoint]:
        """Every fault recorded so far, oldest first, whether or not it is restored."""
        return self._saga.checkpoints()
