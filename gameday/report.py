"""The post-GameDay report: the facts a review needs, as one offline HTML page and as JSON.

Everything here is derived from a `GameDayStatus` (the `status` query, or a run's result), and
optionally from the runbook the run carried out (it gives each step's `duration`, which makes the
start of a scheduled restore exact). Nothing here talks to Temporal or to a cloud.

How the start of a fault's restore is derived, since the workflow records no event for it (the
step's state changes to `restoring` silently); the earliest moment that applies wins, and the
report names the one it used as `restore_basis`:

- `event`: an event of kind `restoring` or `restore_started` for the step, should the workflow
  ever record one;
- `duration`: the step was injected at `injected_at` and held for its runbook `duration`
  (only when the runbook is passed in);
- `abort_requested`: an abort (signal, cancellation or `max_duration`) came while the fault was in
  effect: compensation starts right then;
- `phase_restoring`: the run entered the `restoring` phase while the fault was in effect (a fault
  without a `duration`, held to the end of the run);
- `unknown`: none of the above (typically a fault restored on its own schedule when the runbook
  was not passed in); `restore_started_at` and `restore_seconds` are then null.

The time of "the previous event before `restored`" is deliberately not used as a fallback: in a
parallel group it is usually another step's event (or the step's own injection), which would
report a restore that took minutes when it took a second.

Probe checks come from the status's `probe_checks` (every check the workflow learned of: time,
value, latency); a run recorded before that field existed has them only as `probe` events, whose
time is when the workflow recorded them, not when the check ran (`source: event`). A fault's
time-to-detect is from its `injected_at` (the moment its apply finished) to the first failed check
after the moment before its apply began (the latest injection, restore or phase change before
it); a check that failed while the apply was still running gives a negative time-to-detect.

A report of a run that has not ended says so: its timeline runs to the moment the report was made
(`last_seen_at`), a fault still in effect is shown as held "so far", and the hypothesis is "in
progress". A closed run without a steady state has `hypothesis_held` null: "not tested".
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gameday.runbook import Runbook
from gameday.status import CLOSED_PHASES, Event, GameDayStatus, ProbeResult, StepStatus

REPORT_FORMAT = "gameday-report/1"

RestoreBasis = Literal[
    "event", "duration", "abort_requested", "phase_restoring", "unknown",
]
DECISION_KINDS = ("approval_requested", "approved", "approval_refused", "rejection_refused",
                  "rejected_by")
REFUSAL_KINDS = ("approval_refused", "rejection_refused")
ABORT_KINDS = ("abort_requested", "abort_repeated")
RESTORE_START_KINDS = ("restoring", "restore_started")
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


class StepReport(Model):
    id: str
    action: str
    cloud: str | None
    kind: Literal["fault", "wait"]
    group: int
    state: str
    resources: int
    approved_by: list[str] = []
    start: datetime | None = None
    """A fault: when it took effect (`injected_at`). A wait: when the wait began."""
    end: datetime | None = None
    """A fault: when it was undone (`restored_at`), or the end of the run if it never was."""
    seconds: float | None = None
    restore_started_at: datetime | None = None
    restore_basis: RestoreBasis | None = None
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


def _event_utc(event: Event) -> Event:
    return event.model_copy(update={"at": _utc(event.at)})


def build_report(run_id: str, status: GameDayStatus, runbook: Runbook | None = None,
                 now: datetime | None = None) -> Report:
    """The facts of one run; `runbook`, when given, makes scheduled restore starts exact; `now`
    (default: the clock) is where the timeline of a run that has not ended stops."""
    events = sorted((_event_utc(e) for e in status.events), key=lambda e: e.at)
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
                     f"{_clock(last_seen)} UTC, when this report was made")
    if checks and checks[0].source == "event":
        notes.append("probe times are when the workflow recorded each result (a run recorded "
                     "before every check was kept)")

    phases = _phases(status.phase, started, last_seen, events)
    abort_events = [e for e in events if e.kind in ABORT_KINDS]
    restoring_phase = [e.at for e in events if e.kind == "phase" and e.detail == "restoring"]
    durations: dict[str, timedelta] = {}
    if runbook is not None:
        durations = {s.id: s.duration for s in runbook.all_steps() if s.duration is not None}

    steps = [
        _step(step, events, last_seen, durations.get(step.id), abort_events, restoring_phase,
              {s.id: s.group for s in status.steps})
        for step in status.steps
    ]
    for report_step, step in zip(steps, status.steps, strict=True):
        if report_step.kind == "fault" and step.injected_at is not None:
            _detect(report_step, _utc(step.injected_at), checks, events)
    if any(s.restore_basis == "unknown" for s in steps):
        notes.append("a restore on the step's own schedule starts silently; pass the runbook to "
                     "know when (restore_basis unknown)")

    abort = None
    requested = [e for e in abort_events if e.kind == "abort_requested"]
    if requested:
        first = requested[0]
        prefix = f"{first.by}: " if first.by else ""
        reason = first.detail[len(prefix):] if prefix and first.detail.startswith(prefix) \
            else first.detail
        abort = AbortInfo(at=first.at, by=first.by, reason=reason,
                          repeated=[e for e in abort_events if e.kind == "abort_repeated"])

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
        phases=phases,
        steps=steps,
        gates=_gates(events),
        decisions=[e for e in events if e.kind in DECISION_KINDS],
        abort=abort,
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


def _probe_checks(status: GameDayStatus, events: list[Event]) -> list[ProbeCheck]:
    """Every check of the run, oldest first: `probe_checks`, else the `probe` events parsed."""
    recorded: list[ProbeResult] = list(getattr(status, "probe_checks", None) or [])
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


def _step(step: StepStatus, events: list[Event], last_seen: datetime, duration: timedelta | None,
          aborts: list[Event], restoring_phase: list[datetime],
          groups: dict[str, int]) -> StepReport:
    mine = [e for e in events if e.step == step.id]
    failures = [e for e in mine if e.kind == "restore_failed"]
    if step.cloud is None or step.action == "wait":
        return _wait_step(step, events, mine, last_seen, duration, aborts, groups)

    def first(kind: str) -> datetime | None:
        return next((e.at for e in mine if e.kind == kind), None)

    injected = _utc(step.injected_at) if step.injected_at else first("injected")
    restored = _utc(step.restored_at) if step.restored_at else first("restored")
    limit = restored or last_seen
    candidates: list[tuple[datetime, RestoreBasis]] = []
    for event in mine:
        if event.kind in RESTORE_START_KINDS:
            candidates.append((event.at, "event"))
    if duration is not None and injected is not None:
        candidates.append((injected + duration, "duration"))
    for event in aborts:
        if event.kind == "abort_requested":
            candidates.append((event.at, "abort_requested"))
    candidates += [(at, "phase_restoring") for at in restoring_phase]
    floor = injected  # not injected but restored: applied partly, then undone after an abort
    fitting = [(at, basis) for at, basis in candidates
               if (floor is None or at >= floor) and at <= limit]
    touched = injected is not None or restored is not None or bool(failures)
    restore_start: datetime | None = None
    basis: RestoreBasis | None = None
    if fitting and touched:
        restore_start, basis = min(fitting, key=lambda c: c[0])
    elif restored is not None:
        basis = "unknown"
    in_effect = injected is not None and restored is None
    end = restored or (last_seen if in_effect or failures else None)
    start = injected
    if start is None and (restored is not None or failures):
        start = restore_start  # applied partly, then undone by the abort: only the restore shows
    return StepReport(
        id=step.id, action=step.action, cloud=step.cloud, kind="fault", group=step.group,
        state=step.state, resources=step.resources, approved_by=list(step.approved_by),
        start=start, end=end if start is not None else None,
        seconds=_seconds(start, end),
        restore_started_at=restore_start, restore_basis=basis, restored_at=restored,
        restore_seconds=_seconds(restore_start, restored),
        in_effect_at_end=in_effect or (bool(failures) and restored is None),
        restore_failures=failures, error=step.error,
    )


def _wait_step(step: StepStatus, events: list[Event], mine: list[Event], last_seen: datetime,
               duration: timedelta | None, aborts: list[Event],
               groups: dict[str, int]) -> StepReport:
    began = next((e.at for e in mine if e.kind == "waiting"), None)
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


# --- JSON ----------------------------------------------------------------------------------------


def render_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

OUTCOME_COLOURS = {
    "completed": ("#15803d", "#dcfce7"),
    "aborted": ("#b45309", "#fef3c7"),
    "rejected": ("#4b5563", "#e5e7eb"),
    "failed": ("#b91c1c", "#fee2e2"),
}
PHASE_COLOURS = {
    "planning": "#94a3b8",
    "awaiting_approval": "#a78bfa",
    "running": "#6366f1",
    "restoring": "url(#restoring)",
    "completed": "#16a34a",
    "aborted": "#d97706",
    "rejected": "#6b7280",
    "failed": "#dc2626",
}
CLOUD_COLOURS = {"aws": "#ea8c00", "gcp": "#1a73e8", "azure": "#0089d6"}
MARKERS = {
    # kind: (shape, fill, lane label)
    "approved": ("circle", "#16a34a"),
    "approval_requested": ("ring", "#7c3aed"),
    "approval_refused": ("cross", "#ea580c"),
    "rejection_refused": ("cross", "#ea580c"),
    "rejected_by": ("square", "#4b5563"),
    "abort_requested": ("triangle", "#dc2626"),
    "abort_repeated": ("triangle", "#f87171"),
}


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clock(moment: datetime | None, date: bool = False) -> str:
    if moment is None:
        return "—"
    moment = _utc(moment)
    if date:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _offset(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 60:
        return f"+{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"+{hours}h{minutes:02d}m" if not secs else f"+{hours}h{minutes:02d}m{secs:02d}s"
    return f"+{minutes}m" if not secs else f"+{minutes}m{secs:02d}s"


HYPOTHESIS_CLASSES = {"held": "ok", "not held": "bad", "not tested": "muted", "in progress": "muted"}


def _hypothesis_html(report: Report) -> str:
    return f'<span class="{HYPOTHESIS_CLASSES[report.hypothesis]}">{_e(report.hypothesis)}</span>'


def _yes_no(value: bool | None, good: bool = True) -> str:
    if value is None:
        return '<span class="muted">unknown</span>'
    ok = value == good
    return f'<span class="{"ok" if ok else "bad"}">{"yes" if value else "no"}</span>'


class _Scale:
    LEFT = 200
    RIGHT = 100
    WIDTH = 1200

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.seconds = max((end - start).total_seconds(), 1.0)
        self.plot = self.WIDTH - self.LEFT - self.RIGHT

    def x(self, moment: datetime) -> float:
        offset = (moment - self.start).total_seconds()
        return round(self.LEFT + max(0.0, min(offset, self.seconds)) / self.seconds * self.plot, 2)

    def ticks(self) -> list[float]:
        for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                     21600, 43200, 86400):
            if self.seconds / step <= 10:
                break
        count = int(self.seconds // step)
        return [i * step for i in range(count + 1)]


def _svg_timeline(report: Report) -> str:
    scale = _Scale(report.started_at, report.last_seen_at)
    y = 44
    body: list[str] = []
    backs: list[str] = []

    def lane_label(title: str, sub: str | None, top: float, height: float) -> None:
        middle = top + height / 2
        if sub:
            body.append(f'<text class="lane" x="12" y="{middle - 3:.1f}">{_e(title)}</text>')
            body.append(f'<text class="sub" x="12" y="{middle + 11:.1f}">{_e(sub)}</text>')
        else:
            body.append(f'<text class="lane" x="12" y="{middle + 4:.1f}">{_e(title)}</text>')

    def lane_background(top: float, height: float, index: int) -> None:
        fill = "#f8fafc" if index % 2 == 0 else "#ffffff"
        backs.append(f'<rect x="0" y="{top}" width="{scale.WIDTH}" height="{height}" '
                     f'fill="{fill}"/>')

    # phases
    height = 36
    lane_background(y, height, 0)
    lane_label("Phases", None, y, height)
    for window in report.phases:
        x0, x1 = scale.x(window.start), scale.x(window.end)
        width = round(x1 - x0, 2)
        colour = PHASE_COLOURS.get(window.phase, "#64748b")
        title = f"{window.phase}: {_clock(window.start)} → {_clock(window.end)} " \
                f"({_span(window.seconds)})"
        if window.phase in CLOSED_PHASES and width < 4:
            body.append(
                f'<g data-phase="{_e(window.phase)}" data-x="{x0}"><title>{_e(title)}</title>'
                f'<rect x="{x0 - 2}" y="{y + 4}" width="4" height="{height - 8}" rx="2" '
                f'fill="{colour}"/>'
                f'<text class="flag" x="{x0 + 6}" y="{y + height / 2 + 4:.1f}" '
                f'fill="{colour}">{_e(window.phase)}</text></g>')
            continue
        body.append(
            f'<rect data-phase="{_e(window.phase)}" x="{x0}" y="{y + 4}" width="{width}" '
            f'height="{height - 8}" rx="3" fill="{colour}"><title>{_e(title)}</title></rect>')
        label = window.phase.replace("_", " ")
        if width > 7 * len(label) + 8:
            body.append(f'<text class="band" x="{x0 + width / 2:.2f}" y="{y + height / 2 + 4:.1f}" '
                        f'text-anchor="middle">{_e(label)}</text>')
    y += height

    # decisions: approvals, refusals, rejections, aborts
    decisions = report.decisions + [e for e in report.events if e.kind in ABORT_KINDS]
    height = 34
    lane_background(y, height, 1)
    lane_label("Decisions", "approvals · aborts", y, height)
    for event in sorted(decisions, key=lambda e: e.at):
        shape, colour = MARKERS.get(event.kind, ("circle", "#64748b"))
        body.append(_marker(scale.x(event.at), y + height / 2, shape, colour, event))
    y += height

    index = 2
    if report.probe_checks:
        height = 30
        lane_background(y, height, index)
        failed = sum(1 for c in report.probe_checks if not c.ok)
        lane_label("Probes", f"{len(report.probe_checks)} checks, {failed} failed", y, height)
        for check in report.probe_checks:
            body.append(_check_marker(scale.x(check.at), y + height / 2, check))
        y += height
        index += 1
    elif report.probes:
        height = 30
        lane_background(y, height, index)
        lane_label("Probes", f"{len(report.probes)} results", y, height)
        for event in report.probes:
            body.append(_marker(scale.x(event.at), y + height / 2, "dot", "#0f766e", event))
        y += height
        index += 1

    # steps
    for step in report.steps:
        height = 40
        lane_background(y, height, index)
        index += 1
        sub = step.action if step.kind == "wait" else f"{step.cloud} · {step.action}"
        lane_label(step.id, sub, y, height)
        if step.start is None or step.end is None:
            note = "not started" if step.state in ("pending", "skipped") else step.state
            body.append(f'<text class="sub" x="{scale.LEFT + 6}" y="{y + height / 2 + 4:.1f}">'
                        f'{_e(note)}</text>')
            y += height
            continue
        x0, x1 = scale.x(step.start), scale.x(step.end)
        width = round(max(x1 - x0, 0.0), 2)
        if step.kind == "wait":
            title = f"{step.id}: waited {_clock(step.start)} → {_clock(step.end)} " \
                    f"({_span(step.seconds)})"
            body.append(
                f'<rect data-step="{_e(step.id)}" data-kind="wait" x="{x0}" y="{y + 12}" '
                f'width="{width}" height="{height - 24}" rx="3" fill="#e2e8f0" stroke="#94a3b8" '
                f'stroke-dasharray="4 3"><title>{_e(title)}</title></rect>')
            y += height
            continue
        colour = CLOUD_COLOURS.get(step.cloud or "", "#64748b")
        title = (f"{step.id} ({step.cloud}, {step.action}, {step.resources} resources): in effect "
                 f"{_clock(step.start)} → "
                 + ("still in effect" if step.in_effect_at_end else _clock(step.end))
                 + f" ({_span(step.seconds)})")
        stroke = ' stroke="#b91c1c" stroke-width="2"' if step.restore_failures else ""
        body.append(
            f'<rect data-step="{_e(step.id)}" data-kind="fault" data-cloud="{_e(step.cloud)}" '
            f'x="{x0}" y="{y + 8}" width="{width}" height="{height - 16}" rx="3" '
            f'fill="{colour}"{stroke}><title>{_e(title)}</title></rect>')
        if step.restore_started_at is not None:
            r0 = scale.x(step.restore_started_at)
            r1 = scale.x(step.restored_at) if step.restored_at else x1
            rtitle = (f"{step.id}: restoring from {_clock(step.restore_started_at)} "
                      f"({step.restore_basis}) → "
                      + (_clock(step.restored_at) if step.restored_at else "not restored")
                      + (f" ({_span(step.restore_seconds)})" if step.restore_seconds is not None
                         else ""))
            body.append(
                f'<rect data-step="{_e(step.id)}" data-segment="restoring" x="{r0}" y="{y + 8}" '
                f'width="{round(max(r1 - r0, 0.0), 2)}" height="{height - 16}" rx="3" '
                f'fill="url(#restoring)"><title>{_e(rtitle)}</title></rect>')
        label = step.id if step.resources == 0 else f"{step.id} · {step.resources} res."
        if width > 7 * len(label) + 10:
            body.append(f'<text class="bar" x="{x0 + 6}" y="{y + height / 2 + 4:.1f}">'
                        f'{_e(label)}</text>')
        if step.in_effect_at_end:
            what = "not restored" if step.restore_failures or report.closed else "in effect"
            body.append(f'<g data-marker="in_effect"><title>{_e(step.id)}: {_e(what)} at '
                        f'{_e(_clock(step.end))}</title>'
                        f'<path d="M{x1 + 8} {y + 8} l8 {(height - 16) / 2} '
                        f'l-8 {(height - 16) / 2} z" fill="#b91c1c"/>'
                        f'<text class="flag" x="{x1 + 20}" y="{y + height / 2 + 4:.1f}" '
                        f'fill="#b91c1c">{_e(what)}</text></g>')
        for failure in step.restore_failures:
            body.append(_marker(scale.x(failure.at), y + height / 2, "cross", "#b91c1c", failure))
        if step.detected_at is not None:
            dx = scale.x(step.detected_at)
            body.append(f'<g data-marker="detected" data-step="{_e(step.id)}"><title>{_e(step.id)}: '
                        f'detected {_e(_detect_text(step.detect_seconds))} by '
                        f'{_e(step.detected_by)}</title><line x1="{dx}" y1="{y + 4}" x2="{dx}" '
                        f'y2="{y + height - 4}" stroke="#dc2626" stroke-width="2"/></g>')
        y += height

    top, bottom = 44, y
    # abort line across all lanes
    overlay: list[str] = []
    if not report.closed:
        nx = scale.x(report.last_seen_at)
        overlay.append(
            f'<line data-marker="in_progress" x1="{nx}" y1="{top - 6}" x2="{nx}" y2="{bottom}" '
            f'stroke="#1d4ed8" stroke-width="1.5" stroke-dasharray="2 3"><title>in progress: '
            f'report made at {_e(_clock(report.last_seen_at))} UTC</title></line>')
        overlay.append(f'<text class="flag" x="{nx}" y="{bottom + 14}" text-anchor="end" '
                       f'fill="#1d4ed8">in progress ({_e(_clock(report.last_seen_at))})</text>')
    if report.abort is not None:
        ax = scale.x(report.abort.at)
        overlay.append(
            f'<line data-marker="abort" x1="{ax}" y1="{top - 6}" x2="{ax}" y2="{bottom}" '
            f'stroke="#dc2626" stroke-width="1.5" stroke-dasharray="5 4">'
            f'<title>{_e("abort requested by " + (report.abort.by or "?") + ": " + report.abort.reason)}'
            f'</title></line>')
        overlay.append(f'<text class="flag" x="{ax}" y="{bottom + 14}" text-anchor="middle" '
                       f'fill="#dc2626">abort by {_e(report.abort.by or "?")}</text>')
    # axis
    axis = [f'<line x1="{scale.LEFT}" y1="{top}" x2="{scale.LEFT + scale.plot}" y2="{top}" '
            f'stroke="#94a3b8"/>']
    grid = []
    for tick in scale.ticks():
        tx = round(scale.LEFT + tick / scale.seconds * scale.plot, 2)
        grid.append(f'<line x1="{tx}" y1="{top - 4}" x2="{tx}" y2="{bottom}" stroke="#e2e8f0"/>')
        axis.append(f'<text class="tick" x="{tx}" y="{top - 10}" text-anchor="middle">'
                    f'{_e(_offset(tick))}</text>')
    axis.append(f'<text class="tick" x="12" y="{top - 10}">T0 = {_e(_clock(report.started_at))} '
                f'UTC</text>')
    total = bottom + 24
    defs = ('<defs><pattern id="restoring" width="8" height="8" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="8" height="8" fill="#fcd34d"/>'
            '<rect width="4" height="8" fill="#b45309"/></pattern></defs>')
    style = ('<style>text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}'
             '.lane{font-size:13px;font-weight:600;fill:#0f172a}.sub{font-size:11px;fill:#64748b}'
             '.tick{font-size:11px;fill:#64748b}.band{font-size:12px;fill:#fff;font-weight:600;paint-order:stroke;'
             'stroke:rgba(15,23,42,.45);stroke-width:2px}'
             '.bar{font-size:12px;fill:#fff;font-weight:600}.flag{font-size:11px;font-weight:700;paint-order:stroke;stroke:#fff;stroke-width:3px}'
             '</style>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
            f'aria-label="GameDay timeline" viewBox="0 0 {scale.WIDTH} {total}" '
            f'width="{scale.WIDTH}" height="{total}">' + style + defs
            + "".join(backs + grid + body + axis) + "".join(overlay) + "</svg>")


def _check_marker(x: float, y: float, check: ProbeCheck) -> str:
    latency = f" in {check.latency_ms:.0f} ms" if check.latency_ms is not None else ""
    title = f"{_clock(check.at)} {check.name}: {'ok' if check.ok else 'FAILED'}, {check.value}{latency}"
    colour = "#0f766e" if check.ok else "#dc2626"
    return (f'<circle data-marker="probe" data-ok="{str(check.ok).lower()}" cx="{x}" cy="{y}" '
            f'r="{3 if check.ok else 4}" fill="{colour}"><title>{_e(title)}</title></circle>')


def _detect_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0:
        return f"{_span(-seconds)} before the apply ended"
    return f"after {_span(seconds)}"


def _marker(x: float, y: float, shape: str, colour: str, event: Event) -> str:
    title = f"{_clock(event.at)} {event.kind}" + (f" by {event.by}" if event.by else "") \
        + (f" [{event.step}]" if event.step else "") + f": {event.detail}"
    tip = f"<title>{_e(title)}</title>"
    attrs = f'data-marker="{_e(event.kind)}"'
    if shape == "circle" or shape == "dot":
        r = 6 if shape == "circle" else 4
        return (f'<circle {attrs} cx="{x}" cy="{y}" r="{r}" fill="{colour}" stroke="#fff" '
                f'stroke-width="1.5">{tip}</circle>')
    if shape == "ring":
        return (f'<circle {attrs} cx="{x}" cy="{y}" r="6" fill="#fff" stroke="{colour}" '
                f'stroke-width="2">{tip}</circle>')
    if shape == "square":
        return (f'<rect {attrs} x="{x - 6}" y="{y - 6}" width="12" height="12" fill="{colour}">'
                f'{tip}</rect>')
    if shape == "triangle":
        return (f'<path {attrs} d="M{x} {y - 8} L{x + 8} {y + 6} L{x - 8} {y + 6} Z" '
                f'fill="{colour}">{tip}</path>')
    return (f'<path {attrs} d="M{x - 6} {y - 6} L{x + 6} {y + 6} M{x + 6} {y - 6} L{x - 6} {y + 6}" '
            f'stroke="{colour}" stroke-width="3" stroke-linecap="round">{tip}</path>')


CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f1f5f9;color:#0f172a;font:14px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#0f172a;color:#f8fafc;padding:22px 32px}
header h1{margin:0;font-size:24px;font-weight:700;display:flex;align-items:center;gap:14px;
flex-wrap:wrap}
header .run{color:#94a3b8;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
font-size:13px;margin-top:4px}
.badge{display:inline-block;padding:3px 12px;border-radius:999px;font-size:13px;font-weight:700;
letter-spacing:.04em;text-transform:uppercase;border:2px solid currentColor}
main{padding:24px 32px;max-width:1340px;margin:0 auto}
header>div{max-width:1276px;margin:0 auto}
.scroll{overflow-x:auto}
td.err{min-width:180px;max-width:320px;overflow-wrap:anywhere}
td .act{display:block;color:#64748b;font-size:11px;font-family:system-ui,sans-serif}
.reason{margin:14px 0 0;color:#e2e8f0;font-size:15px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(215px,1fr));gap:12px;
margin-bottom:20px}
.fact{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(15,23,42,.08)}
.fact .k{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#64748b}
.fact .v{font-size:15px;font-weight:600;margin-top:2px}
.fact .v .mono{word-break:break-all;white-space:normal}
section{background:#fff;border-radius:10px;padding:16px 20px;margin-bottom:20px;
box-shadow:0 1px 2px rgba(15,23,42,.08)}
section h2{margin:0 0 12px;font-size:16px}
.timeline{width:100%;height:auto;display:block}
.legend{display:flex;gap:16px;flex-wrap:wrap;font-size:12px;color:#475569;margin-top:8px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:14px;height:10px;border-radius:2px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;font-weight:600;color:#475569;border-bottom:2px solid #e2e8f0;padding:6px 8px;
white-space:nowrap}
td{border-bottom:1px solid #f1f5f9;padding:6px 8px;vertical-align:top}
tr:hover td{background:#f8fafc}
td.t,td.mono,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;
white-space:nowrap}
.kind{display:inline-block;padding:0 8px;border-radius:4px;background:#e2e8f0;font-size:12px;
font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.kind.good{background:#dcfce7;color:#166534}.kind.warn{background:#ffedd5;color:#9a3412}
.kind.bad{background:#fee2e2;color:#991b1b}.kind.info{background:#e0e7ff;color:#3730a3}
.ok{color:#15803d;font-weight:700}.bad{color:#b91c1c;font-weight:700}.muted{color:#94a3b8}
.callout{border-left:4px solid;padding:10px 14px;border-radius:6px;margin-bottom:20px}
.callout.abort{border-color:#d97706;background:#fffbeb}
.callout.fail{border-color:#dc2626;background:#fef2f2}
.callout h3{margin:0 0 4px;font-size:14px}
.notes{color:#64748b;font-size:12px}
footer{color:#94a3b8;font-size:12px;padding:0 32px 24px;max-width:1340px;margin:0 auto}
"""

