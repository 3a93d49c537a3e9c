"""`python -m bench.accounts --accounts 20 --subnets 1000`: one GameDay over many AWS accounts
(issue 19).

Run by hand, never in CI. A fresh lab (`Lab(dir, fixed_ports=False)`, plain mode: no rate limits)
with moto behind the AWS proxy, a Temporal dev server and the lab's workers; then, in each of
`--accounts` target accounts (none of them the worker's own: each is reached by AssumeRole), the
`gameday-target` role and `--subnets` untagged subnets in us-east-1a over VPCs of
`bench.topology.SUBNETS_PER_VPC`, built through the proxy `bench.topology.THREADS` calls at a time.

Measured, in this order:

- baseline: `bench.run.baseline_aws` (a sequential boto3 loop: a deny ACL per VPC, each subnet's
  association replaced, then put back and the ACLs deleted) in the first account, as its role,
  just before and again just after the GameDay (the machine's load drifts); their mean, times
  `--accounts`, is what the GameDay's figures are divided by;
- planning: `gameday plan`'s call (`operations.plan`: the plan workflow, its resolves and the live
  permission check), wall time;
- one GameDay whose runbook has one parallel zone-blackhole step per account (targeted by
  `vpc_ids`): approval → the last `injected` event, `abort_requested` → the last `restored`
  event (the workflow's own clock), its history and its child workflows' (events, JSON bytes,
  largest payload), and whether every account's ACL associations are exactly as before.

Prints the figures, and appends a section "## Many accounts (issue 19)" to `bench/RESULTS.md`
(`--out`; `--no-write` to only print).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3

from bench import history as bench_history
from bench import run as bench_run
from bench import topology as topo
from bench.topology import Topology

HERE = Path(__file__).resolve().parent
FIRST_ACCOUNT = 200_000_000_001
"""Target accounts are 200000000001, 200000000002, ...: none is the worker's own."""
APPROVER = "ic@example.com"
SECTION = "## Many accounts (issue 19)"


def account_ids(count: int) -> list[str]:
    return [str(FIRST_ACCOUNT + index) for index in range(count)]


# --- building -----------------------------------------------------------------------------------


