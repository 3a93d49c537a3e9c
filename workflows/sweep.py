"""GameDaySweepWorkflow: find gameday artifacts in every configured cloud and, when asked, undo
those whose run is no longer running, from their tags alone."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from gameday.plan import FaultResult
    from gameday.sweep import Leftover, SweepInput, SweepReport, SweepScope
    from workflows.errors import describe
    from workflows.routing import cloud_queue

READ_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=["UserError", "Refused"])
SWEEP_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=20))
PER_AWS_ACCOUNT = "sweep-per-aws-account"
"""Since this patch each AWS account is searched by an activity of its own: an account whose
role cannot be assumed is one error of the sweep, and every other account is still swept."""


@workflow.defn(name="GameDaySweepWorkflow")
class GameDaySweepWorkflow:
    @workflow.run
    async def run(self, input: SweepInput) -> SweepReport:
        report = SweepReport()
        scope = await workflow.execute_local_activity(
            "gameday.sweep_scope", result_type=SweepScope,
            start_to_close_timeout=timedelta(seconds=10))
        found: list[Leftover] = []
        clouds, report.skipped = scope.clouds_to_sweep(input.clouds)
        per_account = workflow.patched(PER_AWS_ACCOUNT)
        for cloud in clouds:
            parts = scope.by_aws_account() if cloud == "aws" and per_account else [scope]
            for part in parts:
                where = cloud if part.aws_own_account else f"aws account {part.aws_accounts[0]}"
                try:
                    found += await workflow.execute_activity(
                        f"{cloud}.find_leftovers", part, result_type=list[Leftover],
                        task_queue=cloud_queue(cloud),
                        start_to_close_timeout=timedelta(minutes=10), retry_policy=READ_RETRY,
                        summary=f"find gameday artifacts in {where}")
                except ActivityError as error:
                    report.errors.append(f"{cloud}: {describe(error)}")
        runs = sorted({leftover.run_id for leftover in found})
        states = await asyncio.gather(*(workflow.execute_activity(
            "gameday.run_state", run, result_type=str, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=READ_RETRY) for run in runs))
        state_of = dict(zip(runs, states, strict=True))
        for leftover in found:
            leftover.run_state = state_of[leftover.run_id]
            (report.in_use if leftover.run_state == "running" else report.leftovers).append(leftover)
        if input.restore:
            for leftover in report.leftovers:
                try:
                    await workflow.execute_activity(
                        f"{leftover.cloud}.sweep_leftover", leftover, result_type=FaultResult,
                        task_queue=cloud_queue(leftover.cloud),
                        start_to_close_timeout=timedelta(minutes=10),
                        heartbeat_timeout=timedelta(seconds=30), retry_policy=SWEEP_RETRY,
                        summary=f"undo {leftover.kind} {leftover.id} of {leftover.run_id}")
                    report.restored.append(leftover.id)
                except ActivityError as error:
                    report.errors.append(f"{leftover.cloud} {leftover.id}: {describe(error)}")
        return report
