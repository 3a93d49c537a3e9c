"""Recovery objectives (contract §10, `expect: {recover_within}`) on real runs: the dev server,
moto behind the lab's proxy, and a local health endpoint whose answer the test changes after the
fault is applied. Each expectation is recomputed here from the run's own probe checks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gameday.report import build_report, render_html
from gameday.report_page import span
from gameday.status import GameDayStatus, StepStatus
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

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.stop()


def _steady(health: HealthServer, interval: str = "1s") -> dict:
    return {"interval": interval, "tolerance": 50, "recovery_timeout": "15s",
            "probes": [{"name": "checkout", "http": {"url": health.url, "timeout": "1s"}}]}


def _expected(result: GameDayStatus, step: StepStatus) -> tuple[datetime, datetime]:
    """From the run's checks: the first failed check after the apply, and the first passing check
    after the last failed one."""
    assert step.injected_at is not None
    after = [c for c in result.probe_checks if c.at >= step.injected_at]
    failed = [c for c in after if not c.ok]
    assert failed, "no check failed after the apply"
    return failed[0].at, min(c.at for c in after if c.ok and c.at > failed[-1].at)


def _seconds(start: datetime | None, end: datetime) -> float:
    assert start is not None
    return round((end - start).total_seconds(), 3)


def _flap(health: HealthServer, *phases: tuple[int, float]) -> None:
    for status, seconds in phases:
        health.status = status
        time.sleep(seconds)


def test_a_flapping_recovery_within_the_objective_is_met_from_the_last_failure(
        aws, client, runner, task_queue, health, tmp_path):
    book = runbook(aws_zone_step(duration="10s", expect={"recover_within": "15s"}),
                   steady_state=_steady(health))

    async def scenario():
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        await asyncio.to_thread(_flap, health, (503, 2), (200, 2.2), (503, 2), (200, 0))
        return handle.id, await final(handle)

    run_id, result = runner.run(scenario())
    assert (result.outcome, result.hypothesis_held, result.restored) == ("completed", True, True)
    step = result.steps[0]
    detected, recovered = _expected(result, step)
    passed_between = [c for c in result.probe_checks if c.ok and detected < c.at < recovered]
    assert passed_between, "the probe passed between two failures: the flap happened"
    assert (step.failure_detected_at, step.recovered_at) == (detected, recovered)
    assert step.time_to_detect_seconds == _seconds(step.injected_at, detected)
    assert step.time_to_recover_seconds == _seconds(step.injected_at, recovered)
    assert 4 < step.time_to_recover_seconds <= 15
    assert (step.expectation_met, step.expectation, step.recover_within_seconds) == (True, "met", 15.0)

    report = build_report(run_id, result, book)
    objective = report.steps[0].objective
    assert objective is not None
    assert (objective.verdict, objective.recover_seconds, objective.detect_seconds) == (
        "met", step.time_to_recover_seconds, step.time_to_detect_seconds)
    rows = _objective_rows(render_html(report))
    assert list(rows) == ["blackhole-use1a"]
    verdict, cells = rows["blackhole-use1a"]
    assert verdict == "met"
    assert cells[:2] == ["blackhole-use1a", "within 15s"]
    assert cells[3].startswith(span(step.time_to_detect_seconds))
    assert cells[4].startswith(span(step.time_to_recover_seconds))
    assert cells[5].startswith("met")


class _Rows(HTMLParser):
    """The recovery objectives table: each row's step, verdict and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[str, list[str]]] = {}
        self._row: tuple[str, str] | None = None
        self._cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-objective"):
            self._row, self._cells = (found["data-objective"] or "", found["data-verdict"] or ""), []
        elif tag == "td" and self._row:
            self._cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row:
            self.rows[self._row[0]] = (self._row[1], self._cells)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row and self._cells:
            self._cells[-1] += data


def _objective_rows(page: str) -> dict[str, tuple[str, list[str]]]:
    parser = _Rows()
    parser.feed(page)
    return parser.rows


def test_an_objective_without_a_check_in_its_window_cannot_be_measured(aws, client, runner,
                                                                       task_queue, health):
    # checks every 30s: none runs while the first 1s fault holds, nor before the next is applied
    book = runbook(aws_zone_step("cut-a", duration="1s", expect={"recover_within": "1m"}),
                   aws_zone_step("cut-b", "us-east-1b", duration="1s", expect={"recover_within": "1m"}),
                   steady_state=_steady(health, interval="30s"))

    async def scenario():
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        return await final(handle)

    result = runner.run(scenario())
    assert (result.outcome, result.restored) == ("completed", True)
    first, second = result.steps
    assert second.injected_at is not None and first.injected_at is not None
    assert not [c for c in result.probe_checks if first.injected_at <= c.at < second.injected_at]
    assert (first.expectation_met, first.expectation) == (None, "not measured")
    assert first.expectation_note == ("could not be measured: no steady-state check ran from the apply "
                                      "until the next fault (cut-b) began its apply")
    assert (first.time_to_detect_seconds, first.time_to_recover_seconds) == (None, None)
    # the second is measured by the recovery check after its restore, which passed at once
    assert [c.ok for c in result.probe_checks if c.at >= second.injected_at] == [True]
    assert (second.expectation_met, second.time_to_detect_seconds, second.time_to_recover_seconds) == (
        True, None, 0.0)


