"""A regional MIG's members and its repair of them, for `gameday.lab.gcp.groups`.

A member is an instance of one of the region's zones whose metadata `created-by` names the MIG
(`projects/{project number or id}/regions/{region}/instanceGroupManagers/{name}`, as Compute
Engine sets it). `instanceLifecyclePolicy.defaultActionOnFailure` is REPAIR (the default) or
DO_NOTHING. While it is REPAIR, a member that is TERMINATED (stopped by anyone but the MIG) is
RUNNING again `repair_seconds` after its stop landed, whether or not anyone polls (the next
request of any client sees it). Compute Engine may recreate such a member instead; the lab starts
the same instance, which keeps its name, labels and metadata.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from gameday.lab.emulator import ApiError
from gameday.lab.gcp.catalogue import ZONES
from gameday.lab.gcp.instances import project_number
from gameday.lab.gcp.operations import now

Instances = dict[tuple[str, str], dict[str, dict[str, Any]]]
"""(project, zone) → instance name → the instance, as the emulator stores them."""

ACTIONS = ("REPAIR", "DO_NOTHING")
REPAIR_SECONDS = 3.0
"""Seconds after a member's stop until a MIG that repairs has it RUNNING again."""
_CREATED_BY = re.compile(r"(?:^|/)projects/([^/]+)/regions/([^/]+)/instanceGroupManagers/([^/]+)$")


def lifecycle(policy: Any) -> dict[str, str]:
    """The stored `instanceLifecyclePolicy` of a MIG, from what an insert or patch gave."""
    if not isinstance(policy, dict):
        raise ApiError(400, "invalid", "Invalid value for field 'resource.instanceLifecyclePolicy'.")
    action = policy.get("defaultActionOnFailure") or "REPAIR"
    if action not in ACTIONS:
        raise ApiError(400, "invalid", "Invalid value for field 'resource.instanceLifecyclePolicy"
                                       f".defaultActionOnFailure': '{action}'. Must be one of "
                                       f"{', '.join(ACTIONS)}.")
    return {**policy, "defaultActionOnFailure": action,
            "forceUpdateOnRepair": policy.get("forceUpdateOnRepair") or "NO"}


def manager_of(instance: dict[str, Any], owners: set[str]) -> tuple[str, str] | None:
    """(region, MIG name) that created `instance`, when its project is one of `owners` (the
    project's id and number)."""
    created_by = next((item.get("value", "") for item in instance["metadata"].get("items", [])
                       if item.get("key") == "created-by"), "")
    found = _CREATED_BY.search(created_by)
    if found is None or found[1] not in owners:
        return None
    return found[2], found[3]


def managed_instance(instance: dict[str, Any]) -> dict[str, Any]:
    """A member as `listManagedInstances` shows it."""
    return {"instance": instance["selfLink"], "id": instance["id"], "name": instance["name"],
            "instanceStatus": instance["status"], "currentAction": "NONE",
            "targetStatus": "RUNNING",
            "version": {"instanceTemplate": instance.get("instanceTemplate", "")}}


def repaired(instance: dict[str, Any], seconds: float) -> dict[str, Any] | None:
    """The member started again by its MIG, when it has been TERMINATED for `seconds`; else
    None."""
    if instance["status"] != "TERMINATED":
        return None
    stopped = instance.get("lastStopTimestamp")
    moment = datetime.fromisoformat(now())
    if stopped and (moment - datetime.fromisoformat(stopped)).total_seconds() < seconds:
        return None
    return {**instance, "status": "RUNNING", "lastStartTimestamp": now()}


def members(instances: Instances, project: str, region: str,
            name: str) -> list[tuple[str, dict[str, Any]]]:
    """(zone, instance) of each member of the MIG, in zone then insertion order."""
    owners = {project, str(project_number(project))}
    return [(zone, instance) for zone in ZONES if ZONES[zone] == region
            for instance in instances.get((project, zone), {}).values()
            if manager_of(instance, owners) == (region, name)]


def repair(managers: dict[tuple[str, str], dict[str, dict[str, Any]]], instances: Instances,
           seconds: float) -> None:
    """Start each member stopped `seconds` ago or more whose MIG repairs (REPAIR)."""
    for (project, region), named in managers.items():
        for name, manager in named.items():
            if manager["instanceLifecyclePolicy"]["defaultActionOnFailure"] != "REPAIR":
                continue
            for zone, instance in members(instances, project, region, name):
                started = repaired(instance, seconds)
                if started is not None:
                    instances[(project, zone)][instance["name"]] = started
