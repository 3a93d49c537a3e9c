"""The post-GameDay report: the facts a review needs, as one offline HTML page and as JSON.

Everything here is read from a `GameDayStatus` (the `status` query, or a run's result) and,
optionally, the runbook the run carried out (it gives a wait step's length). Nothing here talks
to Temporal or to a cloud, and nothing is guessed: a fault's restore starts at the workflow's
`restoring` event for the step (its first, for a step restored zone by zone); a run whose history
lacks that event (an older gameday) reads "not recorded" (`restore_basis`), not a reconstruction.

Probe checks come from the status's `probe_checks` (every check the workflow learned of: time,
value, latency); a run recorded before that field existed has them only as `probe` events, whose
time is when the workflow recorded them, not when the check ran (`source: event`). A fault's
time-to-detect is from its `injected_at` (the moment its apply finished) to the first failed check
after the moment before its apply began (the latest injection, restore or phase change before
it); a check that failed while the apply was still running gives a negative time-to-detect.

A report of a run that has not ended says so: its timeline runs to the moment the report was made
(`last_seen_at`), a fault still in effect is shown as held "so far", and the hypothesis is "in
progress". A closed run without a steady state has `hypothesis_held` null: "not tested".

A step with a recovery objective (`expect`) carries the workflow's own measure of it (`objective`:
met, missed, not measured, or still measuring), read from the status, not recomputed here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gameday.runbook import Runbook
from gameday.status import CLOSED_PHASES, Event, Expectation, GameDayStatus, ProbeResult, StepStatus

REPORT_FORMAT = "gameday-report/1"

RestoreBasis = Literal["event", "not recorded"]
"""`event`: the workflow's `restoring` event; `not recorded`: the fault was restored (or its
restore failed) but the run's history holds no such event, so when the restore began is unknown."""
DECISION_KINDS = ("approval_requested", "approved", "approval_refused", "rejection_refused",
                  "rejected_by")
ABORT_KINDS = ("abort_requested", "abort_repeated")
DETECT_FLOOR_KINDS = ("injected", "restored", "phase")
PROBE_EVENT = re.compile(r"^(?P<name>[^:]+): (?P<verdict>ok|FAILED), (?P<value>.*) "
                         r"\((?P<latency>\d+(?:\.\d+)?) ms\)$", re.S)
