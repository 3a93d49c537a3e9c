"""The saga of one GameDay: every fault's compensation, recorded before its apply, and the order
in which compensation undoes them.

Pure bookkeeping (no Temporal call), so the order is unit-tested without a server: newest group
first; the steps of a parallel group together; within a step, newest unit first (a region step
restores zone by zone). The workflow runs the restores; the watchdog holds the same checkpoints.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gameday.plan import Checkpoint


@dataclass
class SagaEntry:
    """One applied (or being applied) fault and the restore that undoes it. A region step has one
    entry per zone; `step_id` is the runbook step, `checkpoint.unit_id` the unit's own id."""

    step_id: str
    checkpoint: Checkpoint
    group: int
    unit: int = 0
    """Position of the unit within its step (zone order); restores go newest unit first."""
    restore: asyncio.Task[None] | None = None
    restored: bool = False
    applying: bool = False
    """Its apply is running (or being cancelled): a restore now must be repeated once it stopped."""


class Saga:
    """The run's compensations, oldest first."""

    def __init__(self) -> None:
        self.entries: list[SagaEntry] = []

    def record(self, entry: SagaEntry) -> None:
        """Record a compensation: before its apply starts, always."""
        self.entries.append(entry)

    def in_effect(self) -> list[SagaEntry]:
        """The entries not restored yet, oldest first."""
        return [e for e in self.entries if not e.restored]

    def any_in_effect(self) -> bool:
        return any(not e.restored for e in self.entries)

    def all_restored(self) -> bool:
        return all(e.restored for e in self.entries)

    def step_restored(self, step_id: str) -> bool:
        """Whether every unit of this step is restored."""
        return all(e.restored for e in self.entries if e.step_id == step_id)

    def units_of(self, step_id: str) -> list[SagaEntry]:
        """A step's entries in the order its restore takes them: newest unit first."""
        return sorted((e for e in self.entries if e.step_id == step_id), key=lambda e: e.unit,
                      reverse=True)

    def compensation_groups(self) -> list[list[str]]:
        """The steps still in effect, by group in the order compensation restores them: newest
        group first; within a group, the step applied last first (they restore together)."""
        pending = self.in_effect()
        return [list(dict.fromkeys(e.step_id for e in reversed(pending) if e.group == group))
                for group in sorted({e.group for e in pending}, reverse=True)]

    def checkpoints(self) -> list[Checkpoint]:
        return [e.checkpoint for e in self.entries]
