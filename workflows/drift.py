"""Drift: while a blackhole holds, resources that appear in its zone are brought under the fault.

Each round that finds new resources is a unit of its own (`drift_unit_id`), checkpointed and
applied like the step's first units, through the GameDay's own `inject` (record before apply), so
that the saga and the watchdog restore it with the rest. A watch stops when its hold ends or the
run stops, and waits until an apply it started has stopped too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from gameday.durations import format_duration
    from gameday.plan import (
        DriftWatchReport,
        DriftWatchRequest,
        ResolvedStep,
        StepRequest,
        watch_activity_name,
    )
    from gameday.runbook import FaultStep, Runbook
    from gameday.units import drift_unit_id
    from workflows.errors import describe
    from workflows.fault_calls import fault_units
    from workflows.planning import RESOLVE_RETRY, resolve_step
    from workflows.routing import HEARTBEAT, cloud_queue
    from workflows.saga import SagaEntry
    from workflows.status_board import StatusBoard

DRIFT_WINDOW = timedelta(hours=1)
"""How long one drift watch activity looks at most (`GameDayInput.drift_window`): it returns at
once when a look finds something, so the window only bounds how long a quiet watch runs."""
PATCH_DRIFT_WINDOWS = "drift-looks-in-windows"
"""Runs started before this change slept and resolved once per look, in the workflow."""
PATCH_DRIFT_STOPS_WHEN_TOLD = "drift-stops-when-told"
"""Runs started before this change kept a drift watch going when the activity it was cancelled in
failed instead of reporting its cancellation, and the GameDay waited for the watch for ever."""
PATCH_WINDOW_STOPS_BEFORE_HANDOVER = "drift-window-stops-before-handover"
"""Runs started before this change handed over while a cancelled drift window might still run (or
wait for its retry), and closed with its cancellation still pending."""

DRIFTING = ("blackhole_zone", "blackhole_region")
"""The actions whose hold brings new resources of the place under the fault: a blackhole cuts
whatever appears in its zone. An evacuation moves named records; a power interruption stops what
runs when it starts (keeping groups from launching into the zone is `deny_capacity`'s part)."""

Inject = Callable[[str, FaultStep, int, ResolvedStep, int, list[SagaEntry]], Awaitable[None]]
"""The GameDay's injection of one unit: (step id, unit, unit index, resolved unit, group, the
step's saga entries so far); it records the compensation before it applies."""


@dataclass
class Follow:
    """One drift watch's progress: what it has covered (the plan's resources, then each round's),
    how many rounds found something, and how many units the step has."""

    step_id: str
    group: int
    covered: set[str] = field(default_factory=set)
    rounds: int = 0
    units: int = 0


class DriftWatch:
    """The drift watches of one run, and the unit ids the run has used."""

    def __init__(self, runbook: Runbook, board: StatusBoard, inject: Inject,
                 window: timedelta | None = None) -> None:
        self.runbook = runbook
        self.window = window or DRIFT_WINDOW
        self.board = board
        self.inject = inject
        self.unit_ids: set[str] = set()
        """Every unit id of the run: the plan's, then each drift round's (contract §7)."""
        self.watches: list[asyncio.Task[None]] = []
        self._told_to_stop: set[asyncio.Task[Any]] = set()
        self.handing_over = False
        """The run hands over to its next run (workflows/handover.py): each watch stops at its next
        look, before it changes anything, and leaves its progress in `handed`."""
        self.handed: list[Follow] = []

    def watch(self, step: FaultStep, planned: ResolvedStep, group: int,
              units: int) -> asyncio.Task[None] | None:
        """While a blackhole holds, look for resources that appeared in its zone beyond the
        `planned` ones; `units` is how many units the step already has."""
        if self.runbook.drift_interval is None or step.action not in DRIFTING:
            return None
        return self.resume(step, Follow(step.id, group, {r.id for r in planned.resources}, 0, units))

    def resume(self, step: FaultStep, follow: Follow) -> asyncio.Task[None]:
        """A watch that goes on from `follow` (a new watch, or one handed over by the last run)."""
        watch = asyncio.create_task(self._follow(step, follow))
        self.watches.append(watch)
        return watch

    async def _follow(self, step: FaultStep, follow: Follow) -> None:
        interval = self.runbook.drift_interval
        assert interval is not None
        board = self.board
        status = board.steps[step.id]
        covered, group, units = follow.covered, follow.group, follow.units
        limit = self.runbook.guardrails.max_resources_per_step
        windows = workflow.patched(PATCH_DRIFT_WINDOWS)
        while True:
            self._stop_if_told()
            try:
                if windows:
                    found = await self._watch_window(step, covered)
                else:
                    await workflow.sleep(interval, summary=f"{step.id}: look for new resources")
                    if self.handing_over:
                        self.handed.append(follow)
                        return
                    found = await resolve_step(step, self.runbook, only_new=True)
                self._stop_if_told()
            except ActivityError as error:
                if is_cancelled_exception(error):
                    raise  # the hold is over: the watch must stop, not look again
                self._stop_if_told()
                board.event("drift_check_failed", f"{step.id}: {describe(error)}", step=step.id)
                continue
            if self.handing_over:  # the next run looks again, and cuts them
                self.handed.append(follow)
                return
            if found is None:
                continue
            new = [r for r in found.resources if r.id not in covered]
            if not new:
                continue
            if len(covered) + len(new) > limit:
                board.event("drift_refused", f"{step.id}: {len(new)} new resources would exceed "
                            f"max_resources_per_step ({limit}); left alone", step=step.id)
                covered |= {r.id for r in new}
                continue
            follow.rounds += 1
            extension = found.model_copy(update={"resources": new})
            drifted = [(unit.model_copy(update={"id": drift_unit_id(unit.id, follow.rounds)}), resolved)
                       for unit, resolved in fault_units(step, extension)]
            taken = sorted(unit.id for unit, _ in drifted if unit.id in self.unit_ids)
            if taken:
                board.event("drift_refused", f"{step.id}: unit id {', '.join(taken)} is already used "
                            f"in this run; {len(new)} new resources left alone", step=step.id)
                covered |= {r.id for r in new}
                continue
            self.unit_ids |= {unit.id for unit, _ in drifted}
            for index, (unit, resolved) in enumerate(drifted):
                resolved = resolved.model_copy(update={"step_id": unit.id})
                try:
                    await self.inject(step.id, unit, units + index, resolved, group, [])
                    self._stop_if_told()
                except ActivityError as error:
                    if is_cancelled_exception(error):
                        raise
                    self._stop_if_told()
                    board.event("drift_apply_failed", f"{unit.id}: {describe(error)}; it is "
                                "restored with the rest", step=step.id)
            units += len(drifted)
            follow.units = units
            covered |= {r.id for r in new}
            status.resources += len(new)
            board.event("drift", f"{step.id}: {len(new)} new resources brought under the fault "
                        f"({', '.join(r.name or r.id for r in new[:5])})", step=step.id)
            board.publish()

    async def _watch_window(self, step: FaultStep, covered: set[str]) -> ResolvedStep | None:
        """One drift watch activity: the step with the new resources of the first look that found
        some, or None when the window passed with nothing new or the run hands over (the
        activity is cancelled then; so it is when the watch is stopped)."""
        interval = self.runbook.drift_interval
        assert interval is not None
        window = max(self.window, interval)
        target = step.target
        request = DriftWatchRequest(
            step=StepRequest(run_id=workflow.info().workflow_id, step=step,
                             guardrails=self.runbook.guardrails, only_new=True),
            covered=sorted(covered), interval=interval, window=window)
        stops_first = workflow.patched(PATCH_WINDOW_STOPS_BEFORE_HANDOVER)
        watching = asyncio.create_task(workflow.execute_activity(
            watch_activity_name(target.cloud), request, task_queue=cloud_queue(target.cloud),
            result_type=DriftWatchReport,
            start_to_close_timeout=window + interval + timedelta(minutes=10),
            heartbeat_timeout=HEARTBEAT, retry_policy=RESOLVE_RETRY,
            cancellation_type=(workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                               if stops_first else workflow.ActivityCancellationType.TRY_CANCEL),
            summary=(f"{step.id}: look for new resources every {format_duration(interval)} for "
                     f"{format_duration(window)}")))
        try:
            await workflow.wait_condition(lambda: watching.done() or self.handing_over)
            if not watching.done():
                if stops_first:
                    await self._stopped(watching)
                return None
            return (await watching).found
        finally:
            if not watching.done():
                watching.cancel()

    @staticmethod
    async def _stopped(watching: asyncio.Task[DriftWatchReport]) -> None:
        """Cancel a drift window at a hand-over and wait until the activity has stopped (it
        heartbeats every few seconds, so it learns of it at once), so that the run never closes
        with a look still running or waiting for its retry; what it found, the next run finds."""
        watching.cancel()
        try:
            await watching
        except (asyncio.CancelledError, ActivityError):
            pass

    def _stop_if_told(self) -> None:
        """A watch told to stop stops, even when the activity its cancellation reached finished
        anyway: failed on its own (an apply whose ACL an abort's restore had just deleted) or
        completed before it learned of the cancellation. Either way the SDK hands back the
        activity's outcome in the `CancelledError`'s place, and the loop would go on for ever."""
        if asyncio.current_task() in self._told_to_stop and workflow.patched(PATCH_DRIFT_STOPS_WHEN_TOLD):
            raise asyncio.CancelledError()

    async def stop(self, watches: list[asyncio.Task[None]]) -> None:
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

    async def stop_all(self) -> None:
        """Stop every watch of the run (the run is closing)."""
        await self.stop(self.watches)
