"""Continue-as-new of a GameDay (issue 21): when a run hands over, and what it hands over.

A held fault writes history every drift look and steady-state window (bench/history.py: about 700
events an hour per held step), and Temporal warns at 10,240 events and terminates the run at
51,200. So a run whose history has grown past `HANDOVER_EVENTS` (or that the server advises to)
hands over at the next moment when nothing is in flight: every step of the runbook item in
progress is holding (or waiting), no gate is open, no apply or restore runs, the drift watches
have stopped before their next look and the steady-state watch after its window. It then
continues as new under the same workflow id with a `Carried` record (gameday/status.py), and the
next run goes on from it: its holds end when they would have, its drift and watch resume, and
its status, report and board tell the one GameDay from its start.

An abort (or the deadline) that comes while the run is handing over wins: the run stops and
restores, as at any other moment.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gameday.objectives import Check, Recovery
    from gameday.status import Carried, CarriedCheck, CarriedDrift, CarriedEntry, CarriedRecovery
    from workflows.drift import DriftWatch, Follow
    from workflows.gates import Gates
    from workflows.leases import RunLeases
    from workflows.saga import Saga, SagaEntry
    from workflows.status_board import StatusBoard
    from workflows.steady_state import SteadyState
    from workflows.watchdog import WatchdogLink

HANDOVER_EVENTS = 4_000
"""A run hands over once its history has this many events (Temporal's own advice comes at about
4,000 too): far enough below the 10,240 warning for the wait until nothing is in flight."""
PATCH_HOLDS_HAND_OVER = "holds-hand-over"
"""Runs started before this change slept through each hold; a hold may now end early to go on in
the next run of the GameDay."""
MAX_CARRIED_BYTES = 1_500_000
"""Temporal refuses a payload over 2 MB; a record larger than this is not handed over (the run
says so once, and goes on)."""


def handover_due(events: int | None) -> bool:
    """Whether this run's history is long enough to hand over: `events` (default
    `HANDOVER_EVENTS`), or Temporal's advice."""
    info = workflow.info()
    return (info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= (events or HANDOVER_EVENTS))


