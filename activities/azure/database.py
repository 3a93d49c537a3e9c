"""Azure database failover (contract §10, `failover_database`): the zone's PostgreSQL flexible
servers fail over to their standby in another zone (restart with planned failover), and back.

Before: each named server has zone-redundant HA with a `Healthy` standby; those whose primary is
in the zone (`availabilityZone`) are the targets, the others are left out.
After apply: each target carries `gameday-run`, `gameday-step`, `gameday-restore-zone` (its
primary zone before) and `gameday-fail-back` (set before it is touched), and was restarted with
`PlannedFailover`: its primary is now in its former standby zone.
After restore: with `fail_back: true` (the default) it failed over again until its primary is in
the recorded zone; with `fail_back: false` it stays where the failover put it. gameday's tags are
gone either way, and `gameday sweep` can do the same from the tags alone.

A named server that does not exist is TargetNotFound; one without zone-redundant HA, or whose
standby is not `Healthy`, or that is not `Ready`, is refused before anything changes; one held by
another run is refused. A server restarting or failing over when gameday arrives (or answering
409 `ServerIsBusy`) is waited for, polled with heartbeats; each restart is a long-running
operation followed to its end through `Azure-AsyncOperation`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
from azure.mgmt.postgresqlflexibleservers.models import RestartParameter, Server, ServerForPatch
from pydantic import BaseModel

from activities.azure.api import (
    MAX_TAG_VALUE,
    TAG_RUN,
    TAG_STEP,
    AzureConnection,
    find,
    id_parts,
    listing,
    normalize_location,
    text,
    write,
)
from activities.azure.power import follow
from activities.base import fan_out, parallel_calls, poll_until, progress
from gameday.errors import CloudError, Refused, TargetNotFound
from gameday.plan import (
    Checkpoint,
    FaultRequest,
    FaultResult,
    PrepareRequest,
    ResolvedStep,
    Resource,
    Scope,
    StepRequest,
)
from gameday.sweep import Leftover
from gameday.targets import AzureDatabaseTarget

TAG_ZONE = "gameday-restore-zone"
TAG_FAIL_BACK = "gameday-fail-back"
MARKS = (TAG_RUN, TAG_STEP, TAG_ZONE, TAG_FAIL_BACK)
SERVER_TYPE = "Microsoft.DBforPostgreSQL/flexibleServers"
BUSY_STATES = {"Restarting", "Updating", "Starting", "Stopping", "Provisioning", "Migrating"}
BUSY_HA = {"FailingOver", "CreatingStandby", "ReplicatingData", "RemovingStandby",
           "RecreatingStandby", "ComputeUpdatingByFailover"}
"""Server and HA states that end by themselves: waited for, never acted on."""
BUSY_CODES = ("ServerIsBusy", "ServerIsNotReady", "Conflict")
WAIT_LIMIT = 900.0
"""Seconds one attempt waits for a server to settle (Azure: a failover takes a minute or two)."""


def poll_interval() -> float:
    """Seconds between two reads of a server that has not settled (`GAMEDAY_AZURE_POLL_SECONDS`)."""
    return float(os.environ.get("GAMEDAY_AZURE_POLL_SECONDS") or 0.5)


class FailedOverServer(BaseModel):
    """One server the fault fails over: its primary zone and tags before."""

    id: str
    name: str
    resource_group: str
    zone: str
    standby_zone: str
    tags: dict[str, str]
    fail_back: bool


class FailoverState(BaseModel):
    servers: list[FailedOverServer]


def ha_mode(server: Server) -> str:
    return text(server.high_availability.mode) if server.high_availability else "Disabled"


def ha_state(server: Server) -> str:
    return text(server.high_availability.state) if server.high_availability else ""


def standby_zone(server: Server) -> str:
    return str(server.high_availability.standby_availability_zone or "") \
        if server.high_availability else ""


def busy(server: Server) -> bool:
    return text(server.state) in BUSY_STATES or ha_state(server) in BUSY_HA


def without_marks(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k not in MARKS}


class AzureDatabaseFailover:
    """Flexible servers: each whose primary is in the zone fails over to its standby, and back."""

    State = FailoverState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def _servers(self, subscription: str) -> PostgreSQLManagementClient:
        return self.connection.client(PostgreSQLManagementClient, subscription)

    # --- reading ----------------------------------------------------------------------------

    def read(self, subscription: str, group: str, name: str) -> Server | None:
        client: PostgreSQLManagementClient = self._servers(subscription)
        return find(f"reading PostgreSQL flexible server {name}",
                    lambda: client.servers.get(group, name))

    def settled(self, subscription: str, group: str, name: str,
                done: Callable[[Server], bool] = lambda server: True) -> Server | None:
        """The server once it is neither restarting nor failing over and `done` holds (None: it
        does not exist), read every `poll_interval()` seconds with heartbeats meanwhile."""
        seen: list[Server | None] = [None]

        def ready() -> bool:
            seen[0] = self.read(subscription, group, name)
            return seen[0] is None or (not busy(seen[0]) and done(seen[0]))

        poll_until(ready, limit=WAIT_LIMIT, interval=poll_interval(), still=lambda: (
            f"PostgreSQL flexible server {name} is still {text(seen[0].state) if seen[0] else '?'}"
            f" (HA {ha_state(seen[0]) if seen[0] else '?'}) after {WAIT_LIMIT:.0f} s"))
        return seen[0]

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The named servers whose primary is in the zone, each with the zone it fails over to;
        a server led from another zone is left out, one that cannot fail over is refused."""
        target = request.step.target
        assert isinstance(target, AzureDatabaseTarget)
        group, step_id = target.resource_group, request.step.id
        resources: list[Resource] = []
        for name in target.servers:
            server = self.settled(target.subscription, group, name)
            if server is None:
                raise TargetNotFound(f"step {step_id}: PostgreSQL flexible server {name} does not "
                                     f"exist in resource group {group}")
            self._check(step_id, target, server)
            if str(server.availability_zone or "") != target.zone:
                continue
            if request.only_new and (server.tags or {}).get(TAG_RUN) == request.run_id:
                continue
            resources.append(Resource(
                id=str(server.id), kind="postgresql-flexible-server", name=name,
                detail={"zone": target.zone, "fail_over_zone": standby_zone(server),
                        "state": text(server.state), "high_availability": ha_state(server)}))
        return ResolvedStep(step_id=step_id, action="failover_database", scope=Scope.of(target),
                            resources=resources)

    @staticmethod
    def _check(step_id: str, target: AzureDatabaseTarget, server: Server) -> None:
        """Refused (before any change) unless the server can fail over across zones now."""
        name = server.name
        if target.region and normalize_location(server.location) != normalize_location(target.region):
            raise Refused(f"step {step_id}: PostgreSQL flexible server {name} is in "
                          f"{server.location}, not in {target.region}")
        if ha_mode(server) != "ZoneRedundant":
            raise Refused(f"step {step_id}: PostgreSQL flexible server {name} has high "
                          f"availability {ha_mode(server)}, not ZoneRedundant: it has no standby in "
                          "another zone to fail over to")
        if ha_state(server) != "Healthy" or text(server.state) != "Ready":
            raise Refused(f"step {step_id}: PostgreSQL flexible server {name} is "
                          f"{text(server.state)} with its standby {ha_state(server)}; a planned "
                          "failover needs it Ready with a Healthy standby")

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Each planned server's primary zone and tags, read again now (a server gone or no longer
        led from the zone is left out); one held by another run is refused."""
        resolved = request.resolved
        target = request.step.target
        assert isinstance(target, AzureDatabaseTarget)
        fail_back = bool(getattr(request.step, "fail_back", True))
        if len(request.run_id) > MAX_TAG_VALUE or len(resolved.step_id) > MAX_TAG_VALUE:
            raise Refused(f"run or step id is longer than {MAX_TAG_VALUE} characters, ARM's tag "
                          "limit")
        records: list[FailedOverServer] = []
        for done, resource in enumerate(resolved.resources, start=1):
            progress(done, len(resolved.resources))
            _, group, name = id_parts(resource.id)
            server = self.settled(target.subscription, group, name)
            if server is None:
                continue
            tags = dict(server.tags or {})
            if TAG_RUN in tags and tags[TAG_RUN] != request.run_id:
                raise Refused(f"PostgreSQL flexible server {name} is already held by gameday run "
                              f"{tags[TAG_RUN]} (step {tags.get(TAG_STEP, '?')})")
            zone = tags.get(TAG_ZONE) if TAG_RUN in tags else None  # a prepare repeated after apply
            zone = zone or str(server.availability_zone or "")
            if zone != target.zone:
                continue
            if TAG_RUN not in tags:
                self._check(resolved.step_id, target, server)
            records.append(FailedOverServer(
                id=str(server.id), name=name, resource_group=group, zone=zone,
                standby_zone=resource.detail.get("fail_over_zone") or standby_zone(server),
                tags=without_marks(tags), fail_back=fail_back))
        state = FailoverState(servers=records)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="failover_database", scope=resolved.scope,
                          resources=len(records), state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Mark each recorded server, then restart it with planned failover and wait until its
        primary is out of the zone, `parallel_calls("azure")` at a time; a server already led from
        elsewhere (a repeat after a crash) is left as it is."""
        checkpoint = request.checkpoint
        state = FailoverState.model_validate(checkpoint.state)
        subscription = checkpoint.scope.account
        result = FaultResult()

        def fail_over(record: FailedOverServer) -> str:
            marks = {TAG_RUN: checkpoint.run_id, TAG_STEP: checkpoint.step_id,
                     TAG_ZONE: record.zone, TAG_FAIL_BACK: "true" if record.fail_back else "false"}
            server = self._retag(subscription, record, lambda tags: {**tags, **marks})
            if server is None:
                return "gone"
            if str(server.availability_zone or "") != record.zone:
                return "unchanged"
            return self._fail_over(subscription, record, away_from=record.zone)

        for done, (record, outcome) in enumerate(
                fan_out(state.servers, fail_over, parallel_calls("azure")), start=1):
            _tally(result, record, outcome)
            progress(done, len(state.servers))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Each recorded server failed back to its recorded zone (with `fail_back`), then without
        gameday's tags; safe to repeat."""
        checkpoint = request.checkpoint
        state = FailoverState.model_validate(checkpoint.state)
        result = FaultResult()
        for done, (record, outcome) in enumerate(fan_out(
                state.servers, lambda r: self.undo(checkpoint.scope.account, r, result),
                parallel_calls("azure")), start=1):
            _tally(result, record, outcome)
            progress(done, len(state.servers))
        return result

    # --- changing -------------------------------------------------------------------------

    def undo(self, subscription: str, record: FailedOverServer, result: FaultResult) -> str:
        """Fail back to `record.zone` unless told not to, then drop gameday's tags."""
        server = self.settled(subscription, record.resource_group, record.name)
        if server is None:
            return "gone"
        changed = False
        zone = str(server.availability_zone or "")
        if not record.fail_back:
            result.notes.append(f"PostgreSQL flexible server {record.name} stays led from zone "
                                f"{zone} (fail_back: false)")
        elif zone != record.zone and ha_mode(server) != "ZoneRedundant":
            result.notes.append(f"PostgreSQL flexible server {record.name} no longer has "
                                f"zone-redundant HA; left led from zone {zone}")
        elif zone != record.zone:
            changed = self._fail_over(subscription, record, away_from=zone) == "changed"
        untagged = self._retag(subscription, record, without_marks)
        if untagged is None:
            return "gone"
        return "changed" if changed else "unchanged"

    def _retag(self, subscription: str, record: FailedOverServer,
               change: Callable[[dict[str, str]], dict[str, str]]) -> Server | None:
        """The settled server with its tags set to `change(tags)` (no write when already so);
        None when it is gone."""
        client: PostgreSQLManagementClient = self._servers(subscription)

        def update() -> Server | None:
            server = self.settled(subscription, record.resource_group, record.name)
            if server is None:
                return None
            tags = dict(server.tags or {})
            wanted = change(tags)
            if wanted != tags:
                follow(client.servers.begin_update(record.resource_group, record.name,
                                                   ServerForPatch(tags=wanted)),
                       f"tag update of PostgreSQL flexible server {record.name}")
                server.tags = wanted
            return server

        return self._unless_busy(f"updating the tags of PostgreSQL flexible server {record.name}",
                                 update)

    def _fail_over(self, subscription: str, record: FailedOverServer, away_from: str) -> str:
        """Restart the server with planned failover (once it is settled, a failover already
        running waited out), followed to the end, until its primary is out of `away_from`."""
        client: PostgreSQLManagementClient = self._servers(subscription)
        group, name = record.resource_group, record.name

        def restart() -> str:
            server = self.settled(subscription, group, name)
            if server is None:
                return "gone"
            if str(server.availability_zone or "") != away_from:
                return "unchanged"
            if ha_state(server) != "Healthy":
                raise Refused(f"PostgreSQL flexible server {name}'s standby is "
                              f"{ha_state(server)}: it cannot fail over now")
            follow(client.servers.begin_restart(group, name, RestartParameter(
                restart_with_failover=True, failover_mode="PlannedFailover")),
                f"planned failover of PostgreSQL flexible server {name}")
            return "changed"

        outcome = self._unless_busy(f"failing over PostgreSQL flexible server {name}", restart)
        if outcome == "changed":
            moved = self.settled(subscription, group, name,
                                 lambda s: str(s.availability_zone or "") != away_from)
            if moved is None:
                return "gone"
        return outcome

    def _unless_busy(self, doing: str, call: Callable[[], Any]) -> Any:
        """`call()` through `api.write`; a 409 saying another operation holds the server (it
        began between our read and our write) is waited out and the call made again."""
        answer: list[Any] = []

        def attempt() -> bool:
            try:
                answer.append(write(doing, call))
            except CloudError as exc:
                if exc.code in BUSY_CODES:
                    return False
                raise
            return True

        poll_until(attempt, limit=WAIT_LIMIT, interval=poll_interval(),
                   still=lambda: f"Azure kept answering that another operation holds the server "
                   f"while gameday was {doing}")
        return answer[-1]

    # --- the sweeper's part -----------------------------------------------------------------

    def find(self, subscription: str) -> list[Leftover]:
        """Every server of the subscription that a GameDay marked, from its tags alone."""
        client: PostgreSQLManagementClient = self._servers(subscription)
        leftovers = []
        for server in listing(f"listing the PostgreSQL flexible servers of subscription "
                              f"{subscription}", client.servers.list_by_subscription):
            tags = server.tags or {}
            if TAG_RUN not in tags or TAG_ZONE not in tags:
                continue
            leftovers.append(Leftover(
                cloud="azure", kind="postgresql-flexible-server", id=str(server.id),
                run_id=tags[TAG_RUN], step_id=tags.get(TAG_STEP, ""), location=subscription,
                detail={"resource_group": id_parts(str(server.id))[1], "zone": tags[TAG_ZONE],
                        "fail_back": tags.get(TAG_FAIL_BACK, "true")}))
        return sorted(leftovers, key=lambda leftover: leftover.id.lower())

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Fail the server back to the zone its tags name (unless they say not to), and remove
        gameday's tags."""
        _, group, name = id_parts(leftover.id)
        record = FailedOverServer(id=leftover.id, name=name, resource_group=group,
                                  zone=leftover.detail["zone"], standby_zone="", tags={},
                                  fail_back=leftover.detail.get("fail_back") != "false")
        result = FaultResult()
        # through fan_out, so that this thread heartbeats while the failback runs (minutes)
        for _, outcome in fan_out([record], lambda r: self.undo(leftover.location, r, result), 1):
            _tally(result, record, outcome)
        return result


def _tally(result: FaultResult, record: FailedOverServer, outcome: str) -> None:
    if outcome == "changed":
        result.changed += 1
    elif outcome == "unchanged":
        result.unchanged += 1
    else:
        result.notes.append(f"PostgreSQL flexible server {record.name} no longer exists; skipped")
