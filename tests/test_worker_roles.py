"""The worker split by role: each process imports only its own cloud's SDK, and a GameDay over all
three clouds runs end to end on `gameday worker --split` (one process per role)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clouds import CLOUD_LABS
from tests.support.gameday import approve, phase_is, runbook, start, wait_for
from worker import ALL_ROLES, ROLES, parse_roles

ROOT = Path(__file__).resolve().parent.parent
SDKS = {
    "aws": ("boto3", "botocore"),
    "gcp": ("google.cloud.compute_v1", "google.api_core"),
    "azure": ("azure.mgmt.network", "azure.mgmt.compute", "azure.mgmt.trafficmanager"),
}
BUILD = """
import asyncio, json, os, sys
from concurrent.futures import ThreadPoolExecutor

import worker
from gameday.connection import connect
from gameday.telemetry import setup_tracing


async def build():
    setup_tracing("gameday-worker")
    worker.build_workers(await connect(), "roles-isolation", ThreadPoolExecutor(96), sys.argv[1:])

asyncio.run(build())
sys.stdout.write(json.dumps(sorted(sys.modules)))
sys.stdout.flush()
os._exit(0)
"""
READY = re.compile(r"gameday worker on task queue .* \(roles ([a-z, ]+)\)")
SUPERVISED = re.compile(r"supervising the workers (.*)")


def test_roles_are_parsed_in_canonical_order_and_checked():
    assert parse_roles(None) == ALL_ROLES == ("workflows", "aws", "gcp", "azure")
    assert parse_roles(["azure", "workflows", "azure"]) == ("workflows", "azure")
    from gameday.errors import UserError

    with pytest.raises(UserError, match="unknown worker role 'lambda'; the roles are workflows, aws"):
        parse_roles(["lambda"])


@pytest.mark.parametrize("role", ROLES)
def test_a_role_imports_only_its_own_cloud_sdk(role, servers):
    """Built in a fresh interpreter, as `gameday worker --role ROLE` builds it."""
    done = subprocess.run([sys.executable, "-c", BUILD, role], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **servers.env})
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout))
    for cloud, sdk in SDKS.items():
        loaded = sorted(name for name in sdk if name in modules)
        if cloud == role:
            assert loaded == sorted(sdk), f"the {role} worker did not load its SDK"
        else:
            assert not loaded, f"the {role} worker imported {loaded}"
    assert ("workflows.gameday" in modules) == (role == "workflows")


# --- the split worker, end to end ------------------------------------------------------------


class Split:
    """`gameday worker --split` in a session of its own, its output (and its children's) in a file."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gameday.cli", "worker", "--split"], env=env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> dict[str, int]:
        """Until every role logged readiness; returns each role's child pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            ready = {role for found in READY.findall(text) for role in found.split(", ")}
            if ready >= set(ROLES):
                pids = re.findall(r"(\w+) \(pid (\d+)\)", SUPERVISED.search(text).group(1))
                return {role: int(pid) for role, pid in pids}
            assert self.process.poll() is None, f"the supervisor exited:\n{text}"
            time.sleep(0.2)
        raise AssertionError(f"not every role became ready:\n{self.output()}")

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def split_env(servers) -> dict[str, str]:
    return {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": f"split-{uuid.uuid4().hex[:8]}"}


@pytest.fixture
def split(split_env, tmp_path) -> Iterator[Split]:
    started = Split(split_env, tmp_path / "split.log")
    yield started
    started.kill()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_gameday_over_three_clouds_runs_on_one_worker_process_per_role(
        split, split_env, servers, client, runner):
    labs = [CLOUD_LABS[name](servers) for name in ("aws", "gcp", "azure")]
    for lab in labs:
        lab.seed()
    before = [lab.snapshot() for lab in labs]
    children = split.wait_ready()
    assert set(children) == set(ROLES)

    async def gameday():
        book = runbook({"parallel": [lab.zone_step(f"{lab.cloud}-zone", "3s") for lab in labs]})
        handle = await start(client, book, split_env["GAMEDAY_TASK_QUEUE"])
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        return await handle.result()

    result = runner.run(gameday(), timeout=180)
    assert (result.outcome, result.restored) == ("completed", True), result
    assert {step.id: step.resources > 0 for step in result.steps} == {
        "aws-zone": True, "gcp-zone": True, "azure-zone": True}
    assert [lab.snapshot() for lab in labs] == before

    split.process.send_signal(signal.SIGTERM)
    assert split.wait() == 0, split.output()
    assert all(_gone(pid) for pid in children.values())
    stopped = re.findall(r"\[(\w+)\]: stopping the worker$", split.output(), re.MULTILINE)
    assert sorted(stopped) == sorted(ROLES), split.output()


def test_a_dead_worker_stops_the_others_and_fails_the_supervisor(split):
    children = split.wait_ready()
    os.kill(children["aws"], signal.SIGKILL)
    assert split.wait() == 1, split.output()
    assert (f"the aws worker (pid {children['aws']}) exited with code -9, so the other workers "
            "were stopped") in split.output()
    assert all(_gone(pid) for pid in children.values())
