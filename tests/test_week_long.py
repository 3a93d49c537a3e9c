"""A GameDay can last a week (issue 21): three parallel blackholes held for seven days, drift every
minute and a steady state every 15 s, on the time-skipping test server through the real fault and
drift activities against moto. Each run's history stays under Temporal's 10,240-event warning (the
GameDay continues as new, under one workflow id), every fault is restored exactly, after completion
and after an abort at a random moment, and the report covers the whole week.

The server skips no time while an activity runs, and the real steady-state and drift watches look
every interval inside one activity for their whole window, so a GameDay that holds would never skip
any time. `bench.history` stands in for them (`watch_at_once`, `drift_at_once`): each window passes
as a retry backoff (skipped), and then the stand-in makes one real check of the health endpoint, or
one real drift look through the step's resolve, for the window."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from datetime import timedelta

import boto3
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.history import (
    WARNING_EVENTS,
    approve_when_asked,
    blackhole,
    gameday_runbook,
    run_histories,
    start,
    time_skipping,
    workers,
)
from gameday.lab.aws import acl_snapshot
from gameday.report import build_report
from gameday.runbook import Runbook
from gameday.status import Abort, GameDayStatus
from tests.support.gameday import final
from tests.support.health import HealthServer
from workflows.gameday import GameDayWorkflow

pytestmark = [
    pytest.mark.skipif(not os.environ.get("GAMEDAY_WEEK_LONG"), reason=(
        "the time-skipping test server sometimes loses the steady-state stand-in's second attempt "
        "at a hand-over (pending `probe.watch attempt 2`, started, for ever, even after a minute is "
        "skipped by hand): about one run in five under load; runs with GAMEDAY_WEEK_LONG=1 "
        "(make faults) until that is solved")),
    pytest.mark.timeout(1200),
]

DRIFT = "1m"
"""Drift every minute, as issue 21 asks: each drift watch looks every minute for an hour
(`workflows/drift.py`); here each hour is skipped and then looked at once (`drift_at_once`)."""

SETTINGS = {"handover_events": 1_000, "watchdog_poll": timedelta(hours=1)}
"""A week of these holds writes about 4,000 events (bench/RESULTS.md), near the 4,000 at which a
run hands over by default: at 1,000 the GameDay hands over several times in the week. The watchdog
looks every hour, not every 30 s: its 20,000 looks of a week would each cost the time-skipping
server real time, and what it does when the GameDay is terminated is tested elsewhere."""

HOLD = "167h"
"""Each step is held six days and 23 hours, within `max_duration: 168h` (7 days; runbook durations
are written in hours at most), so the run completes."""
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


class OverTheLimit(Exception):
    """A run's history passed Temporal's warning."""


def _week_runbook(health: HealthServer) -> Runbook:
    return gameday_runbook([{"parallel": [blackhole(zone, HOLD) for zone in ZONES]}], "168h", DRIFT,
                           health.url, interval="15s")


_HANDED_OVER: dict[str, tuple[str, list[int]]] = {}
"""Workflow id → (its latest run id, the lengths of the runs before it), as last seen."""


async def _lengths(client: Client, workflow_id: str) -> list[int]:
    """Every run's history length: the latest run's from its description (one cheap call, made
    every two seconds while the server skips time), the runs before it read once per hand-over."""
    info = (await client.get_workflow_handle(workflow_id).describe()).raw_description
    run_id = info.workflow_execution_info.execution.run_id
    known = _HANDED_OVER.get(workflow_id)
    if known is None or known[0] != run_id:
        lengths = await run_histories(client, workflow_id)
        _HANDED_OVER[workflow_id] = (run_id, lengths[:-1])
        return lengths
    return [*known[1], info.workflow_execution_info.history_length]


async def _bounded(client: Client, workflow_id: str) -> list[int]:
    """Every run's history length; fails as soon as one passes Temporal's warning."""
    lengths = await _lengths(client, workflow_id)
    over = [(index, length) for index, length in enumerate(lengths) if length >= WARNING_EVENTS]
    if over:
        run, length = over[0]
        raise OverTheLimit(f"run {run + 1} of {workflow_id} has {length} history events, over the "
                           f"{WARNING_EVENTS} warning (runs so far: {lengths})")
    return lengths


class Stalled(Exception):
    """The GameDay's history did not grow for `QUIET` seconds of real time, twice."""


