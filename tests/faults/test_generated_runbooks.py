"""The promise on generated runbooks: whatever runbook validates, whatever happens to its run, every
cloud ends exactly as it began and no approval counts twice.

Each run is drawn from its seed (tests/faults/generate.py): random runbooks over the lab's AWS,
GCP and Azure with parallel groups, region steps beside zone steps, gates, two-person rules,
drift on and off and step ids chosen to collide with other steps' units; then one of terminate,
cancel, abort, worker SIGKILL or nothing at a random moment (tests/faults/generated.py).

The default is a quick subset; `GAMEDAY_GENERATED_RUNS=N` runs N seeds from `GAMEDAY_FAULT_SEED`
(each seed draws its runbook and its interruption) and the terminal summary ends with
`N runs, N restored exactly, 0 leaked, 0 double-counted`. A failing run prints its seed and its
runbook as YAML: `GAMEDAY_FAULT_SEED=<seed> GAMEDAY_GENERATED_RUNS=1` repeats it.
"""

from __future__ import annotations

import os

import pytest

from tests.faults.generate import draw
from tests.faults.generated import run_generated
from tests.faults.harness import BASE_SEED

RUNS = int(os.environ.get("GAMEDAY_GENERATED_RUNS") or 0)

QUICK = [3, 47, 39, 61, 15]
"""Seeds of a few short runbooks, one per kind of interruption: the subset `make test` runs."""

RUNS_DRAWN = [draw(BASE_SEED + i) for i in range(RUNS)] if RUNS else [draw(seed) for seed in QUICK]


@pytest.mark.parametrize("run", RUNS_DRAWN, ids=lambda run: run.name)
def test_a_generated_runbook_keeps_the_promise(run, orchestrator, clouds, runner):
    record = run_generated(run, orchestrator, clouds, runner.run)
    print(record.summary())
    story = f"{record.summary()}\n{run.describe()}"
    assert not record.leaks, f"{story}\nleaked:\n" + "\n".join(record.leaks[:40])
    assert not record.double_counted, f"{story}\ndouble-counted:\n" + "\n".join(record.double_counted)
    assert not record.problems, f"{story}\nproblems:\n" + "\n".join(record.problems)
