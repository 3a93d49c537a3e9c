"""GameDayWatchdog: the dead man's switch that keeps the promise when the GameDay cannot.

The GameDay starts it (an abandoned child, so it outlives its parent) before its first injection
and signals it every checkpoint before the fault is applied, every restore, and a release once
everything is restored. If its GameDay closes without that release (terminated, failed, timed
out) or the deadline `start + max_duration` passes, the watchdog restores, newest first and
without giving up, every fault still in effect.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from gameday.plan import Checkpoint
    from gameday.runbook import Guardrails, Runbook
    from workflows.errors import describe
    from workflows.fault_calls import fault_activity
    from workflows.routing import RESTORE_RETRY
    from workflows.status_board import StatusBoard

GRACE = timedelta(seconds=60)
LATE_APPLY = timedelta(seconds=45)
"""Longer than an apply's heartbeat timeout (10 s) plus one cloud call or operation wait."""


class WatchdogInput(BaseModel):
    gameday_id: str
    deadline: datetime
    guardrails: Guardrails
    poll: timedelta = timedelta(seconds=30)
    """How often the watchdog asks whether its GameDay still runs."""
    grace: timedelta = GRACE
    """At the deadline, how long the GameDay may take to restore itself before the watchdog does."""
    checkpoints: list[Checkpoint] = []
    restored: list[str] = []
    applied: list[str] = []
    """Carried over continue-as-new: what was recorded, applied and already undone."""


class WatchdogStatus(BaseModel):
    gameday_id: str
    deadline: datetime
    in_effect: list[str]
    released: bool
    fired: str | None = None


def unit_of(checkpoint: Checkpoint) -> str:
    """The key of a checkpoint: its unit id, which no other unit of the run has (contract §7)."""
    return checkpoint.unit_id


@workflow.defn(name="GameDayWatchdog")
class GameDayWatchdog:
    @workflow.init
    def __init__(self, input: WatchdogInput) -> None:
        self._input = input
        self._checkpoints: dict[str, Checkpoint] = {}
        for checkpoint in input.checkpoints:
            self.record(checkpoint)
        self._restored: set[str] = set(input.restored)
        self._applied: set[str] = set(input.applied)
        self._released = False
        self._fired: str | None = None

    @workflow.signal
    def record(self, checkpoint: Checkpoint) -> None:
        """Keep every checkpoint: a second, different one under a unit id already recorded (the
        GameDay refuses such plans, so it must not happen) is kept beside the first, never over it."""
        unit = unit_of(checkpoint)
        copy = 1
        while unit in self._checkpoints and self._checkpoints[unit] != checkpoint:
            copy += 1
            unit = f"{unit_of(checkpoint)}#{copy}"
        self._checkpoints[unit] = checkpoint

    @workflow.signal
    def applied(self, unit: str) -> None:
        """The unit's apply has finished: no call of it can still land."""
        self._applied.add(unit)

    @workflow.signal
    def restored(self, unit: str) -> None:
        self._restored.add(unit)

    @workflow.signal
    def release(self) -> None:
        self._released = True

    @workflow.query
    def status(self) -> WatchdogStatus:
        return WatchdogStatus(gameday_id=self._input.gameday_id, deadline=self._input.deadline,
                              in_effect=self._in_effect(), released=self._released,
                              fired=self._fired)

    def _in_effect(self) -> list[str]:
        return [unit for unit in self._checkpoints if unit not in self._restored]

    @workflow.run
    async def run(self, input: WatchdogInput) -> WatchdogStatus:
        while not self._released:
            remaining = input.deadline - workflow.now()
            if remaining <= timedelta(0):
                self._fired = "the deadline (start + max_duration) passed"
                break
            try:
                await workflow.wait_condition(lambda: self._released,
                                              timeout=min(input.poll, remaining),
                                              timeout_summary="is the GameDay still running?")
                break
            except TimeoutError:
                pass
            state = await workflow.execute_activity(
                "gameday.run_state", input.gameday_id, result_type=str,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"is {input.gameday_id} still running?",
            )
            if state != "running":
                self._fired = f"the GameDay closed as {state} without restoring everything"
                break
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={
                    "checkpoints": list(self._checkpoints.values()),
                    "restored": sorted(self._restored), "applied": sorted(self._applied)}))
        if not self._released and self._fired and "deadline" in self._fired:
            await self._grace()
        if not self._released and self._in_effect():
            everything = list(self._checkpoints)
            await self._restore_everything(everything)
            in_flight = [unit for unit in everything if unit not in self._applied]
            if in_flight:
                # An apply the GameDay had in flight may still land: its worker learns of the end
                # only at its next heartbeat, and the call it is making completes first. Restore
                # those once more after that (restores are idempotent).
                await workflow.sleep(LATE_APPLY, summary="wait out an apply that may still land")
                await self._restore_everything(in_flight)
        return self.status()

    async def _grace(self) -> None:
        """At the deadline the GameDay restores itself; give it a minute before stepping in."""
        try:
            await workflow.wait_condition(lambda: self._released, timeout=self._input.grace,
                                          timeout_summary="grace for the GameDay's own restore")
        except TimeoutError:
            pass

    async def _restore_everything(self, units: list[str]) -> None:
        for unit in reversed(units):
            checkpoint = self._checkpoints[unit]
            result = await fault_activity(
                "restore", checkpoint, self._input.guardrails,
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RESTORE_RETRY,
                summary=f"dead man's switch: restore {unit} ({checkpoint.resources} resources)",
            )
            workflow.logger.info("watchdog restored %s: %s changed back", unit, result.changed)
            self._restored.add(unit)


class WatchdogLink:
    """The GameDay's end of its dead man's switch: it starts the watchdog, and tells it every
    checkpoint before its apply, every finished apply and restore, and the release."""

    def __init__(self, runbook: Runbook, deadline: datetime, poll: timedelta | None,
                 board: StatusBoard) -> None:
        self.runbook = runbook
        self.deadline = deadline
        self.poll = poll
        """How often the watchdog asks whether the GameDay still runs; None: its default."""
        self.board = board
        self.handle: (workflow.ChildWorkflowHandle[Any, Any] | workflow.ExternalWorkflowHandle[Any]
                      | None) = None
        """The watchdog: the child this run started, or (after a continue-as-new) the one an earlier
        run of the GameDay started."""

    async def arm(self) -> None:
        """Start the watchdog that restores everything if this run dies or overruns its deadline."""
        runbook, deadline, poll = self.runbook, self.deadline, self.poll
        if not runbook.fault_steps():
            return
        info = workflow.info()
        self.handle = await workflow.start_child_workflow(
            "GameDayWatchdog",
            WatchdogInput(gameday_id=info.workflow_id, deadline=deadline,
                          guardrails=runbook.guardrails,
                          **({"poll": poll} if poll else {})),
            id=f"{info.workflow_id}-watchdog",
            task_queue=info.task_queue,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"dead man's switch of {info.workflow_id}",
        )
        self.board.event("watchdog_armed", f"dead man's switch {info.workflow_id}-watchdog restores "
                         f"every fault if this run dies, by {deadline.isoformat()}")

    async def tell(self, signal: str, argument: Any = None, required: bool = False) -> None:
        """Signal the watchdog; a checkpoint it cannot receive stops the fault before it starts."""
        if self.handle is None:
            return
        try:
            if argument is None:
                await self.handle.signal(signal)
            else:
                await self.handle.signal(signal, argument)
        except Exception as error:
            if required:
                raise
            self.board.event("watchdog_unreachable", f"{signal}: {describe(error)}")
