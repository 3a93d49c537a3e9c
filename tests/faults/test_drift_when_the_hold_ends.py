"""A drift check in flight when a step's hold ends: the step is restored at its duration, not held
until max_duration (reproducer for a hang found by the generated suite)."""

from __future__ import annotations

import time
import uuid

from gameday.lab.faults import FaultRule
from gameday.status import GameDayInput
from tests.faults.harness import WATCHDOG_POLL, diff
from tests.support.clouds import GcpLab
from tests.support.gameday import approve, phase_is, runbook, step_state, terminate, wait_for
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
