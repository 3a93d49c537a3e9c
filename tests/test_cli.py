"""The command line as an incident commander uses it: real processes, real server, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gameday.lab.aws import acl_snapshot

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = """\
name: cli-gameday
approvers: [ic@example.com]
approval_timeout: 2m
max_duration: 10m
guardrails: {{aws_accounts: ["{account}"]}}
steps:
  - id: blackhole-use1a
    action: blackhole_zone
    target: {{cloud: aws, account: "{account}", region: us-east-1, zone: us-east-1a,
             tags: {{gameday: enabled}}}}
    duration: {duration}
"""


@pytest.fixture
def cli_env(servers, task_queue) -> dict[str, str]:
    return {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": task_queue}


@pytest.fixture
def cli(cli_env):
    env = cli_env

    def gameday(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    return gameday


def _runbook(tmp_path: Path, account: str = "123456789012", duration: str = "5m") -> str:
    path = tmp_path / "runbook.yaml"
    path.write_text(RUNBOOK.format(account=account, duration=duration))
    return str(path)


def _until(cli, run_id: str, predicate, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        done = cli("status", run_id, "--json")
        if "no GameDay with id" in done.stderr:  # a `run` in another process may not have started it yet
            time.sleep(0.3)
            continue
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        if predicate(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status {status}")


def test_validate_reports_each_problem_and_exits_1(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\napprovers: []\nsteps: 3\n")
    done = cli("validate", str(bad))
    assert done.returncode == 1
    lines = done.stdout.strip().splitlines()
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert any(":2: approvers:" in line for line in lines)
    assert "Traceback" not in done.stderr
    good = cli("validate", _runbook(tmp_path))
    assert good.returncode == 0, good.stdout + good.stderr


def test_schema_is_json(cli):
    done = cli("schema")
    assert done.returncode == 0
    assert json.loads(done.stdout)["title"] == "gameday runbook"


def test_plan_lists_every_subnet_and_is_read_only(cli, aws, tmp_path):
    before = acl_snapshot()
    done = cli("plan", _runbook(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    (step,) = plan["steps"]
    assert {r["kind"] for r in step["resources"]} == {"subnet"}
    assert len(step["resources"]) == 3
    assert plan["plan_hash"].startswith("sha256:")
    assert acl_snapshot() == before


def test_plan_and_run_refuse_a_target_outside_the_guardrails(cli, aws, tmp_path):
    path = tmp_path / "outside.yaml"
    path.write_text(RUNBOOK.format(account="123456789012", duration="5m")
                    .replace('aws_accounts: ["123456789012"]', 'aws_accounts: ["999999999999"]'))
    plan = cli("plan", str(path))
    assert plan.returncode == 1
    assert "not in the runbook's guardrails" in plan.stdout + plan.stderr  # validation may say so
    run = cli("run", str(path))
    assert run.returncode == 1
    assert run.stderr.startswith("gameday: ") and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_run_approve_abort_status_from_the_command_line(cli, aws, tmp_path):
    before = acl_snapshot()
    run_id = f"cli-{uuid.uuid4().hex[:8]}"
    started = cli("run", _runbook(tmp_path), "--id", run_id)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == run_id
    _until(cli, run_id, lambda s: s["phase"] == "awaiting_approval")

    refused = cli("approve", run_id, "--as", "mallory@example.com")
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("gameday: approval refused: mallory@example.com is not an "
                                      "approver of this runbook")
    wrong_plan = cli("approve", run_id, "--as", "ic@example.com", "--plan-hash", "sha256:0")
    assert wrong_plan.returncode == 1 and "does not match the plan" in wrong_plan.stderr

    status = json.loads(cli("status", run_id, "--json").stdout)
    approved = cli("approve", run_id, "--as", "ic@example.com", "--plan-hash", status["plan_hash"])
    assert approved.returncode == 0, approved.stderr
    active = _until(cli, run_id, lambda s: s["active_faults"] == ["blackhole-use1a"])
    assert active["phase"] == "running"
    assert active["steps"][0]["state"] == "active"

    aborted = cli("abort", run_id, "--as", "ic@example.com", "--reason", "drill over", "--wait")
    assert aborted.returncode == 0, aborted.stderr
    final = json.loads(cli("status", run_id, "--json").stdout)
    assert (final["outcome"], final["restored"], final["phase"]) == ("aborted", True, "aborted")
    assert [e["kind"] for e in final["events"]].count("approval_refused") == 2
    assert acl_snapshot() == before
    human = cli("status", run_id)
    assert "aborted" in human.stdout and human.returncode == 0

    again = cli("approve", run_id, "--as", "ic@example.com")
    assert again.returncode == 1 and "has ended" in again.stderr
    duplicate = cli("run", _runbook(tmp_path), "--id", run_id)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr


def test_run_wait_exits_0_only_for_a_completed_gameday(cli, cli_env, aws, tmp_path):
    run_id = f"cli-{uuid.uuid4().hex[:8]}"
    waiting = subprocess.Popen(
        [sys.executable, "-m", "gameday.cli", "run", _runbook(tmp_path, duration="1s"), "--id", run_id,
         "--wait"], env=cli_env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _until(cli, run_id, lambda s: s["phase"] == "awaiting_approval")
    assert cli("approve", run_id, "--as", "ic@example.com").returncode == 0
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, out + err
    assert out.splitlines()[0] == run_id
    assert "outcome: completed; hypothesis held: not tested; every fault restored: True" in out


def test_unknown_runs_and_unreachable_servers_are_one_sentence(cli, servers):
    done = cli("status", "no-such-run")
    assert done.returncode == 1
    assert done.stderr.strip() == "gameday: no GameDay with id no-such-run"
    env = {**os.environ, **servers.env, "TEMPORAL_ADDRESS": "127.0.0.1:9"}
    down = subprocess.run([sys.executable, "-m", "gameday.cli", "status", "x"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 1
    assert down.stderr == ("gameday: cannot reach Temporal at 127.0.0.1:9 (TEMPORAL_ADDRESS): "
                           "connection refused\n")


def test_plan_lists_every_record_backend_and_endpoint_an_evacuation_changes(cli, servers, tmp_path):
    from tests.support.clouds import CLOUD_LABS

    for name in ("aws", "gcp", "azure"):
        CLOUD_LABS[name](servers).seed()
    runbook = ROOT / "runbooks/lab/multicloud-region-evacuation.yaml"
    done = cli("plan", str(runbook), "--json")
    assert done.returncode == 0, done.stderr
    steps = {step["step_id"]: step for step in json.loads(done.stdout)["steps"]}
    kinds = {step_id: {r["kind"] for r in step["resources"]} for step_id, step in steps.items()}
    assert kinds["evacuate-aws-use1"] == {"record"}
    assert {r["name"] for r in steps["evacuate-aws-use1"]["resources"]} == {
        "www.shop.example.com.", "api.shop.example.com."}
    assert len(steps["evacuate-gcp-usc1"]["resources"]) == 2  # the two us-central1 backends of web
    assert len(steps["evacuate-azure-eastus"]["resources"]) == 1  # shop-tm's eastus endpoint
    assert all(steps[s]["resources"] for s in ("blackout-aws-use1", "blackout-gcp-usc1",
                                                "blackout-azure-eastus"))
