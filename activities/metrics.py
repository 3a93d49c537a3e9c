"""OpenTelemetry metrics of the worker, recorded in one place: an activity interceptor.

- `gameday.faults.active` (up/down counter): +1 when a fault's first apply attempt starts (a
  half-applied fault is in effect too), -1 when its restore succeeds;
- `gameday.restore.duration` (histogram, s): how long each restore activity took;
- `gameday.probe.checks` (counter): steady-state checks, by probe and verdict;
- `gameday.cloud.throttles` (counter): throttle answers of the clouds, by cloud and API category
  (recorded by `activities.throttle`, which waits them out);
- `gameday.cloud.token_wait` (histogram, s): how long calls waited for a token, by cloud, API
  category and priority (`restore` or `apply`).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import metrics
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

meter = metrics.get_meter("gameday.worker")
FAULTS_ACTIVE = meter.create_up_down_counter("gameday.faults.active", unit="{fault}",
                                             description="faults applied and not yet restored")
RESTORE_DURATION = meter.create_histogram("gameday.restore.duration", unit="s",
                                          description="time a restore activity took")
PROBE_CHECKS = meter.create_counter("gameday.probe.checks", unit="{check}",
                                    description="steady-state checks by probe and verdict")
THROTTLES = meter.create_counter("gameday.cloud.throttles", unit="{answer}",
                                 description="throttle answers of the clouds' APIs")
TOKEN_WAIT = meter.create_histogram("gameday.cloud.token_wait", unit="s",
                                    description="time a cloud call waited for its token")


class GameDayMetrics(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Recorder(next)


class _Recorder(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        name = info.activity_type
        cloud, _, operation = name.partition(".")
        attributes: dict[str, str] = {}
        if operation.startswith(("apply_", "restore_")) and input.args:
            checkpoint = getattr(input.args[0], "checkpoint", None)
            attributes = {"cloud.provider": cloud, "gameday.action": operation.split("_", 1)[1]}
            if checkpoint is not None:
                attributes["cloud.region"] = checkpoint.scope.region
            if operation.startswith("apply_") and info.attempt == 1:
                FAULTS_ACTIVE.add(1, attributes)
        started = time.monotonic()
        result = await self.next.execute_activity(input)
        if operation.startswith("restore_") and attributes:
            FAULTS_ACTIVE.add(-1, attributes)
            RESTORE_DURATION.record(time.monotonic() - started, attributes)
        elif name == "probe.check":
            for probe in result.results:
                PROBE_CHECKS.add(1, {"gameday.probe": probe.name, "gameday.ok": probe.ok})
        elif name == "probe.watch":
            PROBE_CHECKS.add(result.checks - result.failed_checks, {"gameday.ok": True})
            PROBE_CHECKS.add(result.failed_checks, {"gameday.ok": False})
        return result
