"""Human-readable output: plans, statuses and events, for an incident commander's terminal."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gameday.durations import format_duration
from gameday.errors import first_sentence
from gameday.status import Event, GameDayStatus, StepStatus, approve_flags

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def event_line(event: Event) -> str:
    return f"{event.at:%H:%M:%S} {event.kind:<18} {first_sentence(event.detail)}"


def print_plan(result: Any) -> None:
    console.print(f"[bold]plan for {result.runbook}[/bold]" +
                  (f"  {result.plan_hash}" if result.plan_hash else ""))
    for step in result.steps:
        scope = step.scope
        # a zone shows its physical id beside its name: `us-east-1a (use1-az6)`
        zone = scope.where if scope.zone or scope.zone_id else ""
        where = " ".join(x for x in (scope.cloud, scope.account, scope.region, zone) if x)
        console.print(f"\n[bold]{step.step_id}[/bold] {step.action} on {where}: "
                      f"{len(step.resources)} {_kinds(step.resources)}")
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("resource")
        table.add_column("name")
        table.add_column("detail")
        for resource in step.resources:
            detail = ", ".join(f"{k}={v}" for k, v in resource.detail.items())
            table.add_row(resource.id, resource.name or "", detail)
        console.print(table)
    for problem in result.problems:
        console.print("[red]refused:[/red] " + escape(problem_sentence(problem)))
    for permission in result.missing_permissions:
        console.print("[red]" + escape(permission.sentence) + "[/red]")
    for permission in result.unchecked_permissions:
        console.print(escape(permission.sentence))


def problem_sentence(problem: str) -> str:
    """A plan's problem as one sentence: its first line, with a `step X: ` prefix said once even
    when both the planner and the activity put it there."""
    sentence = first_sentence(problem)
    found = re.match(r"(step [^:\s]+: )(?:\1)+", sentence)
    return found.group(1) + sentence[found.end():] if found else sentence


def _kinds(resources: list[Any]) -> str:
    kinds = sorted({r.kind for r in resources})
    return "/".join(f"{k}s" for k in kinds) or "resources"


def print_status(run_id: str, status: GameDayStatus, events: int = 10) -> None:
    console.print(f"[bold]{run_id}[/bold] ({status.runbook}): [bold]{status.phase}[/bold]"
                  + (f", outcome {status.outcome}" if status.outcome else ""))
    if status.reason:
        console.print("reason: " + escape(first_sentence(status.reason)))
    for gate in status.pending_approvals or ([status.pending_approval] if status.pending_approval else []):
        flag = approve_flags(gate, status.approvals == "signed")
        console.print(f"awaiting approval of [bold]{gate}[/bold]: "
                      f"gameday approve {run_id} --as <approver>{flag}")
    if status.plan_hash:
        console.print(f"plan: {status.plan_hash}")
    console.print(f"deadline: every fault restored by {status.deadline:%Y-%m-%d %H:%M:%S} UTC")
    if status.outcome:
        held = "not tested" if status.hypothesis_held is None else status.hypothesis_held
        console.print(f"hypothesis held: {held}; every fault restored: {status.restored}")
    table = Table(box=None, header_style="bold")
    objectives = any(step.recover_within_seconds is not None for step in status.steps)
    for column in ("step", "action", "cloud", "state", "resources", *(("objective",) if objectives else ())):
        table.add_column(column)
    for step in status.steps:
        row = [step.id, step.action, step.cloud or "", step.state, str(step.resources)]
        table.add_row(*row, *((objective_cell(step),) if objectives else ()))
    console.print(table)
    console.print("active faults: " + (", ".join(status.active_faults) or "none"))
    if status.events:
        console.print("[bold]recent events[/bold]")
        for event in status.events[-events:]:
            console.print("  " + event_line(event), markup=False)


def objective_cell(step: StepStatus) -> str:
    """A step's recovery objective and its verdict: `met (42s of 5m)`, `missed (...)`, ``."""
    if step.recover_within_seconds is None:
        return ""
    within = format_duration(timedelta(seconds=step.recover_within_seconds))
    took = step.time_to_recover_seconds
    measured = f"{took:.0f}s of {within}" if took is not None else f"within {within}"
    return f"{step.expectation or 'measuring'} ({measured})"
