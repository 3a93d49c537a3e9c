"""The incident commander's board: a GameDay's state as the short Markdown that the Temporal UI
shows as the workflow's Current Details (issue 18).

What is cut now (per cloud: action, zone or region, how many resources, the first few names),
until when, the steady state, and the exact commands and signal inputs that approve or abort.
Pure: no I/O and no clock, the workflow passes its own `now`, so the workflow sandbox imports this
module and a replay renders the same board.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gameday.durations import format_duration
from gameday.errors import first_sentence
from gameday.plan import Checkpoint, ResolvedStep
from gameday.runbook import Runbook
from gameday.status import CLOSED_PHASES, GameDayStatus, StepStatus, approve_flags

NAMES_SHOWN = 3
"""Resource names shown per cut: enough to recognise the zone, short enough to read at a glance."""
CUTS_SHOWN = 12
MAX_SENTENCE = 200
CLOUD_ORDER = {"aws": 0, "gcp": 1, "azure": 2}
KIND_PLURALS = {
    "subnet": "subnets", "instance": "instances", "network_interface": "NICs", "record": "records",
    "backend": "backends", "traffic_manager_endpoint": "endpoints",
}
MARKDOWN_SPECIALS = "\\`*_[]<>"


@dataclass(frozen=True)
class BoardFacts:
    """What the board needs beyond the `status` query: the run's id, the time of this refresh,
    the runbook, the resolved plan (for resource names), and each checkpointed unit not yet
    restored, as (runbook step id, checkpoint)."""

    workflow_id: str
    now: datetime
    runbook: Runbook
    plan: Sequence[ResolvedStep] = ()
    in_effect: Sequence[tuple[str, Checkpoint]] = ()


def render_board(status: GameDayStatus, facts: BoardFacts) -> str:
    """The board, Markdown paragraphs, most urgent first; the commands in it are exact."""
    closed = status.phase in CLOSED_PHASES
    sections = [_headline(status, facts), *_cuts(status, facts, closed), *_failures(status)]
    if not closed:
        sections.append(_deadline(status, facts.now))
        for gate in status.pending_approvals:
            sections.append(_approval(status, facts, gate))
        sections.append(_steady_state(status, facts.runbook))
        following = [s.id for s in status.steps if s.state == "pending"]
        if following and status.phase == "running":
            sections.append(f"**Next**: {_md(following[0])}")
        if status.phase != "restoring":  # stopping already: every fault is being restored
            sections.append(_abort(facts.workflow_id))
    else:
        sections.append(_steady_state(status, facts.runbook))
    return "\n\n".join(sections)


# --- the parts ------------------------------------------------------------------------------


def _headline(status: GameDayStatus, facts: BoardFacts) -> str:
    line = f"**{_md(status.runbook)}** · **{status.phase}**"
    if status.phase in CLOSED_PHASES:
        held = "not tested" if status.hypothesis_held is None else _yes(status.hypothesis_held)
        line += f" · hypothesis held: {held} · every fault restored: {_yes(bool(status.restored))}"
        if status.ended_at is not None:
            line += f" · ended {_clock(status.ended_at)}"
    else:
        line += f" · updated {_clock(facts.now)}"
    if status.reason:
        line += f"\n\n{_md(_sentence(status.reason))}"
    return line


@dataclass
class _Cut:
    cloud: str
    action: str
    where: str
    step: str
    resources: int
    names: list[str]
    kinds: set[str]


def _cuts(status: GameDayStatus, facts: BoardFacts, closed: bool) -> list[str]:
    """Per cloud, what is cut now: one line per step and zone (or region)."""
    if not facts.in_effect:
        return ["**Cut now**: nothing" + ("; every fault is restored" if closed and status.restored else "")]
    plan = {r.step_id: r for r in facts.plan}
    steps = {s.id: s for s in status.steps}
    cuts: dict[tuple[str, str, str], _Cut] = {}
    for step_id, checkpoint in facts.in_effect:
        scope = checkpoint.scope
        key = (scope.cloud, step_id, scope.zone or scope.region)
        cut = cuts.get(key)
        if cut is None:
            resolved = plan.get(step_id)
            named = resolved.resources if resolved is not None else []
            in_zone = [r for r in named if scope.zone is None or r.detail.get("zone") in (None, scope.zone)]
            named = in_zone or named
            # the runbook step's action (a region step's units are zone blackholes)
            action = steps[step_id].action if step_id in steps else checkpoint.action
            cut = cuts[key] = _Cut(scope.cloud, action, _where(scope.region, scope.zone), step_id, 0,
                                   [r.name or r.id for r in named], {r.kind for r in named})
        cut.resources += checkpoint.resources
    order = [s.id for s in status.steps]
    ranked = sorted(cuts.values(), key=lambda c: (CLOUD_ORDER.get(c.cloud, 9), order.index(c.step)
                                                  if c.step in order else len(order), c.where))
    total = sum(c.resources for c in ranked)
    clouds = len({c.cloud for c in ranked})
    title = "**Still cut**" if closed else "**Cut now**"
    lines = [f"{title}: {total} resources in {clouds} cloud{'s' if clouds != 1 else ''}"]
    for cut in ranked[:CUTS_SHOWN]:
        lines.append(f"- **{cut.cloud}** {cut.action} {_md(cut.where)}: {cut.resources} {_kinds(cut.kinds)}"
                     f"{_names(cut)} (step {_md(cut.step)}{_state_note(status, steps.get(cut.step))})")
    if len(ranked) > CUTS_SHOWN:
        lines.append(f"- and {len(ranked) - CUTS_SHOWN} more (query `checkpoints`)")
    return ["\n".join(lines)]


def _where(region: str, zone: str | None) -> str:
    if zone is None:
        return f"region {region}"
    return zone if zone.startswith(region) else f"{region} zone {zone}"


def _kinds(kinds: set[str]) -> str:
    return "/".join(KIND_PLURALS.get(k, k.replace("_", " ") + "s") for k in sorted(kinds)) or "resources"


def _names(cut: _Cut) -> str:
    shown = cut.names[:NAMES_SHOWN]
    if not shown:
        return ""
    more = cut.resources - len(shown)
    return " " + ", ".join(f"`{name}`" for name in shown) + (f" +{more} more" if more > 0 else "")


def _state_note(status: GameDayStatus, step: StepStatus | None) -> str:
    if step is None or step.state == "active":
        return ""
    if step.state == "restoring":
        since = _last_event_at(status, "restoring", step.id)
        return ", restoring" + (f" since {_clock(since)}" if since else "")
    return f", {step.state}"


def _failures(status: GameDayStatus) -> list[str]:
    """A restore retrying, in one sentence; a step that failed, with its error in one sentence."""
    lines = []
    for step in status.steps:
        if step.state == "restoring" and step.error:
            lines.append(f"**Restoring {_md(step.id)}**: its restore retries until it succeeds; the "
                         f"last failure: {_md(_sentence(step.error))}")
        elif step.state == "restoring":
            lines.append(f"**Restoring {_md(step.id)}**: its restore retries until it succeeds; the "
                         "last failure of an attempt shows under Pending Activities")
        elif step.state == "failed" and step.error:
            lines.append(f"**{_md(step.id)} failed**: {_md(_sentence(step.error))}")
    if status.phase in CLOSED_PHASES and status.restored is False:
        lines.append("**Not every fault is restored**: run `gameday sweep --restore`, or restore by hand "
                     "(docs/when-a-restore-cannot-complete.md)")
    return lines


def _deadline(status: GameDayStatus, now: datetime) -> str:
    left = max(status.deadline - now, timedelta(0))
    return (f"**Deadline**: every fault restored by {_moment(status.deadline)} "
            f"({_span(left)} left)")


def _approval(status: GameDayStatus, facts: BoardFacts, gate: str) -> str:
    book = facts.runbook
    step = None if gate == "start" else gate
    signed = status.approvals == "signed"
    flag = approve_flags(gate, signed)
    approved = [e for e in status.events if (e.step or "start") == gate and e.kind == "approved"]
    refused = [e for e in status.events if (e.step or "start") == gate and e.kind == "approval_refused"]
    lines = [f"**Awaiting approval of {_md(gate)}**: {len(approved)} of {status.approvals_required}, "
             f"from {', '.join(_md(a) for a in book.approver_ids())}"
             + _times_out(status, book, gate)]
    if signed:
        lines.append(f"- CLI: `gameday approve {facts.workflow_id} --as <approver>{flag}` "
                     "(signed approvals: not from the UI)")
    else:
        hash_flag = f" --plan-hash {status.plan_hash}" if status.plan_hash else ""
        payload: dict[str, str | None] = {"approver": "<approver>", "step": step}
        if status.plan_hash:
            payload["plan_hash"] = status.plan_hash
        lines.append(f"- CLI: `gameday approve {facts.workflow_id} --as <approver>{flag}{hash_flag}`")
        lines.append(f"- UI, Send a Signal `approve`: `{json.dumps(payload)}`")
    if approved:
        lines.append("- approved by " + ", ".join(
            f"{e.by}" + (f" (key {e.fingerprint})" if e.fingerprint else "") for e in approved))
    if refused:
        lines.append(f"- refused approvals of {gate}: {len(refused)}; the last: "
                     f"{_md(first_sentence(refused[-1].detail))}")
    return "\n".join(lines)


def _times_out(status: GameDayStatus, book: Runbook, gate: str) -> str:
    asked = [e.at for e in status.events if e.kind == "approval_requested" and (e.step or "start") == gate]
    if not asked:
        return ""
    return f"; no approval by {_clock(min(asked[-1] + book.approval_timeout, status.deadline))} ends the run"


def _steady_state(status: GameDayStatus, book: Runbook) -> str:
    steady = book.steady_state
    if steady is None:
        return "**Steady state**: none in the runbook (hypothesis not tested)"
    now = status.steady_state_now
    if now is not None:  # the watch's check, reported while its window is open
        verdict = "passing" if now.ok else "FAILING"
        line = (f"**Steady state**: {verdict} at the last check, {_clock(now.at)}; "
                f"{now.consecutive_failures} consecutive failed checks (tolerance {steady.tolerance})")
        return line + (f" ({_md(_sentence(now.failing))})" if now.failing else "")
    size = len(steady.probes)
    checks = status.probe_checks
    rounds = [checks[i - size:i] for i in range(len(checks), size - 1, -size)]  # newest first
    if not rounds:
        return f"**Steady state**: not checked yet (every {format_duration(steady.interval)})"
    failing = 0
    for round_ in rounds:
        if all(r.ok for r in round_):
            break
        failing += 1
    last = rounds[0]
    verdict = "passing" if all(r.ok for r in last) else "FAILING"
    line = (f"**Steady state**: {verdict} at the last check, {_clock(max(r.at for r in last))}; "
            f"{failing} consecutive failed checks (tolerance {steady.tolerance})")
    bad = [f"{r.name}: {r.value}" for r in last if not r.ok]
    if bad:
        line += f" ({_md(_sentence('; '.join(bad)))})"
    return line


def _abort(workflow_id: str) -> str:
    payload = json.dumps({"by": "<you>", "reason": "<why>"})
    return (f"**Abort** (restores every fault): `gameday abort {workflow_id} --as <you> --reason \"<why>\"`\n"
            f"- UI, Send a Signal `abort`: `{payload}` (or Request Cancellation)")


# --- small helpers ------------------------------------------------------------------------------


def _last_event_at(status: GameDayStatus, kind: str, step: str) -> datetime | None:
    for event in reversed(status.events):
        if event.kind == kind and event.step == step:
            return event.at
    return None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clock(moment: datetime) -> str:
    return f"{_utc(moment):%H:%M:%S} UTC"


def _moment(moment: datetime) -> str:
    return f"{_utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def _span(left: timedelta) -> str:
    """Time left, to the second under an hour and to the minute beyond."""
    seconds = int(left.total_seconds())
    return format_duration(timedelta(seconds=seconds if seconds < 3600 else seconds - seconds % 60))


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _sentence(text: str) -> str:
    sentence = first_sentence(text)
    return sentence if len(sentence) <= MAX_SENTENCE else sentence[:MAX_SENTENCE - 3] + "..."


def _md(text: str) -> str:
    """Free text (reasons, errors, names) shown as itself, not as Markdown."""
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in text)
