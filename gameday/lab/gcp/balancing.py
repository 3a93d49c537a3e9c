"""Zonal unmanaged instance groups and global backend services, with their aggregated lists
(managed instance groups are `gameday.lab.gcp.groups`').

Backend services check `fingerprint` on patch and update (missing or stale → 412
conditionNotMet); each backend keeps `group` (normalised to a full URL), `balancingMode`
(default UTILIZATION) and `capacityScaler` (default 1.0; 0.0 or 0.1..1.0, 0.0 round-trips).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.catalogue import REGIONS, ZONES
from gameday.lab.gcp.core import GLOBAL, NAME, PROJECT, ZONE, Outcome, merge_patch
from gameday.lab.gcp.instances import InstancesApi
from gameday.lab.gcp.listing import aggregated_body, list_body
from gameday.lab.gcp.operations import OpFailure, now

_SERVICE_OUTPUT = ("kind", "id", "creationTimestamp", "selfLink", "name")


class BalancingApi(InstancesApi):
    def register_balancing(self) -> None:
        groups = ZONE + "/instanceGroups"
        self.add_route("GET", groups, self.list_groups)
        self.add_route("POST", groups, self.insert_group)
        self.add_route("GET", groups + "/" + NAME, self.get_group)
        self.add_route("DELETE", groups + "/" + NAME, self.delete_group)
        self.add_route("POST", groups + "/" + NAME + "/addInstances", self.add_instances)
        self.add_route("POST", groups + "/" + NAME + "/removeInstances", self.remove_instances)
        self.add_route("POST", groups + "/" + NAME + "/listInstances", self.list_group_instances)
        self.add_route("GET", PROJECT + "/aggregated/instanceGroups", self.aggregated_groups)
        services = GLOBAL + "/backendServices"
        self.add_route("GET", PROJECT + "/aggregated/backendServices", self.aggregated_services)
        self.add_route("GET", services, self.list_services)
        self.add_route("POST", services, self.insert_service)
        self.add_route("GET", services + "/" + NAME, self.get_service)
        self.add_route("PATCH", services + "/" + NAME, self.patch_service)
        self.add_route("PUT", services + "/" + NAME, self.update_service)
        self.add_route("DELETE", services + "/" + NAME, self.delete_service)

    # --- instance groups -------------------------------------------------------------------

    def group_link(self, project: str, zone: str, name: str) -> str:
        return self.link(f"projects/{project}/zones/{zone}/instanceGroups/{name}")

    def _group(self, request: Request) -> dict[str, Any]:
        project, zone, name = request.params["project"], self.zone(request), request.params["name"]
        group = self.state.groups.get((project, zone), {}).get(name)
        if group is None:
            raise self.not_found(f"projects/{project}/zones/{zone}/instanceGroups/{name}")
        return group

    def list_groups(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        groups = self.state.groups.get((project, zone), {})
        return Response(200, list_body(request, "compute#instanceGroupList",
                                       self.link(f"projects/{project}/zones/{zone}/"
                                                 "instanceGroups"),
                                       groups.values(), len(groups)))

    def aggregated_groups(self, request: Request) -> Response:
        project = request.params["project"]
        return Response(200, aggregated_body(
            request, "compute#instanceGroupAggregatedList",
            self.link(f"projects/{project}/aggregated/instanceGroups"), "instanceGroups",
            [(f"regions/{region}", []) for region in REGIONS]
            + [(f"zones/{zone}", list(self.state.groups.get((project, zone), {}).values()))
               for zone in ZONES]))

    def get_group(self, request: Request) -> Response:
        return Response(200, self._group(request))

    def insert_group(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        body = self.body(request)
        name = self.valid_name(body, "instance group")

        def apply() -> Outcome:
            groups = self.state.groups.setdefault((project, zone), {})
            link = self.group_link(project, zone, name)
            if name in groups:
                raise ApiError(409, "alreadyExists", f"The resource "
                               f"'projects/{project}/zones/{zone}/instanceGroups/{name}' "
                               "already exists")
            group = {
                "kind": "compute#instanceGroup", "id": self.next_id(),
                "creationTimestamp": now(), "name": name,
                "description": body.get("description", ""),
                "namedPorts": body.get("namedPorts") or [],
                "fingerprint": self.fingerprint(),
                "zone": self.link(f"projects/{project}/zones/{zone}"),
                "size": 0, "selfLink": link,
            }
            if body.get("network"):
                network, failure = self.find_network(project, body["network"])
                if failure is not None:
                    return link, group["id"], failure
                group["network"] = network
            groups[name] = group
            self.state.members[(project, zone, name)] = {}
            return link, group["id"], None

        return self.mutate(request, f"zones/{zone}", "insert", apply)

    def delete_group(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)

        def apply() -> Outcome:
            group = self._group(request)
            name = group["name"]
            users = [service["name"] for service in self.state.backend_services.get(project, {})
                     .values() if any(backend["group"] == group["selfLink"]
                                      for backend in service.get("backends", []))]
            if users:
                return group["selfLink"], group["id"], OpFailure(
                    400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
                    f"The instance_group resource '{group['selfLink']}' is already being used "
                    f"by backend service '{users[0]}'")
            del self.state.groups[(project, zone)][name]
            for instance in self.state.members.pop((project, zone, name), {}):
                self.state.groups_of.get((project, zone, instance), set()).discard(name)
            return group["selfLink"], group["id"], None

        return self.mutate(request, f"zones/{zone}", "delete", apply)

    def _references(self, request: Request, body: dict[str, Any]) -> list[str]:
        project, zone = request.params["project"], request.params["zone"]
        names = []
        for reference in body.get("instances") or []:
            ref_project, scope, name = self.resolve(reference.get("instance"), "instances",
                                                    project, f"zones/{zone}")
            if (ref_project, scope) != (project, f"zones/{zone}"):
                raise ApiError(400, "invalid", f"Instance '{reference.get('instance')}' is not "
                                               f"in the zone and project of the group.")
            names.append(name)
        return names

    def add_instances(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        body = self.body(request)

        def apply() -> Outcome:
            group = self._group(request)
            names = self._references(request, body)
            members = self.state.members[(project, zone, group["name"])]
            instances = self.state.instances.get((project, zone), {})
            network = group.get("network")
            for name in names:
                instance = instances.get(name)
                if instance is None:
                    return group["selfLink"], group["id"], OpFailure(
                        404, "RESOURCE_NOT_FOUND", f"The resource 'projects/{project}/zones/"
                                                   f"{zone}/instances/{name}' was not found")
                if name in members:
                    return group["selfLink"], group["id"], OpFailure(
                        400, "MEMBER_ALREADY_EXISTS", f"Instance '{name}' is already a member "
                                                      f"of '{group['name']}'")
                network = network or instance["networkInterfaces"][0]["network"]
                if instance["networkInterfaces"][0]["network"] != network:
                    return group["selfLink"], group["id"], OpFailure(
                        400, "INVALID_USAGE", f"Instance '{name}' is not in the network of "
                                              f"'{group['name']}'")
            for name in names:
                members[name] = None
                self.state.groups_of.setdefault((project, zone, name), set()).add(group["name"])
            self._resize(project, zone, group["name"], network)
            return group["selfLink"], group["id"], None

        return self.mutate(request, f"zones/{zone}", "addInstances", apply)

    def remove_instances(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        body = self.body(request)

        def apply() -> Outcome:
            group = self._group(request)
            for name in self._references(request, body):
                self.state.groups_of.get((project, zone, name), set()).discard(group["name"])
                self.state.members[(project, zone, group["name"])].pop(name, None)
            self._resize(project, zone, group["name"])
            return group["selfLink"], group["id"], None

        return self.mutate(request, f"zones/{zone}", "removeInstances", apply)

    def drop_member(self, project: str, zone: str, group: str, instance: str) -> None:
        self.state.members[(project, zone, group)].pop(instance, None)
        self._resize(project, zone, group)

    def _resize(self, project: str, zone: str, name: str, network: str | None = None) -> None:
        groups = self.state.groups[(project, zone)]
        changed = {**groups[name], "size": len(self.state.members[(project, zone, name)]),
                   "fingerprint": self.fingerprint()}
        if network:
            changed["network"] = network
        groups[name] = changed

    def list_group_instances(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        group = self._group(request)
        members = self.state.members[(project, zone, group["name"])]

        instances = self.state.instances.get((project, zone), {})

        def items() -> Iterator[dict[str, Any]]:
            for name in members:
                status = instances[name]["status"] if name in instances else "TERMINATED"
                yield {"instance": self.instance_link(project, zone, name), "status": status}

        body = list_body(request, "compute#instanceGroupsListInstances",
                         group["selfLink"] + "/listInstances", items(), len(members))
        return Response(200, body)

    # --- backend services ------------------------------------------------------------------

    def _service(self, request: Request) -> dict[str, Any]:
        project, name = request.params["project"], request.params["name"]
        service = self.state.backend_services.get(project, {}).get(name)
        if service is None:
            raise self.not_found(f"projects/{project}/global/backendServices/{name}")
        return service

    def list_services(self, request: Request) -> Response:
        project = request.params["project"]
        services = self.state.backend_services.get(project, {})
        return Response(200, list_body(request, "compute#backendServiceList",
                                       self.link(f"projects/{project}/global/backendServices"),
                                       services.values(), len(services)))

    def aggregated_services(self, request: Request) -> Response:
        project = request.params["project"]
        return Response(200, aggregated_body(
            request, "compute#backendServiceAggregatedList",
            self.link(f"projects/{project}/aggregated/backendServices"), "backendServices",
            [("global", list(self.state.backend_services.get(project, {}).values()))]
            + [(f"regions/{region}", []) for region in REGIONS]))

    def get_service(self, request: Request) -> Response:
        return Response(200, self._service(request))

    def _backends(self, project: str,
                  backends: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], OpFailure | None]:
        checked: list[dict[str, Any]] = []
        seen: set[str] = set()
        for backend in backends:
            group_project, scope, name = self.resolve(backend.get("group"), "instanceGroups",
                                                      project)
            if not scope.startswith("zones/"):
                raise ApiError(400, "invalid", f"Invalid value for field 'resource.backends"
                                               f"[].group': '{backend.get('group')}'. "
                                               "Only zonal instance groups are emulated.")
            zone = scope.removeprefix("zones/")
            link = self.group_link(group_project, zone, name)
            if link in seen:
                raise ApiError(400, "invalid", f"Duplicate backend group '{link}'.")
            seen.add(link)
            if name not in self.state.groups.get((group_project, zone), {}):
                return [], OpFailure(404, "RESOURCE_NOT_FOUND", f"The resource "
                                     f"'projects/{group_project}/{scope}/instanceGroups/{name}' "
                                     "was not found")
            scaler = backend.get("capacityScaler", 1.0)
            if not isinstance(scaler, int | float) or not (scaler == 0 or 0.1 <= scaler <= 1.0):
                raise ApiError(400, "invalid", f"Invalid value for field 'resource.backends[]"
                                               f".capacityScaler': '{scaler}'. Must be 0 or "
                                               "between 0.1 and 1.0")
            checked.append({**backend, "group": link,
                            "balancingMode": backend.get("balancingMode") or "UTILIZATION",
                            "capacityScaler": float(scaler)})
        return checked, None

    def insert_service(self, request: Request) -> Response:
        project = request.params["project"]
        body = self.body(request)
        name = self.valid_name(body, "backend service")

        def apply() -> Outcome:
            services = self.state.backend_services.setdefault(project, {})
            link = self.link(f"projects/{project}/global/backendServices/{name}")
            if name in services:
                raise ApiError(409, "alreadyExists", f"The resource "
                               f"'projects/{project}/global/backendServices/{name}' already "
                               "exists")
            service_id = self.next_id()
            backends, failure = self._backends(project, body.get("backends") or [])
            if failure is not None:
                return link, service_id, failure
            services[name] = {
                "protocol": "HTTP", "port": 80, "portName": "http", "timeoutSec": 30,
                "loadBalancingScheme": "EXTERNAL", "sessionAffinity": "NONE",
                "affinityCookieTtlSec": 0, "enableCDN": False,
                "connectionDraining": {"drainingTimeoutSec": 300}, "description": "",
                **body,
                "kind": "compute#backendService", "id": service_id,
                "creationTimestamp": now(), "name": name, "selfLink": link,
                "backends": backends, "fingerprint": self.fingerprint(),
            }
            return link, service_id, None

        return self.mutate(request, "global", "insert", apply)

    def patch_service(self, request: Request) -> Response:
        return self._change_service(request, "patch")

    def update_service(self, request: Request) -> Response:
        return self._change_service(request, "update")

    def _change_service(self, request: Request, op_type: str) -> Response:
        project = request.params["project"]
        body = self.body(request)

        def apply() -> Outcome:
            current = self._service(request)
            if not self.same_fingerprint(body.get("fingerprint"), current["fingerprint"]):
                raise self.stale("backend service")
            if body.get("name", current["name"]) != current["name"]:
                raise ApiError(400, "invalid", "Invalid value for field 'resource.name': "
                                               f"'{body['name']}'. The name cannot change.")
            changed = merge_patch(copy.deepcopy(current), body) if op_type == "patch" else copy.deepcopy(body)
            changed.update({key: current[key] for key in _SERVICE_OUTPUT})
            backends, failure = self._backends(project, changed.get("backends") or [])
            if failure is not None:
                return current["selfLink"], current["id"], failure
            changed.update(backends=backends, fingerprint=self.fingerprint())
            self.state.backend_services[project][current["name"]] = changed
            return current["selfLink"], current["id"], None

        return self.mutate(request, "global", op_type, apply)

    def delete_service(self, request: Request) -> Response:
        project = request.params["project"]

        def apply() -> Outcome:
            service = self._service(request)
            del self.state.backend_services[project][service["name"]]
            return service["selfLink"], service["id"], None

        return self.mutate(request, "global", "delete", apply)
