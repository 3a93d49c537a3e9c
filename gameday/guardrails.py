"""Guardrails: what a GameDay may touch, checked before anything changes and again in each activity.

Pure functions over the runbook, the resolved resources and where the worker runs. The workflow
calls them on the plan; each mutating activity calls them again with the worker's own environment,
so a bug in the workflow cannot widen the blast radius.
"""

from __future__ import annotations

import os
import re
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
_AWS_ZONE_ID = re.compile(r"[a-z]{2,}[0-9]+(-[a-z]+[0-9]+)?-az[0-9]+")
"""An AWS zone ID (`use1-az6`), as `gameday.targets` accepts one."""


@dataclass(frozen=True)
class WorkerSite:
    """Where the worker itself runs (contract §2) and what its operator allows, from its env."""

    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    """The worker's zone by name, as its own account calls it (`us-east-1a`)."""
    allowed: Mapping[str, frozenset[str]] | None = None
    zone_id: str | None = None
    """The worker's physical zone (an AWS zone ID like `use1-az6`), the same in every account:
    `GAMEDAY_WORKER_ZONE_ID`, or `GAMEDAY_WORKER_ZONE` when that is a zone ID."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSite:
        env = os.environ if env is None else env
        allowed = {
            cloud: frozenset(v.strip().lower() for v in env[name].split(",") if v.strip())
            for cloud, name in _ALLOWLIST_VARIABLES.items()
            if env.get(name, "").strip()
        }
        zone = env.get("GAMEDAY_WORKER_ZONE", "").strip() or None
        zone_id = env.get("GAMEDAY_WORKER_ZONE_ID", "").strip() or None
        if zone and zone_id is None and _AWS_ZONE_ID.fullmatch(zone):
            zone, zone_id = None, zone
        return cls(
            cloud=env.get("GAMEDAY_WORKER_CLOUD") or None,
            region=env.get("GAMEDAY_WORKER_REGION") or None,
            zone=zone,
            allowed=allowed or None,
            zone_id=zone_id,
        )

    @property
    def known_zone(self) -> bool:
        return self.zone is not None or self.zone_id is not None

    def shown_zone(self) -> str:
        if self.zone and self.zone_id:
            return f"{self.zone} ({self.zone_id})"
        return self.zone or self.zone_id or ""


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
    if (site and site.cloud == cloud and site.region and where.region == site.region
            and _may_hold_the_worker(where, site)):
        own = f"zone {site.shown_zone()}" if site.known_zone else f"region {site.region}"
        reasons.append(
            f"step {step_id}: the target contains the worker's own {own}; gameday never "
            "cuts off the hands that restore"
        )
    return reasons


def _may_hold_the_worker(where: Scope, site: WorkerSite) -> bool:
    """Whether a target in the worker's region may be the worker's zone: by physical zone when
    both are known (a zone's name means another zone in each AWS account), else by name; a
    target or a worker without a zone, or two zones that cannot be compared, may be."""
    if (where.zone is None and where.zone_id is None) or not site.known_zone:
        return True
    if where.zone_id and site.zone_id:
        return where.zone_id == site.zone_id
    if where.zone and site.zone:
        return where.zone == site.zone
    return True
