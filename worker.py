"""Entry point: the gameday worker (`python worker.py` or `gameday worker`).

Registers the GameDay workflows and every cloud's activities on one task queue, with tracing.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities import all_activities
from activities.metrics import GameDayMetrics
from activities.runs import RunStateActivities
from gameday.config import Settings
from gameday.connection import connect, ensure_search_attributes
from gameday.errors import UserError
from gameday.telemetry import setup_tracing
from workflows import all_workflows

log = logging.getLogger("gameday.worker")


def build_worker(client: Client, task_queue: str, executor: ThreadPoolExecutor,
                 activities: list[Any] | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=all_workflows(),
        activities=[*(activities if activities is not None else all_activities()),
                    *RunStateActivities(client).all()],
        activity_executor=executor,
        max_concurrent_activities=executor._max_workers,
        interceptors=[GameDayMetrics()],
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        max_heartbeat_throttle_interval=timedelta(seconds=2),
    )


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
    with ThreadPoolExecutor(max_workers=64, thread_name_prefix="gameday-activity") as executor:
        worker = build_worker(client, settings.task_queue, executor)
        async with worker:
            log.info("gameday worker on task queue %s, namespace %s", settings.task_queue,
                     settings.namespace)
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
