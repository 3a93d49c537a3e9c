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

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gameday.leases import (  # noqa: F401  (re-exported: the lease desk's payloads)
        LeaseAnswer,
        LeaseBatch,
        LeaseBatchAnswer,
        LeaseRequest,
        LeaseState,
        lease_key,
        leases_id,
        overlaps,
    )



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
