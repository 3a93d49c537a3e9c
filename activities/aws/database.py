"""AWS database failover (contract §10, `failover_database`): the zone's Aurora writers move away.

Before: each named DB cluster has a writer instance; for the clusters whose writer is in the
zone, at least one available reader lives in another zone.
After apply: each of those clusters was failed over (`FailoverDBCluster`) to its best reader
outside the zone (lowest promotion tier, then name), and its writer is now there; the cluster
carries the run and step, the original writer (`gameday:restore:writer`) and whether to fail
back, so that `gameday sweep` can undo it from the tags alone.
After restore: with `fail_back: true` (the default) the original writer is the writer again;
with `fail_back: false` the cluster stays where the failover put it. gameday's tags are gone.

A cluster whose writer is already outside the zone is left out (nothing to fail over); one with
no available reader in another zone is refused before anything changes; one held by another
GameDay (its tags name another run) is refused too. A cluster that is `failing-over` or
otherwise busy when the fault or the restore arrives is waited for (Aurora takes 30–60 s);
waiting polls with heartbeats and gives up, to be retried by Temporal, after `WAIT_LIMIT`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from activities.aws.api import TAG_RESTORE, TAG_RUN, TAG_STEP, AwsApi
from activities.base import poll_until, progress
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
from gameday.runbook import FailoverDatabaseStep
from gameday.sweep import Leftover
from gameday.targets import AwsDatabaseTarget

TAG_WRITER = f"{TAG_RESTORE}writer"
TAG_FAIL_BACK = "gameday:fail-back"
WAIT_LIMIT = 900.0
"""Seconds a failover (or the wait for a busy cluster) may take before the activity gives up and
Temporal tries again."""


def poll_interval() -> float:
    """Seconds between two looks at a cluster that is failing over (`GAMEDAY_AWS_POLL_SECONDS`)."""
    return float(os.environ.get("GAMEDAY_AWS_POLL_SECONDS") or 2.0)


class FailedOverCluster(BaseModel):
    """One cluster the fault fails over: its writer before, and the reader it fails over to."""

    cluster: str
    arn: str
    writer: str
    writer_zone: str
    fail_over_to: str
    fail_back: bool


class FailoverState(BaseModel):
    clusters: list[FailedOverCluster]


def _tags(cluster: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in cluster.get("TagList", [])}


def _writer(cluster: dict[str, Any]) -> str | None:
    return next((m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])
                 if m.get("IsClusterWriter")), None)


class AwsDatabaseFailover:
    """RDS: each cluster whose writer is in the zone fails over to a reader elsewhere, and back."""

    State = FailoverState

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    # --- reading ----------------------------------------------------------------------------

    def cluster(self, region: str, cluster_id: str, *, account: str | None) -> dict[str, Any]:
        rds = self.api.client("rds", region, account)
        try:
            found = self.api.call(f"DescribeDBClusters {cluster_id}", rds.describe_db_clusters,
                                  DBClusterIdentifier=cluster_id)
        except CloudError as exc:
            if exc.code == "DBClusterNotFoundFault":
                raise TargetNotFound(f"DB cluster {cluster_id} does not exist in {region}") from exc
            raise
        return dict(found["DBClusters"][0])

    def instances(self, region: str, cluster_id: str, *,
                  account: str | None) -> dict[str, dict[str, Any]]:
        """The cluster's instances by identifier, with their zone and status."""
        rds = self.api.client("rds", region, account)
        found = self.api.pages(rds, "describe_db_instances", "DBInstances",
                               Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}])
        return {i["DBInstanceIdentifier"]: i for i in found}

    def _fail_over_to(self, cluster: dict[str, Any], instances: dict[str, dict[str, Any]],
                      zone: str) -> str | None:
        """The reader to fail over to: available, outside `zone`, lowest promotion tier first."""
        readers = [(m.get("PromotionTier", 1), m["DBInstanceIdentifier"])
                   for m in cluster.get("DBClusterMembers", []) if not m.get("IsClusterWriter")]
        for _, reader in sorted(readers):
            instance = instances.get(reader, {})
            if instance.get("AvailabilityZone") != zone and instance.get("DBInstanceStatus") == "available":
                return reader
        return None

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The named clusters whose writer is in the zone, each with the reader it would fail
        over to; refused when one has no available reader outside the zone."""
        target = request.step.target
        assert isinstance(target, AwsDatabaseTarget)
        scope = Scope.of(target)
        self.api.check_identity(scope)
        resources: list[Resource] = []
        for cluster_id in target.db_clusters:
            cluster = self.cluster(target.region, cluster_id, account=target.account)
            instances = self.instances(target.region, cluster_id, account=target.account)
            writer = _writer(cluster)
            if writer is None:
                raise Refused(f"step {request.step.id}: DB cluster {cluster_id} has no writer to "
                              "fail over (is it a global database's secondary?)")
            writer_zone = instances.get(writer, {}).get("AvailabilityZone", "")
            if writer_zone != target.zone:
                continue
            reader = self._fail_over_to(cluster, instances, target.zone_name)
            if reader is None:
                raise Refused(f"step {request.step.id}: DB cluster {cluster_id} has no available "
                              f"reader outside {target.zone} to fail over to; add one, or leave "
                              "the cluster out")
            resources.append(Resource(
                id=cluster["DBClusterArn"], kind="db-cluster", name=cluster_id,
                detail={"writer": writer, "writer_zone": writer_zone, "fail_over_to": reader,
                        "fail_over_zone": instances[reader].get("AvailabilityZone", ""),
                        "status": cluster.get("Status", "")}))
        return ResolvedStep(step_id=request.step.id, action="failover_database", scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Each cluster's writer and its zone, read again now; a cluster held by another run is
        refused."""
        target = request.step.target
        assert isinstance(target, AwsDatabaseTarget)
        step = request.step
        assert isinstance(step, FailoverDatabaseStep)
        resolved = request.resolved
        clusters: list[FailedOverCluster] = []
        for resource in resolved.resources:
            cluster_id = resource.name or resource.id
            cluster = self.cluster(target.region, cluster_id, account=target.account)
            holder = _tags(cluster).get(TAG_RUN)
            if holder and holder != request.run_id:
                raise Refused(f"step {resolved.step_id}: DB cluster {cluster_id} is held by "
                              f"GameDay {holder}; let it finish, or `gameday sweep` it")
            instances = self.instances(target.region, cluster_id, account=target.account)
            writer = _writer(cluster) or resource.detail["writer"]
            if holder == request.run_id and TAG_WRITER in _tags(cluster):
                writer = _tags(cluster)[TAG_WRITER]  # a prepare repeated after the apply began
            reader = (self._fail_over_to(cluster, instances, target.zone_name)
                      or resource.detail["fail_over_to"])
            clusters.append(FailedOverCluster(
                cluster=cluster_id, arn=cluster["DBClusterArn"], writer=writer,
                writer_zone=instances.get(writer, {}).get("AvailabilityZone", target.zone),
                fail_over_to=reader, fail_back=step.fail_back))
        state = FailoverState(clusters=clusters)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="failover_database", scope=resolved.scope,
                          resources=len(clusters), state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        self.api.check_identity(checkpoint.scope)
        state = FailoverState.model_validate(checkpoint.state)
        zone = checkpoint.scope.zone or ""
        result = FaultResult()
        for done, record in enumerate(state.clusters):
            self._mark(checkpoint, record)
            if self._fail_over(checkpoint.scope.region, record, away_from=zone,
                               account=checkpoint.scope.account):
                result.changed += 1
            else:
                result.unchanged += 1
            progress(done + 1, len(state.clusters))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        state = FailoverState.model_validate(checkpoint.state)
        result = FaultResult()
        for done, record in enumerate(state.clusters):
            self._undo(checkpoint.scope.region, record, result, account=checkpoint.scope.account)
            progress(done + 1, len(state.clusters))
        return result

    # --- changing -------------------------------------------------------------------------

    def _mark(self, checkpoint: Checkpoint, record: FailedOverCluster) -> None:
        """Tag the cluster before it changes, so that the sweeper can undo it from its tags."""
        rds = self.api.client("rds", checkpoint.scope.region, checkpoint.scope.account)
        self.api.call(f"AddTagsToResource {record.cluster}", rds.add_tags_to_resource,
                      ResourceName=record.arn, Tags=[
                          {"Key": TAG_RUN, "Value": checkpoint.run_id},
                          {"Key": TAG_STEP, "Value": checkpoint.step_id},
                          {"Key": TAG_WRITER, "Value": record.writer},
                          {"Key": TAG_FAIL_BACK, "Value": "true" if record.fail_back else "false"}])

    def _fail_over(self, region: str, record: FailedOverCluster, away_from: str, *,
                   account: str | None) -> bool:
        """Fail the cluster over unless its writer is already outside `away_from`; True when it
        was failed over now."""
        cluster = self._settled(region, record.cluster, account=account)
        instances = self.instances(region, record.cluster, account=account)
        writer = _writer(cluster)
        if writer is not None and instances.get(writer, {}).get("AvailabilityZone") != away_from:
            return False
        reader = record.fail_over_to
        if instances.get(reader, {}).get("DBInstanceStatus") != "available" or \
                instances[reader].get("AvailabilityZone") == away_from:
            reader = self._fail_over_to(cluster, instances, away_from) or ""
        if not reader:
            raise Refused(f"DB cluster {record.cluster} has no available reader outside "
                          f"{away_from} to fail over to any more")
        self._failover(region, record.cluster, reader, account=account)
        self._settled(region, record.cluster, lambda c: _writer(c) == reader, account=account)
        return True

    def _undo(self, region: str, record: FailedOverCluster, result: FaultResult, *,
              account: str | None) -> None:
        rds = self.api.client("rds", region, account)
        try:
            cluster = self._settled(region, record.cluster, account=account)
        except TargetNotFound:
            result.notes.append(f"DB cluster {record.cluster} no longer exists")
            return
        if not record.fail_back:
            result.notes.append(f"DB cluster {record.cluster} stays on writer {_writer(cluster)} "
                                "(fail_back: false)")
            result.unchanged += 1
        elif _writer(cluster) == record.writer:
            result.unchanged += 1
        else:
            instances = self.instances(region, record.cluster, account=account)
            if record.writer not in instances:
                result.notes.append(f"DB cluster {record.cluster}: its writer {record.writer} no "
                                    "longer exists; left on " + str(_writer(cluster)))
            else:
                # the old writer restarts as a reader after a failover: wait until it can lead
                self._wait(f"{record.writer} to be available", lambda: self.instances(
                    region, record.cluster, account=account).get(record.writer, {}).get(
                        "DBInstanceStatus") == "available")
                self._failover(region, record.cluster, record.writer, account=account)
                self._settled(region, record.cluster, lambda c: _writer(c) == record.writer,
                              account=account)
                result.changed += 1
        keys = [k for k in (TAG_RUN, TAG_STEP, TAG_WRITER, TAG_FAIL_BACK) if k in _tags(cluster)]
        if keys:
            self.api.call(f"RemoveTagsFromResource {record.cluster}", rds.remove_tags_from_resource,
                          ResourceName=record.arn, TagKeys=keys)

    def _failover(self, region: str, cluster_id: str, to: str, *, account: str | None) -> None:
        rds = self.api.client("rds", region, account)
        try:
            self.api.call(f"FailoverDBCluster {cluster_id} to {to}", rds.failover_db_cluster,
                          DBClusterIdentifier=cluster_id, TargetDBInstanceIdentifier=to)
        except CloudError as exc:
            if exc.code in ("InvalidDBClusterStateFault", "InvalidDBInstanceState"):
                # busy after all (another failover began): the next attempt waits and looks again
                raise CloudError(f"DB cluster {cluster_id} is busy: {exc}", retryable=True,
                                 code=exc.code) from exc
            raise

    def _settled(self, region: str, cluster_id: str,
                 done: Callable[[dict[str, Any]], bool] = lambda cluster: True, *,
                 account: str | None) -> dict[str, Any]:
        """The cluster once it is `available` and `done` holds, polled with heartbeats."""
        seen: dict[str, Any] = {}

        def ready() -> bool:
            seen.update(self.cluster(region, cluster_id, account=account))
            return seen.get("Status") == "available" and done(seen)

        self._wait(f"DB cluster {cluster_id} to settle", ready)
        return seen

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        poll_until(ready, limit=WAIT_LIMIT, interval=poll_interval(),
                   still=lambda: f"gave up waiting for {what} after {WAIT_LIMIT:.0f} s")

    # --- the sweeper's part -----------------------------------------------------------------

    def find(self, region: str, account: str | None = None) -> list[Leftover]:
        """Every cluster of the region that a GameDay tagged, from its tags alone."""
        rds = self.api.client("rds", region, account)
        leftovers = []
        for cluster in self.api.pages(rds, "describe_db_clusters", "DBClusters"):
            tags = _tags(cluster)
            if TAG_RUN not in tags or TAG_WRITER not in tags:
                continue
            leftovers.append(Leftover(
                cloud="aws", kind="db-cluster", id=cluster["DBClusterIdentifier"],
                run_id=tags[TAG_RUN], step_id=tags.get(TAG_STEP, ""), location=region,
                account=account or "",
                detail={"arn": cluster["DBClusterArn"], "writer": tags[TAG_WRITER],
                        "fail_back": tags.get(TAG_FAIL_BACK, "true")}))
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Fail the cluster back to the writer its tags name (unless they say not to), and
        remove gameday's tags."""
        record = FailedOverCluster(
            cluster=leftover.id, arn=leftover.detail["arn"], writer=leftover.detail["writer"],
            writer_zone="", fail_over_to="", fail_back=leftover.detail.get("fail_back") != "false")
        result = FaultResult()
        self._undo(leftover.location, record, result, account=leftover.account or None)
        return result
