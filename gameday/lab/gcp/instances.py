"""VM instances (zonal resources, zonal operations): insert, get, list, aggregatedList, delete,
setTags, setLabels and setMetadata, with fingerprints checked like Compute Engine (412
conditionNotMet), and the power operations stop, start, suspend, resume and reset, which take
time (`power_seconds`) and land whether or not anyone polls them.

An instance has Compute Engine's shape: a boot disk (`disks[]`), `metadata` with its fingerprint,
`scheduling` and the project's default compute service account, unless the insert gave them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.catalogue import ZONES, network_ip
from gameday.lab.gcp.core import NAME, PROJECT, ZONE, Outcome
from gameday.lab.gcp.listing import aggregated_body, list_body
from gameday.lab.gcp.networking import NetworkingApi
from gameday.lab.gcp.operations import OpFailure, now

_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_TAG = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")


class InstancesApi(NetworkingApi):
    def register_instances(self) -> None:
        base = ZONE + "/instances"
        self.add_route("GET", base, self.list_instances)
        self.add_route("POST", base, self.insert_instance)
        self.add_route("GET", base + "/" + NAME, self.get_instance)
        self.add_route("DELETE", base + "/" + NAME, self.delete_instance)
        self.add_route("POST", base + "/" + NAME + "/setTags", self.set_tags)
        self.add_route("POST", base + "/" + NAME + "/setLabels", self.set_labels)
        self.add_route("POST", base + "/" + NAME + "/setMetadata", self.set_metadata)
        for action in _POWER:
            self.add_route("POST", base + "/" + NAME + "/" + action,
                           lambda request, action=action: self.power(request, action))
        self.add_route("GET", PROJECT + "/aggregated/instances", self.aggregated_instances)

    def instance_link(self, project: str, zone: str, name: str) -> str:
        return self.link(f"projects/{project}/zones/{zone}/instances/{name}")

    def _instance(self, request: Request) -> dict[str, Any]:
        project, zone, name = request.params["project"], self.zone(request), request.params["name"]
        instance = self.state.instances.get((project, zone), {}).get(name)
        if instance is None:
            raise self.not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return instance

    def _store(self, request: Request, instance: dict[str, Any]) -> None:
        key = (request.params["project"], request.params["zone"])
        self.state.instances[key][instance["name"]] = instance

    # --- reads -----------------------------------------------------------------------------

    def get_instance(self, request: Request) -> Response:
        return Response(200, self._instance(request))

    def list_instances(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        instances = self.state.instances.get((project, zone), {})
        return Response(200, list_body(request, "compute#instanceList",
                                       self.link(f"projects/{project}/zones/{zone}/instances"),
                                       instances.values(), len(instances)))

    def aggregated_instances(self, request: Request) -> Response:
        project = request.params["project"]
        scopes = [(f"zones/{zone}", list(self.state.instances.get((project, zone), {}).values()))
                  for zone in ZONES]
        return Response(200, aggregated_body(
            request, "compute#instanceAggregatedList",
            self.link(f"projects/{project}/aggregated/instances"), "instances", scopes))

    # --- mutations -------------------------------------------------------------------------

    def insert_instance(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)
        body = self.body(request)
        name = self.valid_name(body, "instance")
        tags = _tag_items(body.get("tags") or {})
        labels = _labels(body.get("labels") or {})

        def apply() -> Outcome:
            instances = self.state.instances.setdefault((project, zone), {})
            link = self.instance_link(project, zone, name)
            if name in instances:
                raise ApiError(409, "alreadyExists", f"The resource "
                               f"'projects/{project}/zones/{zone}/instances/{name}' already exists")
            instance_id = self.next_id()
            nics, failure = self._interfaces(project, zone, body.get("networkInterfaces") or [{}])
            if failure is not None:
                return link, instance_id, failure
            machine = (body.get("machineType") or "e2-medium").rsplit("/", 1)[-1]
            instance = {
                **body,
                "kind": "compute#instance",
                "id": instance_id,
                "creationTimestamp": now(),
                "name": name,
                "description": body.get("description", ""),
                "machineType": self.link(f"projects/{project}/zones/{zone}/machineTypes/"
                                         f"{machine}"),
                "status": "RUNNING",
                "zone": self.link(f"projects/{project}/zones/{zone}"),
                "networkInterfaces": nics,
                "tags": _tags(tags, self.fingerprint()),
                "labelFingerprint": self.fingerprint(),
                "fingerprint": self.fingerprint(),
                "cpuPlatform": "Intel Cascade Lake",
                "disks": _disks(self.link, project, zone, name, body.get("disks") or [{}]),
                "metadata": {"kind": "compute#metadata", "fingerprint": self.fingerprint(),
                             **({"items": body["metadata"]["items"]}
                                if (body.get("metadata") or {}).get("items") else {})},
                "scheduling": {**_SCHEDULING, **(body.get("scheduling") or {})},
                "serviceAccounts": body.get("serviceAccounts") or [{
                    "email": f"{project_number(project)}-compute@developer.gserviceaccount.com",
                    "scopes": list(_DEFAULT_SCOPES)}],
                "canIpForward": bool(body.get("canIpForward", False)),
                "deletionProtection": bool(body.get("deletionProtection", False)),
                "startRestricted": False,
                "lastStartTimestamp": now(),
                "selfLink": link,
            }
            instance.pop("labels", None)
            if labels:
                instance["labels"] = labels
            for nic in nics:
                self.use_network(project, nic["network"].rsplit("/", 1)[1], +1)
            instances[name] = instance
            return link, instance_id, None

        return self.mutate(request, f"zones/{zone}", "insert", apply)

    def _interfaces(self, project: str, zone: str, requested: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], OpFailure | None]:
        region = ZONES[zone]
        nics: list[dict[str, Any]] = []
        for index, nic in enumerate(requested):
            network, failure = self.find_network(project, nic.get("network"))
            if failure is not None:
                return [], failure
            network_name = network.rsplit("/", 1)[1]
            address = nic.get("networkIP") or self._next_address(project, network_name, region)
            try:
                ipaddress.IPv4Address(address)
            except ValueError as exc:
                raise ApiError(400, "invalid", f"Invalid value for field "
                               f"'resource.networkInterfaces[{index}].networkIP': "
                               f"'{address}'.") from exc
            nics.append({
                **nic, "kind": "compute#networkInterface", "network": network,
                "subnetwork": self.link(f"projects/{project}/regions/{region}/subnetworks/"
                                        f"{network_name}"),
                "networkIP": address, "name": f"nic{index}", "fingerprint": self.fingerprint(),
                "stackType": "IPV4_ONLY",
            })
        return nics, None

    def _next_address(self, project: str, network: str, region: str) -> str:
        key = (project, network, region)
        index = self.state.addresses.get(key, 0)
        self.state.addresses[key] = index + 1
        return network_ip(region, index)

    def delete_instance(self, request: Request) -> Response:
        project, zone = request.params["project"], self.zone(request)

        def apply() -> Outcome:
            instance = self._instance(request)
            name = instance["name"]
            del self.state.instances[(project, zone)][name]
            for nic in instance["networkInterfaces"]:
                self.use_network(project, nic["network"].rsplit("/", 1)[1], -1)
            for group in self.state.groups_of.pop((project, zone, name), set()):
                self.drop_member(project, zone, group, name)
            return instance["selfLink"], instance["id"], None

        return self.mutate(request, f"zones/{zone}", "delete", apply)

    def drop_member(self, project: str, zone: str, group: str, instance: str) -> None:
        """Remove `instance` from `group` (the instance-groups module owns the group shape)."""

    def set_tags(self, request: Request) -> Response:
        body = self.body(request)
        items = _tag_items(body)

        def apply() -> Outcome:
            instance = self._instance(request)
            if not self.same_fingerprint(body.get("fingerprint"), instance["tags"]["fingerprint"]):
                raise self.stale("tags")
            changed = {**instance, "tags": _tags(items, self.fingerprint()),
                       "fingerprint": self.fingerprint()}
            self._store(request, changed)
            return instance["selfLink"], instance["id"], None

        return self.mutate(request, f"zones/{self.zone(request)}", "setTags", apply)

    def set_labels(self, request: Request) -> Response:
        body = self.body(request)
        labels = _labels(body.get("labels") or {})

        def apply() -> Outcome:
            instance = self._instance(request)
            if not self.same_fingerprint(body.get("labelFingerprint"), instance["labelFingerprint"]):
                raise self.stale("labels")
            changed = {key: value for key, value in instance.items() if key != "labels"}
            if labels:
                changed["labels"] = labels
            changed["labelFingerprint"] = self.fingerprint()
            self._store(request, changed)
            return instance["selfLink"], instance["id"], None

        return self.mutate(request, f"zones/{self.zone(request)}", "setLabels", apply)


    def set_metadata(self, request: Request) -> Response:
        body = self.body(request)
        items = body.get("items") or []
        if not isinstance(items, list) or any(not isinstance(item, dict) or "key" not in item
                                              for item in items):
            raise ApiError(400, "invalid", "Invalid value for field 'resource.items': each "
                                           "metadata item needs a 'key'.")

        def apply() -> Outcome:
            instance = self._instance(request)
            if not self.same_fingerprint(body.get("fingerprint"), instance["metadata"]["fingerprint"]):
                raise self.stale("metadata")
            metadata = {"kind": "compute#metadata", "fingerprint": self.fingerprint()}
            if items:
                metadata["items"] = [{"key": item["key"], "value": item.get("value", "")}
                                     for item in items]
            self._store(request, {**instance, "metadata": metadata})
            return instance["selfLink"], instance["id"], None

        return self.mutate(request, f"zones/{self.zone(request)}", "setMetadata", apply)

    def power(self, request: Request, action: str) -> Response:
        """stop, start, suspend, resume or reset: the transitional status now, the final one
        when the operation is DONE (`power_seconds` later, or earlier when its reads hurry it);
        an instance already where the action leads is left as is, at once. An instance in
        another transition is not ready: starting a STOPPING instance is refused (400
        resourceNotReady), as on Compute Engine."""
        project, zone, name = request.params["project"], self.zone(request), request.params["name"]
        sources, transitional, final = _POWER[action]
        stamp = {"stop": "lastStopTimestamp", "start": "lastStartTimestamp",
                 "resume": "lastStartTimestamp", "suspend": "lastSuspendedTimestamp"}.get(action)
        moving: list[bool] = []

        def apply() -> Outcome:
            instance = self._instance(request)
            status = instance["status"]
            if status != final or action == "reset":
                if status not in sources:
                    raise ApiError(400, "resourceNotReady",
                                   f"The resource 'projects/{project}/zones/{zone}/instances/"
                                   f"{name}' is not ready (it is {status}; {action} needs "
                                   f"{' or '.join(sorted(sources))}).")
                self._store(request, {**instance, "status": transitional})
                moving.append(action != "reset")
            return instance["selfLink"], instance["id"], None

        def finish() -> None:
            instance = self.state.instances.get((project, zone), {}).get(name)
            if instance is not None and instance["status"] == transitional:
                changed = {**instance, "status": final}
                if stamp:
                    changed[stamp] = now()
                self.state.instances[(project, zone)][name] = changed

        return self.mutate(request, f"zones/{zone}", action, apply, finish,
                           lambda: self.power_seconds if any(moving) else None)


_POWER: dict[str, tuple[frozenset[str], str, str]] = {
    "stop": (frozenset({"RUNNING", "STAGING", "PROVISIONING", "SUSPENDED", "REPAIRING"}),
             "STOPPING", "TERMINATED"),
    "start": (frozenset({"TERMINATED"}), "STAGING", "RUNNING"),
    "suspend": (frozenset({"RUNNING"}), "SUSPENDING", "SUSPENDED"),
    "resume": (frozenset({"SUSPENDED"}), "STAGING", "RUNNING"),
    "reset": (frozenset({"RUNNING"}), "RUNNING", "RUNNING"),
}
"""action → (statuses it starts from, status while its operation runs, status when DONE)."""

_SCHEDULING = {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
               "provisioningModel": "STANDARD"}
_DEFAULT_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_only",
                   "https://www.googleapis.com/auth/logging.write",
                   "https://www.googleapis.com/auth/monitoring.write",
                   "https://www.googleapis.com/auth/service.management.readonly",
                   "https://www.googleapis.com/auth/servicecontrol",
                   "https://www.googleapis.com/auth/trace.append")


def project_number(project: str) -> int:
    """A stable 12-digit project number for `project` (the emulator has no resource manager)."""
    return 100_000_000_000 + int(hashlib.sha256(project.encode()).hexdigest(), 16) % 900_000_000_000


def _disks(link: Callable[[str], str], project: str, zone: str, name: str,
           requested: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attached disks of a new instance: each requested disk (the first is the boot disk
    unless stated), with a `source` in the zone named after the instance."""
    disks = []
    for index, disk in enumerate(requested):
        params = disk.get("initializeParams") or {}
        disk_name = params.get("diskName") or (name if index == 0 else f"{name}-{index}")
        source = disk.get("source") or link(f"projects/{project}/zones/{zone}/disks/{disk_name}")
        disks.append({
            "kind": "compute#attachedDisk", "type": disk.get("type") or "PERSISTENT",
            "mode": disk.get("mode") or "READ_WRITE", "source": source,
            "deviceName": disk.get("deviceName") or f"persistent-disk-{index}", "index": index,
            "boot": bool(disk.get("boot", index == 0)),
            "autoDelete": bool(disk.get("autoDelete", True)), "interface": "SCSI",
            "diskSizeGb": str(params.get("diskSizeGb") or 10), "architecture": "X86_64",
        })
    return disks


def _tag_items(tags: dict[str, Any]) -> list[str]:
    items = tags.get("items") or []
    for item in items:
        if not isinstance(item, str) or not _TAG.fullmatch(item):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.tags.items': "
                                           f"'{item}'. Must be a match of regex "
                                           "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
    return list(dict.fromkeys(items))


def _tags(items: list[str], fingerprint: str) -> dict[str, Any]:
    return {"items": items, "fingerprint": fingerprint} if items else {"fingerprint": fingerprint}


def _labels(labels: dict[str, Any]) -> dict[str, str]:
    if not isinstance(labels, dict) or len(labels) > 64:
        raise ApiError(400, "invalid", "Invalid value for field 'labels': at most 64 labels.")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not isinstance(value, str) or \
                not _LABEL_VALUE.fullmatch(value):
            raise ApiError(400, "invalid", f"Invalid value for field 'labels': "
                                           f"'{key}={value}'.")
    return dict(labels)
