"""The report of real runs: GameDays on the dev server against moto, their status as the workflow
emits it (the `status` query mid-run, the result, or the failure of a failed run)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from temporalio.client import WorkflowFailureError

from gameday.report import build_report, render_html
from gameday.status import GameDayStatus, status_from_failure
from tests.support.gameday import (
    approve,
    aws_zone_step,
    phase_is,
    runbook,
    start,
    status,
    step_state,
    wait_for,
)
from tests.support.health import HealthServer


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.stop()


def _steady(health: HealthServer) -> dict:
    return {"interval": "1s", "tolerance": 2, "recovery_timeout": "15s",
            "probes": [{"name": "checkout", "http": {"url": health.url, "timeout": "1s"}}]}


async def _final(handle) -> GameDayStatus:
    """The run's closing status: its result, or the status its GameDayFailed failure carries."""
    try:
        return await handle.result()
    except WorkflowFailureError as error:
        found = status_from_failure(error)
        assert found is not None, f"the failure carries no status: {error.cause}"
        return found


def test_a_report_written_mid_run_says_it_is_in_progress(aws, client, runner, task_queue, health):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="20s"),
                                             steady_state=_steady(health)), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"), timeout=30)
        await asyncio.sleep(2.5)
        live = await status(handle)
        await handle.cancel()
        return live

    live = runner.run(scenario())
    now = datetime.now(UTC)
    report = build_report("mid-run", live, now=now)
    [step] = report.steps
    assert not report.closed and report.hypothesis == "in progress"
    assert report.last_seen_at == now > max(e.at for e in live.events)
    assert step.in_effect_at_end and step.end == now
    assert step.seconds is not None and step.seconds >= 2.0  # not "held 0.0s"
    page = render_html(report)
    assert "in progress" in page and 'data-marker="in_progress"' in page
    assert "so far" in page, page
    assert ">0.0s so far<" not in page  # the fault's held time, the defect's "held 0.0s"


def test_a_run_without_a_steady_state_reads_not_tested(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await _final(handle)

    final = runner.run(scenario())
    assert final.hypothesis_held is None  # contract §7
    report = build_report("no-steady-state", final)
    assert (report.closed, report.hypothesis) == (True, "not tested")
    page = render_html(report)
    hypothesis = page.split(">Hypothesis<", 1)[1].split("</div></div>", 1)[0]
    assert "not tested" in hypothesis and "yes" not in hypothesis


def test_the_probe_table_and_time_to_detect_of_a_breach(aws, client, runner, task_queue, health):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="5m"),
                                             steady_state=_steady(health)), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"), timeout=30)
        await asyncio.sleep(2.5)
        broken = datetime.now(UTC)
        health.status = 503
        await wait_for(handle, lambda s: s.phase in ("restoring", "aborted"), timeout=30)
        health.status = 200
        return broken, await _final(handle)

    broken, final = runner.run(scenario())
    assert final.outcome == "aborted" and final.hypothesis_held is False
    report = build_report("breach", final)
    [step] = report.steps
    failed = [c for c in report.probe_checks if not c.ok]
    assert failed and all(c.value == "HTTP 503, expected 200" for c in failed)
    assert all(c.latency_ms is not None for c in report.probe_checks)
    assert step.detected_at == failed[0].at and step.detected_at >= broken
    assert step.detected_by == "checkout: HTTP 503, expected 200"
    injected = final.steps[0].injected_at
    assert step.detect_seconds == pytest.approx((step.detected_at - injected).total_seconds(),
                                                abs=0.001)
    assert 2.0 < step.detect_seconds < 2.5 + 15  # the break, then an interval and a check, however busy
    page = render_html(report)
    assert "Time to detect" in page and 'data-marker="detected"' in page
    assert all(c.source == "check" for c in report.probe_checks)  # the status's, not events
    assert len(report.probe_checks) == len(final.probe_checks)
    passed_while_in_effect = [c for c in report.probe_checks if c.ok and injected < c.at < broken]
    assert len(passed_while_in_effect) >= 2  # every check, not only the changes
    [restoring] = [e for e in final.events if e.kind == "restoring"]
    assert (step.restore_basis, step.restore_started_at) == ("event", restoring.at)
    assert restoring.at >= report.abort.at  # the breach's abort, then the restore

    # a run recorded before `probe_checks` existed: its checks are only the `probe` events the
    # workflow writes (the baseline, each change of verdict, the recovery), timed when recorded
    older = build_report("older", final.model_copy(update={"probe_checks": []}))
    assert older.probe_checks and all(c.source == "event" for c in older.probe_checks)
    assert len(older.probe_checks) < len(report.probe_checks)
    [older_step] = older.steps
    assert older_step.detected_by == "checkout: HTTP 503, expected 200"
    assert older_step.detected_at is not None and older_step.detected_at >= step.detected_at
    assert any("when the workflow recorded" in note for note in older.notes)
    assert "Time to detect" in render_html(older)


def test_the_report_of_a_failed_run(aws, client, runner, task_queue, health, servers, tmp_path):
    health.status = 503

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(), steady_state=_steady(health)),
                             task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return handle.id, await _final(handle)

    run_id, final = runner.run(scenario())
    report = build_report("failed", final)
    assert (report.closed, report.outcome, report.hypothesis) == (True, "failed", "not held")
    assert "does not hold before any fault" in (report.reason or "")
    [check] = report.probe_checks
    assert (check.name, check.ok, check.value) == ("checkout", False, "HTTP 503, expected 200")
    assert report.steps[0].detected_at is None  # nothing was injected
    page = render_html(report)
    assert 'data-outcome="failed"' in page and "HTTP 503" in page

    out = tmp_path / "failed.html"  # and `gameday report`, once Temporal shows the run as Failed
    done = subprocess.run([sys.executable, "-m", "gameday.cli", "report", run_id, "--out", str(out)],
                          env={**os.environ, **servers.env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    written = json.loads(out.with_suffix(".json").read_text())
    assert (written["outcome"], written["hypothesis"]) == ("failed", "not held")
    assert [c["value"] for c in written["probe_checks"]] == ["HTTP 503, expected 200"]
