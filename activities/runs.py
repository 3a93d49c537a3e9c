"""Activities that ask Temporal about runs: the watchdog's "is my GameDay still running?", and
the zone leases, sent to the lease workflow in batches."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.base import one_sentence_failures
from activities.sweep_scope import sweep_scope_from_env
from gameday.leases import LeaseAnswer, LeaseBatch, LeaseBatchAnswer, LeaseRequest, LeaseState, leases_id
from gameday.sweep import SweepScope

MAX_BATCH = 200
"""Requests per Update: a few hundred bytes each, far below Temporal's payload limits."""


@dataclass
class _Waiting:
    """Requests for one lease workflow not yet sent, each with the future its asker awaits."""

    acquires: list[tuple[LeaseRequest, asyncio.Future[LeaseAnswer]]] = field(default_factory=list)
    releases: list[tuple[str, asyncio.Future[int]]] = field(default_factory=list)
    sender: asyncio.Task[None] | None = None


class LeaseDesk:
    """This process's one way to the lease workflows: at most one Update in flight per lease
    workflow, carrying every request that arrived while the previous one was out.

    Temporal admits 10 Updates in flight per workflow (`history.maxInFlightUpdates`) and, when many
    race for one workflow, aborts and retries them by the hundred: forty GameDays taking leases
    at once made 311 aborted Updates and kept the first one waiting 38 s."""

    def __init__(self, client: Client):
        self.client = client
        self._waiting: dict[str, _Waiting] = {}

    async def acquire(self, task_queue: str, request: LeaseRequest) -> LeaseAnswer:
        waiting = self._waiting.setdefault(task_queue, _Waiting())
        future: asyncio.Future[LeaseAnswer] = asyncio.get_running_loop().create_future()
        waiting.acquires.append((request, future))
        self._send_soon(task_queue, waiting)
        return await future

    async def release(self, task_queue: str, run_id: str) -> int:
        waiting = self._waiting.setdefault(task_queue, _Waiting())
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiting.releases.append((run_id, future))
        self._send_soon(task_queue, waiting)
        return await future

    def _send_soon(self, task_queue: str, waiting: _Waiting) -> None:
        if waiting.sender is None or waiting.sender.done():
            waiting.sender = asyncio.create_task(self._send(task_queue, waiting))

    async def _send(self, task_queue: str, waiting: _Waiting) -> None:
        while waiting.acquires or waiting.releases:
            acquires, waiting.acquires = waiting.acquires[:MAX_BATCH], waiting.acquires[MAX_BATCH:]
            releases, waiting.releases = waiting.releases[:MAX_BATCH], waiting.releases[MAX_BATCH:]
            batch = LeaseBatch(acquire=[request for request, _ in acquires],
                               release=[run_id for run_id, _ in releases])
            futures: list[asyncio.Future[Any]] = [f for _, f in acquires] + [f for _, f in releases]
            try:
                answer = await self._decide(task_queue, batch)
            except Exception as error:  # each asker fails its attempt; Temporal retries the activity
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
                continue
            for future, result in zip(futures, [*answer.answers, *answer.released], strict=True):
                if not future.done():  # an asker cancelled meanwhile retries and gets the same answer
                    future.set_result(result)

    async def _decide(self, task_queue: str, batch: LeaseBatch) -> LeaseBatchAnswer:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            "GameDayLeases", LeaseState(), id=leases_id(task_queue), task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary="which GameDay holds which zone")
        return await self.client.execute_update_with_start_workflow(
            "decide", batch, start_workflow_operation=start, result_type=LeaseBatchAnswer)


class RunStateActivities:
    def __init__(self, client: Client):
        self.client = client
        self.leases = LeaseDesk(client)

    @activity.defn(name="gameday.run_state")
    @one_sentence_failures
    async def run_state(self, workflow_id: str) -> str:
        """`running`, or how the run closed (`terminated`, `failed`, ...), or `missing`."""
        try:
            description = await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return "missing"
            raise
        if description.status == WorkflowExecutionStatus.RUNNING:
            return "running"
        return description.status.name.lower() if description.status else "closed"

    async def _alive(self, run_id: str) -> bool:
        """A run holds its leases while it, or its dead man's switch, is still running."""
        states = await asyncio.gather(self.run_state(run_id), self.run_state(f"{run_id}-watchdog"))
        return "running" in states

    @activity.defn(name="gameday.acquire_leases")
    @one_sentence_failures
    async def acquire_leases(self, request: LeaseRequest) -> LeaseAnswer:
        """Granted, or refused naming the live runs that hold overlapping keys; dead holders are
        evicted on the way."""
        task_queue = activity.info().task_queue
        answer = await self.leases.acquire(task_queue, request)
        if answer.granted:
            return answer
        holders = sorted(set(answer.conflicts.values()))
        alive = await asyncio.gather(*(self._alive(run) for run in holders))
        dead = [run for run, living in zip(holders, alive, strict=True) if not living]
        if not dead:
            return answer
        return await self.leases.acquire(task_queue, request.model_copy(update={"evict": dead}))

    @activity.defn(name="gameday.release_leases")
    @one_sentence_failures
    async def release_leases(self, run_id: str) -> int:
        return await self.leases.release(activity.info().task_queue, run_id)

    def all(self) -> list[Any]:
        return [self.run_state, self.acquire_leases, self.release_leases, sweep_scope]


@activity.defn(name="gameday.sweep_scope")
def sweep_scope() -> SweepScope:
    """Where this worker sweeps, from its own environment."""
    return sweep_scope_from_env()
