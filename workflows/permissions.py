"""The plan workflow's live permission check (contract §11): each cloud's `check_permissions`
activity, on that cloud's queue, with the plan's resolved steps on that cloud."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from gameday.permissions import PermissionReport, gathered
    from gameday.plan import PermissionCheck, PlanResult, ResolvedStep, Resource
    from workflows.errors import describe
    from workflows.routing import HEARTBEAT, cloud_queue

AZURE_GROUP = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+", re.IGNORECASE)


def tried_on(step: ResolvedStep) -> ResolvedStep:
    """The step with the resources a check looks at: its first, and one of each other resource
    group and kind (AWS tries each call on a step's first resource; Azure asks per resource group,
    and per endpoint type for Traffic Manager). A step of 1,000 subnets sends one, not 1,000."""
    kept: dict[tuple[str, str, str], Resource] = {}
    for resource in step.resources:
        group = AZURE_GROUP.match(resource.id)
        kept.setdefault((group.group(0).lower() if group else "", resource.kind,
                         resource.detail.get("type", "")), resource)
    return step.model_copy(update={"resources": list(kept.values())})


CHECK_RETRY = RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1),
                          non_retryable_error_types=["Refused", "UserError"])


async def check_permissions(result: PlanResult) -> None:
    """Fill the plan's `missing_permissions` and `unchecked_permissions`; a check that fails
    becomes a problem of the plan, in one sentence."""
    by_cloud: dict[str, list[ResolvedStep]] = {}
    for step in result.steps:
        by_cloud.setdefault(step.scope.cloud, []).append(tried_on(step))
    clouds = sorted(by_cloud)
    reports = await asyncio.gather(*(workflow.execute_activity(
        f"{cloud}.check_permissions", PermissionCheck(steps=by_cloud[cloud]),
        task_queue=cloud_queue(cloud), result_type=PermissionReport,
        start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=HEARTBEAT,
        retry_policy=CHECK_RETRY, summary=f"check the permissions of the plan on {cloud}")
        for cloud in clouds), return_exceptions=True)
    for cloud, report in zip(clouds, reports, strict=True):
        if isinstance(report, PermissionReport):
            result.missing_permissions = gathered(result.missing_permissions + report.missing)
            result.unchecked_permissions = gathered(result.unchecked_permissions
                                                    + report.unchecked)
        elif isinstance(report, ActivityError):
            result.problems.append(f"{cloud}: the permission check failed: {describe(report)}")
        elif isinstance(report, BaseException):
            raise report
