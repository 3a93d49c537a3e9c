"""The ARM emulator's load balancers through azure-mgmt-network, as real ARM answers: NIC-based
members come from the NICs' IP configurations and are named by ARM, `adminState` is kept per
member and shown only to API versions that know it, a PUT is a long-running operation guarded by
the etag, and a pool holds NIC-based or IP-based members, not both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.network.models import LoadBalancerBackendAddress, SubResource

from activities.azure.api import error_code, text
from gameday.lab.azure.clients import ArmClients, connect
from gameday.lab.azure.seed import LB_NAME, LB_POOL
from tests.support.clouds import AzureLab
from tests.support.servers import Servers

RG = AzureLab.resource_group


@pytest.fixture
def strict(servers: Servers) -> Iterator[ArmClients]:
    """The lab seeded, and clients that never retry, to see each answer as sent."""
    AzureLab(servers).seed()
    assert servers.azure is not None
    arm = connect(servers.azure.url, servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                  AzureLab.subscription, retry_total=0)
    yield arm
    arm.close()
    with servers.azure.lock:
        servers.azure.operations.seconds = 1.0


def states(arm: ArmClients, name: str = LB_NAME) -> dict[str, str | None]:
    lb = arm.network.load_balancers.get(RG, name)
    return {m.name: text(m.admin_state) or None for p in lb.backend_address_pools
            for m in p.load_balancer_backend_addresses}


def test_the_seeded_pool_holds_the_web_nics_with_their_admin_states(strict: ArmClients) -> None:
    lb = strict.network.load_balancers.get(RG, LB_NAME)
    assert (lb.location, lb.sku.name, text(lb.provisioning_state)) == (
        "eastus", "Standard", "Succeeded")
    [pool] = lb.backend_address_pools
    assert pool.name == LB_POOL
    members = {m.name: m for m in pool.load_balancer_backend_addresses}
    assert sorted(members) == [f"{RG}_web-{i}-nic0ipconfig1" for i in (1, 2, 3)]
    first = members[f"{RG}_web-1-nic0ipconfig1"]
    assert first.network_interface_ip_configuration.id.lower().endswith(
        "/networkinterfaces/web-1-nic0/ipconfigurations/ipconfig1")
    assert states(strict) == {f"{RG}_web-1-nic0ipconfig1": "Up",
                              f"{RG}_web-2-nic0ipconfig1": None,
                              f"{RG}_web-3-nic0ipconfig1": None}
    assert len(pool.backend_ip_configurations) == 3
    assert [b.name for b in strict.network.load_balancers.list(RG)] == [LB_NAME]
    assert [b.name for b in strict.network.load_balancers.list_all()] == [LB_NAME]
    got = strict.network.load_balancer_backend_address_pools.get(RG, LB_NAME, LB_POOL)
    assert len(got.load_balancer_backend_addresses) == 3
    assert [p.name for p in strict.network.load_balancer_backend_address_pools.list(
        RG, LB_NAME)] == [LB_POOL]


def test_admin_state_is_written_by_member_name_guarded_by_the_etag(strict: ArmClients) -> None:
    """A write sets Down, `None` or no state at all; a stale etag is 412; the write answers as a
    long-running operation and holds the load balancer until it ends."""
    lb = strict.network.load_balancers.get(RG, LB_NAME)
    read_etag = lb.etag
    one, two, three = lb.backend_address_pools[0].load_balancer_backend_addresses
    one.admin_state, two.admin_state, three.admin_state = None, "Down", "None"
    written = strict.network.load_balancers.begin_create_or_update(
        RG, LB_NAME, lb, headers={"If-Match": read_etag}).result()
    assert written.etag != read_etag
    assert states(strict) == {one.name: None, two.name: "Down", three.name: "None"}
    with pytest.raises(HttpResponseError) as stale:
        strict.network.load_balancers.begin_create_or_update(
            RG, LB_NAME, lb, headers={"If-Match": read_etag}).result()
    assert (stale.value.status_code, error_code(stale.value)) == (412, "PreconditionFailed")
    response = strict.network.send_request(HttpRequest(
        "PUT", f"{lb.id}?api-version=2024-05-01", json=lb.as_dict()))
    assert response.status_code == 200 and "Azure-AsyncOperation" in response.headers
    with pytest.raises(HttpResponseError) as busy:
        strict.network.load_balancers.begin_create_or_update(RG, LB_NAME, lb).result()
    assert (busy.value.status_code, error_code(busy.value)) == (
        429, "RetryableErrorDueToAnotherOperation")


def test_admin_state_is_hidden_from_api_versions_before_2023_04_01(strict: ArmClients) -> None:
    lb_id = strict.network.load_balancers.get(RG, LB_NAME).id
    for version, shown in (("2022-11-01", False), ("2023-04-01", True)):
        body = strict.network.send_request(HttpRequest(
            "GET", f"{lb_id}?api-version={version}")).json()
        member = body["properties"]["backendAddressPools"][0]["properties"][
            "loadBalancerBackendAddresses"][0]
        assert ("adminState" in member["properties"]) is shown


def test_invalid_members_are_refused_as_arm_refuses_them(strict: ArmClients) -> None:
    lb = strict.network.load_balancers.get(RG, LB_NAME)
    members = lb.backend_address_pools[0].load_balancer_backend_addresses
    members[0].admin_state = "Sideways"
    with pytest.raises(HttpResponseError) as bad_state:
        strict.network.load_balancers.begin_create_or_update(RG, LB_NAME, lb).result()
    assert bad_state.value.status_code == 400 and "adminState 'Sideways'" in str(bad_state.value)
    members[0].admin_state = None
    vnet = strict.network.virtual_networks.get(RG, "shop-vnet")
    members.append(LoadBalancerBackendAddress(name="by-ip", ip_address="10.0.0.99",
                                              virtual_network=SubResource(id=vnet.id)))
    with pytest.raises(HttpResponseError) as mixed:
        strict.network.load_balancers.begin_create_or_update(RG, LB_NAME, lb).result()
    assert error_code(mixed.value) == "BackendAddressPoolMixedBackends"
    members[-1] = LoadBalancerBackendAddress(name="not-a-nic", admin_state="Down")
    with pytest.raises(HttpResponseError) as unknown:
        strict.network.load_balancers.begin_create_or_update(RG, LB_NAME, lb).result()
    assert "names no NIC IP configuration of the pool" in str(unknown.value)
    assert states(strict)[f"{RG}_web-1-nic0ipconfig1"] == "Up"  # nothing was written
