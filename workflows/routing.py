"""Where cloud activities run: each cloud on a task queue of its own, `<queue>-<cloud>`, so the
worker can cap each cloud's concurrency and rate to what that cloud's API quotas allow."""

from __future__ import annotations

from temporalio import workflow


def cloud_queue(cloud: str) -> str:
    """The task queue of a cloud's activities, beside the workflow's own queue."""
    return f"{workflow.info().task_queue}-{cloud}"
