"""One GameDay over two AWS accounts: the worker's own and a second reached by AssumeRole (moto
keeps resources per account; the lab's proxy refuses a role that does not exist)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.aws.accounts import TargetAccounts, session_name, target_role
from activities.registry import CloudActivities
from activities.sweep_scope import sweep_scope_from_env
from activities.throttle import calling_as
from gameday.lab.aws import acl_snapshot
from gameday.lab.aws.accounts import SECOND_ACCOUNT, account_ec2, seed_target_account
from gameday.sweep import SweepScope
from tests.support.gameday import (
    ACCOUNT,
    abort,
    apply_without_temporal,
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.watchdog import WatchdogStatus

ROOT = Path(__file__).resolve().parent.parent
NO_ROLE = "333333333333"
"""An account with no `gameday-target` role."""


def _step(step_id: str, account: str) -> dict[str, Any]:
    step = aws_zone_step(step_id, duration="5m")
    step["target"]["account"] = account
    return step


def _book(*accounts: str) -> Any:
    steps = [_step(f"blackhole-{account}", account) for account in accounts]
    return runbook({"parallel": steps}, guardrails={"aws_accounts": list(accounts)})


def _snapshots() -> tuple[dict[str, Any], dict[str, Any]]:
    return acl_snapshot(), acl_snapshot(ec2=account_ec2(SECOND_ACCOUNT))


def _blackholed(snapshot: dict[str, Any], subnets: list[str]) -> bool:
    acls, held = snapshot["acls"], snapshot["associations"]
    return all(acls[held[s]]["tags"].get("gameday:run") for s in subnets)


@pytest.fixture
def second(aws: dict[str, Any]) -> dict[str, Any]:
    return seed_target_account()


@pytest.fixture
def activities(servers: Any) -> CloudActivities:
    """Of this test alone: a moto reset forgets the access keys AssumeRole handed out."""
    return CloudActivities("aws")


async def _both_active(client: Any, task_queue: str) -> Any:
    handle = await start(client, _book(ACCOUNT, SECOND_ACCOUNT), task_queue)
    await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
    await approve(handle)
    for account in (ACCOUNT, SECOND_ACCOUNT):
        await wait_for(handle, step_state(f"blackhole-{account}", "active"), what=account)
    return handle


def test_abort_over_two_accounts_restores_both_exactly(aws, second, client, runner, task_queue):
    before = _snapshots()

    async def scenario() -> Any:
        handle = await _both_active(client, task_queue)
        during = _snapshots()
        await abort(handle)
        return during, await final(handle)

    (own, other), result = runner.run(scenario())
    assert _blackholed(own, aws["subnets"]["us-east-1a"][:1])
    assert _blackholed(other, second["subnets"]["us-east-1a"][:1])
    ops = second["subnets"]["us-east-1a"][1]  # untagged: left alone
    assert other["associations"][ops] == before[1]["associations"][ops]
    assert (result.outcome, result.restored) == ("aborted", True)
    assert _snapshots() == before


def test_a_terminated_run_over_two_accounts_is_restored_by_its_watchdog(
        aws, second, client, runner, task_queue):
    before = _snapshots()

    async def scenario() -> Any:
        handle = await _both_active(client, task_queue)
        await handle.terminate(reason="operator pulled the plug")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        return await watchdog.result()

    status = runner.run(scenario(), timeout=120)
    assert "terminated" in status.fired and status.in_effect == []
    assert _snapshots() == before


def _applied(activities: CloudActivities, account: str, run_id: str) -> None:
    apply_without_temporal(activities, _book(account), run_id)


def test_the_sweeper_finds_and_undoes_a_leftover_in_each_account(aws, second, activities):
    before = _snapshots()
    for account in (ACCOUNT, SECOND_ACCOUNT):
        _applied(activities, account, run_id="dead-run")
    scope = SweepScope(aws_regions=["us-east-1"], aws_accounts=[SECOND_ACCOUNT])
    found = [f for f in activities.find_leftovers(scope) if f.kind == "network-acl"]
    assert {f.run_id for f in found} == {"dead-run"}
    assert sorted(f.account for f in found) == ["", "", SECOND_ACCOUNT]  # own: shop and batch
    [there] = [f for f in found if f.account == SECOND_ACCOUNT]
    assert there.detail["subnets_held"] == second["subnets"]["us-east-1a"][0]
    for leftover in found:
        activities.sweep_leftover(leftover)
    assert activities.find_leftovers(scope) == []
    assert _snapshots() == before


def test_the_session_name_is_the_run_id(aws, second, activities):
    _applied(activities, SECOND_ACCOUNT, run_id="run:42/with odd characters")
    with calling_as(run_id="run:42/with odd characters"):  # as the run's activities call
        sts = activities.connection.client("sts", "us-east-1", SECOND_ACCOUNT)
    arn = sts.get_caller_identity()["Arn"]
    assert arn == (f"arn:aws:sts::{SECOND_ACCOUNT}:assumed-role/gameday-target/"
                   "run-42-with-odd-characters")


def _gameday(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_an_account_whose_role_cannot_be_assumed_is_refused_in_one_sentence(
        aws, servers, task_queue, tmp_path):
    before = acl_snapshot()
    servers.aws_faults()  # clears the call log of the seed
    path = tmp_path / "runbook.yaml"
    path.write_text(json.dumps(_book(ACCOUNT, NO_ROLE).model_dump(mode="json", exclude_none=True)))
    env = {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": task_queue}
    sentence = (f"the worker cannot assume role arn:aws:iam::{NO_ROLE}:role/gameday-target in "
                f"account {NO_ROLE} (AccessDenied)")
    for command in ("plan", "run"):
        done = _gameday(command, str(path), env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert sentence in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert "SecretAccessKey" not in done.stdout + done.stderr
    assert acl_snapshot() == before
    mutations = [c["key"] for c in servers.aws_calls() if not c["key"].startswith(
        ("Describe", "Get", "List", "AssumeRole")) and c["status"] != 412]  # 412: a dry run
    assert mutations == []


def test_the_target_role_and_session_name_follow_sts_rules(monkeypatch):
    monkeypatch.delenv("GAMEDAY_AWS_TARGET_ROLE", raising=False)
    assert target_role("210987654321") == "arn:aws:iam::210987654321:role/gameday-target"
    monkeypatch.setenv("GAMEDAY_AWS_TARGET_ROLE", "ops/chaos")
    assert target_role("1") == "arn:aws:iam::1:role/ops/chaos"
    monkeypatch.setenv("GAMEDAY_AWS_TARGET_ROLE", "arn:aws-cn:iam::{account}:role/gd")
    assert target_role("1") == "arn:aws-cn:iam::1:role/gd"
    assert session_name("x" * 100) == "x" * 64
    assert session_name("a b/c:d") == "a-b-c-d"
    assert session_name("") == "gameday"


def test_credentials_about_to_expire_are_assumed_again():
    """botocore refreshes credentials within 10 minutes of expiry: each use then assumes again."""
    calls: list[dict[str, Any]] = []

    def assume(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"Credentials": {"AccessKeyId": f"AKIA{len(calls)}", "SecretAccessKey": "s",
                                "SessionToken": "t",
                                "Expiration": datetime.now(UTC) + timedelta(minutes=5)}}

    _, session = TargetAccounts(assume).session("210987654321", "run-1")
    first = session.get_credentials().get_frozen_credentials().access_key
    second = session.get_credentials().get_frozen_credentials().access_key
    assert (first, second) == ("AKIA2", "AKIA3")
    assert {c["RoleSessionName"] for c in calls} == {"run-1"}


def test_the_sweep_covers_the_listed_accounts(monkeypatch):
    monkeypatch.delenv("GAMEDAY_SWEEP_AWS_ACCOUNTS", raising=False)
    monkeypatch.setenv("GAMEDAY_ALLOWED_AWS_ACCOUNTS", "123456789012, 210987654321")
    assert sweep_scope_from_env().aws_accounts == ["123456789012", "210987654321"]
    monkeypatch.setenv("GAMEDAY_SWEEP_AWS_ACCOUNTS", "210987654321")
    assert sweep_scope_from_env().aws_accounts == ["210987654321"]
