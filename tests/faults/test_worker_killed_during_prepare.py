"""A worker killed while it prepares a fault: the new worker must take over within seconds.

`prepare` (like `resolve`) has no heartbeat timeout and a start-to-close timeout of minutes, so
an attempt lost with its worker is only retried when that timeout expires; meanwhile the other
faults of a parallel group stay applied well past their duration.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gameday.lab.faults import FaultRule
from gameday.status import GameDayInput
from tests.faults.harness import RUNS, WATCHDOG_POLL, pending_work
from tests.support.clouds import AwsLab
from tests.support.gameday import abort, approve, phase_is, runbook, wait_for
from workflows.gameday import GameDayWorkflow

TAKE_OVER = 30.0
"""Seconds a new worker may take to finish a prepare the killed one had started."""


@pytest.mark.skipif(not RUNS, reason="costs half a minute: runs with GAMEDAY_FAULT_RUNS=N")
def test_a_prepare_lost_with_its_worker_is_retried_within_seconds(servers, orchestrator, runner):
    lab = AwsLab(servers)
    lab.seed()
    before = lab.snapshot()

    async def scenario() -> tuple[bool, list[str]]:
        client = orchestrator.client
        handle = await client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("aws-zone", "2s")), source="tests/faults",
                         watchdog_poll=WATCHDOG_POLL),
            id=f"faults-prepare-{uuid.uuid4().hex[:8]}", task_queue=orchestrator.worker.queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        lab.faults(FaultRule(status=0, latency_ms=3000))  # every AWS call of prepare is slow
        await approve(handle)
        deadline = time.monotonic() + 30
        while not any("prepare_blackhole_zone" in p and "state 2" in p
                      for p in await pending_work(handle)):
            assert time.monotonic() < deadline, "prepare never started"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(orchestrator.worker.replace)
        lab.faults()
        try:
            await wait_for(handle, lambda s: s.phase != "running" or any(
                x.state in ("active", "restoring", "restored", "failed") for x in s.steps),
                timeout=TAKE_OVER, what="the prepare taken over")
            took_over, stuck = True, []
        except AssertionError:
            took_over, stuck = False, await pending_work(handle)
        if not took_over:
            await abort(handle, reason="stuck in prepare")
        await asyncio.wait_for(handle.result(), 60)
        return took_over, stuck

    try:
        took_over, stuck = runner.run(scenario(), timeout=180)
    finally:
        lab.faults()
    assert lab.snapshot() == before
    assert took_over, f"no progress {TAKE_OVER:.0f}s after the kill: {stuck}"
