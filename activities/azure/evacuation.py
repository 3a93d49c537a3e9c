"""Azure region evacuation (contract §4) with Traffic Manager.

Before: each endpoint of the named profiles located in the region has `endpointStatus` E.
After apply: each is `Disabled`; a profile that would keep no enabled endpoint outside the region
is refused before anything changes.
After restore: each has E again (already so: left alone).
"""

from __future__ import annotations

from functools import partial

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.trafficmanager.models import Endpoint
from pydantic import BaseModel

from activities.azure.api import (
    ArmClients,
    AzureConnection,
    cloud_error,
    error_code,
    find,
    normalize_location,
    not_found_sentence,
    text,
    throttle_of,
    transient_of,
    write,
)
from activities.base import progress
from activities.transient import retried
from gameday.errors import Refused, TargetNotFound
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
from gameday.targets import AzureRegionTraffic


class EndpointRecord(BaseModel):
    """One Traffic Manager endpoint to disable and the status it had before."""

    id: str
    profile: str
    endpoint_type: str
    name: str
    status: str


class EvacuationState(BaseModel):
    resource_group: str
    endpoints: list[EndpointRecord]



class AzureRegionEvacuation:
    """Disable the Traffic Manager endpoints of a region, and put each back to its own status."""

    State = EvacuationState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, AzureRegionTraffic)
        scope = Scope.of(target)
        with self.connection.clients(target.subscription) as arm:
            records = self._in_region(arm, request.step.id, target)
        resources = [
            Resource(id=r.id, kind="traffic_manager_endpoint", name=r.name,
                     detail={"profile": r.profile, "type": r.endpoint_type,
                             "status": r.status})
            for r in records
        ]
        return ResolvedStep(step_id=request.step.id, action="evacuate_region", scope=scope,
                            resources=resources)

    def _in_region(self, arm: ArmClients, step_id: str,
                   target: AzureRegionTraffic) -> list[EndpointRecord]:
        """The endpoints of the named profiles located in the region; refuses a profile that would
        keep no enabled endpoint outside it."""
        region = normalize_location(target.region)
        records: list[EndpointRecord] = []
        for profile_name in target.traffic_manager_profiles:
            try:
                profile = retried(  # as `find` does, but a 404 is named here
                    partial(arm.traffic.profiles.get, target.resource_group, profile_name),
                    transient_of, throttle_of)
            except ResourceNotFoundError as exc:
                missing = (not_found_sentence(exc) if error_code(exc) == "ResourceGroupNotFound"
                           else None)
                raise TargetNotFound(f"step {step_id}: " + (
                    missing or f"Traffic Manager profile {profile_name} does not exist in "
                               f"resource group {target.resource_group}")) from exc
            except AzureError as exc:
                raise cloud_error(exc, f"reading profile {profile_name}") from exc
            endpoints = list(profile.endpoints or [])
            inside = [e for e in endpoints if normalize_location(e.endpoint_location) == region]
            if not inside:
                continue
            moved = {e.id for e in inside}
            remaining = [e for e in endpoints if e.id not in moved
                         and text(e.endpoint_status) == "Enabled"]
            if not remaining:
                raise Refused(
                    f"step {step_id}: evacuating {target.region} would leave Traffic Manager "
                    f"profile {profile_name} with no enabled endpoint outside {target.region}"
                )
            records += [
                EndpointRecord(id=e.id, profile=profile.name or profile_name,
                               endpoint_type=_endpoint_type(e.type), name=e.name,
                               status=text(e.endpoint_status) or "Enabled")
                for e in inside
            ]
        if not records:
            raise TargetNotFound(
                f"step {step_id}: no endpoint of Traffic Manager profile(s) "
                f"{', '.join(target.traffic_manager_profiles)} is located in {target.region}"
            )
        return sorted(records, key=lambda r: r.id.lower())

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each endpoint's type and current status, re-checking that traffic has somewhere
        else to go."""
        resolved = request.resolved
        scope = resolved.scope
        target = request.step.target
        assert isinstance(target, AzureRegionTraffic)
        with self.connection.clients(scope.account) as arm:
            records = self._in_region(arm, resolved.step_id, target)
        state = EvacuationState(resource_group=target.resource_group, endpoints=records)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="evacuate_region", scope=scope, resources=len(records),
                          state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        with self.connection.clients(scope.account) as arm:
            return self._set_statuses(arm, state, {r.id: "Disabled" for r in state.endpoints})

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put each endpoint back to its own status before the fault (already equal: skipped)."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        with self.connection.clients(scope.account) as arm:
            return self._set_statuses(arm, state, {r.id: r.status for r in state.endpoints})

    def _set_statuses(self, arm: ArmClients, state: EvacuationState,
                      wanted: dict[str, str]) -> FaultResult:
        result = FaultResult()
        group = state.resource_group
        for done, record in enumerate(state.endpoints, start=1):
            status = wanted[record.id]
            current = find(f"reading endpoint {record.name}", lambda r=record: arm.traffic  # type: ignore[misc]
                            .endpoints.get(group, r.profile, r.endpoint_type, r.name))
            if current is None:
                result.notes.append(f"endpoint {record.id} no longer exists; skipped")
            elif text(current.endpoint_status) == status:
                result.unchanged += 1
            else:
                write(f"setting endpoint {record.name} {status}",
                      lambda r=record, s=status: arm  # type: ignore[misc]
                      .traffic.endpoints.update(group, r.profile, r.endpoint_type, r.name,
                                                Endpoint(endpoint_status=s)))  # type: ignore[call-overload]
                result.changed += 1
            progress(done, len(state.endpoints))
        return result


def _endpoint_type(resource_type: str | None) -> str:
    """`Microsoft.Network/trafficManagerProfiles/azureEndpoints` -> `AzureEndpoints`."""
    kind = (resource_type or "").rsplit("/", 1)[-1]
    return kind[:1].upper() + kind[1:] if kind else "AzureEndpoints"
