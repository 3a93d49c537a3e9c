"""Fixtures of the fault runs: the three clouds, worker subprocesses, and a Temporal dev server of
their own that a run may kill and start again."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from gameday.codec import DATA_CONVERTER
from gameday.lab.services import free_port
from tests.faults.generated import GENERATED, generated_tally
from tests.faults.harness import TALLY, Clouds, Orchestrator, RestartableTemporal, WorkerProcess, tally_line
from tests.support.clouds import CLOUD_LABS
from tests.support.runner import AsyncRunner
from tests.support.servers import Servers


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if GENERATED:
        terminalreporter.section("generated runbooks")
        for generated in GENERATED:
            terminalreporter.write_line(generated.summary())
            for line in generated.problems + generated.double_counted + generated.leaks[:20]:
                terminalreporter.write_line(f"    {line}")
        for line in generated_tally(GENERATED):
            terminalreporter.write_line(line)
    if not TALLY:
        return
    terminalreporter.section("fault runs")
    for record in TALLY:
        terminalreporter.write_line(record.summary())
        for line in record.problems + record.leaks[:20]:
            terminalreporter.write_line(f"    {line}")
    seconds = sum(r.seconds for r in TALLY)
    slowest = max(TALLY, key=lambda r: r.seconds)
    terminalreporter.write_line(f"runs took {seconds:.0f}s in all; the slowest {slowest.plan.name} "
                                f"{slowest.seconds:.1f}s")
    terminalreporter.write_line(tally_line(TALLY))


@pytest.fixture(scope="session")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def clouds(servers: Servers) -> Iterator[Clouds]:
    """A zone in each of the three clouds, seeded once; a run that leaks reseeds them."""
    seeded = Clouds([CLOUD_LABS[name](servers) for name in ("aws", "gcp", "azure")])
    seeded.seed()
    yield seeded
    seeded.clear_faults()


def _worker_env(servers: Servers) -> dict[str, str]:
    return {**os.environ, **servers.env}


@pytest.fixture(scope="session")
def orchestrator(servers: Servers, client: Client, fault_dir: Path) -> Iterator[Orchestrator]:
    """A worker subprocess on the session's Temporal server; a run that kills it starts another."""
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(servers.env["TEMPORAL_ADDRESS"], queue, _worker_env(servers),
                           fault_dir / "worker.log").start()
    yield Orchestrator(client, worker)
    worker.stop()


async def _connect_when_healthy(address: str) -> Client:
    """The dev server opens its port before its frontend is healthy: connect again for up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await Client.connect(address, namespace="default", data_converter=DATA_CONVERTER)
        except RuntimeError as error:
            if "not healthy" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.fixture(scope="session")
def restartable_orchestrator(servers: Servers, runner: AsyncRunner,
                             fault_dir: Path) -> Iterator[Orchestrator]:
    """A persistent dev server of its own (not the session's) and a worker subprocess on it."""
    temporal = RestartableTemporal(fault_dir / "temporal", free_port()).start()
    try:
        own_client = runner.run(_connect_when_healthy(temporal.address))
        worker = WorkerProcess(temporal.address, f"faults-{uuid.uuid4().hex[:8]}",
                               _worker_env(servers), fault_dir / "worker-restartable.log").start()
        yield Orchestrator(own_client, worker, temporal)
        worker.stop()
    finally:
        temporal.stop()
