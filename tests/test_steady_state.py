"""The steady-state hypothesis: checked before, during and after; a breach aborts and restores."""

from __future__ import annotations

import asyncio
import time

import pytest

from gameday.lab.aws import acl_snapshot
from tests.support.gameday import (
    approve,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)
from tests.support.health import HealthServer


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.stop()


def _steady(health: HealthServer, **extra) -> dict:
    return {"interval": "1s", "tolerance": 2, "recovery_timeout": "15s",
            "probes": [{"name": "checkout", "http": {"url": health.url, "timeout": "1s"}},
                       {"name": "tcp-checkout", "tcp": {"host": "127.0.0.1",
                                                        "port": int(health.url.split(":")[2]
                                                                    .split("/")[0])}}],
            **extra}


def test_a_failing_baseline_ends_the_run_before_anything_changes(aws, client, runner, task_queue,
                                                                 health):
    health.status = 503
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(), steady_state=_steady(health)),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "failed"
    assert "does not hold before any fault" in result.reason
    assert "checkout: HTTP 503" in result.reason
    assert (result.hypothesis_held, result.restored) == (False, True)
    assert [s.state for s in result.steps] == ["skipped"]
    assert acl_snapshot() == before


def test_a_breach_during_the_fault_aborts_and_restores(aws, client, runner, task_queue, health):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m"),
                                             steady_state=_steady(health)), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        await asyncio.sleep(3)  # a few passing checks first: they are kept, though no verdict changed
        broken = time.monotonic()
        health.status = 500
        await wait_for(handle, lambda s: s.phase in ("restoring", "aborted"), timeout=30)
        detected = time.monotonic() - broken
        health.status = 200
        return detected, await final(handle)

    detected, result = runner.run(scenario())
    assert detected < 1 * 2 + 3  # interval × tolerance, plus a check's latency and a poll
    checks = result.probe_checks  # every check the watch made, not only the changes of verdict
    failed = [c for c in checks if not c.ok and c.name == "checkout"]
    assert len(failed) >= 2 and all(c.value == "HTTP 500, expected 200" for c in failed)
    assert len(checks) > len([e for e in result.events if e.kind == "probe"])
    for name in ("checkout", "tcp-checkout"):  # oldest first, probe by probe
        times = [c.at for c in checks if c.name == name]
        assert times == sorted(times)
    assert result.outcome == "aborted"
    assert result.reason.startswith("aborted by steady-state: 2 consecutive failed checks")
    assert (result.hypothesis_held, result.restored) == (False, True)
    assert any(e.kind == "recovered" for e in result.events)
    assert acl_snapshot() == before


def test_a_held_hypothesis_is_reported(aws, client, runner, task_queue, health):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="3s"),
                                             steady_state=_steady(health)), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await final(handle)

    result = runner.run(scenario())
    assert (result.outcome, result.hypothesis_held, result.restored) == ("completed", True, True)
    assert health.requests >= 3  # baseline, during, recovery
    assert any(e.kind == "recovered" for e in result.events)
    checks = result.probe_checks  # every check: baseline, each one while held, recovery
    assert {c.name for c in checks} == {"checkout", "tcp-checkout"}
    assert len(checks) >= 2 * 4  # baseline, at least two checks while held (3s, every 1s), recovery
    assert len(checks) > len([e for e in result.events if e.kind == "probe"])
    assert all(c.ok for c in checks) and result.probe_checks_dropped == 0


def test_no_recovery_after_the_restore_means_the_hypothesis_failed(aws, client, runner, task_queue,
                                                                   health):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="2s"), steady_state=_steady(
            health, tolerance=50, recovery_timeout="3s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        health.status = 503
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "completed"
    assert (result.hypothesis_held, result.restored) == (False, True)
    assert any(e.kind == "not_recovered" for e in result.events)
