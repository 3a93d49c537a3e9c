"""Impersonation per project: `GAMEDAY_GCP_IMPERSONATE` names the service account the worker acts
as in a project (`{project}` is substituted, e.g. `gameday@{project}.iam.gserviceaccount.com`).

Promised: the worker's own credentials (Application Default Credentials) only mint short-lived
tokens of that account (`iam.serviceAccounts.getAccessToken`, google-auth's impersonated
credentials, refreshed by google-auth before they expire); every call for a project is made as its
account: its faults', its sweep's (Compute Engine and Cloud SQL) and `gameday plan`'s permission
check. With `GAMEDAY_GCP_ENDPOINT` (the lab) calls stay anonymous and nothing is impersonated.
"""

from __future__ import annotations

import os

import google.auth
from google.auth import impersonated_credentials
from google.auth.credentials import Credentials

IMPERSONATE_VARIABLE = "GAMEDAY_GCP_IMPERSONATE"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
LIFETIME = 3600


def service_account_for(project: str) -> str | None:
    """The service account to act as in `project`, or None (the worker's own credentials)."""
    template = os.environ.get(IMPERSONATE_VARIABLE, "").strip()
    if not template or not project:
        return None
    return template.replace("{project}", project)


def impersonated(service_account: str, source: Credentials | None = None) -> Credentials:
    """Credentials of `service_account`, minted from `source` (default: the worker's ADC)."""
    if source is None:
        source, _ = google.auth.default(scopes=list(SCOPES))
    return impersonated_credentials.Credentials(
        source_credentials=source, target_principal=service_account,
        target_scopes=list(SCOPES), lifetime=LIFETIME)


def project_credentials(service_account: str | None) -> Credentials:
    """The credentials of a project's calls on Google: its service account's when it has one
    (`service_account_for`), else the worker's own Application Default Credentials."""
    if service_account:
        return impersonated(service_account)
    credentials, _ = google.auth.default(scopes=list(SCOPES))
    return credentials
