"""AWS `failover_database` against moto's RDS: what a real Aurora failover meets.

The scenario suite (tests/test_scenarios.py, `aws-failover_database`) proves exact restore after
success, abort, cancel, a refused apply, a throttled restore, guardrails and SIGKILL; these prove
the rest: clusters left alone or refused, `fail_back: false`, a busy cluster, the watchdog after
a terminate, the sweeper after both are gone.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest

from gameday import operations
from gameday.lab.aws.databases import database_snapshot
from gameday.lab.faults import FaultRule
from gameday.status import GameDayInput
from tests.support.gameday import (
    ACCOUNT,
    approve,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.gameday import GameDayWorkflow
from workflows.watchdog import WatchdogStatus

STEP = "db-use1a"


@pytest.fixture
def databases(servers):
    from gameday.lab.aws import seed_aws
    from gameday.lab.aws.databases import seed_databases

    servers.reset_aws()
    seed_aws()
    seed_databases()
    yield database_snapshot()
    servers.aws_faults()


def _step(*clusters: str, duration: str | None = "5m", **fields) -> dict:
    step = {"id": STEP, "action": "failover_database", **fields,
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                       "zone": "us-east-1a", "db_clusters": list(clusters)}}
    if duration:
        step["duration"] = duration
    return step


def _writers() -> dict[str, str]:
    return {name: c["writer"] for name, c in database_snapshot().items()}


def test_a_cluster_led_from_another_zone_is_left_alone_and_the_rest_fails_back(
        databases, client, runner, task_queue):
    from activities.registry import CloudActivities
    from gameday.plan import StepRequest

    book = runbook(_step("orders", "catalog", duration="2s"))
    resolve = CloudActivities("aws").by_name["aws.resolve_failover_database"]
    planned = resolve(StepRequest(run_id="plan", step=book.fault_steps()[0], guardrails=book.guardrails))
    assert [(r.name, r.detail["fail_over_to"]) for r in planned.resources] == [("orders", "orders-2")]

    async def scenario():
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state(STEP, "active"))
        return _writers(), await handle.result()

    during, result = runner.run(scenario(), timeout=120)
    assert during["orders"] == "orders-2" and during["catalog"] == "catalog-1"
    assert (result.outcome, result.restored, result.steps[0].resources) == ("completed", True, 1)
    assert database_snapshot() == databases


def test_fail_back_false_leaves_the_new_writer_and_removes_the_tags(databases, client, runner,
                                                                   task_queue):
    async def scenario():
        handle = await start(client, runbook(_step("orders", duration="1s", fail_back=False)),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await handle.result()

    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.restored) == ("completed", True)
    after = database_snapshot()
    assert after["orders"]["writer"] == "orders-2" and after["orders"]["tags"] == {"tier": "db"}
    assert {k: v for k, v in after.items() if k != "orders"} == \
        {k: v for k, v in databases.items() if k != "orders"}


@pytest.mark.parametrize("cluster, sentence", [
    ("sessions", "DB cluster sessions has no available reader outside us-east-1a to fail over to"),
    ("ledger", "DB cluster ledger does not exist in us-east-1"),
])
def test_a_cluster_that_cannot_fail_over_is_refused_before_any_change(databases, client, runner,
                                                                      task_queue, cluster, sentence):
    async def scenario():
        handle = await start(client, runbook(_step("orders", cluster)), task_queue)
        return await final(handle)

    result = runner.run(scenario(), timeout=120)
    assert result.outcome == "failed"
    assert sentence in (result.reason or "")
    assert database_snapshot() == databases  # orders, named first, was not failed over either


def test_a_cluster_busy_failing_over_when_the_fault_arrives_is_waited_for(databases, client, runner,
                                                                          task_queue, servers):
    """RDS refuses a failover while the cluster is in another one (InvalidDBClusterStateFault):
    the apply tries again once it has settled, and the restore still fails back exactly."""
    servers.aws_faults(FaultRule(match="FailoverDBCluster", count=2, status=400,
                                 code="InvalidDBClusterStateFault"))

    async def scenario():
        handle = await start(client, runbook(_step("orders", duration="1s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await handle.result()

    result = runner.run(scenario(), timeout=180)
    assert (result.outcome, result.restored) == ("completed", True)
    refused = [c for c in servers.aws_calls() if "FailoverDBCluster" in c["key"] and c["injected"]]
    assert len(refused) == 2
    assert database_snapshot() == databases


def test_a_terminated_gameday_is_failed_back_by_its_watchdog(databases, client, runner, task_queue):
    async def scenario():
        handle = await client.start_workflow(
            GameDayWorkflow.run, GameDayInput(runbook=runbook(_step("orders", "payments")),
                                              source="test", watchdog_poll=timedelta(seconds=1)),
            id=f"wd-{uuid.uuid4().hex[:10]}", task_queue=task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state(STEP, "active"))
        during = _writers()
        await handle.terminate(reason="operator pulled the plug")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        return during, await watchdog.result()

    during, status = runner.run(scenario(), timeout=180)
    assert (during["orders"], during["payments"]) == ("orders-2", "payments-2")
    assert "terminated" in status.fired and status.in_effect == []
    assert database_snapshot() == databases


def test_the_sweeper_fails_back_a_cluster_a_dead_run_left(databases, client, runner, task_queue,
                                                         monkeypatch, servers):
    monkeypatch.setenv("GAMEDAY_SWEEP_AWS_REGIONS", "us-east-1")
    monkeypatch.setenv("GAMEDAY_TASK_QUEUE", task_queue)
    os.environ.update(servers.env)

    async def scenario():
        handle = await start(client, runbook(_step("orders")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state(STEP, "active"))
        await client.get_workflow_handle(f"{handle.id}-watchdog").terminate(reason="test")
        await handle.terminate(reason="test: leave the failover behind")
        listed = await operations.sweep(client, restore=False)
        swept = await operations.sweep(client, restore=True)
        return handle.id, listed, swept

    run_id, listed, swept = runner.run(scenario(), timeout=180)
    [leftover] = [x for x in listed.leftovers if x.kind == "db-cluster"]
    assert (leftover.id, leftover.run_id, leftover.detail["writer"]) == ("orders", run_id, "orders-1")
    assert "orders" in swept.restored and swept.errors == []
    assert database_snapshot() == databases
