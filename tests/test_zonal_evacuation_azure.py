"""Azure `evacuate_zone`: load balancer pool members in the zone taken `Down`, through the
registry's activities against the ARM emulator (the scenario suite runs the workflow through
`tests.support.zonal_evacuation_azure.AzureZonalEvacuationLab`)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from azure.mgmt.network.models import LoadBalancerBackendAddress, SubResource
from temporalio.exceptions import ApplicationError

from activities.azure.lb_marks import MAX_TAGS, Member, marked_members, marks_for
from activities.registry import CloudActivities
from activities.throttle import BUCKETS
from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint, FaultRequest, FaultResult, PrepareRequest, ResolvedStep, StepRequest
from tests.support.gameday import runbook
from tests.support.servers import Servers
from tests.support.zonal_evacuation_azure import BALANCERS, AzureZonalEvacuationLab

RUN = "test-run-evacuate"
RG = AzureZonalEvacuationLab.resource_group
STEP_ID = "evacuate-zone-1"


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzureZonalEvacuationLab]:
    seeded = AzureZonalEvacuationLab(servers)
    seeded.seed()
    BUCKETS.clear()
    yield seeded
    servers.azure_faults()


@pytest.fixture
def azure() -> CloudActivities:
    return CloudActivities("azure")


@pytest.fixture
def arm(lab: AzureZonalEvacuationLab) -> Iterator[Any]:
    clients = lab._connect()
    yield clients
    clients.close()


def step(balancers: list[str] | None = None, zone: str = "1") -> dict[str, Any]:
    return {"id": STEP_ID, "action": "evacuate_zone", "duration": "5m",
            "target": {"cloud": "azure", "subscription": AzureZonalEvacuationLab.subscription,
                       "resource_group": RG, "region": "eastus", "zone": zone,
                       "load_balancers": balancers or BALANCERS}}


def resolve(azure: CloudActivities, balancers: list[str] | None = None, zone: str = "1",
            run_id: str = RUN) -> ResolvedStep:
    book = runbook(step(balancers, zone))
    [fault_step] = book.fault_steps()
    return azure.by_name["azure.resolve_evacuate_zone"](
        StepRequest(run_id=run_id, step=fault_step, guardrails=book.guardrails))


def prepare(azure: CloudActivities, balancers: list[str] | None = None, zone: str = "1",
            run_id: str = RUN) -> FaultRequest:
    book = runbook(step(balancers, zone))
    [fault_step] = book.fault_steps()
    checkpoint = azure.by_name["azure.prepare_evacuate_zone"](PrepareRequest(
        run_id=run_id, step=fault_step, resolved=resolve(azure, balancers, zone, run_id),
        guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def apply(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.apply_evacuate_zone"](request)


def restore(azure: CloudActivities, request: FaultRequest) -> FaultResult:
    return azure.by_name["azure.restore_evacuate_zone"](request)


def refused(fn: Any, *args: Any) -> str:
    with pytest.raises(ApplicationError) as caught:
        fn(*args)
    assert caught.value.non_retryable
    return str(caught.value)


def new_lb(arm: Any, name: str, nics: list[str]) -> None:
    from gameday.lab.azure.seed import seed_load_balancer
    from tests.support.zonal_evacuation_azure import join_pool

    subnet = arm.network.virtual_networks.get(RG, "shop-vnet").subnets[0].id
    lb = seed_load_balancer(arm.network, RG, subnet, name, "pool")
    for nic in nics:
        join_pool(arm.network, RG, nic, lb.backend_address_pools[0].id)


def set_states(arm: Any, name: str, states: dict[str, str | None]) -> None:
    """Admin states by member name (None: unset), one PUT of the load balancer."""
    lb = arm.network.load_balancers.get(RG, name)
    for pool in lb.backend_address_pools:
        for member in pool.load_balancer_backend_addresses:
            if member.name in states:
                member.admin_state = states[member.name]
    arm.network.load_balancers.begin_create_or_update(RG, name, lb).result()


def shop_cuts(lab: AzureZonalEvacuationLab) -> dict[str, str | None]:
    """What the shop says of two web NICs: whether a Down pool member keeps traffic off them."""
    from gameday.lab.shop.azure import down_members, lb_down_cut

    clients = lab._connect()
    try:
        down = down_members(clients.network.load_balancers.list(RG))
        return {nic: lb_down_cut(clients.network.network_interfaces.get(RG, nic), down)
                for nic in ("web-1-nic0", "web-2-nic0")}
    finally:
        clients.close()


def test_the_zone_goes_down_and_every_member_comes_back_exactly(
        lab: AzureZonalEvacuationLab, azure: CloudActivities) -> None:
    """Both load balancers planned with zone 1's member; apply and restore repeated change
    nothing more; the snapshot after restore equals the one before (web-1's explicit `Up`
    included); the restore runs from the checkpoint alone, on a fresh worker's activities."""
    before = lab.snapshot()
    resolved = resolve(azure)
    assert {r.name: r.detail["members_down"] for r in resolved.resources} == {
        "shop-lb": f"web/{RG}_web-1-nic0ipconfig1=Up",
        "api-lb": f"app/{RG}_app-1-nic0ipconfig1=unset"}
    request = prepare(azure)
    assert apply(azure, request).changed == 2
    assert lab.blackholed()
    assert (apply(azure, request).changed, apply(azure, request).unchanged) == (0, 2)
    assert shop_cuts(lab) == {"web-1-nic0": "NIC web-1-nic0 is Down in pool web of load "
                                            "balancer shop-lb", "web-2-nic0": None}
    stored = request.checkpoint.model_dump_json()
    fresh = FaultRequest(checkpoint=Checkpoint.model_validate_json(stored),
                         guardrails=request.guardrails)
    assert restore(CloudActivities("azure"), fresh).changed == 2
    assert lab.snapshot() == before
    assert (restore(azure, request).changed, restore(azure, request).unchanged) == (0, 2)
    assert lab.snapshot() == before


