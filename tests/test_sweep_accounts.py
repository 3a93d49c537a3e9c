"""The sweep over many AWS accounts: one whose role cannot be assumed is one error of the sweep,
named in one sentence, and every other account is still swept and restored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from activities.registry import CloudActivities
from gameday import operations
from gameday.lab.aws import acl_snapshot
from gameday.lab.aws.accounts import SECOND_ACCOUNT, account_ec2, seed_target_account
from gameday.sweep import SweepScope
from tests.support.gameday import ACCOUNT, apply_without_temporal, aws_zone_step, runbook

ROOT = Path(__file__).resolve().parent.parent
NO_ROLE = "333333333333"
"""An account with no `gameday-target` role."""
REFUSAL = (f"aws: the worker cannot assume role arn:aws:iam::{NO_ROLE}:role/gameday-target in "
           f"account {NO_ROLE} (AccessDenied)")


@pytest.fixture
def second(aws: dict[str, Any]) -> dict[str, Any]:
    return seed_target_account()


@pytest.fixture
def sweep_env(monkeypatch, servers, task_queue) -> dict[str, str]:
    """The in-process worker sweeps its own account, the second, and one it cannot enter."""
    monkeypatch.setenv("GAMEDAY_SWEEP_AWS_REGIONS", "us-east-1")
    monkeypatch.setenv("GAMEDAY_SWEEP_AWS_ACCOUNTS", f"{SECOND_ACCOUNT},{NO_ROLE}")
    monkeypatch.setenv("GAMEDAY_TASK_QUEUE", task_queue)
    return {**os.environ, **servers.env}


def _snapshots() -> tuple[dict[str, Any], dict[str, Any]]:
    return acl_snapshot(), acl_snapshot(ec2=account_ec2(SECOND_ACCOUNT))


def _leave_behind(account: str, run_id: str = "dead-run") -> None:
    """A blackhole applied in `account` by a run Temporal never heard of (so: over)."""
    activities = CloudActivities("aws")
    step = aws_zone_step(f"blackhole-{account}", duration="5m")
    step["target"]["account"] = account
    book = runbook(step, guardrails={"aws_accounts": [ACCOUNT, SECOND_ACCOUNT]})
    apply_without_temporal(activities, book, run_id)


def test_an_account_that_cannot_be_entered_does_not_stop_the_sweep_of_the_others(
        aws, second, client, runner, sweep_env):
    before = _snapshots()
    for account in (ACCOUNT, SECOND_ACCOUNT):
        _leave_behind(account)

    async def scenario() -> Any:
        return (await operations.sweep(client, restore=False),
                await operations.sweep(client, restore=True))

    listed, swept = runner.run(scenario(), timeout=180)
    assert listed.errors == [REFUSAL]
    assert sorted(x.account for x in listed.leftovers) == ["", "", SECOND_ACCOUNT]
    assert {x.run_id for x in listed.leftovers} == {"dead-run"}
    assert swept.errors == [REFUSAL]
    assert sorted(swept.restored) == sorted(x.id for x in listed.leftovers)
    assert _snapshots() == before


def test_gameday_sweep_names_the_refused_account_and_exits_1(aws, second, sweep_env):
    _leave_behind(SECOND_ACCOUNT)
    done = subprocess.run([sys.executable, "-m", "gameday.cli", "sweep", "--cloud", "aws"],
                          env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"gameday: sweep: {REFUSAL}" in done.stderr.splitlines()
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("aws us-east-1 network-acl")]
    assert "run dead-run" in line


def test_the_scope_is_cut_into_one_scope_per_account():
    scope = SweepScope(aws_regions=["us-east-1"], aws_accounts=["2", "3", "2"])
    own, *others = scope.by_aws_account()
    assert (own.aws_own_account, own.aws_accounts) == (True, [])
    assert [(s.aws_own_account, s.aws_accounts) for s in others] == [(False, ["2"]),
                                                                      (False, ["3"])]
    assert {s.aws_regions == ["us-east-1"] for s in (own, *others)} == {True}
