"""`zone_id` in AWS targets (contract §11): exactly one of `zone` and `zone_id`, refused on the
target's line naming the field, for every AWS action that takes a zone."""

from __future__ import annotations

import pytest

from gameday.loader import parse_runbook
from tests.test_runbook import VALID


def problems(text: str) -> list[str]:
    return [str(p) for p in parse_runbook(text, "rb.yaml")[1]]

BY_ID = VALID.replace("zone: us-east-1a}", "zone_id: use1-az1}")


def test_a_zone_may_be_named_by_its_zone_id():
    runbook, found = parse_runbook(BY_ID, "rb.yaml")
    assert runbook is not None, found
    [step] = runbook.fault_steps()
    assert (step.target.zone, step.target.zone_id) == (None, "use1-az1")


@pytest.mark.parametrize("text, expected", [
    (VALID.replace("zone: us-east-1a}", "zone: us-east-1a, zone_id: use1-az1}"),
     "rb.yaml:9: steps[0].target: name the zone by exactly one of zone (like us-east-1a) and "
     "zone_id (like use1-az1)"),
    (VALID.replace(", zone: us-east-1a}", "}"),
     "rb.yaml:9: steps[0].target: name the zone by exactly one of zone"),
    (VALID.replace("zone: us-east-1a}", "zone_id: us-east-1a}"),
     "rb.yaml:9: steps[0].target.zone_id: 'us-east-1a' is not an AWS zone ID like use1-az1"),
])
def test_both_or_neither_or_a_misshapen_id_is_refused_on_its_line(text, expected):
    found = problems(text)
    assert any(expected in line for line in found), found


@pytest.mark.parametrize("action, extra", [
    ("stop_instances", ""),
    ("deny_capacity", ", auto_scaling_groups: [web]"),
    ("failover_database", ", db_clusters: [shop]"),
    ("evacuate_zone", ", resources: ['arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/x']"),
])
def test_every_aws_action_that_takes_a_zone_takes_a_zone_id(action, extra):
    text = BY_ID.replace("action: blackhole_zone", f"action: {action}").replace(
        "zone_id: use1-az1}", f"zone_id: use1-az4{extra}}}")
    assert problems(text) == []
    both = text.replace("zone_id: use1-az4", "zone: us-east-1a, zone_id: use1-az4")
    assert any("exactly one of zone" in line for line in problems(both))
