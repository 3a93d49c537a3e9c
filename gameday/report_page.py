"""The report's HTML page: the SVG timeline's geometry, computed here, drawn by the jinja2
template `templates/report.html.j2` (autoescaped: every text from a run is escaped there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import jinja2

from gameday.report import ABORT_KINDS, Report, StepReport
from gameday.status import CLOSED_PHASES, Event

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
MARKERS = {  # kind: (shape, colour)
    "approved": ("circle", "#16a34a"),
    "approval_requested": ("ring", "#7c3aed"),
    "approval_refused": ("cross", "#ea580c"),
    "rejection_refused": ("cross", "#ea580c"),
    "rejected_by": ("square", "#4b5563"),
    "abort_requested": ("triangle", "#dc2626"),
    "abort_repeated": ("triangle", "#f87171"),
}
KIND_CLASS = {
    "approved": "good", "injected": "info", "restored": "good", "completed": "good",
    "finished": "info", "approval_refused": "warn", "rejection_refused": "warn",
    "abort_requested": "bad", "abort_repeated": "bad", "aborted": "warn", "rejected_by": "warn",
    "rejected": "warn", "failed": "bad", "restore_failed": "bad", "phase": "info",
}
VERDICT_CLASS = {"met": "good", "missed": "bad", "measuring": "info"}
"""A recovery objective's verdict as a coloured tag; `not measured` stays grey."""
STATE_CLASS = {"restored": "good", "failed": "bad", "active": "warn", "restoring": "warn"}
HYPOTHESIS_CLASS = {"held": "ok", "not held": "bad", "not tested": "muted", "in progress": "muted"}


# --- formatting ----------------------------------------------------------------------------------


def clock(moment: datetime | None, date: bool = False) -> str:
    """`14:03:07.250`, or with `date` `2026-03-10 14:03:07`, in UTC; `—` for no moment."""
    if moment is None:
        return "—"
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if date:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def span(seconds: float | None) -> str:
    """A length a reader takes in at a glance: `4.2s`, `42s`, `3m 05s`, `2h 10m`."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def offset(seconds: float) -> str:
    """Time since the run started, as on the timeline's axis: `+45s`, `+2m30s`, `+1h05m`."""
    whole = int(round(seconds))
    if whole < 60:
        return f"+{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"+{hours}h{minutes:02d}m" if not secs else f"+{hours}h{minutes:02d}m{secs:02d}s"
    return f"+{minutes}m" if not secs else f"+{minutes}m{secs:02d}s"


def detect_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0:
        return f"{span(-seconds)} before the apply ended"
    return f"after {span(seconds)}"


def event_title(event: Event) -> str:
    return (f"{clock(event.at)} {event.kind}" + (f" by {event.by}" if event.by else "")
            + (f" [{event.step}]" if event.step else "") + f": {event.detail}")


# --- the timeline's geometry ---------------------------------------------------------------------


