"""`python -m bench.run --realistic --n 100 1000`: GameDays against the clouds' rate limits.

Run by hand, never in CI. For each N: a fresh lab, the topology of `bench.topology` built with the
limits off, then the lab's realistic mode on (`gameday.lab.realistic`: EC2's, Compute Engine's and ARM's
documented buckets, 100 ms per mutation, 40 ms per read) and

- one GameDay blackholing the zone in all three clouds, approved, then aborted once everything is
  injected. Per cloud: inject (approval → the step's `injected` event) and restore
  (`abort_requested` → the step's `restored` event), each as a ratio to the bound of the calls
  that phase made: the slowest bucket's (calls served − burst) / refill, from the endpoint's own
  counters (`GET /_emulator/limits`), and the throttle answers. The buckets are refilled before the
  abort (as a hold longer than burst / refill would), so each phase starts from full buckets;
  a phase whose calls fit in the burst has no bound ("within burst");
- `--repeats` GameDays aborted while the AWS inject saturates its bucket (as soon as the proxy
  has answered a throttle, or served a burst of mutations; at an N whose AWS inject fits in the
  burst, once it is injected, marked `saturated: false`): abort signal → each cloud's first API
  call after its restore activity started (the call logs' arrival times; the history's events).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import statistics
import tempfile
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import topology as topo
from bench.run import CLOUDS, _wait, bench_runbook, machine, p95
from gameday.lab.realistic import RealisticConfig

ENDPOINTS = {"aws": "AWS_ENDPOINT_URL", "gcp": "GAMEDAY_GCP_ENDPOINT",
             "azure": "GAMEDAY_AZURE_ENDPOINT"}
SECTION = "## Realistic mode: against the clouds' rate limits (issue 20)"


def admin(env: dict[str, str], cloud: str, method: str, action: str) -> Any:
    context = ssl.create_default_context(cafile=env["GAMEDAY_AZURE_CA_BUNDLE"])
    request = urllib.request.Request(f"{env[ENDPOINTS[cloud]]}/_emulator/{action}", method=method)
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        return json.loads(answer.read() or b"{}")


def bound(report: dict[str, Any]) -> tuple[float, int, int]:
    """(seconds the slowest bucket needs for the calls served, calls served, throttles)."""
    slowest, served = 0.0, 0
    for entry in report["per_bucket"]:
        bucket = report["buckets"].get(entry["category"])
        served += entry["served"]
        if bucket:
            slowest = max(slowest, max(0.0, entry["served"] - bucket["burst"]) / bucket["refill"])
    return slowest, served, report["throttled_total"]


REFILL_HOLD = 60.0
"""Seconds in which every bucket refills from empty (the longest burst / refill: Compute Engine's
1,500 / 25): both sides of a phase start with full buckets, as they would after a real hold."""


def _is_read(call: dict[str, Any]) -> bool:
    """A call that changes nothing: EC2 `Describe*`, or an HTTP GET (Compute Engine, ARM)."""
    return str(call.get("key", "")).startswith("Describe") or call.get("method") == "GET"


def _step_cloud(step: str) -> str:
    return step.rsplit("-", 1)[-1]


async def _start_realistic(client: Any, lab: Any, env: dict[str, str], t: topo.Topology, kind: str,
                           clear: str, timeout: float) -> Any:
    """A bench GameDay under the realistic mode, approved once the endpoints' `clear` (their
    `limits` counters or `calls` log) were reset, so its figures count only what it does."""
    from gameday.status import Approve, GameDayInput
    from workflows.gameday import GameDayWorkflow

    lab.set_realistic(RealisticConfig(enabled=True))
    handle = await client.start_workflow(
        GameDayWorkflow.run, GameDayInput(runbook=bench_runbook(t, "3h"), source="bench",
                                          started_by="bench", watchdog_poll=timedelta(seconds=5)),
        id=f"bench-{kind}-n{t.n}-{uuid.uuid4().hex[:8]}", task_queue=env["GAMEDAY_TASK_QUEUE"])
    await _wait(handle, lambda s: s.phase == "awaiting_approval", timeout, "the approval gate")
    await asyncio.sleep(REFILL_HOLD)  # the worker's buckets refill after the previous GameDay
    for cloud in CLOUDS:
        admin(env, cloud, "DELETE", clear)
    await handle.signal(GameDayWorkflow.approve, Approve(approver="ic@example.com"))
    return handle


async def full_run(client: Any, lab: Any, env: dict[str, str], t: topo.Topology, timeout: float
                   ) -> dict[str, Any]:
    from gameday.status import Abort
    from workflows.gameday import GameDayWorkflow

    handle = await _start_realistic(client, lab, env, t, "realistic", "limits", timeout)
    await _wait(handle, lambda s: sum(e.kind == "injected" for e in s.events) == 3, timeout,
                "all three faults injected")
    inject_reports = {cloud: admin(env, cloud, "GET", "limits") for cloud in CLOUDS}
    await asyncio.sleep(REFILL_HOLD)  # a hold: the worker's buckets and the clouds' refill alike
    lab.set_realistic(RealisticConfig(enabled=True))
    await handle.signal(GameDayWorkflow.abort, Abort(by="bench", reason="measure the restore"))
    final = await asyncio.wait_for(handle.result(), timeout)
    restore_reports = {cloud: admin(env, cloud, "GET", "limits") for cloud in CLOUDS}
    if final.outcome != "aborted" or not final.restored:
        raise RuntimeError(f"GameDay {handle.id} ended {final.outcome}, restored "
                           f"{final.restored}: {final.reason}")
    approved = min(e.at for e in final.events if e.kind == "approved")
    aborted = min(e.at for e in final.events if e.kind == "abort_requested")
    figures: dict[str, Any] = {"id": handle.id}
    for cloud in CLOUDS:
        step = f"blackhole-{cloud}"
        injected = max(e.at for e in final.events if e.kind == "injected" and e.detail.startswith(step))
        restored = max(e.at for e in final.events if e.kind == "restored" and e.detail.startswith(step))
        figures[cloud] = {}
        for phase, seconds, report in (
                ("inject", (injected - approved).total_seconds(), inject_reports[cloud]),
                ("restore", (restored - aborted).total_seconds(), restore_reports[cloud])):
            limit, calls, throttles = bound(report)
            figures[cloud][phase] = {"seconds": round(seconds, 2), "bound": round(limit, 2),
                                     "calls": calls, "throttles": throttles,
                                     "ratio": round(seconds / limit, 2) if limit >= 1 else None}
    return figures


async def saturated_abort(client: Any, lab: Any, env: dict[str, str], t: topo.Topology,
                          timeout: float) -> dict[str, Any]:
    """Abort while the AWS inject saturates its bucket: abort → first call of each restore."""
    from gameday.status import Abort
    from workflows.gameday import GameDayWorkflow

    handle = await _start_realistic(client, lab, env, t, "saturated", "calls", timeout)
    deadline = time.monotonic() + timeout
    saturated = False
    while time.monotonic() < deadline:
        report = admin(env, "aws", "GET", "limits")
        mutating = report["served"].get("ec2-mutating", 0)
        if report["throttled_total"] or mutating >= report["buckets"]["ec2-mutating"]["burst"]:
            saturated = True
            break
        now = await handle.query(GameDayWorkflow.status)
        if any(e.kind == "injected" and e.detail.startswith("blackhole-aws") for e in now.events):
            break  # the AWS inject fits in the burst: it never saturates (small N)
        await asyncio.sleep(0.05)
    saturation = admin(env, "aws", "GET", "limits")
    await handle.signal(GameDayWorkflow.abort, Abort(by="bench", reason="abort while saturating"))
    final = await asyncio.wait_for(handle.result(), timeout)
    if not final.restored:
        raise RuntimeError(f"GameDay {handle.id} did not restore: {final.reason}")
    history = await handle.fetch_history()
    abort_at = None
    restore_started: dict[str, float] = {}
    restore_scheduled: dict[str, float] = {}
    scheduled: dict[int, str] = {}
    for event in history.events:
        kind = event.WhichOneof("attributes") or ""
        when = event.event_time.ToMicroseconds() / 1e6
        if kind == "workflow_execution_signaled_event_attributes" and abort_at is None and \
                event.workflow_execution_signaled_event_attributes.signal_name == "abort":
            abort_at = when
        if kind == "activity_task_scheduled_event_attributes":
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            if ".restore_" in name:
                restore_scheduled.setdefault(name.split(".", 1)[0], when)
        if kind == "activity_task_started_event_attributes":
            name = scheduled.get(event.activity_task_started_event_attributes.scheduled_event_id, "")
            cloud = name.split(".", 1)[0]
            if ".restore_" in name and cloud not in restore_started:
                restore_started[cloud] = when
    if abort_at is None:
        raise RuntimeError(f"no abort signal in the history of {handle.id}")
    firsts: dict[str, float | None] = {}
    for cloud in CLOUDS:
        # the first read once the restore was scheduled: the saturating apply only writes by then,
        # and every restore begins by reading the zone. (The history's ActivityTaskStarted is the
        # last attempt's start, so a first attempt that met the stopping apply would hide.)
        began = restore_scheduled.get(cloud)
        calls = [c["at"] for c in admin(env, cloud, "GET", "calls")["calls"]
                 if began is not None and c["at"] >= began and _is_read(c)]
        firsts[cloud] = round((min(calls) - abort_at) * 1000, 1) if calls else None
    return {"id": handle.id, "saturated": saturated,
            "throttles_before_abort": saturation["throttled_total"],
            "mutations_before_abort": saturation["served"].get("ec2-mutating", 0),
            "abort_to_restore_scheduled_ms": {
                cloud: round((at - abort_at) * 1000, 1) for cloud, at in restore_scheduled.items()},
            "abort_to_first_restore_call_ms": firsts}


async def bench_one(n: int, repeats: int, timeout: float) -> dict[str, Any]:
    from gameday.connection import connect
    from gameday.lab.manager import Lab

    directory = Path(tempfile.mkdtemp(prefix=f"gameday-bench-realistic-{n}-"))
    lab = Lab(directory, fixed_ports=False)
    print(f"\n=== N={n} realistic: lab in {directory}", flush=True)
    # the lab's workers pace to the clouds' documented rates, as against a real cloud (where no
    # emulator endpoint is set) and as `gameday lab up --realistic` makes them
    os.environ["GAMEDAY_RATE_LIMITS"] = "on"
    lab.up(seed=False)
    try:
        env = lab.status()["env"]
        os.environ.update(env)
        t = topo.build(n)
        client = await connect()
        print("full GameDay under the limits ...", flush=True)
        full = await full_run(client, lab, env, t, timeout)
        print(f"  {json.dumps({c: full[c] for c in CLOUDS})}", flush=True)
        aborts = []
        for repeat in range(repeats):
            aborts.append(await saturated_abort(client, lab, env, t, timeout))
            print(f"  abort while saturating {repeat + 1}/{repeats}: "
                  f"{aborts[-1]['abort_to_first_restore_call_ms']}", flush=True)
        return {"n": n, "full": full, "aborts": aborts, "build_seconds": t.seconds}
    finally:
        lab.down()


def _cell(phase: dict[str, Any]) -> str:
    ratio = "within burst" if phase["ratio"] is None else f"{phase['ratio']:.2f}"
    return f"{phase['seconds']:.1f} / {phase['bound']:.1f} = {ratio}"


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| N | cloud | inject s / bound s = ratio | inject calls, throttles | "
            "restore s / bound s = ratio | restore calls, throttles | "
            "abort → restore scheduled ms, median / p95 | "
            "abort → first restore call ms, median / p95 (aborts, of them saturating) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for cloud in CLOUDS:
            f = r["full"][cloud]
            lat = [a["abort_to_first_restore_call_ms"][cloud] for a in r["aborts"]
                   if a["abort_to_first_restore_call_ms"].get(cloud) is not None]
            saturating = sum(bool(a.get("saturated")) for a in r["aborts"])
            latency = (f"{statistics.median(lat):.0f} / {p95(lat):.0f} ({len(lat)}, {saturating})"
                       if lat else "-")
            planned = [a.get("abort_to_restore_scheduled_ms", {}).get(cloud) for a in r["aborts"]]
            known = [x for x in planned if x is not None]
            scheduled = f"{statistics.median(known):.0f} / {p95(known):.0f}" if known else "-"
            rows.append(f"| {r['n']:,} | {cloud} | {_cell(f['inject'])} | {f['inject']['calls']}, "
                        f"{f['inject']['throttles']} | {_cell(f['restore'])} | "
                        f"{f['restore']['calls']}, {f['restore']['throttles']} | {scheduled} | "
                        f"{latency} |")
    return "\n".join(rows)


def write_section(results: list[dict[str, Any]], command: str, out: Path) -> None:
    """Put this run's section into `out` in place of an earlier one, keeping everything else."""
    m = machine()
    text = f"""{SECTION}

Run by hand, never in CI: `{command}` (nproc {m['nproc']}, Python {m['python']}).
The unlimited-mode figures above stay as they were measured.

{table(results)}

Bound: per phase, the slowest bucket's (calls it served − burst) / refill, from the endpoint's
counters; EC2 keeps a bucket per action (burst 50, then 5 per second for mutations), Compute
Engine per project and quota group (1,500, then 25 per second), ARM per subscription (writes and
deletes 200, then 10 per second; reads 250, then 25). "within burst": the phase's calls fit in
the buckets, so the rate limit does not bind. Throttles: over-limit answers the endpoint gave.
Abort → restore scheduled: from the `abort` signal's history event to the cloud's first
`restore_*` activity's `ActivityTaskScheduled` event. Abort → first restore call: from that signal
to the first API call at the cloud's endpoint after its restore activity started, the abort sent
while the AWS inject saturated its bucket (at N = 100 the AWS inject fits in the burst and never
saturates: the abort is sent once AWS is injected, while Azure still injects).

```json
{json.dumps(results, indent=1, default=str)}
```
"""
    existing = out.read_text() if out.exists() else ""
    if SECTION in existing:
        head, _, rest = existing.partition(SECTION)
        tail = rest[rest.find("\n## ", 1) + 1:] if "\n## " in rest else ""
        existing = head + text + ("\n" + tail if tail else "")
    else:
        existing = existing.rstrip("\n") + "\n\n" + text
    out.write_text(existing)
    print(f"\nwrote {out}")


def main(ns: list[int], repeats: int, timeout: float, out: Path, json_out: Path | None) -> None:
    results = []
    for n in ns:
        results.append(asyncio.run(bench_one(n, repeats, timeout)))
        if json_out:
            json_out.write_text(json.dumps(results, indent=1, default=str))
    print()
    print(table(results))
    command = "python -m bench.run --realistic --n " + " ".join(map(str, ns)) + \
        f" --repeats {repeats}"
    write_section(results, command, out)
