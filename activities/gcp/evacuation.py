"""GCP region evacuation (contract §4): the region's backends of global backend services drained.

Before: each backend of the named backend services whose group lies in the region has
`capacityScaler` C (1.0 when unset).
After apply: each has `capacityScaler` 0; an evacuation that would leave a service no capacity
outside the region is refused, also when re-checked at apply.
After restore: each has C again; a backend or service gone meanwhile is noted, not recreated.

Backend services carry no labels, and a backend none: nothing marks the drain, and the checkpoint
alone restores it (the sweeper has nothing to find). The zonal evacuation
(`activities.gcp.zonal_evacuation`) is this drain with the zone as its place.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from google.api_core import exceptions
from google.cloud import compute_v1
from pydantic import BaseModel

from activities.base import progress
from activities.gcp.api import (
    FINGERPRINT_ATTEMPTS,
    Compute,
    call,
    compute_clients,
    last,
    mutate,
    translated,
)
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
from gameday.targets import GcpRegionTraffic, GcpZoneTraffic

_GROUP_LOCATION = re.compile(r"(?:^|/)(?P<kind>zones|regions|global)(?:/(?P<where>[^/]+))?/"
                             r"[^/]+/[^/]+$")


class BackendCapacity(BaseModel):
    """A backend (by group URL) and its capacityScaler before the evacuation."""

    group: str
    capacity_scaler: float


class ServiceCapacity(BaseModel):
    service: str
    backends: list[BackendCapacity]


class EvacuationState(BaseModel):
    services: list[ServiceCapacity]


def group_zone(group: str) -> str | None:
    """The zone of a backend's group URL; None for a regional or global group."""
    found = _GROUP_LOCATION.search(group)
    return found["where"] if found is not None and found["kind"] == "zones" else None


def group_region(group: str) -> str | None:
    """The region of a backend's group URL (zonal or regional); None for a global group."""
    found = _GROUP_LOCATION.search(group)
    if found is None or found["kind"] == "global" or not found["where"]:
        return None
    where = found["where"]
    return where.rsplit("-", 1)[0] if found["kind"] == "zones" else where


def _scaler(backend: compute_v1.Backend) -> float:
    """A backend's capacityScaler; Compute Engine's default 1.0 when the field is absent."""
    return round(backend.capacity_scaler, 6) if "capacity_scaler" in backend else 1.0


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


