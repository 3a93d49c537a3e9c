"""`make demo`: a whole GameDay in the lab, driven through the `gameday` CLI as an incident
commander would drive it, then everything the demo started is stopped.

It starts a lab of its own (its own directory; the usual ports when free, else free ones), runs
each demo runbook (validate, plan, run, approve from the command line, watch, wait for the end),
prints what each fault changed before, during and after, writes the final status of each run as
its report, and checks that every cloud is exactly as it was.
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

ROOT = Path(__file__).resolve().parent.parent
APPROVER = "ic@example.com"


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


def _aws_view(env: dict[str, str]) -> dict[str, str]:
    """Each lab subnet with the name of the network ACL it is associated with."""
    import boto3

    from lab.aws import acl_snapshot

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        snapshot = acl_snapshot()
        ec2 = boto3.client("ec2", region_name="us-east-1")
        names = {s["SubnetId"]: next((t["Value"] for t in s.get("Tags", []) if t["Key"] == "Name"),
                                     s["SubnetId"]) for s in ec2.describe_subnets()["Subnets"]}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    view = {}
    for subnet, acl in snapshot["associations"].items():
        if subnet not in names or names[subnet] == subnet:
            continue  # moto's default VPC, not part of the lab topology
        tags = snapshot["acls"][acl]["tags"]
        label = tags.get("Name") or (f"default ({acl})" if not tags else acl)
        view[names.get(subnet, subnet)] = label
    return dict(sorted(view.items()))


def _print_changes(before: dict[str, str], during: dict[str, str], after: dict[str, str]) -> None:
    width = max(len(k) for k in before) + 2
    print(f"\n{'subnet':<{width}}{'before':<36}{'during':<36}after")
    for subnet in before:
        mark = "" if before[subnet] == during.get(subnet) else "  <- blackholed"
        print(f"{subnet:<{width}}{before[subnet]:<36}{during.get(subnet, '-'):<36}"
              f"{after.get(subnet, '-')}{mark}")


def run_aws_demo(demo: Demo, env: dict[str, str]) -> dict[str, Any]:
    runbook = "runbooks/lab/aws-zone-blackhole.yaml"
    run_id = f"demo-aws-{int(time.time())}"
    before = _aws_view(env)
    demo.gameday("validate", runbook)
    demo.gameday("plan", runbook)
    demo.gameday("run", runbook, "--id", run_id)
    demo.wait(run_id, lambda s: s["phase"] == "awaiting_approval", "awaiting approval")
    demo.gameday("approve", run_id, "--as", APPROVER, "--note", "demo: go")
    demo.wait(run_id, lambda s: bool(s["active_faults"]), "fault active")
    during = _aws_view(env)
    demo.gameday("status", run_id)
    final = demo.wait(run_id, lambda s: s["outcome"] is not None, "the end")
    after = _aws_view(env)
    _print_changes(before, during, after)
    exact = before == after
    print(f"\nAWS restored exactly: {exact}")
    return {"run_id": run_id, "final": final, "exact": exact}


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
        results = [run_aws_demo(demo, env)]
        print("\n== outcome ==")
        ok = True
        for result in results:
            final = result["final"]
            written = demo.gameday("report", result["run_id"]).split()
            print(f"{result['run_id']}: outcome {final['outcome']}, hypothesis held "
                  f"{final['hypothesis_held']}, every fault restored {final['restored']}, "
                  f"clouds exactly as before {result['exact']}")
            print(f"  report: {written[1]} (and {written[3]})")
            ok = ok and final["outcome"] == "completed" and final["restored"] and result["exact"]
    finally:
        stopped = lab.down()
        print(f"\nlab stopped ({stopped} processes)", flush=True)
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
