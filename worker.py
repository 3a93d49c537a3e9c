"""Entry point: the gameday worker (`python worker.py` or `gameday worker`).

A worker process serves one or more roles: `workflows` (the GameDay workflows and the activities
that touch no cloud, on the task queue) and one per cloud (that cloud's activities on
`<task queue>-<cloud>`, with its limits). By default one process serves them all; `--role` picks
some, and `--split` runs one process per role, so that each cloud's SDK is loaded, and its
credentials held, by one process only.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import CLOUDS, cloud_activities
from activities.metrics import GameDayMetrics
from gameday.config import WORKER_ROLES, Settings
from gameday.connection import connect, ensure_search_attributes
from gameday.errors import UserError
from gameday.telemetry import setup_tracing

log = logging.getLogger("gameday.worker")

ROLES = WORKER_ROLES
ALL_ROLES = ROLES

CLOUD_LIMITS = {
    # cloud: (concurrent activities per worker, activities per second across the queue)
    "aws": (16, 20.0),    # EC2 throttles per action and Region; one activity makes many calls
    "gcp": (16, 20.0),    # about 1,500 Compute Engine mutations per minute per project
    "azure": (8, 5.0),    # ARM writes: 200 burst, then 10 per second per subscription
}


STICKY_TIMEOUT = timedelta(seconds=2)
"""How long a workflow task waits for the worker that has its run cached before any worker of the
queue may take it (temporalio's default is 10 s). A worker that was SIGKILLed still looks cached
to the server: each of its runs' next tasks, an abort among them, waits this long for it."""

WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography"))
"""Signed approvals are verified inside the workflow: `cryptography`'s native module must be
imported once, outside the sandbox (re-importing it in a sandbox aborts the interpreter)."""


def cloud_limits(cloud: str) -> tuple[int, float]:
    """A cloud's (concurrency, rate), overridable by GAMEDAY_<CLOUD>_MAX_CONCURRENT and
    GAMEDAY_<CLOUD>_ACTIVITIES_PER_SECOND."""
    concurrent, rate = CLOUD_LIMITS[cloud]
    prefix = f"GAMEDAY_{cloud.upper()}_"
    return (int(os.environ.get(f"{prefix}MAX_CONCURRENT") or concurrent),
            float(os.environ.get(f"{prefix}ACTIVITIES_PER_SECOND") or rate))


def parse_roles(names: Iterable[str] | None) -> tuple[str, ...]:
    """The roles asked for, in canonical order; none given means all of them."""
    asked = list(names or ())
    unknown = [name for name in asked if name not in ROLES]
    if unknown:
        raise UserError(f"unknown worker role {unknown[0]!r}; the roles are {', '.join(ROLES)}")
    return tuple(role for role in ROLES if role in asked) if asked else ALL_ROLES


def task_queues(task_queue: str, roles: Sequence[str]) -> list[str]:
    """The task queues a process serving `roles` polls."""
    return [task_queue if role == "workflows" else f"{task_queue}-{role}" for role in roles]


def build_workers(client: Client, task_queue: str, executor: ThreadPoolExecutor,
                  roles: Sequence[str] = ALL_ROLES) -> list[Worker]:
    """For `workflows`, the workflows and general activities on `task_queue`; for each cloud
    role, that cloud's activities on `<task_queue>-<cloud>` with that cloud's limits. Only the
    SDKs of the clouds served are imported."""
    common: dict[str, Any] = {
        "activity_executor": executor,
        "interceptors": [GameDayMetrics()],
        "default_heartbeat_throttle_interval": timedelta(seconds=1),
        "max_heartbeat_throttle_interval": timedelta(seconds=2),
    }
    workers = []
    if "workflows" in roles:
        # A cloud-only process loads no workflow code.
        from workflows import all_workflows

        workers.append(Worker(client, task_queue=task_queue, workflows=all_workflows(),
                              activities=role_activities(client, "workflows"),
                              sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT,
                              workflow_runner=WORKFLOW_RUNNER, **common))
    for cloud in (r for r in roles if r in CLOUDS):
        concurrent, rate = cloud_limits(cloud)
        workers.append(Worker(client, task_queue=f"{task_queue}-{cloud}",
                              activities=role_activities(client, cloud),
                              max_concurrent_activities=concurrent,
                              max_task_queue_activities_per_second=rate, **common))
    return workers


def role_activities(client: Client, role: str) -> list[Any]:
    """The activities a role serves: for `workflows` the general ones and the run-state ones; for
    a cloud, the activities `activities.registry` generates from its faults (only that cloud's
    package, and so its SDK, is imported)."""
    if role == "workflows":
        from activities import general_activities
        from activities.runs import RunStateActivities

        return [*general_activities(), *RunStateActivities(client).all()]
    return cloud_activities([role])[role]


async def take_over_runs(client: Client, task_queue: str) -> int:
    """Send the next task of every workflow running on `task_queue` to the whole queue, so that
    none waits for a worker that died with its run cached (an abort sent now is handled by
    whichever worker is up, not after `STICKY_TIMEOUT`). A live worker that had one of them cached
    replays it once. Best effort: how many runs were taken over."""
    query = f'TaskQueue = "{task_queue}" AND ExecutionStatus = "Running"'
    taken = 0
    try:
        async for run in client.list_workflows(query):
            execution = WorkflowExecution(workflow_id=run.id, run_id=run.run_id)
            try:
                await client.workflow_service.reset_sticky_task_queue(ResetStickyTaskQueueRequest(
                    namespace=client.namespace, execution=execution))
                taken += 1
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:  # NOT_FOUND: it closed meanwhile
                    raise
    except RPCError as error:
        log.warning("could not take over the running workflows of %s: %s", task_queue, error)
    return taken


async def run_worker(roles: Sequence[str] = ALL_ROLES) -> None:
    """Serve `roles` until SIGINT or SIGTERM, then shut down gracefully: activities in flight are
    cancelled and their retries land on the other workers of the queue."""
    setup_tracing("gameday-worker")
    settings = Settings.from_env()
    client = await connect()
    if "workflows" in roles:  # only the workflows write search attributes
        added = await ensure_search_attributes(client)
        if added:
            log.info("registered search attributes %s", ", ".join(added))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with ThreadPoolExecutor(max_workers=96, thread_name_prefix="gameday-activity") as executor:
        workers = build_workers(client, settings.task_queue, executor, roles)
        # Everything imported so far (the cloud SDKs: ~250,000 objects for GCP's) lives as long as
        # the process: keep it out of the collector, whose full passes took ~150 ms each, paused
        # a restore's first call by up to 400 ms under load.
        gc.freeze()
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            # gameday/lab/manager.py waits for this line
            log.info("gameday worker on task queue %s (roles %s), namespace %s",
                     ", ".join(task_queues(settings.task_queue, roles)), ", ".join(roles),
                     settings.namespace)
            if "workflows" in roles:
                taken = await take_over_runs(client, settings.task_queue)
                log.info("took over %d running workflows of %s", taken, settings.task_queue)
            await stop.wait()
            log.info("stopping the worker")


def serve(roles: Sequence[str] = ALL_ROLES, split: bool = False) -> None:
    """Serve `roles` in this process, or with `split` one child process per role; then exit
    (never returns)."""
    tag = "" if split or tuple(roles) == ALL_ROLES else f" [{'+'.join(roles)}]"
    logging.basicConfig(level=logging.INFO, force=True,
                        format=f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
    code = 0
    try:
        if split:
            from gameday.supervisor import supervise

            supervise(roles)
        else:
            asyncio.run(run_worker(roles))
    except UserError as exc:
        log.error("%s", exc)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the SDK can abort a finalizing interpreter (sdk-python#300)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python worker.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", action="append", choices=ROLES,
                        help="serve this role (repeatable); default: every role")
    parser.add_argument("--split", action="store_true",
                        help="one child process per role, supervised by this one")
    args = parser.parse_args(argv)
    serve(parse_roles(args.role), args.split)


if __name__ == "__main__":
    main()
