"""The everyday GameDay Azure CLI commands, run by the real `az` against the lab's ARM emulator.

The tests marked `needs_az` run the real `az`. azure-cli pins azure-mgmt-* versions that conflict
with the project's, so it lives in its own venv: `make conformance` creates `.venv-az`;
`GAMEDAY_AZ` may name another `az`; without either they skip. Each such test runs one command of
the fixed list (docs/lab.md counts them) with `--output json` against a seeded emulator on
loopback, in a private `AZURE_CONFIG_DIR`, after `az cloud register` against the lab's metadata
endpoint and `az login --service-principal` against the lab's token endpoint, and asserts on what
az printed, not only on its exit status. The tests at the end check the same endpoints through
azure-mgmt-compute and plain HTTP, so they run in `make test` without az.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.compute import ComputeManagementClient

from activities.azure import StaticTokenCredential
from gameday.lab.azure import ResourceManagerEmulator, make_certificate
from gameday.lab.azure.az import LAB_APP_ID, LAB_CLOUD_NAME, az_env, write_az_config
from gameday.lab.azure.identity import LAB_TENANT
from gameday.lab.azure.seed import VMS, seed_azure
from gameday.lab.manager import Lab

ROOT = Path(__file__).resolve().parents[2]


def _find_az() -> str | None:
    named = os.environ.get("GAMEDAY_AZ")
    if named:
        return named if Path(named).is_file() else None
    local = ROOT / ".venv-az" / "bin" / "az"
    return str(local) if local.is_file() else None


AZ = _find_az()
needs_az = pytest.mark.skipif(
    AZ is None, reason="the Azure CLI is not installed: run `make conformance` (or set GAMEDAY_AZ)")

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
TENANT = LAB_TENANT
APP_ID = LAB_APP_ID
CLOUD = LAB_CLOUD_NAME


class Az:
    """The real az with a private configuration directory, trusting the lab's CA."""

    def __init__(self, config_dir: Path, ca_bundle: str, **settings: str):
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("AZURE_", "ARM_", "MSAL_", "REQUESTS_CA", "CURL_CA"))}
        self.env.update(AZURE_CONFIG_DIR=str(config_dir), REQUESTS_CA_BUNDLE=ca_bundle, **settings)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert AZ is not None
        return subprocess.run([AZ, *args, "--output", "json"], env=self.env, capture_output=True,
                              text=True, timeout=180, check=False)

    def __call__(self, *args: str) -> Any:
        """What `az ARGS --output json` printed; fail with its stderr if it exited non-zero."""
        done = self.run(*args)
        assert done.returncode == 0, f"az {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return json.loads(done.stdout or "null")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ResourceManagerEmulator, str]]:
    ca, cert, key = make_certificate(tmp_path_factory.mktemp("arm-certs"))
    server = ResourceManagerEmulator("127.0.0.1", 0, cert, key).start()
    seed_azure(server.url, ca, SUBSCRIPTION)
    yield server, ca
    server.stop()


