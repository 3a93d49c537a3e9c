"""GCP `failover_database` against the emulator's Cloud SQL Admin API: what a real failover meets.

The scenario suite (tests/test_scenarios.py, `gcp-failover_database`) proves exact restore after
success, abort, cancel, a refused apply, a throttled restore, guardrails, SIGKILL and a terminate
(the watchdog); these prove the rest: an instance without HA refused, a failover already running
waited out, `fail_back: false`, the sweeper after the run and its watchdog are gone.
"""

from __future__ import annotations

import os

import httpx
import pytest

from gameday import operations
from gameday.lab.faults import FaultRule
from tests.support.failover_gcp import GcpFailoverLab
from tests.support.gameday import approve, final, phase_is, runbook, start, step_state, wait_for

STEP = "db-usc1a"
PROJECT = GcpFailoverLab.project


@pytest.fixture
def lab(servers):
    lab = GcpFailoverLab(servers)
    lab.seed()
    yield lab
    lab.faults()


def _step(*instances: str, duration: str | None = "5m", **fields) -> dict:
    step = {"id": STEP, "action": "failover_database", **fields,
            "target": {"cloud": "gcp", "project": PROJECT, "zone": "us-central1-a",
                       "instances": list(instances)}}
    if duration:
        step["duration"] = duration
    return step


def _zones(lab) -> dict[str, str]:
    return {name: i["zone"] for name, i in lab.snapshot().items()}


def test_an_instance_without_ha_is_refused_before_any_change(lab, client, runner, task_queue):
    before = lab.snapshot()

    async def scenario():
        return await final(await start(client, runbook(_step("shop-db", "reports-db")), task_queue))

    result = runner.run(scenario(), timeout=120)
    assert result.outcome == "failed"
    assert "Cloud SQL instance reports-db has no high availability" in (result.reason or "")
    assert lab.calls("/failover") == [] and lab.calls("PATCH ") == []
    assert lab.snapshot() == before  # shop-db, named first, was not failed over either


def test_a_failover_already_running_is_waited_out_and_the_primary_comes_back(
        lab, client, runner, task_queue, servers):
    """Someone else's failover of shop-db is running when the fault arrives, and Cloud SQL
    refuses gameday's first failover of orders-db (409 operationInProgress): the apply waits
    both out, and the restore brings each primary back to its recorded zone."""
    before = lab.snapshot()
    with servers.gcp.lock:
        servers.gcp.failover_seconds = 2.0
    httpx.post(f"{servers.gcp.url}/v1/projects/{PROJECT}/instances/shop-db/failover",
               json={}).raise_for_status()
    lab.faults(FaultRule(match="orders-db/failover", count=1, status=409,
                         code="operationInProgress", message="Operation failed because another "
                         "operation was already in progress."))

    async def scenario():
        handle = await start(client, runbook(_step("shop-db", "orders-db", duration="1s")),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state(STEP, "active"))
        return _zones(lab), await handle.result()

    during, result = runner.run(scenario(), timeout=120)
    assert (during["shop-db"], during["orders-db"]) == ("us-central1-b", "us-central1-c")
    assert (result.outcome, result.restored, result.steps[0].resources) == ("completed", True, 2)
    failovers = [(c["key"].rsplit("/", 2)[-2], c["injected"]) for c in lab.calls("/failover")]
    # shop-db: the restore's only (the apply found it moved); orders-db: refused, sent, restored
    assert failovers == [("orders-db", True), ("orders-db", False), ("shop-db", False),
                         ("orders-db", False)]
    assert lab.snapshot() == before


def test_fail_back_false_leaves_the_new_primary_and_removes_the_labels(lab, client, runner,
                                                                      task_queue):
    before = lab.snapshot()

    async def scenario():
        handle = await start(client, runbook(_step("orders-db", duration="1s", fail_back=False)),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await handle.result()

    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.restored) == ("completed", True)
    after = lab.snapshot()
    assert after["orders-db"] == {**before["orders-db"], "zone": "us-central1-c",
                                  "standby": "us-central1-a"}
    assert {k: v for k, v in after.items() if k != "orders-db"} == \
        {k: v for k, v in before.items() if k != "orders-db"}


def test_the_sweeper_fails_back_an_instance_a_dead_run_left(lab, client, runner, task_queue,
                                                           monkeypatch, servers):
    before = lab.snapshot()
    monkeypatch.setenv("GAMEDAY_SWEEP_GCP_PROJECTS", PROJECT)
    monkeypatch.setenv("GAMEDAY_TASK_QUEUE", task_queue)
    os.environ.update(servers.env)

    async def scenario():
        handle = await start(client, runbook(_step("orders-db")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state(STEP, "active"))
        await client.get_workflow_handle(f"{handle.id}-watchdog").terminate(reason="test")
        await handle.terminate(reason="test: leave the failover behind")
        listed = await operations.sweep(client, restore=False, clouds=["gcp"])
        swept = await operations.sweep(client, restore=True, clouds=["gcp"])
        return handle.id, listed, swept

    run_id, listed, swept = runner.run(scenario(), timeout=180)
    [leftover] = [x for x in listed.leftovers if x.kind == "sql-instance"]
    assert (leftover.id, leftover.run_id, leftover.detail["primary_zone"]) == \
        ("orders-db", run_id, "us-central1-a")
    assert "orders-db" in swept.restored and swept.errors == []
    assert lab.snapshot() == before