def build_account(account: str, subnets: int) -> Topology:
    """In `account`: the target role and `subnets` untagged subnets in us-east-1a, over VPCs of
    `SUBNETS_PER_VPC` (as `bench.topology.build_aws` builds them in the worker's account)."""
    from gameday.lab.aws.accounts import account_ec2, make_target_role

    make_target_role(account)
    ec2 = account_ec2(account, topo.REGION)
    t = Topology(n=subnets)
    for index in range((subnets + topo.SUBNETS_PER_VPC - 1) // topo.SUBNETS_PER_VPC):
        t.aws_vpcs.append(ec2.create_vpc(CidrBlock=f"10.{100 + index}.0.0/16")["Vpc"]["VpcId"])

    def subnet(i: int) -> Callable[[], str]:
        vpc, slot = t.aws_vpcs[i // topo.SUBNETS_PER_VPC], i % topo.SUBNETS_PER_VPC
        block = f"10.{100 + i // topo.SUBNETS_PER_VPC}.{slot}.0/24"
        return lambda: str(ec2.create_subnet(VpcId=vpc, CidrBlock=block,
                                             AvailabilityZone=topo.AWS_ZONE)["Subnet"]["SubnetId"])

    t.aws_subnets = topo._run_all(f"{account} subnets", (subnet(i) for i in range(subnets)),
                                  subnets)
    return t


def build(accounts: list[str], subnets: int) -> tuple[dict[str, Topology], float]:
    """Every account's topology, one account after the other; the seconds it took."""
    started = time.monotonic()
    built = {}
    for number, account in enumerate(accounts, start=1):
        built[account] = build_account(account, subnets)
        print(f"account {number}/{len(accounts)} built ({time.monotonic() - started:.0f}s)",
              flush=True)
    return built, time.monotonic() - started


def snapshots(accounts: list[str]) -> dict[str, Any]:
    """Each account's ACL associations, ACLs, entries and tags (`acl_snapshot`)."""
    from gameday.lab.aws import acl_snapshot
    from gameday.lab.aws.accounts import account_ec2

    return {account: acl_snapshot(topo.REGION, ec2=account_ec2(account, topo.REGION))
            for account in accounts}


# --- baseline -----------------------------------------------------------------------------------


def baseline_as_target(account: str, t: Topology) -> tuple[float, float]:
    """`bench.run.baseline_aws` in `account`, with the credentials of its target role (assumed
    before the clock starts), as a script run in that account would."""
    from activities.aws.accounts import target_role

    given = boto3.client("sts", region_name=topo.REGION).assume_role(
        RoleArn=target_role(account), RoleSessionName="bench-baseline")["Credentials"]
    saved = boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = boto3.Session(
        aws_access_key_id=given["AccessKeyId"], aws_secret_access_key=given["SecretAccessKey"],
        aws_session_token=given["SessionToken"], region_name=topo.REGION)
    try:
        return bench_run.baseline_aws(t)
    finally:
        boto3.DEFAULT_SESSION = saved


def baseline(account: str, t: Topology, figures: Figures) -> None:
    """One more baseline in `account`; the figures' baseline becomes the mean of those run."""
    inject, restore = baseline_as_target(account, t)
    figures.baselines.append([inject, restore])
    figures.baseline_inject = sum(b[0] for b in figures.baselines) / len(figures.baselines)
    figures.baseline_restore = sum(b[1] for b in figures.baselines) / len(figures.baselines)
    print(f"baseline {len(figures.baselines)}, one account: inject {inject:.2f}s restore "
          f"{restore:.2f}s", flush=True)


# --- the GameDay --------------------------------------------------------------------------------


def accounts_runbook(built: dict[str, Topology], hold: str) -> Any:
    """One parallel group: a zone blackhole of us-east-1a per account, by its VPCs."""
    from gameday.runbook import Runbook

    return Runbook.model_validate({
        "name": f"bench-accounts-{len(built)}",
        "approvers": [APPROVER],
        "approval_timeout": "30m",
        "max_duration": "6h",
        "guardrails": {"aws_accounts": list(built), "max_resources_per_step": 100_000},
        "steps": [{"parallel": [
            {"id": f"blackhole-{account}", "action": "blackhole_zone", "duration": hold,
             "target": {"cloud": "aws", "account": account, "region": topo.REGION,
                        "zone": topo.AWS_ZONE, "vpc_ids": t.aws_vpcs}}
            for account, t in built.items()]}],
    })


@dataclass
class Figures:
    accounts: int
    subnets: int
    build_seconds: float = 0.0
    baseline_inject: float = 0.0
    baseline_restore: float = 0.0
    """The mean of the baselines run just before and just after the GameDay (same load)."""
    baselines: list[list[float]] = field(default_factory=list)
    """Each baseline's [inject, restore] seconds, the one before the GameDay first."""
    plan_seconds: float = 0.0
    plan_resources: int = 0
    plan_problems: list[str] = field(default_factory=list)
    missing_permissions: int = 0
    inject: float = 0.0
    restore: float = 0.0
    outcome: str = ""
    restored: bool = False
    exact: bool = False
    differing: list[str] = field(default_factory=list)
    parent: dict[str, Any] = field(default_factory=dict)
    children: dict[str, dict[str, Any]] = field(default_factory=dict)


async def plan(client: Any, book: Any, timeout: float, figures: Figures) -> None:
    """`gameday plan`'s call, timed; the plan must resolve every subnet and refuse nothing."""
    from gameday import operations

    started = time.monotonic()
    result = await operations.plan(client, book, "bench/accounts", timeout)
    figures.plan_seconds = time.monotonic() - started
    figures.plan_resources = sum(len(step.resources) for step in result.steps)
    figures.plan_problems = list(result.problems)
    figures.missing_permissions = len(result.missing_permissions)
    print(f"plan: {figures.plan_seconds:.1f}s, {figures.plan_resources} resources, "
          f"{len(result.problems)} problems, {figures.missing_permissions} missing permissions",
          flush=True)
    if result.problems or result.missing_permissions:
        raise RuntimeError(f"the plan refused the runbook: {result.problems[:3]} "
                           f"{result.missing_permissions[:3]}")


async def workflow_size(client: Any, workflow_id: str) -> tuple[dict[str, Any], Any]:
    """A workflow's history over all its runs (continue-as-new): events, runs, JSON bytes and
    largest payload, the server's own size of its latest run (`history_size_bytes`), and events
    by kind; and the latest run's history."""
    lengths = await bench_history.run_histories(client, workflow_id)
    handle = client.get_workflow_handle(workflow_id)
    history = await handle.fetch_history()
    info = (await handle.describe()).raw_description.workflow_execution_info
    figures = bench_run.history_figures(history, None)
    return {"events": sum(lengths), "runs": len(lengths), "json_bytes": figures["json_bytes"],
            "server_bytes": info.history_size_bytes, "largest_payload": figures["largest_payload"],
            "kinds": figures["kinds"]}, history


def child_ids(history: Any) -> list[str]:
    """The ids of the child workflows a history started."""
    return [event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
            for event in history.events
            if event.WhichOneof("attributes") == "child_workflow_execution_started_event_attributes"]


async def gameday(client: Any, book: Any, task_queue: str, timeout: float,
                  figures: Figures) -> None:
    """Start, approve, wait until every step is injected, abort, and read the histories."""
    from gameday.status import Abort, Approve, GameDayInput
    from workflows.gameday import GameDayWorkflow

    steps = len(book.fault_steps())
    handle = await client.start_workflow(
        GameDayWorkflow.run,
        GameDayInput(runbook=book, source="bench", started_by="bench",
                     watchdog_poll=timedelta(seconds=5)),
        id=f"bench-accounts-{uuid.uuid4().hex[:8]}", task_queue=task_queue)
    await bench_run._wait(handle, lambda s: s.phase == "awaiting_approval", timeout,
                          "the approval gate")
    await handle.signal(GameDayWorkflow.approve, Approve(approver=APPROVER))
    await bench_run._wait(handle, lambda s: sum(e.kind == "injected" for e in s.events) == steps,
                          timeout, f"all {steps} steps injected")
    await handle.signal(GameDayWorkflow.abort, Abort(by="bench", reason="measure the restore"))
    final = await asyncio.wait_for(handle.result(), timeout)
    events = final.events
    approved = min(e.at for e in events if e.kind == "approved")
    injected = max(e.at for e in events if e.kind == "injected")
    abort = min(e.at for e in events if e.kind == "abort_requested")
    restored = [e.at for e in events if e.kind == "restored"]
    figures.outcome, figures.restored = final.outcome, final.restored
    figures.inject = (injected - approved).total_seconds()
    figures.restore = (max(restored) - abort).total_seconds() if restored else float("nan")
    figures.parent, history = await workflow_size(client, handle.id)
    for child in dict.fromkeys([f"{handle.id}-watchdog", *child_ids(history)]):
        figures.children[child.removeprefix(handle.id)] = (await workflow_size(client, child))[0]
    print(f"gameday {handle.id}: {final.outcome}, restored {final.restored}, inject "
          f"{figures.inject:.1f}s, restore {figures.restore:.1f}s, history "
          f"{figures.parent['events']} events", flush=True)
    if final.outcome != "aborted" or len(restored) != steps or not final.restored:
        raise RuntimeError(f"GameDay {handle.id} ended {final.outcome}, restored "
                           f"{final.restored} ({len(restored)}/{steps} steps): {final.reason}")


# --- one run ------------------------------------------------------------------------------------


async def bench(accounts: int, subnets: int, hold: str, timeout: float) -> Figures:
    from gameday.connection import connect
    from gameday.lab.manager import Lab

    directory = Path(tempfile.mkdtemp(prefix=f"gameday-bench-accounts-{accounts}x{subnets}-"))
    lab = Lab(directory, fixed_ports=False)
    print(f"lab in {directory}", flush=True)
    lab.up(seed=False)
    figures = Figures(accounts=accounts, subnets=subnets)
    try:
        env = lab.status()["env"]
        os.environ.update(env)
        ids = account_ids(accounts)
        built, figures.build_seconds = build(ids, subnets)
        baseline(ids[0], built[ids[0]], figures)
        before = snapshots(ids)
        book = accounts_runbook(built, hold)
        client = await connect()
        await plan(client, book, timeout, figures)
        try:
            await gameday(client, book, env["GAMEDAY_TASK_QUEUE"], timeout, figures)
        finally:
            after = snapshots(ids)
            figures.differing = [a for a in ids if after[a] != before[a]]
            figures.exact = not figures.differing
            print(f"every account's ACLs exactly as before: {figures.exact} "
                  f"(differing: {figures.differing})", flush=True)
        baseline(ids[0], built[ids[0]], figures)
    finally:
        lab.down()
    return figures


# --- report -------------------------------------------------------------------------------------


def ratio(gameday_seconds: float, baseline_seconds: float) -> str:
    return f"{gameday_seconds / baseline_seconds:.2f}" if baseline_seconds else "-"


def sizes(h: dict[str, Any]) -> str:
    """A history's events (and runs, when it continued as new) and bytes: as JSON, and as the
    server counts them (its latest run) when known."""
    runs = f" in {h['runs']} runs" if h.get("runs", 1) > 1 else ""
    server = f", {h['server_bytes']:,} B on the server" if h.get("server_bytes") else ""
    return f"{h.get('events', 0):,} events{runs}, {h.get('json_bytes', 0):,} B JSON{server}"


def each(f: Figures, index: int) -> str:
    """The baselines before and after the GameDay, when there were two."""
    if len(f.baselines) < 2:
        return ""
    return " (mean of " + " before, ".join(f"{b[index]:.2f}" for b in f.baselines) + " after)"


def table(f: Figures) -> str:
    scaled_inject, scaled_restore = f.baseline_inject * f.accounts, f.baseline_restore * f.accounts
    children = "; ".join(f"`…{name}` {sizes(c)}" for name, c in f.children.items()) or "none"
    rows = [
        "| figure | value |", "| --- | --- |",
        f"| accounts × subnets in us-east-1a | {f.accounts} × {f.subnets:,} = "
        f"{f.accounts * f.subnets:,} |",
        f"| build (roles, VPCs, subnets through the proxy) | {f.build_seconds:.0f} s |",
        f"| `gameday plan` (plan workflow: resolves + live permission check) | "
        f"{f.plan_seconds:.1f} s ({f.plan_resources:,} resources, "
        f"{f.missing_permissions} missing permissions) |",
        f"| baseline inject, one account{each(f, 0)} / × {f.accounts} | "
        f"{f.baseline_inject:.2f} s / {scaled_inject:.1f} s |",
        f"| GameDay approval → all steps injected | {f.inject:.1f} s (ratio "
        f"{ratio(f.inject, scaled_inject)}) |",
        f"| baseline restore, one account{each(f, 1)} / × {f.accounts} | "
        f"{f.baseline_restore:.2f} s / {scaled_restore:.1f} s |",
        f"| GameDay abort → all restored | {f.restore:.1f} s (ratio "
        f"{ratio(f.restore, scaled_restore)}) |",
        f"| parent history | {sizes(f.parent)} "
        f"({f.parent.get('events', 0) / max(f.accounts, 1):.1f} events per account step), "
        f"largest payload {f.parent.get('largest_payload', 0):,} B |",
        f"| child workflows' histories | {children} |",
        f"| outcome; every account's ACL associations exactly as before | {f.outcome}, "
        f"restored {f.restored}; {'yes' if f.exact else 'NO: ' + ', '.join(f.differing)} |",
    ]
    return "\n".join(rows)


def activity_counts(f: Figures) -> str:
    """The parent's scheduled activities and other events by kind, the largest first."""
    kinds: Counter[str] = Counter(f.parent.get("kinds", {}))
    return ", ".join(f"{kind} {count}" for kind, count in kinds.most_common(8))


def section(runs: list[Figures], command: str, notes: str = "") -> str:
    m = bench_run.machine()
    parts = [f"{SECTION}\n", f"Run by hand: `{command}` (lab in plain mode: no rate limits).\n",
             f"Machine: nproc {m['nproc']} ({m['cpu']}), memory {m['memory']}; Python "
             f"{m['python']}; {m['packages']}.\n"]
    for f in runs:
        parts += [f"### {f.accounts} accounts × {f.subnets:,} subnets\n", table(f), "",
                  f"Parent history events by kind: {activity_counts(f)}.\n"]
    parts.append(bound_sentence(runs))
    if notes:
        parts.append(notes.strip() + "\n")
    return "\n".join(parts) + "\n"


def bound_sentence(runs: list[Figures]) -> str:
    """Events the parent history gains per account step, from the runs of fewest and most
    accounts (one run: its events per step)."""
    most = max(runs, key=lambda f: f.accounts)
    alike = [f for f in runs if f.subnets == most.subnets] or runs
    few = min(alike, key=lambda f: f.accounts)
    events = most.parent.get("events", 0)
    if few.accounts == most.accounts:
        return (f"Parent history: {events:,} events for {most.accounts} account steps "
                f"({events / most.accounts:.1f} per step, fixed overhead included).\n")
    slope = (events - few.parent.get("events", 0)) / (most.accounts - few.accounts)
    return (f"Parent history: {few.parent.get('events', 0):,} events at {few.accounts} accounts, "
            f"{events:,} at {most.accounts} ({most.subnets:,} subnets each): {slope:.1f} events "
            "per further account step.\n")


def append_section(out: Path, text: str) -> None:
    """Append `text` to `out`, replacing only an earlier section of the same title (up to the
    next `## ` heading)."""
    existing = out.read_text() if out.exists() else ""
    start = existing.find(SECTION)
    if start >= 0:
        end = existing.find("\n## ", start + len(SECTION))
        existing = existing[:start] + (existing[end + 1:] if end >= 0 else "")
    out.write_text(existing.rstrip("\n") + "\n\n" + text)
    print(f"wrote {SECTION!r} into {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.accounts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--subnets", type=int, default=1000, help="per account, in us-east-1a")
    parser.add_argument("--hold", default="30m", help="each step's duration (aborted before)")
    parser.add_argument("--timeout", type=float, default=3600, help="per wait, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", type=Path, help="also dump this run's figures here")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended to the section")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="--json files of earlier runs whose figures join the section")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.subnets < 1:
        parser.error("--accounts and --subnets must be at least 1")
    figures = asyncio.run(bench(args.accounts, args.subnets, args.hold, args.timeout))
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=1, default=str))
    earlier = [Figures(**json.loads(path.read_text())) for path in args.include]
    command = f"python -m bench.accounts --accounts {args.accounts} --subnets {args.subnets}"
    if earlier:
        command += " (with earlier runs: " + ", ".join(
            f"--accounts {f.accounts} --subnets {f.subnets}" for f in earlier) + ")"
    text = section([*earlier, figures], command, args.notes.read_text() if args.notes else "")
    print("\n" + text)
    if not args.no_write:
        append_section(args.out, text)
    sys.stdout.flush()
    os._exit(0)  # the Temporal SDK can abort a finalizing interpreter (sdk-python#300)


if __name__ == "__main__":
    main()
