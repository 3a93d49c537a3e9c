"""The gates of one GameDay: where it waits for its approvers, and how it answers what people ask of
it (approve, reject, abort; contract §5).

Who counts is the desk's to say (approvals.py, pure rules); this side waits on a gate with
Temporal's clock and records every request, counted or refused, on the status board, in the order
the run learns of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gameday.durations import format_duration
    from gameday.runbook import Runbook
    from gameday.status import Abort, Approve, Reject, UpdateAnswer, approve_flags
    from workflows.approvals import ApprovalDesk, gate_name, gate_of
    from workflows.status_board import StatusBoard


class Rejected(Exception):
    """No go: an approver rejected, or no approval came in time."""


class Gates:
    """The approval gates of one run and what people asked of it: approvals (those signalled while
    the run still plans wait for its first gate), the first rejection, and the first abort."""

    def __init__(self, runbook: Runbook, desk: ApprovalDesk, board: StatusBoard,
                 deadline: datetime) -> None:
        self.runbook = runbook
        self.desk = desk
        self.board = board
        self.deadline = deadline
        self.early: list[Approve] = []
        """Approvals signalled while the run still plans: judged once it reaches a gate or closes."""
        self.rejection: Reject | None = None
        self.abort: Abort | None = None

    async def wait_for(self, gate: str) -> None:
        """Wait for `approvals_required` distinct approvers of this gate; `Rejected` on a rejection
        or when none came within `approval_timeout` (nor before the run's deadline)."""
        board = self.board
        needed = self.desk.needed
        what = gate_name(gate)
        approvers = ", ".join(self.desk.approver_ids())
        self.desk.pending.append(gate)
        if gate == "start":
            board.set_phase("awaiting_approval")
        else:
            board.steps[gate].state = "awaiting_approval"
        board.event("approval_requested", f"{what} awaits {needed} approval(s) from {approvers}",
                    step=None if gate == "start" else gate)
        self.record_early()
        board.publish()
        flag = approve_flags(gate, self.runbook.approvals == "signed")
        board.notify("approval", f":raised_hand: GameDay *{self.runbook.name}*: {what} awaits "
                     f"approval by {approvers}.\n"
                     f"`gameday approve {self.desk.run_id} --as <you>{flag}` "
                     f"(or `gameday reject ... --reason ...`)")
        remaining = max(self.deadline - workflow.now(), timedelta(milliseconds=1))
        try:
            await workflow.wait_condition(
                lambda: self.desk.satisfied(gate) or self.rejection is not None,
                timeout=min(self.runbook.approval_timeout, remaining),
                timeout_summary=f"approval timeout of {what}: "
                                f"{format_duration(self.runbook.approval_timeout)}",
            )
        except TimeoutError:
            raise Rejected(f"no approval for {what} within "
                           f"{format_duration(self.runbook.approval_timeout)}") from None
        finally:
            self.desk.pending.remove(gate)
        if self.rejection is not None:
            by, why = self.rejection.approver, self.rejection.reason
            raise Rejected(f"{what} was rejected by {by}" + (f": {why}" if why else ""))
        board.publish()

    def approval_signalled(self, signal: Approve) -> None:
        """Judge a signalled approval now or, while the run still plans, once it has a plan."""
        if self.board.phase == "planning":
            self.early.append(signal)
            return
        self.record_approval(signal)

    async def answer_approval(self, signal: Approve) -> UpdateAnswer:
        """Judge an approval sent as an update; sent while the run still plans, it waits for the
        plan, so that it is checked against that plan."""
        await workflow.wait_condition(lambda: self.board.phase != "planning")
        return self.record_approval(signal)

    def record_early(self) -> None:
        """Judge the approvals signalled while the run planned."""
        early, self.early = self.early, []
        for signal in early:
            self.record_approval(signal)

    def record_approval(self, signal: Approve) -> UpdateAnswer:
        """Count the approval, or record why it does not count; the answer says which."""
        board = self.board
        gate = gate_of(signal)
        step = None if gate == "start" else gate
        fingerprint: str | None = None
        refusal = board.closed()
        if not refusal:
            refusal, fingerprint = self.desk.judge(signal, board.plan_hash)
        if refusal:
            board.event("approval_refused", refusal, step=step, by=signal.approver,
                        request_id=signal.request_id)
            board.publish()
            return UpdateAnswer(accepted=False, kind="approval_refused", detail=refusal)
        count = self.desk.count(signal)
        if step:
            board.steps[step].approved_by.append(signal.approver)
        detail = (f"{signal.approver} approved {gate} ({count}/{self.desk.needed})"
                  + (f" with key {fingerprint}" if fingerprint else "")
                  + (f": {signal.note}" if signal.note else ""))
        board.event("approved", detail, step=step, by=signal.approver,
                    request_id=signal.request_id, fingerprint=fingerprint)
        board.publish()
        return UpdateAnswer(accepted=True, kind="approved", detail=detail)

    def record_rejection(self, signal: Reject) -> UpdateAnswer:
        """Keep the first rejection that counts (the gate waiting, or the next one, then fails);
        record why one does not count."""
        board = self.board
        planning = board.phase == "planning"
        refusal = board.closed() or self.desk.judge_rejection(signal, planning)
        if refusal:
            board.event("rejection_refused", refusal, by=signal.approver,
                        request_id=signal.request_id)
            return UpdateAnswer(accepted=False, kind="rejection_refused", detail=refusal)
        self.rejection = self.rejection or signal
        detail = f"{signal.approver} rejected" + (f": {signal.reason}" if signal.reason else "")
        board.event("rejected_by", detail, by=signal.approver, request_id=signal.request_id)
        return UpdateAnswer(accepted=True, kind="rejected_by", detail=detail)

    def request_abort(self, signal: Abort) -> UpdateAnswer:
        """Keep the first abort of a run still open and announce it; the run then stops and
        restores. Anyone may abort: stopping is always safe."""
        board = self.board
        closed = board.closed()
        if closed:
            return UpdateAnswer(accepted=False, kind="abort_refused", detail=closed)
        detail = f"{signal.by}: {signal.reason}"
        if self.abort is not None:
            board.event("abort_repeated", detail, by=signal.by, request_id=signal.request_id)
            return UpdateAnswer(accepted=True, kind="abort_repeated", detail=detail)
        self.abort = signal
        board.event("abort_requested", detail, by=signal.by, request_id=signal.request_id)
        board.notify("abort", f":rotating_light: GameDay *{self.runbook.name}* aborted by "
                     f"{signal.by}: {signal.reason}. Every fault is being restored.")
        return UpdateAnswer(accepted=True, kind="abort_requested", detail=detail)
