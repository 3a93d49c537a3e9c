"""Where and how cloud activities run: each cloud on a task queue of its own, `<queue>-<cloud>`, so
the worker can cap each cloud's concurrency and rate to what that cloud's API quotas allow; and
the heartbeat and restore retry every workflow uses for them."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy


def cloud_queue(cloud: str) -> str:
    """The task queue of a cloud's activities, beside the workflow's own queue."""
    return f"{workflow.info().task_queue}-{cloud}"


HEARTBEAT = timedelta(seconds=10)
"""Heartbeat timeout of cloud activities: a worker that dies mid-way is noticed this quickly."""
RESTORE_RETRY = RetryPolicy(maximum_attempts=0, initial_interval=timedelta(seconds=1),
                            maximum_interval=timedelta(seconds=30))
"""Restores never give up on their own, in the GameDay and in its dead man's switch alike: a
restore that cannot finish stays visible as a pending activity with its last failure."""

RESTORE_ROUND = RetryPolicy(maximum_attempts=4, initial_interval=timedelta(seconds=1),
                            maximum_interval=timedelta(seconds=30))
"""The GameDay's own restores go in rounds of this many attempts: after each round the workflow
records the last failure (status, board, a `restore_retrying` event), waits `round_pause`, and
tries again, without end, as `RESTORE_RETRY` does in one activity."""


def round_pause(rounds: int) -> timedelta:
    """The wait after the `rounds`-th failed round of a restore: 5 s more each time, at most 30 s."""
    return min(timedelta(seconds=5 * rounds), RESTORE_RETRY.maximum_interval or timedelta(seconds=30))
