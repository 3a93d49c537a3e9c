"""Guardrails: what a GameDay may touch, checked before anything changes and again in each activity.

Pure functions over the runbook, the resolved resources and where the worker runs. The workflow
calls them on the plan; each mutating activity calls them again with the worker's own environment,
so a bug in the workflow cannot widen the blast radius.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gameday.plan import Scope
from gameday.runbook import Guardrails

_ALLOWLIST_VARIABLES = {
    "aws": "GAMEDAY_ALLOWED_AWS_ACCOUNTS",
    "gcp": "GAMEDAY_ALLOWED_GCP_PROJECTS",
    "azure": "GAMEDAY_ALLOWED_AZURE_SUBSCRIPTIONS",
}
_SCOPE_NAMES = {"aws": "account", "gcp": "project", "azure": "subscription"}


@dataclass(frozen=True)
class WorkerSite:
    """Where the worker itself runs (contract §2) and what its operator allows, from its env."""

    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    allowed: Mapping[str, frozenset[str]] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSite:
        env = os.environ if env is None else env
        allowed = {
            cloud: frozenset(v.strip().lower() for v in env[name].split(",") if v.strip())
            for cloud, name in _ALLOWLIST_VARIABLES.items()
            if env.get(name, "").strip()
        }
        return cls(
            cloud=env.get("GAMEDAY_WORKER_CLOUD") or None,
            region=env.get("GAMEDAY_WORKER_REGION") or None,
            zone=env.get("GAMEDAY_WORKER_ZONE") or None,
            allowed=allowed or None,
        )


def _allowed_scopes(cloud: str, guardrails: Guardrails) -> list[str]:
    return {
        "aws": guardrails.aws_accounts,
        "gcp": guardrails.gcp_projects,
        "azure": guardrails.azure_subscriptions,
    }[cloud]


def refusals(
    step_id: str,
    where: Scope,
    guardrails: Guardrails,
    resource_count: int | None = None,
    site: WorkerSite | None = None,
) -> list[str]:
    """Every reason to refuse this step, each one sentence; empty when it may go ahead."""
    reasons: list[str] = []
    cloud = where.cloud
    scope = where.account
    scope_name = _SCOPE_NAMES[cloud]
    allowed = [s.lower() for s in _allowed_scopes(cloud, guardrails)]
    if scope.lower() not in allowed:
        listed = ", ".join(allowed) or "none"
        reasons.append(
            f"step {step_id}: {cloud} {scope_name} {scope} is not in the runbook's guardrails "
            f"({cloud}_{scope_name}s: {listed})"
        )
    if site and site.allowed and cloud in site.allowed and scope.lower() not in site.allowed[cloud]:
        reasons.append(
            f"step {step_id}: {cloud} {scope_name} {scope} is not allowed by this worker "
            f"({_ALLOWLIST_VARIABLES[cloud]})"
        )
    if resource_count is not None and resource_count > guardrails.max_resources_per_step:
        reasons.append(
            f"step {step_id}: {resource_count} resources exceed max_resources_per_step "
            f"({guardrails.max_resources_per_step})"
        )
    if site and site.cloud == cloud and site.region:
        zone, region = where.zone, where.region
        if region == site.region and (zone is None or site.zone is None or zone == site.zone):
            own = f"zone {site.zone}" if site.zone else f"region {site.region}"
            reasons.append(
                f"step {step_id}: the target contains the worker's own {own}; gameday never "
                "cuts off the hands that restore"
            )
    return reasons
