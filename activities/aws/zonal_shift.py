"""AWS zonal evacuation (contract §10, evacuate_zone) through ARC zonal shift.

Before: none of the step's resources (load balancer ARNs registered with zonal shift) has an
active zonal shift. After apply: each has one shift away from the zone's AZ ID (the zone name is
resolved to its ZoneId per account with DescribeAvailabilityZones), expiring after the step's
duration plus `MARGIN`: AWS itself ends the shift if gameday cannot (a second dead man's switch).
A step without a duration (restored with the run) gets the longest expiry AWS allows (3 days); a
step longer than 3 days less the margin is refused, not extended. After restore: every shift the
checkpoint names is cancelled; one already expired or cancelled counts as restored; none remains.

AWS allows no tags on a zonal shift: its comment (at most 128 characters) carries
`gameday <run> <step>`, the mark `gameday sweep` reads. Refused before any change: a resource not
registered with zonal shift, one that already has an active shift, a zone not among its zones.
"""

from __future__ import annotations

import math
from datetime import timedelta
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
from gameday.sweep import Leftover
from gameday.targets import AwsZoneTraffic

MARGIN = timedelta(minutes=10)
MAX_EXPIRY = timedelta(days=3)
COMMENT_PREFIX = "gameday "


def comment_of(run_id: str, step_id: str) -> str:
    """The mark on a shift: gameday, the run and the step, cut to AWS's 128 characters."""
    return f"{COMMENT_PREFIX}{run_id} {step_id}"[:128]


def expires_in(duration: timedelta | None, step_id: str) -> str:
    """`expiresIn` for a step of `duration`: its length plus the margin, in whole minutes."""
    if duration is None:
        return f"{int(MAX_EXPIRY.total_seconds() // 3600)}h"
    if duration + MARGIN > MAX_EXPIRY:
        raise Refused(f"step {step_id}: a zonal shift lasts at most 3 days, and this step's "
                      f"duration plus a {int(MARGIN.total_seconds() // 60)}-minute margin is longer")
    return f"{math.ceil((duration + MARGIN).total_seconds() / 60)}m"


class ShiftedResource(BaseModel):
    """One resource shifted away from the zone, and the shift gameday started (once started)."""

    arn: str
    zonal_shift_id: str | None = None


class ZonalShiftState(BaseModel):
    region: str
    zone: str
    zone_id: str
    expires_in: str
    comment: str
    resources: list[ShiftedResource]


