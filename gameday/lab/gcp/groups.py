"""Regional managed instance groups and regional autoscalers, with regional operations.

`regionInstanceGroupManagers`: get, list, insert, delete and patch (JSON merge patch: lists
replace; `fingerprint` checked, missing or stale → 412 conditionNotMet). `autoHealingPolicies`
holds at most one policy, as on Compute Engine; a patch with an empty policy (`[{}]`, what gcloud's
`--clear-autohealing` and a client that cannot send an empty list send) removes autohealing.
A MIG's `status.autoscaler` links the autoscaler that targets it; deleting a MIG an autoscaler
still targets fails its operation (RESOURCE_IN_USE_BY_ANOTHER_RESOURCE).

`regionAutoscalers`: get, list, insert, patch and update (`?autoscaler=NAME`, as the API names
it), delete. `autoscalingPolicy.mode` is ON (the default), OFF, ONLY_SCALE_OUT or ONLY_UP; an
autoscaler has no fingerprint (last writer wins, as on Compute Engine). `target` names one
regional MIG of the same region; a missing MIG or one that already has an autoscaler fails the
operation.

A MIG's members are the instances whose metadata `created-by` names it (`listManagedInstances`
lists them); its `instanceLifecyclePolicy.defaultActionOnFailure` (REPAIR, the default, or
DO_NOTHING) is patched like the rest, and while it is REPAIR a stopped member is started again
after `repair_seconds` (`gameday.lab.gcp.group_members`).

Not modelled: instance templates and health checks (references are kept as links, unchecked),
creating or deleting members to reach `targetSize`, scaling, and autohealing by health check.
Zonal MIGs and autoscalers are served as empty collections.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.catalogue import REGIONS, ZONES
from gameday.lab.gcp.core import NAME, PROJECT, REGION, ZONE, ComputeCore, Outcome, merge_patch
from gameday.lab.gcp.group_members import (
    REPAIR_SECONDS,
    lifecycle,
    managed_instance,
    members,
    repair,
)
from gameday.lab.gcp.listing import aggregated_body, list_body
from gameday.lab.gcp.operations import OpFailure, now

MODES = ("ON", "OFF", "ONLY_SCALE_OUT", "ONLY_UP")
_MIG_OUTPUT = ("kind", "id", "creationTimestamp", "selfLink", "name", "region", "instanceGroup",
               "status", "currentActions", "fingerprint")
_SCALER_OUTPUT = ("kind", "id", "creationTimestamp", "selfLink", "name", "region", "status",
                  "recommendedSize")


@dataclass
class ManagedState:
    managers: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    """(project, region) → MIG name → the MIG as stored (without `status.autoscaler`)."""
    autoscalers: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)


class GroupsApi(ComputeCore):
    managed: ManagedState

    def __init__(self, *args: Any, **kwargs: Any):
        self.managed = ManagedState()
        self.repair_seconds = REPAIR_SECONDS
        """Seconds after a member's stop until its MIG, while it repairs, has it RUNNING again."""
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        self.managed = ManagedState()
        self.repair_seconds = REPAIR_SECONDS
        super().reset()

    def handle(self, request: Request) -> Response:
        """Repair what is due before answering: a repair lands whether or not anyone polls."""
        with self.lock:
            self.operations.settle()
            self.repair_members()
        return super().handle(request)

    def members(self, project: str, region: str, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(zone, instance) of each member of the MIG, in zone then insertion order."""
        return members(self.state.instances, project, region, name)

    def repair_members(self) -> None:
        """Start each member stopped `repair_seconds` ago or more whose MIG repairs."""
        repair(self.managed.managers, self.state.instances, self.repair_seconds)

    def register_groups(self) -> None:
        managers = REGION + "/instanceGroupManagers"
        self.add_route("GET", managers, self.list_managers)
        self.add_route("POST", managers, self.insert_manager)
        self.add_route("GET", managers + "/" + NAME, self.get_manager)
        self.add_route("PATCH", managers + "/" + NAME, self.patch_manager)
        self.add_route("DELETE", managers + "/" + NAME, self.delete_manager)
        self.add_route("POST", managers + "/" + NAME + "/listManagedInstances",
                       self.list_managed_instances)
        self.add_route("GET", ZONE + "/instanceGroupManagers",
                       lambda r: self._empty(r, f"zones/{self.zone(r)}", "instanceGroupManager"))
        self.add_route("GET", ZONE + "/instanceGroupManagers/" + NAME, self._zonal_missing)
        self.add_route("GET", PROJECT + "/aggregated/instanceGroupManagers",
                       self.aggregated_managers)
        scalers = REGION + "/autoscalers"
        self.add_route("GET", scalers, self.list_autoscalers)
        self.add_route("POST", scalers, self.insert_autoscaler)
        self.add_route("PATCH", scalers, lambda r: self._change_autoscaler(r, "patch"))
        self.add_route("PUT", scalers, lambda r: self._change_autoscaler(r, "update"))
        self.add_route("GET", scalers + "/" + NAME, self.get_autoscaler)
        self.add_route("DELETE", scalers + "/" + NAME, self.delete_autoscaler)
        self.add_route("GET", ZONE + "/autoscalers",
                       lambda r: self._empty(r, f"zones/{self.zone(r)}", "autoscaler"))
        self.add_route("GET", PROJECT + "/aggregated/autoscalers", self.aggregated_autoscalers)

    # --- instance group managers -------------------------------------------------------------

    def manager_link(self, project: str, region: str, name: str) -> str:
        return self.link(f"projects/{project}/regions/{region}/instanceGroupManagers/{name}")

    def _stored_manager(self, request: Request) -> dict[str, Any]:
        project, region, name = (request.params["project"], self.region(request),
                                 request.params["name"])
        manager = self.managed.managers.get((project, region), {}).get(name)
        if manager is None:
            raise self.not_found(f"projects/{project}/regions/{region}/instanceGroupManagers/"
                                 f"{name}")
        return manager

    def _published(self, project: str, region: str, manager: dict[str, Any]) -> dict[str, Any]:
        """The MIG as the API shows it: `status.autoscaler` names the autoscaler targeting it."""
        scaler = self._autoscaler_of(project, region, manager["selfLink"])
        if scaler is None:
            return manager
        return {**manager, "status": {**manager["status"], "autoscaler": scaler["selfLink"]}}

    def _autoscaler_of(self, project: str, region: str, link: str) -> dict[str, Any] | None:
        return next((a for a in self.managed.autoscalers.get((project, region), {}).values()
                     if a["target"] == link), None)

    def _policies(self, project: str, policies: Any) -> list[dict[str, Any]]:
        if not isinstance(policies, list):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.autoHealingPolicies'.")
        kept = []
        for policy in policies:
            if not isinstance(policy, dict):
                raise ApiError(400, "invalid", "Invalid value for field "
                                               "'resource.autoHealingPolicies[]'.")
            if not policy.get("healthCheck") and policy.get("initialDelaySec") is None:
                continue  # an empty policy: no autohealing
            entry: dict[str, Any] = {}
            if policy.get("healthCheck"):
                hc_project, scope, name = self.resolve(policy["healthCheck"], "healthChecks",
                                                       project)
                entry["healthCheck"] = self.link(f"projects/{hc_project}/{scope}/healthChecks/"
                                                 f"{name}")
            delay = policy.get("initialDelaySec", 300)
            if not isinstance(delay, int) or not 0 <= delay <= 3600:
                raise ApiError(400, "invalid", "Invalid value for field 'resource."
                                               f"autoHealingPolicies[0].initialDelaySec': "
                                               f"'{delay}'. Must be between 0 and 3600.")
            entry["initialDelaySec"] = delay
            kept.append(entry)
        if len(kept) > 1:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.autoHealingPolicies'"
                                           ": only one autohealing policy is supported.")
        return kept

    def _template(self, project: str, reference: Any) -> str:
        template_project, scope, name = self.resolve(reference, "instanceTemplates", project)
        return self.link(f"projects/{template_project}/{scope}/instanceTemplates/{name}")

    def list_managers(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        managers = [self._published(project, region, m)
                    for m in self.managed.managers.get((project, region), {}).values()]
        return Response(200, list_body(request, "compute#regionInstanceGroupManagerList",
                                       self.link(f"projects/{project}/regions/{region}/"
                                                 "instanceGroupManagers"),
                                       managers, len(managers)))

    def aggregated_managers(self, request: Request) -> Response:
        project = request.params["project"]
        return Response(200, aggregated_body(
            request, "compute#instanceGroupManagerAggregatedList",
            self.link(f"projects/{project}/aggregated/instanceGroupManagers"),
            "instanceGroupManagers",
            [(f"regions/{region}", [self._published(project, region, m) for m in
                                    self.managed.managers.get((project, region), {}).values()])
             for region in REGIONS] + [(f"zones/{zone}", []) for zone in ZONES]))

    def get_manager(self, request: Request) -> Response:
        manager = self._stored_manager(request)
        return Response(200, self._published(request.params["project"], request.params["region"],
                                             manager))

    def _zonal_missing(self, request: Request) -> Response:
        raise self.not_found(f"projects/{request.params['project']}/zones/{self.zone(request)}/"
                             f"instanceGroupManagers/{request.params['name']}")

    def _empty(self, request: Request, scope: str, kind: str) -> Response:
        collection = "instanceGroupManagers" if kind == "instanceGroupManager" else "autoscalers"
        project = request.params["project"]
        return Response(200, list_body(request, f"compute#{kind}List",
                                       self.link(f"projects/{project}/{scope}/{collection}"),
                                       [], 0))

    def list_managed_instances(self, request: Request) -> Response:
        """The MIG's members (instances whose `created-by` names it), all in one page."""
        manager = self._stored_manager(request)
        members = self.members(request.params["project"], self.region(request), manager["name"])
        return Response(200, {"managedInstances": [managed_instance(i) for _, i in members]})

    def insert_manager(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        body = self.body(request)
        name = self.valid_name(body, "instance group manager")
        template = self._template(project, body.get("instanceTemplate")
                                  or (body.get("versions") or [{}])[0].get("instanceTemplate"))
        policies = self._policies(project, body.get("autoHealingPolicies") or [])
        on_failure = lifecycle(body.get("instanceLifecyclePolicy") or {})
        size = body.get("targetSize", 0)
        if not isinstance(size, int) or size < 0:
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.targetSize': "
                                           f"'{size}'.")

        def apply() -> Outcome:
            managers = self.managed.managers.setdefault((project, region), {})
            link = self.manager_link(project, region, name)
            if name in managers:
                raise ApiError(409, "alreadyExists", f"The resource 'projects/{project}/regions/"
                               f"{region}/instanceGroupManagers/{name}' already exists")
            zones = [self.link(f"projects/{project}/zones/{z}") for z in ZONES
                     if ZONES[z] == region]
            manager = {
                "kind": "compute#instanceGroupManager", "id": self.next_id(),
                "creationTimestamp": now(), "name": name,
                "description": body.get("description", ""),
                "region": self.link(f"projects/{project}/regions/{region}"),
                "instanceTemplate": template,
                "versions": [{"instanceTemplate": template}],
                "instanceGroup": self.link(f"projects/{project}/regions/{region}/"
                                           f"instanceGroups/{name}"),
                "baseInstanceName": body.get("baseInstanceName") or name,
                "targetSize": size,
                "namedPorts": body.get("namedPorts") or [],
                "distributionPolicy": {"zones": [{"zone": z} for z in zones],
                                       "targetShape": "EVEN"},
                "updatePolicy": {"type": "OPPORTUNISTIC", "minimalAction": "REPLACE",
                                 "maxSurge": {"fixed": len(zones), "calculated": len(zones)},
                                 "maxUnavailable": {"fixed": len(zones),
                                                    "calculated": len(zones)},
                                 "replacementMethod": "SUBSTITUTE",
                                 "instanceRedistributionType": "PROACTIVE"},
                "currentActions": {key: 0 for key in (
                    "none", "creating", "creatingWithoutRetries", "recreating", "deleting",
                    "abandoning", "restarting", "refreshing", "verifying", "resuming",
                    "starting", "stopping", "suspending")},
                "status": {"isStable": True, "versionTarget": {"isReached": True},
                           "stateful": {"hasStatefulConfig": False}},
                "listManagedInstancesResults": "PAGELESS",
                "instanceLifecyclePolicy": on_failure,
                "fingerprint": self.fingerprint(), "selfLink": link,
            }
            if policies:
                manager["autoHealingPolicies"] = policies
            managers[name] = manager
            return link, manager["id"], None

        return self.mutate(request, f"regions/{region}", "insert", apply)

    def patch_manager(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        body = self.body(request)

        def apply() -> Outcome:
            current = self._stored_manager(request)
            if not self.same_fingerprint(body.get("fingerprint"), current["fingerprint"]):
                raise self.stale("instance group manager")
            if body.get("name", current["name"]) != current["name"]:
                raise ApiError(400, "invalid", "Invalid value for field 'resource.name': "
                                               f"'{body['name']}'. The name cannot change.")
            changed = merge_patch(copy.deepcopy(current), body)
            changed.update({key: current[key] for key in _MIG_OUTPUT})
            changed.pop("autoHealingPolicies", None)
            policies = self._policies(project, body["autoHealingPolicies"]
                                      if "autoHealingPolicies" in body
                                      else current.get("autoHealingPolicies", []))
            if policies:
                changed["autoHealingPolicies"] = policies
            changed["instanceLifecyclePolicy"] = lifecycle(
                changed.get("instanceLifecyclePolicy") or {})
            if "instanceTemplate" in body:
                changed["instanceTemplate"] = self._template(project, body["instanceTemplate"])
            changed["fingerprint"] = self.fingerprint()
            self.managed.managers[(project, region)][current["name"]] = changed
            return current["selfLink"], current["id"], None

        return self.mutate(request, f"regions/{region}", "patch", apply)

    def delete_manager(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)

        def apply() -> Outcome:
            manager = self._stored_manager(request)
            scaler = self._autoscaler_of(project, region, manager["selfLink"])
            if scaler is not None:
                return manager["selfLink"], manager["id"], OpFailure(
                    400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
                    f"The instance_group_manager resource '{manager['selfLink']}' is already "
                    f"being used by '{scaler['selfLink']}'")
            del self.managed.managers[(project, region)][manager["name"]]
            return manager["selfLink"], manager["id"], None

        return self.mutate(request, f"regions/{region}", "delete", apply)

    # --- autoscalers -----------------------------------------------------------------------

    def autoscaler_link(self, project: str, region: str, name: str) -> str:
        return self.link(f"projects/{project}/regions/{region}/autoscalers/{name}")

    def _autoscaler(self, project: str, region: str, name: str | None) -> dict[str, Any]:
        scaler = self.managed.autoscalers.get((project, region), {}).get(name or "")
        if scaler is None:
            raise self.not_found(f"projects/{project}/regions/{region}/autoscalers/{name}")
        return scaler

    @staticmethod
    def _policy(policy: Any) -> dict[str, Any]:
        if not isinstance(policy, dict):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.autoscalingPolicy'.")
        mode = policy.get("mode", "ON")
        if mode not in MODES:
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.autoscalingPolicy"
                                           f".mode': '{mode}'. Must be one of "
                                           f"{', '.join(MODES)}.")
        maximum = policy.get("maxNumReplicas")
        if not isinstance(maximum, int) or maximum < 0:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.autoscalingPolicy."
                                           f"maxNumReplicas': '{maximum}'.")
        signals = ("cpuUtilization", "loadBalancingUtilization", "customMetricUtilizations",
                   "scalingSchedules")
        defaults: dict[str, Any] = {"minNumReplicas": 1, "coolDownPeriodSec": 60,
                                    "scaleInControl": {}}
        if not any(policy.get(key) for key in signals):
            defaults["cpuUtilization"] = {"utilizationTarget": 0.6, "predictiveMethod": "NONE"}
        return {**defaults, **policy, "mode": mode}

    def _target(self, project: str, region: str, reference: Any,
                own: str | None) -> tuple[str, OpFailure | None]:
        """The MIG link an autoscaler targets, or why its operation fails."""
        target_project, scope, name = self.resolve(reference, "instanceGroupManagers", project,
                                                   f"regions/{region}")
        link = self.link(f"projects/{target_project}/{scope}/instanceGroupManagers/{name}")
        if (target_project, scope) != (project, f"regions/{region}") or \
                name not in self.managed.managers.get((project, region), {}):
            return link, OpFailure(404, "RESOURCE_NOT_FOUND",
                                   f"The resource '{link}' was not found")
        holder = self._autoscaler_of(project, region, link)
        if holder is not None and holder["name"] != own:
            return link, OpFailure(400, "RESOURCE_ALREADY_AUTOSCALED",
                                   f"The instance group manager '{link}' already has autoscaler "
                                   f"'{holder['name']}'")
        return link, None

    def list_autoscalers(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        scalers = self.managed.autoscalers.get((project, region), {})
        return Response(200, list_body(request, "compute#regionAutoscalerList",
                                       self.link(f"projects/{project}/regions/{region}/"
                                                 "autoscalers"),
                                       scalers.values(), len(scalers)))

    def aggregated_autoscalers(self, request: Request) -> Response:
        project = request.params["project"]
        return Response(200, aggregated_body(
            request, "compute#autoscalerAggregatedList",
            self.link(f"projects/{project}/aggregated/autoscalers"), "autoscalers",
            [(f"regions/{region}",
              list(self.managed.autoscalers.get((project, region), {}).values()))
             for region in REGIONS] + [(f"zones/{zone}", []) for zone in ZONES]))

    def get_autoscaler(self, request: Request) -> Response:
        return Response(200, self._autoscaler(request.params["project"], self.region(request),
                                              request.params["name"]))

    def insert_autoscaler(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        body = self.body(request)
        name = self.valid_name(body, "autoscaler")
        policy = self._policy(body.get("autoscalingPolicy") or {})

        def apply() -> Outcome:
            scalers = self.managed.autoscalers.setdefault((project, region), {})
            link = self.autoscaler_link(project, region, name)
            if name in scalers:
                raise ApiError(409, "alreadyExists", f"The resource 'projects/{project}/regions/"
                               f"{region}/autoscalers/{name}' already exists")
            scaler_id = self.next_id()
            target, failure = self._target(project, region, body.get("target"), None)
            if failure is not None:
                return link, scaler_id, failure
            scalers[name] = {
                "kind": "compute#autoscaler", "id": scaler_id, "creationTimestamp": now(),
                "name": name, "description": body.get("description", ""), "target": target,
                "autoscalingPolicy": policy,
                "region": self.link(f"projects/{project}/regions/{region}"),
                "status": "ACTIVE", "recommendedSize": self._size(project, region, target),
                "selfLink": link,
            }
            return link, scaler_id, None

        return self.mutate(request, f"regions/{region}", "insert", apply)

    def _size(self, project: str, region: str, target: str) -> int:
        manager = self.managed.managers.get((project, region), {}).get(target.rsplit("/", 1)[-1])
        return int(manager["targetSize"]) if manager else 0

    def _change_autoscaler(self, request: Request, op_type: str) -> Response:
        project, region = request.params["project"], self.region(request)
        body = self.body(request)
        name = request.arg("autoscaler") or (body.get("name") if op_type == "update" else None)
        if not name:
            raise ApiError(400, "required", "Required parameter 'autoscaler' is missing.")

        def apply() -> Outcome:
            current = self._autoscaler(project, region, name)
            if body.get("name", current["name"]) != current["name"]:
                raise ApiError(400, "invalid", "Invalid value for field 'resource.name': "
                                               f"'{body['name']}'. The name cannot change.")
            if op_type == "patch":
                changed = merge_patch(copy.deepcopy(current), body)
            else:
                changed = {"description": "", **copy.deepcopy(body)}
            changed.update({key: current[key] for key in _SCALER_OUTPUT})
            changed["autoscalingPolicy"] = self._policy(changed.get("autoscalingPolicy") or {})
            target, failure = self._target(project, region, changed.get("target"), name)
            if failure is not None:
                return current["selfLink"], current["id"], failure
            changed["target"] = target
            self.managed.autoscalers[(project, region)][name] = changed
            return current["selfLink"], current["id"], None

        return self.mutate(request, f"regions/{region}", op_type, apply)

    def delete_autoscaler(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)

        def apply() -> Outcome:
            scaler = self._autoscaler(project, region, request.params["name"])
            del self.managed.autoscalers[(project, region)][scaler["name"]]
            return scaler["selfLink"], scaler["id"], None

        return self.mutate(request, f"regions/{region}", "delete", apply)