def test_a_half_done_apply_is_restored_exactly(
        lab: AzureZonalEvacuationLab, azure: CloudActivities, servers: Servers) -> None:
    before = lab.snapshot()
    request = prepare(azure)
    lab.faults(FaultRule(match=lab.apply_call, after=1, count=1, status=403,
                         code="AuthorizationFailed", message="denied"))
    with pytest.raises(ApplicationError):
        apply(azure, request)
    lab.faults()
    assert lab.snapshot() != before  # the first load balancer was changed
    restore(azure, request)
    assert lab.snapshot() == before


def test_an_ip_based_pool_is_placed_through_the_nics_holding_its_addresses(
        lab: AzureZonalEvacuationLab, azure: CloudActivities, arm: Any) -> None:
    """Members by address: zone 2's is the one whose address web-2's NIC holds."""
    vnet = arm.network.virtual_networks.get(RG, "shop-vnet")
    addresses = [LoadBalancerBackendAddress(
        name=f"ip-{vm}", ip_address=arm.network.network_interfaces.get(
            RG, f"{vm}-nic0").ip_configurations[0].private_ip_address,
        virtual_network=SubResource(id=vnet.id)) for vm in ("web-1", "web-2", "web-3")]
    lb = arm.network.load_balancers.get(RG, "shop-lb")
    lb.backend_address_pools[0].name = "by-ip"
    lb.backend_address_pools[0].load_balancer_backend_addresses = addresses
    arm.network.load_balancers.begin_create_or_update(RG, "ip-lb", lb).result()
    before = lab.snapshot()
    request = prepare(azure, ["ip-lb"], zone="2")
    assert apply(azure, request).changed == 1
    assert lab.balancers()["ip-lb"]["members"] == {
        "by-ip/ip-web-1": None, "by-ip/ip-web-2": "Down", "by-ip/ip-web-3": None}
    restore(azure, request)
    assert lab.snapshot() == before


def test_refusals_are_one_sentence_and_change_nothing(
        lab: AzureZonalEvacuationLab, azure: CloudActivities, arm: Any) -> None:
    new_lb(arm, "zone-1-lb", ["web-1-nic0", "app-1-nic0"])
    new_lb(arm, "east-lb", ["web-2-nic0", "web-3-nic0"])
    set_states(arm, "api-lb", {f"{RG}_app-2-nic0ipconfig1": "Down",
                               f"{RG}_app-3-nic0ipconfig1": "Down"})
    before = lab.snapshot()
    assert "load balancer nowhere-lb does not exist in resource group shop" in refused(
        resolve, azure, ["shop-lb", "nowhere-lb"])
    assert "load balancer east-lb has no backend pool member in zone 1" in refused(
        resolve, azure, ["east-lb"])
    assert ("every member of pool pool of load balancer zone-1-lb that is not Down is in zone 1"
            in refused(resolve, azure, ["zone-1-lb"]))
    assert "every member of pool app of load balancer api-lb" in refused(
        prepare, azure, ["api-lb"])
    assert lab.snapshot() == before


def test_a_load_balancer_held_by_another_run_is_refused(
        lab: AzureZonalEvacuationLab, azure: CloudActivities) -> None:
    apply(azure, prepare(azure, ["shop-lb"], run_id="other-run"))
    held = lab.snapshot()
    assert "is already evacuated by gameday run other-run" in refused(prepare, azure)
    assert lab.snapshot() == held


