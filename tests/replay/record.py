"""Record the histories that tests/replay/test_replay.py replays: `python -m tests.replay.record`.

Starts a lab of its own (Temporal dev server, moto behind the fault proxy, the GCP and Azure
emulators, a health endpoint) on free loopback ports, drives each scenario with a worker in this
process on a task queue of the scenario's own, writes the history of every workflow run it made
(the GameDay, its dead man's switch, the zone leases, plan and sweep runs) as
`histories/<scenario>/<workflow id>.json`, and stops everything it started. Record from a clean
checkout of the code that is deployed: the histories are what its GameDays in flight look like.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
from temporalio.service import RPCError, RPCStatusCode

from gameday.codec import DATA_CONVERTER, LargePayloadCodec
from gameday.connection import connect_options
from gameday.signatures import approval_text
from gameday.status import Abort, Approve, GameDayInput, Reject, UpdateAnswer
from gameday.sweep import SweepInput, SweepReport
from gameday.telemetry import setup_tracing
from tests.support.clouds import AwsLab, AzureLab, GcpLab
from tests.support.gameday import (
    APPROVER,
    abort,
    approve,
    aws_zone_step,
    phase_is,
    reject,
    runbook,
    start,
    step_state,
    terminate,
    wait_for,
)
from tests.support.health import HealthServer
from tests.support.servers import Servers
from worker import build_workers
from workflows.leases import leases_id

HISTORIES = Path(__file__).resolve().parent / "histories"
COMPRESSED_SCENARIO = "region-outage"
"""Recorded by a client and worker that compress every payload above `SMALL_PAYLOAD` bytes, so
that the replay decodes zlib payloads as production writes them for large checkpoints, from a
history small enough to keep."""
SMALL_PAYLOAD = 1024


@dataclass
class Recording:
    """One scenario's run: where it runs, and the workflow runs it made besides its GameDay."""

    name: str
    client: Client
    servers: Servers
    health: HealthServer
    signing_key: Path
    """The private key whose public half the signed-approval runbook lists."""
    extra_runs: list[str] = field(default_factory=list)

    @property
    def task_queue(self) -> str:
        return f"replay-{self.name}"

    @property
    def gameday_id(self) -> str:
        return f"replay-{self.name}"

    def aws(self) -> AwsLab:
        return AwsLab(self.servers)


Scenario = Callable[[Recording], Awaitable[None]]


def _steady_state(health: HealthServer) -> dict[str, Any]:
    return {"interval": "1s", "tolerance": 2, "recovery_timeout": "15s",
            "probes": [{"name": "checkout", "http": {"url": health.url, "timeout": "1s"}}]}


async def _seed_aws(rec: Recording) -> AwsLab:
    lab = rec.aws()
    await asyncio.to_thread(lab.seed)
    return lab


async def _update(handle: Any, name: str, payload: Any) -> UpdateAnswer:
    answer: UpdateAnswer = await handle.execute_update(name, payload, result_type=UpdateAnswer)
    if not answer.accepted:
        raise RuntimeError(f"the {name} update was refused: {answer.detail}")
    return answer


async def zone_blackhole(rec: Recording) -> None:
    """An AWS zone blackholed under a steady-state hypothesis: approved (Update, with the plan
    hash), held 2 s, restored, the recovery checked."""
    await _seed_aws(rec)
    book = runbook(aws_zone_step(duration="2s"), steady_state=_steady_state(rec.health))
    handle = await start(rec.client, book, rec.task_queue, rec.gameday_id)
    waiting = await wait_for(handle, phase_is("awaiting_approval"))
    await _update(handle, "approve", Approve(approver=APPROVER, plan_hash=waiting.plan_hash))
    await wait_for(handle, phase_is("completed"), what="the GameDay to complete")


