"""The GameDay's plan: every fault step resolved, hashed (approvals name the hash), and checked
against the guardrails and for unit ids two units would share, before any change."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gameday.plan import plan_hash
    from gameday.runbook import Runbook
    from workflows.errors import Refused
    from workflows.fault_calls import fault_units
    from workflows.planning import guardrail_problems, resolve_step, unit_collisions
    from workflows.status_board import StatusBoard


async def make_plan(runbook: Runbook, board: StatusBoard) -> list[str]:
    """Resolve every fault step onto the board; the plan's unit ids. `Refused` (every step
    skipped) when a guardrail refuses it or two units would share an id."""
    faults = runbook.fault_steps()
    resolved = list(await asyncio.gather(*(resolve_step(s, runbook) for s in faults)))
    board.plan = {r.step_id: r for r in resolved}
    board.plan_hash = plan_hash(resolved)
    for found in resolved:
        board.steps[found.step_id].resources = len(found.resources)
        board.steps[found.step_id].zone = found.scope.zone
        board.steps[found.step_id].zone_id = found.scope.zone_id
    count = sum(len(r.resources) for r in resolved)
    board.event("planned", f"{len(resolved)} faults over {count} resources; plan {board.plan_hash}")
    problems = guardrail_problems(runbook, resolved)
    units = [(step.id, unit.id) for step in faults for unit, _ in fault_units(step, board.plan[step.id])]
    collisions = unit_collisions(units)
    if problems or collisions:
        for step in faults:
            board.steps[step.id].state = "skipped"
        if problems:
            raise Refused("refused by guardrails: " + "; ".join(problems))
        raise Refused(f"refused before any change: {'; '.join(collisions)}; rename the step")
    return [unit_id for _, unit_id in units]
