"""No fault outlives its run, whatever happens to gameday itself: one GameDay over a zone in each
cloud at once, one orchestrator fault at a seeded random moment, every cloud exactly as before.

The kinds: SIGKILL the worker subprocess and start another; cancel the workflow; terminate it
(its watchdog restores); signal abort; a storm of 30% failing calls (429/503) on all three clouds
for a seeded 5-15 s; SIGKILL a Temporal dev server of the runs' own and start it again on the
same port and database.

The default run tries each kind of fault once; `GAMEDAY_FAULT_RUNS=N` runs N seeded runs instead
(kinds in turn, moments and delays drawn from the seed; `GAMEDAY_FAULT_SEED` shifts the seeds) and
the terminal summary ends with `N runs, N restored exactly, 0 leaked`.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import BASE_SEED, KINDS, RUNS, FaultPlan, run_once

QUICK = [
    FaultPlan.draw(1, "kill_worker", "holding"),
    FaultPlan.draw(2, "cancel", "applying"),
    FaultPlan.draw(5, "terminate", "holding"),
    FaultPlan.draw(4, "abort", "restoring"),
    FaultPlan.draw(3, "throttle", "approved"),
    FaultPlan.draw(18, "restart_temporal", "holding"),
]
PLANS = [FaultPlan.draw(BASE_SEED + i, KINDS[i % len(KINDS)]) for i in range(RUNS)] if RUNS else QUICK


@pytest.mark.parametrize("plan", PLANS, ids=lambda plan: plan.name)
def test_no_fault_outlives_its_run(plan, request, clouds, runner):
    at = request.getfixturevalue(
        "restartable_orchestrator" if plan.kind == "restart_temporal" else "orchestrator")
    record = run_once(plan, at, clouds, runner.run)
    print(record.summary())
    assert not record.leaks, f"{record.summary()}\n" + "\n".join(record.leaks[:40])
    assert not record.problems, f"{record.summary()}\n" + "\n".join(record.problems)
