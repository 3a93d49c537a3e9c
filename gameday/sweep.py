"""What the sweeper finds and reports: gameday artifacts left behind by runs that are over."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

SweepCloud = Literal["aws", "gcp", "azure"]
SWEEP_CLOUDS: tuple[SweepCloud, ...] = ("aws", "gcp", "azure")


class Leftover(BaseModel):
    """One gameday artifact in a cloud, found by its tags, labels or name."""

    cloud: str
    kind: str
    id: str
    run_id: str
    step_id: str
    location: str
    detail: dict[str, str] = {}
    run_state: str | None = None
    """How its run stands in Temporal: running, completed, terminated, missing..."""


class SweepScope(BaseModel):
    """Where the worker looks, from its environment (a cloud with nothing configured is skipped)."""

    aws_regions: list[str] | None = None
    """None: every region the account has enabled."""
    gcp_projects: list[str] = []
    azure_subscriptions: list[str] = []
    unconfigured: dict[str, str] = {}
    """Cloud → why this worker cannot sweep it (no credentials, no emulator endpoint, nothing to
    sweep); every cloud not named here is configured."""

    @classmethod
    def from_env(cls) -> SweepScope:
        def listed(*names: str) -> list[str]:
            for name in names:
                values = [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]
                if values:
                    return values
            return []

        regions = listed("GAMEDAY_SWEEP_AWS_REGIONS")
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
        return cls(aws_regions=regions or None, gcp_projects=projects,
                   azure_subscriptions=subscriptions, unconfigured=unconfigured)

    def clouds_to_sweep(self, asked: list[SweepCloud]) -> tuple[list[str], dict[str, str]]:
        """The clouds a sweep visits, and those it skips with why: the clouds asked for, all of
        them (asking for a cloud is asking to hear why it fails); else every configured cloud."""
        if asked:
            return [cloud for cloud in SWEEP_CLOUDS if cloud in asked], {}
        return ([cloud for cloud in SWEEP_CLOUDS if cloud not in self.unconfigured],
                {cloud: self.unconfigured[cloud] for cloud in SWEEP_CLOUDS if cloud in self.unconfigured})


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


class SweepInput(BaseModel):
    restore: bool = False
    clouds: list[SweepCloud] = []
    """The clouds to sweep; empty: every cloud the worker has configured."""


class SweepReport(BaseModel):
    leftovers: list[Leftover] = []
    """Artifacts of runs that are no longer running: the sweep's business."""
    in_use: list[Leftover] = []
    """Artifacts of runs still running: left alone."""
    restored: list[str] = []
    errors: list[str] = []
    skipped: dict[str, str] = {}
    """Cloud → why it was not swept (not configured on the worker)."""
