"""A drift check in flight when a step's hold ends: the step is restored at its duration, not held
until max_duration (reproducer for a hang found by the generated suite)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint
from gameday.status import CLOSED_PHASES, GameDayInput
from tests.faults.harness import WATCHDOG_POLL, diff
from tests.support.clouds import GcpLab
from tests.support.gameday import abort, approve, phase_is, runbook, step_state, terminate, wait_for
from workflows.gameday import GameDayWorkflow


def test_a_step_whose_drift_check_is_in_flight_is_restored_at_its_duration(servers, orchestrator,
                                                                            runner):
    lab = GcpLab(servers)
    lab.seed()
    before = lab.snapshot()

    async def scenario():
        handle = await orchestrator.client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("held", "3s"), drift_interval="1s",
                                         max_duration="5m"),
                         source="repro", watchdog_poll=WATCHDOG_POLL),
            id=f"repro-drift-{uuid.uuid4().hex[:6]}", task_queue=orchestrator.worker.queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("held", "active"))
        lab.faults(FaultRule(match="/instances", status=0, latency_ms=2500))  # every resolve is slow
        started = time.monotonic()
        try:
            status = await wait_for(handle, step_state("held", "restored"), timeout=40,
                                    what="the step restored after its 3s")
        finally:
            lab.faults()
            await terminate(handle, "repro over")
        return time.monotonic() - started, status

    orchestrator.worker.ensure_running()
    try:
        seconds, _ = runner.run(scenario(), timeout=150)
    finally:
        lab.faults()
        time.sleep(5)
        leaks = diff(before, lab.snapshot())
        if leaks:
            lab.seed()
    assert seconds < 30


@pytest.mark.parametrize("answer", [400, 200], ids=["apply-refused", "apply-landed"])
def test_an_abort_while_a_drift_round_applies_closes_the_gameday(servers, orchestrator, runner,
                                                                  answer):
    """The abort's restore races the drift round's apply, and the apply ends on its own before a
    heartbeat brought it the cancellation: refused (EC2: the ACL it moves a subnet onto was just
    deleted; here GCP refuses the late instance's `setTags`) or done. Either way the SDK hands
    the watch the activity's outcome in place of a `CancelledError`. The watch still stops, the
    GameDay closes as aborted and nothing is left (without the fix: 3 of 3 runs hung, each way;
    generated seeds 61 and 116 hung so once)."""
    lab = GcpLab(servers)
    lab.seed()
    before = lab.snapshot()

    async def scenario():
        handle = await orchestrator.client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("held", "10m"), drift_interval="1s",
                                         max_duration="15m"),
                         source="repro", watchdog_poll=WATCHDOG_POLL),
            id=f"repro-drift-abort-{uuid.uuid4().hex[:6]}", task_queue=orchestrator.worker.queue)
        try:
            await wait_for(handle, phase_is("awaiting_approval"))
            await approve(handle)
            await wait_for(handle, step_state("held", "active"))
            lab.faults(FaultRule(match="late-web/setTags", status=400 if answer == 400 else 0,
                                 code="badRequest", latency_ms=1800, count=1))
            lab.add_target()
            deadline = time.monotonic() + 30
            while not any(c.unit_id.endswith("-d1") for c in await handle.query(
                    GameDayWorkflow.checkpoints, result_type=list[Checkpoint])):
                assert time.monotonic() < deadline, "the drift round never checkpointed"
                await asyncio.sleep(0.1)
            # its setTags of the late instance arrived just now; answered 1.8 s after it arrived,
            # the answer lands right after the abort, before a heartbeat brings the cancellation
            await asyncio.sleep(1.5)
            await abort(handle, reason="abort while the drift round applies")
            closed = await wait_for(handle, phase_is(*CLOSED_PHASES), timeout=60,
                                    what="the GameDay closed after the abort")
            answered = [c["status"] for c in lab.calls("late-web/setTags")]
        finally:
            lab.faults()
            await terminate(handle, "repro over")
        return closed, answered

    orchestrator.worker.ensure_running()
    try:
        closed, answered = runner.run(scenario(), timeout=150)
    finally:
        lab.faults()
    assert answered[:1] == [answer], "the drift round's apply was not in flight when the abort came"
    assert closed.outcome == "aborted" and closed.restored, closed.reason
    added = "/instances/late-web: added {'tags': ['web'], 'labels': {'gameday': 'enabled', 'tier': 'web'}}"
    assert diff(before, lab.snapshot()) == [added]  # the late instance, with its own tags only
