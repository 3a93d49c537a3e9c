"""Steady-state probes: is the system still doing its job while gameday breaks things?

`probe.check` runs every probe once (the baseline before any fault, and the recovery check after).
`probe.watch` keeps checking every `interval` inside one activity, heartbeating its latest results,
and returns when `tolerance` consecutive checks failed or its window ends; so a GameDay that lasts
hours adds a handful of history events, not one per check. Its report still carries every check's
results (time, value, latency), up to `MAX_WATCH_RESULTS` per window, so the report can show when
a fault was detected.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
from temporalio import activity

from activities.base import one_sentence_failures
from gameday.probing import (  # noqa: F401  (re-exported: the probe activities' payloads)
    MAX_VALUE_CHARS,
    MAX_WATCH_RESULTS,
    CheckReport,
    CheckRequest,
    WatchReport,
    WatchRequest,
)
from gameday.runbook import Probe
from gameday.status import ProbeResult, SteadyStateNow


async def _http(probe: Probe, client: httpx.AsyncClient) -> tuple[bool, str]:
    spec = probe.http
    assert spec is not None
    started = time.perf_counter()
    response = await client.get(spec.url, timeout=spec.timeout.total_seconds())
    latency = time.perf_counter() - started
    if response.status_code != spec.expect_status:
        return False, f"HTTP {response.status_code}, expected {spec.expect_status}"
    if spec.max_latency is not None and latency > spec.max_latency.total_seconds():
        return False, f"HTTP {response.status_code} in {latency * 1000:.0f} ms, over the ceiling"
    if spec.body_contains is not None and spec.body_contains not in response.text:
        return False, f"HTTP {response.status_code} without {spec.body_contains!r} in the body"
    return True, f"HTTP {response.status_code}"


async def _tcp(probe: Probe) -> tuple[bool, str]:
    assert probe.tcp is not None
    _, writer = await asyncio.wait_for(asyncio.open_connection(probe.tcp.host, probe.tcp.port),
                                       probe.tcp.timeout.total_seconds())
    writer.close()
    return True, "connected"


def _alarm_state(name: str, region: str) -> str:
    import boto3
    from botocore.config import Config

    cloudwatch = boto3.client("cloudwatch", region_name=region,
                              config=Config(retries={"total_max_attempts": 1}, connect_timeout=3,
                                            read_timeout=5))
    alarms = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return alarms[0]["StateValue"] if alarms else "MISSING"


async def _cloudwatch_alarm(probe: Probe) -> tuple[bool, str]:
    spec = probe.cloudwatch_alarm
    assert spec is not None
    state = await asyncio.to_thread(_alarm_state, spec.alarm_name, spec.region)
    return state in ("OK", "INSUFFICIENT_DATA"), f"alarm {spec.alarm_name} is {state}"


async def _prometheus(probe: Probe, client: httpx.AsyncClient) -> tuple[bool, str]:
    spec = probe.prometheus
    assert spec is not None
    response = await client.get(f"{spec.url.rstrip('/')}/api/v1/query", params={"query": spec.query},
                                timeout=spec.timeout.total_seconds())
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        return False, f"query failed: HTTP {response.status_code} {body.get('error', '')}".strip()
    data = body["data"]
    results = data["result"] if data["resultType"] == "vector" else [{"value": data["result"]}]
    if len(results) != 1:
        return False, f"the query returned {len(results)} series, not one"
    value = float(results[0]["value"][1])
    ok = (spec.below is None or value < spec.below) and (spec.above is None or value > spec.above)
    bounds = " and ".join(f"{word} {limit:g}" for word, limit in (("below", spec.below),
                                                                  ("above", spec.above)) if limit is not None)
    return ok, f"{value:g} ({'' if ok else 'not '}{bounds})"


async def _dispatch(probe: Probe, client: httpx.AsyncClient) -> tuple[bool, str]:
    if probe.http:
        return await _http(probe, client)
    if probe.tcp:
        return await _tcp(probe)
    if probe.cloudwatch_alarm:
        return await _cloudwatch_alarm(probe)
    return await _prometheus(probe, client)


async def run_probe(probe: Probe, client: httpx.AsyncClient) -> ProbeResult:
    started = time.perf_counter()
    try:
        ok, value = await _dispatch(probe, client)
    except (httpx.HTTPError, OSError, TimeoutError, ValueError, KeyError) as exc:
        ok, value = False, f"{type(exc).__name__}: {exc}".rstrip(": ")
    except Exception as exc:  # botocore's errors: a probe that cannot ask fails its check
        ok, value = False, f"{type(exc).__name__}: {exc}".rstrip(": ")
    latency = (time.perf_counter() - started) * 1000
    if len(value) > MAX_VALUE_CHARS:
        value = value[:MAX_VALUE_CHARS - 3] + "..."
    return ProbeResult(name=probe.name, ok=ok, at=datetime.now(UTC), latency_ms=round(latency, 1),
                       value=value)


async def check_all(probes: list[Probe]) -> CheckReport:
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        results = await asyncio.gather(*(run_probe(p, client) for p in probes))
    return CheckReport(results=list(results))


@activity.defn(name="probe.check")
@one_sentence_failures
async def check(request: CheckRequest) -> CheckReport:
    return await check_all(request.probes)


@activity.defn(name="probe.watch")
@one_sentence_failures
async def watch(request: WatchRequest) -> WatchReport:
    report = WatchReport(checks=0, failed_checks=0, consecutive_failures=request.failed_before,
                         breached=False, changes=[])
    deadline = time.monotonic() + request.window.total_seconds()
    previous: bool | None = None
    known = request.known_ok
    while True:
        current = await check_all(request.probes)
        report.checks += 1
        if current.ok:
            report.consecutive_failures = 0
        else:
            report.failed_checks += 1
            report.consecutive_failures += 1
        report.record(current)
        if current.ok != previous:
            report.changes.append(current)
        previous = current.ok
        now = seen(current, report.consecutive_failures)
        activity.heartbeat({**report.model_dump(mode="json", exclude={"changes", "results"}),
                            "latest": now.model_dump(mode="json")})
        if not current.ok or current.ok != known:
            await tell_the_run(now)
            known = current.ok
        if report.consecutive_failures >= request.tolerance:
            report.breached = True
            if report.changes[-1] is not current:
                report.changes.append(current)
            return report
        if time.monotonic() + request.interval.total_seconds() > deadline:
            return report
        await asyncio.sleep(request.interval.total_seconds())


SEEN_SIGNAL = "steady_state_seen"
"""The signal a watch sends its GameDay with a `SteadyStateNow` (`WatchRequest.known_ok`)."""
SIGNAL_TIMEOUT = 5.0


def seen(check: CheckReport, consecutive_failures: int) -> SteadyStateNow:
    return SteadyStateNow(at=max(r.at for r in check.results), ok=check.ok,
                          consecutive_failures=consecutive_failures,
                          failing=check.failures()[:2 * MAX_VALUE_CHARS])


async def tell_the_run(now: SteadyStateNow) -> None:
    """Signal the GameDay this watch runs for, best effort: its board shows the check at once; if
    the signal is lost, the board catches up at the window's end and nothing else changes."""
    info = activity.info()
    if not info.workflow_id:
        return
    try:
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        await asyncio.wait_for(handle.signal(SEEN_SIGNAL, now), SIGNAL_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 — never let the board's news stop the watch
        activity.logger.warning("could not tell %s of the steady state: %s", info.workflow_id, exc)


def probe_activities() -> list[object]:
    return [check, watch]
