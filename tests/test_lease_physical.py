"""Leases keyed by physical zone (contract §11): the overlap rules over generated keys, and the
lease desk (the real `GameDayLeases` workflow on the session's server) deciding by them, with
keys of the old shape that runs started before physical zones hold."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from gameday.plan import ResolvedStep, Scope
from workflows.leases import (
    GameDayLeases,
    LeaseAnswer,
    LeaseBatch,
    LeaseBatchAnswer,
    LeaseRequest,
    LeaseState,
    held_elsewhere,
    lease_key,
    overlaps,
    overlaps_by_name,
    plan_lease_keys,
)

OWN, OTHER = "123456789012", "210987654321"
# us-east-1 in the lab: the worker's account as moto maps it, the other rotated
OWN_IDS = {"us-east-1a": "use1-az6", "us-east-1b": "use1-az1", "us-east-1c": "use1-az2"}
OTHER_IDS = {"us-east-1a": "use1-az2", "us-east-1b": "use1-az4", "us-east-1c": "use1-az3"}

keys = st.builds(
    lambda cloud, account, region, zone, zone_id: lease_key(cloud, account, region, zone, zone_id),
    st.sampled_from(["aws", "gcp", "azure"]), st.sampled_from([OWN, OTHER]),
    st.sampled_from(["us-east-1", "us-west-2"]),
    st.none() | st.sampled_from(["us-east-1a", "us-east-1b", "1"]),
    st.none() | st.sampled_from(["use1-az1", "use1-az2", "eastus-az1"]))


@given(keys, keys)
def test_overlap_is_symmetric_and_a_key_overlaps_itself(a: str, b: str) -> None:
    assert overlaps(a, b) == overlaps(b, a)
    assert overlaps(a, a)
    assert overlaps_by_name(a, b) == overlaps_by_name(b, a)


@given(keys, keys)
def test_the_whole_region_overlaps_every_zone_of_it_in_any_account(a: str, b: str) -> None:
    cloud, _, region, zone = a.split(":", 3)
    other_cloud, _, other_region, _ = b.split(":", 3)
    if zone == "*" and (cloud, region) == (other_cloud, other_region):
        assert overlaps(a, b)
    if (cloud, region) != (other_cloud, other_region):
        assert not overlaps(a, b)


@given(st.sampled_from(sorted(OWN_IDS)), st.sampled_from(sorted(OTHER_IDS)))
def test_two_accounts_overlap_exactly_where_their_letters_are_one_physical_zone(
        mine: str, theirs: str) -> None:
    a = lease_key("aws", OWN, "us-east-1", mine, OWN_IDS[mine])
    b = lease_key("aws", OTHER, "us-east-1", theirs, OTHER_IDS[theirs])
    assert overlaps(a, b) == (OWN_IDS[mine] == OTHER_IDS[theirs])


def test_the_rules_by_example() -> None:
    own_c = lease_key("aws", OWN, "us-east-1", "us-east-1c", "use1-az2")
    other_a = lease_key("aws", OTHER, "us-east-1", "us-east-1a", "use1-az2")
    assert own_c == f"aws:{OWN}:us-east-1:us-east-1c@use1-az2"
    assert overlaps(own_c, other_a)  # different letters, one building
    assert not overlaps(lease_key("aws", OWN, "us-east-1", "us-east-1a", "use1-az6"),
                        lease_key("aws", OTHER, "us-east-1", "us-east-1a", "use1-az2"))
    # a key of the old shape (no physical zone) still overlaps its own account's zone by name
    assert overlaps(f"aws:{OWN}:us-east-1:us-east-1c", own_c)
    assert not overlaps(f"aws:{OTHER}:us-east-1:us-east-1c", own_c)
    # GCP zone names are physical: one zone of two projects overlaps
    assert overlaps("gcp:p-one:us-central1:us-central1-a", "gcp:p-two:us-central1:us-central1-a")
    # the rule before physical zones never looks past the account
    assert not overlaps_by_name(f"aws:{OWN}:us-east-1:*", other_a)
    assert overlaps_by_name(f"aws:{OWN}:us-east-1:us-east-1c", own_c)


def test_a_plan_leases_the_physical_zone_and_the_refusal_names_both() -> None:
    scope = Scope(cloud="aws", account=OWN, region="us-east-1", zone="us-east-1c",
                  zone_id="use1-az2")
    step = ResolvedStep(step_id="s", action="blackhole_zone", scope=scope, resources=[])
    [key] = plan_lease_keys([step])
    assert key == f"aws:{OWN}:us-east-1:us-east-1c@use1-az2"
    assert held_elsewhere({key: "gameday-x"}) == (
        f"refused: aws {OWN} us-east-1 us-east-1c (use1-az2) is held by GameDay gameday-x; "
        "wait for it to end or abort it")


def test_the_lease_desk_decides_by_physical_zone_and_keeps_old_keys(client: Client, runner) -> None:
    queue = f"leases-{uuid.uuid4().hex[:10]}"
    legacy = f"aws:{OWN}:us-east-1:us-east-1b"  # held by a run started before physical zones

    def ask(run_id: str, *keys: str) -> LeaseRequest:
        return LeaseRequest(run_id=run_id, keys=list(keys))

    async def scenario() -> tuple[list[LeaseAnswer], dict[str, str], Any]:
        async with Worker(client, task_queue=queue, workflows=[GameDayLeases]):
            desk = await client.start_workflow(
                GameDayLeases.run, LeaseState(holders={legacy: "old-run"}), id=f"desk-{queue}",
                task_queue=queue)
            batch = LeaseBatch(acquire=[
                ask("team-own", lease_key("aws", OWN, "us-east-1", "us-east-1c", "use1-az2")),
                ask("team-other", lease_key("aws", OTHER, "us-east-1", "us-east-1a", "use1-az2")),
                ask("team-other-b", lease_key("aws", OTHER, "us-east-1", "us-east-1b", "use1-az4")),
                ask("same-old-zone", lease_key("aws", OWN, "us-east-1", "us-east-1b", "use1-az1")),
                ask("region-elsewhere", lease_key("aws", OTHER, "us-west-2", None)),
                ask("region", lease_key("aws", OTHER, "us-east-1", None)),
            ])
            answer = await desk.execute_update(GameDayLeases.decide, batch,
                                               result_type=LeaseBatchAnswer)
            held = await desk.query(GameDayLeases.held)
            await desk.terminate()
            return answer.answers, held, await desk.fetch_history()

    answers, held, history = runner.run(scenario())
    granted = [a.granted for a in answers]
    assert granted == [True, False, True, False, True, False]
    assert answers[1].conflicts == {lease_key("aws", OTHER, "us-east-1", "us-east-1a", "use1-az2"):
                                    "team-own"}
    assert answers[3].conflicts == {lease_key("aws", OWN, "us-east-1", "us-east-1b", "use1-az1"):
                                    "old-run"}
    # a region outage in one account covers every zone of the region, in any account
    [(region_key, holder)] = answers[5].conflicts.items()
    assert region_key == lease_key("aws", OTHER, "us-east-1", None)
    assert holder in {"team-own", "team-other-b", "old-run"}
    assert held[legacy] == "old-run"
    # the desk's history replays with the code that made it (the patch marker is in it)
    runner.run(Replayer(workflows=[GameDayLeases]).replay_workflow(history))
