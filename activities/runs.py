"""Activities that ask Temporal about runs: the watchdog's "is my GameDay still running?"."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from gameday.sweep import SweepScope
from workflows.leases import LeaseAnswer, LeaseRequest, LeaseState, leases_id


class RunStateActivities:
    def __init__(self, client: Client):
        self.client = client

    @activity.defn(name="gameday.run_state")
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
        states = [await self.run_state(run_id), await self.run_state(f"{run_id}-watchdog")]
        return "running" in states

    @activity.defn(name="gameday.acquire_leases")
    async def acquire_leases(self, request: LeaseRequest) -> LeaseAnswer:
        handle = await self.client.start_workflow(
            "GameDayLeases", LeaseState(), id=leases_id(activity.info().task_queue),
            task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary="which GameDay holds which zone")
        answer = await handle.execute_update("acquire", request, result_type=LeaseAnswer)
        if answer.granted:
            return answer
        dead = [run for run in set(answer.conflicts.values()) if not await self._alive(run)]
        for run in dead:
            await handle.execute_update("release", run, result_type=int)
        return await handle.execute_update("acquire", request, result_type=LeaseAnswer) if dead else answer

    @activity.defn(name="gameday.release_leases")
    async def release_leases(self, run_id: str) -> int:
        handle = self.client.get_workflow_handle(leases_id(activity.info().task_queue))
        try:
            return await handle.execute_update("release", run_id, result_type=int)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return 0
            raise

    def all(self) -> list[Any]:
        return [self.run_state, self.acquire_leases, self.release_leases, sweep_scope]


@activity.defn(name="gameday.sweep_scope")
def sweep_scope() -> SweepScope:
    """Where this worker sweeps, from its own environment."""
    return SweepScope.from_env()
