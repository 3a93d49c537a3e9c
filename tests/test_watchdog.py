"""The dead man's switch: faults are undone even when the GameDay itself cannot undo them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from gameday.lab.aws import acl_snapshot
from gameday.plan import Checkpoint
from gameday.status import GameDayInput
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    step_state,
    wait_for,
)
from workflows.gameday import GameDayWorkflow
from workflows.watchdog import GameDayWatchdog, WatchdogInput, WatchdogStatus


async def _start(client, book, task_queue, poll=timedelta(seconds=1)):
    return await client.start_workflow(
        GameDayWorkflow.run, GameDayInput(runbook=book, source="test", watchdog_poll=poll),
        id=f"wd-{uuid.uuid4().hex[:10]}", task_queue=task_queue)


def test_terminating_the_gameday_mid_fault_still_restores_everything(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await _start(client, runbook(aws_zone_step(duration="10m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        assert acl_snapshot() != before
        await handle.terminate(reason="operator pulled the plug")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        return await watchdog.result()

    status = runner.run(scenario(), timeout=120)
    assert "terminated" in status.fired
    assert status.in_effect == [] and status.released is False
    assert acl_snapshot() == before


def test_a_gameday_that_restores_itself_releases_its_watchdog(aws, client, runner, task_queue):
    async def scenario():
        handle = await _start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        result = await final(handle)
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        return result, await watchdog.result()

    result, status = runner.run(scenario(), timeout=120)
    assert result.outcome == "completed"
    assert status.released is True and status.fired is None and status.in_effect == []
    assert any(e.kind == "watchdog_armed" for e in result.events)


def test_at_the_deadline_the_watchdog_restores_even_a_running_gameday(aws, client, runner, task_queue):
    """A GameDay stuck past its deadline: a watchdog with a deadline of now restores after grace."""
    before = acl_snapshot()

    async def scenario():
        handle = await _start(client, runbook(aws_zone_step(duration="10m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        recorded = await handle.query(GameDayWorkflow.checkpoints, result_type=list[Checkpoint])
        stuck = await client.execute_workflow(
            GameDayWatchdog.run,
            WatchdogInput(gameday_id=handle.id, deadline=datetime.now(UTC) + timedelta(seconds=2),
                          guardrails=runbook().guardrails, poll=timedelta(seconds=1),
                          grace=timedelta(seconds=1), checkpoints=recorded,
                          # the step is active: its apply landed (else the watchdog waits 45 s
                          # for a late apply, which tests/faults/test_terminate_during_apply.py
                          # proves)
                          applied=[c.unit_id for c in recorded]),
            id=f"{handle.id}-second-watchdog", task_queue=task_queue)
        restored_while_running = acl_snapshot() == before
        await abort(handle)
        return stuck, restored_while_running, await final(handle)

    status, restored_while_running, result = runner.run(scenario(), timeout=120)
    assert "deadline" in status.fired
    assert restored_while_running
    assert (result.outcome, result.restored) == ("aborted", True)
    assert acl_snapshot() == before
