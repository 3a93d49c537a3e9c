"""Temporal workflows: deterministic orchestration only, no I/O."""

from typing import Any

from workflows.gameday import GameDayWorkflow


def all_workflows() -> list[Any]:
    return [GameDayWorkflow]
