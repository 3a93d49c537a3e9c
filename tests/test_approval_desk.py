"""The approval rules without a server (workflows/approvals.py): who counts, the quorum, the plan
hash and signatures by the real `ssh-keygen`, generatively over how one person might spell
themselves twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameday.signatures import approval_text
from gameday.status import Approve, Reject, approve_flags
from tests.support.gameday import APPROVER, aws_zone_step, runbook
from tests.test_signed_approvals import IC, SRE, fingerprint, keys, sign, signed_runbook  # noqa: F401
from workflows.approvals import ApprovalDesk

RUN = "gameday-desk-test"
PLAN = "p" * 64


def desk(**fields) -> ApprovalDesk:
    book = runbook(aws_zone_step(), approvals_required=2, **fields)
    waiting = ApprovalDesk(book, RUN)
    waiting.pending.append("start")
    return waiting


def approve(who: str, **extra) -> Approve:
    return Approve(approver=who, **extra)


def test_two_approvers_make_the_quorum_and_each_counts_once() -> None:
    gate = desk()
    assert gate.judge(approve(APPROVER), PLAN) == (None, None)
    assert gate.count(approve(APPROVER)) == 1 and not gate.satisfied("start")
    assert gate.judge(approve(APPROVER), PLAN)[0] == f"{APPROVER} has already approved start"
    assert gate.judge(approve("second@example.com"), PLAN) == (None, None)
    gate.count(approve("second@example.com"))
    assert gate.satisfied("start")


@settings(max_examples=100, deadline=None)
@given(before=st.text(" \t", max_size=3), after=st.text(" \t", max_size=3),
       upper=st.lists(st.booleans(), min_size=len(APPROVER), max_size=len(APPROVER)))
def test_one_person_spelled_twice_counts_once(before: str, after: str, upper: list[bool]) -> None:
    """The reported hole (issue 12): `ic@example.com` and `"ic@example.com "` counted twice."""
    gate = desk()
    gate.count(approve(APPROVER))
    spelled = before + "".join(c.upper() if u else c for c, u in zip(APPROVER, upper, strict=True)) + after
    refusal, _ = gate.judge(approve(spelled), PLAN)
    assert refusal == f"{APPROVER} has already approved start"
    assert not gate.satisfied("start")


def test_strangers_gates_not_waiting_and_other_plans_do_not_count() -> None:
    gate = desk()
    assert gate.judge(approve("mallory@example.com"), PLAN)[0] == (
        "mallory@example.com is not an approver of this runbook")
    assert gate.judge(approve(APPROVER, step="blackhole-use1a"), PLAN)[0] == (
        "step blackhole-use1a is not awaiting approval (awaiting: start)")
    assert gate.judge(approve(APPROVER, plan_hash="q" * 64), PLAN)[0] == (
        f"plan hash {'q' * 64} does not match the plan {PLAN}")
    assert gate.judge(approve(APPROVER, plan_hash=PLAN), PLAN) == (None, None)


def test_a_rejection_needs_an_approver_and_something_waiting() -> None:
    gate = desk()
    assert gate.judge_rejection(Reject(approver="mallory@example.com"), planning=False) == (
        "mallory@example.com is not an approver of this runbook")
    assert gate.judge_rejection(Reject(approver=APPROVER), planning=False) is None
    gate.pending.clear()
    assert gate.judge_rejection(Reject(approver=APPROVER), planning=False) == (
        "nothing awaits approval; use abort to stop the GameDay")
    assert gate.judge_rejection(Reject(approver=APPROVER), planning=True) is None


def test_signed_counts_only_the_approvers_own_key_over_this_run_gate_and_plan(
        keys: dict[str, Path]) -> None:  # noqa: F811
    gate = ApprovalDesk(signed_runbook(keys, aws_zone_step()), RUN)
    gate.pending.append("start")
    text = approval_text(RUN, "start", PLAN)
    assert gate.judge(approve(IC, signature=sign(keys["ic"], text)), PLAN) == (
        None, fingerprint(keys["ic"]))
    unsigned, _ = gate.judge(approve(IC), PLAN)
    assert unsigned is not None and "carries no signature" in unsigned
    by_another, _ = gate.judge(approve(IC, signature=sign(keys["mallory"], text)), PLAN)
    assert by_another is not None and by_another.startswith(f"{IC}'s signature for start does not count")
    other_plan = approval_text(RUN, "start", "q" * 64)
    stale, _ = gate.judge(approve(IC, signature=sign(keys["ic"], other_plan), signed_text=other_plan), PLAN)
    assert stale is not None and "is genuine but" in stale
    assert gate.judge(approve(SRE, signature=sign(keys["sre"], text)), PLAN)[1] == fingerprint(keys["sre"])


@pytest.mark.parametrize("gate_id", ["start", "blackhole-use1a"])
def test_the_approve_flags_and_gate_names(gate_id: str) -> None:
    from workflows.approvals import gate_name

    assert gate_name(gate_id) == ("the start" if gate_id == "start" else f"step {gate_id}")
    assert approve_flags(gate_id, signed=False) == ("" if gate_id == "start" else f" --step {gate_id}")
    assert approve_flags(gate_id, signed=True).endswith(" --sign-with <your key file>")
