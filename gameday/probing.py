"""The steady-state probes' payloads, shared by the GameDay workflow and the probe activities
(activities/probes.py): one check of every probe, and a watch window of checks."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from gameday.runbook import Probe
from gameday.status import ProbeResult


class CheckRequest(BaseModel):
    probes: list[Probe]


class CheckReport(BaseModel):
    results: list[ProbeResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> str:
        return "; ".join(f"{r.name}: {r.value}" for r in self.results if not r.ok)


class WatchRequest(BaseModel):
    probes: list[Probe]
    interval: timedelta
    tolerance: int
    window: timedelta
    failed_before: int = 0
    """Consecutive failures carried over from the previous window."""
    known_ok: bool | None = None
    """The verdict the run last recorded: the watch tells the run at once of every failed check
    and of a verdict that differs from this one (signal `steady_state_seen`), and of nothing else,
    so a steady state that holds writes no history until its window ends."""


MAX_VALUE_CHARS = 200
"""A result's `value` is cut to this: hundreds of results travel in one activity result."""
MAX_WATCH_RESULTS = 600
"""Probe results one watch window keeps: a 5-minute window at the 1 s minimum interval is 300
checks, so two probes fit whole; beyond that the first ones are kept and the rest counted."""


class WatchReport(BaseModel):
    checks: int
    failed_checks: int
    consecutive_failures: int
    breached: bool
    changes: list[CheckReport]
    """Checks whose verdict differed from the one before (the first one included)."""
    results: list[ProbeResult] = []
    """Every probe's result of every check, oldest first, at most `MAX_WATCH_RESULTS`."""
    results_dropped: int = 0
    """Results beyond `MAX_WATCH_RESULTS`, counted but not kept (`changes` still has each change)."""

    def record(self, check: CheckReport) -> None:
        """Keep one check's results within the bound."""
        room = MAX_WATCH_RESULTS - len(self.results)
        self.results.extend(check.results[:max(room, 0)])
        self.results_dropped += max(len(check.results) - max(room, 0), 0)
