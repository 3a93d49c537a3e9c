"""Unit ids are unique in every runbook that validates (contract §7, defect 2): runbooks whose step
ids are chosen to collide with zone and drift units are generated, and each one that validates has
every unit the workflow could checkpoint under a distinct id."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gameday.runbook import SLUG, BlackholeRegionStep, Runbook
from gameday.units import drift_unit_id, possible_zones, zone_unit_id

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
REGION_TARGETS = {
    "aws": {"cloud": "aws", "account": "123456789012", "region": "us-east-1"},
    "gcp": {"cloud": "gcp", "project": "gameday-lab", "region": "us-central1"},
    "azure": {"cloud": "azure", "subscription": SUBSCRIPTION, "resource_group": "shop", "region": "eastus"},
}
ZONE_TARGETS = {
    "aws": {"cloud": "aws", "account": "123456789012", "region": "us-east-1", "zone": "us-east-1b"},
    "gcp": {"cloud": "gcp", "project": "gameday-lab", "zone": "us-central1-c"},
    "azure": {"cloud": "azure", "subscription": SUBSCRIPTION, "resource_group": "shop",
              "region": "eastus", "zone": "2"},
}
ZONES = [z for cloud, target in REGION_TARGETS.items() for z in possible_zones(cloud, target["region"])]
BASES = ["r", "a", "b-d1", "r-us-east-1", "x-d", "z" * 40, "q" * 52, "w" * 60, "v" * 63]
ROUNDS = 5
"""Drift rounds per unit the property computes (the check itself covers every round)."""


@st.composite
def adversarial_id(draw: st.DrawFn, earlier: list[str]) -> str:
    """A step id built from an earlier one (or a base) the ways units are built: zone, drift."""
    step_id = draw(st.sampled_from(earlier)) if earlier and draw(st.booleans()) else draw(
        st.sampled_from(BASES))
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            step_id = zone_unit_id(step_id, draw(st.sampled_from(ZONES)))
        else:
            step_id = drift_unit_id(step_id, draw(st.integers(1, 12)))
    if draw(st.integers(0, 5)) == 0:
        step_id = step_id[: draw(st.integers(1, 63))].rstrip("-") or "s"
    return step_id if re.match(SLUG, step_id) else draw(st.sampled_from(BASES))


@st.composite
def runbooks(draw: st.DrawFn) -> dict[str, Any]:
    ids: list[str] = []
    items: list[Any] = []
    for _ in range(draw(st.integers(1, 4))):
        group = []
        for _ in range(draw(st.integers(1, 3))):
            step_id = draw(adversarial_id(ids))
            ids.append(step_id)
            kind = draw(st.sampled_from(["region", "region", "zone", "wait"]))
            cloud = draw(st.sampled_from(sorted(REGION_TARGETS)))
            if kind == "region":
                step = {"id": step_id, "action": "blackhole_region", "target": REGION_TARGETS[cloud]}
            elif kind == "zone":
                step = {"id": step_id, "action": "blackhole_zone", "target": ZONE_TARGETS[cloud]}
            else:
                step = {"id": step_id, "action": "wait"}
            group.append({**step, "duration": "1m"})
        items.append({"parallel": group} if len(group) > 1 else group[0])
    return {"name": "units", "approvers": ["ic@example.com"], "max_duration": "1h",
            "guardrails": {"aws_accounts": ["123456789012"], "gcp_projects": ["gameday-lab"],
                           "azure_subscriptions": [SUBSCRIPTION]},
            "steps": items}


def unit_ids(runbook: Runbook) -> list[str]:
    """Every id the workflow could checkpoint under: steps, each possible zone of each region step,
    and drift rounds 1..ROUNDS of each of those."""
    units = []
    for step in runbook.all_steps():
        units.append(step.id)
        if isinstance(step, BlackholeRegionStep):
            units += [step.zone_step(z).id for z in possible_zones(step.target.cloud, step.target.region)]
    return units + [drift_unit_id(u, n) for u in units for n in range(1, ROUNDS + 1)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runbooks())
def test_every_runbook_that_validates_has_distinct_unit_ids(document):
    try:
        runbook = Runbook.model_validate(document)
    except ValidationError as error:
        assert all(e["loc"][-1] == "id" for e in error.errors()), error.errors()
        event("refused")
        return
    event("valid")
    units = unit_ids(runbook)
    repeated = sorted({u for u in units if units.count(u) > 1})
    assert not repeated, repeated


COLLIDING = {"aws": ["r-us-east-1a", "r-us-east-1z-d1", "r-d2"],
             "gcp": ["r-us-central1-b", "r-us-central1-b-d1", "r-d2"],
             "azure": ["r-3", "r-1-d12", "r-d2"]}


def test_the_ids_the_property_looks_for_are_refused_on_each_cloud():
    """Not vacuous: ids like those the generator builds collide, are found by `unit_ids`, and are
    refused; on another cloud a zone-shaped id is just an id."""
    for cloud, target in REGION_TARGETS.items():
        for other in sorted({i for ids in COLLIDING.values() for i in ids}):
            document = {
                "name": "units", "approvers": ["ic@example.com"], "max_duration": "1h",
                "guardrails": {"aws_accounts": ["123456789012"], "gcp_projects": ["gameday-lab"],
                               "azure_subscriptions": [SUBSCRIPTION]},
                "steps": [{"id": "r", "action": "blackhole_region", "target": target, "duration": "1m"},
                          {"id": other, "action": "wait", "duration": "1m"}]}
            try:
                Runbook.model_validate(document)
                refused = False
            except ValidationError:
                refused = True
            assert refused == (other in COLLIDING[cloud]), (cloud, other)
