"""Continue-as-new on the dev server (issue 21; the week on the time-skipping server is
tests/test_week_long.py): three parallel blackholes held with drift every second, each drift watch
reporting after one look (`drift_window`), and a low `handover_events`, so the GameDay hands over
every few seconds. It completes, or is aborted at a
seeded random moment (during a hand-over too), and the lab ends exactly as before; the status of
the last run tells the one GameDay from its start."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

import boto3
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from bench.history import every_run, run_histories
from gameday.lab.aws import acl_snapshot
from gameday.status import GameDayInput, GameDayStatus
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    status,
    wait_for,
)
from workflows.gameday import GameDayWorkflow

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def _book(hold: str):
    steps = [aws_zone_step(f"blackhole-{zone}", zone, hold) for zone in ZONES]
    return runbook({"parallel": steps}, drift_interval="1s", max_duration="5m")


async def _start(client, task_queue, hold: str):
    return await client.start_workflow(
        GameDayWorkflow.run,
        GameDayInput(runbook=_book(hold), source="test", started_by="pytest",
                     watchdog_poll=timedelta(seconds=2), handover_events=200,
                     drift_window=timedelta(seconds=1)),
        id=f"test-handover-{uuid.uuid4().hex[:8]}", task_queue=task_queue)


def _one_gameday(closed: GameDayStatus, runs: list[int]) -> None:
    kinds = [e.kind for e in closed.events]
    assert len(runs) > 1, runs
    assert kinds[0] == "started" and kinds.count("started") == 1, kinds
    assert kinds.count("approved") == 1 and kinds.count("continued") == len(runs) - 1, kinds
    assert max(runs) < 1_000, runs


CLOSED_ACTIVITY = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
}


def _open_activities(history: WorkflowHistory) -> list[str]:
    """The activities the run scheduled that had not closed when the run did."""
    open_ = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            open_[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type in CLOSED_ACTIVITY:
            attributes = getattr(event, CLOSED_ACTIVITY[event.event_type])
            open_.pop(attributes.scheduled_event_id, None)
    return sorted(open_.values())


def test_a_gameday_that_continues_as_new_completes_and_restores_exactly(aws, client, runner,
                                                                         task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await _start(client, task_queue, "20s")
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        closed = await final(handle)
        return closed, await every_run(client, handle.id)

    closed, histories = runner.run(scenario(), timeout=180)
    assert (closed.outcome, closed.restored) == ("completed", True), closed.reason
    assert acl_snapshot() == before
    _one_gameday(closed, [len(h.events) for h in histories])
    # a run hands over once its drift windows have stopped: none runs on into the next run's time
    # (the time-skipping server of the week-long test stops skipping when one is left behind)
    left = {run: _open_activities(h) for run, h in enumerate(histories[:-1], 1) if _open_activities(h)}
    assert not left, f"runs handed over with these activities still open: {left}"
    for step in closed.steps:
        assert step.state == "restored" and step.injected_at and step.restored_at, step
        assert step.restored_at - step.injected_at >= timedelta(seconds=20), step


def test_an_abort_at_a_random_moment_across_hand_overs_restores_exactly(aws, client, runner,
                                                                        task_queue):
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    expected = acl_snapshot()

    async def scenario():
        handle = await _start(client, task_queue, "2m")
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        await wait_for(handle, lambda s: sum(e.kind == "continued" for e in s.events) >= 1,
                       timeout=90, what="a first hand-over")
        # a subnet that appears now is cut by drift in a later run, and restored with the rest
        ec2 = boto3.client("ec2", region_name="us-east-1")
        subnet = ec2.create_subnet(
            VpcId=aws["vpcs"]["shop"], CidrBlock="10.0.202.0/24", AvailabilityZone="us-east-1b",
            TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                {"Key": "gameday", "Value": "enabled"}, {"Key": "Name", "Value": "late"}]}])
        subnet_id = subnet["Subnet"]["SubnetId"]
        expected["associations"][subnet_id] = acl_snapshot()["associations"][subnet_id]
        await wait_for(handle, lambda s: any(e.kind == "drift" for e in s.events), timeout=60,
                       what="drift to cut the new subnet")
        runs = rng.randint(2, 4)
        await wait_for(handle, lambda s: sum(e.kind == "continued" for e in s.events) >= runs,
                       timeout=90, what=f"{runs} hand-overs")
        await asyncio.sleep(rng.uniform(0, 1.5))  # a random moment, perhaps mid hand-over
        live = await status(handle)
        await abort(handle, reason=f"abort at seed {seed}")
        closed = await final(handle)
        return live, closed, await run_histories(client, handle.id)

    live, closed, runs = runner.run(scenario(), timeout=240)
    assert (closed.outcome, closed.restored) == ("aborted", True), (seed, closed.reason)
    assert acl_snapshot() == expected, seed
    _one_gameday(closed, runs)
    assert sorted(live.active_faults) == sorted(f"blackhole-{z}" for z in ZONES), (seed, live)
    assert all(step.state == "restored" for step in closed.steps), (seed, closed.steps)
