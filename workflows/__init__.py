"""Temporal workflows: deterministic orchestration only, no I/O."""

from typing import Any

from workflows.gameday import GameDayWorkflow
from workflows.leases import GameDayLeases
from workflows.planning import GameDayPlanWorkflow
from workflows.sweep import GameDaySweepWorkflow
from workflows.watchdog import GameDayWatchdog


def all_workflows() -> list[Any]:
    return [GameDayWorkflow, GameDayPlanWorkflow, GameDayWatchdog, GameDaySweepWorkflow,
            GameDayLeases]
