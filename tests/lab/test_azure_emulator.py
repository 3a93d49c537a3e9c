"""Conformance of the ARM emulator with the real azure-mgmt clients over https."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from activities.azure import StaticTokenCredential
from gameday.lab.azure import ResourceManagerEmulator, make_certificate
from gameday.lab.azure.clients import ArmClients, connect
from gameday.lab.azure.emulator import DEFAULT_STYLES
from gameday.lab.azure.seed import create_resource_group, seed_azure
from gameday.lab.faults import FaultConfig

SUB = "00000000-0000-0000-0000-000000000000"
RG = "rg"
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    return make_certificate(tmp_path_factory.mktemp("arm-certs"))


@pytest.fixture(scope="module")
def server(certs: tuple[str, str, str]) -> Iterator[ResourceManagerEmulator]:
    _, cert, key = certs
    emulator = ResourceManagerEmulator(certfile=cert, keyfile=key).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def arm(server: ResourceManagerEmulator) -> ResourceManagerEmulator:
    """The shared emulator, emptied, with default settings and no faults."""
    with server.lock:
        server.reset()
        server.lro_styles = dict(DEFAULT_STYLES)
        server.page_size = 1000
        server.operations.seconds = 1.0
    server.faults.configure(FaultConfig())
    server.faults.clear_calls()
    return server


@pytest.fixture(scope="module")
def ca(certs: tuple[str, str, str]) -> str:
    return certs[0]


@pytest.fixture
def clients(arm: ResourceManagerEmulator, ca: str) -> Iterator[ArmClients]:
    made = connect(arm.url, ca, SUB)
    create_resource_group(made, SUB, RG)
    yield made
    made.close()


@pytest.fixture
def strict(arm: ResourceManagerEmulator, ca: str, clients: ArmClients) -> Iterator[ArmClients]:
    """Clients that never retry, to see each answer as sent."""
    made = connect(arm.url, ca, SUB, retry_total=0)
    yield made
    made.close()


def subnet_id(clients: ArmClients) -> str:
    vnet = clients.network.virtual_networks.begin_create_or_update(
        RG,
        "vnet",
        {
            "location": "eastus",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "app", "properties": {"addressPrefix": "10.0.0.0/24"}}],
            },
        },
    ).result()
    return vnet.subnets[0].id


def rule(name: str, priority: int, direction: str = "Inbound", access: str = "Allow") -> dict:
    return {
        "name": name,
        "properties": {
            "protocol": "*",
            "access": access,
            "direction": direction,
            "priority": priority,
            "sourceAddressPrefix": "*",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "*",
        },
    }


def nsg_body(*rules: dict, flush: bool = False) -> dict:
    return {
        "location": "eastus",
        "tags": {"gameday-run": "wf-1"},
        "properties": {"securityRules": list(rules), "flushConnection": flush},
    }


def nic_body(subnet: str, nsg_id: str | None = None) -> dict:
    body: dict[str, Any] = {
        "location": "eastus",
        "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}]},
    }
    if nsg_id:
        body["properties"]["networkSecurityGroup"] = {"id": nsg_id}
    return body


def trust(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def error_code(error: HttpResponseError) -> str:
    assert error.response is not None
    return error.response.json()["error"]["code"]


def calls(arm: ResourceManagerEmulator) -> list[tuple[str, str, int]]:
    return [(c["method"], c["path"], c["status"]) for c in arm.faults.call_log()]


# --- protocol ----------------------------------------------------------------------------------


def test_api_version_is_required(arm: ResourceManagerEmulator, ca: str) -> None:
    with httpx.Client(base_url=arm.url, verify=trust(ca)) as http:
        answer = http.get(f"/subscriptions/{SUB}/resourcegroups")
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "MissingApiVersionParameter"
        assert http.get(
            f"/subscriptions/{SUB}/resourcegroups", params={"api-version": "2021-04-01"}
        ).json() == {"value": []}


def test_resource_group_must_exist(arm: ResourceManagerEmulator, ca: str) -> None:
    made = connect(arm.url, ca, SUB)
    with pytest.raises(ResourceNotFoundError) as caught:
        made.network.network_interfaces.get("nowhere", "nic")
    assert error_code(caught.value) == "ResourceGroupNotFound"
    made.close()


def test_paths_match_case_insensitively(clients: ArmClients, arm: ResourceManagerEmulator, ca: str) -> None:
    clients.network.network_security_groups.begin_create_or_update(RG, "Web-NSG", nsg_body()).result()
    path = f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG/providers/microsoft.network/NETWORKSECURITYGROUPS/web-nsg"
    with httpx.Client(base_url=arm.url, verify=trust(ca)) as http:
        body = http.get(path, params={"api-version": "2026-03-01"}).json()
    assert body["name"] == "Web-NSG"
    assert body["type"] == NSG_TYPE
    assert body["properties"]["provisioningState"] == "Succeeded"


def test_not_found_raises_resource_not_found(clients: ArmClients) -> None:
    lookups = [
        lambda: clients.network.network_interfaces.get(RG, "missing"),
        lambda: clients.network.network_security_groups.get(RG, "missing"),
        lambda: clients.compute.virtual_machines.get(RG, "missing"),
        lambda: clients.traffic.profiles.get(RG, "missing"),
    ]
    for lookup in lookups:
        with pytest.raises(ResourceNotFoundError) as caught:
            lookup()
        assert error_code(caught.value) == "ResourceNotFound"
    clients.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body()).result()
    with pytest.raises(ResourceNotFoundError) as caught:
        clients.network.security_rules.get(RG, "nsg", "missing")
    assert error_code(caught.value) == "NotFound"


# --- long-running operations -------------------------------------------------------------------


@pytest.mark.parametrize("style", ["sync", "async-operation", "location"])
def test_each_lro_style_completes(clients: ArmClients, arm: ResourceManagerEmulator, style: str) -> None:
    for kind in ("networkInterfaces", "networkSecurityGroups"):
        for method in ("PUT", "DELETE"):
            arm.lro_styles[(kind, method)] = style
    subnet = subnet_id(clients)
    arm.faults.clear_calls()
    started = time.monotonic()
    nsg = clients.network.network_security_groups.begin_create_or_update(
        RG, "nsg", nsg_body(rule("a", 100))
    ).result()
    nic = clients.network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet)).result()
    assert nsg.provisioning_state == "Succeeded" and nic.provisioning_state == "Succeeded"
    assert nsg.security_rules[0].name == "a"
    assert nic.ip_configurations[0].private_ip_address == "10.0.0.4"
    assert clients.network.network_interfaces.begin_delete(RG, "nic").result() is None
    clients.network.network_security_groups.begin_delete(RG, "nsg").result()
    assert time.monotonic() - started < 2
    assert list(clients.network.network_security_groups.list(RG)) == []
    assert list(clients.network.network_interfaces.list(RG)) == []
    polls = [path for method, path, _ in calls(arm) if "/locations/eastus/" in path]
    expected = {"sync": 0, "async-operation": 8, "location": 8}[style]
    assert len(polls) == expected
    if style == "async-operation":
        assert all("/operations/" in path for path in polls)
    if style == "location":
        assert all("/operationResults/" in path for path in polls)


def test_async_operation_shows_in_progress_then_succeeded(
    strict: ArmClients, arm: ResourceManagerEmulator, ca: str
) -> None:
    poller = strict.network.network_security_groups.begin_create_or_update(
        RG, "nsg", nsg_body(), polling=False
    )
    initial = poller.polling_method()._initial_response.http_response  # type: ignore[attr-defined]
    assert initial.status_code == 201
    assert initial.json()["properties"]["provisioningState"] == "Updating"
    status_url = initial.headers["Azure-AsyncOperation"]
    with httpx.Client(verify=trust(ca)) as http:
        assert http.get(status_url).json()["status"] == "InProgress"
        assert http.get(status_url).json()["status"] == "Succeeded"
    assert strict.network.network_security_groups.get(RG, "nsg").provisioning_state == "Succeeded"


def test_unpolled_operation_completes_by_itself(strict: ArmClients, arm: ResourceManagerEmulator) -> None:
    arm.operations.seconds = 0.1
    strict.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body(), polling=False)
    time.sleep(0.15)
    assert strict.network.network_security_groups.get(RG, "nsg").provisioning_state == "Succeeded"


def test_concurrent_nsg_writes_are_refused_with_retry_after(
    strict: ArmClients, clients: ArmClients, arm: ResourceManagerEmulator
) -> None:
    strict.network.network_security_groups.begin_create_or_update(
        RG, "nsg", nsg_body(rule("a", 100)), polling=False
    )
    with pytest.raises(HttpResponseError) as caught:
        strict.network.security_rules.begin_create_or_update(RG, "nsg", "b", rule("b", 110))
    assert caught.value.status_code == 429
    assert error_code(caught.value) == "RetryableErrorDueToAnotherOperation"
    assert caught.value.response.headers["Retry-After"] == "1"
    with pytest.raises(HttpResponseError) as caught:
        strict.network.network_security_groups.begin_delete(RG, "nsg")
    assert caught.value.status_code == 429
    # The SDK's retry policy sleeps Retry-After and retries: the write goes through once the
    # first operation completes (unpolled, after `operation_seconds`).
    created = clients.network.security_rules.begin_create_or_update(RG, "nsg", "b", rule("b", 110)).result()
    assert created.priority == 110
    rule_puts = [status for method, path, status in calls(arm) if method == "PUT" and path.endswith("/b")]
    assert rule_puts == [429, 429, 201]
    names = {r.name for r in clients.network.network_security_groups.get(RG, "nsg").security_rules}
    assert names == {"a", "b"}


# --- network security groups and interfaces ----------------------------------------------------


def test_nic_association_with_nsg_and_removal(clients: ArmClients) -> None:
    network = clients.network
    subnet = subnet_id(clients)
    nsg = network.network_security_groups.begin_create_or_update(RG, "web-nsg", nsg_body()).result()
    nic = network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet, nsg.id)).result()
    assert nic.network_security_group.id == nsg.id
    members = network.network_security_groups.get(RG, "web-nsg").network_interfaces
    assert [m.id for m in members] == [nic.id]

    fetched = network.network_interfaces.get(RG, "nic")
    fetched.network_security_group = None
    cleared = network.network_interfaces.begin_create_or_update(RG, "nic", fetched).result()
    assert cleared.network_security_group is None
    assert cleared.ip_configurations[0].private_ip_address == nic.ip_configurations[0].private_ip_address
    assert not network.network_security_groups.get(RG, "web-nsg").network_interfaces

    tagged = network.network_interfaces.update_tags(RG, "nic", {"tags": {"gameday": "x"}})
    assert tagged.tags == {"gameday": "x"}
    assert tagged.etag != cleared.etag


def test_nic_references_must_exist(strict: ArmClients) -> None:
    subnet = subnet_id(strict)
    missing = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/{NSG_TYPE}/nope"
    with pytest.raises(HttpResponseError) as caught:
        strict.network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet, missing))
    assert caught.value.status_code == 400
    assert error_code(caught.value) == "InvalidResourceReference"


def test_nsg_with_rules_and_flush_connection(clients: ArmClients) -> None:
    network = clients.network
    network.network_security_groups.begin_create_or_update(
        RG,
        "gd",
        nsg_body(
            rule("deny-in", 100, "Inbound", "Deny"),
            rule("deny-out", 100, "Outbound", "Deny"),
            flush=True,
        ),
    ).result()
    nsg = network.network_security_groups.get(RG, "gd")
    assert nsg.flush_connection is True
    assert nsg.tags == {"gameday-run": "wf-1"}
    assert {(r.name, r.direction, r.access, r.priority) for r in nsg.security_rules} == {
        ("deny-in", "Inbound", "Deny", 100),
        ("deny-out", "Outbound", "Deny", 100),
    }
    assert len(nsg.default_security_rules) == 6
    assert all(r.id.startswith(nsg.id + "/securityRules/") for r in nsg.security_rules)

    network.security_rules.begin_create_or_update(RG, "gd", "allow-ssh", rule("allow-ssh", 200)).result()
    assert network.security_rules.get(RG, "gd", "allow-ssh").priority == 200
    assert len(list(network.security_rules.list(RG, "gd"))) == 3
    network.security_rules.begin_delete(RG, "gd", "allow-ssh").result()
    assert len(list(network.security_rules.list(RG, "gd"))) == 2

    network.network_security_groups.begin_create_or_update(RG, "gd", nsg_body(flush=False)).result()
    updated = network.network_security_groups.get(RG, "gd")
    assert updated.flush_connection is False and not updated.security_rules


def test_rule_priority_conflict(strict: ArmClients) -> None:
    network = strict.network
    with pytest.raises(HttpResponseError) as caught:
        network.network_security_groups.begin_create_or_update(
            RG, "nsg", nsg_body(rule("a", 100), rule("b", 100))
        )
    assert caught.value.status_code == 400
    assert error_code(caught.value) == "SecurityRuleConflict"

    network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body(rule("a", 100))).result()
    with pytest.raises(HttpResponseError) as caught:
        network.security_rules.begin_create_or_update(RG, "nsg", "b", rule("b", 100))
    assert error_code(caught.value) == "SecurityRuleConflict"
    with pytest.raises(HttpResponseError) as caught:
        network.security_rules.begin_create_or_update(RG, "nsg", "c", rule("c", 5000))
    assert error_code(caught.value) == "SecurityRuleInvalidPriority"
    network.security_rules.begin_create_or_update(RG, "nsg", "b", rule("b", 100, "Outbound")).result()


def test_deleting_an_nsg_in_use_fails(strict: ArmClients) -> None:
    network = strict.network
    subnet = subnet_id(strict)
    nsg = network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body()).result()
    network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet, nsg.id)).result()
    with pytest.raises(HttpResponseError) as caught:
        network.network_security_groups.begin_delete(RG, "nsg")
    assert caught.value.status_code == 400
    assert error_code(caught.value) == "InUseNetworkSecurityGroupCannotBeDeleted"
    network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet)).result()
    network.network_security_groups.begin_delete(RG, "nsg").result()
    with pytest.raises(ResourceNotFoundError):
        network.network_security_groups.get(RG, "nsg")


def test_subnet_in_use_cannot_be_deleted(strict: ArmClients) -> None:
    subnet = subnet_id(strict)
    strict.network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet)).result()
    with pytest.raises(HttpResponseError) as caught:
        strict.network.subnets.begin_delete(RG, "vnet", "app")
    assert error_code(caught.value) == "InUseSubnetCannotBeDeleted"
    users = strict.network.subnets.get(RG, "vnet", "app").ip_configurations
    assert [u.id.rsplit("/", 2)[0].rsplit("/", 1)[1] for u in users] == ["nic"]


def test_nic_write_waits_for_the_nsg_operation(strict: ArmClients) -> None:
    subnet = subnet_id(strict)
    nsg = strict.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body()).result()
    strict.network.security_rules.begin_create_or_update(RG, "nsg", "a", rule("a", 100), polling=False)
    with pytest.raises(HttpResponseError) as caught:
        strict.network.network_interfaces.begin_create_or_update(RG, "nic", nic_body(subnet, nsg.id))
    assert caught.value.status_code == 429
    assert error_code(caught.value) == "ReferencedResourceNotProvisioned"


# --- compute -----------------------------------------------------------------------------------


def test_vm_list_with_zones_and_nic_ids(clients: ArmClients) -> None:
    subnet = subnet_id(clients)
    expected = {}
    for zone in ("1", "2", "3"):
        nics = [
            clients.network.network_interfaces.begin_create_or_update(
                RG, f"vm{zone}-nic{i}", nic_body(subnet)
            )
            .result()
            .id
            for i in range(int(zone))
        ]
        clients.compute.virtual_machines.begin_create_or_update(
            RG,
            f"vm{zone}",
            {
                "location": "eastus",
                "zones": [zone],
                "tags": {"gameday": "enabled"},
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_B1s"},
                    "osProfile": {
                        "computerName": f"vm{zone}",
                        "adminUsername": "u",
                        "adminPassword": "secret",
                    },
                    "networkProfile": {
                        "networkInterfaces": [
                            {"id": nic, "properties": {"primary": i == 0}} for i, nic in enumerate(nics)
                        ]
                    },
                },
            },
        ).result()
        expected[f"vm{zone}"] = (zone, nics)
    for listing in (
        clients.compute.virtual_machines.list(RG),
        clients.compute.virtual_machines.list_all(),
    ):
        seen = {
            vm.name: (vm.zones[0], [n.id for n in vm.network_profile.network_interfaces]) for vm in listing
        }
        assert seen == expected
    vm = clients.compute.virtual_machines.get(RG, "vm2")
    assert vm.tags == {"gameday": "enabled"}
    assert vm.hardware_profile.vm_size == "Standard_B1s"
    assert vm.os_profile.admin_password is None
    nic = clients.network.network_interfaces.get(RG, "vm2-nic1")
    assert nic.virtual_machine.id == vm.id
    with pytest.raises(HttpResponseError) as caught:
        clients.network.network_interfaces.begin_delete(RG, "vm2-nic1").result()
    assert error_code(caught.value) == "NicInUse"
    clients.compute.virtual_machines.begin_delete(RG, "vm2").result()
    assert clients.network.network_interfaces.get(RG, "vm2-nic1").virtual_machine is None


def test_list_pages_follow_next_link(clients: ArmClients, arm: ResourceManagerEmulator) -> None:
    arm.page_size = 2
    for name in "abcde":
        clients.network.network_security_groups.begin_create_or_update(RG, name, nsg_body()).result()
    arm.faults.clear_calls()
    assert [n.name for n in clients.network.network_security_groups.list(RG)] == list("abcde")
    assert len(calls(arm)) == 3


# --- traffic manager ---------------------------------------------------------------------------


def test_traffic_manager_endpoint_disable_enable_round_trip(clients: ArmClients) -> None:
    traffic = clients.traffic
    target = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses"
    profile = traffic.profiles.create_or_update(
        RG,
        "tm",
        {
            "location": "global",
            "properties": {
                "trafficRoutingMethod": "Weighted",
                "dnsConfig": {"relativeName": "tm"},
                "monitorConfig": {"protocol": "HTTP", "port": 80, "path": "/"},
                "endpoints": [
                    {
                        "name": region,
                        "type": "Microsoft.Network/trafficManagerProfiles/azureEndpoints",
                        "properties": {
                            "targetResourceId": f"{target}/{region}",
                            "endpointLocation": region,
                        },
                    }
                    for region in ("eastus", "westus")
                ],
            },
        },
    )
    assert profile.location == "global"
    assert profile.dns_config.fqdn == "tm.trafficmanager.net"
    assert {e.name: e.endpoint_status for e in profile.endpoints} == {
        "eastus": "Enabled",
        "westus": "Enabled",
    }

    disabled = traffic.endpoints.update(
        RG, "tm", "AzureEndpoints", "eastus", {"properties": {"endpointStatus": "Disabled"}}
    )
    assert disabled.endpoint_status == "Disabled" and disabled.weight == 1
    assert traffic.endpoints.get(RG, "tm", "AzureEndpoints", "eastus").endpoint_status == "Disabled"
    statuses = {e.name: e.endpoint_status for e in traffic.profiles.get(RG, "tm").endpoints}
    assert statuses == {"eastus": "Disabled", "westus": "Enabled"}
    enabled = traffic.endpoints.update(
        RG, "tm", "AzureEndpoints", "eastus", {"properties": {"endpointStatus": "Enabled"}}
    )
    assert enabled.endpoint_status == "Enabled"
    assert enabled.endpoint_location == "eastus"

    added = traffic.endpoints.create_or_update(
        RG,
        "tm",
        "ExternalEndpoints",
        "ext",
        {"properties": {"target": "shop.example.com", "endpointStatus": "Enabled", "weight": 5}},
    )
    assert added.type == "Microsoft.Network/trafficManagerProfiles/externalEndpoints"
    traffic.endpoints.delete(RG, "tm", "ExternalEndpoints", "ext")
    with pytest.raises(ResourceNotFoundError):
        traffic.endpoints.get(RG, "tm", "ExternalEndpoints", "ext")
    assert [p.name for p in traffic.profiles.list_by_subscription()] == ["tm"]


# --- faults and the call log -------------------------------------------------------------------


def test_injected_429_is_retried_after_retry_after(
    clients: ArmClients, strict: ArmClients, arm: ResourceManagerEmulator
) -> None:
    clients.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body()).result()
    rule_match = "GET /subscriptions/" + SUB
    arm.faults.configure(
        FaultConfig(rules=[{"match": rule_match, "status": 429, "count": 1, "retry_after": 1}])
    )
    arm.faults.clear_calls()
    started = time.monotonic()
    assert clients.network.network_security_groups.get(RG, "nsg").name == "nsg"
    assert time.monotonic() - started >= 0.9
    assert [status for _, _, status in calls(arm)] == [429, 200]
    assert arm.faults.call_log()[0]["injected"] is True

    # Without retries the SDK raises the 429; Retry-After is there even when the rule sets none.
    arm.faults.configure(FaultConfig(rules=[{"match": rule_match, "status": 429, "count": 1}]))
    with pytest.raises(HttpResponseError) as caught:
        strict.network.network_security_groups.get(RG, "nsg")
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "1"
    assert error_code(caught.value) == "TooManyRequests"


def test_injected_503(clients: ArmClients, strict: ArmClients, arm: ResourceManagerEmulator) -> None:
    clients.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body()).result()
    arm.faults.configure(
        FaultConfig(rules=[{"match": "networkSecurityGroups/nsg", "status": 503, "count": 1}])
    )
    assert clients.network.network_security_groups.get(RG, "nsg").name == "nsg"
    arm.faults.configure(FaultConfig(rules=[{"match": "PUT /subscriptions", "status": 503}]))
    with pytest.raises(HttpResponseError) as caught:
        strict.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body())
    assert caught.value.status_code == 503
    assert error_code(caught.value) == "ServiceUnavailable"


def test_call_log_over_the_admin_api(clients: ArmClients, arm: ResourceManagerEmulator, ca: str) -> None:
    clients.network.network_security_groups.begin_create_or_update(RG, "nsg", nsg_body()).result()
    with httpx.Client(base_url=arm.url, verify=trust(ca)) as http:
        logged = http.get("/_emulator/calls").json()["calls"]
        nsg_path = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/{NSG_TYPE}/nsg"
        assert {
            "method": "PUT",
            "path": nsg_path,
            "key": f"PUT {nsg_path}",
            "status": 201,
            "injected": False,
        }.items() <= logged[-4].items()
        assert http.delete("/_emulator/calls").status_code == 204
        assert http.get("/_emulator/calls").json()["calls"] == []
        assert http.post("/_emulator/reset").status_code == 204
    with pytest.raises(ResourceNotFoundError):
        clients.network.network_security_groups.get(RG, "nsg")


# --- seeding and the command line --------------------------------------------------------------


def test_seeder_builds_the_lab_topology(arm: ResourceManagerEmulator, ca: str) -> None:
    summary = seed_azure(arm.url, ca)
    assert summary["vms"] == 8 and summary["nics"] == 11 and summary["nics_with_nsg"] == 3
    assert seed_azure(arm.url, ca) == summary
    made = connect(arm.url, ca, SUB)
    vms = list(made.compute.virtual_machines.list("shop"))
    assert len(vms) == 8
    assert {vm.zones[0] for vm in vms} == {"1", "2", "3"}
    assert sum(1 for vm in vms if (vm.tags or {}).get("gameday") == "enabled") == 6
    nics = list(made.network.network_interfaces.list("shop"))
    assert len(nics) == 11 and all(n.virtual_machine for n in nics)
    assert sum(1 for n in nics if n.network_security_group) == 3
    web = made.network.network_security_groups.get("shop", "web-nsg")
    assert len(web.network_interfaces) == 3
    profile = made.traffic.profiles.get("shop", "shop-tm")
    assert {(e.endpoint_location, e.endpoint_status) for e in profile.endpoints} == {
        ("eastus", "Enabled"),
        ("westus", "Enabled"),
    }
    made.close()


def test_command_line_serves_https(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gameday.lab.azure",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--cert-dir",
            str(tmp_path),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        assert {p.name for p in tmp_path.iterdir()} >= {"ca.pem", "cert.pem", "key.pem"}
        health = httpx.get(f"{url}/_emulator/health", verify=trust(str(tmp_path / "ca.pem")))
        assert health.json()["status"] == "serving"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_credential_is_static() -> None:
    credential = StaticTokenCredential()
    token = credential.get_token("https://management.azure.com/.default")
    assert token.token == credential.token and token.expires_on > time.time()
