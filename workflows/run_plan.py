"""The GameDay's plan: every fault step resolved, hashed (approvals name the hash), and checked
against the guardrails, for unit ids two units would share, and for the permissions its calls need
(as `gameday plan` checks them), before anyone is asked to approve and before any change."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gameday.plan import PlanResult, ResolvedStep, plan_hash
    from gameday.runbook import Runbook
    from workflows.errors import Refused
    from workflows.fault_calls import fault_units
    from workflows.permissions import check_permissions
    from workflows.planning import guardrail_problems, resolve_step, unit_collisions
    from workflows.status_board import StatusBoard

PATCH_RUN_CHECKS_PERMISSIONS = "run-checks-permissions"
"""GameDays started before this change learnt of a missing permission from a failed apply."""


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
    if workflow.patched(PATCH_RUN_CHECKS_PERMISSIONS):
        await _check_permissions(runbook, resolved, board)
    return [unit_id for _, unit_id in units]


async def _check_permissions(runbook: Runbook, resolved: list[ResolvedStep],
                             board: StatusBoard) -> None:
    """The plan's live permission check (contract §11) before the approval: `Refused` (every
    step skipped) when the worker may not make a call the plan needs. A check that could not be
    made, or a permission the cloud offers no dry run for, is an event: the apply will tell, and
    whatever it changed is restored as always."""
    result = PlanResult(runbook=runbook.name, steps=resolved)
    await check_permissions(result)
    for problem in result.problems:
        board.event("permissions_unchecked", problem)
    if result.unchecked_permissions:
        board.event("permissions_unchecked", "; ".join(p.sentence for p in result.unchecked_permissions))
    if result.missing_permissions:
        for step in runbook.fault_steps():
            board.steps[step.id].state = "skipped"
        missing = "; ".join(p.sentence for p in result.missing_permissions)
        raise Refused(f"refused before any change: the worker lacks permissions the plan needs: "
                      f"{missing}")
