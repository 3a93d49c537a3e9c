"""The post-GameDay report of real runs: facts read from the status a GameDay emits, one offline
HTML page, and JSON.

A module fixture runs four GameDays on the dev server against moto, one after another (they share
zones, so their leases would collide): completed, aborted, rejected, and one whose restore is
refused for a while. Each test reads their statuses; no test builds an event list by hand. The
screenshot test runs only where Debian's `chromium` is installed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gameday.lab.faults import FaultRule
from gameday.report import Report, build_report, render_html, render_json, write_report
from gameday.report_page import offset, span
from gameday.runbook import Runbook
from gameday.status import Event, GameDayStatus
from tests.support.gameday import (
    abort,
    approve,
    aws_zone_step,
    final,
    phase_is,
    reject,
    runbook,
    start,
    status,
    step_state,
    wait_for,
)
from tests.support.health import HealthServer

SVG = "{http://www.w3.org/2000/svg}"
LEFT, PLOT = 200, 900  # the timeline's label column and plot width, in SVG units
EVIL = '<script>alert("x")</script>'
SOAK = {"id": "soak", "action": "wait", "duration": "1s"}


@dataclass
class Run:
    id: str
    runbook: Runbook
    status: GameDayStatus
    """The closing status (the result, or the status a failed run's failure carries)."""
    live: GameDayStatus | None = None
    """A status queried while the run was still going."""
    live_at: datetime | None = None


def _steady(health: HealthServer) -> dict:
    return {"interval": "1s", "tolerance": 2, "recovery_timeout": "15s",
            "probes": [{"name": "checkout", "http": {"url": health.url, "timeout": "1s"}}]}


async def _completed(client, queue: str, health: HealthServer) -> Run:
    """Two faults in parallel, each restored on its own schedule, then a soak; probes held."""
    book = runbook({"parallel": [aws_zone_step("blackhole-use1a", duration="3s"),
                                 aws_zone_step("blackhole-use1b", zone="us-east-1b", duration="2s")]},
                   SOAK, steady_state=_steady(health))
    handle = await start(client, book, queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle, note="go")
    return Run(handle.id, book, await final(handle))


async def _aborted(client, queue: str) -> Run:
    """Refused approvals, a step gate, a fault held to the end (group 0) and one held 5m (group 1),
    an abort while both are in effect, a repeated abort, and a wait that never starts."""
    book = runbook(aws_zone_step("blackhole-use1a", duration=None, approval="required"),
                   aws_zone_step("blackhole-use1b", zone="us-east-1b", duration="5m"), SOAK)
    handle = await start(client, book, queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle, approver="mallory@example.com")
    await approve(handle, approver=EVIL)
    await approve(handle)
    await wait_for(handle, lambda s: s.pending_approval == "blackhole-use1a", what="the step gate")
    await approve(handle, step="blackhole-use1a")
    await wait_for(handle, step_state("blackhole-use1b", "active"), what="the second fault")
    await abort(handle, reason="checkout error rate 12%")
    await abort(handle, by="second@example.com", reason=f"{EVIL} & <b>bold</b>")
    return Run(handle.id, book, await final(handle))


async def _rejected(client, queue: str) -> Run:
    book = runbook(aws_zone_step(duration="5m"))
    handle = await start(client, book, queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await reject(handle, approver="bob@example.com", reason="not mine to refuse")
    await reject(handle, reason="not during the sale")
    return Run(handle.id, book, await final(handle))


async def _slow_restore(client, queue: str, servers) -> Run:
    """The restore is refused (AccessDenied) for a few seconds, then allowed: a report made in
    between shows the fault restoring since its `restoring` event; the final one, how long it took."""
    book = runbook(aws_zone_step(duration="2s"))
    handle = await start(client, book, queue)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state("blackhole-use1a", "active"))
    servers.aws_faults(FaultRule(match="ReplaceNetworkAclAssociation", status=403,
                                 code="UnauthorizedOperation"))
    await wait_for(handle, step_state("blackhole-use1a", "restoring"), timeout=30)
    await asyncio.sleep(2)
    live, live_at = await status(handle), datetime.now(UTC)
    servers.aws_faults()
    return Run(handle.id, book, await final(handle), live, live_at)


@pytest.fixture(scope="module")
def runs(servers, client, runner) -> Iterator[dict[str, Run]]:
    """The four GameDays, on task queues of this module's own (as the `task_queue` fixture)."""
    from gameday.lab.aws import seed_aws
    from worker import build_workers

    servers.reset_aws()
    seed_aws()
    queue = f"test-report-{uuid.uuid4().hex[:8]}"
    executor = ThreadPoolExecutor(max_workers=16)
    health = HealthServer()

    async def scenarios() -> dict[str, Run]:
        workers = build_workers(client, queue, executor)
        for worker in workers:
            asyncio.ensure_future(worker.run())
        try:
            return {"completed": await _completed(client, queue, health),
                    "aborted": await _aborted(client, queue),
                    "rejected": await _rejected(client, queue),
                    "slow_restore": await _slow_restore(client, queue, servers)}
        finally:
            await asyncio.gather(*(worker.shutdown() for worker in workers))

    try:
        yield runner.run(scenarios(), timeout=240)
    finally:
        servers.aws_faults()
        health.stop()
        executor.shutdown(wait=False, cancel_futures=True)


# --- helpers -----------------------------------------------------------------------------------


def events_of(run: GameDayStatus, kind: str, step: str | None = None) -> list[Event]:
    return [e for e in run.events if e.kind == kind and (step is None or e.step == step)]


def svg_of(page: str) -> ET.Element:
    found = re.search(r"<svg\b.*?</svg>", page, re.S)
    assert found, "the page holds an inline SVG timeline"
    return ET.fromstring(found.group(0))  # well-formed XML, or this raises


def tagged(svg: ET.Element, attribute: str) -> dict[str, list[ET.Element]]:
    found: dict[str, list[ET.Element]] = {}
    for element in svg.iter():
        if attribute in element.attrib:
            found.setdefault(element.attrib[attribute], []).append(element)
    return found


def expected_x(report: Report, moment: datetime) -> float:
    """Where `moment` falls on the axis, which spans the run and at least a second."""
    axis = max(report.last_seen_at - report.started_at, timedelta(seconds=1))
    return LEFT + (moment - report.started_at) / axis * PLOT


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:  # nothing is fetched: no src, href or url() to elsewhere
            if name in ("src", "href", "xlink:href", "style"):
                assert not re.search(r"(https?:|//|file:)", value or ""), f"external {value}"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


# --- facts -------------------------------------------------------------------------------------


def test_completed_parallel_facts(runs) -> None:
    run = runs["completed"].status
    report = build_report("run-1", run, runs["completed"].runbook)
    assert (report.outcome, report.hypothesis, report.restored) == ("completed", "held", True)
    assert [p.phase for p in report.phases] == \
        ["planning", "awaiting_approval", "running", "completed"]
    assert sum(p.seconds for p in report.phases) == pytest.approx(report.duration_seconds, abs=0.01)
    a, b, soak = report.steps
    for step, status_of in ((a, run.steps[0]), (b, run.steps[1])):
        [restoring] = events_of(run, "restoring", step.id)
        assert (step.start, step.end) == (status_of.injected_at, status_of.restored_at)
        assert (step.restore_basis, step.restore_started_at) == ("event", restoring.at)
        assert step.restore_seconds == pytest.approx(
            (status_of.restored_at - restoring.at).total_seconds(), abs=0.001)
        held = timedelta(seconds=3 if step.id == "blackhole-use1a" else 2)
        assert restoring.at >= status_of.injected_at + held  # the timer fired, then the restore began
    [waiting] = events_of(run, "waiting", "soak")
    assert (soak.kind, soak.start, soak.end) == ("wait", waiting.at, waiting.at + timedelta(seconds=1))
    [gate] = report.gates
    [requested], [approved] = events_of(run, "approval_requested"), events_of(run, "approved")
    assert (gate.gate, gate.approved_by) == ("start", ["ic@example.com"])
    assert gate.wait_seconds == pytest.approx((approved.at - requested.at).total_seconds(), abs=0.001)
    assert report.abort is None and report.restore_failures == []
    assert report.probe_checks and all(c.ok for c in report.probe_checks)
    assert a.detected_at is None and b.detected_at is None
    assert not any("not recorded" in note for note in report.notes)
    # each zone by its name and its physical id (moto's zone IDs in the worker's own account)
    assert (a.zone, a.zone_id) == ("us-east-1a", "use1-az6")
    assert f"{a.zone} ({a.zone_id})" in render_html(report)


def test_aborted_restores_read_their_own_start_not_the_abort(runs) -> None:
    """Compensation restores the newest group first: the fault of group 0 starts restoring only
    once group 1's is back, not at the abort (what the report used to guess)."""
    run = runs["aborted"].status
    report = build_report("run-2", run)
    assert report.outcome == "aborted" and report.abort is not None
    [requested] = events_of(run, "abort_requested")
    assert (report.abort.at, report.abort.by, report.abort.reason) == \
        (requested.at, "ic@example.com", "checkout error rate 12%")
    assert [e.by for e in report.abort.repeated] == ["second@example.com"]
    held_to_end, later, soak = report.steps
    assert later.restore_started_at == events_of(run, "restoring", later.id)[0].at
    assert later.restore_started_at >= report.abort.at
    assert held_to_end.restore_started_at == events_of(run, "restoring", held_to_end.id)[0].at
    assert held_to_end.restore_started_at >= later.restored_at > report.abort.at
    assert held_to_end.restore_seconds == pytest.approx(
        (held_to_end.restored_at - held_to_end.restore_started_at).total_seconds(), abs=0.001)
    assert (soak.kind, soak.start, soak.state) == ("wait", None, "skipped")
    refused = [e for e in report.decisions if e.kind == "approval_refused"]
    assert [e.by for e in refused] == ["mallory@example.com", EVIL]
    gates = {g.gate: g for g in report.gates}
    assert gates["start"].refusals == 2 and gates["start"].approved_by == ["ic@example.com"]
    assert gates["blackhole-use1a"].approved_by == ["ic@example.com"]
    assert [p.phase for p in report.phases] == \
        ["planning", "awaiting_approval", "running", "restoring", "aborted"]


def test_rejected_run_facts(runs) -> None:
    run = runs["rejected"].status
    report = build_report("run-3", run)
    assert report.outcome == "rejected"
    assert all(s.start is None and s.restore_basis is None for s in report.steps)
    assert [e.kind for e in report.decisions] == \
        ["approval_requested", "rejection_refused", "rejected_by"]
    [gate] = report.gates
    [rejected] = events_of(run, "rejected_by")
    assert gate.approved_by == [] and report.abort is None
    assert (gate.rejected_by, gate.rejected_at) == ("ic@example.com", rejected.at)


def test_a_restore_in_progress_shows_since_when(runs) -> None:
    run = runs["slow_restore"]
    assert run.live is not None and run.live_at is not None
    live = build_report("slow", run.live, now=run.live_at)
    [step] = live.steps
    [restoring] = events_of(run.live, "restoring")
    assert (step.state, step.restore_basis, step.restore_started_at) == \
        ("restoring", "event", restoring.at)
    assert step.in_effect_at_end and step.restored_at is None and step.end == run.live_at
    page = render_html(live)
    [segment] = [e for e in svg_of(page).iter() if e.attrib.get("data-segment") == "restoring"]
    assert float(segment.attrib["x"]) == pytest.approx(expected_x(live, restoring.at), abs=0.02)
    assert float(segment.attrib["x"]) + float(segment.attrib["width"]) == pytest.approx(LEFT + PLOT)
    assert "in effect" in page and 'data-marker="in_progress"' in page

    done = build_report("slow", run.status)
    [step] = done.steps
    assert (done.outcome, done.restored, step.restore_started_at) == ("completed", True, restoring.at)
    assert step.restore_seconds >= 2  # refused for at least the two seconds the test waited


def test_a_run_without_restoring_events_says_not_recorded(runs) -> None:
    """A run of a gameday from before the `restoring` event: its history holds only `restored`;
    the report says when the restore began is not recorded, and guesses nothing."""
    run = runs["aborted"].status
    older = run.model_copy(update={"events": [e for e in run.events if e.kind != "restoring"]})
    report = build_report("older", older, runs["aborted"].runbook)
    for step in report.steps[:2]:
        assert (step.restore_basis, step.restore_started_at, step.restore_seconds) == \
            ("not recorded", None, None)
        assert step.restored_at is not None and step.start is not None
    assert any("records no restoring event for blackhole-use1a, blackhole-use1b" in note
               for note in report.notes)
    page = render_html(report)
    assert "data-segment" not in page and ">not recorded<" in page


def test_event_kinds_the_report_does_not_know_are_listed(runs) -> None:
    """A newer workflow may record kinds this report has never heard of: they stay in the log."""
    run = runs["completed"].status
    newer = run.model_copy(update={"events": [*run.events, Event(
        at=run.ended_at, kind="something_new", detail="from the future")]})
    report = build_report("newer", newer)
    assert report.events[-1].kind == "something_new"
    page = render_html(report)
    svg_of(page)
    assert "something_new" in page and "from the future" in page


# --- HTML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["completed", "aborted", "rejected", "slow_restore"])
def test_timeline_has_a_band_per_phase_and_a_bar_per_injected_fault(runs, name) -> None:
    run = runs[name].status
    report = build_report("run", run)
    page = render_html(report)
    tags = parse(page)
    assert "script" not in tags.tags and "link" not in tags.tags and "img" not in tags.tags
    svg = svg_of(page)
    phases = tagged(svg, "data-phase")
    assert set(phases) == {p.phase for p in report.phases}
    for window in report.phases:
        [element] = phases[window.phase]
        if element.tag == f"{SVG}rect":
            assert float(element.attrib["x"]) == pytest.approx(expected_x(report, window.start),
                                                               abs=0.02)
            assert float(element.attrib["width"]) == pytest.approx(
                expected_x(report, window.end) - expected_x(report, window.start), abs=0.03)
        else:  # a closing phase of no length: a flag at the end
            assert window.seconds == 0 and window.start == report.last_seen_at
            assert float(element.attrib["data-x"]) == pytest.approx(
                expected_x(report, report.last_seen_at), abs=0.02)
        assert element.find(f"{SVG}title") is not None
    bars = {step: [e for e in elements if e.attrib.get("data-kind") == "fault"]
            for step, elements in tagged(svg, "data-step").items()}
    injected = [s for s in run.steps if s.injected_at is not None]
    assert {k for k, v in bars.items() if v} == {s.id for s in injected}
    for step in injected:
        [bar] = bars[step.id]
        end = step.restored_at or run.ended_at
        assert float(bar.attrib["x"]) == pytest.approx(expected_x(report, step.injected_at), abs=0.02)
        assert float(bar.attrib["width"]) == pytest.approx(
            expected_x(report, end) - expected_x(report, step.injected_at), abs=0.03)
        assert bar.attrib["data-cloud"] == step.cloud
        assert step.id in bar.find(f"{SVG}title").text
    badge = re.search(r'class="badge" data-outcome="(\w+)"', page)
    assert badge and badge.group(1) == run.outcome


def test_aborted_timeline_shows_restoring_segments_markers_and_tables(runs) -> None:
    run = runs["aborted"].status
    report = build_report("run-2", run)
    page = render_html(report)
    svg = svg_of(page)
    restoring = {e.attrib["data-step"]: e for e in svg.iter()
                 if e.attrib.get("data-segment") == "restoring"}
    assert set(restoring) == {"blackhole-use1a", "blackhole-use1b"}
    for step_id, element in restoring.items():
        started = events_of(run, "restoring", step_id)[0].at
        assert float(element.attrib["x"]) == pytest.approx(expected_x(report, started), abs=0.02)
    markers = tagged(svg, "data-marker")
    assert {"approved", "approval_refused", "abort_requested", "abort_repeated", "abort"} <= \
        set(markers)
    assert any("mallory@example.com" in m.find(f"{SVG}title").text for m in markers["approval_refused"])
    text = " ".join(parse(page).text)
    assert "checkout error rate 12%" in text and "mallory@example.com" in text
    assert "Aborted by ic@example.com" in text and "(repeated 1 time(s))" in text


def test_a_restore_that_gave_up_is_called_out(runs) -> None:
    """The workflow records `restore_failed` when a restore activity fails for good. Today's
    restores retry until they succeed, so no run of this gameday produces it; runs of versions whose
    restores gave up hold it. Here: the slow restore's live status with the event the workflow
    writes then (`_run_restore`) and the state it sets."""
    run = runs["slow_restore"]
    assert run.live is not None
    error = "CloudError: UnauthorizedOperation: ec2:ReplaceNetworkAclAssociation"
    [step] = run.live.steps
    gave_up = run.live.model_copy(update={
        "phase": "failed", "outcome": "failed", "ended_at": run.live_at, "restored": False,
        "reason": "a fault could not be restored",
        "steps": [step.model_copy(update={"state": "failed", "error": error})],
        "events": [*run.live.events, Event(
            at=run.live_at, kind="restore_failed", step=step.id,
            detail=f"{step.id}: {error}; run `gameday sweep --restore` or restore by hand")]})
    report = build_report("gave-up", gave_up)
    [failed] = report.steps
    assert failed.in_effect_at_end and [e.at for e in failed.restore_failures] == [run.live_at]
    page = render_html(report)
    assert 'class="callout fail"' in page and "UnauthorizedOperation" in page
    assert "not restored" in page


def test_user_text_is_escaped(runs) -> None:
    """The aborted run's refused approver and repeated abort carry markup, and so does the id."""
    page = render_html(build_report(f"id-{EVIL}", runs["aborted"].status))
    assert "<script" not in page.lower() and "<b>" not in page
    assert "&lt;script&gt;" in page
    tags = parse(page)
    assert "script" not in tags.tags and "b" not in tags.tags
    text = "".join(tags.text)
    assert EVIL in text and f"{EVIL} & <b>bold</b>" in text  # shown to the reader as text
    svg_of(page)  # still well-formed


def test_durations_read_at_a_glance() -> None:
    assert [span(s) for s in (None, 4.25, 42, 185, 7800)] == ["—", "4.2s", "42s", "3m 05s", "2h 10m"]
    assert [offset(s) for s in (45, 150, 180, 3900, 3930)] == \
        ["+45s", "+2m30s", "+3m", "+1h05m", "+1h05m30s"]


# --- JSON and files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["completed", "aborted", "rejected", "slow_restore"])
def test_json_round_trips(runs, name) -> None:
    report = build_report("run", runs[name].status)
    text = render_json(report)
    assert Report.model_validate_json(text) == report
    data = json.loads(text)
    assert data["format"] == "gameday-report/1" and data["run_id"] == "run"


def test_write_report(runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    html_path, json_path = write_report("run-9", runs["aborted"].status, tmp_path / "out" / "r.html")
    assert (html_path, json_path) == (tmp_path / "out" / "r.html", tmp_path / "out" / "r.json")
    assert html_path.read_text().startswith("<!DOCTYPE html>")
    assert Report.model_validate_json(json_path.read_text()).run_id == "run-9"
    monkeypatch.chdir(tmp_path)
    html_path, json_path = write_report("run-10", runs["rejected"].status, None)
    assert (html_path, json_path) == (Path("reports/run-10.html"), Path("reports/run-10.json"))
    assert html_path.exists() and json_path.exists()


def test_screenshot_in_headless_chromium(runs, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed; the page is not rendered")
    page, _ = write_report("run-2", runs["aborted"].status, tmp_path / "report.html")
    png = tmp_path / "report.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         "--window-size=1400,1000", page.resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000  # a real page, not a blank one
