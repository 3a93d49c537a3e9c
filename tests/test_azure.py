"""Azure faults against the ARM emulator through the real azure-mgmt clients: each NIC gets
exactly its own NSG back, endpoints get exactly their own status back, under drift and throttling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activities.azure import (
    MAX_TAG_VALUE,
    TAG_RESTORE,
    AzureConnection,
    AzureRegionEvacuation,
    AzureZoneBlackhole,
    from_restore_tag,
    gameday_nsg_name,
    restore_tag,
)
from activities.azure.api import listing as _listing
from activities.throttle import BUCKETS, STALL_VARIABLE
from gameday.errors import CloudError, Refused, TargetNotFound
from gameday.lab.azure.clients import ArmClients
from gameday.lab.azure.emulator import DEFAULT_STYLES
from gameday.lab.azure.seed import create_resource_group
from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint, FaultRequest, PrepareRequest, StepRequest
from tests.support.clouds import AzureLab
from tests.support.gameday import abort, approve, phase_is, runbook, start, step_state, wait_for
from tests.support.servers import Servers

SUB = AzureLab.subscription
RG = AzureLab.resource_group
RUN = "test-run-azure"
TARGETS = {"app-1-nic0", "app-1-nic1", "web-1-nic0"}
TM = "Microsoft.Network/trafficManagerProfiles"


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzureLab]:
    """The lab topology, freshly seeded; emulator settings and faults put back afterwards."""
    seeded = AzureLab(servers)
    seeded.seed()
    BUCKETS.clear()  # no test inherits another's throttled buckets
    yield seeded
    assert servers.azure is not None
    with servers.azure.lock:
        servers.azure.lro_styles = dict(DEFAULT_STYLES)
        servers.azure.operations.seconds = 1.0
    servers.azure_faults()


@pytest.fixture
def arm(lab: AzureLab) -> Iterator[ArmClients]:
    clients = lab._connect()
    yield clients
    clients.close()


def zone_step(**target: Any) -> dict[str, Any]:
    return {"id": "cut-eastus-1", "action": "blackhole_zone", "duration": "5m",
            "target": {"cloud": "azure", "subscription": SUB, "resource_group": RG,
                       "region": "eastus", "zone": "1", "tags": {"gameday": "enabled"}, **target}}


def evacuate_step(duration: str | None = "5m") -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": "evacuate-eastus", "action": "evacuate_region",
        "target": {"cloud": "azure", "subscription": SUB, "resource_group": RG,
                   "region": "eastus", "traffic_manager_profiles": ["shop-tm"]},
    }
    if duration:
        step["duration"] = duration
    return step


def prepared(fault: Any, step: dict[str, Any], run_id: str = RUN) -> FaultRequest:
    """Resolve and prepare as the workflow does; the request that apply and restore take."""
    book = runbook(step)
    [fault_step] = book.fault_steps()
    resolved = fault.resolve(StepRequest(run_id=run_id, step=fault_step,
                                         guardrails=book.guardrails))
    checkpoint = fault.prepare(PrepareRequest(run_id=run_id, step=fault_step, resolved=resolved,
                                              guardrails=book.guardrails))
    return FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)


def text(value: Any) -> str:
    """An SDK enum's wire value."""
    return str(getattr(value, "value", value))


def nsg_of(arm: ArmClients, nic: str, group: str = RG) -> str | None:
    found = arm.network.network_interfaces.get(group, nic).network_security_group
    return found.id.rsplit("/", 1)[-1] if found else None


# --- blackhole_zone --------------------------------------------------------------------------


