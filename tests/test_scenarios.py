"""One scenario suite, run against every cloud: each must end with the cloud exactly as before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gameday.lab.faults import FaultRule
from tests.support.clouds import ACTION_LABS, CLOUD_LABS, CloudLab, action_lab
from tests.support.gameday import (
    abort,
    approve,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from workflows.watchdog import WatchdogStatus

STEP = "zone-outage"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=sorted(CLOUD_LABS) + sorted(ACTION_LABS))
def cloud(request, servers) -> CloudLab:
    """Every fault of every cloud: the zone blackhole, then each further action."""
    kind = CLOUD_LABS.get(request.param) or action_lab(request.param)
    lab = kind(servers)
    lab.seed()
    yield lab
    lab.faults()


@pytest.fixture(params=sorted(CLOUD_LABS))
def zone_cloud(request, servers) -> CloudLab:
    """The zone blackhole of each cloud: for what only a blackhole does (drift, a region)."""
    lab = CLOUD_LABS[request.param](servers)
    lab.seed()
    yield lab
    lab.faults()


def _approved_and_active(client, cloud, task_queue, duration="5m", **fields):
    async def scenario():
        handle = await start(client, runbook(cloud.zone_step(STEP, duration), **fields), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        await wait_for(handle, step_state(STEP, "active"), what="fault active")
        return handle

    return scenario()


def test_happy_path_restores_exactly(cloud, client, runner, task_queue):
    before = cloud.snapshot()

    async def scenario():
        handle = await _approved_and_active(client, cloud, task_queue, duration="3s")
        during = cloud.blackholed()
        return during, await handle.result()

    during, result = runner.run(scenario())
    assert during
    assert (result.outcome, result.restored, result.hypothesis_held) == ("completed", True, None)
    assert result.steps[0].resources == cloud.target_count()
    assert cloud.snapshot() == before


def test_abort_mid_fault_restores_exactly(cloud, client, runner, task_queue):
    before = cloud.snapshot()

    async def scenario():
        handle = await _approved_and_active(client, cloud, task_queue)
        assert cloud.blackholed()
        await abort(handle, reason="error budget burning")
        return await handle.result()

    result = runner.run(scenario())
    assert (result.outcome, result.restored) == ("aborted", True)
    assert cloud.snapshot() == before


def test_cancel_mid_fault_restores_exactly(cloud, client, runner, task_queue):
    before = cloud.snapshot()

    async def scenario():
        handle = await _approved_and_active(client, cloud, task_queue)
        await handle.cancel()
        return await handle.result()

    result = runner.run(scenario())
    assert (result.outcome, result.restored) == ("aborted", True)
    assert cloud.snapshot() == before


def test_apply_failing_half_way_is_compensated(cloud, client, runner, task_queue):
    """The second per-resource mutation is refused for good: apply fails after changing one."""
    before = cloud.snapshot()
    cloud.faults(FaultRule(match=cloud.apply_call, after=1, count=1, status=403,
                           code="UnauthorizedOperation"))

    async def scenario():
        handle = await start(client, runbook(cloud.zone_step(STEP, "5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "failed"
    assert result.restored is True
    assert cloud.calls(cloud.apply_call)  # the apply really started changing things
    assert cloud.snapshot() == before


def test_restore_under_throttling_restores_exactly(cloud, client, runner, task_queue):
    before = cloud.snapshot()

    async def scenario():
        handle = await _approved_and_active(client, cloud, task_queue)
        throttle = {"match": cloud.restore_call, "status": 429, "code": "RequestLimitExceeded",
                    "retry_after": 0}
        cloud.faults(FaultRule(count=1, **throttle), FaultRule(rate=0.3, **throttle), seed=7)
        await abort(handle, reason="throttled fail-back drill")
        return await handle.result()

    result = runner.run(scenario(), timeout=180)
    assert (result.outcome, result.restored) == ("aborted", True)
    throttled = [c for c in cloud.calls(cloud.restore_call) if c["injected"]]
    assert throttled, "the restore never met throttling"
    assert cloud.snapshot() == before


def test_guardrail_refuses_a_target_outside_the_allowed_scopes(cloud, client, runner, task_queue,
                                                               monkeypatch):
    """The runbook's own guardrails are checked by validate; the worker's allow-lists still are
    checked by the worker (here, in this process) before anything changes."""
    before = cloud.snapshot()
    monkeypatch.setenv("GAMEDAY_ALLOWED_AWS_ACCOUNTS", "999999999999")
    monkeypatch.setenv("GAMEDAY_ALLOWED_GCP_PROJECTS", "other-project")
    monkeypatch.setenv("GAMEDAY_ALLOWED_AZURE_SUBSCRIPTIONS", "11111111-1111-1111-1111-111111111111")

    async def scenario():
        handle = await start(client, runbook(cloud.zone_step(STEP, "5m")), task_queue)
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "failed"
    assert "not allowed by this worker" in (result.reason or "")
    assert result.steps[0].state in ("pending", "skipped")
    assert cloud.snapshot() == before


def test_a_terminated_gameday_is_restored_exactly_by_its_watchdog(cloud, client, runner, task_queue):
    """Terminated mid-fault, the GameDay runs no code of its own again: its dead man's switch
    restores every checkpoint it was handed."""
    before = cloud.snapshot()

    async def scenario():
        handle = await _approved_and_active(client, cloud, task_queue)
        assert cloud.blackholed()
        await handle.terminate(reason="operator pulled the plug")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        return await watchdog.result()

    status = runner.run(scenario(), timeout=180)
    assert "terminated" in status.fired and status.in_effect == []
    assert cloud.snapshot() == before


def test_worker_killed_mid_fault_and_a_new_worker_finishes(cloud, client, runner, servers):
    """SIGKILL the only worker while the fault is active; a new worker restores on time."""
    before = cloud.snapshot()
    queue = f"kill-{cloud.cloud}-{os.getpid()}"
    env = {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": queue}

    def worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = worker()
    try:
        async def until_active():
            return await _approved_and_active(client, cloud, queue, duration="3s")

        handle = runner.run(until_active(), timeout=120)
        assert cloud.blackholed()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = worker()
        try:
            result = runner.run(handle.result(), timeout=120)
        finally:
            second.terminate()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert (result.outcome, result.restored) == ("completed", True)
    assert cloud.snapshot() == before


def test_drift_a_resource_that_appears_is_cut_and_restored(zone_cloud, client, runner, task_queue):
    """Created after the plan, so only the drift check can find it; restored with the rest."""
    cloud = zone_cloud

    async def scenario():
        handle = await start(client, runbook(cloud.zone_step(STEP, "5m"), drift_interval="1s"),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        late = cloud.add_target()
        expected = cloud.snapshot()
        await approve(handle)
        grown = await wait_for(handle, lambda s: any(e.kind == "drift" for e in s.events),
                               timeout=60, what="the drift check")
        await abort(handle, reason="drift drill")
        result = await handle.result()
        return late, expected, grown, result, drift_check_answers(await handle.fetch_history())

    late, expected, grown, result, answers = runner.run(scenario(), timeout=180)
    assert grown.steps[0].resources == cloud.target_count() + 1, late
    assert (result.outcome, result.restored) == ("aborted", True)
    assert cloud.snapshot() == expected
    # a drift check's answer carries only what no fault holds yet, never the whole zone again
    assert answers and answers[0] == 1 and all(n == 0 for n in answers[1:]), answers


def drift_check_answers(history) -> list[int]:
    """How many resources each drift watch (`<cloud>.watch_for_new_resources`, which looks with
    only_new) answered, in order: 0 for a window that passed with nothing new."""
    watches = set()
    answers = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name.endswith(".watch_for_new_resources"):
                assert json.loads(scheduled.input.payloads[0].data)["step"]["only_new"]
                watches.add(event.event_id)
        elif event.HasField("activity_task_completed_event_attributes"):
            done = event.activity_task_completed_event_attributes
            if done.scheduled_event_id in watches:
                found = json.loads(done.result.payloads[0].data)["found"]
                answers.append(len(found["resources"]) if found else 0)
    return answers


REGION_OUTAGE = {
    "aws": [{"id": "evacuate", "action": "evacuate_region", "restore": "with_run",
             "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                        "hosted_zone_id": "shop.example.com",
                        "record_names": ["www.shop.example.com"]}},
            {"id": "blackout", "action": "blackhole_region", "restore": "with_run",
             "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                        "tags": {"gameday": "enabled"}}}],
    "gcp": [{"id": "evacuate", "action": "evacuate_region", "restore": "with_run",
             "target": {"cloud": "gcp", "project": "gameday-lab", "region": "us-central1",
                        "backend_services": ["web"]}},
            {"id": "blackout", "action": "blackhole_region", "restore": "with_run",
             "target": {"cloud": "gcp", "project": "gameday-lab", "region": "us-central1",
                        "labels": {"gameday": "enabled"}}}],
    "azure": [{"id": "evacuate", "action": "evacuate_region", "restore": "with_run",
               "target": {"cloud": "azure", "subscription": "00000000-0000-0000-0000-000000000000",
                          "resource_group": "shop", "region": "eastus",
                          "traffic_manager_profiles": ["shop-tm"]}},
              {"id": "blackout", "action": "blackhole_region", "restore": "with_run",
               "target": {"cloud": "azure", "subscription": "00000000-0000-0000-0000-000000000000",
                          "resource_group": "shop", "region": "eastus",
                          "tags": {"gameday": "enabled"}}}],
}


def test_abort_during_a_region_outage_restores_zones_first_traffic_last(zone_cloud, client, runner,
                                                                         task_queue):
    cloud = zone_cloud
    before = cloud.snapshot()
    steps = [*REGION_OUTAGE[cloud.cloud], {"id": "soak", "action": "wait", "duration": "5m"}]

    async def scenario():
        handle = await start(client, runbook(*steps), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("soak", "active"), what="the soak")
        await abort(handle, reason="soak broke checkout")
        return await handle.result()

    result = runner.run(scenario(), timeout=180)
    assert (result.outcome, result.restored) == ("aborted", True)
    restored = [e.step for e in result.events if e.kind == "restored"]
    assert restored[-1] == "evacuate" and set(restored[:-1]) == {"blackout"}
    assert len(restored) > 2  # the blackout was restored zone by zone
    assert cloud.snapshot() == before
