"""GameDayLeases: one GameDay at a time per zone or region.

One workflow per deployment (task queue), `gameday-leases-<queue>`, holds, for every zone
(`cloud:account:region:zone`, `...:zone@use1-az6` when its physical zone is known) or whole
region (`...:region:*`) under a fault, the run that holds it; `gameday.leases.overlaps` says which
keys cover one place (physical zones, across accounts). Updates make acquire and release
consistent; a run that died without releasing is evicted by the next acquirer once Temporal says
neither the run nor its dead man's switch is still running.

Workers send their requests in batches (`decide`): Temporal admits only a few Updates in flight
per workflow (10 by default) and aborts the rest when many arrive at once, so each worker process
keeps one Update in flight and queues what arrives meanwhile into the next one.

`RunLeases` is a GameDay's side of the desk: it takes the zones and regions of its plan before any
change and gives them back once every fault is restored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from gameday.leases import (  # noqa: F401  (re-exported: the lease desk's payloads)
        PHYSICAL_ZONES_PATCH,
        LeaseAnswer,
        LeaseBatch,
        LeaseBatchAnswer,
        LeaseRequest,
        LeaseState,
        describe_key,
        lease_key,
        leases_id,
        overlaps,
        overlaps_by_name,
    )
    from gameday.plan import ResolvedStep
    from workflows.errors import Refused, describe
    from workflows.status_board import StatusBoard


def plan_lease_keys(plan: Iterable[ResolvedStep]) -> list[str]:
    """The zones (and whole regions) a plan acts on, as lease keys, each once, sorted; a zone
    whose physical identity the resolve learned carries it (`gameday.leases.lease_key`)."""
    return sorted({lease_key(r.scope.cloud, r.scope.account, r.scope.region, r.scope.zone,
                             r.scope.zone_id) for r in plan})


def held_elsewhere(conflicts: dict[str, str]) -> str:
    """The refusal of a lease request, naming each zone or region asked for and its holder."""
    held = "; ".join(f"{describe_key(key)} is held by GameDay {holder}"
                     for key, holder in sorted(conflicts.items()))
    return f"refused: {held}; wait for it to end or abort it"


class RunLeases:
    """The leases of one GameDay: taken before any change, released once every fault is restored.
    A run that never releases them is evicted by the next acquirer once neither it nor its dead
    man's switch still runs."""

    def __init__(self, run_id: str, board: StatusBoard) -> None:
        self.run_id = run_id
        self.board = board
        self.held = False

    async def take(self, plan: Iterable[ResolvedStep]) -> None:
        """One GameDay at a time per zone or region: `Refused`, naming the holder, before any
        change (every step is then skipped)."""
        keys = plan_lease_keys(plan)
        if not keys:
            return
        answer = await workflow.execute_activity(
            "gameday.acquire_leases", LeaseRequest(run_id=self.run_id, keys=keys),
            result_type=LeaseAnswer, start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=5), summary="lease the zones and regions")
        if not answer.granted:
            self.board.skip_all()
            raise Refused(held_elsewhere(answer.conflicts))
        self.held = True
        self.board.event("leased", f"holding {', '.join(keys)}")

    async def release(self) -> None:
        """Give back what `take` got; a release that fails is recorded, and the next acquirer
        reclaims the leases."""
        if not self.held:
            return
        try:
            await workflow.execute_activity(
                "gameday.release_leases", self.run_id, result_type=int,
                start_to_close_timeout=timedelta(minutes=1), retry_policy=RetryPolicy(maximum_attempts=5),
                summary="release the zones and regions")
        except ActivityError as error:
            self.board.event("lease_release_failed",
                             f"{describe(error)}; the next GameDay reclaims them")


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
        # a desk whose history began before physical zones keeps its rule until continue-as-new
        rule = overlaps if workflow.patched(PHYSICAL_ZONES_PATCH) else overlaps_by_name
        conflicts = {key: holder for key in request.keys for held, holder in self._holders.items()
                     if holder != request.run_id and rule(key, held)}
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
