"""A restore that keeps failing says why, while it goes on: the step's error, a `restore_retrying`
event and the incident commander's board carry the last failure in one sentence (issue 18), and
the restore still finishes once the cloud lets it."""

from __future__ import annotations

import uuid

from gameday.lab.faults import FaultRule
from gameday.status import CLOSED_PHASES, GameDayInput
from tests.faults.harness import WATCHDOG_POLL, diff
from tests.support.clouds import GcpLab
from tests.support.gameday import abort, approve, phase_is, runbook, step_state, terminate, wait_for
from workflows.gameday import GameDayWorkflow


def test_a_failing_restore_shows_its_last_failure_and_finishes_once_the_cloud_lets_it(
        servers, orchestrator, runner):
    lab = GcpLab(servers)
    lab.seed()
    before = lab.snapshot()
    refusal = "Invalid value for field 'resource.tags.items[1]': 'gameday-x'. Must be a match of regex"

    async def scenario():
        handle = await orchestrator.client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("held", "10m"), max_duration="15m"),
                         source="tests/faults", watchdog_poll=WATCHDOG_POLL),
            id=f"restore-retrying-{uuid.uuid4().hex[:6]}", task_queue=orchestrator.worker.queue)
        try:
            await wait_for(handle, phase_is("awaiting_approval"))
            await approve(handle)
            await wait_for(handle, step_state("held", "active"))
            lab.faults(FaultRule(match="/setTags", status=400, code="invalid", message=refusal))
            await abort(handle, reason="restore against a refusing API")
            retrying = await wait_for(
                handle, lambda s: any(e.kind == "restore_retrying" for e in s.events), timeout=90,
                what="a restore_retrying event")
            board = (await handle.query("__temporal_workflow_metadata")).current_details
            lab.faults()
            closed = await wait_for(handle, phase_is(*CLOSED_PHASES), timeout=120,
                                    what="the GameDay closed once the cloud let the restore through")
        finally:
            lab.faults()
            await terminate(handle, "test over")
        return retrying, board, closed

    orchestrator.worker.ensure_running()
    retrying, board, closed = runner.run(scenario(), timeout=300)
    [step] = [s for s in retrying.steps if s.id == "held"]
    assert step.state == "restoring"
    assert step.error is not None and "\n" not in step.error and refusal[:40] in step.error
    [event] = [e for e in retrying.events if e.kind == "restore_retrying"][:1]
    assert event.detail.startswith("held: 4 attempts failed, the last: ") and refusal[:40] in event.detail
    assert "**Restoring held**: its restore retries until it succeeds; the last failure: " in board
    assert refusal[:40] in board
    assert closed.outcome == "aborted" and closed.restored, closed.reason
    [restored] = [s for s in closed.steps if s.id == "held"]
    assert restored.state == "restored" and restored.error is None
    assert diff(before, lab.snapshot()) == []
