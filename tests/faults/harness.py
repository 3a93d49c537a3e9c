"""Seeded fault runs of the orchestrator itself: one GameDay blackholes a zone in AWS, GCP and Azure
at once, and one fault hits gameday (its worker, its workflow, its Temporal server or the clouds'
APIs) at a random moment. Whatever the fault, every cloud must end exactly as it began.

A `FaultPlan` is drawn from `random.Random(seed)`, so a failing run is repeated by its seed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from gameday.lab.faults import FaultRule
from gameday.lab.services import Service, start_temporal
from gameday.status import CLOSED_PHASES, GameDayInput, GameDayStatus, status_from_failure
from tests.support.clouds import CloudLab
from tests.support.gameday import abort, approve, runbook
from workflows.gameday import GameDayWorkflow
from workflows.watchdog import WatchdogStatus

ROOT = Path(__file__).resolve().parents[2]

KINDS = ("kill_worker", "cancel", "terminate", "abort", "throttle", "restart_temporal")
MOMENTS = ("approved", "applying", "holding", "restoring")
"""After the approval; once a fault is being prepared or applied; while the faults are held;
once a fault is being restored (or, if the restore was quicker than us, just after)."""

RUNS = int(os.environ.get("GAMEDAY_FAULT_RUNS") or 0)
"""0: the quick subset of `make test`; N: N seeded runs (`make faults`)."""
BASE_SEED = int(os.environ.get("GAMEDAY_FAULT_SEED") or 0)

WATCHDOG_POLL = timedelta(seconds=1)
RUN_DEADLINE = float(os.environ.get("GAMEDAY_FAULT_DEADLINE") or 150)
"""Seconds a run may take from start to a closed GameDay and watchdog; past it the run is hung."""

OUTCOMES: dict[str, set[str]] = {
    "kill_worker": {"completed"},
    "cancel": {"aborted", "completed"},
    "terminate": {"completed"},
    "abort": {"aborted", "completed"},
    "throttle": {"completed", "failed"},
    "restart_temporal": {"completed"},
}
"""How each kind of run may end (a terminated run has no outcome of its own): `completed` when the
fault comes after the GameDay's own restore; a throttled apply may give up (`failed`), but its
restore never does."""

THROTTLE_CODES = {
    "aws": {429: "RequestLimitExceeded", 503: "Unavailable"},
    "gcp": {429: "rateLimitExceeded", 503: "backendError"},
    "azure": {429: "TooManyRequests", 503: "ServiceUnavailable"},
}


@dataclass(frozen=True)
class FaultPlan:
    seed: int
    kind: str
    moment: str
    delay: float
    """Seconds between reaching the moment and injecting the fault."""
    hold: int
    """Seconds each zone stays blackholed."""
    storm: float = 0.0
    """For `throttle`: seconds the 30% failure storm lasts (sustained throttling starves the GCP
    restore: see test_throttled_restore.py)."""

    @classmethod
    def draw(cls, seed: int, kind: str | None = None, moment: str | None = None) -> FaultPlan:
        rng = random.Random(seed)
        kind = kind or rng.choice(KINDS)
        moment = moment or rng.choice(MOMENTS)
        hold = rng.randint(2, 4)
        delay = rng.uniform(0, hold * 0.8) if moment == "holding" else rng.uniform(0, 0.6)
        storm = rng.uniform(5, 15)
        return cls(seed, kind, moment, round(delay, 2), hold, round(storm, 1))

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.kind}-{self.moment}"


# --- processes this test starts: workers and a restartable Temporal server -------------------------


class WorkerProcess:
    """`python worker.py` on one task queue of one Temporal server, as an operator runs it."""

    def __init__(self, address: str, queue: str, env: dict[str, str], log: Path):
        self.address = address
        self.queue = queue
        self.env = {**env, "TEMPORAL_ADDRESS": address, "GAMEDAY_TASK_QUEUE": queue}
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "worker.py")], env=self.env, cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, activities in flight are simply lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def replace(self) -> None:
        self.kill()
        self.start()

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


class RestartableTemporal:
    """A dev server of this test's own with a sqlite file, so it can be killed and come back."""

    def __init__(self, state_dir: Path, port: int):
        self.state_dir = state_dir
        self.port = port
        self.service: Service | None = None
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RestartableTemporal:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.service = start_temporal(self.state_dir, self.port, persistent=True)
        return self

    def kill(self) -> None:
        assert self.service is not None
        try:
            os.killpg(self.service.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.service.process.wait(10)

    def restart(self) -> None:
        """SIGKILL the server, then start it again on the same port with the same database."""
        self.kill()
        deadline = time.monotonic() + 30
        while True:
            try:
                self.start()
                break
            except (RuntimeError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.restarts += 1

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@dataclass
class Orchestrator:
    """Where a run's GameDay runs: a client, and the worker subprocess that serves its queue."""

    client: Client
    worker: WorkerProcess
    temporal: RestartableTemporal | None = None


# --- the clouds --------------------------------------------------------------------------------


@dataclass
class Clouds:
    labs: list[CloudLab]

    def seed(self) -> None:
        for lab in self.labs:
            lab.seed()

    def snapshot(self) -> dict[str, Any]:
        return {lab.cloud: lab.snapshot() for lab in self.labs}

    def steps(self, hold: int) -> list[dict[str, Any]]:
        return [lab.zone_step(f"{lab.cloud}-zone", f"{hold}s") for lab in self.labs]

    def throttle(self, seed: int) -> None:
        """30% of every cloud call fails: half of those with 429, half with 503."""
        for index, lab in enumerate(self.labs):
            codes = THROTTLE_CODES[lab.cloud]
            lab.faults(FaultRule(status=429, code=codes[429], rate=0.15, retry_after=0),
                       FaultRule(status=503, code=codes[503], rate=0.15 / 0.85),
                       seed=seed * 10 + index)

    def clear_faults(self) -> None:
        for lab in self.labs:
            lab.faults()


def diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Every place where two snapshots differ, as `path: before -> after`."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            where = f"{path}/{key}"
            if key not in after:
                found.append(f"{where}: removed (was {before[key]!r})")
            elif key not in before:
                found.append(f"{where}: added {after[key]!r}")
            else:
                found += diff(before[key], after[key], where)
        return found
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


# --- one run -------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    plan: FaultPlan
    seconds: float = 0.0
    outcome: str | None = None
    restored: bool | None = None
    terminated: bool = False
    watchdog: WatchdogStatus | None = None
    injected_in: str | None = None
    """The GameDay's phase when the fault was injected."""
    leaks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Wrong outcomes and hangs: the run broke a promise other than 'no fault outlives its run'."""

    @property
    def exact(self) -> bool:
        return not self.leaks

    def summary(self) -> str:
        kind = self.plan.kind + (f" {self.plan.storm}s" if self.plan.kind == "throttle" else "")
        fault = f"{kind} at {self.plan.moment}+{self.plan.delay}s (phase {self.injected_in})"
        end = "terminated" if self.terminated else f"{self.outcome}, restored={self.restored}"
        if self.watchdog is not None and self.watchdog.fired:
            end += f"; watchdog fired: {self.watchdog.fired}"
        verdict = "restored exactly" if self.exact else f"LEAKED {len(self.leaks)} changes"
        return f"{self.plan.name}: {fault} -> {end}; {verdict} in {self.seconds:.1f}s"


TALLY: list[RunRecord] = []


def tally_line(records: list[RunRecord]) -> str:
    exact = sum(r.exact for r in records)
    line = f"{len(records)} runs, {exact} restored exactly, {len(records) - exact} leaked"
    wrong = sum(bool(r.problems) for r in records)
    if wrong:
        line += f", {wrong} with another problem"
    return line


def _moment_reached(moment: str, status: GameDayStatus) -> bool:
    if status.phase in CLOSED_PHASES or status.phase == "restoring":
        return True
    states = {s.state for s in status.steps}
    if moment == "approved":
        return True
    if moment == "applying":
        return bool(states - {"pending", "awaiting_approval"})
    if moment == "holding":
        return states <= {"active", "restoring", "restored", "failed", "skipped"}
    return bool(states & {"restoring", "restored", "failed"})


async def _query(handle: WorkflowHandle[Any, Any]) -> GameDayStatus | None:
    try:
        return await handle.query(GameDayWorkflow.status)
    except RPCError:
        return None


async def _wait_status(handle: WorkflowHandle[Any, Any], predicate: Callable[[GameDayStatus], bool],
                       deadline: float, what: str) -> GameDayStatus:
    last = None
    while time.monotonic() < deadline:
        last = await _query(handle) or last
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} not reached; last phase {last.phase if last else None}")


async def _inject(plan: FaultPlan, handle: WorkflowHandle[Any, Any], at: Orchestrator,
                  clouds: Clouds) -> asyncio.TimerHandle | None:
    """Inject the run's one fault; for a throttling storm, the timer that ends it."""
    kind = plan.kind
    if kind == "kill_worker":
        await asyncio.to_thread(at.worker.replace)
    elif kind == "cancel":
        await handle.cancel()
    elif kind == "terminate":
        await handle.terminate(reason=f"fault run {plan.name}")
    elif kind == "abort":
        await abort(handle, reason=f"fault run {plan.name}")
    elif kind == "throttle":
        clouds.throttle(plan.seed)
        return asyncio.get_running_loop().call_later(plan.storm, clouds.clear_faults)
    elif kind == "restart_temporal":
        assert at.temporal is not None, "restart_temporal runs on a server of its own"
        await asyncio.to_thread(at.temporal.restart)
    else:
        raise ValueError(f"unknown fault kind {kind}")
    return None


async def _result(handle: WorkflowHandle[Any, Any], deadline: float,
                  what: str) -> tuple[Any | None, bool]:
    """The run's result (None: no such run), and whether it was terminated; rides out a server
    restart by asking again."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what} did not close in time")
        try:
            return await asyncio.wait_for(handle.result(), remaining), False
        except TimeoutError:
            raise TimeoutError(f"{what} did not close in time") from None
        except WorkflowFailureError as error:
            if isinstance(error.cause, TerminatedError):
                return None, True
            carried = status_from_failure(error)  # closed as Failed (contract §7)
            if carried is None:
                raise
            return carried, False
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None, False
            await asyncio.sleep(0.5)


async def pending_work(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """What a run is waiting on: its pending activities with their attempt and last failure."""
    try:
        description = await handle.describe()
    except RPCError as error:
        return [f"describe failed: {error}"]
    found = []
    for pending in description.raw_description.pending_activities:
        failure = pending.last_failure.message if pending.HasField("last_failure") else ""
        found.append(f"pending {pending.activity_type.name} attempt {pending.attempt} "
                     f"state {pending.state}: {failure[:300]}")
    return found


async def _close_hung_run(handle: WorkflowHandle[Any, Any], client: Client) -> None:
    """A hung run: terminate it so its watchdog restores, and give that a bounded minute."""
    try:
        await handle.terminate(reason="hung fault run")
    except RPCError:
        pass
    watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
    try:
        await _result(watchdog, time.monotonic() + 60, "the watchdog of a hung run")
    except (TimeoutError, WorkflowFailureError):
        pass


async def _drive(plan: FaultPlan, at: Orchestrator, clouds: Clouds, record: RunRecord) -> None:
    client = at.client
    book = runbook({"parallel": clouds.steps(plan.hold)},
                   name=f"faults-{plan.kind.replace('_', '-')}")
    handle = await client.start_workflow(
        GameDayWorkflow.run,
        GameDayInput(runbook=book, source="tests/faults", started_by="pytest",
                     watchdog_poll=WATCHDOG_POLL),
        id=f"faults-{plan.name}-{uuid.uuid4().hex[:6]}", task_queue=at.worker.queue)
    deadline = time.monotonic() + RUN_DEADLINE
    storm = None
    try:
        await _wait_status(handle, lambda s: s.phase == "awaiting_approval", deadline, "approval gate")
        await approve(handle)
        reached = await _wait_status(handle, lambda s: _moment_reached(plan.moment, s), deadline,
                                     plan.moment)
        await asyncio.sleep(plan.delay)
        now = await _query(handle)
        record.injected_in = (now or reached).phase
        try:
            storm = await _inject(plan, handle, at, clouds)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            record.injected_in = "closed"  # the GameDay finished before the fault came
        result, record.terminated = await _result(handle, deadline, "the GameDay")
        watchdog = client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        record.watchdog, _ = await _result(watchdog, deadline, "the watchdog")
    except TimeoutError as error:
        record.problems.append(f"hung: {error}")
        record.problems += await pending_work(handle)
        status = await _query(handle)
        if status is not None:
            record.problems += [f"event {e.kind}: {e.detail}" for e in status.events[-8:]]
        clouds.clear_faults()
        await _close_hung_run(handle, client)
        return
    finally:
        if storm is not None:
            storm.cancel()
        clouds.clear_faults()
    if result is not None:
        record.outcome, record.restored = result.outcome, result.restored
        if result.outcome not in OUTCOMES[plan.kind]:
            record.problems.append(f"outcome {result.outcome} ({result.reason})")
        if not result.restored:
            record.problems.append(f"the GameDay reports restored={result.restored}")
    elif not record.terminated:
        record.problems.append("the GameDay vanished")
    elif plan.kind != "terminate":
        record.problems.append("the GameDay was terminated, but not by this run")
    if record.watchdog is not None and record.watchdog.in_effect:
        record.problems.append(f"the watchdog ended with faults in effect: {record.watchdog.in_effect}")


def run_once(plan: FaultPlan, at: Orchestrator, clouds: Clouds,
             run: Callable[[Awaitable[None], float], None]) -> RunRecord:
    """Drive one seeded run to its end and compare every cloud with its snapshot from before."""
    record = RunRecord(plan)
    at.worker.ensure_running()
    started = time.monotonic()
    before = clouds.snapshot()
    try:
        run(_drive(plan, at, clouds, record), RUN_DEADLINE + 90)
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        record.problems.append(f"the run broke: {type(error).__name__}: {error}")
    finally:
        clouds.clear_faults()
        record.seconds = time.monotonic() - started
        record.leaks = diff(before, clouds.snapshot())
        TALLY.append(record)
    if record.leaks:
        clouds.seed()  # the next run starts from a clean lab, whatever this one left behind
    return record
