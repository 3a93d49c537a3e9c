"""`make demo`: whole GameDays in the lab, driven through the `gameday` CLI as an incident
commander would drive them, then everything the demo started is stopped.

It starts a lab of its own (its own directory; the usual ports when free, else free ones), runs
each demo runbook (validate, plan, run, approve from the command line, approve gated steps, watch,
wait for the end), prints what the faults changed in all three clouds and what differs after the
run (nothing, when the restore is exact), writes each run's report, and exits 0 only when every
run ended as expected with every cloud exactly as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.manager import Lab
from lab.snapshot import changes, lab_view

ROOT = Path(__file__).resolve().parent.parent
APPROVER = "ic@example.com"
DEMO_RUNBOOKS = [
    ("runbooks/lab/multicloud-zone-blackhole.yaml", "completed"),
    ("runbooks/lab/multicloud-region-evacuation.yaml", "completed"),
    ("runbooks/lab/zone-outage-hypothesis-holds.yaml", "completed"),
    ("runbooks/lab/region-outage-hypothesis-breaks.yaml", "aborted"),
]


class Demo:
    def __init__(self, env: dict[str, str]):
        self.env = {**os.environ, **env}

    def gameday(self, *args: str, check: bool = True) -> str:
        command = [sys.executable, "-m", "gameday.cli", *args]
        shown = "gameday " + " ".join(args)
        print(f"\n$ {shown}", flush=True)
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, cwd=ROOT)
        output = (done.stdout + done.stderr).rstrip()
        if output and "--json" not in args:
            print(output, flush=True)
        if check and done.returncode != 0:
            raise SystemExit(f"demo failed: `{shown}` exited with {done.returncode}")
        return done.stdout

    def status(self, run_id: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "gameday.cli", "status", run_id, "--json"]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, cwd=ROOT,
                              check=True)
        return json.loads(done.stdout)

    def wait(self, run_id: str, done: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.status(run_id)
            if done(current):
                return current
            time.sleep(0.5)
        raise SystemExit(f"demo failed: {run_id} did not reach '{what}' within {timeout:.0f}s")


def _show_changes(title: str, rows: list[tuple[str, object, object]], limit: int = 40) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (nothing)")
    width = max((len(k) for k, _, _ in rows), default=0) + 2
    for key, old, new in rows[:limit]:
        print(f"  {key:<{width}}{str(old):<28} -> {new}")
    if len(rows) > limit:
        print(f"  ... and {len(rows) - limit} more")


def run_gameday(demo: Demo, env: dict[str, str], runbook: str, expect: str = "completed") -> dict[str, Any]:
    """Drive one runbook through the CLI; return its final status and whether the lab is as before."""
    run_id = f"demo-{Path(runbook).stem}-{int(time.time())}"
    print(f"\n{'=' * 100}\n{runbook}\n{'=' * 100}", flush=True)
    before = lab_view(env)
    demo.gameday("validate", runbook)
    demo.gameday("plan", runbook)
    demo.gameday("run", runbook, "--id", run_id)
    demo.wait(run_id, lambda s: s["phase"] == "awaiting_approval", "awaiting approval")
    demo.gameday("approve", run_id, "--as", APPROVER, "--note", "demo: go")
    during_view: dict[str, str] = {}

    def progressed(status: dict[str, Any]) -> bool:
        nonlocal during_view
        gate = status["pending_approval"]
        if gate and gate != "start":
            demo.gameday("approve", run_id, "--as", APPROVER, "--step", gate)
        faults = [s for s in status["steps"] if s["cloud"]]
        if faults and all(s["state"] in ("active", "restored") for s in faults) and not during_view:
            during_view = lab_view(env)
            demo.gameday("status", run_id)
        return status["outcome"] is not None

    final = demo.wait(run_id, progressed, "the end", timeout=240)
    after = lab_view(env)
    _show_changes("what the faults changed (before -> during):", changes(before, during_view))
    leftover = changes(before, after)
    _show_changes("what differs after the run (before -> after):", leftover)
    exact = not leftover
    print(f"\n{run_id}: outcome {final['outcome']} (expected {expect}); every fault restored "
          f"{final['restored']}; the lab exactly as before: {exact}", flush=True)
    written = demo.gameday("report", run_id).split()
    return {"run_id": run_id, "final": final, "exact": exact, "expect": expect,
            "report": written[1] if len(written) > 1 else "?"}


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="gameday-demo-"))
    lab = Lab(directory)
    print(f"starting the lab in {directory} ...", flush=True)
    started = time.monotonic()
    endpoints = lab.up(seed=True)
    env = lab.status()["env"]
    print(f"lab up in {time.monotonic() - started:.1f}s: Temporal {endpoints['temporal']}, "
          f"UI {endpoints['ui']}", flush=True)
    ok = False
    try:
        demo = Demo(env)
        results = [run_gameday(demo, env, runbook, expect) for runbook, expect in DEMO_RUNBOOKS]
        print(f"\n{'=' * 100}\noutcome\n{'=' * 100}")
        ok = True
        for result in results:
            final = result["final"]
            good = final["outcome"] == result["expect"] and final["restored"] and result["exact"]
            ok = ok and good
            print(f"{'ok  ' if good else 'FAIL'} {result['run_id']}: outcome {final['outcome']}, "
                  f"hypothesis held {final['hypothesis_held']}, every fault restored "
                  f"{final['restored']}, lab exactly as before {result['exact']}")
            print(f"     report: {result['report']}")
    finally:
        stopped = lab.down()
        print(f"\nlab stopped ({stopped} processes)", flush=True)
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
