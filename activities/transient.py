"""The one policy for transient cloud failures, shared by every cloud's `api` module.

A transient failure is a retryable failure that is not a throttle: a 5xx, a call that got no
answer, an Azure resource held by another operation. Which answers are transient stays each
cloud's own knowledge (its `transient_of`); what is done about them is decided here, once:

- One call gets at most `ATTEMPTS` sends inside the activity, pausing `pause(n)` after the n-th
  failed send (doubling from `FIRST_PAUSE`, `Retry-After` honoured, never above `LONGEST_PAUSE`).
  Between sends the activity heartbeats with what it is retrying and stops if it was cancelled
  (a call of a fan-out stops once its fan-out stopped), so cancellation reaches it in a pause.
- A throttle is paced by the token bucket (`activities.throttle.paced`) and never counts as an
  attempt here; a throttle that still escapes has stalled and is raised at once.
- The SDKs' own retries are off (botocore `total_max_attempts` 1, GCP `retry=None`, Azure
  `retry_total` 0), so nothing multiplies the attempts from below.
- A failure that persists is raised as it came; the cloud's module turns it into a retryable
  `CloudError`, and Temporal's retry policy of the workflow takes over.

How the attempts multiply: an apply runs under the workflow's `APPLY_RETRY`
(`maximum_attempts` 10), so one persistently transient call is sent at most `ATTEMPTS` × 10 =
`APPLY_SENDS` times before the GameDay sees the apply fail. A restore runs under `RESTORE_RETRY`
(no attempt limit, at most 30 s between attempts): it never gives up, but sends one failing call
at most `ATTEMPTS` times per Temporal attempt, so at most `ATTEMPTS` sends per
`sum(backoff())` + 30 s once Temporal's backoff has grown. Calls repeated here must be safe to
repeat blind (reads, and mutations the cloud makes idempotent: GCP's `requestId`, ARM's PUT of a
whole resource); a mutation that is not (an AWS association replaced, an ACL created) gets one
send, and Temporal's next attempt re-reads the state before it changes anything again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from temporalio import activity

from activities.base import beat, stop_if_cancelled
from activities.throttle import STOP_POLL, BucketKey, CallAbandoned, Throttle, caller, paced

R = TypeVar("R")

ATTEMPTS = 6
"""Sends of one call that fails transiently, inside one activity attempt."""
FIRST_PAUSE = 0.2
"""Seconds after the first failed send, doubled after each further one."""
LONGEST_PAUSE = 5.0
"""No pause is longer, whatever `Retry-After` asks: well inside the activities' heartbeat timeout."""
APPLY_ATTEMPTS = 10
"""`APPLY_RETRY.maximum_attempts` of `workflows.gameday` (which this layer may not import)."""
APPLY_SENDS = ATTEMPTS * APPLY_ATTEMPTS
"""The most sends of one persistently failing call before the GameDay sees its apply fail."""


class Transient(NamedTuple):
    """A failure worth sending the call again for: what it was, and how long the cloud asked
    to wait (None: it did not say)."""

    code: str
    retry_after: float | None = None


def pause(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the `attempt`-th failed send (1-based)."""
    wanted = FIRST_PAUSE * 2 ** (attempt - 1) if retry_after is None else retry_after
    return min(max(0.0, wanted), LONGEST_PAUSE)


def backoff() -> list[float]:
    """The pauses between the `ATTEMPTS` sends of a call whose cloud asks no `Retry-After`."""
    return [pause(attempt) for attempt in range(1, ATTEMPTS)]


def wait_unless_stopped(seconds: float) -> None:
    """Sleep `seconds`, ending early with `CallAbandoned` once the caller stopped (its activity
    was cancelled, or its fan-out stopped)."""
    who = caller()
    deadline = time.monotonic() + seconds
    while True:
        if who.stopped():
            raise CallAbandoned("no call made: the activity stopped while a call waited to be "
                                "sent again")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, STOP_POLL))


def retried(call: Callable[[], R], transient_of: Callable[[Exception], Transient | None],
            throttle_of: Callable[[Exception], Throttle | None],
            sleep: Callable[[float], None] = wait_unless_stopped) -> R:
    """Make `call`, sending it again after a transient failure, up to `ATTEMPTS` sends in all;
    a throttle, any other failure, or the last send's failure is raised as it came."""
    for attempt in range(1, ATTEMPTS + 1):
        beat()
        try:
            return call()
        except Exception as exc:
            found = None if throttle_of(exc) is not None else transient_of(exc)
            if found is None or attempt == ATTEMPTS:
                raise
            if activity.in_activity():
                activity.heartbeat({"retrying": found.code or "transient", "attempt": attempt})
                stop_if_cancelled()
            sleep(pause(attempt, found.retry_after))
    raise AssertionError("unreachable")


def paced_and_retried(key: BucketKey, call: Callable[[], R],
                      throttle_of: Callable[[Exception], Throttle | None],
                      transient_of: Callable[[Exception], Transient | None]) -> R:
    """One cloud call: each send takes a token of `key`'s bucket and waits out throttles there
    (`paced`); a transient failure is sent again by `retried`."""
    return retried(lambda: paced(key, call, throttle_of), transient_of, throttle_of)
