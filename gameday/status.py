"""What a GameDay tells the world: the workflow's input, its `status` query and its result."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gameday.identity import Identity
from gameday.plan import Checkpoint, ResolvedStep
from gameday.runbook import Runbook

Phase = Literal[
    "planning", "awaiting_approval", "running", "restoring",
    "completed", "aborted", "rejected", "failed",
]
Outcome = Literal["completed", "aborted", "rejected", "failed"]
StepState = Literal[
    "pending", "awaiting_approval", "injecting", "active", "restoring", "restored", "skipped",
    "failed",
]
Expectation = Literal["met", "missed", "not measured", "measuring"]
"""A recovery objective's verdict (gameday/objectives.py): `measuring` until it is final."""
CLOSED_PHASES: frozenset[str] = frozenset({"completed", "aborted", "rejected", "failed"})


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GameDayInput(Model):
    """One typed input: the validated runbook, where it came from, and who started the run."""

    runbook: Runbook
    source: str | None = None
    started_by: str | None = None
    watchdog_poll: timedelta | None = Field(
        None, description="how often the dead man's switch checks that this run is alive (30s)"
    )
    handover_events: int | None = Field(
        None, ge=200, le=10_000, description="history length at which the run continues as new "
        "(4000; workflows/handover.py)")
    drift_window: timedelta | None = Field(
        None, ge=timedelta(seconds=1), le=timedelta(hours=24),
        description="how long one drift watch activity looks before it reports (1h; "
        "workflows/drift.py); a look that finds something reports at once")
    carried: Carried | None = Field(
        None, description="set by the GameDay itself when it continues as new: the previous run's "
        "state (workflows/handover.py); never by whoever starts a GameDay")


class Approve(Model):
    approver: Identity
    step: str | None = None
    note: str | None = None
    plan_hash: str | None = None
    request_id: str | None = Field(None, description="echoed in the event, so a CLI can see its answer")
    signature: str | None = Field(
        None, max_length=16_384, description="armored `ssh-keygen -Y sign -n gameday` signature of "
        "`gameday-approval:v1:<workflow id>:<gate>:<plan hash>` (contract §8)")
    signed_text: str | None = Field(
        None, max_length=1024, description="the text the signer signed: never what counts (the "
        "workflow checks the signature over its own text), only to say why a signature for another "
        "run, gate or plan is refused")


class Reject(Model):
    approver: Identity
    reason: str | None = None
    request_id: str | None = None


class Abort(Model):
    by: Identity
    reason: str
    request_id: str | None = None


class ProbeResult(BaseModel):
    """One probe's answer to one check: the report's probe table and time-to-detect read these."""

    name: str
    ok: bool
    at: datetime
    latency_ms: float
    value: str
    """What was observed: an HTTP status, `connected`, or the error."""


class SteadyStateNow(BaseModel):
    """What the steady-state watch saw at its latest check, reported at once while its window is
    still open (a failed check, or a verdict the run did not know yet). Shown on the board and in
    `status --json`; never measured: the window's own report stays the record of every check."""

    at: datetime
    ok: bool
    consecutive_failures: int
    failing: str = ""
    """The failing probes and what they answered, when the check failed."""


class Event(Model):
    at: datetime
    kind: str
    detail: str
    step: str | None = None
    by: str | None = None
    request_id: str | None = None
    fingerprint: str | None = None
    """An `approved` event of a signed approval: the approver's key as `ssh-keygen -l` prints it."""


class StepStatus(Model):
    id: str
    action: str
    cloud: str | None
    state: StepState = "pending"
    resources: int = 0
    group: int = Field(description="index of the runbook item the step belongs to")
    approved_by: list[str] = []
    injected_at: datetime | None = None
    restored_at: datetime | None = None
    error: str | None = None
    zone: str | None = None
    """The zone the step acts on, by its name in the target's account; None: a region."""
    zone_id: str | None = None
    """That zone's physical id (AWS zone ID, Azure physical zone), where the cloud tells."""
    recover_within_seconds: float | None = None
    """The step's objective, `expect.recover_within`; None: the step has none (gameday/objectives.py)."""
    expectation_met: bool | None = None
    """Whether every probe passed again within the objective; None: no objective, not measurable,
    or still being measured (`expectation` says which, `expectation_note` why)."""
    expectation: Expectation | None = None
    expectation_note: str | None = None
    failure_detected_at: datetime | None = None
    """The first failed check after the apply."""
    time_to_detect_seconds: float | None = None
    recovered_at: datetime | None = None
    """The first check after the last failure at which every probe passed."""
    time_to_recover_seconds: float | None = None
    """From the apply to `recovered_at`; 0 when no check failed."""