"""A check as the workflow writes it into a `probe` event (`_record_probes`)."""
Hypothesis = Literal["held", "not held", "not tested", "in progress"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhaseWindow(Model):
    phase: str
    start: datetime
    end: datetime
    seconds: float


class Objective(Model):
    """A step's recovery objective as the workflow measured it (gameday/objectives.py)."""

    recover_within_seconds: float
    met: bool | None
    """None: could not be measured, or still being measured (`note` says which)."""
    verdict: Expectation
    note: str | None
    detected_at: datetime | None = None
    detect_seconds: float | None = None
    recovered_at: datetime | None = None
    recover_seconds: float | None = None


class StepReport(Model):
    id: str
    action: str
    cloud: str | None
    kind: Literal["fault", "wait"]
    group: int
    state: str
    resources: int
    zone: str | None = None
    """A fault's zone, by name in its account; None: a region, or a run from before zones."""
    zone_id: str | None = None
    """The zone's physical id (AWS zone ID, Azure physical zone), where the cloud tells."""
    approved_by: list[str] = []
    start: datetime | None = None
    """A fault: when it took effect (`injected_at`). A wait: when the wait began."""
    end: datetime | None = None
    """A fault: when it was undone (`restored_at`), or the end of the run if it never was."""
    seconds: float | None = None
    restore_started_at: datetime | None = None
    """The step's first `restoring` event."""
    restore_basis: RestoreBasis | None = None
    """Where `restore_started_at` comes from; None while no restore has begun."""
    restored_at: datetime | None = None
    restore_seconds: float | None = None
    in_effect_at_end: bool = False
    """The fault was not restored when the report was made (a failed restore, or a live run)."""
    restore_failures: list[Event] = []
    error: str | None = None
    detected_at: datetime | None = None
    """The first failed probe check after the fault's apply began (see the module's docstring)."""
    detected_by: str | None = None
    """That check's probe and what it saw."""
    detect_seconds: float | None = None
    """Time-to-detect: from `start` (the apply done) to `detected_at`; negative: during the apply."""
    objective: Objective | None = None
    """The step's `expect`, measured; None for a step without one."""


class ProbeCheck(Model):
    """One probe's answer to one check."""

    name: str
    ok: bool
    at: datetime
    latency_ms: float | None
    value: str
    source: Literal["check", "event"] = "check"
    """`check`: from the status's `probe_checks`; `event`: parsed from a `probe` event."""


class Approval(Model):
    """One approval that counted; `fingerprint` is the key that signed it (`SHA256:…`, as
    `ssh-keygen -l` prints it), None for an approval asserted without a signature."""

    by: str
    at: datetime
    fingerprint: str | None = None


class Gate(Model):
    gate: str
    """`start`, or the id of the step whose gate it is."""
    requested_at: datetime | None = None
    approved_by: list[str] = []
    approvals: list[Approval] = []
    """Each approval that counted, oldest first, with the key that signed it."""
    approved_at: datetime | None = None
    """When the last counted approval came in."""
    wait_seconds: float | None = None
    refusals: int = 0
    rejected_by: str | None = None
    """Who rejected while this gate was pending (a rejection names no gate: the latest one)."""
    rejected_at: datetime | None = None


class AbortInfo(Model):
    at: datetime
    by: str | None
    reason: str
    repeated: list[Event] = []


class Report(Model):
    format: str = REPORT_FORMAT
    run_id: str
    runbook: str
    phase: str
    closed: bool
    outcome: str | None
    reason: str | None
    hypothesis_held: bool | None
    hypothesis: Hypothesis
    """What `hypothesis_held` means for a reader: null is "not tested" once closed."""
    restored: bool | None
    plan_hash: str | None
    approvals_required: int
    started_at: datetime
    deadline: datetime
    ended_at: datetime | None
    last_seen_at: datetime
    """`ended_at` for a closed run, else the moment the report was made."""
    duration_seconds: float
    phases: list[PhaseWindow]
    steps: list[StepReport]
    gates: list[Gate]
    decisions: list[Event]
    """Approval requests, approvals, refusals and rejections, oldest first."""
    abort: AbortInfo | None
    probes: list[Event]
    probe_checks: list[ProbeCheck] = []
    """Every check's result, oldest first: the probe table and the time-to-detect read these."""
    restore_failures: list[Event]
    events: list[Event]
    notes: list[str] = []


# --- building ---------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def build_report(run_id: str, status: GameDayStatus, runbook: Runbook | None = None,
                 now: datetime | None = None) -> Report:
    """The facts of one run; `runbook`, when given, bounds each wait step by its `duration`;
    `now` (default: the clock) is where the timeline of a run that has not ended stops."""
    events = sorted((e.model_copy(update={"at": _utc(e.at)}) for e in status.events),
                    key=lambda e: e.at)
    started = _utc(status.started_at)
    ended = _utc(status.ended_at) if status.ended_at else None
    checks = _probe_checks(status, events)
    moments = [started] + [e.at for e in events] + [c.at for c in checks]
    for step in status.steps:
        moments += [_utc(m) for m in (step.injected_at, step.restored_at) if m is not None]
    closed = ended is not None or status.phase in CLOSED_PHASES
    if ended is not None:
        last_seen = ended
    elif closed:
        last_seen = max(moments)
    else:
        last_seen = max(moments + [_utc(now or datetime.now(UTC))])
    notes: list[str] = []
    if not closed:
        notes.append(f"in progress: the run was in phase {status.phase} at "
                     f"{last_seen.strftime('%H:%M:%S.')}{last_seen.microsecond // 1000:03d} UTC, "
                     "when this report was made")
    if checks and checks[0].source == "event":
        notes.append("probe times are when the workflow recorded each result (a run recorded "
                     "before every check was kept)")

    durations: dict[str, timedelta] = {}
    if runbook is not None:
        durations = {s.id: s.duration for s in runbook.all_steps() if s.duration is not None}
    groups = {s.id: s.group for s in status.steps}
    steps = [_wait_step(step, events, last_seen, durations.get(step.id), groups)
             if step.cloud is None or step.action == "wait" else _fault_step(step, events, last_seen)
             for step in status.steps]
    for report_step, step in zip(steps, status.steps, strict=True):
        if report_step.kind == "fault" and step.injected_at is not None:
            _detect(report_step, _utc(step.injected_at), checks, events)
        report_step.objective = _objective(step, closed)
    unrecorded = [s.id for s in steps if s.restore_basis == "not recorded"]
    if unrecorded:
        which = "its restore" if len(unrecorded) == 1 else "their restores"
        notes.append(f"the run's history records no restoring event for {', '.join(unrecorded)} "
                     f"(a run of an older gameday): when {which} began is not recorded")

    abort_events = [e for e in events if e.kind in ABORT_KINDS]
    return Report(
        run_id=run_id,
        runbook=status.runbook,
        phase=status.phase,
        closed=closed,
        outcome=status.outcome,
        reason=status.reason,
        hypothesis_held=status.hypothesis_held,
        hypothesis=_hypothesis(closed, status.hypothesis_held),
        restored=status.restored,
        plan_hash=status.plan_hash,
        approvals_required=status.approvals_required,
        started_at=started,
        deadline=_utc(status.deadline),
        ended_at=ended,
        last_seen_at=last_seen,
        duration_seconds=_seconds(started, last_seen) or 0.0,
        phases=_phases(status.phase, started, last_seen, events),
        steps=steps,
        gates=_gates(events),
        decisions=[e for e in events if e.kind in DECISION_KINDS],
        abort=_abort(abort_events),
        probes=[e for e in events if e.kind == "probe" or e.kind.startswith("probe_")],
        probe_checks=checks,
        restore_failures=[e for e in events if e.kind == "restore_failed"],
        events=events,
        notes=notes,
    )


