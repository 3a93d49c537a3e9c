"""AWS region evacuation (contract §4) with Route 53 weighted records.

Before: each named weighted record of the region (its `SetIdentifier` is the region) has weight W.
After apply: each has weight 0; records of other regions keep theirs, and a record whose type has
no positive weight left anywhere else is refused before anything changes.
After restore: each has weight W again; whatever else changed on the record meanwhile stays.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from activities.aws.api import AwsApi
from activities.base import progress
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
from gameday.targets import AwsRegionTraffic


class WeightedRecord(BaseModel):
    """One weighted record set of the evacuated region, and its weight before."""

    name: str
    type: str
    set_identifier: str
    weight: int


class EvacuationState(BaseModel):
    hosted_zone_id: str
    records: list[WeightedRecord]


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def _zone_id(hosted_zone_id: str) -> str:
    return hosted_zone_id.rsplit("/", 1)[-1]


class AwsRegionEvacuation:
    """Route53: the region's weighted records go to weight 0, then back to their own weights."""

    State = EvacuationState

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    def _zone(self, route53: Any, hosted_zone: str) -> str:
        """The id of a hosted zone given by id or, when it contains a dot, by its DNS name."""
        if "." not in hosted_zone:
            return _zone_id(hosted_zone)
        zones = [z for z in self.api.pages(route53, "list_hosted_zones", "HostedZones")
                 if z["Name"] == _fqdn(hosted_zone)]
        if len(zones) != 1:
            found = "no" if not zones else f"{len(zones)}"
            raise TargetNotFound(f"{found} hosted zones are named {hosted_zone}; give its id")
        return _zone_id(zones[0]["Id"])

    def _record_sets(self, route53: Any, hosted_zone: str) -> list[dict[str, Any]]:
        try:
            return self.api.pages(route53, "list_resource_record_sets", "ResourceRecordSets",
                               HostedZoneId=self._zone(route53, hosted_zone))
        except CloudError as exc:
            if exc.code == "NoSuchHostedZone":
                raise TargetNotFound(f"hosted zone {hosted_zone} does not exist") from exc
            raise

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, AwsRegionTraffic)
        scope = Scope.of(target)
        self.api.check_identity(scope)
        sets = self._record_sets(self.api.client("route53", "us-east-1", scope.account),
                                 target.hosted_zone_id)
        resources: list[Resource] = []
        for name in target.record_names:
            weighted = [r for r in sets if r["Name"] == _fqdn(name) and "Weight" in r]
            ours = [r for r in weighted if r.get("SetIdentifier") == target.region]
            if not ours:
                raise TargetNotFound(
                    f"step {request.step.id}: {name} has no weighted record whose "
                    f"SetIdentifier is {target.region} in hosted zone {target.hosted_zone_id}"
                )
            for record in ours:
                others = [r for r in weighted if r["Type"] == record["Type"]
                          and r.get("SetIdentifier") != target.region and r["Weight"] > 0]
                if not others:
                    raise Refused(
                        f"step {request.step.id}: evacuating {target.region} would leave "
                        f"{name} ({record['Type']}) with no positive weight anywhere"
                    )
                resources.append(Resource(
                    id=f"{record['Name']}|{record['Type']}|{record['SetIdentifier']}",
                    kind="record", name=record["Name"],
                    detail={"type": record["Type"], "weight": str(record["Weight"]),
                            "other_regions": ",".join(r["SetIdentifier"] for r in others)},
                ))
        return ResolvedStep(step_id=request.step.id, action="evacuate_region", scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        target = request.step.target
        assert isinstance(target, AwsRegionTraffic)
        resolved = request.resolved
        sets = self._record_sets(self.api.client("route53", "us-east-1", resolved.scope.account),
                                 target.hosted_zone_id)
        wanted = {r.id for r in resolved.resources}
        records = [
            WeightedRecord(name=r["Name"], type=r["Type"], set_identifier=r["SetIdentifier"],
                           weight=r["Weight"])
            for r in sets
            if f"{r['Name']}|{r['Type']}|{r.get('SetIdentifier')}" in wanted
        ]
        state = EvacuationState(hosted_zone_id=target.hosted_zone_id, records=records)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="evacuate_region", scope=resolved.scope,
                          resources=len(records), state=state.model_dump(mode="json"))

    def _set_weights(self, checkpoint: Checkpoint, weight_of: Any, verb: str) -> FaultResult:
        """Upsert each record with `weight_of(record)`, keeping whatever else changed meanwhile."""
        state = EvacuationState.model_validate(checkpoint.state)
        route53 = self.api.client("route53", "us-east-1", checkpoint.scope.account)
        current = {(r["Name"], r["Type"], r.get("SetIdentifier")): r
                   for r in self._record_sets(route53, state.hosted_zone_id) if "Weight" in r}
        result = FaultResult()
        changes = []
        for record in state.records:
            live = current.get((record.name, record.type, record.set_identifier))
            if live is None:
                result.notes.append(f"{record.name} {record.type} {record.set_identifier} "
                                    "no longer exists")
                continue
            weight = weight_of(record)
            if live["Weight"] == weight:
                result.unchanged += 1
                continue
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {**live, "Weight": weight}})
        for start in range(0, len(changes), 500):
            self.api.call(f"ChangeResourceRecordSets ({verb})", route53.change_resource_record_sets,
                       HostedZoneId=self._zone(route53, state.hosted_zone_id),
                       ChangeBatch={"Comment": f"gameday {checkpoint.run_id} {checkpoint.step_id} "
                                               f"{verb}",
                                    "Changes": changes[start:start + 500]})
            result.changed += len(changes[start:start + 500])
            progress(result.changed, len(changes))
        return result

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        self.api.check_identity(checkpoint.scope)
        return self._set_weights(checkpoint, lambda record: 0, "evacuate")

    def restore(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        return self._set_weights(checkpoint, lambda record: record.weight, "fail back")
