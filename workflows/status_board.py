"""The status board of one GameDay: what the world sees of the run while it goes on.

The board holds the facts that the `status` query answers (phase, plan, step states, events, the
probe table, the outcome) and publishes them: the phase as search attribute `GameDayPhase`, what
is cut right now as `GameDayZones` (`cut_places`), the incident commander's board
(gameday/board.py) as the Temporal UI's current details, and the moments the runbook's webhook
asks for as notifications. Everything the workflow learns is recorded here, in the order it
happens, so that a replay shows the same board.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from opentelemetry import trace

    from gameday.board import BoardFacts, render_board
    from gameday.objectives import Check, Recovery
    from gameday.plan import ResolvedStep, Scope
    from gameday.runbook import ParallelGroup, Runbook, WaitStep
    from gameday.status import (
        CLOSED_PHASES,
        MAX_PROBE_CHECKS,
        Event,
        GameDayStatus,
        Notification,
        Outcome,
        Phase,
        ProbeResult,
        SteadyStateNow,
        StepStatus,
    )
    from workflows.approvals import ApprovalDesk
    from workflows.errors import describe
    from workflows.saga import Saga

PHASE_ATTRIBUTE = SearchAttributeKey.for_keyword("GameDayPhase")
OUTCOME_ATTRIBUTE = SearchAttributeKey.for_keyword("GameDayOutcome")
ZONES_ATTRIBUTE = SearchAttributeKey.for_keyword_list("GameDayZones")
PATCH_PUBLISH_CUT_ZONES = "publish-cut-zones"
"""Runs started before this change did not keep search attribute `GameDayZones`."""
TRACED_EVENTS = {"approved", "approval_refused", "rejected_by", "rejection_refused",
                 "abort_requested", "abort_repeated"}
"""Events that the current span carries too: the decisions of people, visible in a trace."""
RECENT_CHECKS = 50


class StatusBoard:
    """The run's phase, plan, steps, events, probe checks and outcome, and their publication."""

    def __init__(self, runbook: Runbook, desk: ApprovalDesk, saga: Saga, started: datetime,
                 deadline: datetime) -> None:
        self.runbook = runbook
        self.desk = desk
        self.saga = saga
        self.started = started
        self.deadline = deadline
        self.phase: Phase = "planning"
        self.plan: dict[str, ResolvedStep] = {}
        self.plan_hash: str | None = None
        self.events: list[Event] = []
        self.outcome: Outcome | None = None
        self.reason: str | None = None
        self.ended: datetime | None = None
        self.hypothesis_held = True
        self.restore_failed = False
        """A restore gave up: the run cannot say that every fault is restored."""
        self.probe_checks: list[ProbeResult] = []
        self.probe_checks_dropped = 0
        self.steady_state_now: SteadyStateNow | None = None
        """The watch's latest check as it reported it (signal), shown until a newer one is kept."""
        self.notifications: list[asyncio.Task[None]] = []
        self.zones_published: list[str] = []
        self.objectives = {s.id: s.expect.recover_within for s in runbook.fault_steps() if s.expect}
        """Each step's `expect.recover_within`, measured from the checks (gameday/objectives.py)."""
        self.recoveries: dict[str, Recovery] = {}
        self.recent_checks: list[Check] = []
        """The last `RECENT_CHECKS` checks, for a measure that starts after its first checks came."""
        self.injecting_since: dict[str, datetime] = {}
        """When each fault step began its apply, as first published: the end of the measure of the
        faults of earlier runbook items."""
        self.steps: dict[str, StepStatus] = {}
        for index, item in enumerate(runbook.steps):
            members = item.parallel if isinstance(item, ParallelGroup) else [item]
            for step in members:
                cloud = None if isinstance(step, WaitStep) else step.target.cloud
                self.steps[step.id] = StepStatus(id=step.id, action=step.action, cloud=cloud,
                                                 group=index)

    # --- recording ------------------------------------------------------------------------------

    def event(self, kind: str, detail: str, **extra: Any) -> None:
        self.events.append(Event(at=workflow.now(), kind=kind, detail=detail, **extra))
        if kind in TRACED_EVENTS:
            attributes = {"detail": detail, **{k: str(v) for k, v in extra.items() if v is not None}}
            trace.get_current_span().add_event(f"gameday.{kind}", attributes)

    def end(self, outcome: Outcome, reason: str) -> None:
        """The run's outcome and why, recorded as an event of that kind."""
        self.outcome = outcome
        self.reason = reason
        self.event(outcome, reason)

    def close(self) -> None:
        """The run has ended: a step that never started is skipped."""
        self.ended = workflow.now()
        for step in self.steps.values():
            if step.state in ("pending", "awaiting_approval"):
                step.state = "skipped"

    def skip_all(self) -> None:
        """Refused before any change: no step will run."""
        for step in self.steps.values():
            step.state = "skipped"

    def keep_checks(self, results: list[ProbeResult]) -> None:
        """Every check the run learns of, the last `MAX_PROBE_CHECKS` of them, counting the rest."""
        self.probe_checks.extend(results)
        excess = len(self.probe_checks) - MAX_PROBE_CHECKS
        if excess > 0:
            del self.probe_checks[:excess]
            self.probe_checks_dropped += excess

    def see_steady_state(self, now: SteadyStateNow) -> None:
        """The watch's latest check, while its window is open: shown at once, never measured."""
        if self.steady_state_now is None or now.at > self.steady_state_now.at:
            self.steady_state_now = now
            self.publish()

    def latest_steady_state(self) -> SteadyStateNow | None:
        """`steady_state_now` while it is newer than every kept check, else None."""
        now = self.steady_state_now
        if now is None or (self.probe_checks and self.probe_checks[-1].at >= now.at):
            return None
        return now

    def observe_checks(self, checks: list[Check]) -> None:
        """Measure each applied step's recovery against its objective with these checks."""
        if not self.objectives:
            return
        checks = sorted(checks, key=lambda c: c.at)
        self.start_recoveries()
        for check in checks:
            for step_id, recovery in self.recoveries.items():
                recovery.observe(check, self.window_end(step_id)[0])
        self.recent_checks = (self.recent_checks + checks)[-RECENT_CHECKS:]

    def start_recoveries(self) -> None:
        """A measure for each step with an objective once it is applied, fed the recent checks: a
        watch may report checks made after the apply before the workflow has recorded the apply."""
        for step_id, within in self.objectives.items():
            applied = self.steps[step_id].injected_at
            if applied is None or step_id in self.recoveries:
                continue
            recovery = self.recoveries[step_id] = Recovery(within, applied)
            for check in self.recent_checks:
                recovery.observe(check, self.window_end(step_id)[0])

    def window_end(self, step_id: str) -> tuple[datetime | None, str | None]:
        """When, and by which step, the step's measure was closed: a fault of a later runbook item
        began its apply (its effects may show before the apply ends); (None, None) until then."""
        group = self.steps[step_id].group
        later = sorted((self.injecting_since.get(s.id) or s.injected_at, s.id)
                       for s in self.steps.values() if s.group > group
                       and (s.injected_at is not None or s.id in self.injecting_since))
        return later[0] if later else (None, None)

    # --- reading --------------------------------------------------------------------------------

    def closed(self) -> str | None:
        """Why nothing can be asked of the run any more, or None while it runs."""
        if self.phase in CLOSED_PHASES:
            return f"the GameDay has already ended ({self.phase})"
        return None

    def all_restored(self) -> bool:
        return self.saga.all_restored() and not self.restore_failed

    def hypothesis_verdict(self) -> str:
        if self.runbook.steady_state is None:
            return "not tested"
        return "yes" if self.hypothesis_held else "no"

    def step_status(self, step: StepStatus) -> StepStatus:
        """The step as recorded, with its objective's measure when it has one."""
        within = self.objectives.get(step.id)
        if within is None:
            return step
        fields: dict[str, Any] = {"recover_within_seconds": within.total_seconds()}
        recovery = self.recoveries.get(step.id)
        if recovery is None and step.injected_at is not None:  # applied, not published yet
            recovery = Recovery(within, step.injected_at)
            for check in self.recent_checks:
                recovery.observe(check, self.window_end(step.id)[0])
        if recovery is None:
            if self.ended is not None:
                return step.model_copy(update={**fields, "expectation": "not measured",
                                               "expectation_note": "could not be measured: the fault "
                                               "was never applied"})
            return step.model_copy(update={**fields, "expectation": "measuring",
                                           "expectation_note": "not applied yet"})
        end, by = self.window_end(step.id)
        verdict = recovery.verdict(end, self.ended is not None, by)
        return step.model_copy(update={
            **fields, "expectation_met": verdict.met, "expectation": verdict.expectation,
            "expectation_note": verdict.note,
            "failure_detected_at": verdict.detected_at, "time_to_detect_seconds": verdict.detect_seconds,
            "recovered_at": verdict.recovered_at, "time_to_recover_seconds": verdict.recover_seconds})

    def status(self) -> GameDayStatus:
        """The `status` query's answer (contract §5 and §7)."""
        closed = self.ended is not None
        return GameDayStatus(
            runbook=self.runbook.name,
            phase=self.phase,
            pending_approval=self.desk.pending[0] if self.desk.pending else None,
            pending_approvals=list(self.desk.pending),
            steps=[self.step_status(s) for s in self.steps.values()],
            active_faults=[s.id for s in self.steps.values() if s.state in ("active", "restoring")
                           and s.cloud is not None],
            plan_hash=self.plan_hash,
            events=list(self.events),
            started_at=self.started,
            deadline=self.deadline,
            approvals_required=self.runbook.approvals_required,
            approvals=self.runbook.approvals,
            outcome=self.outcome if closed else None,
            reason=self.reason,
            hypothesis_held=(self.hypothesis_held if closed and self.runbook.steady_state is not None
                             else None),
            restored=self.all_restored() if closed else None,
            ended_at=self.ended,
            probe_checks=list(self.probe_checks),
            probe_checks_dropped=self.probe_checks_dropped,
            steady_state_now=self.latest_steady_state(),
        )

    # --- publishing -----------------------------------------------------------------------------

    def set_phase(self, phase: Phase) -> None:
        if phase != self.phase:
            self.phase = phase
            self.event("phase", phase)
        workflow.upsert_search_attributes([PHASE_ATTRIBUTE.value_set(phase)])
        self.publish()

    def publish_outcome(self) -> None:
        """Search attribute `GameDayOutcome`, set once the run has its outcome (contract §7)."""
        assert self.outcome is not None
        workflow.upsert_search_attributes([OUTCOME_ATTRIBUTE.value_set(self.outcome)])

    def publish(self) -> None:
        """Keep the Temporal UI's current details the incident commander's board (gameday/board.py),
        and `GameDayZones` the places cut right now."""
        now = workflow.now()
        for step in self.steps.values():  # the workflow publishes each step as it begins injecting
            if step.state == "injecting" and step.cloud is not None:
                self.injecting_since.setdefault(step.id, now)
        self.start_recoveries()
        in_effect = [(e.step_id, e.checkpoint) for e in self.saga.in_effect()]
        workflow.set_current_details(render_board(self.status(), BoardFacts(
            workflow_id=workflow.info().workflow_id, now=workflow.now(), runbook=self.runbook,
            plan=list(self.plan.values()), in_effect=in_effect)))
        cut = cut_places([checkpoint.scope for _, checkpoint in in_effect])
        if cut != self.zones_published and workflow.patched(PATCH_PUBLISH_CUT_ZONES):
            workflow.upsert_search_attributes([ZONES_ATTRIBUTE.value_set(cut) if cut
                                               else ZONES_ATTRIBUTE.value_unset()])
            self.zones_published = cut

    def notify(self, kind: str, text: str) -> None:
        """Post to the runbook's webhook in the background; a failure is an event, never an error."""
        notify = self.runbook.notify
        if notify is None or kind not in notify.events:
            return
        message = Notification(webhook=notify.webhook, text=text,
                               workflow_id=workflow.info().workflow_id)

        async def post() -> None:
            try:
                await workflow.execute_activity(
                    "notify.post", message, start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=RetryPolicy(maximum_attempts=2), summary=f"notify: {kind}")
            except ActivityError as error:
                self.event("notify_failed", f"{kind}: {describe(error)}")

        self.notifications.append(asyncio.create_task(post()))

    async def notified(self) -> None:
        """Wait until every notification posted so far is delivered or has failed."""
        if self.notifications:
            await workflow.wait(self.notifications)


def cut_places(scopes: list[Scope]) -> list[str]:
    """`GameDayZones`: each zone a fault in effect cuts, as `cloud:zone` (an Azure zone with its
    region: `azure:eastus-1`), or `cloud:region` for a fault on a whole region; sorted, once each."""
    places = set()
    for scope in scopes:
        if scope.zone is None:
            places.add(f"{scope.cloud}:{scope.region}")
        elif scope.cloud == "azure":
            places.add(f"azure:{scope.region}-{scope.zone}")
        else:
            places.add(f"{scope.cloud}:{scope.zone}")
    return sorted(places)