async def signed_approval(rec: Recording) -> None:
    """`approvals: signed`: the start approved with an ssh-keygen signature over the plan, which
    the workflow verifies inside the sandbox."""
    await _seed_aws(rec)
    public = rec.signing_key.with_suffix(".pub").read_text().strip()
    book = runbook(aws_zone_step(duration="1s"), approvers=[{"id": APPROVER, "key": public}],
                   approvals="signed")
    handle = await start(rec.client, book, rec.task_queue, rec.gameday_id)
    waiting = await wait_for(handle, phase_is("awaiting_approval"))
    text = approval_text(handle.id, "start", waiting.plan_hash or "")
    signature = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "gameday", "-f", str(rec.signing_key)],
                               input=text.encode(), capture_output=True, check=True).stdout.decode()
    await _update(handle, "approve", Approve(approver=APPROVER, signature=signature))
    await wait_for(handle, phase_is("completed"), what="the GameDay to complete")


async def region_outage(rec: Recording) -> None:
    """`blackhole_region`: every zone of us-east-1 cut, one checkpoint each, restored newest
    zone first."""
    await _seed_aws(rec)
    step = {"id": "blackout-use1", "action": "blackhole_region", "duration": "2s",
            "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                       "tags": {"gameday": "enabled"}}}
    handle = await start(rec.client, runbook(step), rec.task_queue, rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, phase_is("completed"), what="the GameDay to complete")


async def evacuation(rec: Recording) -> None:
    """`evacuate_region`: the region's Route 53 weighted records to 0 for 2 s, then back."""
    await _seed_aws(rec)
    step = {"id": "evacuate-us-east-1", "action": "evacuate_region", "duration": "2s",
            "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                       "hosted_zone_id": "shop.example.com",
                       "record_names": ["www.shop.example.com", "api.shop.example.com"]}}
    handle = await start(rec.client, runbook(step), rec.task_queue, rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, phase_is("completed"), what="the GameDay to complete")


async def multi_cloud(rec: Recording) -> None:
    """A GCP and an Azure zone blackholed in one parallel group after a step gate, then a wait
    step: the cloud queues, step approvals and parallel restores."""
    gcp, azure = GcpLab(rec.servers), AzureLab(rec.servers)
    await asyncio.gather(asyncio.to_thread(gcp.seed), asyncio.to_thread(azure.seed))
    group = {"parallel": [{**gcp.zone_step("blackhole-gcp-a", "2s"), "approval": "required"},
                          azure.zone_step("blackhole-azure-1", "2s")]}
    book = runbook(group, {"id": "soak", "action": "wait", "duration": "1s"})
    handle = await start(rec.client, book, rec.task_queue, rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, lambda s: s.pending_approval == "blackhole-gcp-a", what="the step gate")
    await approve(handle, step="blackhole-gcp-a")
    await wait_for(handle, phase_is("completed"), timeout=90, what="the GameDay to complete")


async def drift(rec: Recording) -> None:
    """A subnet appears in the zone while it is blackholed: the drift round cuts it too; then an
    abort (signal) restores both checkpoints."""
    lab = await _seed_aws(rec)
    book = runbook(aws_zone_step(duration="5m"), drift_interval="1s")
    handle = await start(rec.client, book, rec.task_queue, rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state("blackhole-use1a", "active"))
    await asyncio.to_thread(lab.add_target)
    await wait_for(handle, lambda s: any(e.kind == "drift" for e in s.events), timeout=30,
                   what="the drift round")
    await abort(handle, reason="drift recorded")
    await wait_for(handle, phase_is("aborted"), what="the abort")


async def watchdog(rec: Recording) -> None:
    """The GameDay terminated while its fault is held: the dead man's switch restores."""
    await _seed_aws(rec)
    handle = await start(rec.client, runbook(aws_zone_step(duration="10m")), rec.task_queue,
                         rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state("blackhole-use1a", "active"))
    await handle.terminate(reason="operator pulled the plug")
    switch = rec.client.get_workflow_handle(f"{handle.id}-watchdog")
    await asyncio.wait_for(switch.result(), timeout=60)


async def aborted(rec: Recording) -> None:
    """An abort (Update) while the fault is held."""
    await _seed_aws(rec)
    handle = await start(rec.client, runbook(aws_zone_step(duration="5m")), rec.task_queue,
                         rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state("blackhole-use1a", "active"))
    await _update(handle, "abort", Abort(by=APPROVER, reason="recorded abort"))
    await wait_for(handle, phase_is("aborted"), what="the abort")


