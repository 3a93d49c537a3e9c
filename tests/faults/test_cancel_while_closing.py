"""A cancel that arrives once the GameDay's phase is `completed`, while it is still closing: the run
keeps its result (Completed in Temporal, outcome completed), it does not close as Canceled."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import WorkflowFailureError

from gameday.status import GameDayInput
from tests.faults.harness import WATCHDOG_POLL
from tests.support.clouds import AwsLab
from tests.support.gameday import approve, phase_is, runbook, wait_for
from workflows.gameday import GameDayWorkflow


def test_a_cancel_while_the_run_closes_keeps_its_result(servers, orchestrator, runner):
    lab = AwsLab(servers)
    lab.seed()

    async def once() -> str:
        handle = await orchestrator.client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("brief", "1s")), source="repro",
                         watchdog_poll=WATCHDOG_POLL),
            id=f"repro-cancel-{uuid.uuid4().hex[:6]}", task_queue=orchestrator.worker.queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        while (await handle.query(GameDayWorkflow.status)).phase != "completed":
            await asyncio.sleep(0.01)
        await handle.cancel()
        try:
            result = await handle.result()
        except WorkflowFailureError as error:
            return f"closed with {type(error.cause).__name__}: {error.cause}"
        return f"result {result.outcome}"

    orchestrator.worker.ensure_running()
    endings = [runner.run(once(), timeout=60) for _ in range(5)]
    assert endings == ["result completed"] * 5, endings