class Scale:
    """Maps moments of the run onto the plot's x axis, left of which the lane labels sit."""

    LEFT = 200
    RIGHT = 100
    WIDTH = 1200

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.seconds = max((end - start).total_seconds(), 1.0)
        self.plot = self.WIDTH - self.LEFT - self.RIGHT

    def x(self, moment: datetime) -> float:
        since = (moment - self.start).total_seconds()
        return round(self.LEFT + max(0.0, min(since, self.seconds)) / self.seconds * self.plot, 2)

    def ticks(self) -> list[float]:
        for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                     21600, 43200, 86400):
            if self.seconds / step <= 10:
                break
        return [i * step for i in range(int(self.seconds // step) + 1)]


@dataclass
class Lane:
    top: float
    height: float
    fill: str
    title: str
    sub: str | None

    @property
    def middle(self) -> float:
        return self.top + self.height / 2


@dataclass
class Band:
    """A phase: a bar, or for a closing phase of no width a flag at its moment."""

    phase: str
    x: float
    width: float
    colour: str
    title: str
    label: str | None
    flag: bool


@dataclass
class Marker:
    kind: str
    shape: str
    x: float
    y: float
    colour: str
    title: str


@dataclass
class Check:
    x: float
    y: float
    ok: bool
    title: str


@dataclass
class Segment:
    """Part of a step's bar: from `x`, `width` long."""

    x: float
    width: float
    title: str


@dataclass
class Flag:
    """A mark at `x` on a step's lane: the fault still in effect, or its detection."""

    x: float
    title: str
    text: str = ""


@dataclass
class Bar:
    """A step's lane: a wait, a fault in effect (with its restore, detection, failures), or a
    note that it never started."""

    step: str
    kind: str
    cloud: str | None
    lane: Lane
    x: float = 0.0
    width: float = 0.0
    colour: str = ""
    title: str = ""
    note: str | None = None
    label: str | None = None
    failed: bool = False
    restoring: Segment | None = None
    in_effect: Flag | None = None
    detected: Flag | None = None
    failures: list[Marker] = field(default_factory=list)


@dataclass
class Rule:
    """A line across every lane: the abort, or the moment a live run's report was made."""

    marker: str
    x: float
    colour: str
    dash: str
    title: str
    caption: str
    anchor: str


@dataclass
class Timeline:
    width: int
    height: float
    top: float
    bottom: float
    left: float
    plot_end: float
    lanes: list[Lane]
    bands: list[Band]
    markers: list[Marker]
    checks: list[Check]
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    rules: list[Rule]
    origin: str


def timeline(report: Report) -> Timeline:
    """Where everything on the timeline goes: a lane of phases, of decisions, of probes, then one
    per step, on one time axis from the start of the run to `last_seen_at`."""
    scale = Scale(report.started_at, report.last_seen_at)
    lanes: list[Lane] = []

    def lane(title: str, sub: str | None, height: float) -> Lane:
        top = lanes[-1].top + lanes[-1].height if lanes else 44
        lanes.append(Lane(top, height, "#f8fafc" if len(lanes) % 2 == 0 else "#ffffff", title, sub))
        return lanes[-1]

    lane("Phases", None, 36)
    bands = []
    for window in report.phases:
        x0 = scale.x(window.start)
        width = round(scale.x(window.end) - x0, 2)
        label = window.phase.replace("_", " ")
        bands.append(Band(
            phase=window.phase, x=x0, width=width, colour=PHASE_COLOURS.get(window.phase, "#64748b"),
            title=f"{window.phase}: {clock(window.start)} → {clock(window.end)} "
                  f"({span(window.seconds)})",
            label=label if width > 7 * len(label) + 8 else None,
            flag=window.phase in CLOSED_PHASES and width < 4))

    decisions = lane("Decisions", "approvals · aborts", 34)
    markers = []
    for event in decision_log(report):
        shape, colour = MARKERS.get(event.kind, ("circle", "#64748b"))
        markers.append(Marker(event.kind, shape, scale.x(event.at), decisions.middle, colour,
                              event_title(event)))
    checks: list[Check] = []
    if report.probe_checks:
        failed = sum(1 for c in report.probe_checks if not c.ok)
        probes = lane("Probes", f"{len(report.probe_checks)} checks, {failed} failed", 30)
        for check in report.probe_checks:
            latency = f" in {check.latency_ms:.0f} ms" if check.latency_ms is not None else ""
            checks.append(Check(scale.x(check.at), probes.middle, check.ok,
                                f"{clock(check.at)} {check.name}: {'ok' if check.ok else 'FAILED'}, "
                                f"{check.value}{latency}"))
    elif report.probes:
        probes = lane("Probes", f"{len(report.probes)} results", 30)
        markers += [Marker(e.kind, "dot", scale.x(e.at), probes.middle, "#0f766e", event_title(e))
                    for e in report.probes]

    bars = []
    for step in report.steps:
        sub = step.action if step.kind == "wait" else f"{step.cloud} · {step.action}"
        bars.append(_step_bar(step, lane(step.id, sub, 40), scale, report.closed))

    rules = []
    if not report.closed:
        made = clock(report.last_seen_at)
        rules.append(Rule("in_progress", scale.x(report.last_seen_at), "#1d4ed8", "2 3",
                          f"in progress: report made at {made} UTC", f"in progress ({made})", "end"))
    if report.abort is not None:
        by = report.abort.by or "?"
        rules.append(Rule("abort", scale.x(report.abort.at), "#dc2626", "5 4",
                          f"abort requested by {by}: {report.abort.reason}", f"abort by {by}",
                          "middle"))
    top, bottom = 44, lanes[-1].top + lanes[-1].height
    return Timeline(
        width=scale.WIDTH, height=bottom + 24, top=top, bottom=bottom, left=scale.LEFT,
        plot_end=scale.LEFT + scale.plot, lanes=lanes, bands=bands, markers=markers,
        checks=checks, bars=bars, rules=rules,
        ticks=[(round(scale.LEFT + t / scale.seconds * scale.plot, 2), offset(t))
               for t in scale.ticks()],
        origin=f"T0 = {clock(report.started_at)} UTC")


def _step_bar(step: StepReport, lane: Lane, scale: Scale, closed: bool) -> Bar:
    """A step's lane: a wait, a fault in effect with its restore, detection and failures, or a
    note that it never started."""
    bar = Bar(step.id, step.kind, step.cloud, lane)
    if step.start is None or step.end is None:
        bar.note = "not started" if step.state in ("pending", "skipped") else step.state
        return bar
    x1 = scale.x(step.end)
    bar.x = scale.x(step.start)
    bar.width = round(max(x1 - bar.x, 0.0), 2)
    if step.kind == "wait":
        bar.title = f"{step.id}: waited {clock(step.start)} → {clock(step.end)} ({span(step.seconds)})"
        return bar
    bar.colour = CLOUD_COLOURS.get(step.cloud or "", "#64748b")
    bar.failed = bool(step.restore_failures)
    bar.title = (f"{step.id} ({step.cloud}, {step.action}, {step.resources} resources): in effect "
                 f"{clock(step.start)} → "
                 + ("still in effect" if step.in_effect_at_end else clock(step.end))
                 + f" ({span(step.seconds)})")
    if step.restore_started_at is not None:
        r0 = scale.x(step.restore_started_at)
        r1 = scale.x(step.restored_at) if step.restored_at else x1
        bar.restoring = Segment(r0, round(max(r1 - r0, 0.0), 2),
                                f"{step.id}: restoring from {clock(step.restore_started_at)} → "
                                + (clock(step.restored_at) if step.restored_at else "not restored")
                                + (f" ({span(step.restore_seconds)})"
                                   if step.restore_seconds is not None else ""))
    label = step.id if step.resources == 0 else f"{step.id} · {step.resources} res."
    bar.label = label if bar.width > 7 * len(label) + 10 else None
    if step.in_effect_at_end:
        what = "not restored" if step.restore_failures or closed else "in effect"
        bar.in_effect = Flag(x1, f"{step.id}: {what} at {clock(step.end)}", what)
    bar.failures = [Marker(f.kind, "cross", scale.x(f.at), bar.lane.middle, "#b91c1c",
                           event_title(f)) for f in step.restore_failures]
    if step.detected_at is not None:
        bar.detected = Flag(scale.x(step.detected_at), f"{step.id}: detected "
                            f"{detect_text(step.detect_seconds)} by {step.detected_by}")
    return bar


def decision_log(report: Report) -> list[Event]:
    """Approvals, refusals, rejections and abort requests, oldest first."""
    aborts = [e for e in report.events if e.kind in ABORT_KINDS]
    return sorted(report.decisions + aborts, key=lambda e: e.at)


# --- the page ------------------------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gameday", "templates"), autoescape=True,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(clock=clock, span=span, offset=offset, detect=detect_text)
    return environment


def render_page(report: Report) -> str:
    outcome = report.outcome or report.phase
    faults = [s for s in report.steps if s.kind == "fault"]
    return _environment().get_template("report.html.j2").render(
        report=report, outcome=outcome, badge=OUTCOME_COLOURS.get(outcome, ("#1d4ed8", "#dbeafe")),
        faults=faults, injected=[s for s in faults if s.start is not None],
        legend=[(PHASE_COLOURS[p], p.replace("_", " ")) for p in ("planning", "awaiting_approval",
                                                                 "running")]
        + [(c, k) for k, c in CLOUD_COLOURS.items() if any(s.cloud == k for s in faults)],
        timeline=timeline(report), decision_log=decision_log(report), kind_class=KIND_CLASS,
        state_class=STATE_CLASS, verdict_class=VERDICT_CLASS,
        objectives=[s for s in report.steps if s.objective is not None],
        hypothesis_class=HYPOTHESIS_CLASS[report.hypothesis])
