"""Commands that confirm what they say (contract §9): `run` waits until the run has planned,
`approve`/`reject`/`abort` exit 0 only when the workflow recorded them, against the dev server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.worker import Worker

from gameday.lab.aws import acl_snapshot
from gameday.status import GameDayStatus

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
RUNBOOK = """\
name: cli-confirm
approvers: [ic@example.com]
approval_timeout: 2m
max_duration: 10m
guardrails: {{aws_accounts: ["{account}"]}}
steps:
  - id: blackhole-use1a
    action: blackhole_zone
    target: {{cloud: aws, account: "{account}", region: us-east-1, zone: {zone},
             tags: {{gameday: enabled}}}}
    duration: 5m
"""


def _runbook(tmp_path: Path, zone: str = "us-east-1a") -> str:
    path = tmp_path / f"runbook-{zone}.yaml"
    path.write_text(RUNBOOK.format(account=ACCOUNT, zone=zone))
    return str(path)


def _gameday(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def served(servers, task_queue, tmp_path) -> dict[str, str]:
    """The CLI's environment, pointed at a task queue that a worker serves."""
    return {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": task_queue,
            "XDG_STATE_HOME": str(tmp_path / "state")}


@pytest.fixture
def unserved(servers, client, runner, tmp_path):
    """The CLI's environment, pointed at a task queue no worker polls; every GameDay started on
    it is terminated at the end (nothing was ever planned or injected)."""
    queue = f"idle-{uuid.uuid4().hex[:10]}"
    yield {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": queue,
           "XDG_STATE_HOME": str(tmp_path / "state")}

    async def terminate() -> None:
        query = f'TaskQueue="{queue}" AND ExecutionStatus="Running"'
        async for execution in client.list_workflows(query):
            await client.get_workflow_handle(execution.id).terminate(reason="test over")

    runner.run(terminate())


def _status(env: dict[str, str], run_id: str) -> dict[str, Any]:
    done = _gameday(env, "status", run_id, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_run_exits_0_with_the_id_once_the_run_awaits_approval(served, aws, tmp_path):
    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    started = _gameday(served, "run", _runbook(tmp_path), "--id", run_id)
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"{run_id}\n"
    assert f"awaiting approval: gameday approve {run_id} --as <approver>" in started.stderr
    # no polling needed: the command returned only once the plan existed
    status = _status(served, run_id)
    assert status["phase"] == "awaiting_approval" and status["plan_hash"].startswith("sha256:")
    assert _gameday(served, "abort", run_id, "--as", "ic@example.com", "--reason", "done").returncode == 0


def test_run_exits_1_with_the_planning_failure(served, aws, tmp_path):
    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    done = _gameday(served, "run", _runbook(tmp_path, zone="us-east-1q"), "--id", run_id)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"gameday: GameDay {run_id} failed while planning: ")
    assert "us-east-1q" in line and line.count("step blackhole-use1a:") == 1
    closed = _status(served, run_id)  # closed as Failed in Temporal, its status still readable
    assert (closed["phase"], closed["outcome"], closed["restored"]) == ("failed", "failed", True)


def test_run_exits_1_naming_what_to_check_when_no_worker_answers(unserved, servers, tmp_path):
    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    done = _gameday(unserved, "run", _runbook(tmp_path), "--id", run_id, "--timeout", "3")
    assert done.returncode == 1
    assert time.monotonic() - started < 30
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    queue = unserved["GAMEDAY_TASK_QUEUE"]
    assert line.startswith(f"gameday: no gameday worker answered GameDay {run_id} within 3s on task "
                           f"queue {queue} (no worker polls it)")
    assert "`gameday worker`" in line and f"TEMPORAL_ADDRESS={servers.env['TEMPORAL_ADDRESS']}" in line


@workflow.defn(name="GameDayWorkflow", sandboxed=False)
class BuggyGameDay:
    """A worker whose GameDay code has a bug that is not a Temporal failure (defect 4 was a date
    overflow): Temporal retries the workflow task forever and the run never leaves planning."""

    @workflow.run
    async def run(self, input: Any) -> None:
        raise RuntimeError("year 10000 is out of range\nTraceback: the rest is for the log")


def test_run_exits_1_when_the_workflow_task_keeps_failing(client, runner, servers, tmp_path):
    queue = f"buggy-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": queue,
           "XDG_STATE_HOME": str(tmp_path / "state")}
    buggy = runner.run(_serve(Worker(client, task_queue=queue, workflows=[BuggyGameDay])))
    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    try:
        done = _gameday(env, "run", _runbook(tmp_path), "--id", run_id, "--timeout", "30")
    finally:
        runner.run(buggy.shutdown())
        runner.run(_terminate(client, run_id))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"gameday: GameDay {run_id} cannot plan: its workflow task has failed ")
    assert "(year 10000 is out of range)" in line
    assert f"temporal workflow terminate --workflow-id {run_id}" in line


async def _terminate(client: Any, run_id: str) -> None:
    from temporalio.service import RPCError

    try:
        await client.get_workflow_handle(run_id).terminate(reason="test over")
    except RPCError:
        pass  # never started, or already closed


async def _serve(worker: Worker) -> Worker:
    asyncio.ensure_future(worker.run())
    return worker


