"""The ARM emulator's scale sets and autoscale settings through azure-mgmt-compute and
azure-mgmt-monitor, as real ARM answers: a scale set write is a long-running operation guarded by
its etag, 409 while another operation holds the set, a PATCH merges the repairs policy; autoscale
settings answer synchronously, without etag, and the SDK's patch model always sends `enabled`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.compute.models import (
    AutomaticRepairsPolicy,
    VirtualMachineScaleSetUpdate,
    VirtualMachineScaleSetUpdateProperties,
)
from azure.mgmt.monitor.models import AutoscaleSettingResource, AutoscaleSettingResourcePatch

from activities.azure.api import error_code
from gameday.lab.azure.autoscale import monitor_client
from gameday.lab.azure.clients import ArmClients, connect
from tests.support.capacity_azure import AzureCapacityLab
from tests.support.servers import Servers

RG = AzureCapacityLab.resource_group


@pytest.fixture
def strict(servers: Servers) -> Iterator[tuple[ArmClients, Any]]:
    """The lab seeded, and clients that never retry, to see each answer as sent."""
    AzureCapacityLab(servers).seed()
    assert servers.azure is not None
    ca = servers.env["GAMEDAY_AZURE_CA_BUNDLE"]
    arm = connect(servers.azure.url, ca, AzureCapacityLab.subscription, retry_total=0)
    monitor = monitor_client(servers.azure.url, ca, AzureCapacityLab.subscription, retry_total=0)
    yield arm, monitor
    arm.close()
    monitor.close()
    with servers.azure.lock:
        servers.azure.operations.seconds = 1.0


def repairs_update(enabled: bool) -> VirtualMachineScaleSetUpdate:
    return VirtualMachineScaleSetUpdate(properties=VirtualMachineScaleSetUpdateProperties(
        automatic_repairs_policy=AutomaticRepairsPolicy(enabled=enabled)))


def test_scale_sets_are_listed_read_and_patched_as_long_running_operations(
        strict: tuple[ArmClients, Any], servers: Servers) -> None:
    arm, _ = strict
    web = arm.compute.virtual_machine_scale_sets.get(RG, "web-vmss")
    assert (web.zones, web.sku.capacity, web.etag is not None) == (["1", "2", "3"], 3, True)
    assert (web.automatic_repairs_policy.enabled, web.automatic_repairs_policy.grace_period,
            web.automatic_repairs_policy.repair_action) == (True, "PT30M", "Replace")
    assert sorted(s.name for s in arm.compute.virtual_machine_scale_sets.list(RG)) == [
        "batch-vmss", "web-vmss"]
    assert len(list(arm.compute.virtual_machine_scale_sets.list_all())) == 2

    # a PATCH nobody polls holds the set while its operation runs (the SDK's poller would end it)
    held = arm.compute.send_request(HttpRequest(
        "PATCH", f"/subscriptions/{AzureCapacityLab.subscription}/resourceGroups/{RG}/providers/"
        "Microsoft.Compute/virtualMachineScaleSets/web-vmss", params={"api-version": "2024-07-01"},
        json=repairs_update(False).as_dict(), headers={"If-Match": web.etag}))
    assert (held.status_code, "Azure-AsyncOperation" in held.headers) == (200, True)
    assert held.json()["properties"]["provisioningState"] == "Updating"
    with pytest.raises(HttpResponseError) as busy:
        arm.compute.virtual_machine_scale_sets.begin_update(RG, "web-vmss", repairs_update(True))
    assert (busy.value.status_code, error_code(busy.value)) == (409, "AnotherOperationInProgress")
    assert int(busy.value.response.headers["Retry-After"]) >= 1
    status = [arm.compute.send_request(HttpRequest("GET", held.headers["Azure-AsyncOperation"]))
              .json()["status"] for _ in range(2)]
    assert status == ["InProgress", "Succeeded"]
    done = arm.compute.virtual_machine_scale_sets.begin_update(  # free again
        RG, "web-vmss", VirtualMachineScaleSetUpdate(tags={"app": "shop"})).result()
    # the PATCH merged the policy: grace period and action kept
    assert (done.automatic_repairs_policy.enabled, done.automatic_repairs_policy.grace_period,
            done.automatic_repairs_policy.repair_action) == (False, "PT30M", "Replace")
    assert done.etag != web.etag
    with pytest.raises(HttpResponseError) as stale:
        arm.compute.virtual_machine_scale_sets.begin_update(
            RG, "web-vmss", repairs_update(True), etag=web.etag,
            match_condition=MatchConditions.IfNotModified)
    assert stale.value.status_code == 412


def test_scale_set_writes_are_checked_as_arm_checks_them(strict: tuple[ArmClients, Any]) -> None:
    arm, _ = strict
    with pytest.raises(HttpResponseError) as short:
        arm.compute.virtual_machine_scale_sets.begin_update(
            RG, "web-vmss", VirtualMachineScaleSetUpdate(
                properties=VirtualMachineScaleSetUpdateProperties(
                    automatic_repairs_policy=AutomaticRepairsPolicy(enabled=True,
                                                                    grace_period="PT5M"))))
    assert (short.value.status_code, error_code(short.value)) == (400, "InvalidParameter")
    with pytest.raises(ResourceNotFoundError):
        arm.compute.virtual_machine_scale_sets.get(RG, "no-such-vmss")


def test_autoscale_settings_answer_synchronously_and_the_patch_model_sends_enabled(
        strict: tuple[ArmClients, Any]) -> None:
    arm, monitor = strict
    web = arm.compute.virtual_machine_scale_sets.get(RG, "web-vmss")
    setting = monitor.autoscale_settings.get(RG, "web-vmss-autoscale")
    assert (setting.enabled, setting.target_resource_uri.lower()) == (True, web.id.lower())
    assert [p.capacity.default for p in setting.profiles] == ["3"]
    assert sorted(s.name for s in monitor.autoscale_settings.list_by_resource_group(RG)) == [
        "batch-vmss-autoscale", "web-vmss-autoscale"]
    assert len(list(monitor.autoscale_settings.list_by_subscription())) == 2

    # the SDK's patch model sends `enabled: false` unless told: a tags-only PATCH disables
    patched = monitor.autoscale_settings.update(RG, "web-vmss-autoscale",
                                                AutoscaleSettingResourcePatch(tags={"a": "b"}))
    assert (patched.enabled, patched.tags) == (False, {"a": "b"})
    patched = monitor.autoscale_settings.update(RG, "web-vmss-autoscale",
                                                AutoscaleSettingResourcePatch(enabled=True))
    assert (patched.enabled, patched.tags) == (True, {"a": "b"})  # tags not given: kept
    with pytest.raises(HttpResponseError) as empty:
        monitor.autoscale_settings.create_or_update(RG, "bad", AutoscaleSettingResource(
            location="eastus", profiles=[], target_resource_uri=web.id))
    assert empty.value.status_code == 400
    with pytest.raises(ResourceNotFoundError):
        monitor.autoscale_settings.get(RG, "no-such-setting")
