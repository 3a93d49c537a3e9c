"""Compensation: every fault the saga holds is restored, newest first, and nothing stops it.

Each entry's restore runs in a task of its own, so the workflow's cancellation does not reach it;
it is retried without end (in rounds, each failed round shown on the board), and an entry whose
apply was still running is restored again once that apply has stopped. The watchdog hears of each
finished restore, so that it does not restore the unit a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, RetryState

with workflow.unsafe.imports_passed_through():
    from gameday.durations import format_duration
    from gameday.plan import ActivityVerb, Checkpoint, FaultResult
    from workflows.errors import describe
    from workflows.gates import Gates
    from workflows.leases import RunLeases
    from workflows.routing import RESTORE_RETRY, RESTORE_ROUND, round_pause
    from workflows.saga import Saga, SagaEntry
    from workflows.status_board import StatusBoard
    from workflows.watchdog import WatchdogLink

PATCH_RESTORE_IN_ROUNDS = "restore-in-rounds"
"""Runs started before this change restored with one activity retried without end, so the run never
saw an attempt's failure."""

FaultActivity = Callable[[ActivityVerb, Checkpoint, RetryPolicy], Awaitable[FaultResult]]
"""The GameDay's call of one fault activity: (verb, checkpoint, retry policy) to its result."""


async def shielded(board: StatusBoard, work: asyncio.Future[Any],
                   ignored: str = "cancellation during restore; restoring goes on") -> None:
    """Wait for work (restores, the close-out) that no cancellation of the workflow may stop; each
    cancellation ignored is recorded on the board as `ignored`."""
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            board.event("cancel_ignored", ignored)
    work.result()


class Compensation:
    """The restores of one run, driven from its saga."""

    def __init__(self, saga: Saga, board: StatusBoard, watchdog: WatchdogLink,
                 fault_activity: FaultActivity) -> None:
        self.saga = saga
        self.board = board
        self.watchdog = watchdog
        self.fault_activity = fault_activity

    async def compensate(self) -> None:
        """Undo every fault still in effect, newest group first; the steps of a parallel group
        restore together, each newest unit first."""
        groups = self.saga.compensation_groups()
        if not groups:
            return
        self.board.set_phase("restoring")
        for steps in groups:
            await shielded(self.board, asyncio.gather(*(self.restore_step(step_id) for step_id in steps)))

    async def restore_step(self, step_id: str) -> None:
        """Restore a step's units one by one, newest first (a region: zone by zone)."""
        for entry in self.saga.units_of(step_id):
            await self._restore(entry)

    async def _restore(self, entry: SagaEntry) -> None:
        """Restore one entry; the restore runs in its own task, so no cancellation stops it."""
        if entry.restore is None:
            entry.restore = asyncio.create_task(self._run_restore(entry))
        await asyncio.shield(entry.restore)

    async def _run_restore(self, entry: SagaEntry) -> None:
        board = self.board
        status = board.steps[entry.step_id]
        unit = entry.checkpoint.unit_id
        status.state = "restoring"
        raced = entry.applying
        board.event("restoring", f"{unit}: restoring {entry.checkpoint.resources} resources"
                    + (" while its apply stops" if raced else ""), step=status.id)
        board.publish()
        try:
            result = await self._restore_until_done(entry)
        except ActivityError as error:
            status.state = "failed"
            status.error = describe(error)
            board.restore_failed = True
            board.event("restore_failed", f"{unit}: {status.error}; run `gameday sweep "
                        "--restore` or restore by hand", step=status.id)
            board.publish()
            return
        if raced:
            entry.restore = None  # restored again once its apply has stopped (`compensate`)
            board.event("restored", f"{unit}: {result.changed} changed back while its apply "
                        "was stopping; restored again once it has stopped", step=status.id)
            return
        entry.restored = True
        await self.watchdog.tell("restored", unit)
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        board.event("restored", f"{unit}: {result.changed} changed back, "
                    f"{result.unchanged} already as before{notes}", step=status.id)
        if self.saga.step_restored(entry.step_id):
            status.state = "restored"
            status.restored_at = workflow.now()
        board.publish()

    async def _restore_until_done(self, entry: SagaEntry) -> FaultResult:
        """The restore, retried without end; in rounds, each failed round's last failure shown in
        the step's status and the board, so an incident commander sees why it has not finished."""
        if not workflow.patched(PATCH_RESTORE_IN_ROUNDS):
            return await self.fault_activity("restore", entry.checkpoint, RESTORE_RETRY)
        status = self.board.steps[entry.step_id]
        unit = entry.checkpoint.unit_id
        earlier = status.error  # why the step failed, if it did: kept once the restore is done
        rounds = 0
        while True:
            try:
                result = await self.fault_activity("restore", entry.checkpoint, RESTORE_ROUND)
            except ActivityError as error:
                if error.retry_state != RetryState.MAXIMUM_ATTEMPTS_REACHED:
                    raise
                rounds += 1
                status.error = describe(error)
                pause = round_pause(rounds)
                self.board.event("restore_retrying", f"{unit}: {RESTORE_ROUND.maximum_attempts} "
                                 f"attempts failed, the last: {status.error}; trying again in "
                                 f"{format_duration(pause)}", step=status.id)
                self.board.publish()
                await workflow.sleep(pause, summary=f"{unit}: wait before the restore tries again")
                continue
            status.error = earlier
            return result


async def finish(board: StatusBoard, gates: Gates, watchdog: WatchdogLink, leases: RunLeases) -> None:
    """The close-out once compensation is over: the outcome published, the watchdog and the leases
    released when every fault is restored (else the watchdog keeps its watch), the end notified."""
    if board.outcome is None:
        board.end("failed", "the run ended without an outcome")
    assert board.outcome is not None
    board.close()
    if board.restore_failed and board.outcome == "completed":
        board.end("failed", "a fault could not be restored")
    board.publish_outcome()
    board.set_phase(board.outcome)
    gates.record_early()  # sent while planning, and planning never reached a gate
    restored = board.all_restored()
    board.event("finished", f"outcome {board.outcome}; every fault restored: {restored}")
    if restored:
        await watchdog.tell("release")
        await leases.release()
    board.notify("end", f"GameDay *{board.runbook.name}* ended: {board.outcome}"
                 + (f" ({board.reason})" if board.reason else "")
                 + f"; hypothesis held: {board.hypothesis_verdict()}; every fault restored: "
                 f"{board.all_restored()}.")
    await board.notified()
    board.publish()
