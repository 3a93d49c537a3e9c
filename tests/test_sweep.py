"""The sweeper: artifacts of dead runs are found by their tags and undone from the tags alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gameday import operations
from gameday.lab.aws import acl_snapshot
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sweep_env(monkeypatch, servers, task_queue):
    """The in-process worker reads where to sweep from the environment, as a real one does."""
    monkeypatch.setenv("GAMEDAY_SWEEP_AWS_REGIONS", "us-east-1")
    monkeypatch.setenv("GAMEDAY_TASK_QUEUE", task_queue)
    return {**os.environ, **servers.env}


async def _leave_behind(client, task_queue, zone: str):
    """A run killed for good mid-fault: the GameDay and its dead man's switch both terminated."""
    handle = await start(client, runbook(aws_zone_step(step_id=f"cut-{zone}", zone=zone,
                                                       duration="10m")), task_queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state(f"cut-{zone}", "active"))
    await client.get_workflow_handle(f"{handle.id}-watchdog").terminate(reason="test")
    await handle.terminate(reason="test: leave the fault behind")
    return handle


def test_sweep_finds_and_restores_what_dead_runs_left(aws, client, runner, task_queue, sweep_env):
    before = acl_snapshot()

    async def scenario():
        dead = await _leave_behind(client, task_queue, "us-east-1a")
        alive = await start(client, runbook(aws_zone_step(step_id="alive", zone="us-east-1b",
                                                          duration="10m")), task_queue)
        await wait_for(alive, phase_is("awaiting_approval"))
        await approve(alive)
        await wait_for(alive, step_state("alive", "active"))
        listed = await operations.sweep(client, restore=False)
        swept = await operations.sweep(client, restore=True)
        after_sweep = acl_snapshot()
        await abort(alive)
        await alive.result()
        return dead.id, alive.id, listed, swept, after_sweep

    dead_id, alive_id, listed, swept, after_sweep = runner.run(scenario(), timeout=180)
    assert {x.run_id for x in listed.leftovers} == {dead_id}
    assert {x.run_state for x in listed.leftovers} == {"terminated"}
    assert len(listed.leftovers) == 2  # one gameday ACL per VPC
    assert {x.run_id for x in listed.in_use} == {alive_id}
    assert sorted(swept.restored) == sorted(x.id for x in listed.leftovers)
    assert swept.errors == []
    ours = {s: a for s, a in after_sweep["associations"].items() if s in before["associations"]}
    zone_a = [s for s in aws["subnets"]["us-east-1a"]]
    assert all(ours[s] == before["associations"][s] for s in zone_a)
    assert acl_snapshot() == before


def test_sweep_from_the_command_line(aws, client, runner, task_queue, sweep_env):
    before = acl_snapshot()
    runner.run(_leave_behind(client, task_queue, "us-east-1c"), timeout=120)

    def gameday(*args):
        return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=sweep_env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    listed = gameday("sweep")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("network-acl") == 2 and "(terminated)" in listed.stdout
    restored = gameday("sweep", "--restore")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.count("(restored)") == 2
    assert acl_snapshot() == before
    assert gameday("sweep").stdout.strip() == "no gameday artifacts left behind"


def test_a_scheduled_sweep_restores_on_its_own(aws, client, runner, task_queue, sweep_env):
    from datetime import timedelta

    before = acl_snapshot()

    async def scenario():
        await _leave_behind(client, task_queue, "us-east-1a")
        schedule_id = await operations.install_sweep_schedule(client, timedelta(seconds=2), True)
        try:
            import asyncio

            for _ in range(60):
                if acl_snapshot() == before:
                    return True
                await asyncio.sleep(0.5)
            return False
        finally:
            await client.get_schedule_handle(schedule_id).delete()

    assert runner.run(scenario(), timeout=120)


@pytest.fixture
def only_aws(monkeypatch, sweep_env, tmp_path):
    """A worker and a CLI that have AWS (moto) and nothing else: no GCP or Azure endpoint, no
    Application Default Credentials, no Azure login."""
    for name in ("GAMEDAY_GCP_ENDPOINT", "GAMEDAY_AZURE_ENDPOINT", "GAMEDAY_AZURE_CA_BUNDLE",
                 "GAMEDAY_SWEEP_GCP_PROJECTS", "GAMEDAY_ALLOWED_GCP_PROJECTS",
                 "GAMEDAY_SWEEP_AZURE_SUBSCRIPTIONS", "GAMEDAY_ALLOWED_AZURE_SUBSCRIPTIONS",
                 "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                 "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "empty"))
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "empty"))
    return dict(os.environ)


def test_a_user_of_one_cloud_sweeps_it_and_hears_which_were_skipped(aws, client, runner, task_queue,
                                                                   only_aws):
    before = acl_snapshot()
    runner.run(_leave_behind(client, task_queue, "us-east-1b"), timeout=120)

    def gameday(*args):
        return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=only_aws,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    listed = gameday("sweep")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("network-acl") == 2
    skipped = [line for line in listed.stderr.splitlines() if "skipped" in line]
    assert [line.split(":")[1:3] for line in skipped] == [[" sweep", " skipped gcp"],
                                                          [" sweep", " skipped azure"]]
    assert "GOOGLE_APPLICATION_CREDENTIALS names" in skipped[0]
    restored = gameday("sweep", "--restore", "--cloud", "aws")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.count("(restored)") == 2 and "skipped" not in restored.stderr
    assert acl_snapshot() == before
    asked = gameday("sweep", "--cloud", "gcp")  # asked for by name: tried, and its failure told
    assert asked.returncode == 1
    assert asked.stderr.startswith("gameday: sweep: gcp: ")
    assert len(asked.stderr.splitlines()) == 1
