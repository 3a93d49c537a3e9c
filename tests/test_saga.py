"""The saga's compensation order without a server (workflows/saga.py), over generated runs: newest
group first, each step still in effect exactly once, a step's units newest first."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gameday.plan import Checkpoint, Scope
from workflows.saga import Saga, SagaEntry


def _checkpoint(unit_id: str) -> Checkpoint:
    return Checkpoint(run_id="saga-test", step_id=unit_id, action="blackhole_zone",
                      scope=Scope(cloud="aws", account="123456789012", region="us-east-1",
                                  zone="us-east-1a"),
                      resources=1, state={})


@st.composite
def sagas(draw) -> Saga:
    """A run's saga as the workflow records it: groups in order, the steps of a group
    interleaved, each step's units (zones) in order, some of them restored already."""
    saga = Saga()
    for group in range(draw(st.integers(0, 4))):
        steps = [f"g{group}-s{i}" for i in range(draw(st.integers(1, 3)))]
        units = {step: draw(st.integers(1, 3)) for step in steps}
        order = [(step, unit) for step in steps for unit in range(units[step])]
        order = sorted(order, key=lambda su: (su[1], draw(st.integers(0, 9))))  # a group interleaves
        for step, unit in order:
            saga.record(SagaEntry(step, _checkpoint(f"{step}-u{unit}"), group, unit,
                                  restored=draw(st.booleans())))
    return saga


@settings(max_examples=200, deadline=None)
@given(saga=sagas())
def test_compensation_restores_newest_group_first_and_every_step_in_effect_once(saga: Saga) -> None:
    groups = saga.compensation_groups()
    in_effect = {e.step_id for e in saga.in_effect()}
    flat = [step for steps in groups for step in steps]
    assert sorted(flat) == sorted(in_effect) and len(flat) == len(set(flat))
    group_of = {e.step_id: e.group for e in saga.entries}
    numbers = [group_of[steps[0]] for steps in groups]
    assert numbers == sorted(numbers, reverse=True)
    assert all(len({group_of[step] for step in steps}) == 1 for steps in groups)
    for step in in_effect:
        assert [e.unit for e in saga.units_of(step)] == sorted(
            (e.unit for e in saga.entries if e.step_id == step), reverse=True)
    assert saga.any_in_effect() == bool(in_effect) == (not saga.all_restored())


def test_an_empty_saga_has_nothing_to_compensate() -> None:
    assert Saga().compensation_groups() == [] and Saga().all_restored()
