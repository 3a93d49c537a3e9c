"""Unit ids in the workflow (contract §7): no two checkpointed units of a run share an id, and when
a runbook or a cloud would make them, no fault is left behind by the dead man's switch."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from gameday.lab.aws import acl_snapshot
from gameday.plan import Checkpoint
from gameday.status import GameDayInput
from tests.support.gameday import (
    ACCOUNT,
    abort,
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.gameday import GameDayWorkflow, drift_unit_id
from workflows.planning import unit_collisions
from workflows.watchdog import GameDayWatchdog, WatchdogInput

REGION_STEP = {"id": "r", "action": "blackhole_region",
               "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                          "tags": {"gameday": "enabled"}}}


def test_unit_collisions_name_each_shared_id():
    units = [("r", "r-us-east-1a"), ("r", "r-us-east-1b"), ("r-us-east-1a", "r-us-east-1a")]
    assert unit_collisions(units) == ["unit id r-us-east-1a would be shared by steps r and r-us-east-1a"]
    assert unit_collisions([("a", "a"), ("r", "r-1"), ("r", "r-2")]) == []


def test_drift_rounds_of_long_units_sharing_a_prefix_get_distinct_ids():
    """The ids the workflow gives drift rounds (it once cut long ids down to a shared prefix)."""
    first, second = "x" * 60 + "-a", "x" * 60 + "-b"
    ids = {drift_unit_id(unit, round_) for unit in (first, second) for round_ in (1, 2, 12)}
    assert len(ids) == 6
    assert all(len(i) <= 63 for i in ids)
    assert drift_unit_id("blackhole-use1a", 2) == "blackhole-use1a-d2"


def test_a_plan_whose_units_would_share_an_id_closes_failed_before_any_change(aws, client, runner,
                                                                              task_queue):
    """The hole as reported: a region step `r` and a step named like one of its zones, in one
    parallel group. The input is sent as JSON, past the client's own validation, as any client of
    Temporal could; the run must close as Failed without asking for approval."""
    before = acl_snapshot()
    book = runbook({"parallel": [{**REGION_STEP, "duration": "5m"},
                                 aws_zone_step(step_id="other", zone="us-east-1b", duration="5m")]},
                   drift_interval=None)
    document = GameDayInput(runbook=book, source="test").model_dump(mode="json")
    document["runbook"]["steps"][0]["parallel"][1]["id"] = "r-us-east-1a"

    async def scenario():
        handle = await client.start_workflow("GameDayWorkflow", document,
                                             id=f"units-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            try:
                phase = (await handle.query(GameDayWorkflow.status)).phase
            except Exception:
                phase = None
            assert phase != "awaiting_approval", "a plan with colliding unit ids awaits approval"
            await asyncio.sleep(0.2)
        error = None
        try:
            await handle.result()
        except WorkflowFailureError as failure:
            error = failure
        return (await handle.describe()).status, error

    closed, error = runner.run(scenario())
    assert closed == WorkflowExecutionStatus.FAILED
    assert error is not None and "r-us-east-1a" in str(error.cause)
    assert acl_snapshot() == before


def test_the_watchdog_keeps_every_checkpoint_even_under_one_unit_id(aws, client, runner, task_queue):
    """Belt and braces: were two checkpoints ever recorded under one unit id, the dead man's switch
    restores both instead of the last one (the reported hole: 3 of 4 zones restored)."""
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook({**REGION_STEP, "duration": "10m"}, drift_interval=None),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("r", "active"))
        recorded = await handle.query(GameDayWorkflow.checkpoints, result_type=list[Checkpoint])
        shared = [c.model_copy(update={"step_id": "r-us-east-1a"}) for c in recorded]
        watchdog = await client.execute_workflow(
            GameDayWatchdog.run,
            WatchdogInput(gameday_id=handle.id, deadline=datetime.now(UTC) + timedelta(seconds=2),
                          guardrails=runbook().guardrails, poll=timedelta(seconds=1),
                          grace=timedelta(seconds=1), checkpoints=shared,
                          applied=["r-us-east-1a", "r-us-east-1a#2", "r-us-east-1a#3"]),
            id=f"{handle.id}-second-watchdog", task_queue=task_queue)
        # the watchdog's restores look up gameday's ACLs by the unit id it was given, so only the
        # associations say whether every zone is back; the run's own restore removes the ACLs
        restored_while_running = acl_snapshot()["associations"] == before["associations"]
        await abort(handle)
        return len(recorded), watchdog, restored_while_running, await final(handle)

    zones, watchdog, restored_while_running, result = runner.run(scenario(), timeout=120)
    assert zones == 3
    assert "deadline" in (watchdog.fired or "")
    assert restored_while_running
    assert (result.outcome, result.restored) == ("aborted", True)
    assert acl_snapshot() == before
