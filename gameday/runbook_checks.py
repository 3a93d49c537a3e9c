"""The runbook's rules across fields (gameday.runbook.Runbook validates with them): each returns
the problems it finds, each at the field it is about, so `validate` names file, line and field.

Everything here is deterministic and reads only the runbook: the workflow validates its input
with the same model.
"""

from __future__ import annotations

from datetime import timedelta

from gameday.durations import format_duration
from gameday.identity import normalize_identity
from gameday.runbook import (
    PROBE_KINDS,
    BlackholeRegionStep,
    FaultStep,
    KeyedApprover,
    Loc,
    ParallelGroup,
    Runbook,
    WaitStep,
    item_time,
)
from gameday.signatures import parse_public_key
from gameday.support import not_supported
from gameday.targets import target_scope
from gameday.units import UnitStep
from gameday.units import unit_id_problems as units_sharing_an_id


def problems_of(book: Runbook) -> list[tuple[Loc, str]]:
    """Everything wrong across the runbook's fields."""
    return [
        *approver_problems(book),
        *unit_id_problems(book),
        *guardrail_problems(book),
        *duration_problems(book),
        *held_for_no_time(book),
        *unsupported(book),
        *expectation_problems(book),
    ]


def located_steps(book: Runbook) -> list[tuple[Loc, FaultStep | WaitStep]]:
    located: list[tuple[Loc, FaultStep | WaitStep]] = []
    for index, item in enumerate(book.steps):
        if isinstance(item, ParallelGroup):
            located += [(("steps", index, "parallel", i), s) for i, s in enumerate(item.parallel)]
        else:
            located.append((("steps", index), item))
    return located

def approver_problems(book: Runbook) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for index, identity in enumerate(book.approver_ids()):
        if identity in seen:
            problems.append((("approvers", index), f"{identity} is listed more than once "
                             "(approvers are compared without case and surrounding spaces)"))
        seen.add(identity)
    problems += key_problems(book)
    if book.approvals_required > len(seen):
        problems.append((("approvals_required",), f"approvals_required is {book.approvals_required} "
                         f"but only {len(seen)} distinct approvers are listed"))
    return problems

def key_problems(book: Runbook) -> list[tuple[Loc, str]]:
    """Signed approvals need a key per approver, and a key per person: a quorum of distinct
    approvers must be a quorum of distinct keys."""
    problems: list[tuple[Loc, str]] = []
    owners: dict[bytes, str] = {}
    for index, approver in enumerate(book.approvers):
        if not isinstance(approver, KeyedApprover):
            if book.approvals == "signed":
                who = normalize_identity(approver)
                problems.append((("approvers", index), f"{who} has no key, and approvals: signed "
                                 f"needs one per approver; write it as {{id: {who}, key: "
                                 "\"ssh-ed25519 AAAA...\"}"))
            continue
        blob = parse_public_key(approver.key).blob
        if blob in owners and owners[blob] != approver.id:
            problems.append((("approvers", index, "key"), f"this key is also listed for "
                             f"{owners[blob]}; each approver needs a key of their own"))
        owners.setdefault(blob, approver.id)
    return problems

def unit_id_problems(book: Runbook) -> list[tuple[Loc, str]]:
    located = located_steps(book)
    steps = [
        UnitStep(s.id, s.target.cloud, s.target.region) if isinstance(s, BlackholeRegionStep)
        else UnitStep(s.id)
        for _, s in located
    ]
    return [((*located[p.step][0], "id"), p.message) for p in units_sharing_an_id(steps)]

def guardrail_problems(book: Runbook) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for loc, step in located_steps(book):
        if isinstance(step, WaitStep):
            continue
        cloud = step.target.cloud
        field, allowed = {
            "aws": ("account", book.guardrails.aws_accounts),
            "gcp": ("project", book.guardrails.gcp_projects),
            "azure": ("subscription", book.guardrails.azure_subscriptions),
        }[cloud]
        scope = target_scope(step.target)
        if scope.lower() not in {a.lower() for a in allowed}:
            listed = ", ".join(allowed) or "none listed"
            problems.append(((*loc, "target", field), f"{cloud} {field} {scope} is not in the "
                             f"runbook's guardrails (guardrails.{cloud}_{field}s: {listed})"))
    return problems

def duration_problems(book: Runbook) -> list[tuple[Loc, str]]:
    longest = book.max_duration
    limit = format_duration(longest)
    problems: list[tuple[Loc, str]] = []
    needed = book.minimum_duration()
    if needed > longest:
        problems.append((("max_duration",), f"the steps take at least {format_duration(needed)} "
                         f"but max_duration is {limit}"))
    if book.steady_state is not None:
        timed: list[tuple[Loc, timedelta | None]] = [
            (("steady_state", "interval"), book.steady_state.interval)]
        for index, probe in enumerate(book.steady_state.probes):
            for kind in PROBE_KINDS:
                check = getattr(probe, kind)
                for field in ("timeout", "max_latency"):
                    timed.append((("steady_state", "probes", index, kind, field),
                                  getattr(check, field, None)))
        problems += [(loc, f"{format_duration(value)} is longer than max_duration ({limit})")
                     for loc, value in timed if value is not None and value > longest]
    return problems

def held_for_no_time(book: Runbook) -> list[tuple[Loc, str]]:
    """Faults held until the run ends, with nothing after them that takes time: injected and
    restored at once, they would test nothing while the run says it held them."""
    problems: list[tuple[Loc, str]] = []
    for index, item in enumerate(book.steps):
        later = sum((item_time(i) for i in book.steps[index + 1:]), timedelta())
        members = item.parallel if isinstance(item, ParallelGroup) else [item]
        for position, step in enumerate(members):
            if isinstance(step, WaitStep) or step.held_for is not None:
                continue
            beside = max((s.duration or timedelta() for s in members if s is not step),
                         default=timedelta())
            if later + beside <= timedelta():
                loc: Loc = (("steps", index, "parallel", position) if isinstance(item, ParallelGroup)
                            else ("steps", index))
                problems.append(((*loc, "id"), f"step {step.id!r} is held for no time: nothing "
                                 "after it takes time; give it a duration"))
    return problems

def unsupported(book: Runbook) -> list[tuple[Loc, str]]:
    """Steps that ask a cloud for an action it does not offer (`gameday.support`)."""
    problems: list[tuple[Loc, str]] = []
    for loc, step in located_steps(book):
        sentence = None if isinstance(step, WaitStep) else not_supported(step.target.cloud, step.action)
        if sentence is not None:
            problems.append(((*loc, "action"), f"step {step.id!r}: {sentence}"))
    return problems


def expectation_problems(book: Runbook) -> list[tuple[Loc, str]]:
    """An objective is measured against the steady-state checks: without them, nothing could
    say whether it was met."""
    if book.steady_state is not None:
        return []
    return [((*loc, "expect"), f"step {step.id!r} expects recovery within "
             f"{format_duration(step.expect.recover_within)}, but the runbook has no "
             "steady_state to measure it against")
            for loc, step in located_steps(book)
            if not isinstance(step, WaitStep) and step.expect is not None]
