"""Terminate a GameDay while a cloud call of its apply is still in flight.

The dead man's switch restores as soon as it sees its GameDay closed, but the apply attempt that
was running keeps running on the worker until its next heartbeat is refused, and the call it
was making lands whenever the cloud answers. Whatever lands after the restore has read the
resource outlives the run.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint
from gameday.status import GameDayInput
from tests.faults.harness import WATCHDOG_POLL, diff
from tests.support.clouds import GcpLab
from tests.support.gameday import approve, phase_is, runbook, wait_for
from workflows.gameday import GameDayWorkflow
from workflows.watchdog import WatchdogStatus

SLOW_CALL_MS = 4000


def _deny_rules(lab: GcpLab) -> list[str]:
    return [name for name in lab.snapshot()["firewalls"] if name.startswith("gameday-")]


def test_a_set_tags_call_in_flight_when_the_gameday_is_terminated_is_restored(
        servers, orchestrator, runner):
    lab = GcpLab(servers)
    lab.seed()
    before = lab.snapshot()
    lab.faults(FaultRule(match="/setTags", status=0, latency_ms=SLOW_CALL_MS))

    async def scenario() -> WatchdogStatus:
        client = orchestrator.client
        handle = await client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("gcp-zone", "1m")), source="tests/faults",
                         watchdog_poll=WATCHDOG_POLL),
            id=f"faults-inflight-{uuid.uuid4().hex[:8]}", task_queue=orchestrator.worker.queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        deadline = time.monotonic() + 60
        while not (recorded := await handle.query(GameDayWorkflow.checkpoints,
                                                  result_type=list[Checkpoint])):
            assert time.monotonic() < deadline, "no checkpoint recorded"
            await asyncio.sleep(0.05)
        rules = len(recorded[0].state["rules"])
        while len(_deny_rules(lab)) < rules:  # apply makes the deny rules, then tags instances
            assert time.monotonic() < deadline, "the deny rules never appeared"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the first setTags is in flight
        await handle.terminate(reason="terminated with a call in flight")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        # the watchdog restores, waits out an apply that may still land (LATE_APPLY, 45 s) and
        # restores again, and each restore's setTags calls are slow too
        status = await asyncio.wait_for(watchdog.result(), 150)
        await asyncio.sleep(SLOW_CALL_MS / 1000 + 2)  # every call in flight has landed
        return status

    orchestrator.worker.ensure_running()
    try:
        status = runner.run(scenario(), timeout=240)
    finally:
        lab.faults()
    after = lab.snapshot()
    leaks = diff(before, after)
    if leaks:
        lab.seed()
    assert "terminated" in (status.fired or "")
    assert not leaks, "\n".join(leaks)