@pytest.fixture(scope="module")
def setup(emulator: tuple[ResourceManagerEmulator, str],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`az cloud register` + `az cloud set` + `az login --service-principal`, as an operator types
    them; each step's outcome, checked by the first tests of the list."""
    server, ca = emulator
    az = Az(tmp_path_factory.mktemp("azure-config"), ca, AZURE_CORE_COLLECT_TELEMETRY="false",
            AZURE_CORE_INSTANCE_DISCOVERY="false", AZURE_CORE_SURVEY_MESSAGE="false")
    register = az.run("cloud", "register", "--name", CLOUD, "--endpoint-resource-manager", server.url)
    select = az.run("cloud", "set", "--name", CLOUD)
    login = az.run("login", "--service-principal", "--username", APP_ID, "--password", "lab-secret",
                   "--tenant", TENANT)
    return {"az": az, "register": register, "set": select, "login": login}


@pytest.fixture(scope="module")
def az(setup: dict[str, Any]) -> Az:
    """A logged-in az; each test fails (not errors) with login's stderr when login failed."""
    login = setup["login"]
    assert login.returncode == 0, f"az login exited {login.returncode}: {login.stderr}"
    return setup["az"]


def names(items: list[dict[str, Any]]) -> set[str]:
    return {item["name"] for item in items}


def power_state(az: Az, name: str) -> str:
    return az("vm", "show", "-d", "-g", "shop", "-n", name)["powerState"]


# --- getting in -------------------------------------------------------------------------------


@needs_az
def test_cloud_register(setup: dict[str, Any], emulator: tuple[ResourceManagerEmulator, str]) -> None:
    """`--endpoint-resource-manager` alone: az reads the rest from `GET /metadata/endpoints`."""
    assert setup["register"].returncode == 0, setup["register"].stderr
    assert setup["set"].returncode == 0, setup["set"].stderr
    cloud = setup["az"]("cloud", "show", "--name", CLOUD)
    server, _ = emulator
    assert cloud["endpoints"]["resourceManager"].rstrip("/") == server.url
    assert cloud["endpoints"]["activeDirectory"].rstrip("/") == server.url


@needs_az
def test_login_service_principal(setup: dict[str, Any]) -> None:
    login = setup["login"]
    assert login.returncode == 0, login.stderr
    [account] = json.loads(login.stdout)
    assert account["id"] == SUBSCRIPTION and account["tenantId"] == TENANT
    assert account["user"] == {"name": APP_ID, "type": "servicePrincipal"}


@needs_az
def test_account_show(az: Az) -> None:
    account = az("account", "show")
    assert account["id"] == SUBSCRIPTION and account["state"] == "Enabled"
    assert account["environmentName"] == CLOUD


@needs_az
def test_account_list(az: Az) -> None:
    assert [a["id"] for a in az("account", "list")] == [SUBSCRIPTION]


@needs_az
def test_get_access_token(az: Az) -> None:
    """A JWT-shaped token for the lab's ARM audience."""
    token = az("account", "get-access-token")
    assert token["subscription"] == SUBSCRIPTION and token["tenant"] == TENANT
    assert token["accessToken"].count(".") == 2


@needs_az
def test_group_list(az: Az) -> None:
    assert names(az("group", "list")) == {"shop"}


# --- virtual machines --------------------------------------------------------------------------


@needs_az
def test_vm_list(az: Az) -> None:
    listed = az("vm", "list")
    assert names(listed) == {name for name, *_ in VMS}
    assert {vm["name"]: vm["zones"] for vm in listed}["web-2"] == ["2"]


@needs_az
def test_vm_list_show_details(az: Az) -> None:
    """`-d` reads each VM with `$expand=instanceView` and its NICs: power state and private IPs."""
    listed = az("vm", "list", "-d", "-g", "shop")
    assert names(listed) == {name for name, *_ in VMS}
    assert {vm["powerState"] for vm in listed if vm["name"].startswith("db-")} == {"VM running"}
    by_name = {vm["name"]: vm for vm in listed}
    assert by_name["app-1"]["privateIps"].count(",") == 1  # two NICs
    assert by_name["web-1"]["macAddresses"]


@needs_az
def test_vm_show_details(az: Az) -> None:
    vm = az("vm", "show", "-d", "-g", "shop", "-n", "web-1")
    assert vm["powerState"] == "VM running" and vm["privateIps"].startswith("10.0.")
    assert vm["tags"] == {"app": "shop", "gameday": "enabled"}


@needs_az
def test_vm_get_instance_view(az: Az) -> None:
    view = az("vm", "get-instance-view", "-g", "shop", "-n", "web-3")
    codes = [status["code"] for status in view["instanceView"]["statuses"]]
    assert codes == ["ProvisioningState/succeeded", "PowerState/running"]


@needs_az
def test_vm_stop(az: Az) -> None:
    """`az vm stop` is powerOff: 202, polled to the end; the VM is stopped, not deallocated."""
    az("vm", "stop", "-g", "shop", "-n", "app-2")
    assert power_state(az, "app-2") == "VM stopped"


@needs_az
def test_vm_deallocate(az: Az) -> None:
    az("vm", "deallocate", "-g", "shop", "-n", "app-3")
    assert power_state(az, "app-3") == "VM deallocated"


@needs_az
def test_vm_start(az: Az) -> None:
    az("vm", "deallocate", "-g", "shop", "-n", "bastion-1")
    az("vm", "start", "-g", "shop", "-n", "bastion-1")
    assert power_state(az, "bastion-1") == "VM running"


@needs_az
def test_vm_restart(az: Az) -> None:
    az("vm", "restart", "-g", "shop", "-n", "web-2")
    assert power_state(az, "web-2") == "VM running"


# --- network ------------------------------------------------------------------------------------


@needs_az
def test_network_vnet_list(az: Az) -> None:
    [vnet] = az("network", "vnet", "list", "-g", "shop")
    assert vnet["name"] == "shop-vnet" and [s["name"] for s in vnet["subnets"]] == ["app"]


@needs_az
def test_network_nic_list(az: Az) -> None:
    listed = az("network", "nic", "list", "-g", "shop")
    assert len(listed) == sum(count for *_, count in VMS)


@needs_az
def test_network_nic_show(az: Az) -> None:
    nic = az("network", "nic", "show", "-g", "shop", "-n", "web-1-nic0")
    assert nic["networkSecurityGroup"]["id"].endswith("/networkSecurityGroups/web-nsg")
    assert nic["virtualMachine"]["id"].endswith("/virtualMachines/web-1")


@needs_az
def test_network_nsg_list(az: Az) -> None:
    assert names(az("network", "nsg", "list", "-g", "shop")) == {"web-nsg"}


@needs_az
def test_network_nsg_show(az: Az) -> None:
    nsg = az("network", "nsg", "show", "-g", "shop", "-n", "web-nsg")
    assert len(nsg["networkInterfaces"]) == 3 and len(nsg["defaultSecurityRules"]) == 6


@needs_az
def test_network_nsg_rule_list(az: Az) -> None:
    rules = az("network", "nsg", "rule", "list", "-g", "shop", "--nsg-name", "web-nsg")
    assert {rule["name"]: rule["priority"] for rule in rules} == {"allow-http": 100,
                                                                  "allow-https": 110}


@needs_az
def test_network_nsg_create(az: Az) -> None:
    """A write az polls through `Azure-AsyncOperation` (30 s: the lab sends no `Retry-After` on
    writes, see docs/lab.md)."""
    created = az("network", "nsg", "create", "-g", "shop", "-n", "gameday-cut", "--tags",
                 "gameday-run=by-hand")
    assert created["NewNSG"]["provisioningState"] == "Succeeded"
    assert az("network", "nsg", "show", "-g", "shop", "-n", "gameday-cut")["tags"] == {
        "gameday-run": "by-hand"}


@needs_az
def test_network_nic_update_nsg(az: Az) -> None:
    """The blackhole by hand: associate a NIC with an NSG, then take it off again."""
    nic = az("network", "nic", "update", "-g", "shop", "-n", "db-1-nic0",
             "--network-security-group", "web-nsg")
    assert nic["networkSecurityGroup"]["id"].endswith("/networkSecurityGroups/web-nsg")
    cleared = az("network", "nic", "update", "-g", "shop", "-n", "db-1-nic0", "--remove",
                 "networkSecurityGroup")
    assert "networkSecurityGroup" not in cleared


@needs_az
def test_resource_list_by_tag(az: Az) -> None:
    """`--tag` is `$filter=tagName eq 'gameday' and tagValue eq 'enabled'` on `/resources`."""
    listed = az("resource", "list", "--tag", "gameday=enabled")
    assert names(listed) == {name for name, _, enabled, _ in VMS if enabled}
    assert {item["type"] for item in listed} == {"Microsoft.Compute/virtualMachines"}


@needs_az
def test_resource_list_group(az: Az) -> None:
    listed = az("resource", "list", "-g", "shop")
    types = {item["type"] for item in listed}
    assert {"Microsoft.Network/networkSecurityGroups", "Microsoft.Compute/virtualMachines",
            "Microsoft.Network/virtualNetworks", "Microsoft.Network/networkInterfaces"} <= types


# --- the configuration `gameday lab env` exports (not in the count) -----------------------------


@needs_az
def test_prepared_config_is_logged_in_without_az_login(
        emulator: tuple[ResourceManagerEmulator, str], tmp_path: Path) -> None:
    """The directory `write_az_config` writes, with only `az_env`'s variables: az is logged in to
    the lab, its MSAL instance discovery is off, and it lists the lab's VMs."""
    server, ca = emulator
    directory = write_az_config(tmp_path / "azure", server.url, ca)
    variables = az_env(directory)
    az = Az(Path(variables["AZURE_CONFIG_DIR"]), variables["REQUESTS_CA_BUNDLE"])
    account = az("account", "show")
    assert account["user"] == {"name": APP_ID, "type": "servicePrincipal"}
    assert names(az("vm", "list", "-g", "shop")) == {name for name, *_ in VMS}
    assert not (tmp_path / "home" / ".azure").exists()


@needs_az
def test_lab_env_points_the_operators_az_at_the_lab(tmp_path: Path) -> None:
    """After `eval "$(gameday lab env)"`, the operator's own `az vm list` shows the lab's VMs."""
    directory = tmp_path / "lab"
    lab = Lab(directory, fixed_ports=False)
    try:
        lab.up(seed=True)
        # The operator's shell: their own HOME and no Azure settings of ours.
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("AZURE_", "REQUESTS_CA", "CLOUDSDK_"))}
        env.update(GAMEDAY_LAB_DIR=str(directory), HOME=str(tmp_path / "home"))
        gameday = f"{shlex.quote(sys.executable)} -m gameday.cli"
        script = f'eval "$({gameday} lab env)" && {shlex.quote(str(AZ))} vm list --output json'
        done = subprocess.run(["bash", "-c", script], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=180, check=False)
    finally:
        lab.down()
    assert done.returncode == 0, done.stderr
    assert names(json.loads(done.stdout)) == {name for name, *_ in VMS}
    assert not (tmp_path / "home" / ".azure").exists()


