"""The repairs of managed instance groups held while the GCP power fault stops their members.

Before: an instance the power fault takes may have been created by a regional managed instance
group M (its metadata `created-by` names `projects/P/regions/R/instanceGroupManagers/M`, as Compute
Engine sets it); M's `instanceLifecyclePolicy.defaultActionOnFailure` is A (REPAIR or DO_NOTHING;
unset means REPAIR).
After apply: M's `defaultActionOnFailure` is DO_NOTHING, set before any member is stopped, so M
neither starts nor recreates what gameday stopped. Where it already is DO_NOTHING nothing is sent.
After restore (once the members run again): M's `defaultActionOnFailure` is A. Each change is a
fingerprinted patch of that field alone (a stale fingerprint is read again and retried):
autohealing policies and autoscalers are `deny_capacity`'s part and are never sent, so a capacity
step on the same MIG in one run restores its own part and this one its own.
Refused: a member of a zonal MIG (the lab serves regional MIGs only, so gameday's hold of zonal
ones is not proven yet).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from google.api_core import exceptions
from google.cloud import compute_v1
from pydantic import BaseModel

from activities.gcp.api import FINGERPRINT_ATTEMPTS, Compute, call, compute_clients, mutate
from gameday.errors import CloudError, TargetNotFound

REPAIR = "REPAIR"
DO_NOTHING = "DO_NOTHING"
_CREATED_BY = re.compile(r"(?:^|/)projects/[^/]+/(?P<scope>regions|zones)/(?P<where>[^/]+)/"
                         r"instanceGroupManagers/(?P<name>[^/]+)$")

Outcome = Literal["changed", "unchanged", "gone"]


class HeldGroup(BaseModel):
    """A regional MIG whose members gameday stops, and its `defaultActionOnFailure` before."""

    region: str
    name: str
    on_failure: str = REPAIR


def manager_of(instance: compute_v1.Instance) -> tuple[str, str, str] | None:
    """(`regions` or `zones`, its region or zone, name) of the MIG that created `instance`; None
    when no MIG did."""
    created_by = next((item.value for item in instance.metadata.items if item.key == "created-by"),
                      "")
    found = _CREATED_BY.search(created_by)
    return (found["scope"], found["where"], found["name"]) if found else None


def _on_failure(manager: compute_v1.InstanceGroupManager) -> str:
    return manager.instance_lifecycle_policy.default_action_on_failure or REPAIR


class GroupsHold:
    """The MIG calls of the power fault: read, and set `defaultActionOnFailure`, idempotently."""

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    def _manager(self, project: str, region: str,
                 name: str) -> compute_v1.InstanceGroupManager | None:
        try:
            return call(self._clients().managers.get, project=project, region=region,
                        instance_group_manager=name)
        except exceptions.NotFound:
            return None

    def recorded(self, project: str, step_id: str,
                 managers: list[tuple[str, str]]) -> list[HeldGroup]:
        """Each (region, name) MIG with its `defaultActionOnFailure` now; TargetNotFound when one
        does not exist."""
        held = []
        for region, name in sorted(set(managers)):
            manager = self._manager(project, region, name)
            if manager is None:
                raise TargetNotFound(f"step {step_id}: managed instance group {name}, which "
                                     f"created instances of the step, does not exist in region "
                                     f"{region} of project {project}")
            held.append(HeldGroup(region=region, name=name, on_failure=_on_failure(manager)))
        return held

    def set_on_failure(self, project: str, group: HeldGroup, action: str) -> Outcome:
        """The MIG's `defaultActionOnFailure` set to `action` unless it is so already."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            manager = self._manager(project, group.region, group.name)
            if manager is None:
                return "gone"
            if _on_failure(manager) == action:
                return "unchanged"
            try:
                compute = self._clients()
                mutate(compute, compute.managers.patch_unary,
                       request=compute_v1.PatchRegionInstanceGroupManagerRequest(
                           project=project, region=group.region, instance_group_manager=group.name,
                           instance_group_manager_resource=compute_v1.InstanceGroupManager(
                               fingerprint=manager.fingerprint,
                               instance_lifecycle_policy=compute_v1
                               .InstanceGroupManagerInstanceLifecyclePolicy(
                                   default_action_on_failure=action))))
            except exceptions.PreconditionFailed:
                continue
            except exceptions.NotFound:
                return "gone"
            return "changed"
        raise CloudError(f"managed instance group {group.name} kept changing under gameday "
                         f"({FINGERPRINT_ATTEMPTS} stale fingerprints in a row)", retryable=True)

