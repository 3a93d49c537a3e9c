"""GameDays end to end on a real Temporal dev server, with the AWS blackhole against moto."""

from __future__ import annotations

from typing import Any

from gameday.lab.aws import acl_snapshot
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    final,
    phase_is,
    reject,
    runbook,
    start,
    step_state,
    wait_for,
)


def _blackholed(snapshot: dict[str, Any], subnets: list[str]) -> bool:
    acls = snapshot["acls"]
    return all(acls[snapshot["associations"][s]]["tags"].get("gameday:run") for s in subnets)


def _targets(aws: dict[str, Any], zone: str = "us-east-1a") -> list[str]:
    """The seeded subnets of a zone tagged gameday=enabled (all but the ops subnet)."""
    from gameday.lab.aws.seed import ZONES

    assert zone in ZONES
    subnets = aws["subnets"][zone]
    return subnets[:-2] + subnets[-1:]


def test_happy_path_blackholes_then_restores_exactly(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="4s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        during = await wait_for(handle, step_state("blackhole-use1a", "active"), what="fault")
        snapshot = acl_snapshot()
        result = await final(handle)
        return during, snapshot, result

    during, snapshot_during, result = runner.run(scenario())
    assert during.active_faults == ["blackhole-use1a"]
    assert during.steps[0].resources == 3
    assert _blackholed(snapshot_during, _targets(aws))
    ops_subnet = aws["subnets"]["us-east-1a"][-2]
    assert snapshot_during["associations"][ops_subnet] == before["associations"][ops_subnet]
    gameday_acls = [a for a in snapshot_during["acls"].values() if a["tags"].get("gameday:run")]
    assert len(gameday_acls) == 2  # one per VPC
    for acl in gameday_acls:
        assert acl["entries"] == sorted([(1, False, "deny", "0.0.0.0/0", ""),
                                         (2, False, "deny", "", "::/0"),
                                         (1, True, "deny", "0.0.0.0/0", ""),
                                         (2, True, "deny", "", "::/0")])
    assert result.outcome == "completed"
    assert result.restored is True
    assert result.hypothesis_held is None  # no steady state: not tested (contract §7)
    assert acl_snapshot() == before


def test_reject_changes_nothing(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await reject(handle)
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "rejected"
    assert "rejected by ic@example.com" in (result.reason or "")
    assert result.restored is True
    assert acl_snapshot() == before


def test_approval_timeout_ends_the_run_with_nothing_injected(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(approval_timeout="2s"), task_queue)
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "rejected"
    assert "no approval for the start within 2s" in (result.reason or "")
    assert acl_snapshot() == before


def test_an_approver_not_on_the_list_changes_nothing(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle, approver="mallory@example.com")
        refused = await wait_for(handle, lambda s: any(e.kind == "approval_refused"
                                                       for e in s.events))
        await abort(handle, reason="done testing")
        return refused, await final(handle)

    refused, result = runner.run(scenario())
    assert refused.phase == "awaiting_approval"
    event = next(e for e in refused.events if e.kind == "approval_refused")
    assert "mallory@example.com is not an approver" in event.detail
    assert result.outcome == "aborted"


def test_abort_signal_mid_fault_restores_everything(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        assert _blackholed(acl_snapshot(), _targets(aws))
        await abort(handle, reason="checkout is down")
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "aborted"
    assert "checkout is down" in (result.reason or "")
    assert result.restored is True
    assert acl_snapshot() == before


def test_workflow_cancel_mid_fault_is_an_abort(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        await handle.cancel()
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "aborted"
    assert "cancelled" in (result.reason or "")
    assert result.restored is True
    assert acl_snapshot() == before
