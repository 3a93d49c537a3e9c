"""A cloud activity whose one call blocks longer than its heartbeat timeout (a listing of
thousands, a slow control plane) is kept alive by its worker, and still cancelled promptly."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import CancelledError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.base import KEEP_ALIVE, temporal_errors

BLOCK = 7.0
HEARTBEAT_TIMEOUT = timedelta(seconds=4)


@activity.defn(name="test.slow_call")
@temporal_errors
def slow_call(seconds: float) -> str:
    """One blocking call, no heartbeat of its own, as a large listing is."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "answered"


@activity.defn(name="test.bare_slow_call")
def bare_slow_call(seconds: float) -> str:
    time.sleep(seconds)
    return "answered"


@workflow.defn(name="SlowCallWorkflow", sandboxed=False)
class SlowCallWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            name, BLOCK, start_to_close_timeout=timedelta(minutes=1),
            heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)


def _run(client, runner, name: str, cancel_after: float | None = None):
    queue = f"keep-alive-{uuid.uuid4().hex[:8]}"

    async def scenario():
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with Worker(client, task_queue=queue, workflows=[SlowCallWorkflow],
                              activities=[slow_call, bare_slow_call], activity_executor=executor,
                              workflow_runner=UnsandboxedWorkflowRunner(),
                              max_heartbeat_throttle_interval=timedelta(seconds=2),
                              default_heartbeat_throttle_interval=timedelta(seconds=1)):
                handle = await client.start_workflow(SlowCallWorkflow.run, name,
                                                     id=f"keep-alive-{uuid.uuid4().hex[:8]}",
                                                     task_queue=queue)
                if cancel_after is not None:
                    await asyncio.sleep(cancel_after)
                    await handle.cancel()
                started = time.monotonic()
                try:
                    return await handle.result(), time.monotonic() - started
                except WorkflowFailureError as error:
                    return error.cause, time.monotonic() - started

    return runner.run(scenario(), timeout=60)


def test_a_call_longer_than_the_heartbeat_timeout_completes(client, runner):
    result, _ = _run(client, runner, "test.slow_call")
    assert result == "answered"


def test_without_keep_alive_the_same_call_times_out(client, runner):
    """The control: the heartbeat timeout is real, so the test above can fail."""
    result, _ = _run(client, runner, "test.bare_slow_call")
    assert "Heartbeat" in str(getattr(result, "cause", result)) or "heartbeat" in str(result).lower()


def test_a_kept_alive_call_is_still_cancelled_within_a_keep_alive_period(client, runner):
    """Without keep-alive the cancellation never reaches the call: it ends by heartbeat timeout
    (an ActivityError), not as cancelled."""
    result, waited = _run(client, runner, "test.slow_call", cancel_after=1.0)
    assert isinstance(result, CancelledError), result
    assert waited < KEEP_ALIVE + 1.0, waited

