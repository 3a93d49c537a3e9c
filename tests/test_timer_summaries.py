"""Every timer of a GameDay says what it waits for in the Temporal UI's timeline (issue 18): the
deadline, the approval timeout and the hold, read from the run's real history."""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType

from tests.support.gameday import (
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


def _timer_summaries(history) -> list[str]:
    summaries = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED and event.user_metadata.HasField("summary"):
            summaries.append(json.loads(event.user_metadata.summary.data))
    return summaries


def test_the_deadline_the_approval_timeout_and_the_hold_have_summaries(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"), timeout=30)
        await abort(handle)
        await final(handle)
        return await handle.fetch_history()

    summaries = _timer_summaries(runner.run(scenario()))
    assert "deadline: max_duration 10m, then abort and restore" in summaries
    assert "approval timeout of the start: 1m" in summaries
    assert any(s.startswith("blackhole-use1a: hold the fault") for s in summaries), summaries