QUIET = 60.0
"""Real seconds without a new event after which the test server is taken to be stuck (a step of
the week takes well under a second, under load a few)."""


async def _stalled(client: Client, workflow_id: str, lengths: list[int]) -> Stalled:
    """What the run waits for: its pending activities and its last events."""
    handle = client.get_workflow_handle(workflow_id)
    described = (await handle.describe()).raw_description
    pending = [f"{p.activity_type.name} attempt {p.attempt} state {p.state}"
               for p in described.pending_activities]
    history = await handle.fetch_history()
    last = [f"{e.event_id} {EventType.Name(e.event_type)}" for e in history.events[-12:]]
    return Stalled(f"{workflow_id}: no new event for {QUIET:.0f} s, even after a minute was "
                   f"skipped (runs {lengths}); pending activities {pending}; last events {last}")


async def _follow(env: WorkflowEnvironment, closing: asyncio.Task[GameDayStatus], workflow_id: str,
                  stop: Callable[[list[int]], bool]) -> list[int]:
    """While `closing` awaits the result (the server skips time meanwhile), look at every run's
    history every two seconds until `stop(lengths)` or the run has closed; the lengths last seen.

    Under load the test server sometimes loses an activity task it has marked started, and then
    holds its clock still for that activity for ever, so not even the activity's heartbeat timeout
    (which retries it on a real server) comes. When the history has not grown for `QUIET` real
    seconds, one minute is skipped by hand, as a real clock would pass it; `Stalled`, with what
    the run waits for, if that does not help."""
    seen, since, nudged = None, time.monotonic(), False
    while True:
        lengths = await _bounded(env.client, workflow_id)
        if closing.done() or stop(lengths):
            return lengths
        if lengths != seen:
            seen, since, nudged = lengths, time.monotonic(), False
        elif time.monotonic() - since > QUIET:
            if nudged:
                raise await _stalled(env.client, workflow_id, lengths)
            print(f"no new event for {QUIET:.0f} s (runs {lengths}): a minute is skipped", flush=True)
            await env.sleep(timedelta(minutes=1))
            since, nudged = time.monotonic(), True
        await asyncio.wait([closing], timeout=2)


async def _closed(env: WorkflowEnvironment, closing: asyncio.Task[GameDayStatus],
                  workflow_id: str) -> tuple[GameDayStatus, list[int]]:
    """The closed run's status and every run's history length, checked until it closes."""
    await _follow(env, closing, workflow_id, lambda runs: False)
    return await closing, await run_histories(env.client, workflow_id)