# --- `gameday run --wait` and `gameday status --json` -----------------------------------------

RUNBOOK = """\
name: objective-gameday
approvers: [ic@example.com]
approval_timeout: 2m
max_duration: 10m
guardrails: {{aws_accounts: ["123456789012"]}}
steady_state:
  interval: 1s
  tolerance: 50
  recovery_timeout: 15s
  probes:
    - name: checkout
      http: {{url: "{url}", timeout: 1s}}
steps:
  - id: blackhole-use1a
    action: blackhole_zone
    target: {{cloud: aws, account: "123456789012", region: us-east-1, zone: us-east-1a,
             tags: {{gameday: enabled}}}}
    duration: 7s
    expect: {{recover_within: 2s}}
"""


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _until(env: dict[str, str], run_id: str, predicate, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        done = _cli(env, "status", run_id, "--json")
        if done.returncode == 0:
            status = json.loads(done.stdout)
            if predicate(status):
                return status
        time.sleep(0.2)
    raise AssertionError(f"timed out; last status {status}")


def test_a_missed_objective_makes_run_wait_exit_1_though_the_run_completed(servers, task_queue, aws,
                                                                         health, tmp_path):
    env = {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": task_queue}
    path = tmp_path / "runbook.yaml"
    path.write_text(RUNBOOK.format(url=health.url))
    run_id = f"objective-{uuid.uuid4().hex[:8]}"
    waiting = subprocess.Popen([sys.executable, "-m", "gameday.cli", "run", str(path), "--id", run_id,
                                "--wait"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        _until(env, run_id, lambda s: s["phase"] == "awaiting_approval")
        assert _cli(env, "approve", run_id, "--as", "ic@example.com").returncode == 0
        active = _until(env, run_id, lambda s: s["steps"][0]["state"] == "active")
        assert active["steps"][0]["expectation"] == "measuring"
        _flap(health, (503, 4), (200, 0))  # 4s of failures: more than the 2s objective
        out, err = waiting.communicate(timeout=90)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 1, out + err
    assert "outcome: completed; hypothesis held: True; every fault restored: True" in out
    missed_line = [line for line in out.splitlines() if line.startswith("recovery objective missed: ")]
    assert len(missed_line) == 1
    assert missed_line[0].startswith("recovery objective missed: blackhole-use1a: every probe passed "
                                     "again ")
    assert missed_line[0].endswith(" after the apply (objective 2s)")

    shown = _cli(env, "status", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    status = GameDayStatus.model_validate_json(shown.stdout)
    step = status.steps[0]
    raw = json.loads(shown.stdout)["steps"][0]
    assert (raw["expectation_met"], raw["expectation"], raw["recover_within_seconds"]) == (
        False, "missed", 2.0)
    detected, recovered = _expected(status, step)
    assert (step.failure_detected_at, step.recovered_at) == (detected, recovered)
    assert raw["time_to_detect_seconds"] == _seconds(step.injected_at, detected)
    assert raw["time_to_recover_seconds"] == _seconds(step.injected_at, recovered) > 2.0
    assert step.expectation_note == f"missed: {missed_line[0].split(': ', 2)[2]}"

    text = _cli(env, "status", run_id)
    assert text.returncode == 0, text.stderr
    [row] = [line for line in text.stdout.splitlines() if line.strip().startswith("blackhole-use1a")]
    assert row.rstrip().endswith(f"missed ({step.time_to_recover_seconds:.0f}s of 2s)"), row

    made = _cli(env, "report", run_id, "--out", str(tmp_path / "report.html"))
    assert made.returncode == 0, made.stderr
    verdict, cells = _objective_rows((tmp_path / "report.html").read_text())["blackhole-use1a"]
    assert (verdict, cells[1]) == ("missed", "within 2.0s")
    assert cells[4].startswith(span(step.time_to_recover_seconds))
    objective = json.loads((tmp_path / "report.json").read_text())["steps"][0]["objective"]
    assert (objective["met"], objective["recover_seconds"]) == (False, raw["time_to_recover_seconds"])
