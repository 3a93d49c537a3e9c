"""What a GameDay asks of the lease desk, without a server (workflows/leases.py): the keys of its
plan and the sentence that names who holds them."""

from __future__ import annotations

from gameday.plan import ResolvedStep, Scope
from workflows.leases import held_elsewhere, plan_lease_keys

ACCOUNT = "123456789012"


def resolved(step_id: str, region: str, zone: str | None) -> ResolvedStep:
    scope = Scope(cloud="aws", account=ACCOUNT, region=region, zone=zone)
    return ResolvedStep(step_id=step_id, action="blackhole_zone", scope=scope, resources=[])


def test_a_plan_leases_each_zone_and_whole_region_once_in_order() -> None:
    plan = [resolved("b", "us-east-1", "us-east-1b"), resolved("region", "us-west-2", None),
            resolved("a", "us-east-1", "us-east-1a"), resolved("a-again", "us-east-1", "us-east-1a")]
    assert plan_lease_keys(plan) == [f"aws:{ACCOUNT}:us-east-1:us-east-1a",
                                     f"aws:{ACCOUNT}:us-east-1:us-east-1b",
                                     f"aws:{ACCOUNT}:us-west-2:*"]


def test_a_plan_without_faults_leases_nothing() -> None:
    assert plan_lease_keys([]) == []


def test_the_refusal_names_each_place_and_its_holder() -> None:
    refusal = held_elsewhere({f"aws:{ACCOUNT}:us-west-2:*": "gameday-second",
                              f"aws:{ACCOUNT}:us-east-1:us-east-1a": "gameday-first"})
    assert refusal == (f"refused: aws {ACCOUNT} us-east-1 us-east-1a is held by GameDay gameday-first; "
                       f"aws {ACCOUNT} us-west-2 (whole region) is held by GameDay gameday-second; "
                       "wait for it to end or abort it")