class AwsZonalShift:
    """ARC zonal shift: each resource's traffic moves off the zone, then the shift is cancelled."""

    State = ZonalShiftState

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    def _zone_id(self, region: str, zone: str, account: str | None) -> str:
        ec2 = self.api.ec2(region, account)
        zones = self.api.call("DescribeAvailabilityZones", ec2.describe_availability_zones,
                              ZoneNames=[zone])["AvailabilityZones"]
        if not zones:
            raise TargetNotFound(f"zone {zone} does not exist in {region}")
        return str(zones[0]["ZoneId"])

    def _managed(self, arc: Any, arn: str, step_id: str) -> dict[str, Any]:
        try:
            return dict(self.api.call("GetManagedResource", arc.get_managed_resource,
                                      resourceIdentifier=arn))
        except CloudError as exc:
            if exc.code == "ResourceNotFoundException":
                raise TargetNotFound(f"step {step_id}: {arn} is not registered with ARC zonal "
                                     "shift") from exc
            raise

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, AwsZoneTraffic)
        scope = Scope.of(target)
        self.api.check_identity(scope)
        step_id = request.step.id
        expires_in(getattr(request.step, "duration", None), step_id)
        zone_id = target.zone_id or self._zone_id(target.region, target.zone_name, scope.account)
        arc = self.api.client("arc-zonal-shift", target.region, scope.account)
        resources = []
        for arn in target.resources:
            managed = self._managed(arc, arn, step_id)
            zones = sorted(managed.get("appliedWeights", {}))
            if zone_id not in zones:
                raise Refused(f"step {step_id}: {arn} is not in zone {target.zone} ({zone_id}); "
                              f"its zones are {', '.join(zones)}")
            active = [s for s in managed.get("zonalShifts", [])
                      if s.get("comment") != comment_of(request.run_id, step_id)]
            if active:
                raise Refused(f"step {step_id}: {arn} already has an active zonal shift "
                              f"({active[0]['zonalShiftId']}: {active[0].get('comment', '')!r})")
            resources.append(Resource(id=arn, kind="zonal-shift", name=managed.get("name"),
                                      detail={"away_from": zone_id, "zones": ",".join(zones)}))
        return ResolvedStep(step_id=step_id, action="evacuate_zone", scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        target = request.step.target
        assert isinstance(target, AwsZoneTraffic)
        resolved = request.resolved
        # the plan resolved the zone's AZ ID for this account (an account's AZ IDs never change)
        found = {r.detail.get("away_from") for r in resolved.resources} - {None}
        zone_id = str(found.pop()) if len(found) == 1 else self._zone_id(
            target.region, target.zone_name, resolved.scope.account)
        state = ZonalShiftState(
            region=target.region, zone=target.zone, zone_id=zone_id,
            expires_in=expires_in(getattr(request.step, "duration", None), resolved.step_id),
            comment=comment_of(request.run_id, resolved.step_id),
            resources=[ShiftedResource(arn=r.id) for r in resolved.resources])
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id, action="evacuate_zone",
                          scope=resolved.scope, resources=len(state.resources),
                          state=state.model_dump(mode="json"))

    def _ours(self, arc: Any, state: ZonalShiftState, arn: str) -> list[dict[str, Any]]:
        """The active shifts of `arn` that carry this step's mark."""
        shifts = self.api.pages(arc, "list_zonal_shifts", "items", status="ACTIVE",
                                resourceIdentifier=arn)
        return [s for s in shifts if s.get("comment") == state.comment]

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        self.api.check_identity(checkpoint.scope)
        state = ZonalShiftState.model_validate(checkpoint.state)
        arc = self.api.client("arc-zonal-shift", state.region, checkpoint.scope.account)
        result = FaultResult()
        for number, resource in enumerate(state.resources, 1):
            if self._ours(arc, state, resource.arn):
                result.unchanged += 1
                continue
            try:
                self.api.call("StartZonalShift", arc.start_zonal_shift,
                              resourceIdentifier=resource.arn, awayFrom=state.zone_id,
                              expiresIn=state.expires_in, comment=state.comment)
            except CloudError as exc:
                if exc.code == "ConflictException":
                    raise Refused(f"step {checkpoint.step_id}: {resource.arn} got another active "
                                  "zonal shift after the plan") from exc
                raise
            result.changed += 1
            progress(number, len(state.resources))
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        state = ZonalShiftState.model_validate(checkpoint.state)
        arc = self.api.client("arc-zonal-shift", state.region, checkpoint.scope.account)
        result = FaultResult()
        for resource in state.resources:
            shifts = self._ours(arc, state, resource.arn)
            if not shifts:
                result.unchanged += 1
            for shift in shifts:
                cancel(self.api, arc, shift["zonalShiftId"])
                result.changed += 1
        return result

    def find(self, region: str, account: str | None = None) -> list[Leftover]:
        """The active shifts of the region whose comment is gameday's mark (`gameday run step`)."""
        arc = self.api.client("arc-zonal-shift", region, account)
        found = []
        for shift in self.api.pages(arc, "list_zonal_shifts", "items", status="ACTIVE"):
            words = str(shift.get("comment", "")).split(" ")
            if len(words) != 3 or words[0] != COMMENT_PREFIX.strip():
                continue
            found.append(Leftover(
                cloud="aws", kind="zonal-shift", id=shift["zonalShiftId"], run_id=words[1],
                step_id=words[2], location=region, account=account or "",
                detail={"resource": shift["resourceIdentifier"], "away_from": shift["awayFrom"],
                        "expires": str(shift["expiryTime"])}))
        return found

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Cancel the shift (one that ended meanwhile is done)."""
        arc = self.api.client("arc-zonal-shift", leftover.location, leftover.account or None)
        cancel(self.api, arc, leftover.id)
        return FaultResult(changed=1)


def cancel(api: AwsApi, arc: Any, zonal_shift_id: str) -> None:
    """Cancel one shift; one that expired or was cancelled meanwhile is done."""
    try:
        api.call("CancelZonalShift", arc.cancel_zonal_shift, zonalShiftId=zonal_shift_id)
    except CloudError as exc:
        if exc.code not in ("ConflictException", "ResourceNotFoundException"):
            raise
