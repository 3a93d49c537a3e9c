"""GCP impersonation per project: which account is impersonated, and how its credentials are
built (the lab's emulator is anonymous, so no token is minted here)."""

from __future__ import annotations

from google.auth import impersonated_credentials
from google.auth.credentials import AnonymousCredentials

from activities.gcp import api
from activities.gcp.impersonation import SCOPES, impersonated, service_account_for
from activities.throttle import calling_as


def test_the_project_is_substituted_in_the_service_account(monkeypatch):
    monkeypatch.delenv("GAMEDAY_GCP_IMPERSONATE", raising=False)
    assert service_account_for("shop-prod") is None
    monkeypatch.setenv("GAMEDAY_GCP_IMPERSONATE", "gameday@{project}.iam.gserviceaccount.com")
    assert service_account_for("shop-prod") == "gameday@shop-prod.iam.gserviceaccount.com"
    assert service_account_for("") is None
    monkeypatch.setenv("GAMEDAY_GCP_IMPERSONATE", "chaos@ops.iam.gserviceaccount.com")
    assert service_account_for("shop-prod") == "chaos@ops.iam.gserviceaccount.com"


def test_impersonated_credentials_act_as_the_account_with_the_cloud_platform_scope():
    made = impersonated("gameday@shop-prod.iam.gserviceaccount.com", AnonymousCredentials())
    assert isinstance(made, impersonated_credentials.Credentials)
    assert made.service_account_email == "gameday@shop-prod.iam.gserviceaccount.com"
    assert made._target_scopes == list(SCOPES)


def test_clients_are_built_per_impersonated_account(monkeypatch):
    monkeypatch.delenv("GAMEDAY_GCP_ENDPOINT", raising=False)
    monkeypatch.setenv("GAMEDAY_GCP_IMPERSONATE", "gameday@{project}.iam.gserviceaccount.com")
    built: list[tuple[str | None, str | None]] = []
    monkeypatch.setattr(api, "_compute", lambda endpoint, account=None: built.append(
        (endpoint, account)))
    with calling_as(account="shop-prod"):
        api.compute_clients()
    monkeypatch.setenv("GAMEDAY_GCP_ENDPOINT", "http://127.0.0.1:1")
    with calling_as(account="shop-prod"):
        api.compute_clients()  # the lab: anonymous, nothing impersonated
    assert built == [(None, "gameday@shop-prod.iam.gserviceaccount.com"),
                     ("http://127.0.0.1:1", None)]