class Handover:
    """One run's side of continue-as-new: where the runbook is, which steps are open and which of
    them hold, and the hand-over itself."""

    def __init__(self, board: StatusBoard, gates: Gates, saga: Saga, steady: SteadyState,
                 drift: DriftWatch, leases: RunLeases, watchdog: WatchdogLink,
                 events: int | None) -> None:
        self.board = board
        self.gates = gates
        self.saga = saga
        self.steady = steady
        self.drift = drift
        self.leases = leases
        self.watchdog = watchdog
        self.events = events
        self.group = -1
        """The runbook item in progress; -1 until the first one starts."""
        self.open: set[str] = set()
        """Steps being carried out right now (approval, inject, hold), from before they start."""
        self.holding: dict[str, datetime] = {}
        """Steps in their hold (or wait) right now: when it ends."""
        self.interrupted: dict[str, datetime] = {}
        """Holds the hand-over ended early: they go on in the next run."""
        self.handing_over = False
        """No new runbook item starts; drift and the watch stop."""
        self.release_holds = False
        """Drift and the watch have stopped: the holds end and go on in the next run."""
        self.too_large = False

    def due(self) -> bool:
        """The history is long enough, and nothing is in flight: every open step holds (or waits),
        no gate is open, no apply or restore runs."""
        if self.group < 0 or self.too_large or self.board.phase != "running":
            return False
        if self.board.desk.pending or not self.open <= set(self.holding):
            return False
        if any(e.applying or (e.restore is not None and not e.restore.done()) for e in self.saga.entries):
            return False
        return handover_due(self.events)

    async def held_until(self, step_id: str, until: datetime, summary: str) -> bool:
        """Sleep until `until`; True when the run hands over first (the hold goes on in the next)."""
        remaining = max(until - workflow.now(), timedelta(milliseconds=1))
        if not workflow.patched(PATCH_HOLDS_HAND_OVER):
            await workflow.sleep(remaining, summary=summary)
            return False
        self.holding[step_id] = until
        try:
            await workflow.wait_condition(lambda: self.release_holds, timeout=remaining,
                                          timeout_summary=summary)
        except TimeoutError:
            return False
        finally:
            del self.holding[step_id]
        self.interrupted[step_id] = until
        return True

    async def hand_over(self, body: asyncio.Task[None], watching: asyncio.Task[None] | None,
                        run: int, remaining: timedelta) -> Carried | None:
        """Stop drift and the watch, then the holds: the record for run number `run`; None when an
        abort came meanwhile or the body ended otherwise (the run then closes as usual), or when
        the record is too large for one payload (the run goes on, and never hands over)."""
        size = len(self.record(run, self.holding).model_dump_json())
        if size > MAX_CARRIED_BYTES:
            self.too_large = True
            self.board.event("handover_refused", f"the run's record is {size} bytes, over the "
                             f"{MAX_CARRIED_BYTES} one payload may carry: this run goes on and its "
                             "history is not bounded")
            return None
        self.handing_over = self.drift.handing_over = self.steady.handing_over = True

        def quiet() -> bool:
            return ((watching is None or watching.done()) and all(w.done() for w in self.drift.watches)
                    and all(n.done() for n in self.board.notifications))

        gates = self.gates
        await workflow.wait_condition(lambda: quiet() or gates.abort is not None, timeout=remaining,
                                      timeout_summary="hand over: wait for drift and the watch to stop")
        self.release_holds = True
        await workflow.wait_condition(
            lambda: (body.done() and workflow.all_handlers_finished()) or gates.abort is not None,
            timeout=remaining, timeout_summary="hand over: wait for the holds to stop")
        if gates.abort is not None or body.cancelled() or body.exception() is not None or self.board.outcome:
            return None
        self.board.event("handing_over", f"history of {workflow.info().get_current_history_length()} "
                         f"events: run {run} of the GameDay takes over")
        return self.record(run, self.interrupted)



    def record(self, run: int, holds: dict[str, datetime]) -> Carried:
        """The record the next run (number `run`) takes over from."""
        board, gates, saga, steady, drift = self.board, self.gates, self.saga, self.steady, self.drift
        leases, watchdog, group = self.leases, self.watchdog, self.group
        in_effect = {e.step_id for e in saga.in_effect()}
        return Carried(
            run=run, started=board.started, deadline=board.deadline,
            plan=list(board.plan.values()), plan_hash=board.plan_hash,
            steps=list(board.steps.values()), events=list(board.events),
            probe_checks=list(board.probe_checks), probe_checks_dropped=board.probe_checks_dropped,
            steady_state_now=board.steady_state_now, hypothesis_held=board.hypothesis_held,
            restore_failed=board.restore_failed,
            approvals_counted={gate: list(who) for gate, who in board.desk.counted.items()},
            rejection=gates.rejection,
            saga=[CarriedEntry(step_id=e.step_id, checkpoint=e.checkpoint, group=e.group, unit=e.unit,
                               restored=e.restored) for e in saga.entries],
            unit_ids=sorted(drift.unit_ids), group=group, holds=dict(holds),
            hold_ends=dict(steady.hold_ends),
            drift=[CarriedDrift(step_id=f.step_id, group=f.group, covered=sorted(f.covered),
                                rounds=f.rounds, units=f.units)
                   for f in drift.handed if f.step_id in in_effect],
            known_ok=steady.known_ok, failed_checks=steady.failed,
            recoveries={step: CarriedRecovery(**asdict(r)) for step, r in board.recoveries.items()},
            recent_checks=[CarriedCheck(at=c.at, failures=c.failures) for c in board.recent_checks],
            injecting_since=dict(board.injecting_since),
            leases_held=leases.held, watchdog_armed=watchdog.handle is not None,
        )


    def take_over(self, carried: Carried) -> list[Follow]:
        """Set this run's parts as the last run left them; the drift watches to resume."""
        board, gates, saga, steady, drift = self.board, self.gates, self.saga, self.steady, self.drift
        leases, watchdog = self.leases, self.watchdog
        self.group = carried.group
        board.phase = "running"
        board.plan = {step.step_id: step for step in carried.plan}
        board.plan_hash = carried.plan_hash
        board.steps = {step.id: step for step in carried.steps}
        board.events = list(carried.events)
        board.probe_checks = list(carried.probe_checks)
        board.probe_checks_dropped = carried.probe_checks_dropped
        board.steady_state_now = carried.steady_state_now
        board.hypothesis_held = carried.hypothesis_held
        board.restore_failed = carried.restore_failed
        board.recoveries = {step: Recovery(**r.model_dump()) for step, r in carried.recoveries.items()}
        board.recent_checks = [Check(at=c.at, failures=c.failures) for c in carried.recent_checks]
        board.injecting_since = dict(carried.injecting_since)
        board.desk.counted = {gate: list(who) for gate, who in carried.approvals_counted.items()}
        gates.rejection = carried.rejection
        saga.entries = [SagaEntry(e.step_id, e.checkpoint, e.group, e.unit, restored=e.restored)
                        for e in carried.saga]
        steady.hold_ends = dict(carried.hold_ends)
        steady.known_ok = carried.known_ok
        steady.failed = carried.failed_checks
        drift.unit_ids = set(carried.unit_ids)
        leases.held = carried.leases_held
        if carried.watchdog_armed:
            watchdog.handle = workflow.get_external_workflow_handle(
                f"{workflow.info().workflow_id}-watchdog")
        return [Follow(d.step_id, d.group, set(d.covered), d.rounds, d.units) for d in carried.drift]
