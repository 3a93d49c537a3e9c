"""`gameday lab up` seeds a second AWS account (its target role and shop), says so, and a runbook
over both accounts plans, runs to completion and leaves nothing for the sweep, on the laptop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gameday.lab.aws.accounts import SECOND_ACCOUNT

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = "runbooks/lab/aws-two-account-zone-blackhole.yaml"


def _gameday(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gameday.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _closed(env: dict[str, str], run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(_gameday(env, "status", run_id, "--json").stdout)
        if shown.get("outcome"):
            return shown
        time.sleep(1)
    raise AssertionError(f"{run_id} did not close within {timeout:.0f}s")


def test_the_lab_runs_a_gameday_over_two_accounts(tmp_path: Path) -> None:
    from gameday.lab.manager import Lab

    lab = Lab(tmp_path / "lab", fixed_ports=False)
    try:
        lab.up(seed=True)
        status = lab.status()
        env = {**os.environ, **status["env"], "GAMEDAY_LAB_DIR": str(tmp_path / "lab")}
        assert status["env"]["GAMEDAY_SWEEP_AWS_ACCOUNTS"] == SECOND_ACCOUNT
        assert f"{SECOND_ACCOUNT} (as role gameday-target)" in status["aws_accounts"]
        exported = _gameday(env, "lab", "env").stdout.splitlines()
        assert f"export GAMEDAY_SWEEP_AWS_ACCOUNTS={SECOND_ACCOUNT}" in exported
        topology = json.loads((tmp_path / "lab" / "topology.json").read_text())
        second = topology["aws"]["target_accounts"][SECOND_ACCOUNT]

        planned = _gameday(env, "plan", RUNBOOK, "--json")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        steps = {s["step_id"]: s for s in json.loads(planned.stdout)["steps"]}
        there = steps["blackhole-second-use1a"]
        assert there["scope"]["account"] == SECOND_ACCOUNT
        assert second["subnets"]["us-east-1a"][0] in json.dumps(there["resources"])

        started = _gameday(env, "run", RUNBOOK)
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        approved = _gameday(env, "approve", run_id, "--as", "ic@example.com")
        assert approved.returncode == 0, approved.stderr
        result = _closed(env, run_id)
        assert (result["outcome"], result["restored"]) == ("completed", True), result

        swept = _gameday(env, "sweep", "--cloud", "aws")
        assert swept.returncode == 0, swept.stdout + swept.stderr
        assert "no gameday artifacts left behind" in swept.stdout
    finally:
        lab.down()
