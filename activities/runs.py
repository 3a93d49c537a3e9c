"""Activities that ask Temporal about runs: the watchdog's "is my GameDay still running?"."""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from gameday.sweep import SweepScope


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

    def all(self) -> list[Any]:
        return [self.run_state, sweep_scope]


@activity.defn(name="gameday.sweep_scope")
def sweep_scope() -> SweepScope:
    """Where this worker sweeps, from its own environment."""
    return SweepScope.from_env()
