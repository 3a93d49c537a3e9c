"""The ARM emulator's VM power and tag semantics, through azure-mgmt-compute, as real ARM answers:
transitional power states while an operation runs, 409 while another holds the VM, actions that
are already in effect, `PATCH` of tags guarded by the etag, and lists with the instance view."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.compute.models import VirtualMachineUpdate

from activities.azure.api import error_code
from gameday.lab.azure.clients import ArmClients, connect
from tests.support.power_azure import AzurePowerLab, power_of
from tests.support.servers import Servers

RG = AzurePowerLab.resource_group


@pytest.fixture
def lab(servers: Servers) -> Iterator[AzurePowerLab]:
    seeded = AzurePowerLab(servers)
    seeded.seed()
    yield seeded
    assert servers.azure is not None
    with servers.azure.lock:
        servers.azure.operations.seconds = 1.0


@pytest.fixture
def strict(lab: AzurePowerLab, servers: Servers) -> Iterator[ArmClients]:
    """Clients that never retry, to see each answer as sent."""
    assert servers.azure is not None
    made = connect(servers.azure.url, servers.env["GAMEDAY_AZURE_CA_BUNDLE"], lab.subscription,
                   retry_total=0)
    yield made
    made.close()


def power(arm: ArmClients, name: str) -> str:
    return power_of(arm.compute.virtual_machines.get(RG, name, expand="instanceView"))


def slow(servers: Servers, seconds: float) -> None:
    assert servers.azure is not None
    with servers.azure.lock:
        servers.azure.operations.seconds = seconds


def test_power_off_answers_202_with_an_operation_to_poll_and_stops_the_vm(
        strict: ArmClients, servers: Servers) -> None:
    slow(servers, 2.0)
    response = strict.compute.send_request(HttpRequest(
        "POST", f"/subscriptions/{AzurePowerLab.subscription}/resourceGroups/{RG}/providers/"
        "Microsoft.Compute/virtualMachines/web-1/powerOff",
        params={"api-version": "2024-07-01", "skipShutdown": "true"}))
    assert response.status_code == 202
    assert {"Azure-AsyncOperation", "Location", "Retry-After"} <= set(response.headers)
    assert power(strict, "web-1") == "stopping"
    assert strict.compute.virtual_machines.get(RG, "web-1").provisioning_state == "Updating"
    trusted = ssl.create_default_context(cafile=servers.env["GAMEDAY_AZURE_CA_BUNDLE"])
    status = httpx.get(response.headers["Azure-AsyncOperation"], verify=trusted).json()
    assert status["status"] == "Succeeded"  # the first poll of a VM action ends it
    assert power(strict, "web-1") == "stopped"
    assert strict.compute.virtual_machines.get(RG, "web-1").provisioning_state == "Succeeded"


def test_another_write_while_an_operation_holds_the_vm_is_409(strict: ArmClients,
                                                              servers: Servers) -> None:
    slow(servers, 2.0)
    strict.compute.virtual_machines.begin_power_off(RG, "app-1", polling=False)
    writes = [
        lambda: strict.compute.virtual_machines.begin_start(RG, "app-1"),
        lambda: strict.compute.virtual_machines.begin_update(
            RG, "app-1", VirtualMachineUpdate(tags={"x": "y"})),
    ]
    for write in writes:
        with pytest.raises(HttpResponseError) as caught:
            write()
        assert caught.value.status_code == 409
        assert error_code(caught.value) == "AnotherOperationInProgress"
        assert int(caught.value.response.headers["Retry-After"]) >= 1
    deadline = time.monotonic() + 5
    while power(strict, "app-1") == "stopping":  # nobody polls: it ends by itself
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert power(strict, "app-1") == "stopped"
    strict.compute.virtual_machines.begin_start(RG, "app-1").result()
    assert power(strict, "app-1") == "running"


def test_actions_already_in_effect_and_a_power_off_of_a_deallocated_vm(strict: ArmClients,
                                                                        servers: Servers) -> None:
    slow(servers, 2.0)
    strict.compute.virtual_machines.begin_power_off(RG, "batch-1", polling=False)
    assert power(strict, "batch-1") == "stopped"  # already so: no `stopping` on the way
    strict.compute.virtual_machines.begin_start(RG, "web-2", polling=False)
    assert power(strict, "web-2") == "running"
    with pytest.raises(HttpResponseError) as caught:
        strict.compute.virtual_machines.begin_power_off(RG, "spare-1")
    assert caught.value.status_code == 409
    assert error_code(caught.value) == "OperationNotAllowed"
    assert power(strict, "spare-1") == "deallocated"


def test_patch_replaces_the_tags_guarded_by_the_etag(strict: ArmClients) -> None:
    vm = strict.compute.virtual_machines.get(RG, "db-1")
    updated = strict.compute.virtual_machines.begin_update(
        RG, "db-1", VirtualMachineUpdate(tags={"only": "this"}), etag=vm.etag,
        match_condition=MatchConditions.IfNotModified).result()
    assert updated.tags == {"only": "this"} and updated.etag != vm.etag
    assert updated.zones == ["1"] and updated.hardware_profile.vm_size == "Standard_B2s"
    with pytest.raises(HttpResponseError) as stale:
        strict.compute.virtual_machines.begin_update(
            RG, "db-1", VirtualMachineUpdate(tags={}), etag=vm.etag,
            match_condition=MatchConditions.IfNotModified)
    assert stale.value.status_code == 412
    assert strict.compute.virtual_machines.get(RG, "db-1").tags == {"only": "this"}


def test_a_list_carries_the_instance_view_only_when_asked(strict: ArmClients) -> None:
    plain = list(strict.compute.virtual_machines.list(RG))
    assert all(vm.instance_view is None for vm in plain)
    expanded = {vm.name: power_of(vm)
                for vm in strict.compute.virtual_machines.list(RG, expand="instanceView")}
    assert expanded["batch-1"] == "stopped" and expanded["spare-1"] == "deallocated"
    assert expanded["web-1"] == "running"
