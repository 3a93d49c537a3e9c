"""How a GameDay closes in Temporal (contract §7): Failed when it failed or left a fault, Completed
otherwise, and never a workflow task retried for ever behind a phase that says `planning`."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from gameday.lab.aws import acl_snapshot
from gameday.status import GAMEDAY_FAILED, GameDayInput, status_from_failure
from tests.support.gameday import aws_zone_step, final, phase_is, reject, runbook, start, wait_for

NOTHING_TAGGED = {"target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                             "zone": "us-east-1a", "tags": {"gameday": "nowhere"}}}


async def _closed(handle, timeout: float = 30) -> WorkflowExecutionStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            return described.status
        await asyncio.sleep(0.2)
    raise AssertionError(f"{handle.id} still running after {timeout}s")


def test_a_failed_gameday_closes_as_failed_with_its_status(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(**NOTHING_TAGGED)), task_queue)
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        described = await handle.describe()
        return raised.value, described, await final(handle)

    error, described, result = runner.run(scenario())
    assert described.status == WorkflowExecutionStatus.FAILED
    assert isinstance(error.cause, ApplicationError)
    assert (error.cause.type, error.cause.non_retryable) == (GAMEDAY_FAILED, True)
    assert error.cause.message == result.reason
    assert "us-east-1a" in (result.reason or "")
    assert status_from_failure(error) == result
    assert (result.outcome, result.phase, result.restored) == ("failed", "failed", True)
    assert result.hypothesis_held is None  # no steady state: not tested
    outcome = described.typed_search_attributes
    assert [p.value for p in outcome if p.key.name == "GameDayOutcome"] == ["failed"]
    assert acl_snapshot() == before


def test_a_rejected_gameday_closes_as_completed(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await reject(handle)
        result = await handle.result()
        return result, await handle.describe()

    result, described = runner.run(scenario())
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert (result.outcome, result.hypothesis_held) == ("rejected", None)


def test_a_runbook_beyond_the_bounds_closes_as_failed_instead_of_retrying(aws, client, runner,
                                                                          task_queue):
    """Defect 4: `max_duration: 100000000h` overflowed the deadline in the workflow task, which
    failed on every retry while the phase said `planning`. Sent as JSON past the client's own
    validation, as any Temporal client could, the run must close as Failed in seconds."""
    document = GameDayInput(runbook=runbook(), source="test").model_dump(mode="json")
    document["runbook"]["max_duration"] = "P4166666DT16H"  # 100,000,000 hours

    async def scenario():
        handle = await client.start_workflow("GameDayWorkflow", document,
                                             id=f"bounds-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
        closed = await _closed(handle)
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        return closed, raised.value

    closed, error = runner.run(scenario())
    assert closed == WorkflowExecutionStatus.FAILED
    assert "max_duration" in str(error.cause)