class GameDayStatus(Model):
    """The `status` query; once the run closes, the same shape is its result."""

    runbook: str
    phase: Phase
    pending_approval: str | None = None
    pending_approvals: list[str] = Field([], description="every gate awaiting approval, oldest first "
                                         "(steps of one parallel group may wait together)")
    steps: list[StepStatus]
    active_faults: list[str] = []
    plan_hash: str | None = None
    events: list[Event] = []
    started_at: datetime
    deadline: datetime
    approvals_required: int = 1
    approvals: Literal["asserted", "signed"] = "asserted"
    """signed: approvals count only with the approver's signature (`approve --sign-with`)."""
    outcome: Outcome | None = None
    reason: str | None = None
    hypothesis_held: bool | None = None
    """Once closed: whether the steady state held; None while running, or when the runbook has
    no steady state (not tested)."""
    restored: bool | None = None
    ended_at: datetime | None = None
    probe_checks: list[ProbeResult] = []
    """Every probe check the run learnt of (baseline, watch windows, recovery), oldest first; the
    last `MAX_PROBE_CHECKS` when there were more."""
    probe_checks_dropped: int = 0
    """How many older checks were left out of `probe_checks` to keep it bounded."""
    steady_state_now: SteadyStateNow | None = None
    """The watch's latest check when it is newer than `probe_checks` (see `SteadyStateNow`)."""


MAX_PROBE_CHECKS = 2000


GAMEDAY_FAILED = "GameDayFailed"
"""Type of the `ApplicationError` a GameDay closes with when its outcome is `failed` or a fault
was not restored (contract §7); its first detail is the `GameDayStatus` as JSON."""


def status_from_failure(error: BaseException) -> GameDayStatus | None:
    """The status a failed GameDay carried in its failure, or None when `error` is something else.

    Accepts a `WorkflowFailureError` (from `handle.result()`) or the `ApplicationError` itself."""
    from temporalio.exceptions import ApplicationError

    cause = getattr(error, "cause", None) if not isinstance(error, ApplicationError) else error
    if not isinstance(cause, ApplicationError) or cause.type != GAMEDAY_FAILED or not cause.details:
        return None
    detail = cause.details[0]
    if isinstance(detail, GameDayStatus):
        return detail
    return GameDayStatus.model_validate(detail)


class UpdateAnswer(Model):
    """What the `approve`, `reject` and `abort` Updates answer (contract §9): whether the workflow
    recorded the request as asked, and the event it recorded (`approved`, `approval_refused`, ...)."""

    accepted: bool
    kind: str
    detail: str


class Notification(BaseModel):
    """A message for the runbook's webhook (the `notify.post` activity)."""

    webhook: str
    text: str
    workflow_id: str


def approve_flags(gate: str, signed: bool) -> str:
    """What `gameday approve RUN --as WHO` needs besides: the gate (none for the start) and, for a
    runbook whose approvals are signed, the key to sign with."""
    return ("" if gate == "start" else f" --step {gate}") + (" --sign-with <your key file>" if signed else "")


# --- continue-as-new ------------------------------------------------------------------------------
# A GameDay held for days would pass Temporal's history limits (10,240 events warn, 51,200
# terminate). So, while its faults hold and nothing is in flight, it continues as new under the
# same workflow id, and the new run takes over from this record (workflows/handover.py): what the
# board shows (every event since the start, the steps, the probe table), the saga (every
# checkpoint, restored or not), the approvals counted, where the runbook is, drift's coverage and
# the steady state's count of failed checks. Nothing the promise depends on lives anywhere else.


class CarriedEntry(BaseModel):
    """One saga entry: a recorded fault, restored or still in effect."""

    step_id: str
    checkpoint: Checkpoint
    group: int
    unit: int
    restored: bool


class CarriedDrift(BaseModel):
    """A drift watch that was going when the run handed over: what it has brought under the fault
    so far, so the next run neither cuts those again nor reuses a round's unit id."""

    step_id: str
    group: int
    covered: list[str]
    rounds: int
    units: int


class CarriedCheck(BaseModel):
    """One steady-state check as recovery objectives measure it (gameday/objectives.py `Check`)."""

    at: datetime
    failures: str


class CarriedRecovery(BaseModel):
    """One step's recovery measure so far (gameday/objectives.py `Recovery`)."""

    recover_within: timedelta
    applied_at: datetime
    checks: int
    detected_at: datetime | None
    detected_by: str
    last_failure_at: datetime | None
    recovered_at: datetime | None
    last_check_at: datetime | None


class Carried(Model):
    """Everything a run of a GameDay hands to the next one."""

    run: int
    """The number of the run that takes over (the first run is 1)."""
    started: datetime
    deadline: datetime
    plan: list[ResolvedStep]
    plan_hash: str | None
    steps: list[StepStatus]
    events: list[Event]
    probe_checks: list[ProbeResult]
    probe_checks_dropped: int
    steady_state_now: SteadyStateNow | None
    hypothesis_held: bool
    restore_failed: bool
    approvals_counted: dict[str, list[str]]
    rejection: Reject | None
    saga: list[CarriedEntry]
    unit_ids: list[str]
    group: int
    """The runbook item in progress: its interrupted holds go on, then the items after it."""
    holds: dict[str, datetime]
    """Each hold (or wait) the hand-over interrupted, by step id: when it ends."""
    hold_ends: dict[str, datetime]
    """When each step's hold ends (the steady-state watch sizes its windows by them)."""
    drift: list[CarriedDrift]
    known_ok: bool | None
    failed_checks: int
    """Consecutive failed steady-state checks so far: a breach counts across runs."""
    recoveries: dict[str, CarriedRecovery]
    recent_checks: list[CarriedCheck]
    injecting_since: dict[str, datetime]
    leases_held: bool
    watchdog_armed: bool


GameDayInput.model_rebuild()
