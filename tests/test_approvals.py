"""Identities (contract §7): a quorum counts distinct people, whatever the spelling of a signal."""

from __future__ import annotations

from gameday.lab.aws import acl_snapshot
from tests.support.gameday import (
    APPROVER,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)


def _refusals(s) -> list[str]:
    return [e.detail for e in s.events if e.kind == "approval_refused"]


def test_two_spellings_of_one_person_do_not_start_a_two_person_rule(aws, client, runner, task_queue):
    """The signals are sent raw, as `temporal workflow signal` or the UI send them: the workflow
    itself must normalise, not only the CLI."""
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s"), approvals_required=2),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", {"approver": "ic@example.com"})
        await handle.signal("approve", {"approver": "IC@example.com "})
        await handle.signal("approve", {"approver": "   "})
        once = await wait_for(handle, lambda s: len(_refusals(s)) >= 2, what="two refusals")
        await handle.signal("approve", {"approver": " Second@Example.com"})
        started = await wait_for(handle, lambda s: s.phase != "awaiting_approval", what="the start")
        return once, started, await final(handle)

    once, started, result = runner.run(scenario())
    assert once.phase == "awaiting_approval"
    assert "ic@example.com has already approved start" in _refusals(once)
    assert any("must not be blank" in r for r in _refusals(once))
    approved = [e for e in result.events if e.kind == "approved"]
    assert [e.by for e in approved] == ["ic@example.com", "second@example.com"]
    assert approved[-1].detail.startswith("second@example.com approved start (2/2)")
    assert started.phase in ("running", "completed")
    assert (result.outcome, result.restored) == ("completed", True)
    assert acl_snapshot() == before


def test_a_step_gate_records_the_normalised_approver(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s", approval="required")),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", {"approver": APPROVER})
        await wait_for(handle, step_state("blackhole-use1a", "awaiting_approval"))
        await handle.signal("approve", {"approver": "\tSECOND@example.com ", "step": "blackhole-use1a"})
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "completed"
    assert result.steps[0].approved_by == ["second@example.com"]


def test_a_rejection_in_another_spelling_is_the_approver_s(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("reject", {"approver": "", "reason": "blank"})
        await handle.signal("reject", {"approver": " IC@EXAMPLE.COM", "reason": "freeze"})
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "rejected"
    assert "rejected by ic@example.com: freeze" in (result.reason or "")
    refused = [e.detail for e in result.events if e.kind == "rejection_refused"]
    assert len(refused) == 1 and "must not be blank" in refused[0]


def test_two_gated_steps_of_one_parallel_group_can_both_be_approved(aws, client, runner, task_queue):
    """Both gates wait at once (found by the generated runbooks): approving one must not refuse the
    other, and each is approved on its own."""
    before = acl_snapshot()
    group = {"parallel": [aws_zone_step("cut-a", "us-east-1a", duration="1s", approval="required"),
                          aws_zone_step("cut-b", "us-east-1b", duration="1s", approval="required")]}

    async def scenario():
        handle = await start(client, runbook(group), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", {"approver": APPROVER})
        waiting = await wait_for(handle, lambda s: sorted(s.pending_approvals) == ["cut-a", "cut-b"],
                                 what="both gates awaiting approval")
        await handle.signal("approve", {"approver": APPROVER, "step": "cut-b"})
        await handle.signal("approve", {"approver": APPROVER, "step": "cut-a"})
        return waiting, await final(handle)

    waiting, result = runner.run(scenario())
    assert waiting.pending_approval in ("cut-a", "cut-b")
    assert _refusals(result) == []
    assert {s.id: s.approved_by for s in result.steps} == {"cut-a": [APPROVER], "cut-b": [APPROVER]}
    assert (result.outcome, result.restored) == ("completed", True)
    assert acl_snapshot() == before
