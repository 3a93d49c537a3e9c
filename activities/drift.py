"""Drift watches: while a blackhole holds, look for resources that appeared in its place.

`<cloud>.watch_for_new_resources` looks every `interval` inside one activity, heartbeating between
looks, and returns at the first look that finds resources beyond those the run covers, or when its
window ends. So a fault held for days writes a handful of history events per window, not a timer,
an activity and three workflow tasks per look (bench/RESULTS.md, "History per held hour"). Each
look is the step's own read-only resolve (with `only_new`), so it sees what a plan would see.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import CancelledError

from gameday.plan import DriftWatchReport, DriftWatchRequest, ResolvedStep, StepRequest

Resolve = Callable[[StepRequest], ResolvedStep]

BEAT = 2.0
"""Seconds between heartbeats while a watch waits for its next look: a cancellation (the hold
ended, the run hands over) reaches it within about this long."""


class DriftLooks:
    """The drift looks of one cloud, each through the resolve of the step's action."""

    def __init__(self, resolves: dict[str, Resolve]) -> None:
        self.resolves = resolves

    def look(self, request: DriftWatchRequest) -> DriftWatchReport:
        """One look now: the step with only the resources beyond `covered`, if any."""
        resolve = self.resolves.get(request.step.step.action)
        if resolve is None:
            raise ValueError(f"no resolve for {request.step.step.action}")
        resolved = resolve(request.step)
        covered = set(request.covered)
        new = [r for r in resolved.resources if r.id not in covered]
        return DriftWatchReport(looks=1, found=resolved.model_copy(update={"resources": new})
                                if new else None)

    def watch(self, request: DriftWatchRequest) -> DriftWatchReport:
        """Look every interval until a look finds something new or the window has no room for
        another look; the first look comes one interval after the start."""
        interval = request.interval.total_seconds()
        deadline = time.monotonic() + max(request.window.total_seconds(), interval)
        looks = 0
        while time.monotonic() + interval <= deadline + 0.5:
            _wait(interval)
            report = self.look(request)
            looks += 1
            if report.found is not None:
                return report.model_copy(update={"looks": looks})
        return DriftWatchReport(looks=looks)


def _wait(seconds: float) -> None:
    """Sleep, heartbeating every `BEAT` seconds when running as an activity; raise
    `CancelledError` as soon as the activity is cancelled."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if not activity.in_activity():
            time.sleep(left)
            return
        activity.heartbeat()
        activity.wait_for_cancelled_sync(min(BEAT, left))
        if activity.is_cancelled():
            raise CancelledError("the drift watch was cancelled")