class GcpRegionEvacuation:
    """The region evacuation's SDK calls: resolve, prepare, apply and restore, each idempotent.
    Its place is the step's region; a subclass drains another place by `action` and `place`."""

    State = EvacuationState
    action = "evacuate_region"
    Target: type[GcpRegionTraffic | GcpZoneTraffic] = GcpRegionTraffic

    @staticmethod
    def place(scope: Scope) -> str:
        """Where the drained backends are: the region."""
        return scope.region

    def inside(self, group: str, scope: Scope) -> bool:
        return group_region(group) == scope.region

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    def _service(self, compute: Compute, project: str, name: str,
                 step_id: str) -> compute_v1.BackendService:
        try:
            return call(compute.backend_services.get, project=project, backend_service=name)
        except exceptions.NotFound as exc:
            raise TargetNotFound(f"step {step_id}: backend service {name} does not exist in "
                                 f"project {project}") from exc

    def _refuse_without_capacity(self, step_id: str, service: compute_v1.BackendService,
                                 scope: Scope, scalers: dict[str, float]) -> None:
        """Refuse an evacuation that would leave a service no capacity outside its place."""
        outside = [b for b in service.backends if not self.inside(b.group, scope)
                   and scalers.get(b.group, _scaler(b)) > 0]
        if not outside:
            place = self.place(scope)
            raise Refused(f"step {step_id}: evacuating {place} would leave backend service "
                          f"{service.name} no capacity: no backend outside {place} has "
                          "capacityScaler > 0")

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, self.Target)
        scope = Scope.of(target)
        with translated("reading backend services"):
            compute = self._clients()
            resources: list[Resource] = []
            for name in target.backend_services:
                service = self._service(compute, target.project, name, request.step.id)
                inside = [b for b in service.backends if self.inside(b.group, scope)]
                if inside:
                    self._refuse_without_capacity(request.step.id, service, scope, {})
                resources += [
                    Resource(id=f"{name}/{b.group.split('/projects/', 1)[-1]}", kind="backend",
                             name=last(b.group), detail={
                                 "backend_service": name, "group": b.group,
                                 "capacity_scaler": str(_scaler(b))})
                    for b in inside
                ]
            if not resources:
                raise TargetNotFound(f"step {request.step.id}: no backend of "
                                     f"{', '.join(target.backend_services)} has its group in "
                                     f"{self.place(scope)}")
            return ResolvedStep(step_id=request.step.id, action=self.action, scope=scope,
                                resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each in-region backend's capacityScaler as it is now."""
        resolved = request.resolved
        scope = resolved.scope
        with translated("reading backend services"):
            compute = self._clients()
            services: list[ServiceCapacity] = []
            for name in sorted({r.detail["backend_service"] for r in resolved.resources}):
                service = self._service(compute, scope.account, name, resolved.step_id)
                inside = [b for b in service.backends if self.inside(b.group, scope)]
                if not inside:
                    continue
                self._refuse_without_capacity(resolved.step_id, service, scope, {})
                services.append(ServiceCapacity(service=name, backends=[
                    BackendCapacity(group=b.group, capacity_scaler=_scaler(b)) for b in inside]))
            count = sum(len(s.backends) for s in services)
            if not count:
                raise TargetNotFound(f"step {resolved.step_id}: no backend has its group in "
                                     f"{self.place(scope)} any more")
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action=self.action, scope=scope, resources=count,
                              state=EvacuationState(services=services).model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Set capacityScaler 0 on each recorded backend, still refusing to drain a service."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        result = FaultResult()
        with translated(f"evacuating {self.place(scope)}"):
            compute = self._clients()
            for done, entry in enumerate(state.services, start=1):
                wanted = {b.group: 0.0 for b in entry.backends}
                self._set_scalers(compute, scope, checkpoint.step_id, entry.service, wanted,
                                  result, check_capacity=True)
                progress(done, len(state.services))
            return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put each backend's own capacityScaler back. Safe to repeat; a gone backend is noted."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        result = FaultResult()
        with translated(f"failing back to {self.place(scope)}"):
            compute = self._clients()
            for done, entry in enumerate(state.services, start=1):
                wanted = {b.group: b.capacity_scaler for b in entry.backends}
                self._set_scalers(compute, scope, checkpoint.step_id, entry.service, wanted,
                                  result, check_capacity=False)
                progress(done, len(state.services))
            return result

    def _set_scalers(self, compute: Compute, scope: Scope, step_id: str, name: str,
                     wanted: dict[str, float], result: FaultResult, *,
                     check_capacity: bool) -> None:
        """Patch one service's backends to the wanted scalers, re-reading on a stale fingerprint."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            try:
                service = call(compute.backend_services.get, project=scope.account,
                                backend_service=name)
            except exceptions.NotFound:
                result.notes.append(f"backend service {name} no longer exists; nothing to change")
                return
            present = {b.group for b in service.backends}
            missing = sorted(set(wanted) - present)
            changing = [b for b in service.backends
                        if b.group in wanted and not _same(_scaler(b), wanted[b.group])]
            if check_capacity and changing:
                self._refuse_without_capacity(step_id, service, scope, wanted)
            if not changing:
                break
            backends = []
            for backend in service.backends:
                copy = compute_v1.Backend(backend)
                if backend.group in wanted:
                    copy.capacity_scaler = wanted[backend.group]
                backends.append(copy)
            try:
                patch = compute_v1.BackendService(backends=backends,
                                                  fingerprint=service.fingerprint)
                mutate(compute, compute.backend_services.patch_unary,
                        project=scope.account, backend_service=name,
                        backend_service_resource=patch)
            except exceptions.PreconditionFailed:
                continue
            break
        else:
            raise CloudError(f"backend service {name} kept changing under gameday "
                             f"({FINGERPRINT_ATTEMPTS} stale fingerprints in a row)",
                             retryable=True)
        result.changed += len(changing)
        result.unchanged += len(wanted) - len(changing) - len(missing)
        result.notes += [f"backend {last(group)} is no longer in backend service {name}; "
                         "nothing to change" for group in missing]