def _hypothesis(closed: bool, held: bool | None) -> Hypothesis:
    if not closed:
        return "in progress"
    if held is None:
        return "not tested"
    return "held" if held else "not held"


def _abort(abort_events: list[Event]) -> AbortInfo | None:
    """The first abort request (its reason without the `by: ` prefix the workflow writes), and
    the requests that came after it."""
    requested = [e for e in abort_events if e.kind == "abort_requested"]
    if not requested:
        return None
    first = requested[0]
    prefix = f"{first.by}: " if first.by else ""
    reason = first.detail.removeprefix(prefix) if prefix else first.detail
    return AbortInfo(at=first.at, by=first.by, reason=reason,
                     repeated=[e for e in abort_events if e.kind == "abort_repeated"])


def _probe_checks(status: GameDayStatus, events: list[Event]) -> list[ProbeCheck]:
    """Every check of the run, oldest first: `probe_checks`, else the `probe` events parsed."""
    recorded: list[ProbeResult] = list(status.probe_checks)
    if recorded:
        return sorted((ProbeCheck(name=r.name, ok=r.ok, at=_utc(r.at), latency_ms=r.latency_ms,
                                  value=r.value) for r in recorded), key=lambda c: c.at)
    checks = []
    for event in events:
        found = PROBE_EVENT.match(event.detail) if event.kind == "probe" else None
        if found:
            checks.append(ProbeCheck(name=found["name"], ok=found["verdict"] == "ok", at=event.at,
                                     latency_ms=float(found["latency"]), value=found["value"],
                                     source="event"))
    return checks


def _detect(step: StepReport, injected: datetime, checks: list[ProbeCheck],
            events: list[Event]) -> None:
    """Fill in the step's time-to-detect: the first failed check after its apply began and
    before it was restored."""
    floor = max((e.at for e in events if e.kind in DETECT_FLOOR_KINDS and e.at < injected),
                default=None)
    until = step.restored_at or step.end
    for check in checks:
        if check.ok or (floor is not None and check.at <= floor) or (until and check.at > until):
            continue
        step.detected_at = check.at
        step.detected_by = f"{check.name}: {check.value}"
        step.detect_seconds = _seconds(injected, check.at)
        return


def _objective(step: StepStatus, closed: bool) -> Objective | None:
    if step.recover_within_seconds is None:
        return None
    return Objective(
        recover_within_seconds=step.recover_within_seconds, met=step.expectation_met,
        verdict=step.expectation or ("not measured" if closed else "measuring"),
        note=step.expectation_note,
        detected_at=_utc(step.failure_detected_at) if step.failure_detected_at else None,
        detect_seconds=step.time_to_detect_seconds,
        recovered_at=_utc(step.recovered_at) if step.recovered_at else None,
        recover_seconds=step.time_to_recover_seconds)


def _phases(current: str, started: datetime, last_seen: datetime,
            events: list[Event]) -> list[PhaseWindow]:
    marks: list[tuple[str, datetime]] = [("planning", started)]
    for event in events:
        if event.kind == "phase" and event.detail != marks[-1][0]:
            marks.append((event.detail, event.at))
    if current != marks[-1][0] and current in CLOSED_PHASES:
        marks.append((current, last_seen))
    windows = []
    for index, (phase, start) in enumerate(marks):
        end = marks[index + 1][1] if index + 1 < len(marks) else max(last_seen, start)
        windows.append(PhaseWindow(phase=phase, start=start, end=end,
                                   seconds=_seconds(start, end) or 0.0))
    return windows


