"""Session fixtures: real servers on loopback, a client, and a worker per test on its own queue."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# Imported (and so rewritten by pytest) here, before any test starts threads: CPython 3.11 can fail
# an `ast.parse` with a spurious "AST constructor recursion depth mismatch" while other threads run
# (cpython#106905), and `st.from_regex` would otherwise import this module in the middle of a test.
import hypothesis.strategies._internal.regex  # noqa: F401
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from gameday.connection import connect
from gameday.telemetry import setup_tracing
from tests.support.runner import AsyncRunner
from tests.support.servers import Servers

SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()


LONGEST_FIRST = ("tests/test_week_long.py", "tests/test_ui.py")
"""Started first, so that no pytest worker begins one of these minutes-long tests at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._gameday_exit = int(exitstatus)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    """The Temporal SDK may abort the interpreter at exit (sdk-python#300): exit with pytest's own
    status first, so a run whose tests all passed reports so. An xdist worker exits the normal way
    (it must hand its last reports to the controller); the controller's status is what counts."""
    status = getattr(config, "_gameday_exit", None)
    if status is not None and not hasattr(config, "workerinput"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    started = Servers.start()
    started.apply_env()
    setup_tracing("gameday-tests", SimpleSpanProcessor(SPANS), METRICS)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def runner() -> Iterator[AsyncRunner]:
    async_runner = AsyncRunner()
    yield async_runner
    async_runner.close()


@pytest.fixture(scope="session")
def client(servers: Servers, runner: AsyncRunner) -> Client:
    return runner.run(connect())


@pytest.fixture
def aws(servers: Servers) -> Iterator[dict[str, Any]]:
    """A fresh seeded AWS topology in moto for each test."""
    from gameday.lab.aws import seed_aws

    servers.reset_aws()
    yield seed_aws()
    servers.aws_faults()


@pytest.fixture
def task_queue(client: Client, runner: AsyncRunner) -> Iterator[str]:
    """Workers on task queues of this test's own, stopped when the test ends."""
    from worker import build_workers

    queue = f"test-{uuid.uuid4().hex[:10]}"
    executor = ThreadPoolExecutor(max_workers=48)

    async def start() -> list[Any]:
        import asyncio

        workers = build_workers(client, queue, executor)
        for worker in workers:
            asyncio.ensure_future(worker.run())
        return workers

    workers = runner.run(start())
    yield queue

    async def stop() -> None:
        import asyncio

        await asyncio.gather(*(worker.shutdown() for worker in workers))

    runner.run(stop(), timeout=60)
    executor.shutdown(wait=False, cancel_futures=True)
