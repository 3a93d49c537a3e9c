"""An abort after a lost worker: the worker is SIGKILLed while a fault is held and the abort is sent
at once. The server keeps sending a run's tasks to the worker that has it cached (its sticky
queue) until `sticky_queue_schedule_to_start_timeout`, so the abort waited 10 s for the dead
worker. A worker that starts takes the running workflows of its queue over, so the abort is
handled by it at once, and the first thing scheduled after it is the restore, not another apply.

The new worker starts before the kill, so that the abort reaches the server right after it: the
dev server stops sending tasks to a sticky queue nobody has polled for 10 s, which would hide the
wait when a slow worker start takes longer than that. Worker subprocesses as an operator runs
them (`python worker.py`), on the session's servers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from gameday.status import GameDayInput
from tests.faults.harness import WATCHDOG_POLL, WorkerProcess
from tests.support.clouds import AwsLab
from tests.support.gameday import abort, approve, final, phase_is, runbook, step_state, wait_for
from workflows.gameday import GameDayWorkflow


async def _wait_for_line(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{log.name} never said {text!r}:\n{log.read_text(errors='replace')[-2000:]}")


def _after(events: list[HistoryEvent], sent: HistoryEvent) -> list[HistoryEvent]:
    return [e for e in events if e.event_id > sent.event_id]


def _seconds(event: HistoryEvent, since: float) -> float:
    return event.event_time.ToDatetime().timestamp() - since


def test_an_abort_after_a_lost_worker_is_handled_by_the_new_worker_first(servers, client, runner,
                                                                         tmp_path):
    lab = AwsLab(servers)
    lab.seed()
    before = lab.snapshot()
    queue = f"sticky-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, **servers.env}
    address = servers.env["TEMPORAL_ADDRESS"]
    lost = WorkerProcess(address, queue, env, tmp_path / "lost.log").start()
    new = WorkerProcess(address, queue, env, tmp_path / "new.log")

    async def scenario() -> tuple[Any, list[HistoryEvent], float]:
        handle = await client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=runbook(lab.zone_step("aws-zone", "5m")), source="tests",
                         watchdog_poll=WATCHDOG_POLL),
            id=f"sticky-{uuid.uuid4().hex[:8]}", task_queue=queue)
        await wait_for(handle, phase_is("awaiting_approval"), timeout=90)
        await approve(handle)
        await wait_for(handle, step_state("aws-zone", "active"), timeout=60)
        new.start()
        await _wait_for_line(new.log, "took over")
        await asyncio.to_thread(lost.kill)
        sent = time.time()
        await abort(handle, reason="the worker was lost")
        closed = await asyncio.wait_for(final(handle), 120)
        history = await handle.fetch_history()
        return closed, list(history.events), sent

    try:
        closed, events, sent = runner.run(scenario(), timeout=300)
    finally:
        lost.kill()
        new.stop()

    signal = next(e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                  and e.workflow_execution_signaled_event_attributes.signal_name == "abort")
    later = _after(events, signal)
    handled = next(e for e in later if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    scheduled = [e for e in later if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    names = [e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled]
    print(f"\nabort sent -> handled by a worker {_seconds(handled, sent):.3f}s, "
          f"-> first restore scheduled {_seconds(scheduled[0], sent):.3f}s ({names[0]})")

    assert (closed.outcome, closed.restored) == ("aborted", True)
    assert lab.snapshot() == before
    waited = [e for e in later if e.event_id < handled.event_id
              and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT]
    assert not waited, "the abort waited for the lost worker's sticky queue"
    assert new.process is not None
    assert handled.workflow_task_started_event_attributes.identity.startswith(f"{new.process.pid}@")
    assert names and "restore" in names[0], f"first scheduled after the abort: {names}"
    assert not [name for name in names if "apply" in name], f"applied again after the abort: {names}"