KIND_CLASS = {
    "approved": "good", "injected": "info", "restored": "good", "completed": "good",
    "finished": "info", "approval_refused": "warn", "rejection_refused": "warn",
    "abort_requested": "bad", "abort_repeated": "bad", "aborted": "warn", "rejected_by": "warn",
    "rejected": "warn", "failed": "bad", "restore_failed": "bad", "phase": "info",
}


def _kind(kind: str) -> str:
    return f'<span class="kind {KIND_CLASS.get(kind, "")}">{_e(kind)}</span>'


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _td(value: object, cls: str | None = None, raw: bool = False) -> str:
    text = str(value) if raw else _e(value if value not in (None, "") else "—")
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _approvers_cell(gate: Gate) -> str:
    """Who approved, each with the fingerprint of the key that signed (an auditor checks it with
    `ssh-keygen -l -f their.pub`)."""
    return "<br>".join(
        _e(a.by) + (f'<span class="act">{_e(a.fingerprint)}</span>' if a.fingerprint else "")
        for a in gate.approvals)


def render_html(report: Report) -> str:
    outcome = report.outcome or report.phase
    fg, bg = OUTCOME_COLOURS.get(outcome, ("#1d4ed8", "#dbeafe"))
    badge = (f'<span class="badge" data-outcome="{_e(outcome)}" style="color:{fg};background:{bg}">'
             f'{_e(outcome if report.closed else "in progress: " + report.phase)}</span>')
    faults = [s for s in report.steps if s.kind == "fault"]
    injected = [s for s in faults if s.start is not None]
    facts = [
        ("Started (UTC)", _e(_clock(report.started_at, date=True))),
        ("Ended (UTC)", _e(_clock(report.ended_at, date=True)) if report.ended_at
         else '<span class="muted">still running</span>'),
        ("Duration", _e(_span(report.duration_seconds)
                        + ("" if report.closed else " so far (in progress)"))),
        ("Hypothesis", _hypothesis_html(report)),
        ("Every fault restored", _yes_no(report.restored) if report.closed
         else '<span class="muted">in progress</span>'),
        ("Faults injected", _e(f"{len(injected)} of {len(faults)}")),
        ("Resources touched", _e(sum(s.resources for s in injected))),
        ("Deadline (UTC)", _e(_clock(report.deadline, date=True))),
        ("Plan", f'<span class="mono">{_e(report.plan_hash or "—")}</span>'),
    ]
    facts_html = "".join(f'<div class="fact"><div class="k">{_e(k)}</div><div class="v">{v}</div>'
                         f"</div>" for k, v in facts)

    callouts = []
    if report.abort is not None:
        repeats = (f" (repeated {len(report.abort.repeated)} time(s))"
                   if report.abort.repeated else "")
        callouts.append(
            f'<div class="callout abort"><h3>Aborted by {_e(report.abort.by or "unknown")} at '
            f'{_e(_clock(report.abort.at))} UTC{_e(repeats)}</h3>{_e(report.abort.reason)}</div>')
    for failure in report.restore_failures:
        callouts.append(
            f'<div class="callout fail"><h3>Restore failed at {_e(_clock(failure.at))} UTC'
            f'{_e(" for " + failure.step if failure.step else "")}</h3>{_e(failure.detail)}</div>')

    legend_items = [(PHASE_COLOURS[p], p.replace("_", " ")) for p in
                    ("planning", "awaiting_approval", "running")]
    legend_items += [(c, k) for k, c in CLOUD_COLOURS.items()
                     if any(s.cloud == k for s in faults)]
    legend = "".join(f'<span><i class="sw" style="background:{c}"></i>{_e(label)}</span>'
                     for c, label in legend_items)
    legend += ('<span><i class="sw" style="background:repeating-linear-gradient(45deg,#b45309 0 3px,'
               '#fcd34d 3px 6px)"></i>restoring</span>'
               '<span><i class="sw" style="background:#16a34a;border-radius:50%"></i>approved</span>'
               '<span><i class="sw" style="background:#fff;border:2px solid #7c3aed;'
               'border-radius:50%"></i>approval requested</span>'
               '<span><i class="sw" style="background:#ea580c"></i>refused</span>'
               '<span><i class="sw" style="background:#4b5563"></i>rejected</span>'
               '<span><i class="sw" style="background:#dc2626"></i>abort</span>')

    step_rows = []
    for step in report.steps:
        restore_start = (f'{_e(_clock(step.restore_started_at))}<span class="act">'
                         f"{_e(step.restore_basis)}</span>" if step.restore_started_at
                         else _e(step.restore_basis or "—"))
        state_cls = {"restored": "good", "failed": "bad", "skipped": "", "active": "warn",
                     "restoring": "warn"}.get(step.state, "")
        step_rows.append([
            _td(f'{_e(step.id)}<span class="act">{_e(step.action)} · group {step.group}</span>',
                "mono", raw=True),
            _td(step.cloud or "—"),
            _td(f'<span class="kind {state_cls}">{_e(step.state)}</span>', raw=True),
            _td(step.resources), _td(", ".join(step.approved_by) or None),
            _td(_clock(step.start) if step.start else None, "t"),
            _td(restore_start, "t", raw=True),
            _td(_clock(step.restored_at) if step.restored_at else
                ("not restored" if step.in_effect_at_end else None), "t"),
            _td(_span(step.seconds) + (" so far" if step.in_effect_at_end and not report.closed
                                       and step.seconds is not None else ""), "t"),
            _td(_span(step.restore_seconds), "t"),
            _td(f"{_detect_text(step.detect_seconds)}<span class=\"act\">{_e(step.detected_by)}"
                "</span>" if step.detected_at else None, "t", raw=step.detected_at is not None),
            _td(step.error, "err"),
        ])
    steps_table = _table(["step", "cloud", "state", "resources", "approved by",
                          "start", "restore from", "restored", "held", "restore took", "detected",
                          "error"],
                         step_rows, "no steps")

    gate_rows = [[
        _td(g.gate, "mono"), _td(_clock(g.requested_at) if g.requested_at else None, "t"),
        _td(_approvers_cell(g), raw=True) if g.approvals else _td(", ".join(g.approved_by) or None),
        _td(_clock(g.approved_at) if g.approved_at else None, "t"),
        _td(_span(g.wait_seconds), "t"),
        _td(f"{g.rejected_by} at {_clock(g.rejected_at)}" if g.rejected_by else None),
        _td(g.refusals),
    ] for g in report.gates]
    gates_table = _table(["gate", "requested", "approved by", "approved at", "waited", "rejected by",
                          "refused approvals"],
                         gate_rows, "no approval was requested")
    decision_rows = [[
        _td(_clock(e.at), "t"), _td(_kind(e.kind), raw=True), _td(e.by), _td(e.step, "mono"),
        _td(e.detail),
    ] for e in report.decisions + ([] if report.abort is None else
                                   [e for e in report.events if e.kind in ABORT_KINDS])]
    decisions_table = _table(["time (UTC)", "kind", "by", "step", "detail"],
                             sorted(decision_rows, key=lambda r: r[0]), "no decisions recorded")

    probes_html = ""
    if report.probe_checks:
        detected = [s for s in report.steps if s.detected_at is not None]
        detect_rows = [[_td(s.id, "mono"), _td(_clock(s.start), "t"), _td(_clock(s.detected_at), "t"),
                        _td(_detect_text(s.detect_seconds), "t"), _td(s.detected_by)]
                       for s in detected]
        detect_html = ("<h3>Time to detect</h3>" + _table(
            ["step", "in effect at", "first failed check", "time to detect", "probe"], detect_rows,
            "") if detect_rows else "")
        check_rows = [[
            _td(_clock(c.at), "t"), _td(_offset((c.at - report.started_at).total_seconds()), "t"),
            _td(c.name, "mono"),
            _td(f'<span class="kind {"good" if c.ok else "bad"}">{"ok" if c.ok else "FAILED"}</span>',
                raw=True),
            _td(c.value), _td(f"{c.latency_ms:.0f} ms" if c.latency_ms is not None else None, "t"),
        ] for c in report.probe_checks]
        probes_html = ("<section><h2>Steady-state probes</h2>" + detect_html
                       + _table(["time (UTC)", "T+", "probe", "result", "value", "latency"],
                                check_rows, "") + "</section>")
    elif report.probes:
        probe_rows = [[_td(_clock(e.at), "t"), _td(_offset((e.at - report.started_at)
                                                           .total_seconds()), "t"),
                       _td(e.step, "mono"), _td(e.detail)] for e in report.probes]
        probes_html = ("<section><h2>Steady-state probes</h2>"
                       + _table(["time (UTC)", "T+", "step", "result"], probe_rows, "")
                       + "</section>")

    event_rows = [[
        _td(_clock(e.at), "t"), _td(_offset((e.at - report.started_at).total_seconds()), "t"),
        _td(_kind(e.kind), raw=True), _td(e.step, "mono"), _td(e.by), _td(e.detail),
    ] for e in report.events]
    events_table = _table(["time (UTC)", "T+", "kind", "step", "by", "detail"], event_rows,
                          "no events")
    notes = "".join(f"<p class=\"notes\">{_e(n)}</p>" for n in report.notes)
    reason = f'<p class="reason">{_e(report.reason)}</p>' if report.reason else ""

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GameDay report: {_e(report.runbook)} ({_e(outcome)})</title>
<style>{CSS}</style>
</head>
<body>
<header><div>
<h1><span class="runbook">{_e(report.runbook)}</span> {badge}</h1>
<div class="run">run {_e(report.run_id)}</div>
{reason}
</div></header>
<main>
<div class="facts">{facts_html}</div>
{"".join(callouts)}
<section><h2>Timeline</h2>
{_svg_timeline(report)}
<div class="legend">{legend}</div>
{notes}
</section>
<section><h2>Steps</h2>{steps_table}</section>
<section><h2>Approvals</h2>{gates_table}<h2 style="margin-top:16px">Decisions</h2>{decisions_table}
</section>
{probes_html}
<section><h2>Event log</h2>{events_table}</section>
</main>
<footer>gameday post-GameDay report · {_e(report.format)} · all times UTC</footer>
</body>
</html>
"""


# --- files ---------------------------------------------------------------------------------------


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