def _fault_step(step: StepStatus, events: list[Event], last_seen: datetime) -> StepReport:
    """A fault as the workflow recorded it: `injected_at`, its first `restoring` event, and
    `restored_at` (set once every unit of the step is restored)."""
    mine = [e for e in events if e.step == step.id]
    failures = [e for e in mine if e.kind == "restore_failed"]
    injected = _utc(step.injected_at) if step.injected_at else None
    restored = _utc(step.restored_at) if step.restored_at else None
    restore_start = next((e.at for e in mine if e.kind == "restoring"), None)
    basis: RestoreBasis | None = None
    if restore_start is not None:
        basis = "event"
    elif restored is not None or failures:
        basis = "not recorded"
    in_effect = injected is not None and restored is None
    end = restored or (last_seen if in_effect or failures else None)
    # an apply cut short by an abort records no injection: only its restore shows
    start = injected or (restore_start if restored is not None or failures else None)
    return StepReport(
        id=step.id, action=step.action, cloud=step.cloud, kind="fault", group=step.group,
        state=step.state, resources=step.resources, zone=step.zone, zone_id=step.zone_id,
        approved_by=list(step.approved_by),
        start=start, end=end if start is not None else None,
        seconds=_seconds(start, end),
        restore_started_at=restore_start, restore_basis=basis, restored_at=restored,
        restore_seconds=_seconds(restore_start, restored),
        in_effect_at_end=in_effect or (bool(failures) and restored is None),
        restore_failures=failures, error=step.error,
    )


def _wait_step(step: StepStatus, events: list[Event], last_seen: datetime,
               duration: timedelta | None, groups: dict[str, int]) -> StepReport:
    """A wait runs from its `waiting` event to the first of: its `duration` (from the runbook),
    a later group's first event, a phase change, an abort, or the end of the run."""
    began = next((e.at for e in events if e.step == step.id and e.kind == "waiting"), None)
    end = None
    if began is not None:
        ends = [last_seen]
        if duration is not None:
            ends.append(began + duration)
        for event in events:
            if event.at < began:
                continue
            later_step = event.step is not None and groups.get(event.step, -1) > step.group
            if later_step or event.kind in ("phase", "abort_requested", "finished"):
                ends.append(event.at)
                break
        end = min(ends)
    return StepReport(
        id=step.id, action=step.action, cloud=step.cloud, kind="wait", group=step.group,
        state=step.state, resources=step.resources, approved_by=list(step.approved_by),
        start=began, end=end, seconds=_seconds(began, end), error=step.error,
    )


def _gates(events: list[Event]) -> list[Gate]:
    gates: dict[str, Gate] = {}
    for event in events:
        if event.kind not in DECISION_KINDS or event.kind == "rejection_refused":
            continue
        if event.kind == "rejected_by":
            if gates:
                latest = list(gates.values())[-1]
                if latest.rejected_by is None:
                    latest.rejected_by, latest.rejected_at = event.by, event.at
            continue
        name = event.step or "start"
        gate = gates.setdefault(name, Gate(gate=name))
        if event.kind == "approval_requested" and gate.requested_at is None:
            gate.requested_at = event.at
        elif event.kind == "approved" and event.by:
            gate.approved_by.append(event.by)
            gate.approvals.append(Approval(by=event.by, at=event.at, fingerprint=event.fingerprint))
            gate.approved_at = event.at
        elif event.kind == "approval_refused":
            gate.refusals += 1
    for gate in gates.values():
        if gate.requested_at and gate.approved_at:
            gate.wait_seconds = max(_seconds(gate.requested_at, gate.approved_at) or 0.0, 0.0)
    return list(gates.values())


# --- output --------------------------------------------------------------------------------------


def render_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


def render_html(report: Report) -> str:
    """One self-contained page (no script, nothing fetched): facts, an SVG timeline, the tables."""
    from gameday.report_page import render_page  # jinja2 is loaded only when a page is made

    return render_page(report)


def write_report(run_id: str, status: GameDayStatus, out: Path | None = None,
                 runbook: Runbook | None = None) -> tuple[Path, Path]:
    """Write `<out or reports/<run_id>.html>` and the JSON beside it; return both paths."""
    html_path = Path(out) if out is not None else Path("reports") / f"{run_id}.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        html_path = html_path.with_name(html_path.name + ".html")
    json_path = html_path.with_suffix(".json")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    report = build_report(run_id, status, runbook)
    html_path.write_text(render_html(report), encoding="utf-8")
    json_path.write_text(render_json(report), encoding="utf-8")
    return html_path, json_path
