"""The status board without a server (workflows/status_board.py): what `status` answers from the
facts the workflow records, the probe table's bound, and when the run counts as closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gameday.objectives import Check, as_check, split_rounds
from gameday.plan import Checkpoint, Scope
from gameday.status import MAX_PROBE_CHECKS, ProbeResult
from tests.support.gameday import aws_zone_step, runbook
from workflows.approvals import ApprovalDesk
from workflows.saga import Saga, SagaEntry
from workflows.status_board import StatusBoard, cut_places

STARTED = datetime(2026, 1, 6, 14, 0, tzinfo=UTC)
STEADY = {"interval": "1s", "probes": [{"name": "checkout", "http": {"url": "http://127.0.0.1:9/"}}]}


def board(**fields) -> StatusBoard:
    book = runbook(aws_zone_step("first"),
                   {"parallel": [{"id": "soak", "action": "wait", "duration": "5s"},
                                 aws_zone_step("second", zone="us-east-1b")]},
                   **fields)
    return StatusBoard(book, ApprovalDesk(book, "board-test"), Saga(), STARTED,
                       STARTED + timedelta(minutes=10))


def checkpoint(unit_id: str) -> Checkpoint:
    return Checkpoint(run_id="board-test", step_id=unit_id, action="blackhole_zone",
                      scope=Scope(cloud="aws", account="123456789012", region="us-east-1",
                                  zone="us-east-1a"),
                      resources=1, state={})


def check(index: int) -> ProbeResult:
    return ProbeResult(name="checkout", ok=True, at=STARTED + timedelta(seconds=index),
                       latency_ms=1.0, value=str(index))


def test_every_step_is_on_the_board_pending_with_its_group() -> None:
    steps = board().status().steps
    assert [(s.id, s.cloud, s.group, s.state) for s in steps] == [
        ("first", "aws", 0, "pending"), ("soak", None, 1, "pending"), ("second", "aws", 1, "pending")]


def test_active_faults_are_the_fault_steps_in_effect_and_the_gate_is_the_oldest_waiting() -> None:
    shown = board()
    shown.steps["first"].state = "restoring"
    shown.steps["soak"].state = "active"
    shown.steps["second"].state = "active"
    shown.desk.pending.extend(["first", "second"])
    status = shown.status()
    assert status.active_faults == ["first", "second"]
    assert status.pending_approval == "first" and status.pending_approvals == ["first", "second"]


def test_the_outcome_and_verdicts_show_only_once_the_run_has_ended() -> None:
    shown = board(steady_state=STEADY)
    shown.outcome, shown.reason = "completed", "done"
    status = shown.status()
    assert (status.outcome, status.restored, status.hypothesis_held) == (None, None, None)
    assert status.reason == "done"
    shown.ended = STARTED + timedelta(minutes=3)
    status = shown.status()
    assert (status.outcome, status.restored, status.hypothesis_held) == ("completed", True, True)


def test_a_fault_in_effect_or_a_failed_restore_is_not_restored() -> None:
    shown = board()
    shown.saga.record(SagaEntry("first", checkpoint("first"), 0))
    assert not shown.all_restored()
    shown.saga.entries[0].restored = True
    assert shown.all_restored()
    shown.restore_failed = True
    assert not shown.all_restored()


def test_the_hypothesis_is_not_tested_without_a_steady_state() -> None:
    assert board().hypothesis_verdict() == "not tested"
    tested = board(steady_state=STEADY)
    assert tested.hypothesis_verdict() == "yes"
    tested.hypothesis_held = False
    assert tested.hypothesis_verdict() == "no"


def test_the_probe_table_keeps_the_newest_checks_and_counts_the_rest() -> None:
    shown = board()
    shown.keep_checks([check(i) for i in range(MAX_PROBE_CHECKS)])
    shown.keep_checks([check(MAX_PROBE_CHECKS), check(MAX_PROBE_CHECKS + 1)])
    status = shown.status()
    assert len(status.probe_checks) == MAX_PROBE_CHECKS and status.probe_checks_dropped == 2
    assert status.probe_checks[0].value == "2"
    assert status.probe_checks[-1].value == str(MAX_PROBE_CHECKS + 1)


def test_a_run_in_a_closed_phase_takes_no_more_requests() -> None:
    shown = board()
    assert shown.closed() is None
    shown.phase = "aborted"
    assert shown.closed() == "the GameDay has already ended (aborted)"


def test_a_refusal_skips_every_step() -> None:
    shown = board()
    shown.skip_all()
    assert {s.state for s in shown.status().steps} == {"skipped"}


def test_the_places_cut_are_named_for_a_saved_view():
    scopes = [Scope(cloud="aws", account="123456789012", region="us-east-1", zone="us-east-1a"),
              Scope(cloud="gcp", account="shop", region="us-central1", zone="us-central1-a"),
              Scope(cloud="azure", account="sub", region="eastus", zone="1"),
              Scope(cloud="azure", account="sub", region="westus2", zone="1"),
              Scope(cloud="aws", account="123456789012", region="eu-west-1"),
              Scope(cloud="aws", account="210987654321", region="us-east-1", zone="us-east-1a")]
    assert cut_places(scopes) == ["aws:eu-west-1", "aws:us-east-1a", "azure:eastus-1",
                                  "azure:westus2-1", "gcp:us-central1-a"]
    assert cut_places([]) == []


# --- recovery objectives (contract §10 `expect`; gameday/objectives.py) ---------------------------


def objective_board(first: str = "10s", second: str | None = None) -> StatusBoard:
    """`first` (group 0) then `second` (group 1), each with `expect.recover_within` when given."""
    steps = [aws_zone_step("first", expect={"recover_within": first}),
             aws_zone_step("second", zone="us-east-1b")]
    if second:
        steps[1]["expect"] = {"recover_within": second}
    book = runbook(*steps, steady_state=STEADY)
    return StatusBoard(book, ApprovalDesk(book, "board-test"), Saga(), STARTED,
                       STARTED + timedelta(minutes=10))


def at(seconds: float) -> datetime:
    return STARTED + timedelta(seconds=seconds)


def checks(*verdicts: tuple[float, bool], probe: str = "checkout") -> list[Check]:
    rounds = [[ProbeResult(name=probe, ok=ok, at=at(t), latency_ms=1.0,
                           value="HTTP 200" if ok else "HTTP 503, expected 200")] for t, ok in verdicts]
    return [c for c in (as_check(r, 1) for r in rounds) if c is not None]


def first_step(shown: StatusBoard):
    return next(s for s in shown.status().steps if s.id == "first")


def test_recovery_runs_from_the_apply_to_the_first_pass_after_the_last_failure() -> None:
    shown = objective_board("10s")
    shown.observe_checks(checks((2, False)))  # before the apply: not this fault's
    shown.steps["first"].injected_at = at(5)
    shown.observe_checks(checks((6, True), (7, False), (8, True), (9, False), (10, True), (11, True)))
    running = first_step(shown)
    assert (running.expectation_met, running.expectation) == (None, "measuring")  # may still fail again
    assert running.time_to_recover_seconds == 5.0
    shown.ended = at(20)
    step = first_step(shown)
    assert (step.expectation_met, step.expectation) == (True, "met")
    assert step.recover_within_seconds == 10.0
    assert (step.failure_detected_at, step.time_to_detect_seconds) == (at(7), 2.0)
    assert (step.recovered_at, step.time_to_recover_seconds) == (at(10), 5.0)
    assert step.expectation_note == "met: every probe passed again 5.0s after the apply (objective 10s)"


def test_still_failing_past_the_objective_is_missed_at_once_and_so_is_a_late_recovery() -> None:
    shown = objective_board("3s")
    shown.steps["first"].injected_at = at(0)
    shown.observe_checks(checks((1, False), (2, False), (3, False)))
    assert first_step(shown).expectation_met is None  # 3s: not past the objective yet
    shown.observe_checks(checks((4, False)))
    missed = first_step(shown)
    assert (missed.expectation_met, missed.expectation) == (False, "missed")
    assert missed.expectation_note == ("missed: still failing 4.0s after the apply when last checked "
                                       "(objective 3s)")
    shown.observe_checks(checks((5, True)))
    late = first_step(shown)
    assert (late.expectation_met, late.time_to_recover_seconds, late.time_to_detect_seconds) == (
        False, 5.0, 1.0)


def test_a_fault_that_never_recovered_before_the_run_ended_missed_its_objective() -> None:
    shown = objective_board("10s")
    shown.steps["first"].injected_at = at(0)
    shown.observe_checks(checks((1, True), (2, False), (3, False)))
    shown.ended = at(4)
    step = first_step(shown)
    assert (step.expectation_met, step.expectation, step.recovered_at) == (False, "missed", None)
    assert step.expectation_note == ("missed: still failing 3.0s after the apply when the run ended "
                                     "(objective 10s)")


def test_without_a_check_after_the_apply_the_objective_cannot_be_measured() -> None:
    shown = objective_board("10s")
    shown.observe_checks(checks((1, False), (2, True)))
    shown.steps["first"].injected_at = at(3)
    shown.ended = at(4)
    step = first_step(shown)
    assert (step.expectation_met, step.expectation) == (None, "not measured")
    assert step.expectation_note == ("could not be measured: no steady-state check ran from the apply "
                                     "until the run ended")
    assert (step.time_to_detect_seconds, step.time_to_recover_seconds) == (None, None)
    never = objective_board("10s")
    never.ended = at(4)
    assert first_step(never).expectation == "not measured"
    assert first_step(never).expectation_note == "could not be measured: the fault was never applied"


def test_checks_that_never_failed_are_a_recovery_at_once() -> None:
    shown = objective_board("10s")
    shown.steps["first"].injected_at = at(0)
    shown.observe_checks(checks((1, True), (2, True)))
    shown.ended = at(3)
    step = first_step(shown)
    assert (step.expectation_met, step.time_to_detect_seconds, step.time_to_recover_seconds) == (
        True, None, 0.0)
    assert step.recovered_at is None and step.failure_detected_at is None
    assert step.expectation_note == ("met: no check failed after the apply (2 checks): recovered at "
                                     "once (objective 10s)")


def test_the_next_fault_closes_the_measure_of_the_one_before() -> None:
    shown = objective_board("10s", "10s")
    shown.steps["first"].injected_at = at(0)
    shown.observe_checks(checks((1, False), (2, True)))
    shown.steps["second"].injected_at = at(5)
    shown.observe_checks(checks((6, False), (7, False), (20, False)))  # the second fault's failures
    step = first_step(shown)
    assert (step.expectation_met, step.time_to_recover_seconds) == (True, 2.0)  # final already
    second = next(s for s in shown.status().steps if s.id == "second")
    assert (second.time_to_detect_seconds, second.expectation_met) == (1.0, False)  # 15s > 10s

    cut = objective_board("10s", "10s")
    cut.steps["first"].injected_at = at(0)
    cut.observe_checks(checks((1, False)))
    cut.steps["second"].injected_at = at(5)
    cut.observe_checks(checks((6, True)))  # after the next apply: not the first fault's recovery
    step = first_step(cut)
    assert (step.expectation_met, step.expectation) == (None, "not measured")
    assert step.expectation_note == ("could not be measured: still failing when the next fault (second) "
                                     "began its apply, 1.0s after the apply (objective 10s)")


def test_the_measure_ends_when_the_next_fault_begins_its_apply_not_when_it_ends() -> None:
    shown = objective_board("10s")
    shown.steps["first"].injected_at = at(0)
    shown.observe_checks(checks((1, False), (2, True)))
    shown.injecting_since["second"] = at(4)  # as `publish` records it
    shown.observe_checks(checks((4.5, False), (5.5, False)))  # the second's apply already cuts
    shown.steps["second"].injected_at = at(6)
    step = first_step(shown)
    assert (step.expectation_met, step.time_to_recover_seconds) == (True, 2.0)
    assert step.expectation_note == "met: every probe passed again 2.0s after the apply (objective 10s)"


def test_checks_reported_before_the_apply_was_recorded_still_count() -> None:
    shown = objective_board("10s")
    shown.observe_checks(checks((6, False), (7, True)))  # a watch made them after the apply ended
    shown.steps["first"].injected_at = at(5)
    assert first_step(shown).time_to_detect_seconds == 1.0  # the query: from the recent checks
    shown.start_recoveries()
    shown.observe_checks(checks((8, False), (9, True)))
    shown.ended = at(10)
    assert (first_step(shown).time_to_detect_seconds, first_step(shown).time_to_recover_seconds) == (
        1.0, 4.0)


def test_a_check_passes_only_when_every_probe_of_its_round_passed() -> None:
    def result(name: str, seconds: float, ok: bool) -> ProbeResult:
        return ProbeResult(name=name, ok=ok, at=at(seconds), latency_ms=1.0, value="x")

    watched = [result("a", 1, True), result("b", 1.2, True), result("a", 2, True),
               result("b", 2.1, False), result("a", 3, True)]  # the last round cut short
    rounds = split_rounds(watched)
    assert [[r.at for r in round_] for round_ in rounds] == [[at(1), at(1.2)], [at(2), at(2.1)], [at(3)]]
    found = [as_check(r, 2) for r in rounds]
    assert found[0] == Check(at=at(1.2), failures="")  # when its last probe answered
    assert found[1] == Check(at=at(2.1), failures="b: x")
    assert found[2] is None  # a partial round never passes
    assert as_check([result("a", 4, False)], 2) == Check(at=at(4), failures="a: x")
