"""Zone leases: two GameDays over overlapping targets never hold faults at once."""

from __future__ import annotations

from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.leases import overlaps


def test_overlap_rules():
    zone_a = "aws:123456789012:us-east-1:us-east-1a"
    assert overlaps(zone_a, zone_a)
    assert overlaps(zone_a, "aws:123456789012:us-east-1:*")
    assert not overlaps(zone_a, "aws:123456789012:us-east-1:us-east-1b")
    assert not overlaps(zone_a, "aws:999999999999:us-east-1:us-east-1a")
    assert not overlaps("gcp:p:us-central1:*", "gcp:p:us-east1:*")


def test_a_second_gameday_on_the_same_zone_is_refused_naming_the_holder(aws, client, runner,
                                                                        task_queue):
    region = {"id": "blackout", "action": "blackhole_region", "duration": "5m",
              "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                         "tags": {"gameday": "enabled"}}}

    async def scenario():
        first = await start(client, runbook(aws_zone_step(duration="5m")), task_queue)
        await wait_for(first, phase_is("awaiting_approval"))
        await approve(first)
        await wait_for(first, step_state("blackhole-use1a", "active"))
        second = await start(client, runbook(region), task_queue)
        await wait_for(second, phase_is("awaiting_approval"))
        await approve(second)
        refused = await final(second)
        elsewhere = await start(client, runbook(aws_zone_step(step_id="other", zone="us-east-1b",
                                                              duration="1s")), task_queue)
        await wait_for(elsewhere, phase_is("awaiting_approval"))
        await approve(elsewhere)
        other_zone = await final(elsewhere)
        await abort(first)
        await final(first)
        third = await start(client, runbook(region | {"duration": "1s"}), task_queue)
        await wait_for(third, phase_is("awaiting_approval"))
        await approve(third)
        return first.id, refused, other_zone, await final(third)

    first_id, refused, other_zone, after = runner.run(scenario(), timeout=180)
    assert refused.outcome == "failed"
    assert (f"aws 123456789012 us-east-1 (whole region) is held by GameDay {first_id}"
            in refused.reason)
    assert refused.restored is True and refused.steps[0].state == "skipped"
    assert other_zone.outcome == "completed"
    assert after.outcome == "completed"


def test_a_dead_holder_is_evicted(aws, client, runner, task_queue):
    async def scenario():
        dead = await start(client, runbook(aws_zone_step(duration="5m")), task_queue)
        await wait_for(dead, phase_is("awaiting_approval"))
        await approve(dead)
        await wait_for(dead, step_state("blackhole-use1a", "active"))
        await dead.terminate(reason="test")
        watchdog = client.get_workflow_handle(f"{dead.id}-watchdog")
        await watchdog.result()  # the dead man's switch restores, then the lease is free
        successor = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await wait_for(successor, phase_is("awaiting_approval"))
        await approve(successor)
        return await final(successor)

    result = runner.run(scenario(), timeout=180)
    assert result.outcome == "completed"


def test_abort_all_stops_every_running_gameday_and_reports_restore_times(aws, client, runner,
                                                                          task_queue):
    from gameday import operations
    from gameday.lab.aws import acl_snapshot

    before = acl_snapshot()
    reports: dict[str, float | None] = {}

    async def scenario():
        handles = []
        for zone in ("us-east-1a", "us-east-1b"):
            handle = await start(client, runbook(aws_zone_step(step_id=f"cut-{zone}", zone=zone,
                                                               duration="10m")), task_queue)
            await wait_for(handle, phase_is("awaiting_approval"))
            await approve(handle)
            await wait_for(handle, step_state(f"cut-{zone}", "active"))
            handles.append(handle)
        await operations.abort_all(client, "ic@example.com", "kill switch drill",
                                   lambda run, final, seconds: reports.__setitem__(run, seconds),
                                   timeout=30)
        return [await final(h) for h in handles], [h.id for h in handles]

    finals, ids = runner.run(scenario(), timeout=180)
    assert all(f.outcome == "aborted" and f.restored for f in finals)
    assert all(reports[run_id] is not None and reports[run_id] < 30 for run_id in ids)
    assert acl_snapshot() == before
