"""The steady-state hypothesis of one GameDay: checked before any fault (baseline), watched while
faults are in effect, and checked again after the restore (recovery).

Every check is recorded on the status board: an event per result, the probe table, and whether the
hypothesis held. A watch whose checks fail `tolerance` times in a row asks the GameDay to abort.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from gameday.durations import format_duration
    from gameday.objectives import Check, as_check, split_rounds
    from gameday.probing import (
        MAX_WATCH_RESULTS,
        CheckReport,
        CheckRequest,
        WatchReport,
        WatchRequest,
    )
    from gameday.runbook import Runbook
    from gameday.status import Abort, ProbeResult
    from workflows.errors import describe
    from workflows.saga import Saga
    from workflows.status_board import StatusBoard

WATCH_WINDOW = timedelta(minutes=5)
LONG_WATCH_WINDOW = timedelta(hours=1)
"""While the steady state holds, each window that saw only passing checks doubles the next, up to
this long (and to what `MAX_WATCH_RESULTS` keeps whole): a change of verdict is signalled at once
(`steady_state_seen`) whatever the window, so a long hold writes a few events an hour, not twelve
windows. Any failed check sets the window back to `WATCH_WINDOW`."""
PROBE_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))

PATCH_WATCH_UNTIL_RESTORE = "watch-until-the-hold-ends"
"""Runs started before this change watched in windows of `WATCH_WINDOW` whatever the holds."""
PATCH_WATCH_WINDOWS_GROW = "watch-windows-grow"
"""Runs started before this change watched in windows of at most `WATCH_WINDOW`."""


class SteadyState:
    """The probes of a run's runbook, and when each fault in effect is due to be restored."""

    def __init__(self, runbook: Runbook, board: StatusBoard, saga: Saga,
                 abort: Callable[[Abort], object]) -> None:
        self.runbook = runbook
        self.board = board
        self.saga = saga
        self.abort = abort
        self.hold_ends: dict[str, datetime] = {}
        """When the hold of each step that is held for a `duration` ends."""
        self.known_ok: bool | None = None
        """The verdict of the last check the run recorded (the watch reports any other at once)."""
        self.failed = 0
        """Consecutive failed checks of the watch so far (carried to the next run of the GameDay)."""
        self.handing_over = False
        """The run hands over to its next run: the watch stops once its window has reported."""
        self.window = WATCH_WINDOW
        """The longest the next watch window may be (`LONG_WATCH_WINDOW`)."""

    async def probe_once(self, summary: str) -> CheckReport:
        steady = self.runbook.steady_state
        assert steady is not None
        report = await workflow.execute_activity(
            "probe.check", CheckRequest(probes=steady.probes), result_type=CheckReport,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=PROBE_RETRY, summary=summary,
        )
        self.record_probes(report)
        self.known_ok = report.ok
        return report

    def record_probes(self, report: CheckReport, keep: bool = True) -> None:
        """An event per result; with `keep`, the results join the probe table too."""
        for result in report.results:
            verdict = "ok" if result.ok else "FAILED"
            self.board.event("probe", f"{result.name}: {verdict}, {result.value} "
                             f"({result.latency_ms:.0f} ms)")
        if keep:
            self.board.keep_checks(report.results)
            self.board.observe_checks(self.as_checks([report.results]))

    def as_checks(self, rounds: list[list[ProbeResult]]) -> list[Check]:
        """Rounds of results as the checks that recovery objectives are measured with."""
        steady = self.runbook.steady_state
        probes = len(steady.probes) if steady is not None else 0
        found = (as_check(results, probes) for results in rounds)
        return [check for check in found if check is not None]

    def watched_checks(self, report: WatchReport) -> list[ProbeResult]:
        """Every check of a watch window, as the activity reports it; from a worker that predates
        `results`, the checks whose verdict changed."""
        results: list[ProbeResult] = list(getattr(report, "results", []))
        self.board.probe_checks_dropped += getattr(report, "results_dropped", 0)
        if results or not report.changes:
            return results
        return [r for change in report.changes for r in change.results]

    async def baseline_failures(self) -> str | None:
        """Before anything changes: what fails when the steady state does not hold, else None (also
        when the runbook has no steady state)."""
        if self.runbook.steady_state is None:
            return None
        report = await self.probe_once("baseline: does the steady state hold?")
        if report.ok:
            return None
        self.board.hypothesis_held = False
        return report.failures()

    def watch_window(self) -> timedelta:
        """Until the faults in effect are due to be restored, at most `WATCH_WINDOW`: a watch that
        is cancelled because its faults were restored never reports its checks, one that ends on
        time does."""
        held = {step.id: step.held_for for step in self.runbook.fault_steps()}
        now = workflow.now()
        ends: list[datetime] = []
        for step_id in {e.step_id for e in self.saga.in_effect()}:
            if step_id in self.hold_ends:
                ends.append(self.hold_ends[step_id])
            elif held.get(step_id) is not None:  # still injecting: held at least this long
                ends.append(now + held[step_id])  # type: ignore[operator]
            else:
                return self.window
        return min(self.window, max(ends) - now) if ends else self.window

    def next_window(self, report: WatchReport, known_before: bool | None) -> None:
        """After a window: the next may be twice as long when every check passed and the steady
        state was known to hold before it; else it is `WATCH_WINDOW` again."""
        steady = self.runbook.steady_state
        assert steady is not None
        if report.failed_checks or report.breached or known_before is not True:
            self.window = WATCH_WINDOW
            return
        whole = steady.interval * max(1, MAX_WATCH_RESULTS // max(1, len(steady.probes)))
        self.window = max(WATCH_WINDOW, min(self.window * 2, LONG_WATCH_WINDOW, whole))

    async def watch(self) -> None:
        """While faults are in effect, check every interval; `tolerance` failures in a row abort."""
        steady = self.runbook.steady_state
        assert steady is not None
        saga = self.saga
        until_restore = workflow.patched(PATCH_WATCH_UNTIL_RESTORE)
        growing = until_restore and workflow.patched(PATCH_WATCH_WINDOWS_GROW)
        while True:
            await workflow.wait_condition(lambda: saga.any_in_effect() or self.handing_over)
            if self.handing_over:
                return
            window = self.watch_window() if until_restore else WATCH_WINDOW
            if window < steady.interval:
                # the faults are restored within one interval: no watch of a single check
                try:
                    await workflow.wait_condition(lambda: not saga.any_in_effect(),
                                                  timeout=steady.interval,
                                                  timeout_summary="wait for the next steady-state check")
                except TimeoutError:
                    pass
                continue
            watch = asyncio.create_task(workflow.execute_activity(
                "probe.watch",
                WatchRequest(probes=steady.probes, interval=steady.interval,
                             tolerance=steady.tolerance, window=window, failed_before=self.failed,
                             known_ok=self.known_ok),
                result_type=WatchReport,
                start_to_close_timeout=max(window, WATCH_WINDOW) + steady.interval + timedelta(minutes=1),
                heartbeat_timeout=max(steady.interval * 3, timedelta(seconds=30)),
                retry_policy=PROBE_RETRY,
                summary=f"watch the steady state every {format_duration(steady.interval)}",
            ))
            quiet = asyncio.create_task(workflow.wait_condition(lambda: not saga.any_in_effect()))
            await workflow.wait([watch, quiet], return_when=asyncio.FIRST_COMPLETED)
            if not watch.done():
                watch.cancel()
                quiet.cancel()
                continue
            quiet.cancel()
            try:
                report = watch.result()
            except ActivityError as error:
                self.board.event("probe", f"the steady-state watch failed: {describe(error)}; retrying")
                await workflow.sleep(steady.interval)
                continue
            if growing:
                self.next_window(report, self.known_ok)
            for change in report.changes:
                self.record_probes(change, keep=False)
            watched = self.watched_checks(report)
            self.board.keep_checks(watched)
            # every change of verdict too: a window's results stop at `MAX_WATCH_RESULTS`
            checks = {c.at: c for c in self.as_checks([c.results for c in report.changes])}
            checks.update((c.at, c) for c in self.as_checks(split_rounds(watched)))
            self.board.observe_checks(list(checks.values()))
            self.failed = report.consecutive_failures
            if report.checks:
                self.known_ok = self.failed == 0
            if report.breached:
                self.board.hypothesis_held = False
                last = report.changes[-1].failures() if report.changes else "probes failing"
                self.abort(Abort(by="steady-state", reason=(
                    f"{self.failed} consecutive failed checks (tolerance {steady.tolerance}): {last}")))
                return

    async def check_recovery(self) -> None:
        """After the restore, the probes must pass again within `recovery_timeout`."""
        steady = self.runbook.steady_state
        if steady is None or not self.saga.entries:
            return
        deadline = workflow.now() + steady.recovery_timeout
        while True:
            try:
                report = await self.probe_once("recovery: does the steady state hold again?")
            except ActivityError as error:
                self.board.event("probe", f"recovery check failed: {describe(error)}")
                report = None
            if report is not None and report.ok:
                self.board.event("recovered", "the steady state holds again after the restore")
                return
            if workflow.now() + steady.interval > deadline:
                self.board.hypothesis_held = False
                self.board.event("not_recovered", "the steady state did not hold again within "
                                 f"{format_duration(steady.recovery_timeout)} of the restore")
                return
            await workflow.sleep(steady.interval, summary="wait before the next recovery check")
