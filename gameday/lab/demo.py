"""`make demo`: whole GameDays in the lab, driven through the `gameday` CLI as an incident
commander would drive them, then everything the demo started is stopped.

It starts a lab of its own (its own directory; the usual ports when free, else free ones), runs
each demo runbook (validate, plan, run, approve from the command line, approve gated steps, watch,
wait for the end), prints what the faults changed in all three clouds and what differs after the
run (nothing, when the restore is exact), writes each run's report, and exits 0 only when every
run ended as expected with every cloud exactly as before. A run that did not says what failed in
one sentence: the outcome, the reason, and which probe.

Every `gameday` command runs with the lab's environment (`gameday lab env`), so the lab runbooks'
`${GAMEDAY_SHOP_URL:-...}` probes reach the lab's own shop wherever it listens (8270 may be taken).
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

from gameday.lab.manager import Lab
from gameday.lab.snapshot import changes, lab_view

ROOT = Path(__file__).resolve().parents[2]
APPROVER = "ic@example.com"
DEMO_RUNBOOKS = [
    ("runbooks/lab/multicloud-zone-blackhole.yaml", "completed"),
    ("runbooks/lab/multicloud-region-evacuation.yaml", "completed"),
    ("runbooks/lab/multicloud-zone-power-interruption.yaml", "completed"),
    ("runbooks/lab/multicloud-zonal-evacuation.yaml", "completed"),
    ("runbooks/lab/multicloud-region-partition.yaml", "completed"),
    ("runbooks/lab/zone-outage-hypothesis-holds.yaml", "completed"),
    ("runbooks/lab/region-outage-hypothesis-breaks.yaml", "aborted"),
]


class DemoFailed(Exception):
    """A step of the demo failed; the message is the sentence the summary shows."""


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
            said = _last_line(done.stderr) or _last_line(done.stdout)
            raise DemoFailed(f"`{shown}` exited with {done.returncode}"
                             + (f": {said}" if said else ""))
        return done.stdout

    def status(self, run_id: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "gameday.cli", "status", run_id, "--json"]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            said = _last_line(done.stderr) or f"exit status {done.returncode}"
            raise DemoFailed(f"`gameday status {run_id}` failed: {said}")
        return json.loads(done.stdout)

    def probe_urls(self, runbook: str) -> dict[str, str]:
        """Each HTTP probe's URL as the CLI resolves it in this environment: where a verdict
        that surprises came from."""
        from gameday.loader import load_runbook

        try:
            book = load_runbook(ROOT / runbook, self.env)
        except Exception:  # the run itself says what is wrong with the file
            return {}
        steady = book.steady_state
        return {p.name: p.http.url for p in (steady.probes if steady else []) if p.http}

    def wait(self, run_id: str, done: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        current: dict[str, Any] = {"phase": "unknown"}
        while time.monotonic() < deadline:
            current = self.status(run_id)
            if done(current):
                return current
            time.sleep(0.5)
        raise DemoFailed(f"{run_id} did not reach '{what}' within {timeout:.0f}s (phase "
                         f"{current['phase']}{'; ' + current['reason'] if current.get('reason') else ''})")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


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
    """Drive one runbook through the CLI; return its final status, whether the lab is as before,
    and `failure`: None when it ended as expected, else the sentence that says what failed."""
    run_id = f"demo-{Path(runbook).stem}-{int(time.time())}"
    print(f"\n{'=' * 100}\n{runbook}\n{'=' * 100}", flush=True)
    try:
        result = _drive(demo, env, runbook, run_id, expect)
    except DemoFailed as failed:
        result = {"run_id": run_id, "final": None, "exact": None, "expect": expect, "report": "?",
                  "error": str(failed)}
    result["runbook"] = runbook
    result["failure"] = what_failed(result, demo.probe_urls(runbook))
    return result


def _drive(demo: Demo, env: dict[str, str], runbook: str, run_id: str,
           expect: str) -> dict[str, Any]:
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
    try:
        written = demo.gameday("report", run_id).split()
    except DemoFailed as failed:
        print(f"(no report: {failed})", flush=True)
        written = []
    return {"run_id": run_id, "final": final, "exact": exact, "expect": expect,
            "report": written[1] if len(written) > 1 else "?", "error": None}


def what_failed(result: dict[str, Any], probe_urls: dict[str, str]) -> str | None:
    """One sentence on what went wrong with a demo run (None when nothing did): the outcome
    against the one expected, the run's reason, and the probe that decided it (or, when the
    hypothesis held against expectation, the probes that kept passing and where they pointed)."""
    name = Path(result.get("runbook") or result["run_id"]).stem
    if result.get("error"):
        return f"{name}: {result['error']}."
    final = result["final"]
    outcome, expect = final["outcome"], result["expect"]
    problems = []
    if outcome != expect:
        problems.append(f"ended {outcome}, not {expect}")
    if not final["restored"]:
        problems.append("not every fault was restored")
    if not result["exact"]:
        problems.append("the lab differs from before the run (see above)")
    if not problems:
        return None
    checks = final.get("probe_checks") or []
    failed = [c for c in checks if not c["ok"]]
    if final.get("reason"):
        problems.append(f"because {final['reason']}")
    if failed:
        last = failed[-1]
        problems.append(f"probe {last['name']} last failed with {last['value']}"
                        + (f" ({probe_urls[last['name']]})" if last["name"] in probe_urls else ""))
    elif outcome != expect and expect == "aborted":
        pointed = ", ".join(f"{n} at {u}" for n, u in probe_urls.items()) or "no HTTP probe"
        problems.append(f"every probe check passed while the faults were in effect ({pointed}); "
                        "do the probes reach the lab's shop (GAMEDAY_SHOP_URL)?")
    sentence = f"{name}: " + "; ".join(problems)
    return sentence if sentence.endswith("?") else sentence + "."


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="gameday-demo-"))
    lab = Lab(directory)
    print(f"starting the lab in {directory} ...", flush=True)
    started = time.monotonic()
    endpoints = lab.up(seed=True)
    env = lab.status()["env"]
    print(f"lab up in {time.monotonic() - started:.1f}s: Temporal {endpoints['temporal']}, "
          f"UI {endpoints['ui']}, shop {endpoints['shop']} (GAMEDAY_SHOP_URL)", flush=True)
    ok = False
    try:
        demo = Demo(env)
        results = [run_gameday(demo, env, runbook, expect) for runbook, expect in DEMO_RUNBOOKS]
        print(f"\n{'=' * 100}\noutcome\n{'=' * 100}")
        ok = all(result["failure"] is None for result in results)
        for result in results:
            final = result["final"]
            if final is not None:
                print(f"{'ok  ' if result['failure'] is None else 'FAIL'} {result['run_id']}: "
                      f"outcome {final['outcome']}, hypothesis {_hypothesis(final)}, every fault "
                      f"restored {final['restored']}, lab exactly as before {result['exact']}")
                print(f"     report: {result['report']}")
            else:
                print(f"FAIL {result['run_id']}")
        failures = [r["failure"] for r in results if r["failure"]]
        if failures:
            print("\nwhat failed:")
            for failure in failures:
                print(f"  {failure}")
    finally:
        stopped = lab.down()
        print(f"\nlab stopped ({stopped} processes)", flush=True)
    sys.stdout.flush()
    os._exit(0 if ok else 1)


def _hypothesis(final: dict[str, Any]) -> str:
    held = final.get("hypothesis_held")
    return "not tested" if held is None else ("held" if held else "not held")


if __name__ == "__main__":
    main()