# --- the same endpoints without az: SDK and plain HTTP (run in `make test`) ----------------------


@pytest.fixture(scope="module")
def http(emulator: tuple[ResourceManagerEmulator, str]) -> Iterator[httpx.Client]:
    server, ca = emulator
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=ca),
                      timeout=30) as client:
        yield client


def test_metadata_endpoints_make_the_lab_its_own_login_and_audience(http: httpx.Client) -> None:
    cloud = http.get("/metadata/endpoints", params={"api-version": "2022-09-01"}).json()
    base = str(http.base_url).rstrip("/") + "/"
    assert cloud["resourceManager"] == base
    assert cloud["authentication"]["loginEndpoint"] == base
    assert cloud["authentication"]["audiences"] == [base]
    [listed] = http.get("/metadata/endpoints", params={"api-version": "2019-05-01"}).json()
    assert listed["name"] == cloud["name"]


def test_token_endpoint_grants_client_credentials_as_a_jwt(http: httpx.Client) -> None:
    config = http.get(f"/{TENANT}/v2.0/.well-known/openid-configuration").json()
    token_path = httpx.URL(config["token_endpoint"]).path
    answer = http.post(token_path, data={
        "grant_type": "client_credentials", "client_id": APP_ID, "client_secret": "s",
        "scope": "https://lab/.default"})
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    header, claims, _ = answer.json()["access_token"].split(".")
    decoded = json.loads(base64_decode(claims))
    assert decoded["aud"] == "https://lab/" and decoded["tid"] == TENANT
    assert decoded["appid"] == APP_ID and decoded["exp"] > decoded["iat"]
    refused = http.post(token_path, data={"grant_type": "password", "client_id": APP_ID})
    assert refused.status_code == 400 and refused.json()["error"] == "unsupported_grant_type"
    unknown = http.get("/contoso.example/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_tenant"


def base64_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_subscriptions_list_and_get(http: httpx.Client) -> None:
    listed = http.get("/subscriptions", params={"api-version": "2022-12-01"}).json()["value"]
    assert [(s["subscriptionId"], s["tenantId"], s["state"]) for s in listed] == [
        (SUBSCRIPTION, TENANT, "Enabled")]
    one = http.get(f"/subscriptions/{SUBSCRIPTION}", params={"api-version": "2022-12-01"})
    assert one.json()["displayName"] == "gameday-lab"


def test_vm_instance_view_and_power_off_through_the_sdk(
        emulator: tuple[ResourceManagerEmulator, str]) -> None:
    """`expand="instanceView"` carries the power state; `powerOff` answers 202 and the VM reads
    stopping until its operation ends (here: nobody polls, so after `operation_seconds`), then
    stopped; `begin_start` polled to its end brings it back."""
    server, ca = emulator
    compute = ComputeManagementClient(StaticTokenCredential(), SUBSCRIPTION, base_url=server.url,
                                      connection_verify=ca, polling_interval=0)
    with compute:
        def power() -> list[str]:
            vm = compute.virtual_machines.get("shop", "web-1", expand="instanceView")
            assert vm.instance_view is not None
            return [s.code for s in vm.instance_view.statuses if s.code.startswith("PowerState/")]

        assert compute.virtual_machines.get("shop", "web-1").instance_view is None
        assert power() == ["PowerState/running"]
        compute.virtual_machines.begin_power_off("shop", "web-1", polling=False)
        assert power() == ["PowerState/stopping"]
        deadline = time.monotonic() + 10
        while power() != ["PowerState/stopped"]:
            assert time.monotonic() < deadline, "powerOff never completed"
            time.sleep(0.2)
        compute.virtual_machines.begin_start("shop", "web-1").result()
        assert power() == ["PowerState/running"]


def test_resources_list_filters_by_tag_and_refuses_what_it_cannot_parse(http: httpx.Client) -> None:
    path = f"/subscriptions/{SUBSCRIPTION}/resources"
    tagged = http.get(path, params={"api-version": "2024-03-01",
                                    "$filter": "tagName eq 'gameday' and tagValue eq 'enabled'"})
    assert {r["name"] for r in tagged.json()["value"]} == {n for n, _, on, _ in VMS if on}
    nsgs = http.get(path, params={"api-version": "2024-03-01",
                                  "$filter": "resourceType eq 'Microsoft.Network/networkSecurityGroups'"})
    assert {r["type"] for r in nsgs.json()["value"]} == {"Microsoft.Network/networkSecurityGroups"}
    one = http.get(path, params={"api-version": "2024-03-01", "$filter": "name eq 'WEB-NSG' and "
                                 "resourceGroup eq 'shop' and location eq 'East US'"})
    assert [r["name"] for r in one.json()["value"]] == ["web-nsg"]
    bad = http.get(path, params={"api-version": "2024-03-01", "$filter": "startswith(name, 'w')"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilterInQueryString"


def test_a_resource_written_without_tags_has_no_tags_field(http: httpx.Client) -> None:
    """ARM omits `tags` when there are none; the emulator used to answer `tags: {}`."""
    version = {"api-version": "2021-04-01"}
    group = http.put(f"/subscriptions/{SUBSCRIPTION}/resourcegroups/untagged", params=version,
                     json={"location": "eastus"})
    assert group.status_code == 201 and "tags" not in group.json()
    nsg = http.put(f"/subscriptions/{SUBSCRIPTION}/resourceGroups/untagged/providers/"
                   "Microsoft.Network/networkSecurityGroups/plain", params=version,
                   json={"location": "eastus", "properties": {}})
    assert nsg.status_code in (200, 201) and "tags" not in nsg.json()


GRAPH_QUERY = ("Resources | where type =~ 'Microsoft.Compute/virtualMachines' "
               "| where zones has '1' and tags['gameday'] == 'enabled' | project name, resourceGroup, zones")


def test_resource_graph_finds_vms_by_zone_and_tag(http: httpx.Client) -> None:
    path = "/providers/Microsoft.ResourceGraph/resources"
    version = {"api-version": "2022-10-01"}
    answer = http.post(path, params=version, json={"subscriptions": [SUBSCRIPTION],
                                                   "query": GRAPH_QUERY})
    assert answer.status_code == 200, answer.text
    rows = answer.json()["data"]
    assert sorted(row["name"] for row in rows) == sorted(
        name for name, zone, enabled, _ in VMS if zone == "1" and enabled)
    assert all(row == {"name": row["name"], "resourceGroup": "shop", "zones": ["1"]} for row in rows)
    assert answer.json()["totalRecords"] == len(rows)
    bad = http.post(path, params=version, json={"query": "Resources | summarize count() by type"})
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["code"] == "InvalidQuery"


@needs_az
def test_az_rest_resource_graph(az: Az) -> None:
    """`az graph` is an extension the offline lab cannot download; `az rest` sends the same call
    (not in the count)."""
    body = json.dumps({"subscriptions": [SUBSCRIPTION], "query": GRAPH_QUERY})
    answer = az("rest", "--method", "post", "--url",
                "/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01",
                "--body", body)
    assert {row["name"] for row in answer["data"]} == {"web-1", "app-1"}
