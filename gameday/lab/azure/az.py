"""A private Azure CLI configuration directory (`AZURE_CONFIG_DIR`), already logged in to the lab.

With `AZURE_CONFIG_DIR` set to the directory `write_az_config` prepares and `REQUESTS_CA_BUNDLE`
set to its CA bundle (`az_env` gives both), the operator's own `az vm list` talks to the lab's ARM
emulator: the custom cloud `gameday-lab` is registered with the lab's endpoints (what
`az cloud register --endpoint-resource-manager <lab>` discovers from `/metadata/endpoints`) and
active, the lab's service principal is logged in (az fetches its tokens from the lab's token
endpoint when it needs them), MSAL's instance discovery (a call to login.microsoftonline.com) and
telemetry are off. Nothing is read from or written to the operator's own `~/.azure`.

The CA bundle is the system's trusted roots plus the lab's CA, so that other tools in the same
shell that honour `REQUESTS_CA_BUNDLE` still reach the internet. No `az` needs to be installed to
prepare it: the files are the ones `az cloud register`, `az cloud set` and
`az login --service-principal` write (azure-cli 2.91), checked by tests/lab/test_az_conformance.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import certifi

from gameday.lab.azure.identity import LAB_SUBSCRIPTION, LAB_TENANT

LAB_CLOUD_NAME = "gameday-lab"
LAB_APP_ID = "7a11ab00-0000-4000-8000-0000000000a2"
LAB_APP_SECRET = "gameday-lab"


def cloud_endpoints(endpoint: str) -> dict[str, str]:
    """The `clouds.config` entries of the lab's cloud: every endpoint is the emulator itself."""
    base = endpoint.rstrip("/")
    entries = {f"endpoint_{name}": f"{base}/" for name in (
        "active_directory", "active_directory_data_lake_resource_id",
        "active_directory_graph_resource_id", "active_directory_resource_id",
        "batch_resource_id", "gallery", "management", "media_resource_id",
        "microsoft_graph_resource_id", "portal", "sql_management")}
    entries["endpoint_resource_manager"] = base
    entries.update(suffix_acr_login_server_endpoint=".azurecr.gameday.lab",
                   suffix_keyvault_dns=".vault.gameday.lab",
                   suffix_sql_server_hostname=".database.gameday.lab",
                   suffix_storage_endpoint="core.gameday.lab",
                   subscription=LAB_SUBSCRIPTION)
    return entries


def _ini(sections: dict[str, dict[str, str]]) -> str:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def write_az_config(directory: Path, endpoint: str, ca_bundle: str) -> Path:
    """Make `directory` an Azure CLI configuration directory logged in to the lab at `endpoint`
    (whose certificate `ca_bundle` signs); return `directory` (the `AZURE_CONFIG_DIR`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config").write_text(_ini({
        "cloud": {"name": LAB_CLOUD_NAME},
        "core": {"instance_discovery": "false", "collect_telemetry": "no",
                 "survey_message": "no"},
    }))
    (directory / "clouds.config").write_text(_ini({LAB_CLOUD_NAME: cloud_endpoints(endpoint)}))
    profile = {"subscriptions": [{
        "id": LAB_SUBSCRIPTION, "name": "gameday-lab", "state": "Enabled",
        "user": {"name": LAB_APP_ID, "type": "servicePrincipal"}, "isDefault": True,
        "tenantId": LAB_TENANT, "environmentName": LAB_CLOUD_NAME, "homeTenantId": LAB_TENANT,
        "managedByTenants": []}]}
    (directory / "azureProfile.json").write_text(json.dumps(profile))
    secrets = directory / "service_principal_entries.json"
    secrets.write_text(json.dumps([{"client_id": LAB_APP_ID, "tenant": LAB_TENANT,
                                    "client_secret": LAB_APP_SECRET}]))
    secrets.chmod(0o600)
    bundle = directory / "ca-bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + Path(ca_bundle).read_text())
    return directory


def az_env(directory: Path) -> dict[str, str]:
    """The variables that point az at a directory `write_az_config` prepared."""
    return {"AZURE_CONFIG_DIR": str(directory),
            "REQUESTS_CA_BUNDLE": str(directory / "ca-bundle.pem")}


def login_commands(endpoint: str) -> list[str]:
    """What an operator types to do the same by hand, in a configuration of their own."""
    return [
        f"az cloud register --name {LAB_CLOUD_NAME} --endpoint-resource-manager {endpoint.rstrip('/')}",
        f"az cloud set --name {LAB_CLOUD_NAME}",
        "az config set core.instance_discovery=false",
        f"az login --service-principal --username {LAB_APP_ID} --password {LAB_APP_SECRET} "
        f"--tenant {LAB_TENANT}",
    ]