def test_approve_and_abort_confirmed_by_the_workflow(served, aws, tmp_path):
    before = acl_snapshot()
    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    assert _gameday(served, "run", _runbook(tmp_path), "--id", run_id).returncode == 0

    refused = _gameday(served, "approve", run_id, "--as", "mallory@example.com")
    assert refused.returncode == 1
    assert refused.stderr == ("gameday: approval refused: mallory@example.com is not an approver "
                              "of this runbook\n")
    approved = _gameday(served, "approve", run_id, "--as", "  IC@Example.com ")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith("ic@example.com approved start (1/1)")
    again = _gameday(served, "approve", run_id, "--as", "ic@example.com")
    assert again.returncode == 1 and "approval refused: " in again.stderr

    aborted = _gameday(served, "abort", run_id, "--as", "IC@example.com", "--reason", "drill over",
                       "--wait")
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.startswith(f"abort recorded for {run_id}: ic@example.com: drill over")
    assert "outcome: aborted; every fault restored: True" in aborted.stdout
    assert acl_snapshot() == before
    late = _gameday(served, "reject", run_id, "--as", "ic@example.com")
    assert late.returncode == 1 and "has ended" in late.stderr


@pytest.mark.parametrize("command", [
    ["approve", "--as", "ic@example.com"],
    ["reject", "--as", "ic@example.com", "--reason", "no"],
    ["abort", "--as", "ic@example.com", "--reason", "stop"],
])
def test_no_worker_no_confirmation(unserved, client, runner, tmp_path, command):
    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    queue = unserved["GAMEDAY_TASK_QUEUE"]
    runner.run(_start_on(client, _runbook(tmp_path), run_id, queue))
    done = _gameday(unserved, command[0], run_id, *command[1:], "--timeout", "2")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("gameday: no worker confirmed the ")
    assert f"of GameDay {run_id} within 2s; the run may still act on it" in line


async def _start_on(client: Any, path: str, run_id: str, queue: str) -> None:
    """Start a GameDay as `gameday run` does, on `queue`."""
    from gameday.config import Settings
    from gameday.loader import load_runbook
    from gameday.operations import WORKFLOW, start_options
    from gameday.status import GameDayInput

    book = load_runbook(Path(path))
    await client.start_workflow(WORKFLOW, GameDayInput(runbook=book, source=path, started_by="pytest"),
                                id=run_id, **start_options(book, Settings(task_queue=queue,
                                                                          namespace="default")))


def test_abort_all_measures_from_the_send(unserved, client, runner, tmp_path, aws):
    """Runs whose worker is away for 3 s: each one's figure includes the wait for the worker."""
    from gameday import operations
    from worker import build_workers

    queue = unserved["GAMEDAY_TASK_QUEUE"]
    ids = [f"confirm-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for run_id in ids:
        runner.run(_start_on(client, _runbook(tmp_path), run_id, queue))

    async def listed() -> None:
        """Both runs in Temporal's listing first (it can lag a start): abort --all then sends
        both aborts at once, before the worker is back, so both figures include its wait."""
        deadline = time.monotonic() + 30
        while not set(ids) <= set(await operations.running_gamedays(client)):
            assert time.monotonic() < deadline, "the runs never appeared in the listing"
            await asyncio.sleep(0.2)

    runner.run(listed())
    reports: dict[str, float | None] = {}
    executor = ThreadPoolExecutor(max_workers=48)

    async def scenario() -> list[GameDayStatus]:
        async def late_worker() -> list[Any]:
            await asyncio.sleep(3)
            workers = build_workers(client, queue, executor)
            for worker in workers:
                asyncio.ensure_future(worker.run())
            return workers

        later = asyncio.ensure_future(late_worker())
        finals = await operations.abort_all(
            client, "ic@example.com", "kill switch drill",
            lambda run, final, seconds: reports.__setitem__(run, seconds), timeout=60,
            on_error=lambda run, sentence: reports.__setitem__(run, sentence))
        await asyncio.gather(*(worker.shutdown() for worker in await later))
        return finals

    try:
        finals = runner.run(scenario(), timeout=120)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    ours = {run_id: reports.get(run_id, "not listed") for run_id in ids}
    assert all(isinstance(seconds, float) and 3 <= seconds < 60 for seconds in ours.values()), ours
    assert {f.outcome for f in finals} >= {"aborted"}


def test_plan_says_a_cloud_refusal_once_in_one_sentence(served, aws, tmp_path):
    done = _gameday(served, "plan", _runbook(tmp_path, zone="us-east-1q"))
    assert done.returncode == 1
    (refusal,) = [line for line in done.stdout.splitlines() if line.startswith("refused:")]
    assert refusal.startswith("refused: step blackhole-use1a: zone us-east-1q ")
    assert refusal.count("step blackhole-use1a:") == 1


def test_ctrl_c_on_run_wait_says_the_run_goes_on(served, aws, tmp_path):
    import signal

    run_id = f"confirm-{uuid.uuid4().hex[:8]}"
    following = subprocess.Popen(
        [sys.executable, "-m", "gameday.cli", "run", _runbook(tmp_path), "--id", run_id, "--wait"],
        env={**served, "PYTHONFAULTHANDLER": "1"}, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert following.stdout is not None
    assert following.stdout.readline() == f"{run_id}\n"  # printed once it awaits approval
    following.send_signal(signal.SIGINT)
    try:
        out, err = following.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        following.send_signal(signal.SIGABRT)  # faulthandler prints where every thread waits
        out, err = following.communicate(timeout=30)
        raise AssertionError(f"gameday run --wait went on for 60 s after Ctrl-C:\n{err}") from None
    assert following.returncode == 130
    assert (f"gameday: stopped following {run_id}; the GameDay goes on (abort it with: gameday abort "
            f"{run_id} --as <you> --reason '<why>')") in err
    assert "Traceback" not in err
    assert _status(served, run_id)["phase"] == "awaiting_approval"
    assert _gameday(served, "abort", run_id, "--as", "ic@example.com", "--reason", "x").returncode == 0
