"""A hundred runs take their leases at once: every one is answered, overlapping requests are refused
naming a live holder, a dead holder is evicted, and Temporal aborts no Update on the way.

The runs are small workflows that take and hold leases through the same activities a GameDay uses
(`gameday.acquire_leases`, `gameday.release_leases`), on a worker of this test's own, against the
session's dev server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.runs import RunStateActivities
from workflows.leases import GameDayLeases, LeaseAnswer, LeaseRequest, leases_id, overlaps

RUNS = 100


@workflow.defn(name="LeaseHolderForTests", sandboxed=False)
class LeaseHolder:
    """Takes leases as a GameDay does, holds them until `let_go`, then releases them."""

    def __init__(self) -> None:
        self._answer: LeaseAnswer | None = None
        self._let_go = False

    @workflow.run
    async def run(self, keys: list[str]) -> LeaseAnswer:
        self._answer = await workflow.execute_activity(
            "gameday.acquire_leases", LeaseRequest(run_id=workflow.info().workflow_id, keys=keys),
            result_type=LeaseAnswer, start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=5))
        if self._answer.granted:
            await workflow.wait_condition(lambda: self._let_go)
            await workflow.execute_activity(
                "gameday.release_leases", workflow.info().workflow_id, result_type=int,
                start_to_close_timeout=timedelta(minutes=1), retry_policy=RetryPolicy(maximum_attempts=5))
        return self._answer

    @workflow.query
    def answer(self) -> LeaseAnswer | None:
        return self._answer

    @workflow.signal
    def let_go(self) -> None:
        self._let_go = True


@pytest.fixture
def lease_queue(client: Client, runner) -> Iterator[str]:
    """A worker with the lease workflow, the holders and the lease activities on a queue of its own."""
    queue = f"leases-{uuid.uuid4().hex[:10]}"
    executor = ThreadPoolExecutor(max_workers=4)

    async def start() -> Worker:
        worker = Worker(client, task_queue=queue, workflows=[GameDayLeases, LeaseHolder],
                        activities=RunStateActivities(client).all(), activity_executor=executor)
        asyncio.ensure_future(worker.run())
        return worker

    worker = runner.run(start())
    yield queue
    runner.run(worker.shutdown(), timeout=60)
    executor.shutdown(wait=False, cancel_futures=True)


class Answers:
    """When each holder got its answer, read without asking the holders: a refused holder ends
    with its answer, a granted one shows in the lease workflow's `held` (one query a poll)."""

    def __init__(self, client: Client, task_queue: str):
        self.leases = client.get_workflow_handle(leases_id(task_queue))
        self.results: dict[str, asyncio.Task[LeaseAnswer]] = {}
        self.seconds: dict[str, float] = {}

    def watch(self, handle: WorkflowHandle[Any, LeaseAnswer]) -> None:
        self.results[handle.id] = asyncio.ensure_future(handle.result())

    async def wait(self, run_ids: list[str], started: float, timeout: float = 90) -> dict[str, str]:
        """Until each of `run_ids` is answered; what is held then."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                held = await self.leases.query(GameDayLeases.held)
            except RPCError:  # not started yet, or too busy to answer: ask again
                held = {}
            holders = set(held.values())
            for run_id in run_ids:
                if run_id not in self.seconds and (run_id in holders or self.results[run_id].done()):
                    self.seconds[run_id] = time.monotonic() - started
            if all(run_id in self.seconds for run_id in run_ids):
                return held
            assert time.monotonic() < deadline, f"{len(run_ids) - len(self.seconds)} runs got no answer"
            await asyncio.sleep(0.2)


def _requests() -> list[list[str]]:
    """Forty zones asked for by two runs each; a region asked for whole by ten runs and zone by zone
    by ten more."""
    pairs = [[f"aws:111111111111:us-east-1:zone-{index // 2}"] for index in range(80)]
    regions = [["gcp:lab:europe-west1:*"] for _ in range(10)]
    zones = [[f"gcp:lab:europe-west1:europe-west1-{letter}"] for letter in "abcdefghij"]
    return pairs + regions + zones


def test_a_hundred_runs_acquiring_at_once_are_all_answered_without_aborted_updates(
        servers, client, runner, lease_queue):
    """The first of them starts the lease workflow, as in a fresh deployment: that is when the
    Updates of each run, sent one by one, were aborted by the hundred."""
    log = Path(servers.state_dir) / "temporal.log"
    requests = _requests()
    answers = Answers(client, lease_queue)

    async def holder(keys: list[str], name: str) -> WorkflowHandle[Any, LeaseAnswer]:
        handle = await client.start_workflow(LeaseHolder.run, keys, id=f"{name}-{uuid.uuid4().hex[:6]}",
                                             task_queue=lease_queue)
        answers.watch(handle)
        return handle

    async def scenario() -> dict[str, Any]:
        started = time.monotonic()
        handles = await asyncio.gather(*(holder(keys, f"run-{index:03}")
                                         for index, keys in enumerate(requests)))
        ids = [h.id for h in handles]
        held = await answers.wait(ids, started)

        # one winner dies: its zone goes to the next asker; a live winner's zone does not
        winners = set(held.values())
        dead, alive = (next(h for h in handles[n:n + 2] if h.id in winners) for n in (0, 2))
        await dead.terminate(reason="a run that died holding its lease")
        answers.results.pop(dead.id).cancel()
        successor, refused = await holder(requests[0], "successor"), await holder(requests[2], "refused")
        late_held = await answers.wait([successor.id, refused.id], time.monotonic())

        for handle in [*handles, successor]:
            if handle.id in winners | {successor.id} and handle is not dead:
                await handle.signal(LeaseHolder.let_go)
        finals = {run_id: await task for run_id, task in answers.results.items()}
        finals[dead.id] = LeaseAnswer(granted=True)  # seen holding its zone before it died
        return {"answers": [finals[run_id] for run_id in ids], "ids": ids, "held": held,
                "dead": dead.id, "alive": alive.id, "late": [finals[successor.id], finals[refused.id]],
                "late_held": late_held, "successor": successor.id,
                "after": await answers.leases.query(GameDayLeases.held),
                "seconds": sorted(answers.seconds[run_id] for run_id in ids)}

    logged_before = log.stat().st_size
    run = runner.run(scenario(), timeout=180)
    with open(log, "rb") as server_log:
        server_log.seek(logged_before)
        errors = [line for line in server_log.read().decode(errors="replace").splitlines()
                  if "update was aborted" in line or "level=ERROR" in line and (
                      "UpdateWorkflowExecution" in line or leases_id(lease_queue) in line)]
    seconds = run["seconds"]
    print(f"\n{RUNS} acquirers answered: first {seconds[0]:.2f}s, median {seconds[RUNS // 2]:.2f}s, "
          f"last {seconds[-1]:.2f}s")

    ids = run["ids"]
    answers = run["answers"]
    assert len(answers) == RUNS
    granted = {run_id: keys for run_id, keys, answer in zip(ids, requests, answers, strict=True)
               if answer.granted}
    for run_id, keys in granted.items():
        for other, other_keys in granted.items():
            assert run_id == other or not any(overlaps(a, b) for a in keys for b in other_keys), \
                f"{run_id} and {other} both hold overlapping keys"
    for run_id, answer in zip(ids, answers, strict=True):
        if not answer.granted:
            assert answer.conflicts, f"{run_id} refused without naming a holder"
            for key, holder_id in answer.conflicts.items():
                assert holder_id in granted and any(overlaps(key, h) for h in granted[holder_id]), \
                    f"{run_id} refused for {key} by {holder_id}, which holds no overlapping key"
    for pair in range(40):
        assert sum(answers[2 * pair + i].granted for i in range(2)) == 1
    whole, zones = answers[80:90], answers[90:100]
    assert (sum(a.granted for a in whole), sum(a.granted for a in zones)) in {(1, 0), (0, 10)}
    assert run["held"] == {key: run_id for run_id, keys in granted.items() for key in keys}
    successor, refused = run["late"]
    assert successor.granted, "the dead holder was not evicted"
    assert run["late_held"][requests[0][0]] == run["successor"]
    assert refused.conflicts == {requests[2][0]: run["alive"]}
    assert run["after"] == {}
    assert errors == [], f"the dev server logged {len(errors)} errors, first: {errors[0]}"
