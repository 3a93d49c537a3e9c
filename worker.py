"""Entry point: the gameday worker (`python worker.py` or `gameday worker`).

Registers the GameDay workflows and every cloud's activities on one task queue, with tracing.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities import cloud_activities, general_activities
from activities.metrics import GameDayMetrics
from activities.runs import RunStateActivities
from gameday.config import Settings
from gameday.connection import connect, ensure_search_attributes
from gameday.errors import UserError
from gameday.telemetry import setup_tracing
from workflows import all_workflows

log = logging.getLogger("gameday.worker")


CLOUD_LIMITS = {
    # cloud: (concurrent activities per worker, activities per second across the queue)
    "aws": (16, 20.0),    # EC2 throttles per action and Region; one activity makes many calls
    "gcp": (16, 20.0),    # about 1,500 Compute Engine mutations per minute per project
    "azure": (8, 5.0),    # ARM writes: 200 burst, then 10 per second per subscription
}


def cloud_limits(cloud: str) -> tuple[int, float]:
    """A cloud's (concurrency, rate), overridable by GAMEDAY_<CLOUD>_MAX_CONCURRENT and
    GAMEDAY_<CLOUD>_ACTIVITIES_PER_SECOND."""
    concurrent, rate = CLOUD_LIMITS[cloud]
    prefix = f"GAMEDAY_{cloud.upper()}_"
    return (int(os.environ.get(f"{prefix}MAX_CONCURRENT") or concurrent),
            float(os.environ.get(f"{prefix}ACTIVITIES_PER_SECOND") or rate))


def build_workers(client: Client, task_queue: str, executor: ThreadPoolExecutor) -> list[Worker]:
    """The workflows and general activities on `task_queue`; each cloud's activities on
    `<task_queue>-<cloud>` with that cloud's limits."""
    common: dict[str, Any] = {
        "activity_executor": executor,
        "interceptors": [GameDayMetrics()],
        "default_heartbeat_throttle_interval": timedelta(seconds=1),
        "max_heartbeat_throttle_interval": timedelta(seconds=2),
    }
    workers = [Worker(client, task_queue=task_queue, workflows=all_workflows(),
                      activities=[*general_activities(), *RunStateActivities(client).all()],
                      **common)]
    for cloud, activities in cloud_activities().items():
        concurrent, rate = cloud_limits(cloud)
        workers.append(Worker(client, task_queue=f"{task_queue}-{cloud}", activities=activities,
                              max_concurrent_activities=concurrent,
                              max_task_queue_activities_per_second=rate, **common))
    return workers


async def run_worker() -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully: activities in flight are cancelled
    and their retries land on the other workers of the queue."""
    setup_tracing("gameday-worker")
    settings = Settings.from_env()
    client = await connect()
    added = await ensure_search_attributes(client)
    if added:
        log.info("registered search attributes %s", ", ".join(added))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with ThreadPoolExecutor(max_workers=96, thread_name_prefix="gameday-activity") as executor:
        workers = build_workers(client, settings.task_queue, executor)
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            log.info("gameday worker on task queue %s (clouds on %s-<cloud>), namespace %s",
                     settings.task_queue, settings.task_queue, settings.namespace)
            await stop.wait()
            log.info("stopping the worker")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = 0
    try:
        asyncio.run(run_worker())
    except UserError as exc:
        log.error("%s", exc)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the SDK can abort a finalizing interpreter (sdk-python#300)


if __name__ == "__main__":
    main()