def test_marks_that_do_not_fit_in_arms_tags_are_refused(
        lab: AzureZonalEvacuationLab, azure: CloudActivities, arm: Any) -> None:
    from azure.mgmt.network.models import TagsObject

    arm.network.load_balancers.update_tags(RG, "shop-lb", TagsObject(
        tags={f"owner-{i}": "x" for i in range(MAX_TAGS - 2)}))
    before = lab.snapshot()
    assert "leaves no room for gameday's marks and the 1 members" in refused(prepare, azure)
    assert lab.snapshot() == before


def test_marks_keep_exact_states_and_fall_back_to_names_when_they_do_not_fit() -> None:
    """Exact states over several tags of at most 256 characters; with one tag left for them,
    the names alone; read back as written."""
    members = [Member(pool="web", name=f"shop_web-{i:02d}-nic0ipconfig1",
                      before=["Up", "None", None][i % 3]) for i in range(30)]
    tags = marks_for("lb", "run", "step", members, {})
    assert all(len(v) <= 256 for v in tags.values()) and len(tags) > 3
    assert marked_members(tags) == (members, True)
    chunks = len(tags) - 2
    crowded = {f"t{i}": "x" for i in range(MAX_TAGS - 2 - (chunks - 1))}
    names = marks_for("lb", "run", "step", members, crowded)
    assert len(names) - 2 == chunks - 1 and len(names) + len(crowded) == MAX_TAGS
    assert all("names" in k for k in names if k not in ("gameday-evacuate-run",
                                                           "gameday-evacuate-step"))
    assert marked_members(names) == ([m.model_copy(update={"before": None}) for m in members],
                                     False)


def test_the_sweeper_undoes_a_leftover_from_its_marks_alone(
        lab: AzureZonalEvacuationLab, azure: CloudActivities) -> None:
    from activities.azure.sweep import AzureSweeper
    from gameday.sweep import SweepScope

    before = lab.snapshot()
    apply(azure, prepare(azure))  # a run whose restore never came
    sweeper = AzureSweeper()
    leftovers = [left for left in sweeper.find(SweepScope(
        azure_subscriptions=[AzureZonalEvacuationLab.subscription]))
        if left.kind == "evacuated-load-balancer"]
    assert sorted(left.id.rsplit("/", 1)[-1] for left in leftovers) == sorted(BALANCERS)
    assert {left.run_id for left in leftovers} == {RUN}
    for left in leftovers:
        assert sweeper.sweep(left).changed == 1
    assert lab.snapshot() == before
    assert [sweeper.sweep(left).changed for left in leftovers] == [0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_any_admin_states_come_back_exactly_or_are_refused_untouched(
        lab: AzureZonalEvacuationLab, azure: CloudActivities, arm: Any, seed: int) -> None:
    """Seeded topologies: each member's admin state drawn from unset, None, Up, Down, and a
    zone; the evacuation either refuses with nothing changed, or takes exactly the zone's members
    not already Down Down and restores the snapshot."""
    rng = random.Random(seed)
    zone = rng.choice("123")
    for name in BALANCERS:
        lb = lab.balancers()[name]
        set_states(arm, name, {m.split("/", 1)[1]: rng.choice([None, "None", "Up", "Down"])
                               for m in lb["members"]})
    before = lab.snapshot()
    try:
        request = prepare(azure, zone=zone)
    except ApplicationError as exc:
        assert "would leave it no capacity" in str(exc)
        assert lab.snapshot() == before
        return
    apply(azure, request)
    during = lab.balancers()
    for name in BALANCERS:
        for member, state in during[name]["members"].items():
            in_zone = f"-{zone}-nic0" in member
            assert state == ("Down" if in_zone else before["load_balancers"][name]["members"][member])
    restore(azure, request)
    assert lab.snapshot() == before


def test_a_stale_etag_is_read_again_and_a_load_balancer_elsewhere_is_refused(
        lab: AzureZonalEvacuationLab, azure: CloudActivities, arm: Any) -> None:
    """A 412 on the guarded PUT (someone wrote the load balancer since it was read) reads it
    again and writes once more; a load balancer outside the target's region is refused."""
    request = prepare(azure, ["shop-lb"])
    lab.faults(FaultRule(match=lab.apply_call, count=1, status=412, code="PreconditionFailed",
                         message="The condition specified using HTTP conditional header(s) is "
                                 "not met."))
    assert apply(azure, request).changed == 1
    assert [c["injected"] for c in lab.calls(lab.apply_call)] == [True, False]
    lab.faults()
    restore(azure, request)
    arm.network.load_balancers.begin_create_or_update(RG, "west-lb", {
        "location": "westus", "properties": {"backendAddressPools": [{"name": "pool"}]}}).result()
    before = lab.snapshot()
    assert "load balancer west-lb is in westus, not in eastus" in refused(
        resolve, azure, ["west-lb"])
    assert lab.snapshot() == before
