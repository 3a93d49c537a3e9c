"""The status board without a server (workflows/status_board.py): what `status` answers from the
facts the workflow records, the probe table's bound, and when the run counts as closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
