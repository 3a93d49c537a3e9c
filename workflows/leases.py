"""GameDayLeases: one GameDay at a time per zone or region.

One workflow per deployment (task queue), `gameday-leases-<queue>`, holds, for every zone
(`cloud:account:region:zone`) or whole region (`...:region:*`) under a fault, the run that holds
it. Updates make acquire and release consistent; a run that died without releasing is evicted by
the next acquirer once Temporal says neither the run nor its dead man's switch is still running.

Workers send their requests in batches (`decide`): Temporal admits only a few Updates in flight
per workflow (10 by default) and aborts the rest when many arrive at once, so each worker process
keeps one Update in flight and queues what arrives meanwhile into the next one.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow


def leases_id(task_queue: str) -> str:
    return f"gameday-leases-{task_queue}"


class LeaseRequest(BaseModel):
    run_id: str
    keys: list[str]
    evict: list[str] = []
    """Runs the asker found dead (neither the run nor its watchdog running): their leases are
    dropped before this request is decided."""


class LeaseAnswer(BaseModel):
    granted: bool
    conflicts: dict[str, str] = {}
    """Each key asked for that overlaps one held by another run, with that run's id."""


class LeaseBatch(BaseModel):
    """Requests of one worker process, decided in one Update: the releases first, then each
    acquire in order (of two overlapping acquires, the first is granted)."""

    acquire: list[LeaseRequest] = []
    release: list[str] = []
    """Run ids whose every lease ends."""


class LeaseBatchAnswer(BaseModel):
    answers: list[LeaseAnswer] = []
    """One per acquire, in order."""
    released: list[int] = []
    """How many keys each release freed, in order."""


class LeaseState(BaseModel):
    holders: dict[str, str] = {}


def overlaps(a: str, b: str) -> bool:
    """Same cloud, account and region, and the same zone or either is the whole region."""
    *where_a, zone_a = a.split(":")
    *where_b, zone_b = b.split(":")
    return where_a == where_b and (zone_a == zone_b or "*" in (zone_a, zone_b))


def lease_key(cloud: str, account: str, region: str, zone: str | None) -> str:
    return f"{cloud}:{account}:{region}:{zone or '*'}"


@workflow.defn(name="GameDayLeases")
class GameDayLeases:
    @workflow.init
    def __init__(self, state: LeaseState) -> None:
        self._holders = dict(state.holders)

    @workflow.update
    def decide(self, batch: LeaseBatch) -> LeaseBatchAnswer:
        released = [self._release(run_id) for run_id in batch.release]
        return LeaseBatchAnswer(answers=[self._acquire(request) for request in batch.acquire],
                                released=released)

    # One request each: what workers of an earlier version send, during a rolling upgrade.
    @workflow.update
    def acquire(self, request: LeaseRequest) -> LeaseAnswer:
        return self._acquire(request)

    @workflow.update
    def release(self, run_id: str) -> int:
        return self._release(run_id)

    def _acquire(self, request: LeaseRequest) -> LeaseAnswer:
        for run_id in request.evict:
            if run_id != request.run_id:
                self._release(run_id)
        conflicts = {key: holder for key in request.keys for held, holder in self._holders.items()
                     if holder != request.run_id and overlaps(key, held)}
        if conflicts:
            return LeaseAnswer(granted=False, conflicts=conflicts)
        for key in request.keys:
            self._holders[key] = request.run_id
        return LeaseAnswer(granted=True)

    def _release(self, run_id: str) -> int:
        held = [key for key, holder in self._holders.items() if holder == run_id]
        for key in held:
            del self._holders[key]
        return len(held)

    @workflow.query
    def held(self) -> dict[str, str]:
        return dict(self._holders)

    @workflow.run
    async def run(self, state: LeaseState) -> None:
        await workflow.wait_condition(
            lambda: workflow.info().is_continue_as_new_suggested() and workflow.all_handlers_finished())
        workflow.continue_as_new(LeaseState(holders=self._holders))
