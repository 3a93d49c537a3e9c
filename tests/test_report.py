"""The post-GameDay report: facts derived from a status, one offline HTML page, and JSON.

Pure tests: every `GameDayStatus` is built by hand; no server, no cloud. The screenshot test runs
only where Debian's `chromium` is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gameday.report import Report, build_report, render_html, render_json, write_report
from gameday.runbook import Runbook
from gameday.status import Event, GameDayStatus, StepStatus

T0 = datetime(2026, 3, 10, 14, 0, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"
LEFT, PLOT = 200, 900  # the timeline's label column and plot width, in SVG units


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(seconds: float, kind: str, detail: str, step: str | None = None,
       by: str | None = None) -> Event:
    return Event(at=at(seconds), kind=kind, detail=detail, step=step, by=by)


def status(runbook: str, outcome: str, steps: list[StepStatus], events: list[Event],
           end: float, **extra: object) -> GameDayStatus:
    return GameDayStatus(
        runbook=runbook, phase=outcome, steps=steps, events=events, started_at=T0,
        deadline=at(7200), ended_at=at(end), outcome=outcome,
        plan_hash="sha256:0123456789abcdef0123456789abcdef", **extra,
    )


def completed_parallel() -> GameDayStatus:
    """Two faults in parallel, AWS and GCP, each restored on its own schedule, then a soak."""
    return status("q1-multi-cloud", "completed", [
        StepStatus(id="blackhole-aws-use1a", action="blackhole_zone", cloud="aws", group=0,
                   state="restored", resources=12, injected_at=at(65), restored_at=at(670)),
        StepStatus(id="evacuate-gcp-central", action="evacuate_region", cloud="gcp", group=0,
                   state="restored", resources=3, injected_at=at(66), restored_at=at(367)),
        StepStatus(id="soak", action="wait", cloud=None, group=1, state="restored"),
    ], [
        ev(0, "started", "GameDay q1-multi-cloud started by alice"),
        ev(2, "planned", "2 faults over 15 resources; plan sha256:0123"),
        ev(2, "phase", "awaiting_approval"),
        ev(2, "approval_requested", "the start awaits 1 approval(s) from ic@example.com"),
        ev(60, "approved", "ic@example.com approved start (1/1): go", by="ic@example.com"),
        ev(60, "phase", "running"),
        ev(65, "injected", "blackhole-aws-use1a: blackhole_zone on 12 resources",
           step="blackhole-aws-use1a"),
        ev(66, "injected", "evacuate-gcp-central: evacuate_region on 3 resources",
           step="evacuate-gcp-central"),
        ev(367, "restored", "evacuate-gcp-central: 3 changed back", step="evacuate-gcp-central"),
        ev(670, "restored", "blackhole-aws-use1a: 12 changed back", step="blackhole-aws-use1a"),
        ev(670, "waiting", "soak: waiting 30s", step="soak"),
        ev(700, "phase", "completed"),
        ev(700, "finished", "outcome completed; every fault restored: True"),
    ], end=700, reason=None, hypothesis_held=True, restored=True)


def aborted_run() -> GameDayStatus:
    """A refused approval, a step gate, two faults (AWS, Azure), then an abort with a reason."""
    return status("q2-zone-outage", "aborted", [
        StepStatus(id="blackhole-aws-use1a", action="blackhole_zone", cloud="aws", group=0,
                   state="restored", resources=4, approved_by=["ic@example.com"],
                   injected_at=at(100), restored_at=at(240)),
        StepStatus(id="blackhole-azure-eastus-1", action="blackhole_zone", cloud="azure", group=0,
                   state="restored", resources=2, injected_at=at(101), restored_at=at(230)),
        StepStatus(id="evacuate-gcp", action="evacuate_region", cloud="gcp", group=1,
                   state="skipped"),
    ], [
        ev(0, "started", "GameDay q2-zone-outage started"),
        ev(1, "planned", "3 faults over 6 resources"),
        ev(1, "phase", "awaiting_approval"),
        ev(1, "approval_requested", "the start awaits 1 approval(s)"),
        ev(20, "approval_refused", "mallory@example.com is not an approver of this runbook",
           by="mallory@example.com"),
        ev(40, "approved", "ic@example.com approved start (1/1)", by="ic@example.com"),
        ev(40, "phase", "running"),
        ev(40, "approval_requested", "step blackhole-aws-use1a awaits 1 approval(s)",
           step="blackhole-aws-use1a"),
        ev(90, "approved", "ic@example.com approved blackhole-aws-use1a (1/1)",
           step="blackhole-aws-use1a", by="ic@example.com"),
        ev(100, "injected", "blackhole-aws-use1a: on 4 resources", step="blackhole-aws-use1a"),
        ev(101, "injected", "blackhole-azure-eastus-1: on 2 resources",
           step="blackhole-azure-eastus-1"),
        ev(200, "abort_requested", "ic@example.com: checkout error rate 12%",
           by="ic@example.com"),
        ev(205, "abort_repeated", "bob@example.com: stop it", by="bob@example.com"),
        ev(200, "aborted", "aborted by ic@example.com: checkout error rate 12%"),
        ev(200, "phase", "restoring"),
        ev(230, "restored", "blackhole-azure-eastus-1: 2 changed back",
           step="blackhole-azure-eastus-1"),
        ev(240, "restored", "blackhole-aws-use1a: 4 changed back", step="blackhole-aws-use1a"),
        ev(240, "phase", "aborted"),
        ev(240, "finished", "outcome aborted; every fault restored: True"),
    ], end=240, reason="aborted by ic@example.com: checkout error rate 12%",
        hypothesis_held=True, restored=True)


def rejected_run() -> GameDayStatus:
    return status("q3-rejected", "rejected", [
        StepStatus(id="blackhole-aws-use1a", action="blackhole_zone", cloud="aws", group=0,
                   state="skipped", resources=4),
    ], [
        ev(0, "started", "GameDay q3-rejected started"),
        ev(1, "planned", "1 faults over 4 resources"),
        ev(1, "phase", "awaiting_approval"),
        ev(1, "approval_requested", "the start awaits 1 approval(s)"),
        ev(10, "rejection_refused", "bob@example.com is not an approver of this runbook",
           by="bob@example.com"),
        ev(30, "rejected_by", "ic@example.com rejected: not during the sale", by="ic@example.com"),
        ev(30, "rejected", "the start was rejected by ic@example.com: not during the sale"),
        ev(30, "phase", "rejected"),
        ev(30, "finished", "outcome rejected; every fault restored: True"),
    ], end=30, reason="the start was rejected by ic@example.com: not during the sale",
        hypothesis_held=True, restored=True)


def restore_failed_run() -> GameDayStatus:
    error = "AccessDenied: ec2:ReplaceNetworkAclAssociation"
    return status("q4-restore-fails", "failed", [
        StepStatus(id="blackhole-aws-use1a", action="blackhole_zone", cloud="aws", group=0,
                   state="failed", resources=4, injected_at=at(10), error=error),
    ], [
        ev(0, "started", "GameDay q4-restore-fails started"),
        ev(1, "planned", "1 faults over 4 resources"),
        ev(1, "phase", "awaiting_approval"),
        ev(1, "approval_requested", "the start awaits 1 approval(s)"),
        ev(5, "approved", "ic@example.com approved start (1/1)", by="ic@example.com"),
        ev(5, "phase", "running"),
        ev(10, "injected", "blackhole-aws-use1a: on 4 resources", step="blackhole-aws-use1a"),
        ev(12, "probe", "checkout: 200 in 41ms"),
        ev(27, "probe", "checkout: timeout after 2s"),
        ev(50, "restore_failed", f"blackhole-aws-use1a: {error}; run `gameday sweep --restore`",
           step="blackhole-aws-use1a"),
        ev(50, "failed", "a fault could not be restored"),
        ev(50, "phase", "failed"),
        ev(50, "finished", "outcome failed; every fault restored: False"),
    ], end=50, reason="a fault could not be restored", hypothesis_held=True, restored=False)


# --- helpers -----------------------------------------------------------------------------------


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


def expected_x(seconds: float, span: float) -> float:
    return LEFT + seconds / span * PLOT


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


def test_completed_parallel_facts() -> None:
    report = build_report("run-1", completed_parallel())
    assert (report.outcome, report.hypothesis_held, report.restored) == ("completed", True, True)
    assert report.duration_seconds == 700
    assert [(p.phase, p.seconds) for p in report.phases] == [
        ("planning", 2), ("awaiting_approval", 58), ("running", 640), ("completed", 0)]
    aws, gcp, soak = report.steps
    assert (aws.cloud, aws.start, aws.end, aws.seconds) == ("aws", at(65), at(670), 605)
    assert (gcp.cloud, gcp.start, gcp.end, gcp.seconds) == ("gcp", at(66), at(367), 301)
    # restored on their own schedule, without the runbook: the start of the restore is unknown
    assert aws.restore_basis == gcp.restore_basis == "unknown"
    assert aws.restore_seconds is None
    assert (soak.kind, soak.start, soak.end) == ("wait", at(670), at(700))
    [gate] = report.gates
    assert (gate.gate, gate.approved_by, gate.wait_seconds) == ("start", ["ic@example.com"], 58)
    assert report.abort is None and report.restore_failures == [] and report.probes == []


def test_the_runbook_makes_scheduled_restores_exact() -> None:
    runbook = Runbook.model_validate({
        "name": "q1-multi-cloud", "approvers": ["ic@example.com"], "max_duration": "2h",
        "guardrails": {"aws_accounts": ["123456789012"], "gcp_projects": ["gameday-lab"]},
        "steps": [{"parallel": [
            {"id": "blackhole-aws-use1a", "action": "blackhole_zone", "duration": "10m",
             "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                        "zone": "us-east-1a"}},
            {"id": "evacuate-gcp-central", "action": "evacuate_region", "duration": "5m",
             "target": {"cloud": "gcp", "project": "gameday-lab", "region": "us-central1",
                        "backend_services": ["web"]}},
        ]}, {"id": "soak", "action": "wait", "duration": "30s"}],
    })
    report = build_report("run-1", completed_parallel(), runbook)
    aws, gcp, _ = report.steps
    assert (aws.restore_basis, aws.restore_started_at, aws.restore_seconds) == \
        ("duration", at(665), 5)
    assert (gcp.restore_basis, gcp.restore_started_at, gcp.restore_seconds) == \
        ("duration", at(366), 1)


def test_aborted_run_facts() -> None:
    report = build_report("run-2", aborted_run())
    assert report.outcome == "aborted"
    assert report.abort is not None
    assert (report.abort.at, report.abort.by, report.abort.reason) == \
        (at(200), "ic@example.com", "checkout error rate 12%")
    assert [e.by for e in report.abort.repeated] == ["bob@example.com"]
    aws, azure, gcp = report.steps
    assert (aws.restore_basis, aws.restore_started_at, aws.restore_seconds) == \
        ("abort_requested", at(200), 40)
    assert (azure.restore_seconds, azure.cloud) == (30, "azure")
    assert (gcp.start, gcp.state) == (None, "skipped")
    refused = [e for e in report.decisions if e.kind == "approval_refused"]
    assert [(e.by, e.at) for e in refused] == [("mallory@example.com", at(20))]
    gates = {g.gate: g for g in report.gates}
    assert gates["start"].refusals == 1 and gates["start"].approved_by == ["ic@example.com"]
    assert gates["blackhole-aws-use1a"].wait_seconds == 50
    assert [p.phase for p in report.phases] == \
        ["planning", "awaiting_approval", "running", "restoring", "aborted"]


def test_rejected_run_facts() -> None:
    report = build_report("run-3", rejected_run())
    assert report.outcome == "rejected"
    assert all(s.start is None and s.restore_basis is None for s in report.steps)
    assert [e.kind for e in report.decisions] == \
        ["approval_requested", "rejection_refused", "rejected_by"]
    [gate] = report.gates
    assert gate.approved_by == [] and report.abort is None
    assert (gate.rejected_by, gate.rejected_at) == ("ic@example.com", at(30))


def test_restore_failed_facts() -> None:
    report = build_report("run-4", restore_failed_run())
    [step] = report.steps
    assert step.in_effect_at_end and step.restored_at is None
    assert (step.start, step.end) == (at(10), at(50))
    assert [e.at for e in step.restore_failures] == [at(50)]
    assert [e.detail for e in report.probes] == ["checkout: 200 in 41ms", "checkout: timeout after 2s"]
    assert report.restore_failures[0].step == "blackhole-aws-use1a"


def test_unknown_event_kinds_and_a_live_run() -> None:
    base = completed_parallel()
    aws, gcp, soak = base.steps
    live = base.model_copy(update={
        "phase": "running", "outcome": None, "ended_at": None, "hypothesis_held": None,
        "restored": None,
        "steps": [aws.model_copy(update={"state": "active", "restored_at": None}), gcp,
                  soak.model_copy(update={"state": "pending"})],
        "events": base.events[:9] + [ev(400, "something_new", "from the future")],
    })
    report = build_report("run-5", live, now=at(450))
    assert not report.closed and report.last_seen_at == at(450)  # to now, not to the last event
    assert report.events[-1].kind == "something_new"
    aws = report.steps[0]
    assert aws.in_effect_at_end and aws.end == at(450)
    assert report.hypothesis == "in progress"
    page = render_html(report)
    svg_of(page)
    assert "something_new" in page and "in progress" in page


# --- HTML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [completed_parallel, aborted_run, rejected_run, restore_failed_run])
def test_timeline_has_a_band_per_phase_and_a_bar_per_injected_fault(make) -> None:
    run = make()
    report = build_report("run", run)
    page = render_html(report)
    tags = parse(page)
    assert "script" not in tags.tags and "link" not in tags.tags and "img" not in tags.tags
    svg = svg_of(page)
    span = report.duration_seconds
    phases = tagged(svg, "data-phase")
    assert set(phases) == {p.phase for p in report.phases}
    for window in report.phases:
        [element] = phases[window.phase]
        if element.tag == f"{SVG}rect":
            x = float(element.attrib["x"])
            width = float(element.attrib["width"])
            start = (window.start - T0).total_seconds()
            assert x == pytest.approx(expected_x(start, span), abs=0.02)
            assert width == pytest.approx(window.seconds / span * PLOT, abs=0.03)
        else:  # a closing phase of no length: a flag at the end
            assert window.seconds == 0 and float(element.attrib["data-x"]) == LEFT + PLOT
        assert element.find(f"{SVG}title") is not None
    bars = {step: [e for e in elements if e.attrib.get("data-kind") == "fault"]
            for step, elements in tagged(svg, "data-step").items()}
    injected = [s for s in run.steps if s.injected_at is not None]
    assert {k for k, v in bars.items() if v} == {s.id for s in injected}
    for step in injected:
        [bar] = bars[step.id]
        start = (step.injected_at - T0).total_seconds()
        end = ((step.restored_at or run.ended_at) - T0).total_seconds()
        assert float(bar.attrib["x"]) == pytest.approx(expected_x(start, span), abs=0.02)
        assert float(bar.attrib["width"]) == pytest.approx((end - start) / span * PLOT, abs=0.03)
        assert bar.attrib["data-cloud"] == step.cloud
        assert step.id in bar.find(f"{SVG}title").text
    badge = re.search(r'class="badge" data-outcome="(\w+)"', page)
    assert badge and badge.group(1) == run.outcome


def test_aborted_timeline_shows_restoring_markers_and_tables() -> None:
    page = render_html(build_report("run-2", aborted_run()))
    svg = svg_of(page)
    span = 240
    restoring = [e for e in svg.iter() if e.attrib.get("data-segment") == "restoring"]
    assert {e.attrib["data-step"] for e in restoring} == \
        {"blackhole-aws-use1a", "blackhole-azure-eastus-1"}
    for element in restoring:
        assert float(element.attrib["x"]) == pytest.approx(expected_x(200, span), abs=0.02)
    markers = tagged(svg, "data-marker")
    assert {"approved", "approval_refused", "abort_requested", "abort_repeated", "abort"} <= \
        set(markers)
    [refused] = markers["approval_refused"]
    assert "mallory@example.com" in refused.find(f"{SVG}title").text
    text = " ".join(parse(page).text)
    assert "checkout error rate 12%" in text and "mallory@example.com" in text
    assert "Aborted by ic@example.com" in text


def test_restore_failure_is_called_out() -> None:
    page = render_html(build_report("run-4", restore_failed_run()))
    assert 'class="callout fail"' in page
    assert "AccessDenied" in page and "not restored" in page
    svg = svg_of(page)
    assert "probe" in tagged(svg, "data-marker")
    assert "Steady-state probes" in page


def test_user_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    run = aborted_run()
    run.runbook = evil
    run.reason = evil
    run.events.append(ev(240, "approval_refused", f"{evil} & <b>bold</b>", by=evil,
                         step="blackhole-aws-use1a"))
    run.steps[0].error = evil
    page = render_html(build_report(f"id-{evil}", run))
    assert "<script" not in page.lower() and "<b>" not in page
    assert "&lt;script&gt;" in page
    tags = parse(page)
    assert "script" not in tags.tags and "b" not in tags.tags
    assert evil in "".join(tags.text)  # shown to the reader as text
    svg_of(page)  # still well-formed


# --- JSON and files ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [completed_parallel, aborted_run, rejected_run, restore_failed_run])
def test_json_round_trips(make) -> None:
    report = build_report("run", make())
    text = render_json(report)
    assert Report.model_validate_json(text) == report
    data = json.loads(text)
    assert data["format"] == "gameday-report/1" and data["run_id"] == "run"


def test_write_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    html_path, json_path = write_report("run-9", aborted_run(), tmp_path / "out" / "r.html")
    assert (html_path, json_path) == (tmp_path / "out" / "r.html", tmp_path / "out" / "r.json")
    assert html_path.read_text().startswith("<!DOCTYPE html>")
    assert Report.model_validate_json(json_path.read_text()).run_id == "run-9"
    monkeypatch.chdir(tmp_path)
    html_path, json_path = write_report("run-10", rejected_run(), None)
    assert (html_path, json_path) == (Path("reports/run-10.html"), Path("reports/run-10.json"))
    assert html_path.exists() and json_path.exists()


def test_screenshot_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed; the page is not rendered")
    page, _ = write_report("run-2", aborted_run(), tmp_path / "report.html")
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


def test_an_older_run_without_probe_checks_reads_its_probe_events() -> None:
    """Runs recorded before `probe_checks` have each check only as a `probe` event, in the words
    of the workflow's `_record_probes`; the table and the time-to-detect come from those."""
    run = completed_parallel()
    run.events += [
        ev(64, "probe", "checkout: ok, HTTP 200 (3 ms)"),
        ev(80, "probe", "checkout: FAILED, HTTP 503, expected 200 (41 ms)"),
        ev(81, "probe", "the steady-state watch failed: activity timed out; retrying"),
    ]
    run.events.sort(key=lambda e: e.at)
    report = build_report("older", run)
    assert [(c.name, c.ok, c.value, c.latency_ms, c.source) for c in report.probe_checks] == [
        ("checkout", True, "HTTP 200", 3.0, "event"),
        ("checkout", False, "HTTP 503, expected 200", 41.0, "event")]
    aws, gcp, _ = report.steps
    assert (aws.detected_at, aws.detect_seconds) == (at(80), 15)
    assert aws.detected_by == "checkout: HTTP 503, expected 200"
    assert len(report.probes) == 3  # the watch's own failure stays in the event list
    assert any("when the workflow recorded" in note for note in report.notes)
