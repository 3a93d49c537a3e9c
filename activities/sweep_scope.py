"""Where this worker can sweep, read from its own environment and credentials (no network
call): the `gameday.sweep_scope` activity's answer."""

from __future__ import annotations

import os
from pathlib import Path

from gameday.sweep import SweepScope


def sweep_scope_from_env() -> SweepScope:
    """The regions, projects and subscriptions named in the environment, and each cloud this
    worker has no credentials or emulator endpoint for, with why."""

    def listed(*names: str) -> list[str]:
        for name in names:
            values = [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]
            if values:
                return values
        return []

    regions = listed("GAMEDAY_SWEEP_AWS_REGIONS")
    accounts = listed("GAMEDAY_SWEEP_AWS_ACCOUNTS", "GAMEDAY_ALLOWED_AWS_ACCOUNTS")
    projects = listed("GAMEDAY_SWEEP_GCP_PROJECTS", "GAMEDAY_ALLOWED_GCP_PROJECTS")
    subscriptions = listed("GAMEDAY_SWEEP_AZURE_SUBSCRIPTIONS", "GAMEDAY_ALLOWED_AZURE_SUBSCRIPTIONS")
    unconfigured = {cloud: why for cloud, why in (
        ("aws", _aws_unconfigured()),
        ("gcp", _gcp_unconfigured() or (None if projects else
                                        "no project to sweep (set GAMEDAY_SWEEP_GCP_PROJECTS)")),
        ("azure", _azure_unconfigured() or (None if subscriptions else
                                            "no subscription to sweep (set "
                                            "GAMEDAY_SWEEP_AZURE_SUBSCRIPTIONS)")),
    ) if why}
    return SweepScope(aws_regions=regions or None, aws_accounts=accounts, gcp_projects=projects,
                      azure_subscriptions=subscriptions, unconfigured=unconfigured)


def _aws_unconfigured() -> str | None:
    """None when botocore finds credentials or an endpoint (an emulator) is set."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return None
    import botocore.session

    if botocore.session.Session().get_credentials() is not None:
        return None
    return "no AWS credentials found and AWS_ENDPOINT_URL is not set"


def _gcp_unconfigured() -> str | None:
    """None when an emulator endpoint is set or Application Default Credentials exist; checked
    without network calls (google.auth.default() may wait seconds for a metadata server)."""
    if os.environ.get("GAMEDAY_GCP_ENDPOINT"):
        return None
    named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named:
        return None if Path(named).is_file() else (
            f"GOOGLE_APPLICATION_CREDENTIALS names {named}, which does not exist")
    from google.auth import _cloud_sdk
    from google.auth.compute_engine import _metadata

    if Path(_cloud_sdk.get_application_default_credentials_path()).is_file():
        return None
    if _metadata.detect_gce_residency_linux():
        return None
    return "no Application Default Credentials found and GAMEDAY_GCP_ENDPOINT is not set"


AZURE_CREDENTIAL_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
                              "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "MSI_ENDPOINT")


def _azure_unconfigured() -> str | None:
    """None when an emulator endpoint is set, DefaultAzureCredential has environment or managed
    identity variables to use, or the Azure CLI is logged in."""
    if os.environ.get("GAMEDAY_AZURE_ENDPOINT"):
        return None
    if any(os.environ.get(name) for name in AZURE_CREDENTIAL_VARIABLES):
        return None
    cli_config = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    if (cli_config / "azureProfile.json").is_file():
        return None
    return "no Azure credential found (AZURE_CLIENT_ID, managed identity or `az login`) and " \
        "GAMEDAY_AZURE_ENDPOINT is not set"
