"""An apply cancelled while its calls wait for tokens makes no further call: the cancellation
reaches the activity through `kept_alive`'s heartbeats, and every call of its fan-out still
waiting for a token is abandoned instead of made (a real Temporal dev server, a real worker)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.base import fan_out, temporal_errors
from activities.throttle import BucketKey, BucketRegistry, Rate, paced

KEY = BucketKey("aws", "123456789012", "us-east-1", "ec2-mutating")
SLOW = BucketRegistry(lambda category, cloud: Rate(burst=4, refill=2))
MADE: list[tuple[float, bool]] = []
"""(when, whether the activity's cancellation was known then) of every call made."""
LOCK = threading.Lock()


@activity.defn(name="test.saturating_apply")
@temporal_errors
def saturating_apply(items: int) -> int:
    context = contextvars.copy_context()  # asks the activity itself, from the fan-out's threads

    def one_call(item: int) -> int:
        def call() -> int:
            with LOCK:
                MADE.append((time.monotonic(), context.run(activity.is_cancelled)))
            return item
        return paced(KEY, call, lambda exc: None, SLOW)

    return sum(1 for _ in fan_out(range(items), one_call, width=8))


@workflow.defn(name="SaturatingApplyWorkflow", sandboxed=False)
class SaturatingApplyWorkflow:
    @workflow.run
    async def run(self, items: int) -> int:
        return await workflow.execute_activity(
            "test.saturating_apply", items, start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=4), retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)


def test_a_cancelled_apply_starts_no_call_once_the_cancellation_is_known(client, runner) -> None:
    queue = f"throttle-cancel-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with Worker(client, task_queue=queue, workflows=[SaturatingApplyWorkflow],
                              activities=[saturating_apply], activity_executor=executor,
                              workflow_runner=UnsandboxedWorkflowRunner(),
                              max_heartbeat_throttle_interval=timedelta(seconds=2),
                              default_heartbeat_throttle_interval=timedelta(seconds=1)):
                handle = await client.start_workflow(SaturatingApplyWorkflow.run, 200,
                                                     id=f"throttle-cancel-{uuid.uuid4().hex[:8]}",
                                                     task_queue=queue)
                while len(MADE) < 6:  # the burst is spent: the fan-out waits on tokens
                    await asyncio.sleep(0.05)
                await handle.cancel()
                try:
                    await handle.result()
                except WorkflowFailureError:
                    pass

    runner.run(scenario(), timeout=60)
    time.sleep(1.5)  # a call still waiting would have had its token by now
    assert len(MADE) < 200
    assert [when for when, cancelled in MADE if cancelled] == []
