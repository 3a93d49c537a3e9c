"""What the sweeper finds and reports: gameday artifacts left behind by runs that are over."""

from __future__ import annotations

import os

from pydantic import BaseModel


class Leftover(BaseModel):
    """One gameday artifact in a cloud, found by its tags, labels or name."""

    cloud: str
    kind: str
    id: str
    run_id: str
    step_id: str
    location: str
    detail: dict[str, str] = {}
    run_state: str | None = None
    """How its run stands in Temporal: running, completed, terminated, missing..."""


class SweepScope(BaseModel):
    """Where the worker looks, from its environment (a cloud with nothing configured is skipped)."""

    aws_regions: list[str] | None = None
    """None: every region the account has enabled."""
    gcp_projects: list[str] = []
    azure_subscriptions: list[str] = []

    @classmethod
    def from_env(cls) -> SweepScope:
        def listed(*names: str) -> list[str]:
            for name in names:
                values = [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]
                if values:
                    return values
            return []

        regions = listed("GAMEDAY_SWEEP_AWS_REGIONS")
        return cls(aws_regions=regions or None,
                   gcp_projects=listed("GAMEDAY_SWEEP_GCP_PROJECTS", "GAMEDAY_ALLOWED_GCP_PROJECTS"),
                   azure_subscriptions=listed("GAMEDAY_SWEEP_AZURE_SUBSCRIPTIONS",
                                              "GAMEDAY_ALLOWED_AZURE_SUBSCRIPTIONS"))


class SweepInput(BaseModel):
    restore: bool = False


class SweepReport(BaseModel):
    leftovers: list[Leftover] = []
    """Artifacts of runs that are no longer running: the sweep's business."""
    in_use: list[Leftover] = []
    """Artifacts of runs still running: left alone."""
    restored: list[str] = []
    errors: list[str] = []
