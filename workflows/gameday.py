"""GameDayWorkflow: plan, approve, inject, hold, restore, whatever happens to the run.

The promise: no fault outlives its run. Each fault is prepared (a checkpoint of what will change),
pushed onto the saga stack, and only then applied. Compensation is driven from that stack, not
from exception handlers: the main loop waits for the body to finish, an abort signal, a
cancellation or the `max_duration` deadline, stops the body, and restores every entry in reverse
order in tasks that the workflow's cancellation does not reach, retrying without end.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from opentelemetry import trace

    from gameday.board import BoardFacts, render_board
    from gameday.durations import format_duration
    from gameday.plan import (
        Checkpoint,
        FaultRequest,
        FaultResult,
        PrepareRequest,
        ResolvedStep,
        activity_name,
        plan_hash,
    )
    from gameday.probing import CheckReport, CheckRequest, WatchReport, WatchRequest
    from gameday.runbook import BlackholeRegionStep, FaultStep, ParallelGroup, WaitStep
    from gameday.status import (
        CLOSED_PHASES,
        GAMEDAY_FAILED,
        MAX_PROBE_CHECKS,
        Abort,
        Approve,
        Event,
        GameDayInput,
        GameDayStatus,
        Notification,
        Outcome,
        Phase,
        ProbeResult,
        Reject,
        StepStatus,
        UpdateAnswer,
        approve_flags,
    )
    from gameday.units import drift_unit_id, zone_unit_id
    from workflows.approvals import ApprovalDesk, gate_name, gate_of
    from workflows.errors import describe
    from workflows.leases import LeaseAnswer, LeaseRequest, lease_key
    from workflows.planning import RESOLVE_RETRY, guardrail_problems, resolve_step
    from workflows.routing import HEARTBEAT, RESTORE_RETRY, cloud_queue
    from workflows.saga import Saga, SagaEntry
    from workflows.watchdog import WatchdogInput

PHASE_ATTRIBUTE = SearchAttributeKey.for_keyword("GameDayPhase")
OUTCOME_ATTRIBUTE = SearchAttributeKey.for_keyword("GameDayOutcome")
TRACED_EVENTS = {"approved", "approval_refused", "rejected_by", "rejection_refused",
                 "abort_requested", "abort_repeated"}

APPLY_RETRY = RetryPolicy(maximum_attempts=10, initial_interval=timedelta(seconds=1),
                          maximum_interval=timedelta(seconds=20),
                          non_retryable_error_types=["TargetNotFound", "Refused", "UserError"])
WATCH_WINDOW = timedelta(minutes=5)
FAULT_ACTIVITY_TIMEOUT = timedelta(hours=2)
PROBE_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
tracer = trace.get_tracer("gameday.workflow")


PATCH_ARM_WITH_LEASES = "arm-watchdog-with-leases"
"""Runs started before this change armed the watchdog after the baseline check."""
PATCH_WATCH_UNTIL_RESTORE = "watch-until-the-hold-ends"
"""Runs started before this change watched in windows of `WATCH_WINDOW` whatever the holds."""
PATCH_RESTORE_AT_ONCE = "restore-while-applies-stop"
"""Runs started before this change began restoring only once every apply had stopped."""
PATCH_NO_APPLY_AFTER_ABORT = "no-apply-after-abort"
"""Runs started before this change counted a unit as applying only once its apply was scheduled,
and applied it even when the abort came while its checkpoint was being recorded."""
PATCH_DRIFT_STOPS_WHEN_TOLD = "drift-stops-when-told"
"""Runs started before this change kept a drift watch going when the activity it was cancelled in
failed instead of reporting its cancellation, and the GameDay waited for the watch for ever."""

MAX_RUN = timedelta(days=7)
"""The longest a GameDay may last (the runbook model bounds `max_duration` to it too): the
deadline arithmetic never overflows, and no run is left waiting for ever."""

WORKFLOW_BUGS: tuple[type[BaseException], ...] = (
    ArithmeticError, AssertionError, AttributeError, LookupError, TypeError, ValueError,
)
"""A bug in the workflow's code fails the execution (visible in Temporal, the watchdog restores)
instead of failing its task again and again behind a phase that says `planning`. Deliberately not
`Exception`: a non-determinism error must leave the run in place for a fixed worker to resume."""


def _parse(model: type[Any], payload: Any) -> Any:
    """The payload as `model`, or one sentence saying what is wrong with it."""
    if isinstance(payload, model):
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: "
                    f"{e['msg'].removeprefix('Value error, ')}" for e in error.errors()[:3]]
        return "; ".join(problems)


def _malformed(model: type[Any], payload: Any) -> None:
    """Update validators: refuse a payload that is not a `model`, in one sentence."""
    parsed = _parse(model, payload)
    if isinstance(parsed, str):
        raise ValueError(f"malformed {model.__name__.lower()} request: {parsed}")


def _first(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


class Rejected(Exception):
    """No go: an approver rejected, or no approval came in time."""


class Refused(Exception):
    """A guardrail refused the plan; nothing was touched."""


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


@workflow.defn(name="GameDayWorkflow", failure_exception_types=list(WORKFLOW_BUGS))
class GameDayWorkflow:
    @workflow.init
    def __init__(self, input: GameDayInput) -> None:
        self._input = input
        self._runbook = input.runbook
        self._started = workflow.now()
        self._deadline = self._started + min(self._runbook.max_duration, MAX_RUN)
        self._phase: Phase = "planning"
        self._desk = ApprovalDesk(self._runbook, workflow.info().workflow_id)
        self._early: list[Approve] = []
        self._rejection: Reject | None = None
        self._abort: Abort | None = None
        self._plan: dict[str, ResolvedStep] = {}
        self._plan_hash: str | None = None
        self._saga = Saga()
        self._events: list[Event] = []
        self._outcome: Outcome | None = None
        self._reason: str | None = None
        self._hypothesis_held = True
        self._probe_checks: list[ProbeResult] = []
        self._probe_checks_dropped = 0
        self._body: asyncio.Task[None] | None = None
        self._restore_failed = False
        self._ended: datetime | None = None
        self._watching: asyncio.Task[None] | None = None
        self._watchdog: workflow.ChildWorkflowHandle[Any, Any] | None = None
        self._notifications: list[asyncio.Task[None]] = []
        self._leased = False
        self._unit_ids: set[str] = set()
        self._hold_ends: dict[str, datetime] = {}
        self._drift_watches: list[asyncio.Task[None]] = []
        self._told_to_stop: set[asyncio.Task[Any]] = set()
        self._steps: dict[str, StepStatus] = {}
        for index, item in enumerate(self._runbook.steps):
            members = item.parallel if isinstance(item, ParallelGroup) else [item]
            for step in members:
                cloud = None if isinstance(step, WaitStep) else step.target.cloud
                self._steps[step.id] = StepStatus(id=step.id, action=step.action, cloud=cloud,
                                                  group=index)

    # --- the run ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: GameDayInput) -> GameDayStatus:
        """The status once closed; a GameDay that failed, or left a fault it could not restore,
        closes as Failed (`ApplicationError` of type `GameDayFailed`, the status as its detail)."""
        try:
            await self._conduct(input)
        except Exception as error:
            await self._close_after_bug(error)
        await self._shielded(asyncio.create_task(workflow.wait_condition(workflow.all_handlers_finished)),
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
        self._end("failed", reason)
        try:
            await self._compensate()
            await self._finish()
        except Exception as again:
            workflow.logger.exception("GameDay workflow failed while closing", exc_info=again)
            raise ApplicationError(reason, type=GAMEDAY_FAILED, non_retryable=True) from again

    async def _conduct(self, input: GameDayInput) -> None:
        self._event("started", f"GameDay {self._runbook.name} started"
                    + (f" by {input.started_by}" if input.started_by else "")
                    + f"; every fault is restored by {self._deadline.isoformat()}")
        self._publish()
        body = self._body = asyncio.create_task(self._carry_out())
        try:
            await workflow.wait_condition(
                lambda: body.done() or self._abort is not None, timeout=self._remaining(),
                timeout_summary=f"deadline: max_duration {format_duration(self._runbook.max_duration)}, "
                                f"then abort and restore")
        except TimeoutError:
            self._request_abort(Abort(by="gameday", reason=(
                f"max_duration {format_duration(self._runbook.max_duration)} reached")))
        except asyncio.CancelledError:
            self._request_abort(Abort(by="temporal", reason="the workflow was cancelled"))
        early: asyncio.Task[None] | None = None
        if not body.done():
            body.cancel()
            if workflow.patched(PATCH_RESTORE_AT_ONCE):
                # restores first: an apply learns of its cancellation only through its next
                # heartbeat, and its cloud calls are not worth waiting for; whatever it did
                # meanwhile is undone by a second restore once it has stopped
                early = asyncio.create_task(self._compensate())
        await self._settle(body)
        # a cancellation from here on (the run is already stopping) must not cut off the restore,
        # the recovery check or the close-out: they run in a task of their own
        await self._shielded(asyncio.create_task(self._close_out(early)),
                             "cancellation while closing; restoring and closing go on")

    async def _close_out(self, early: asyncio.Task[None] | None) -> None:
        if self._watching is not None and not self._watching.done():
            self._watching.cancel()
        await self._stop_watches(self._drift_watches)
        if early is not None:
            await self._shielded(early)
        await self._compensate()
        await self._check_recovery()
        await self._finish()

    def _remaining(self) -> timedelta:
        return max(self._deadline - workflow.now(), timedelta(milliseconds=1))

    async def _carry_out(self) -> None:
        if self._runbook.max_duration > MAX_RUN:
            raise Refused(f"max_duration {format_duration(self._runbook.max_duration)} is longer than "
                          f"the {format_duration(MAX_RUN)} a GameDay may last; nothing was changed")
        await self._make_plan()
        await self._gate("start")
        self._set_phase("running")
        if workflow.patched(PATCH_ARM_WITH_LEASES):
            # one round trip instead of two; both always finish before a failure is raised
            outcomes = await asyncio.gather(self._take_leases(), self._arm_watchdog(),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self._check_baseline()
        else:
            await self._take_leases()
            await self._check_baseline()
            await self._arm_watchdog()
        if self._runbook.steady_state is not None:
            self._watching = asyncio.create_task(self._watch_steady_state())
        for index, item in enumerate(self._runbook.steps):
            members = item.parallel if isinstance(item, ParallelGroup) else [item]
            async with asyncio.TaskGroup() as group:
                for step in members:
                    group.create_task(self._run_step(step, index))
        self._outcome = "completed"

    async def _settle(self, body: asyncio.Task[None]) -> None:
        """Wait until the body has stopped, then read how it ended."""
        while not body.done():
            try:
                await workflow.wait([body])
            except asyncio.CancelledError:
                self._event("cancel_ignored", "cancellation while stopping the run; it goes on")
        error = None if body.cancelled() else body.exception()
        error = _first(error) if error is not None else None
        if isinstance(error, Rejected):
            self._end("rejected", str(error))
        elif self._abort is not None:
            self._end("aborted", f"aborted by {self._abort.by}: {self._abort.reason}")
        elif isinstance(error, Refused):
            self._end("failed", str(error))
        elif error is not None:
            self._end("failed", describe(error))
            if not isinstance(error, FailureError):
                workflow.logger.exception("GameDay body failed", exc_info=error)

    def _end(self, outcome: Outcome, reason: str) -> None:
        self._outcome = outcome
        self._reason = reason
        self._event(outcome, reason)

    # --- planning -----------------------------------------------------------------------------

    async def _make_plan(self) -> None:
        faults = self._runbook.fault_steps()
        resolved = list(await asyncio.gather(*(resolve_step(s, self._runbook) for s in faults)))
        self._plan = {r.step_id: r for r in resolved}
        self._plan_hash = plan_hash(resolved)
        for found in resolved:
            self._steps[found.step_id].resources = len(found.resources)
        count = sum(len(r.resources) for r in resolved)
        self._event("planned", f"{len(resolved)} faults over {count} resources; plan {self._plan_hash}")
        problems = guardrail_problems(self._runbook, resolved)
        units = [(step.id, unit.id) for step in faults for unit, _ in self._units(step)]
        collisions = unit_collisions(units)
        if problems or collisions:
            for step in faults:
                self._steps[step.id].state = "skipped"
            if problems:
                raise Refused("refused by guardrails: " + "; ".join(problems))
            raise Refused(f"refused before any change: {'; '.join(collisions)}; rename the step")
        self._unit_ids = {unit_id for _, unit_id in units}

    # --- approvals ----------------------------------------------------------------------------

    async def _gate(self, gate: str) -> None:
        """Wait for `approvals_required` distinct approvers of this gate, or a rejection."""
        needed = self._desk.needed
        what = gate_name(gate)
        approvers = ", ".join(self._desk.approver_ids())
        self._desk.pending.append(gate)
        if gate == "start":
            self._set_phase("awaiting_approval")
        else:
            self._steps[gate].state = "awaiting_approval"
        self._event("approval_requested", f"{what} awaits {needed} approval(s) from {approvers}",
                    step=None if gate == "start" else gate)
        early, self._early = self._early, []
        for signal in early:
            self._record_approval(signal)
        self._publish()
        flag = approve_flags(gate, self._runbook.approvals == "signed")
        self._notify("approval", f":raised_hand: GameDay *{self._runbook.name}*: {what} awaits "
                     f"approval by {approvers}.\n"
                     f"`gameday approve {workflow.info().workflow_id} --as <you>{flag}` "
                     f"(or `gameday reject ... --reason ...`)")
        try:
            await workflow.wait_condition(
                lambda: self._desk.satisfied(gate) or self._rejection is not None,
                timeout=min(self._runbook.approval_timeout, self._remaining()),
                timeout_summary=f"approval timeout of {what}: "
                                f"{format_duration(self._runbook.approval_timeout)}",
            )
        except TimeoutError:
            raise Rejected(f"no approval for {what} within "
                           f"{format_duration(self._runbook.approval_timeout)}") from None
        finally:
            self._desk.pending.remove(gate)
        if self._rejection is not None:
            by, why = self._rejection.approver, self._rejection.reason
            raise Rejected(f"{what} was rejected by {by}" + (f": {why}" if why else ""))
        self._publish()

    def _closed(self) -> str | None:
        """Why nothing can be asked of the run any more, or None while it runs."""
        if self._phase in CLOSED_PHASES:
            return f"the GameDay has already ended ({self._phase})"
        return None

    @workflow.signal
    def approve(self, payload: Any) -> None:
        """Approve the start or a step's gate. The payload is checked here, not by the converter:
        a malformed signal is recorded as refused instead of failing the workflow task."""
        signal = _parse(Approve, payload)
        if isinstance(signal, str):
            self._event("approval_refused", f"malformed approve signal: {signal}")
            return
        if self._phase == "planning":
            self._early.append(signal)
            return
        self._record_approval(signal)

    @workflow.update(name="approve")
    async def approve_update(self, payload: Any) -> UpdateAnswer:
        """The `approve` signal, answered: an approval sent while the run still plans waits here
        until the plan exists, so that it is checked against that plan."""
        signal = _parse(Approve, payload)
        await workflow.wait_condition(lambda: self._phase != "planning")
        return self._record_approval(signal)

    @approve_update.validator
    def _validate_approve(self, payload: Any) -> None:
        _malformed(Approve, payload)

    def _record_approval(self, signal: Approve) -> UpdateAnswer:
        """Count the approval, or record why it does not count (workflows/approvals.py); the
        answer says which."""
        gate = gate_of(signal)
        step = None if gate == "start" else gate
        fingerprint: str | None = None
        refusal = self._closed()
        if not refusal:
            refusal, fingerprint = self._desk.judge(signal, self._plan_hash)
        if refusal:
            self._event("approval_refused", refusal, step=step, by=signal.approver,
                        request_id=signal.request_id)
            self._publish()
            return UpdateAnswer(accepted=False, kind="approval_refused", detail=refusal)
        count = self._desk.count(signal)
        if step:
            self._steps[step].approved_by.append(signal.approver)
        detail = (f"{signal.approver} approved {gate} ({count}/{self._desk.needed})"
                  + (f" with key {fingerprint}" if fingerprint else "")
                  + (f": {signal.note}" if signal.note else ""))
        self._event("approved", detail, step=step, by=signal.approver, request_id=signal.request_id,
                    fingerprint=fingerprint)
        self._publish()
        return UpdateAnswer(accepted=True, kind="approved", detail=detail)

    @workflow.signal
    def reject(self, payload: Any) -> None:
        signal = _parse(Reject, payload)
        if isinstance(signal, str):
            self._event("rejection_refused", f"malformed reject signal: {signal}")
            return
        self._record_rejection(signal)

    @workflow.update(name="reject")
    def reject_update(self, payload: Any) -> UpdateAnswer:
        """The `reject` signal, answered."""
        signal = _parse(Reject, payload)
        return self._record_rejection(signal)

    @reject_update.validator
    def _validate_reject(self, payload: Any) -> None:
        _malformed(Reject, payload)

    def _record_rejection(self, signal: Reject) -> UpdateAnswer:
        refusal = self._closed() or self._desk.judge_rejection(signal, self._phase == "planning")
        if refusal:
            self._event("rejection_refused", refusal, by=signal.approver, request_id=signal.request_id)
            return UpdateAnswer(accepted=False, kind="rejection_refused", detail=refusal)
        self._rejection = self._rejection or signal
        detail = f"{signal.approver} rejected" + (f": {signal.reason}" if signal.reason else "")
        self._event("rejected_by", detail, by=signal.approver, request_id=signal.request_id)
        return UpdateAnswer(accepted=True, kind="rejected_by", detail=detail)

    @workflow.signal
    def abort(self, payload: Any) -> None:
        """Anyone may stop a GameDay: stopping is always safe, so it needs no approval, and even a
        malformed abort signal aborts."""
        signal = _parse(Abort, payload)
        if isinstance(signal, str):
            signal = Abort(by="unknown", reason=f"malformed abort signal ({signal})")
        self._request_abort(signal)

    @workflow.update(name="abort")
    def abort_update(self, payload: Any) -> UpdateAnswer:
        """The `abort` signal, answered; a malformed request is refused by the validator."""
        signal = _parse(Abort, payload)
        return self._request_abort(signal)

    @abort_update.validator
    def _validate_abort(self, payload: Any) -> None:
        _malformed(Abort, payload)

    def _request_abort(self, signal: Abort) -> UpdateAnswer:
        closed = self._closed()
        if closed:
            return UpdateAnswer(accepted=False, kind="abort_refused", detail=closed)
        detail = f"{signal.by}: {signal.reason}"
        if self._abort is not None:
            self._event("abort_repeated", detail, by=signal.by, request_id=signal.request_id)
            return UpdateAnswer(accepted=True, kind="abort_repeated", detail=detail)
        self._abort = signal
        self._event("abort_requested", detail, by=signal.by, request_id=signal.request_id)
        self._notify("abort", f":rotating_light: GameDay *{self._runbook.name}* aborted by "
                     f"{signal.by}: {signal.reason}. Every fault is being restored.")
        return UpdateAnswer(accepted=True, kind="abort_requested", detail=detail)

    # --- one step -----------------------------------------------------------------------------

    async def _run_step(self, step: FaultStep | WaitStep, group: int) -> None:
        attributes = {"gameday.step": step.id, "gameday.action": step.action}
        if not isinstance(step, WaitStep):
            attributes["cloud.provider"] = step.target.cloud
        with tracer.start_as_current_span(f"step {step.id}", attributes=attributes):
            await self._carry_out_step(step, group)

    async def _carry_out_step(self, step: FaultStep | WaitStep, group: int) -> None:
        status = self._steps[step.id]
        if step.approval == "required":
            await self._gate(step.id)
        if isinstance(step, WaitStep):
            status.state = "active"
            self._event("waiting", f"{step.id}: waiting {format_duration(step.duration)}", step=step.id)
            self._publish()
            await workflow.sleep(step.duration, summary=f"{step.id}: wait")
            status.state = "restored"
            return
        status.state = "injecting"
        self._publish()
        entries: list[SagaEntry] = []
        try:
            async with asyncio.TaskGroup() as tasks:
                for index, (unit, resolved) in enumerate(self._units(step)):
                    tasks.create_task(self._inject(step.id, unit, index, resolved, group, entries))
        except BaseException as error:
            status.state = "failed" if self._abort is None else ("restoring" if entries else "skipped")
            status.error = describe(_first(error))
            raise
        status.state = "active"
        status.injected_at = workflow.now()
        status.resources = sum(e.checkpoint.resources for e in entries)
        self._event("injected", f"{step.id}: {step.action} on {status.resources} resources"
                    + (f" in {len(entries)} zones" if len(entries) > 1 else ""), step=step.id)
        self._publish()
        watch = self._watch_drift(step, group, len(entries))
        held = step.held_for
        if held is not None:
            self._hold_ends[step.id] = workflow.now() + held
            await workflow.sleep(held, summary=f"{step.id}: hold the fault")
            await self._stop_watches([watch] if watch else [])
            await self._restore_step(step.id)

    def _units(self, step: FaultStep,
               resolved: ResolvedStep | None = None) -> list[tuple[FaultStep, ResolvedStep]]:
        """What is checkpointed and applied separately: the step itself, or each of its zones."""
        resolved = resolved or self._plan[step.id]
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

    async def _inject(self, step_id: str, unit: FaultStep, index: int, resolved: ResolvedStep,
                      group: int, entries: list[SagaEntry]) -> None:
        """Prepare, record the compensation, and only then apply."""
        checkpoint = await self._prepare(unit, resolved)
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
            await self._tell_watchdog("record", checkpoint, required=True)
            if guarded and self._abort is not None:
                return  # aborted while recording: no apply
            entry.applying = True
            await self._fault_activity("apply", checkpoint, APPLY_RETRY)
        finally:
            entry.applying = False  # the apply waits for its cancellation: no call of it can land
        await self._tell_watchdog("applied", checkpoint.unit_id)

    async def _prepare(self, step: FaultStep, resolved: ResolvedStep) -> Checkpoint:
        return await workflow.execute_activity(
            activity_name(step.target.cloud, "prepare", step.action),
            PrepareRequest(run_id=workflow.info().workflow_id, step=step,
                           resolved=resolved, guardrails=self._runbook.guardrails),
            task_queue=cloud_queue(step.target.cloud),
            result_type=Checkpoint,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=HEARTBEAT,
            retry_policy=RESOLVE_RETRY,
            summary=f"checkpoint {step.id} before any change",
        )

    async def _fault_activity(self, verb: str, checkpoint: Checkpoint,
                              retry: RetryPolicy) -> FaultResult:
        scope = checkpoint.scope
        where = scope.zone or scope.region
        return await workflow.execute_activity(
            activity_name(scope.cloud, verb, checkpoint.action),  # type: ignore[arg-type]
            FaultRequest(checkpoint=checkpoint, guardrails=self._runbook.guardrails),
            task_queue=cloud_queue(scope.cloud),
            result_type=FaultResult,
            # at a cloud's rate limit a large zone takes long (10,000 subnets at EC2's 5 mutations
            # a second: ~35 min); the heartbeat timeout, not this, notices a dead worker
            start_to_close_timeout=FAULT_ACTIVITY_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=retry,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{verb} {checkpoint.step_id}: {checkpoint.action} {scope.cloud} {where} "
                    f"({checkpoint.resources} resources)",
        )

    # --- drift -----------------------------------------------------------------------------------

    def _watch_drift(self, step: FaultStep, group: int, units: int) -> asyncio.Task[None] | None:
        """While a blackhole holds, look for resources that appeared in its zone."""
        if self._runbook.drift_interval is None or step.action == "evacuate_region":
            return None
        watch = asyncio.create_task(self._follow_drift(step, group, units))
        self._drift_watches.append(watch)
        return watch

    async def _follow_drift(self, step: FaultStep, group: int, units: int) -> None:
        interval = self._runbook.drift_interval
        assert interval is not None
        status = self._steps[step.id]
        covered = {r.id for r in self._plan[step.id].resources}
        limit = self._runbook.guardrails.max_resources_per_step
        round_ = 0
        while True:
            await workflow.sleep(interval, summary=f"{step.id}: look for new resources")
            try:
                found = await resolve_step(step, self._runbook, only_new=True)
            except ActivityError as error:
                if is_cancelled_exception(error):
                    raise  # the hold is over: the watch must stop, not look again
                self._stop_if_told()
                self._event("drift_check_failed", f"{step.id}: {describe(error)}", step=step.id)
                continue
            new = [r for r in found.resources if r.id not in covered]
            if not new:
                continue
            if len(covered) + len(new) > limit:
                self._event("drift_refused", f"{step.id}: {len(new)} new resources would exceed "
                            f"max_resources_per_step ({limit}); left alone", step=step.id)
                covered |= {r.id for r in new}
                continue
            round_ += 1
            extension = found.model_copy(update={"resources": new})
            drifted = [(unit.model_copy(update={"id": drift_unit_id(unit.id, round_)}), resolved)
                       for unit, resolved in self._units(step, extension)]
            taken = sorted(unit.id for unit, _ in drifted if unit.id in self._unit_ids)
            if taken:
                self._event("drift_refused", f"{step.id}: unit id {', '.join(taken)} is already used "
                            f"in this run; {len(new)} new resources left alone", step=step.id)
                covered |= {r.id for r in new}
                continue
            self._unit_ids |= {unit.id for unit, _ in drifted}
            for index, (unit, resolved) in enumerate(drifted):
                resolved = resolved.model_copy(update={"step_id": unit.id})
                try:
                    await self._inject(step.id, unit, units + index, resolved, group, [])
                except ActivityError as error:
                    if is_cancelled_exception(error):
                        raise
                    self._stop_if_told()
                    self._event("drift_apply_failed", f"{unit.id}: {describe(error)}; it is "
                                "restored with the rest", step=step.id)
            units += len(drifted)
            covered |= {r.id for r in new}
            status.resources += len(new)
            self._event("drift", f"{step.id}: {len(new)} new resources brought under the fault "
                        f"({', '.join(r.name or r.id for r in new[:5])})", step=step.id)
            self._publish()

    def _stop_if_told(self) -> None:
        """A watch told to stop stops, even when the activity its cancellation reached failed on
        its own (an apply whose ACL an abort's restore had just deleted) instead of reporting the
        cancellation: the error took the `CancelledError`'s place, and the loop would go on."""
        if asyncio.current_task() in self._told_to_stop and workflow.patched(PATCH_DRIFT_STOPS_WHEN_TOLD):
            raise asyncio.CancelledError()

    async def _stop_watches(self, watches: list[asyncio.Task[None]]) -> None:
        """Stop drift watches and wait until any apply they started has stopped too."""
        for watch in watches:
            self._told_to_stop.add(watch)
            watch.cancel()
        for watch in watches:
            while not watch.done():
                try:
                    await workflow.wait([watch])
                except asyncio.CancelledError:
                    continue

    # --- zone leases ---------------------------------------------------------------------------

    async def _take_leases(self) -> None:
        """One GameDay at a time per zone or region: refuse, naming the holder, before any change."""
        keys = sorted({lease_key(r.scope.cloud, r.scope.account, r.scope.region, r.scope.zone)
                       for r in self._plan.values()})
        if not keys:
            return
        answer = await workflow.execute_activity(
            "gameday.acquire_leases", LeaseRequest(run_id=workflow.info().workflow_id, keys=keys),
            result_type=LeaseAnswer, start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=5), summary="lease the zones and regions")
        if not answer.granted:
            for step in self._steps.values():
                step.state = "skipped"
            held = "; ".join(f"{key.replace(':', ' ').replace(' *', ' (whole region)')} is held by "
                             f"GameDay {holder}" for key, holder in sorted(answer.conflicts.items()))
            raise Refused(f"refused: {held}; wait for it to end or abort it")
        self._leased = True
        self._event("leased", f"holding {', '.join(keys)}")

    async def _release_leases(self) -> None:
        if not self._leased:
            return
        try:
            await workflow.execute_activity(
                "gameday.release_leases", workflow.info().workflow_id, result_type=int,
                start_to_close_timeout=timedelta(minutes=1), retry_policy=RetryPolicy(maximum_attempts=5),
                summary="release the zones and regions")
        except ActivityError as error:
            self._event("lease_release_failed", f"{describe(error)}; the next GameDay reclaims them")

    # --- notifications ------------------------------------------------------------------------

    def _notify(self, kind: str, text: str) -> None:
        """Post to the runbook's webhook in the background; a failure is an event, never an error."""
        notify = self._runbook.notify
        if notify is None or kind not in notify.events:
            return
        message = Notification(webhook=notify.webhook, text=text,
                               workflow_id=workflow.info().workflow_id)

        async def post() -> None:
            try:
                await workflow.execute_activity(
                    "notify.post", message, start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=2), summary=f"notify: {kind}")
            except ActivityError as error:
                self._event("notify_failed", f"{kind}: {describe(error)}")

        self._notifications.append(asyncio.create_task(post()))

    # --- the dead man's switch -----------------------------------------------------------------

    async def _arm_watchdog(self) -> None:
        """Start the watchdog that restores everything if this run dies or overruns its deadline."""
        if not self._runbook.fault_steps():
            return
        info = workflow.info()
        self._watchdog = await workflow.start_child_workflow(
            "GameDayWatchdog",
            WatchdogInput(gameday_id=info.workflow_id, deadline=self._deadline,
                          guardrails=self._runbook.guardrails,
                          **({"poll": self._input.watchdog_poll} if self._input.watchdog_poll else {})),
            id=f"{info.workflow_id}-watchdog",
            task_queue=info.task_queue,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"dead man's switch of {info.workflow_id}",
        )
        self._event("watchdog_armed", f"dead man's switch {info.workflow_id}-watchdog restores every "
                    f"fault if this run dies, by {self._deadline.isoformat()}")

    async def _tell_watchdog(self, signal: str, argument: Any = None, required: bool = False) -> None:
        """Signal the watchdog; a checkpoint it cannot receive stops the fault before it starts."""
        if self._watchdog is None:
            return
        try:
            if argument is None:
                await self._watchdog.signal(signal)
            else:
                await self._watchdog.signal(signal, argument)
        except Exception as error:
            if required:
                raise
            self._event("watchdog_unreachable", f"{signal}: {describe(error)}")

    # --- the steady-state hypothesis ---------------------------------------------------------

    async def _probe_once(self, summary: str) -> CheckReport:
        steady = self._runbook.steady_state
        assert steady is not None
        report = await workflow.execute_activity(
            "probe.check", CheckRequest(probes=steady.probes), result_type=CheckReport,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=PROBE_RETRY, summary=summary,
        )
        self._record_probes(report)
        return report

    def _record_probes(self, report: CheckReport, keep: bool = True) -> None:
        """An event per result; with `keep`, the results join the probe table too."""
        for result in report.results:
            verdict = "ok" if result.ok else "FAILED"
            self._event("probe", f"{result.name}: {verdict}, {result.value} "
                        f"({result.latency_ms:.0f} ms)")
        if keep:
            self._keep_checks(report.results)

    def _keep_checks(self, results: list[ProbeResult]) -> None:
        """Every check the run learns of, the last `MAX_PROBE_CHECKS` of them, counting the rest."""
        self._probe_checks.extend(results)
        excess = len(self._probe_checks) - MAX_PROBE_CHECKS
        if excess > 0:
            del self._probe_checks[:excess]
            self._probe_checks_dropped += excess

    def _watched_checks(self, report: WatchReport) -> list[ProbeResult]:
        """Every check of a watch window, as the activity reports it; from a worker that predates
        `results`, the checks whose verdict changed."""
        results: list[ProbeResult] = list(getattr(report, "results", []))
        self._probe_checks_dropped += getattr(report, "results_dropped", 0)
        if results or not report.changes:
            return results
        return [r for change in report.changes for r in change.results]

    async def _check_baseline(self) -> None:
        """Before anything changes: a steady state that does not hold ends the run untouched."""
        if self._runbook.steady_state is None:
            return
        report = await self._probe_once("baseline: does the steady state hold?")
        if not report.ok:
            self._hypothesis_held = False
            for step in self._steps.values():
                step.state = "skipped"
            raise Refused(f"the steady state does not hold before any fault: {report.failures()}")

    def _watch_window(self) -> timedelta:
        """Until the faults in effect are due to be restored, at most `WATCH_WINDOW`: a watch that
        is cancelled because its faults were restored never reports its checks, one that ends on
        time does."""
        held = {step.id: step.held_for for step in self._runbook.fault_steps()}
        now = workflow.now()
        ends: list[datetime] = []
        for step_id in {e.step_id for e in self._saga.in_effect()}:
            if step_id in self._hold_ends:
                ends.append(self._hold_ends[step_id])
            elif held.get(step_id) is not None:  # still injecting: held at least this long
                ends.append(now + held[step_id])  # type: ignore[operator]
            else:
                return WATCH_WINDOW
        return min(WATCH_WINDOW, max(ends) - now) if ends else WATCH_WINDOW

    def _faults_in_effect(self) -> bool:
        return self._saga.any_in_effect()

    async def _watch_steady_state(self) -> None:
        """While faults are in effect, check every interval; `tolerance` failures in a row abort."""
        steady = self._runbook.steady_state
        assert steady is not None
        failed = 0
        until_restore = workflow.patched(PATCH_WATCH_UNTIL_RESTORE)
        while True:
            await workflow.wait_condition(self._faults_in_effect)
            window = self._watch_window() if until_restore else WATCH_WINDOW
            if window < steady.interval:
                # the faults are restored within one interval: no watch of a single check
                try:
                    await workflow.wait_condition(lambda: not self._faults_in_effect(),
                                                  timeout=steady.interval,
                                                  timeout_summary="wait for the next steady-state check")
                except TimeoutError:
                    pass
                continue
            watch = asyncio.create_task(workflow.execute_activity(
                "probe.watch",
                WatchRequest(probes=steady.probes, interval=steady.interval,
                             tolerance=steady.tolerance, window=window, failed_before=failed),
                result_type=WatchReport,
                start_to_close_timeout=WATCH_WINDOW + steady.interval + timedelta(minutes=1),
                heartbeat_timeout=max(steady.interval * 3, timedelta(seconds=30)),
                retry_policy=PROBE_RETRY,
                summary=f"watch the steady state every {format_duration(steady.interval)}",
            ))
            quiet = asyncio.create_task(workflow.wait_condition(lambda: not self._faults_in_effect()))
            await workflow.wait([watch, quiet], return_when=asyncio.FIRST_COMPLETED)
            if not watch.done():
                watch.cancel()
                quiet.cancel()
                continue
            quiet.cancel()
            try:
                report = watch.result()
            except ActivityError as error:
                self._event("probe", f"the steady-state watch failed: {describe(error)}; retrying")
                await workflow.sleep(steady.interval)
                continue
            for change in report.changes:
                self._record_probes(change, keep=False)
            self._keep_checks(self._watched_checks(report))
            failed = report.consecutive_failures
            if report.breached:
                self._hypothesis_held = False
                last = report.changes[-1].failures() if report.changes else "probes failing"
                self._request_abort(Abort(by="steady-state", reason=(
                    f"{failed} consecutive failed checks (tolerance {steady.tolerance}): {last}")))
                return

    async def _check_recovery(self) -> None:
        """After the restore, the probes must pass again within `recovery_timeout`."""
        steady = self._runbook.steady_state
        if steady is None or not self._saga.entries:
            return
        deadline = workflow.now() + steady.recovery_timeout
        while True:
            try:
                report = await self._probe_once("recovery: does the steady state hold again?")
            except ActivityError as error:
                self._event("probe", f"recovery check failed: {describe(error)}")
                report = None
            if report is not None and report.ok:
                self._event("recovered", "the steady state holds again after the restore")
                return
            if workflow.now() + steady.interval > deadline:
                self._hypothesis_held = False
                self._event("not_recovered", "the steady state did not hold again within "
                            f"{format_duration(steady.recovery_timeout)} of the restore")
                return
            await workflow.sleep(steady.interval, summary="wait before the next recovery check")

    # --- compensation -------------------------------------------------------------------------

    async def _restore(self, entry: SagaEntry) -> None:
        """Restore one entry; the restore runs in its own task, so no cancellation stops it."""
        if entry.restore is None:
            entry.restore = asyncio.create_task(self._run_restore(entry))
        await asyncio.shield(entry.restore)

    async def _restore_step(self, step_id: str) -> None:
        """Restore a step's units one by one, newest first (a region: zone by zone)."""
        for entry in self._saga.units_of(step_id):
            await self._restore(entry)

    async def _run_restore(self, entry: SagaEntry) -> None:
        status = self._steps[entry.step_id]
        unit = entry.checkpoint.unit_id
        status.state = "restoring"
        raced = entry.applying
        self._event("restoring", f"{unit}: restoring {entry.checkpoint.resources} resources"
                    + (" while its apply stops" if raced else ""), step=status.id)
        self._publish()
        try:
            result = await self._fault_activity("restore", entry.checkpoint, RESTORE_RETRY)
        except ActivityError as error:
            status.state = "failed"
            status.error = describe(error)
            self._restore_failed = True
            self._event("restore_failed", f"{unit}: {status.error}; run `gameday sweep "
                        "--restore` or restore by hand", step=status.id)
            self._publish()
            return
        if raced:
            entry.restore = None  # restored again once its apply has stopped (`_compensate`)
            self._event("restored", f"{unit}: {result.changed} changed back while its apply was "
                        "stopping; restored again once it has stopped", step=status.id)
            return
        entry.restored = True
        await self._tell_watchdog("restored", unit)
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        self._event("restored", f"{unit}: {result.changed} changed back, "
                    f"{result.unchanged} already as before{notes}", step=status.id)
        if self._saga.step_restored(entry.step_id):
            status.state = "restored"
            status.restored_at = workflow.now()
        self._publish()

    async def _compensate(self) -> None:
        """Undo every fault still in effect, newest group first; the steps of a parallel group
        restore together, each newest unit first."""
        groups = self._saga.compensation_groups()
        if not groups:
            return
        self._set_phase("restoring")
        for steps in groups:
            await self._shielded(asyncio.gather(*(self._restore_step(step_id) for step_id in steps)))

    async def _shielded(self, work: asyncio.Future[Any],
                        ignored: str = "cancellation during restore; restoring goes on") -> None:
        """Wait for work (restores, the close-out) that no cancellation of the workflow may stop."""
        while not work.done():
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                self._event("cancel_ignored", ignored)
        work.result()

    async def _finish(self) -> None:
        if self._outcome is None:
            self._end("failed", "the run ended without an outcome")
        assert self._outcome is not None
        self._ended = workflow.now()
        for step in self._steps.values():
            if step.state in ("pending", "awaiting_approval"):
                step.state = "skipped"
        if self._restore_failed and self._outcome == "completed":
            self._end("failed", "a fault could not be restored")
        workflow.upsert_search_attributes([OUTCOME_ATTRIBUTE.value_set(self._outcome)])
        self._set_phase(self._outcome)
        early, self._early = self._early, []
        for signal in early:  # sent while planning, and planning never reached a gate
            self._record_approval(signal)
        self._event("finished", f"outcome {self._outcome}; every fault restored: "
                    f"{self._all_restored()}")
        if self._all_restored():
            await self._tell_watchdog("release")
            await self._release_leases()
        self._notify("end", f"GameDay *{self._runbook.name}* ended: {self._outcome}"
                     + (f" ({self._reason})" if self._reason else "")
                     + f"; hypothesis held: {self._hypothesis_verdict()}; every fault restored: "
                     f"{self._all_restored()}.")
        if self._notifications:
            await workflow.wait(self._notifications)
        self._publish()

    def _hypothesis_verdict(self) -> str:
        if self._runbook.steady_state is None:
            return "not tested"
        return "yes" if self._hypothesis_held else "no"

    def _all_restored(self) -> bool:
        return self._saga.all_restored() and not self._restore_failed

    # --- what the world sees -----------------------------------------------------------------

    @workflow.query
    def status(self) -> GameDayStatus:
        closed = self._ended is not None
        return GameDayStatus(
            runbook=self._runbook.name,
            phase=self._phase,
            pending_approval=self._desk.pending[0] if self._desk.pending else None,
            pending_approvals=list(self._desk.pending),
            steps=list(self._steps.values()),
            active_faults=[s.id for s in self._steps.values() if s.state in ("active", "restoring")
                           and s.cloud is not None],
            plan_hash=self._plan_hash,
            events=list(self._events),
            started_at=self._started,
            deadline=self._deadline,
            approvals_required=self._runbook.approvals_required,
            approvals=self._runbook.approvals,
            outcome=self._outcome if closed else None,
            reason=self._reason,
            hypothesis_held=(self._hypothesis_held if closed and self._runbook.steady_state is not None
                             else None),
            restored=self._all_restored() if closed else None,
            ended_at=self._ended,
            probe_checks=list(self._probe_checks),
            probe_checks_dropped=self._probe_checks_dropped,
        )

    @workflow.query
    def plan(self) -> list[ResolvedStep]:
        return list(self._plan.values())

    @workflow.query
    def checkpoints(self) -> list[Checkpoint]:
        """Every fault recorded so far, oldest first, whether or not it is restored."""
        return self._saga.checkpoints()

    def _event(self, kind: str, detail: str, **extra: Any) -> None:
        self._events.append(Event(at=workflow.now(), kind=kind, detail=detail, **extra))
        if kind in TRACED_EVENTS:
            attributes = {"detail": detail, **{k: str(v) for k, v in extra.items() if v is not None}}
            trace.get_current_span().add_event(f"gameday.{kind}", attributes)

    def _set_phase(self, phase: Phase) -> None:
        if phase != self._phase:
            self._phase = phase
            self._event("phase", phase)
        workflow.upsert_search_attributes([PHASE_ATTRIBUTE.value_set(phase)])
        self._publish()

    def _publish(self) -> None:
        """Keep the Temporal UI's current details the incident commander's board (gameday/board.py)."""
        workflow.set_current_details(render_board(self.status(), BoardFacts(
            workflow_id=workflow.info().workflow_id, now=workflow.now(), runbook=self._runbook,
            plan=list(self._plan.values()),
            in_effect=[(e.step_id, e.checkpoint) for e in self._saga.in_effect()])))
