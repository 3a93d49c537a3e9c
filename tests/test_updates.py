"""Temporal Updates `approve`, `reject`, `abort` (contract §9): the workflow answers with what it
recorded, and a validator keeps malformed requests out of the history."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from gameday.lab.aws import acl_snapshot
from gameday.status import UpdateAnswer
from tests.support.gameday import (
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    status,
    step_state,
    wait_for,
)


async def _ask(handle, name: str, payload: dict) -> UpdateAnswer:
    return await handle.execute_update(name, payload, result_type=UpdateAnswer)


def test_an_approval_sent_while_planning_waits_for_the_plan_and_is_answered(aws, client, runner,
                                                                           task_queue):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        answer = await _ask(handle, "approve", {"approver": "IC@example.com ", "request_id": "r1"})
        return answer, await final(handle)

    answer, result = runner.run(scenario())
    assert answer == UpdateAnswer(accepted=True, kind="approved",
                                  detail="ic@example.com approved start (1/1)")
    kinds = [e.kind for e in result.events]
    assert kinds.index("planned") < kinds.index("approved")
    assert next(e for e in result.events if e.kind == "approved").request_id == "r1"
    assert result.outcome == "completed"


def test_refusals_are_recorded_and_answered_with_their_sentence(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(approvals_required=2), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        answers = [
            await _ask(handle, "approve", {"approver": "mallory@example.com"}),
            await _ask(handle, "approve", {"approver": "ic@example.com", "plan_hash": "sha256:0"}),
            await _ask(handle, "approve", {"approver": "ic@example.com"}),
            await _ask(handle, "approve", {"approver": " IC@example.com"}),
            await _ask(handle, "approve", {"approver": "ic@example.com", "step": "blackhole-use1a"}),
            await _ask(handle, "reject", {"approver": "mallory@example.com"}),
        ]
        during = await status(handle)
        answers.append(await _ask(handle, "reject", {"approver": "second@example.com",
                                                     "reason": "not today"}))
        return answers, during, await final(handle)

    answers, during, result = runner.run(scenario())
    assert [(a.accepted, a.kind) for a in answers] == [
        (False, "approval_refused"), (False, "approval_refused"), (True, "approved"),
        (False, "approval_refused"), (False, "approval_refused"), (False, "rejection_refused"),
        (True, "rejected_by")]
    assert answers[0].detail == "mallory@example.com is not an approver of this runbook"
    assert answers[1].detail.startswith("plan hash sha256:0 does not match the plan sha256:")
    assert answers[3].detail == "ic@example.com has already approved start"
    assert answers[4].detail == "step blackhole-use1a is not awaiting approval (awaiting: start)"
    recorded = [e.detail for e in during.events if e.kind in ("approval_refused", "rejection_refused")]
    assert recorded == [a.detail for a in answers if not a.accepted]
    assert result.outcome == "rejected"


def test_malformed_requests_are_refused_before_they_reach_the_history(aws, client, runner,
                                                                     task_queue):
    async def scenario():
        handle = await start(client, runbook(), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        errors = []
        for name, payload in (("approve", {"approver": "  "}), ("approve", {"who": "ic@example.com"}),
                              ("reject", {"approver": 42.5}), ("abort", {"by": "ic@example.com"})):
            with pytest.raises(WorkflowUpdateFailedError) as raised:
                await _ask(handle, name, payload)
            errors.append(raised.value.cause.message)
        after = await status(handle)
        history = [event async for event in handle.fetch_history_events()]
        await _ask(handle, "abort", {"by": "ic@example.com", "reason": "done"})
        return errors, after, history, await final(handle)

    errors, after, history, result = runner.run(scenario())
    assert errors[0] == "malformed approve request: approver: an identity must not be blank"
    assert errors[3].startswith("malformed abort request: reason:")
    assert after.phase == "awaiting_approval"
    assert not [e for e in after.events if "refused" in e.kind or e.kind.startswith("abort")]
    assert not [e for e in history if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert result.outcome == "aborted"


def test_abort_is_answered_and_a_second_abort_is_a_repeat(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await _ask(handle, "approve", {"approver": "ic@example.com"})
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        first = await _ask(handle, "abort", {"by": " IC@example.com", "reason": "checkout is down"})
        second = await _ask(handle, "abort", {"by": "second@example.com", "reason": "me too"})
        return first, second, await final(handle)

    first, second, result = runner.run(scenario())
    assert first == UpdateAnswer(accepted=True, kind="abort_requested",
                                 detail="ic@example.com: checkout is down")
    assert (second.accepted, second.kind) == (True, "abort_repeated")
    assert (result.outcome, result.restored) == ("aborted", True)
    assert acl_snapshot() == before


def test_signals_keep_working_beside_the_updates(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await handle.signal("approve", {"approver": "ic@example.com"})
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "completed"
    assert [e.by for e in result.events if e.kind == "approved"] == ["ic@example.com"]
