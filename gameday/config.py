"""Configuration from the environment (contract §2), read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
SEARCH_ATTRIBUTES = {
    "GameDayRunbook": "Keyword",
    "GameDayPhase": "Keyword",
    "GameDayClouds": "KeywordList",
    "GameDayOutcome": "Keyword",
    "GameDayZones": "KeywordList",
}

WORKER_ROLES = ("workflows", "aws", "gcp", "azure")
"""What a worker process can serve: the workflows (and the activities that touch no cloud) on the
task queue, or one cloud's activities on `<task queue>-<cloud>`."""


@dataclass(frozen=True)
class Settings:
    task_queue: str
    namespace: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            task_queue=os.environ.get("GAMEDAY_TASK_QUEUE") or "gameday",
            namespace=os.environ.get("TEMPORAL_NAMESPACE") or "default",
        )
