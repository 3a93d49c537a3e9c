"""GCP partition_regions against the Compute emulator: exact restore, idempotent apply, repeated
restore and restore from the checkpoint alone, the plan naming every subnet and rule, refusals
before any change, the sweeper deleting a leftover rule, and GCE's 256-range limit per rule
(generated topologies). The scenario suite (tests/test_scenarios.py -k gcp-partition_regions)
runs the rest through `GcpPartitionLab`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.exceptions import ApplicationError

from activities.gcp.partition import MAX_RANGES, partition_rules
from activities.registry import CloudActivities
from gameday.plan import Checkpoint, FaultRequest, PrepareRequest, ResolvedStep, StepRequest
from gameday.runbook import Guardrails, PartitionRegionsStep
from gameday.sweep import SweepScope
from tests.support.partition_gcp import NETWORK, PEERS, REGION, GcpPartitionLab
from tests.support.servers import Servers

PROJECT = GcpPartitionLab.project
RUN = "partition-test-run"
GUARDRAILS = Guardrails(gcp_projects=[PROJECT])


@pytest.fixture
def lab(servers: Servers) -> Iterator[GcpPartitionLab]:
    lab = GcpPartitionLab(servers)
    lab.seed()
    yield lab
    lab.faults()


@pytest.fixture(scope="module")
def gcp() -> CloudActivities:
    return CloudActivities("gcp")


def _step(network: str = NETWORK, peers: list[str] = PEERS) -> PartitionRegionsStep:
    return PartitionRegionsStep.model_validate({
        "id": "split", "action": "partition_regions",
        "target": {"cloud": "gcp", "project": PROJECT, "region": REGION,
                   "peer_regions": peers, "network": network}})


def _resolve(gcp: CloudActivities, step: PartitionRegionsStep) -> ResolvedStep:
    return gcp.by_name["gcp.resolve_partition_regions"](
        StepRequest(run_id=RUN, step=step, guardrails=GUARDRAILS))


def _prepared(gcp: CloudActivities) -> FaultRequest:
    step = _step()
    checkpoint: Checkpoint = gcp.by_name["gcp.prepare_partition_regions"](PrepareRequest(
        run_id=RUN, step=step, resolved=_resolve(gcp, step), guardrails=GUARDRAILS))
    return FaultRequest(checkpoint=checkpoint, guardrails=GUARDRAILS)


def _mutations(lab: GcpPartitionLab) -> list[dict]:
    return [c for c in lab.servers.gcp_calls() if c["method"] != "GET"]


def test_the_plan_names_every_subnet_and_rule(lab, gcp):
    plan = _resolve(gcp, _step())
    subnets = {r.detail["region"]: r.detail["ranges"] for r in plan.resources
               if r.kind == "subnetwork"}
    assert set(subnets) == {REGION, *PEERS}
    rules = {r.detail["direction"]: r for r in plan.resources if r.kind == "firewall rule"}
    assert set(rules) == {"INGRESS", "EGRESS"}
    assert rules["INGRESS"].detail["destinations"] == subnets[REGION]
    assert rules["EGRESS"].detail["sources"] == subnets[REGION]
    assert sorted(rules["INGRESS"].detail["sources"].split(",")) == sorted(
        subnets[p] for p in PEERS)


def test_apply_is_idempotent_and_restore_exact_repeatable_and_from_the_checkpoint(lab, gcp):
    before = lab.snapshot()
    request = _prepared(gcp)
    assert lab.snapshot() == before  # prepare changes nothing
    applied = gcp.by_name["gcp.apply_partition_regions"](request)
    assert (applied.changed, applied.unchanged) == (2, 0)
    assert lab.blackholed()
    rules = {r["direction"]: r for r in lab.gameday_rules()}
    assert rules["INGRESS"]["destinationRanges"] == rules["EGRESS"]["sourceRanges"]
    assert rules["INGRESS"]["sourceRanges"] == rules["EGRESS"]["destinationRanges"]
    again = gcp.by_name["gcp.apply_partition_regions"](request)
    assert (again.changed, again.unchanged) == (0, 2)
    alone = FaultRequest.model_validate_json(request.model_dump_json())  # what a new worker reads
    restored = gcp.by_name["gcp.restore_partition_regions"](alone)
    assert (restored.changed, restored.unchanged) == (2, 0)
    assert lab.snapshot() == before and lab.gameday_rules() == []
    repeated = gcp.by_name["gcp.restore_partition_regions"](alone)
    assert (repeated.changed, repeated.unchanged) == (0, 2)
    assert lab.snapshot() == before


def test_a_half_done_apply_is_restored(lab, gcp):
    before = lab.snapshot()
    request = _prepared(gcp)
    gcp.by_name["gcp.apply_partition_regions"](request)
    first = lab.gameday_rules()[0]["name"]
    httpx.delete(f"{lab.servers.gcp.url}/compute/v1/projects/{PROJECT}/global/firewalls/"
                 f"{first}").raise_for_status()
    restored = gcp.by_name["gcp.restore_partition_regions"](request)
    assert (restored.changed, restored.unchanged) == (1, 1)
    assert lab.snapshot() == before


def test_a_network_without_a_subnet_in_the_region_is_refused_before_any_change(lab, gcp):
    httpx.post(f"{lab.servers.gcp.url}/compute/v1/projects/{PROJECT}/global/networks",
               json={"name": "empty-vpc", "autoCreateSubnetworks": False}).raise_for_status()
    before = lab.snapshot()
    lab.faults()
    with pytest.raises(ApplicationError) as refused:
        _resolve(gcp, _step(network="empty-vpc"))
    assert refused.value.type == "TargetNotFound"
    assert str(refused.value).endswith(
        f"step split: network empty-vpc of project {PROJECT} has no subnet in {REGION}")
    assert _mutations(lab) == [] and lab.snapshot() == before


def test_a_rule_of_another_run_is_refused_before_any_change(lab, gcp):
    step = _step()
    resolved = _resolve(gcp, step)
    other = FaultRequest(checkpoint=gcp.by_name["gcp.prepare_partition_regions"](PrepareRequest(
        run_id="other-run", step=step, resolved=resolved.model_copy(), guardrails=GUARDRAILS)),
        guardrails=GUARDRAILS)
    state = other.checkpoint.state
    assert isinstance(state, dict)
    names = [r.id for r in resolved.resources if r.kind == "firewall rule"]
    # another run's rule under this run's name: made by hand, described as the other run's
    body = {"name": names[0], "network": f"global/networks/{NETWORK}", "priority": 0,
            "denied": [{"IPProtocol": "all"}], "description": "gameday fault run=other step=x"}
    httpx.post(f"{lab.servers.gcp.url}/compute/v1/projects/{PROJECT}/global/firewalls",
               json=body).raise_for_status()
    before = lab.snapshot()
    lab.faults()
    with pytest.raises(ApplicationError) as refused:
        gcp.by_name["gcp.prepare_partition_regions"](PrepareRequest(
            run_id=RUN, step=step, resolved=resolved, guardrails=GUARDRAILS))
    assert refused.value.type == "Refused"
    assert f"firewall rule {names[0]} already exists and is not this run's" in str(refused.value)
    assert _mutations(lab) == [] and lab.snapshot() == before


def test_the_sweeper_deletes_a_leftover_rule(lab, gcp):
    before = lab.snapshot()
    gcp.by_name["gcp.apply_partition_regions"](_prepared(gcp))
    scope = SweepScope(gcp_projects=[PROJECT])
    found = [x for x in gcp.find_leftovers(scope) if x.run_id == RUN]
    assert len(found) == 2
    for leftover in found:
        assert gcp.sweep_leftover(leftover).changed == 1
    assert lab.snapshot() == before


_CIDRS = st.integers(0, 2**16 - 1).map(lambda n: f"10.{n >> 8}.{n & 255}.0/24")


@settings(max_examples=10, deadline=None)
@given(mine=st.lists(_CIDRS, min_size=1, max_size=600, unique=True),
       theirs=st.lists(_CIDRS, min_size=1, max_size=600, unique=True))
def test_every_pair_of_ranges_is_cut_both_ways_within_the_range_limit(mine, theirs):
    rules = partition_rules("run", "step", "projects/p/global/networks/n", mine, theirs)
    names = [r.name for r in rules]
    assert len(set(names)) == len(names) and all(len(n) <= 63 for n in names)
    for rule in rules:
        assert 1 <= len(rule.source_ranges) <= MAX_RANGES
        assert 1 <= len(rule.destination_ranges) <= MAX_RANGES
    for direction, (sources, destinations) in {"INGRESS": (theirs, mine),
                                               "EGRESS": (mine, theirs)}.items():
        covered = {(s, d) for r in rules if r.direction == direction
                   for s in r.source_ranges for d in r.destination_ranges}
        assert covered == {(s, d) for s in sources for d in destinations}


def test_the_shop_sees_the_region_cut_off_its_peers_and_whole_again(lab, gcp):
    from gameday.lab.shop.gcp import GcpShop
    from gameday.lab.shop.reading import ReadCache, ShopConfig

    def peers() -> dict:
        return GcpShop(lab.servers.env, ReadCache(), ShopConfig()).peers(REGION)

    whole = peers()
    assert whole["serving"] and whole["reason"].startswith(f"every subnet of {REGION} reaches")
    request = _prepared(gcp)
    gcp.by_name["gcp.apply_partition_regions"](request)
    cut = peers()
    assert not cut["serving"]
    assert f"of network {NETWORK} is cut off" in cut["reason"]
    assert "by firewall rule gameday-split-" in cut["reason"]
    health = GcpShop(lab.servers.env, ReadCache(), ShopConfig()).region(REGION)
    assert health["serving"]  # the region itself still serves
    gcp.by_name["gcp.restore_partition_regions"](request)
    assert peers()["serving"]


def test_custom_subnets_and_their_secondary_ranges_are_cut_too(lab, gcp):
    url = f"{lab.servers.gcp.url}/compute/v1/projects/{PROJECT}/regions"
    for region, name, cidr, secondary in [(REGION, "app", "10.0.0.0/24", ["10.4.0.0/20"]),
                                          ("us-east1", "east", "10.1.0.0/24", [])]:
        httpx.post(f"{url}/{region}/subnetworks", json={
            "name": name, "network": f"global/networks/{NETWORK}", "ipCidrRange": cidr,
            "secondaryIpRanges": [{"rangeName": "pods", "ipCidrRange": r} for r in secondary],
        }).raise_for_status()
    before = lab.snapshot()
    request = _prepared(gcp)
    gcp.by_name["gcp.apply_partition_regions"](request)
    ingress = next(r for r in lab.gameday_rules() if r["direction"] == "INGRESS")
    assert {"10.0.0.0/24", "10.4.0.0/20"} <= set(ingress["destinationRanges"])
    assert "10.1.0.0/24" in ingress["sourceRanges"]
    assert not {"10.0.0.0/24", "10.4.0.0/20"} & set(ingress["sourceRanges"])
    gcp.by_name["gcp.restore_partition_regions"](request)
    assert lab.snapshot() == before
