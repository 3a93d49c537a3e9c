"""Guardrails are pure: the runbook's scopes, the worker's allowlists, size, and its own location."""

from __future__ import annotations

from gameday.guardrails import WorkerSite, refusals
from gameday.plan import Scope
from gameday.runbook import Guardrails

GUARDRAILS = Guardrails(aws_accounts=["123456789012"], gcp_projects=["gameday-lab"],
                        max_resources_per_step=10)
ZONE = Scope(cloud="aws", account="123456789012", region="us-east-1", zone="us-east-1a")


def test_an_allowed_target_passes():
    assert refusals("s", ZONE, GUARDRAILS, 10) == []


def test_an_account_outside_the_guardrails_is_refused():
    other = ZONE.model_copy(update={"account": "999999999999"})
    (reason,) = refusals("s", other, GUARDRAILS)
    assert "999999999999 is not in the runbook's guardrails" in reason


def test_too_many_resources_are_refused():
    (reason,) = refusals("s", ZONE, GUARDRAILS, 11)
    assert "11 resources exceed max_resources_per_step (10)" in reason


def test_the_workers_allowlist_cannot_be_widened_by_a_runbook():
    site = WorkerSite.from_env({"GAMEDAY_ALLOWED_AWS_ACCOUNTS": "111111111111, 222222222222"})
    (reason,) = refusals("s", ZONE, GUARDRAILS, 1, site)
    assert "GAMEDAY_ALLOWED_AWS_ACCOUNTS" in reason


def test_a_target_containing_the_worker_is_refused():
    site = WorkerSite.from_env({"GAMEDAY_WORKER_CLOUD": "aws", "GAMEDAY_WORKER_REGION": "us-east-1",
                                "GAMEDAY_WORKER_ZONE": "us-east-1a"})
    (reason,) = refusals("s", ZONE, GUARDRAILS, 1, site)
    assert "cuts off the hands that restore" in reason
    elsewhere = ZONE.model_copy(update={"zone": "us-east-1b"})
    assert refusals("s", elsewhere, GUARDRAILS, 1, site) == []


def test_an_unknown_worker_zone_in_the_target_region_is_refused():
    site = WorkerSite.from_env({"GAMEDAY_WORKER_CLOUD": "aws", "GAMEDAY_WORKER_REGION": "us-east-1"})
    assert refusals("s", ZONE, GUARDRAILS, 1, site)