def test_each_nic_gets_exactly_its_own_nsg_back(lab: AzureLab, arm: ArmClients) -> None:
    before = lab.snapshot()
    fault = AzureZoneBlackhole()
    request = prepared(fault, zone_step())
    assert request.checkpoint.resources == len(TARGETS)

    applied = fault.apply(request)
    assert applied.changed == len(TARGETS)
    assert lab.blackholed()
    name = gameday_nsg_name(RUN, "cut-eastus-1")
    nsg = arm.network.network_security_groups.get(RG, name)
    assert nsg.flush_connection is True
    assert nsg.tags == {"gameday-run": RUN, "gameday-step": "cut-eastus-1",
                        "gameday-managed-by": "gameday"}
    denies = {(text(r.direction), text(r.access), r.priority, text(r.protocol),
               r.source_address_prefix, r.destination_address_prefix, r.source_port_range,
               r.destination_port_range)
              for r in nsg.security_rules}
    assert denies == {(d, "Deny", 100, "*", "*", "*", "*", "*") for d in ("Inbound", "Outbound")}
    tags = {n: arm.network.network_interfaces.get(RG, n).tags[TAG_RESTORE] for n in TARGETS}
    assert tags == {"web-1-nic0": f"{RG}/web-nsg", "app-1-nic0": "none", "app-1-nic1": "none"}
    assert fault.apply(request).unchanged == len(TARGETS)  # a retried apply changes nothing

    restored = fault.restore(request)
    assert (restored.changed, restored.notes) == (len(TARGETS), [])
    assert nsg_of(arm, "web-1-nic0") == "web-nsg"
    assert nsg_of(arm, "app-1-nic0") is None
    assert lab.snapshot() == before
    assert fault.restore(request).unchanged == len(TARGETS)  # and so does a retried restore


def test_restore_keeps_a_nic_tag_added_during_the_fault(lab: AzureLab, arm: ArmClients) -> None:
    fault = AzureZoneBlackhole()
    request = prepared(fault, zone_step())
    fault.apply(request)
    tags = arm.network.network_interfaces.get(RG, "web-1-nic0").tags
    arm.network.network_interfaces.update_tags(RG, "web-1-nic0",
                                               {"tags": {**tags, "owner": "payments"}})

    fault.restore(request)
    nic = arm.network.network_interfaces.get(RG, "web-1-nic0")
    assert nic.tags == {"app": "shop", "owner": "payments"}
    assert nsg_of(arm, "web-1-nic0") == "web-nsg"


def test_a_nic_deleted_during_the_fault_does_not_break_restore(lab: AzureLab,
                                                               arm: ArmClients) -> None:
    fault = AzureZoneBlackhole()
    request = prepared(fault, zone_step())
    fault.apply(request)
    arm.compute.virtual_machines.begin_delete(RG, "app-1").result()
    arm.network.network_interfaces.begin_delete(RG, "app-1-nic1").result()

    restored = fault.restore(request)
    assert restored.changed == 2
    assert any("app-1-nic1" in note and "no longer exists" in note for note in restored.notes)
    assert nsg_of(arm, "web-1-nic0") == "web-nsg"
    assert nsg_of(arm, "app-1-nic0") is None
    names = {n.name for n in arm.network.network_security_groups.list_all()}
    assert names == {"web-nsg"}


def test_an_original_nsg_deleted_during_the_fault_is_noted(lab: AzureLab,
                                                          arm: ArmClients) -> None:
    solo = arm.network.network_security_groups.begin_create_or_update(
        RG, "solo-nsg", {"location": "eastus"}).result()
    nic = arm.network.network_interfaces.get(RG, "app-1-nic0")
    nic.network_security_group = {"id": solo.id}
    arm.network.network_interfaces.begin_create_or_update(RG, "app-1-nic0", nic).result()
    fault = AzureZoneBlackhole()
    request = prepared(fault, zone_step())
    fault.apply(request)
    arm.network.network_security_groups.begin_delete(RG, "solo-nsg").result()

    restored = fault.restore(request)
    assert nsg_of(arm, "app-1-nic0") is None
    assert any("solo-nsg is gone" in note for note in restored.notes)
    assert nsg_of(arm, "web-1-nic0") == "web-nsg"


def test_a_write_held_by_another_operation_is_retried(lab: AzureLab, arm: ArmClients,
                                                      servers: Servers) -> None:
    """Another operation holds web-1-nic0: its PUT answers 429 RetryableErrorDueToAnotherOperation
    with Retry-After until that operation ends, and apply waits it out without SDK retries."""
    assert servers.azure is not None
    with servers.azure.lock:
        servers.azure.lro_styles[("networkInterfaces", "PUT")] = "async-operation"
    fault = AzureZoneBlackhole(AzureConnection(retry_total=0))
    request = prepared(fault, zone_step())
    nic = arm.network.network_interfaces.get(RG, "web-1-nic0")
    arm.network.network_interfaces.begin_create_or_update(RG, "web-1-nic0", nic, polling=False)
    servers.azure_faults()

    assert fault.apply(request).changed == len(TARGETS)
    puts = [c for c in servers.azure_calls() if c["method"] == "PUT"
            and c["path"].endswith("/networkInterfaces/web-1-nic0")]
    assert [c["status"] for c in puts][0] == 429 and puts[-1]["status"] == 200
    assert lab.blackholed()
    fault.restore(request)
    assert nsg_of(arm, "web-1-nic0") == "web-nsg"


