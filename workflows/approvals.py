"""Approvals: who counts, the quorum, the plan hash and signatures (contract §7 and §8).

Pure rules over the runbook, the run's workflow id and the plan hash the workflow holds: no Temporal
call, no clock, so they are unit-tested without a server, and a replay decides exactly as the first
run did. The GameDay workflow asks the desk and records the events; the desk keeps which gates are
waiting and who counted for each.
"""

from __future__ import annotations

from gameday.identity import normalize_identity
from gameday.runbook import Runbook
from gameday.signatures import SignatureRefused, approval_text, proves, verify, what_differs
from gameday.status import Approve, Reject


def gate_of(signal: Approve) -> str:
    """The gate an approval is for: `start`, or the step's id."""
    return signal.step or "start"


def gate_name(gate: str) -> str:
    return "the start" if gate == "start" else f"step {gate}"


class ApprovalDesk:
    """The gates awaiting approval, oldest first, and the approvers counted for each."""

    def __init__(self, runbook: Runbook, run_id: str) -> None:
        self.runbook = runbook
        self.run_id = run_id
        self.pending: list[str] = []
        """Gates awaiting approval, oldest first: the start, or steps (a parallel group may gate
        several at once)."""
        self.counted: dict[str, list[str]] = {}

    @property
    def needed(self) -> int:
        return self.runbook.approvals_required

    def approver_ids(self) -> list[str]:
        """The runbook's approvers, normalised (contract §7)."""
        return self.runbook.approver_ids()

    def is_approver(self, who: str) -> bool:
        return normalize_identity(who) in self.approver_ids()

    def satisfied(self, gate: str) -> bool:
        """Whether `approvals_required` distinct approvers counted for this gate."""
        return len(self.counted.get(gate, [])) >= self.needed

    def judge(self, signal: Approve, plan_hash: str | None) -> tuple[str | None, str | None]:
        """(why this approval does not count, or None; the fingerprint of the key that signed it).

        It counts when its approver is listed, its gate is waiting, it names the plan the run holds
        (when it names one), its approver has not counted for this gate yet, and, under
        `approvals: signed`, it carries the approver's signature over this run, gate and plan."""
        gate = gate_of(signal)
        if not self.is_approver(signal.approver):
            return f"{signal.approver} is not an approver of this runbook", None
        if gate not in self.pending:
            waiting = ", ".join(self.pending) or "nothing"
            return f"{gate_name(gate)} is not awaiting approval (awaiting: {waiting})", None
        if signal.plan_hash is not None and signal.plan_hash != plan_hash:
            return f"plan hash {signal.plan_hash} does not match the plan {plan_hash}", None
        if signal.approver in self.counted.get(gate, []):
            return f"{signal.approver} has already approved {gate}", None
        return self.signature_check(signal, gate, plan_hash)

    def count(self, signal: Approve) -> int:
        """Count a judged approval; how many have counted for its gate now."""
        approvers = self.counted.setdefault(gate_of(signal), [])
        approvers.append(signal.approver)
        return len(approvers)

    def judge_rejection(self, signal: Reject, planning: bool) -> str | None:
        """Why this rejection does not count, or None: only an approver may reject, and only while
        something awaits approval (or the run still plans: the start will)."""
        if not self.is_approver(signal.approver):
            return f"{signal.approver} is not an approver of this runbook"
        if not self.pending and not planning:
            return "nothing awaits approval; use abort to stop the GameDay"
        return None

    def signature_check(self, signal: Approve, gate: str,
                        plan_hash: str | None) -> tuple[str | None, str | None]:
        """(why the approval does not count, or None; the fingerprint of the key that signed it).

        Contract §8: with `approvals: signed` only a signature by the approver's listed key over
        this run, gate and plan counts. A signature sent under `asserted` is checked too when the
        approver has a key: a signature that fails is never taken as an approval."""
        key = self.runbook.approver_key(signal.approver)
        who, run_id = signal.approver, self.run_id
        if self.runbook.approvals != "signed" and (key is None or signal.signature is None):
            return None, None
        if key is None:
            return f"approvals of this runbook must be signed, and {who} has no key listed", None
        if signal.signature is None:
            flag = "" if gate == "start" else f" --step {gate}"
            return (f"approvals of this runbook must be signed, and {who}'s approval of {gate} carries "
                    f"no signature (gameday approve {run_id} --as {who}{flag} --sign-with KEYFILE)"), None
        text = approval_text(run_id, gate, plan_hash or "")
        try:
            verify(signal.signature, text, key)
        except SignatureRefused as refused:
            reason = str(refused)
            claimed = signal.signed_text
            if claimed and claimed != text and proves(signal.signature, claimed, key):
                reason = (f"the signature by key {key.fingerprint} is genuine but "
                          + what_differs(claimed, run_id, gate, plan_hash or ""))
            return f"{who}'s signature for {gate} does not count: {reason}", None
        return None, key.fingerprint
