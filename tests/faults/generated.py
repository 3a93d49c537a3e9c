"""Drive one generated runbook (tests/faults/generate.py) on the real dev server and lab.

The approvals come as an operator sends them: each gate with `approvals_required: 2` first gets
two spellings of one person (stray spaces, odd case), then a second person; sometimes an outsider
tries first. At the run's seeded moment it is terminated (its watchdog restores), cancelled,
aborted, or its worker is SIGKILLed and replaced, or nothing happens. Then, for every run: every
cloud exactly as before (full snapshot diff), no approval counted twice, and the GameDay and its
watchdog closed within a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from gameday.runbook import Runbook
from gameday.status import CLOSED_PHASES, GameDayInput, GameDayStatus
from tests.faults.generate import OUTSIDER, GeneratedRun, spelling
from tests.faults.harness import WATCHDOG_POLL, Clouds, Orchestrator, _query, _result, diff, pending_work
from tests.support.clouds import traffic_snapshot
from workflows.gameday import GameDayWorkflow
from workflows.watchdog import WatchdogStatus


def _updates() -> set[str]:
    """The Updates the GameDay workflow answers (contract §9), if this tree has them yet."""
    definition = workflow._Definition.from_class(GameDayWorkflow)
    return set(definition.updates) if definition is not None else set()


UPDATES = _updates()

RUN_DEADLINE = 150.0
"""Seconds from start until the GameDay and its watchdog are closed (the watchdog may wait 45 s
for an apply in flight to land); past it the run is hung."""

SIGNAL_SEEN = 20.0
"""Seconds to wait for the workflow to record an approval signal (a replaced worker is slow)."""

OUTCOMES: dict[str, set[str]] = {
    "nothing": {"completed"},
    "kill_worker": {"completed"},
    "terminate": {"completed"},
    "cancel": {"aborted", "completed"},
    "abort": {"aborted", "completed"},
}
"""How each kind of run may end when it is not terminated: `completed` when the interruption
came after the end."""

REFUSALS = ("refused", "already blackholed", "already holds", "already cut",
            "would leave backend service")
"""A run refused before any change (a unit id two steps would share), a step whose targets
another step of the same run already holds (refused by its prepare), or an evacuation that would
leave a load balancer no capacity outside the region (two generated evacuations of one backend
service's regions), ends `failed` and restores: that keeps the promise."""


def identity(value: str | None) -> str:
    return (value or "").strip().casefold()


@dataclass
class GeneratedRecord:
    run: GeneratedRun
    seconds: float = 0.0
    outcome: str | None = None
    reason: str | None = None
    terminated: bool = False
    interrupted_in: str = "not reached: the run ended first"
    """The GameDay's phase when the interruption came (`closed`: it had just ended)."""
    drifted: dict[str, str] = field(default_factory=dict)
    """Cloud → the resource created while a fault held."""
    watchdog: WatchdogStatus | None = None
    leaks: list[str] = field(default_factory=list)
    double_counted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.leaks

    def summary(self) -> str:
        when = "before approval" if self.run.before_approval else f"+{self.run.delay}s"
        end = "terminated" if self.terminated else f"{self.outcome}"
        if self.outcome == "failed":
            end += f" ({self.reason})"
        if self.watchdog is not None and self.watchdog.fired:
            end += "; watchdog fired"
        drift = f"; drift in {', '.join(self.drifted)}" if self.drifted else ""
        verdict = "restored exactly" if self.exact else f"LEAKED {len(self.leaks)} changes"
        if self.double_counted:
            verdict += f", DOUBLE-COUNTED {len(self.double_counted)}"
        steps = len(self.run.runbook.all_steps())
        return (f"{self.run.name}: {steps} steps, {self.run.interruption} {when} (phase "
                f"{self.interrupted_in}){drift} -> {end}; {verdict} in {self.seconds:.1f}s")


GENERATED: list[GeneratedRecord] = []


def generated_tally(records: list[GeneratedRecord]) -> list[str]:
    exact = sum(r.exact for r in records)
    doubled = sum(bool(r.double_counted) for r in records)
    line = (f"{len(records)} runs, {exact} restored exactly, {len(records) - exact} leaked, "
            f"{doubled} double-counted")
    wrong = sum(bool(r.problems) for r in records)
    if wrong:
        line += f", {wrong} with another problem"
    kinds = Counter(r.run.interruption for r in records)
    phases = Counter(r.interrupted_in for r in records if r.run.interruption != "nothing")
    refused = sum(r.run.refused for r in records)
    return [f"interruptions: {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}; "
            f"documents the model refused on the way: {refused}",
            f"phase at the interruption: {', '.join(f'{k} {n}' for k, n in sorted(phases.items()))}",
            line]


# --- what a run's final status must show ---------------------------------------------------------


def _gate_of(step: str | None) -> str:
    return step or "start"


def _opened(status: GameDayStatus, gate: str) -> bool:
    if gate == "start":
        return any(e.kind == "phase" and e.detail == "running" for e in status.events)
    return any(e.step == gate and e.kind in ("injected", "waiting", "restoring", "restored")
               for e in status.events)


def _open_now(status: GameDayStatus, gate: str) -> bool:
    """Whether the gate has let its run or step go on (read from the state the same workflow task
    that opened it leaves behind)."""
    if gate == "start":
        return status.phase in ("running", "restoring")
    return any(s.id == gate and s.state in ("injecting", "active", "restoring", "restored")
               for s in status.steps)


def counting_problems(status: GameDayStatus, book: Runbook) -> list[str]:
    """Approvals counted twice, counted from outside `approvers`, or a gate opened on too few."""
    approvers = {identity(a) for a in book.approvers}
    found: list[str] = []
    by_gate: dict[str, list[str]] = {}
    for event in status.events:
        if event.kind == "approved":
            by_gate.setdefault(_gate_of(event.step), []).append(event.by or event.detail.split(" ")[0])
    for gate, people in by_gate.items():
        normalized = [identity(p) for p in people]
        if len(set(normalized)) != len(normalized):
            found.append(f"gate {gate}: approvals {people!r} count one person more than once")
        outsiders = sorted(set(normalized) - approvers)
        if outsiders:
            found.append(f"gate {gate}: approvals counted from outside the approvers: {outsiders}")
    for step in status.steps:
        normalized = [identity(p) for p in step.approved_by]
        if len(set(normalized)) != len(normalized):
            found.append(f"step {step.id}: approved_by {step.approved_by!r} repeats a person")
    gates = ["start"] + [s.id for s in book.all_steps() if s.approval == "required"]
    for gate in gates:
        distinct = len({identity(p) for p in by_gate.get(gate, [])})
        if _opened(status, gate) and distinct < book.approvals_required:
            found.append(f"gate {gate} opened on {distinct} distinct approver(s); "
                         f"{book.approvals_required} required")
    return found


# --- driving one run -------------------------------------------------------------------------------


async def _final(handle: WorkflowHandle[Any, Any], deadline: float) -> tuple[GameDayStatus | None, bool]:
    """The run's final status, from its result or from a `GameDayFailed` failure (contract §7);
    None and True when it was terminated."""
    from gameday import status as status_module

    from_failure = getattr(status_module, "status_from_failure", None)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the GameDay did not close in time")
        try:
            return await asyncio.wait_for(handle.result(), remaining), False
        except TimeoutError:
            raise TimeoutError("the GameDay did not close in time") from None
        except WorkflowFailureError as error:
            if isinstance(error.cause, TerminatedError):
                return None, True
            carried = from_failure(error) if from_failure else None
            if carried is None:
                cause = error.cause
                raise RuntimeError(f"the GameDay closed as {type(cause).__name__} in Temporal, not "
                                   f"with its result: {cause}") from error
            return carried, False
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None, False
            await asyncio.sleep(0.5)


async def _wait(handle: WorkflowHandle[Any, Any], predicate: Callable[[GameDayStatus], bool],
                timeout: float) -> GameDayStatus | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await _query(handle)
        if status is not None and predicate(status):
            return status
        await asyncio.sleep(0.05)
    return None


class Driver:
    """One generated run: its approver, its interruption and its drift, as concurrent tasks."""

    def __init__(self, run: GeneratedRun, at: Orchestrator, clouds: Clouds, record: GeneratedRecord):
        self.run = run
        self.book = run.runbook
        self.at = at
        self.clouds = clouds
        self.record = record
        self.rng = random.Random(run.spellings)
        self.interrupted = asyncio.Event()
        self.handle: WorkflowHandle[Any, Any] | None = None

    async def start(self) -> WorkflowHandle[Any, Any]:
        self.handle = await self.at.client.start_workflow(
            GameDayWorkflow.run,
            GameDayInput(runbook=self.book, source="tests/faults/generated", started_by="pytest",
                         watchdog_poll=WATCHDOG_POLL),
            id=f"generated-{self.run.name}-{uuid.uuid4().hex[:6]}", task_queue=self.at.worker.queue)
        return self.handle

    async def _send(self, name: str, payload: dict[str, Any]) -> bool:
        """Send `name` as a raw payload, the way `temporal workflow signal` or the UI sends it
        (not normalised by this side's models): as a signal, or, half the time when the workflow
        has one, as an Update of that name. False once the run is closed."""
        assert self.handle is not None
        as_update = name in UPDATES and self.rng.random() < 0.5
        try:
            if as_update:
                await asyncio.wait_for(self.handle.execute_update(name, payload), SIGNAL_SEEN)
            else:
                await self.handle.signal(name, payload)
            return True
        except TimeoutError:
            return True  # no worker answered yet (one was killed): the Update is still delivered
        except WorkflowUpdateFailedError:
            return True  # refused by the validator or the handler: recorded, or not, as it says
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise

    async def _approve(self, step: str | None, approver: str) -> bool:
        return await self._send("approve", {"approver": approver, "step": step})

    def _answers(self, status: GameDayStatus | None, step: str | None) -> int:
        if status is None:
            return 0
        return sum(1 for e in status.events if e.kind in ("approved", "approval_refused")
                   and e.step == step)

    async def approve_gates(self) -> None:
        """Approve every gate as it comes up, trying to count one person twice on the way."""
        assert self.handle is not None
        handled: set[str] = set()
        if self.run.before_approval:
            await self.interrupted.wait()
        while True:
            status = await _query(self.handle)
            if status is not None and status.phase in CLOSED_PHASES:
                return
            gate = status.pending_approval if status else None
            if gate and gate not in handled:
                handled.add(gate)
                if not await self.approve_gate(gate, status):
                    return
            await asyncio.sleep(0.05)

    async def approve_gate(self, gate: str, status: GameDayStatus | None) -> bool:
        assert self.handle is not None
        step = None if gate == "start" else gate
        people = [identity(a) for a in self.book.approvers]
        order = self.rng.sample(people, len(people))
        seen = self._answers(status, step)
        if self.rng.random() < 0.3:
            if not await self._approve(step, spelling(self.rng, OUTSIDER)):
                return False
            seen += 1
        first = order[0]
        if self.book.approvals_required == 1:
            return await self._approve(step, spelling(self.rng, first))
        one = spelling(self.rng, first)
        other = next((s for s in (spelling(self.rng, first) for _ in range(20)) if s != one),
                     first + " " if one != first + " " else first.upper())
        for spelled in (one, other):
            if not await self._approve(step, spelled):
                return False
        answered = await _wait(self.handle, lambda s: self._answers(s, step) >= seen + 2
                               or s.phase in CLOSED_PHASES, SIGNAL_SEEN)
        if answered is not None and answered.phase not in CLOSED_PHASES \
                and _open_now(answered, gate) and not self.interrupted.is_set():
            self.record.double_counted.append(
                f"gate {gate} opened on two spellings of one person: {one!r}, {other!r}")
        return await self._approve(step, spelling(self.rng, order[1]))

    async def interrupt(self) -> None:
        assert self.handle is not None
        run = self.run
        if run.before_approval:
            reached = await _wait(self.handle, lambda s: s.phase != "planning", 60)
            await asyncio.sleep(min(run.delay, 1.0))
        else:
            reached = await _wait(self.handle, lambda s: s.phase not in ("planning", "awaiting_approval"),
                                  90)
            await asyncio.sleep(run.delay)
        now = await _query(self.handle)
        self.record.interrupted_in = (now or reached).phase if (now or reached) else "unknown"
        try:
            await self._interrupt(run.interruption)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            self.record.interrupted_in = "closed"
        finally:
            self.interrupted.set()

    async def _interrupt(self, kind: str) -> None:
        assert self.handle is not None
        if kind == "terminate":
            await self.handle.terminate(reason=f"generated run {self.run.name}")
        elif kind == "cancel":
            await self.handle.cancel()
        elif kind == "abort":
            who = spelling(self.rng, self.rng.choice([*self.book.approvers, OUTSIDER]).strip())
            if not await self._send("abort", {"by": who, "reason": f"generated run {self.run.name}"}):
                raise RPCError("the GameDay has closed", RPCStatusCode.NOT_FOUND, b"")
        elif kind == "kill_worker":
            await asyncio.to_thread(self.at.worker.kill)
            await asyncio.sleep(self.rng.uniform(0, 2))
            await asyncio.to_thread(self.at.worker.start)
        elif kind != "nothing":
            raise ValueError(f"unknown interruption {kind}")

    async def drift(self, cloud: str) -> None:
        """Once a fault of `cloud` holds, create one more target there for a drift round to find."""
        assert self.handle is not None
        steps = {s.id for s in self.book.fault_steps() if s.target.cloud == cloud}
        held = await _wait(self.handle, lambda s: any(x.id in steps and x.state == "active"
                                                      for x in s.steps)
                           or s.phase in CLOSED_PHASES, 60)
        if held is None or held.phase in CLOSED_PHASES:
            return
        lab = next(lab for lab in self.clouds.labs if lab.cloud == cloud)
        self.record.drifted[cloud] = await asyncio.to_thread(lab.add_target)


async def drive(run: GeneratedRun, at: Orchestrator, clouds: Clouds, record: GeneratedRecord) -> None:
    driver = Driver(run, at, clouds, record)
    handle = await driver.start()
    deadline = time.monotonic() + RUN_DEADLINE
    helpers = [asyncio.create_task(driver.approve_gates()), asyncio.create_task(driver.interrupt())]
    helpers += [asyncio.create_task(driver.drift(cloud)) for cloud in run.drift_clouds]
    status: GameDayStatus | None = None
    try:
        status, record.terminated = await _final(handle, deadline)
        watchdog = at.client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        record.watchdog, _ = await _result(watchdog, deadline, "the watchdog")
    except TimeoutError as error:
        record.problems.append(f"hung: {error}")
        record.problems += await pending_work(handle)
        last = await _query(handle)
        if last is not None:
            record.problems += [f"event {e.kind}: {e.detail}" for e in last.events[-8:]]
        try:
            await handle.terminate(reason="hung generated run")
        except RPCError:
            pass
        watchdog = at.client.get_workflow_handle(f"{handle.id}-watchdog", result_type=WatchdogStatus)
        try:
            await _result(watchdog, time.monotonic() + 75, "the watchdog of a hung run")
        except (TimeoutError, WorkflowFailureError):
            pass
    finally:
        for helper in helpers:
            helper.cancel()
        for helper in helpers:
            try:
                await helper
            except asyncio.CancelledError:
                pass
            except Exception as error:  # a helper that broke is a finding, not a crash
                record.problems.append(f"helper broke: {type(error).__name__}: {error}")
    if record.terminated:
        status = await _query(handle)  # a closed run still answers its query from history
    _judge(run, status, record)


def _judge(run: GeneratedRun, status: GameDayStatus | None, record: GeneratedRecord) -> None:
    if status is not None:
        record.double_counted += counting_problems(status, run.runbook)
    if record.terminated:
        if run.interruption != "terminate":
            record.problems.append("the GameDay was terminated, but not by this run")
    elif status is None:
        if not any(p.startswith("hung") for p in record.problems):
            record.problems.append("the GameDay vanished")
    else:
        record.outcome, record.reason = status.outcome, status.reason
        refused = status.outcome == "failed" and any(o in (status.reason or "") for o in REFUSALS)
        if status.outcome not in OUTCOMES[run.interruption] and not refused:
            record.problems.append(f"outcome {status.outcome} ({status.reason})")
        if not status.restored:
            record.problems.append(f"the GameDay reports restored={status.restored}")
    if record.watchdog is not None and record.watchdog.in_effect:
        record.problems.append(f"the watchdog ended with faults in effect: {record.watchdog.in_effect}")


# --- the clouds around one run -----------------------------------------------------------------


def _without_drifted(cloud: str, resource: str, before: Any, after: Any) -> tuple[Any, list[str]]:
    """`after` without the resource created mid-run, and what is wrong with that resource."""
    problems: list[str] = []
    if cloud == "aws":
        acl = after["associations"].pop(resource, None)
        if acl not in before["acls"] or before["acls"][acl]["tags"].get("gameday:run"):
            problems.append(f"/aws/associations/{resource}: ends on {acl!r}, not its VPC's own ACL")
    elif cloud == "gcp":
        instance = after["instances"].pop(resource, None)
        if instance is None or instance["tags"] != ["web"]:
            problems.append(f"/gcp/instances/{resource}: tags {instance and instance['tags']!r}, "
                            "not ['web'] as created")
    else:
        nic = resource.rsplit("/", 1)[-1]
        found = after["nics"].pop(nic, None)
        if found is None or found["nsg"] is not None:
            problems.append(f"/azure/nics/{nic}: ends on NSG {found and found['nsg']!r}, not none")
    return after, problems


def snapshot(clouds: Clouds) -> dict[str, Any]:
    """Everything a blackhole or an evacuation can change, in every cloud of the lab."""
    return {**clouds.snapshot(), "traffic": traffic_snapshot(clouds.labs[0].servers)}


def run_generated(run: GeneratedRun, at: Orchestrator, clouds: Clouds,
                  loop: Callable[[Awaitable[None], float], None]) -> GeneratedRecord:
    """Drive one generated run to its end and compare every cloud with its snapshot from before."""
    record = GeneratedRecord(run)
    at.worker.ensure_running()
    started = time.monotonic()
    before = snapshot(clouds)
    try:
        loop(drive(run, at, clouds, record), RUN_DEADLINE + 120)
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        record.problems.append(f"the run broke: {type(error).__name__}: {error}")
    finally:
        at.worker.ensure_running()
        record.seconds = time.monotonic() - started
        after = snapshot(clouds)
        for cloud, resource in record.drifted.items():
            after[cloud], problems = _without_drifted(cloud, resource, before[cloud], after[cloud])
            record.leaks += problems
        record.leaks += diff(before, after)
        GENERATED.append(record)
    touched = set(record.drifted) | ({lab.cloud for lab in clouds.labs} if record.leaks else set())
    for lab in clouds.labs:
        if lab.cloud in touched:
            lab.seed()  # the next run starts from the lab as seeded
    return record