async def rejected(rec: Recording) -> None:
    """A rejection (signal) at the start gate: nothing is injected, no watchdog, no lease."""
    await _seed_aws(rec)
    handle = await start(rec.client, runbook(aws_zone_step()), rec.task_queue, rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await reject(handle, reason="not today")
    await wait_for(handle, phase_is("rejected"), what="the rejection")


async def rejected_update(rec: Recording) -> None:
    """A rejection through the `reject` Update, as `gameday reject` sends it."""
    await _seed_aws(rec)
    handle = await start(rec.client, runbook(aws_zone_step()), rec.task_queue, rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await _update(handle, "reject", Reject(approver=APPROVER, reason="not today"))
    await wait_for(handle, phase_is("rejected"), what="the rejection")


async def plan(rec: Recording) -> None:
    """`gameday plan`: the read-only plan workflow."""
    await _seed_aws(rec)
    workflow_id = f"replay-{rec.name}"
    await rec.client.execute_workflow(
        "GameDayPlanWorkflow", GameDayInput(runbook=runbook(aws_zone_step()), source="record"),
        id=workflow_id, task_queue=rec.task_queue)
    rec.extra_runs.append(workflow_id)


async def sweep(rec: Recording) -> None:
    """A GameDay and its watchdog both terminated mid-fault; `gameday sweep --restore` undoes the
    leftovers from their tags."""
    await _seed_aws(rec)
    handle = await start(rec.client, runbook(aws_zone_step(duration="10m")), rec.task_queue,
                         rec.gameday_id)
    await wait_for(handle, phase_is("awaiting_approval"))
    await approve(handle)
    await wait_for(handle, step_state("blackhole-use1a", "active"))
    await terminate(rec.client.get_workflow_handle(f"{handle.id}-watchdog"), "recorded sweep")
    await terminate(handle, "recorded sweep")
    os.environ["GAMEDAY_SWEEP_AWS_REGIONS"] = "us-east-1"  # not every region of moto: 40 s
    sweep_id = f"replay-{rec.name}-run"
    report = await rec.client.execute_workflow(
        "GameDaySweepWorkflow", SweepInput(restore=True, clouds=["aws"]), id=sweep_id,
        task_queue=rec.task_queue, result_type=SweepReport)
    if not report.restored:
        raise RuntimeError(f"the sweep restored nothing: {report.model_dump_json()}")
    rec.extra_runs.append(sweep_id)


SCENARIOS: dict[str, Scenario] = {
    "zone-blackhole": zone_blackhole,
    "signed-approval": signed_approval,
    "region-outage": region_outage,
    "evacuation": evacuation,
    "multi-cloud": multi_cloud,
    "drift": drift,
    "watchdog": watchdog,
    "abort": aborted,
    "rejected": rejected,
    "rejected-update": rejected_update,
    "plan": plan,
    "sweep": sweep,
}


async def _client(compress_above: int | None = None) -> Client:
    """A client as `gameday.connection.connect` makes it; `compress_above` lowers the codec's
    threshold (the codec's decoding does not depend on it)."""
    converter = DATA_CONVERTER
    if compress_above is not None:
        converter = dataclasses.replace(DATA_CONVERTER,
                                        payload_codec=LargePayloadCodec(threshold=compress_above))
    return await Client.connect(**connect_options(), data_converter=converter,
                                plugins=[OpenTelemetryPlugin(add_temporal_spans=True)])


async def _closed(client: Client, workflow_id: str, timeout: float = 60) -> bool:
    """Wait until the run has closed; False when no such run exists."""
    handle = client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + timeout
    while True:
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        if description.status != WorkflowExecutionStatus.RUNNING:
            return True
        if time.monotonic() > deadline:
            raise TimeoutError(f"workflow {workflow_id} is still running after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _write_history(client: Client, workflow_id: str, directory: Path) -> Path:
    """`fetch_history().to_json()`, one event per line: half the size of the indented form, and a
    re-recording diffs event by event. `WorkflowHistory.from_json` reads it as it is."""
    history = json.loads((await client.get_workflow_handle(workflow_id).fetch_history()).to_json())
    lines = ",\n".join(json.dumps(event, separators=(",", ":")) for event in history["events"])
    path = directory / f"{workflow_id}.json"
    path.write_text(f'{{"events": [\n{lines}\n]}}\n')
    return path


async def record_scenario(rec: Recording, scenario: Scenario, out: Path) -> list[Path]:
    """Run one scenario with its own workers, then write every workflow run it made: the GameDay
    and its watchdog once closed, the zone leases as they stand (that workflow never closes)."""
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"replay-{rec.name}") as executor:
        async with contextlib.AsyncExitStack() as running:
            for worker in build_workers(rec.client, rec.task_queue, executor):
                await running.enter_async_context(worker)
            await asyncio.wait_for(scenario(rec), timeout=180)
            runs = [*rec.extra_runs]
            for workflow_id in (rec.gameday_id, f"{rec.gameday_id}-watchdog"):
                if await _closed(rec.client, workflow_id):
                    runs.append(workflow_id)
            if await _exists(rec.client, leases_id(rec.task_queue)):
                runs.append(leases_id(rec.task_queue))
            directory = out / rec.name
            directory.mkdir(parents=True, exist_ok=True)
            return [await _write_history(rec.client, run, directory) for run in sorted(set(runs))]


class ScenarioFailed(Exception):
    """A scenario did not run as recorded; its name and what went wrong, in one sentence."""


async def record(names: list[str], staging: Path, servers: Servers, signing_key: Path) -> None:
    """Record each scenario into `staging/<scenario>/`."""
    health = HealthServer()
    try:
        plain, compressing = await _client(), await _client(compress_above=SMALL_PAYLOAD)
        for name in names:
            began = time.monotonic()
            rec = Recording(name=name, client=compressing if name == COMPRESSED_SCENARIO else plain,
                            servers=servers, health=health, signing_key=signing_key)
            try:
                paths = await record_scenario(rec, SCENARIOS[name], staging)
            except Exception as error:
                raise ScenarioFailed(f"scenario {name} failed: {type(error).__name__}: {error}") from error
            print(f"{name}: {len(paths)} histories in {time.monotonic() - began:.1f}s "
                  f"({', '.join(p.name for p in paths)})", flush=True)
    finally:
        health.stop()


def _publish(staging: Path, out: Path, names: list[str], everything: bool) -> None:
    """Put the new recordings in place of the old ones: every scenario's when all were recorded
    (scenarios no longer recorded go), else only those recorded."""
    if everything:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.move(staging / name, out / name)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the lab


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.replay.record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"record only these (default: all of {', '.join(SCENARIOS)})")
    parser.add_argument("--out", type=Path, default=HISTORIES, help="where to write (%(default)s)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; the scenarios are {', '.join(SCENARIOS)}")
    names = args.scenarios or list(SCENARIOS)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    setup_tracing("gameday-replay-record")  # the workers' tracing plugin needs its provider
    # runs still cached when a scenario's worker stops are evicted, and their open spans log
    # "Failed to detach context" tracebacks: noise, not a failure of the recording
    logging.getLogger("opentelemetry.context").setLevel(logging.CRITICAL)
    scratch = Path(tempfile.mkdtemp(prefix="gameday-replay-"))
    key = scratch / "ic"
    code = 1
    servers: Servers | None = None
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ic@laptop", "-f", str(key)],
                       check=True, capture_output=True)
        servers = Servers.start()
        servers.apply_env()
        asyncio.run(record(names, scratch / "histories", servers, key))
        _publish(scratch / "histories", args.out, names, everything=not args.scenarios)
        print(f"wrote {len(list(args.out.glob('*/*.json')))} histories under {args.out}")
        code = 0
    except ScenarioFailed as error:
        print(f"{error}; the histories under {args.out} are unchanged", file=sys.stderr)
    except Exception as error:  # the lab itself did not start or stop: one line, no traceback
        print(f"recording failed: {type(error).__name__}: {error}", file=sys.stderr)
    except (KeyboardInterrupt, SystemExit):
        print(f"recording stopped; the histories under {args.out} are unchanged", file=sys.stderr)
    finally:
        if servers is not None:
            servers.stop()
            shutil.rmtree(servers.state_dir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the SDK can abort a finalizing interpreter (sdk-python#300)


if __name__ == "__main__":
    main()