def test_throttling_that_never_ends_is_a_retryable_error_with_retry_after(
        lab: AzureLab, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throttled write waits (Retry-After) and is sent again; only when no write succeeds for
    the stall limit does the throttle reach Temporal, still retryable, with its Retry-After."""
    monkeypatch.setenv(STALL_VARIABLE, "1")
    fault = AzureZoneBlackhole(AzureConnection(retry_total=0))
    request = prepared(fault, zone_step())
    servers.azure_faults(FaultRule(match=AzureLab.apply_call, status=429,
                                   code="TooManyRequests", retry_after=2))
    with pytest.raises(CloudError) as caught:
        fault.apply(request)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 2.0)
    assert len([c for c in lab.calls(AzureLab.apply_call) if c["injected"]]) >= 2  # waited, sent again
    servers.azure_faults()
    BUCKETS.clear()
    fault.restore(request)


def test_an_nsg_id_longer_than_a_tag_value_still_restores(lab: AzureLab, arm: ArmClients) -> None:
    """ARM tag values hold 256 characters; an NSG id can be longer (90-character group, 80-character
    name). The restore record must fit, and a restore from the NIC's tag alone must work."""
    long_group, long_name = "g" * 90, "n" * 80
    create_resource_group(arm, SUB, long_group)
    long_nsg = arm.network.network_security_groups.begin_create_or_update(
        long_group, long_name, {"location": "eastus"}).result()
    assert len(long_nsg.id) > MAX_TAG_VALUE
    nic = arm.network.network_interfaces.get(RG, "web-1-nic0")
    nic.network_security_group = {"id": long_nsg.id}
    arm.network.network_interfaces.begin_create_or_update(RG, "web-1-nic0", nic).result()
    before = AzureLab(lab.servers).snapshot()

    fault = AzureZoneBlackhole()
    request = prepared(fault, zone_step())
    fault.apply(request)
    for name in TARGETS:
        tags = arm.network.network_interfaces.get(RG, name).tags
        assert all(len(v) <= MAX_TAG_VALUE for v in tags.values())
    assert from_restore_tag(restore_tag(long_nsg.id), nic.id) == long_nsg.id

    state = dict(request.checkpoint.state)  # type: ignore[arg-type]
    state["nics"] = [r for r in state["nics"] if not r["id"].endswith("/web-1-nic0")]
    forgetful = FaultRequest(
        checkpoint=Checkpoint.model_validate({**request.checkpoint.model_dump(), "state": state}),
        guardrails=request.guardrails)
    fault.restore(forgetful)
    assert nsg_of(arm, "web-1-nic0") == long_name
    assert lab.snapshot() == before


def test_a_nic_held_by_another_run_is_refused(lab: AzureLab) -> None:
    fault = AzureZoneBlackhole()
    first = prepared(fault, zone_step(), run_id="first-run")
    fault.apply(first)
    with pytest.raises(Refused, match="already blackholed by gameday run first-run"):
        prepared(fault, zone_step(), run_id="second-run")
    fault.restore(first)


def test_no_matching_vm_names_zone_and_tags(lab: AzureLab) -> None:
    with pytest.raises(TargetNotFound, match=r"zone 1 of eastus .* carries the tags gameday=nope"):
        prepared(AzureZoneBlackhole(), zone_step(tags={"gameday": "nope"}))


def test_the_nsg_name_is_valid_and_deterministic() -> None:
    name = gameday_nsg_name("wf-" + "x" * 300, "a-very-long-step-" + "y" * 60)
    assert len(name) <= 80 and name[-1].isalnum() and name.startswith("gameday-")
    assert name == gameday_nsg_name("wf-" + "x" * 300, "a-very-long-step-" + "y" * 60)
    assert name != gameday_nsg_name("wf-other", "a-very-long-step-" + "y" * 60)


# --- evacuate_region -------------------------------------------------------------------------


def add_endpoint(arm: ArmClients, name: str, location: str, status: str) -> None:
    arm.traffic.endpoints.create_or_update(RG, "shop-tm", "AzureEndpoints", name, {
        "properties": {
            "targetResourceId": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
                                f"Microsoft.Network/publicIPAddresses/{name}-ip",
            "endpointStatus": status, "endpointLocation": location}})


def statuses(arm: ArmClients) -> dict[str, str]:
    return {e.name: text(e.endpoint_status)
            for e in arm.traffic.profiles.get(RG, "shop-tm").endpoints}


def test_evacuate_disables_the_region_and_fails_back_exactly(lab: AzureLab,
                                                             arm: ArmClients) -> None:
    add_endpoint(arm, "shop-eastus-canary", "East US", "Disabled")
    before = statuses(arm)
    fault = AzureRegionEvacuation()
    request = prepared(fault, evacuate_step())
    assert request.checkpoint.resources == 2

    applied = fault.apply(request)
    assert (applied.changed, applied.unchanged) == (1, 1)
    assert statuses(arm) == {"shop-eastus": "Disabled", "shop-westus": "Enabled",
                             "shop-eastus-canary": "Disabled"}

    lab.servers.azure_faults()
    restored = fault.restore(request)
    assert (restored.changed, restored.unchanged) == (1, 1)
    assert statuses(arm) == before
    patches = [c for c in lab.servers.azure_calls() if c["method"] == "PATCH"]
    assert [c["path"].rsplit("/", 1)[-1] for c in patches] == ["shop-eastus"]


def test_evacuate_refuses_when_no_enabled_endpoint_would_remain(lab: AzureLab,
                                                                arm: ArmClients) -> None:
    arm.traffic.endpoints.update(RG, "shop-tm", "AzureEndpoints", "shop-westus",
                                 {"properties": {"endpointStatus": "Disabled"}})
    before = statuses(arm)
    with pytest.raises(Refused, match="no enabled endpoint outside eastus"):
        prepared(AzureRegionEvacuation(), evacuate_step())
    assert statuses(arm) == before


def test_evacuate_fails_back_under_throttling(lab: AzureLab, arm: ArmClients, client: Any,
                                              runner: Any, task_queue: str) -> None:
    """A whole GameDay through Temporal: the fail-back meets 429s and still restores exactly."""
    before = statuses(arm)
    step = "evacuate-eastus"

    async def scenario() -> Any:
        handle = await start(client, runbook(evacuate_step("5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), what="approval gate")
        await approve(handle)
        await wait_for(handle, step_state(step, "active"), what="evacuation active")
        assert statuses(arm)["shop-eastus"] == "Disabled"
        throttle = {"match": "PATCH /subscriptions/", "status": 429, "code": "TooManyRequests",
                    "retry_after": 0}
        lab.faults(FaultRule(count=2, **throttle), FaultRule(rate=0.5, **throttle), seed=3)
        await abort(handle, reason="throttled fail-back drill")
        return await handle.result()

    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.restored) == ("aborted", True)
    assert [c for c in lab.calls("PATCH") if c["injected"]], "the fail-back met no throttling"
    assert statuses(arm) == before


def test_clients_follow_the_environment(lab: AzureLab) -> None:
    """With GAMEDAY_AZURE_ENDPOINT set, the clients reach the emulator over https."""
    with AzureConnection().clients(SUB) as made:
        assert {vm.name for vm in made.compute.virtual_machines.list(RG)} >= {"web-1", "app-1"}



# --- errors a user reads -------------------------------------------------------------------------


def test_a_missing_resource_group_is_one_sentence_naming_it(lab: AzureLab, arm: ArmClients) -> None:
    """azure-core's message is three lines (`(ResourceGroupNotFound) …`, `Code: …`,
    `Message: …`); the user reads one sentence naming the group (issue 12, defect 9)."""
    with pytest.raises(CloudError) as raised:
        _listing("listing the NSGs of resource group shop-x",
                 lambda: arm.network.network_security_groups.list("shop-x"))
    assert str(raised.value) == ("Azure refused listing the NSGs of resource group shop-x: "
                                 f"resource group shop-x does not exist in subscription {SUB}")
    assert not raised.value.retryable

    step = evacuate_step()
    step["target"]["resource_group"] = "shop-x"
    with pytest.raises(TargetNotFound) as missing:
        prepared(AzureRegionEvacuation(), step)
    assert str(missing.value) == (f"step evacuate-eastus: resource group shop-x does not exist "
                                  f"in subscription {SUB}")