def _add_subnet(vpc: str) -> tuple[str, str]:
    """A new tagged subnet, `drifted-in`, in us-east-1a, which drift must bring under the fault:
    (its id, the VPC's default ACL, which it is associated with until then)."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.200.0/24", AvailabilityZone="us-east-1a",
                               TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                                   {"Key": "gameday", "Value": "enabled"},
                                   {"Key": "Name", "Value": "drifted-in"}]}])["Subnet"]["SubnetId"]
    default = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                 {"Name": "default", "Values": ["true"]}])
    return subnet, default["NetworkAcls"][0]["NetworkAclId"]


def _one_gameday_across_runs(status: GameDayStatus, lengths: list[int]) -> None:
    """The status of the latest run still tells the whole GameDay from its start."""
    assert len(lengths) > 1, f"no continue-as-new happened: {lengths}"
    assert status.events[0].kind == "started", status.events[0]
    assert [e.kind for e in status.events].count("started") == 1
    assert [e.kind for e in status.events].count("approved") == 1


def test_a_week_long_gameday_completes_with_bounded_history(aws, runner):
    health = HealthServer()
    before = acl_snapshot()

    async def scenario() -> tuple[GameDayStatus, list[int], str]:
        async with time_skipping() as env:
            queue = "week-long"
            async with workers(env.client, queue):
                handle = await start(env.client, _week_runbook(health), queue, **SETTINGS)
                await approve_when_asked(handle)
                closing = asyncio.create_task(final(handle))
                try:
                    halfway = await _follow(env, closing, handle.id, lambda runs: len(runs) >= 3)
                    status = await handle.query(GameDayWorkflow.status)
                    _one_gameday_across_runs(status, halfway)
                    assert sorted(status.active_faults) == sorted(f"blackhole-{z}" for z in ZONES)
                    closed, lengths = await _closed(env, closing, handle.id)
                finally:
                    closing.cancel()
                return closed, lengths, handle.id

    try:
        closed, lengths, workflow_id = runner.run(scenario(), timeout=900)
    except (OverTheLimit, Stalled) as over:
        pytest.fail(str(over), pytrace=False)
    finally:
        health.stop()
    assert (closed.outcome, closed.restored, closed.hypothesis_held) == ("completed", True, True), \
        closed.reason
    assert acl_snapshot() == before
    assert max(lengths) < WARNING_EVENTS and len(lengths) > 1, lengths
    print(f"week: {len(lengths)} runs, {sum(lengths)} events in all, the longest run "
          f"{max(lengths)} events")
    _one_gameday_across_runs(closed, lengths)

    report = build_report(workflow_id, closed)
    assert report.duration_seconds >= timedelta(hours=167).total_seconds()
    assert report.events[0].at == report.started_at
    for step in report.steps:
        assert step.state == "restored" and step.start is not None and step.end is not None
        assert step.end - step.start >= timedelta(hours=167), step
    assert report.probe_checks, "the report shows no probe checks"
    assert report.probe_checks[-1].at - report.started_at >= timedelta(hours=166)


def test_an_abort_after_several_continue_as_news_restores_exactly(aws, runner):
    seed = random.randrange(1_000_000)
    print(f"abort seed {seed}")
    rng = random.Random(seed)
    health = HealthServer()
    expected = acl_snapshot()

    async def scenario() -> tuple[GameDayStatus, list[int], str]:
        async with time_skipping() as env:
            queue = "week-long-abort"
            async with workers(env.client, queue):
                handle = await start(env.client, _week_runbook(health), queue, **SETTINGS)
                await approve_when_asked(handle)
                closing = asyncio.create_task(final(handle))
                try:
                    await _follow(env, closing, handle.id, lambda runs: len(runs) >= 2)
                    subnet, default_acl = _add_subnet(aws["vpcs"]["shop"])
                    expected["associations"][subnet] = default_acl
                    runs_before_abort = rng.randint(3, 4)  # after two or three hand-overs
                    await _follow(env, closing, handle.id,
                                  lambda runs: len(runs) >= runs_before_abort)
                    await asyncio.wait([closing], timeout=rng.uniform(0, 2))  # a random moment
                    live = await handle.query(GameDayWorkflow.status)
                    assert any(e.kind == "drift" and "drifted-in" in e.detail for e in live.events), \
                        "drift never brought the new subnet under the fault"
                    await handle.signal(GameDayWorkflow.abort, Abort(by="ic@example.com",
                                                                     reason=f"abort at seed {seed}"))
                    closed, lengths = await _closed(env, closing, handle.id)
                finally:
                    closing.cancel()
                return closed, lengths, handle.id

    try:
        closed, lengths, workflow_id = runner.run(scenario(), timeout=900)
    except (OverTheLimit, Stalled) as over:
        pytest.fail(f"{over} (seed {seed})", pytrace=False)
    finally:
        health.stop()
    assert (closed.outcome, closed.restored) == ("aborted", True), (seed, closed.reason)
    assert acl_snapshot() == expected, seed
    assert len(lengths) >= 3 and max(lengths) < WARNING_EVENTS, (seed, lengths)
    _one_gameday_across_runs(closed, lengths)
    assert all(step.state == "restored" for step in closed.steps), closed.steps
    report = build_report(workflow_id, closed)
    assert report.abort is not None and report.outcome == "aborted"
