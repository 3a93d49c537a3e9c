"""Zones, regions (a fixed catalogue, each region with its quotas and their usage) and the three
operations collections, with the aggregated list of all operations."""

from __future__ import annotations

from typing import Any

from gameday.lab.emulator import Request, Response
from gameday.lab.gcp.catalogue import REGIONS, ZONES, zone_id
from gameday.lab.gcp.core import GLOBAL, NAME, PROJECT, REGION, ZONE, ComputeCore
from gameday.lab.gcp.listing import aggregated_body, list_body

_CREATED = "1969-12-31T16:00:00.000-08:00"
_REGION_QUOTAS = {"CPUS": 2400, "DISKS_TOTAL_GB": 409600, "STATIC_ADDRESSES": 800,
                  "IN_USE_ADDRESSES": 2300, "SSD_TOTAL_GB": 81920, "INSTANCE_GROUPS": 1000,
                  "INSTANCE_GROUP_MANAGERS": 500, "INSTANCES": 6000, "SUBNETWORKS": 275}
"""The lab project's regional limits: generous, so rehearsals at scale are not stopped by them."""


def _vcpus(machine_type: str) -> int:
    """vCPUs of a machine type link: the `-N` suffix (`n2-standard-4`), 2 for shared-core types."""
    suffix = machine_type.rsplit("/", 1)[-1].rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 2


class LocationsApi(ComputeCore):
    def register_locations(self) -> None:
        self.add_route("GET", PROJECT + "/zones", self.list_zones)
        self.add_route("GET", ZONE, self.get_zone)
        self.add_route("GET", PROJECT + "/regions", self.list_regions)
        self.add_route("GET", REGION, self.get_region)
        self.add_route("GET", PROJECT + "/aggregated/operations", self.aggregated_operations)
        for prefix, scope in ((GLOBAL, self._global), (REGION, self._regional),
                              (ZONE, self._zonal)):
            self.add_route("GET", prefix + "/operations",
                           lambda r, s=scope: self.list_operations(r, s(r)))
            self.add_route("GET", prefix + "/operations/" + NAME,
                           lambda r, s=scope: self.get_operation(r, s(r), finish=False))
            self.add_route("DELETE", prefix + "/operations/" + NAME,
                           lambda r, s=scope: self.delete_operation(r, s(r)))
            self.add_route("POST", prefix + "/operations/" + NAME + "/wait",
                           lambda r, s=scope: self.get_operation(r, s(r), finish=True))

    # --- zones and regions -----------------------------------------------------------------

    def _zone_body(self, project: str, zone: str) -> dict[str, Any]:
        return {
            "kind": "compute#zone", "id": str(zone_id(zone)), "creationTimestamp": _CREATED,
            "name": zone, "description": zone, "status": "UP",
            "region": self.link(f"projects/{project}/regions/{ZONES[zone]}"),
            "selfLink": self.link(f"projects/{project}/zones/{zone}"),
            "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"], "supportsPzs": False,
        }

    def _region_body(self, project: str, region: str) -> dict[str, Any]:
        info = REGIONS[region]
        return {
            "kind": "compute#region", "id": str(info.id), "creationTimestamp": _CREATED,
            "name": region, "description": region, "status": "UP",
            "zones": [self.link(f"projects/{project}/zones/{region}-{suffix}")
                      for suffix in info.zones],
            "quotas": self._quotas(project, region),
            "selfLink": self.link(f"projects/{project}/regions/{region}"),
            "supportsPzs": False,
        }

    def _quotas(self, project: str, region: str) -> list[dict[str, Any]]:
        """The region's quotas with what the project's resources there use of them."""
        instances = [instance for zone, name in ZONES.items() if name == region
                     for instance in self.state.instances.get((project, zone), {}).values()]
        groups = sum(len(self.state.groups.get((project, zone), {}))
                     for zone, name in ZONES.items() if name == region)
        running = [i for i in instances if i["status"] not in ("TERMINATED", "SUSPENDED")]
        usage = {
            "CPUS": sum(_vcpus(i["machineType"]) for i in running),
            "INSTANCES": len(instances),
            "DISKS_TOTAL_GB": sum(int(d.get("diskSizeGb", 10)) for i in instances
                                  for d in i.get("disks", [])),
            "IN_USE_ADDRESSES": sum(len(i["networkInterfaces"]) for i in running),
            "INSTANCE_GROUPS": groups,
            "SUBNETWORKS": sum(1 for n in self.state.networks.get(project, {}).values()
                               if n.get("autoCreateSubnetworks")),
        }
        return [{"metric": metric, "limit": float(limit), "usage": float(usage.get(metric, 0))}
                for metric, limit in _REGION_QUOTAS.items()]

    def list_zones(self, request: Request) -> Response:
        project = request.params["project"]
        zones = [self._zone_body(project, zone) for zone in ZONES]
        return Response(200, list_body(request, "compute#zoneList",
                                       self.link(f"projects/{project}/zones"), zones, len(zones)))

    def get_zone(self, request: Request) -> Response:
        return Response(200, self._zone_body(request.params["project"], self.zone(request)))

    def list_regions(self, request: Request) -> Response:
        project = request.params["project"]
        regions = [self._region_body(project, region) for region in REGIONS]
        return Response(200, list_body(request, "compute#regionList",
                                       self.link(f"projects/{project}/regions"), regions,
                                       len(regions)))

    def get_region(self, request: Request) -> Response:
        return Response(200, self._region_body(request.params["project"], self.region(request)))

    # --- operations ------------------------------------------------------------------------

    @staticmethod
    def _global(_: Request) -> str:
        return "global"

    def _regional(self, request: Request) -> str:
        return f"regions/{self.region(request)}"

    def _zonal(self, request: Request) -> str:
        return f"zones/{self.zone(request)}"

    def get_operation(self, request: Request, scope: str, *, finish: bool) -> Response:
        return Response(200, self.operations.get(request.params["project"], scope,
                                                 request.params["name"], finish=finish))

    def delete_operation(self, request: Request, scope: str) -> Response:
        self.operations.delete(request.params["project"], scope, request.params["name"])
        return Response(200, {})

    def aggregated_operations(self, request: Request) -> Response:
        project = request.params["project"]
        scopes = ["global", *(f"regions/{region}" for region in REGIONS),
                  *(f"zones/{zone}" for zone in ZONES)]
        return Response(200, aggregated_body(
            request, "compute#operationAggregatedList",
            self.link(f"projects/{project}/aggregated/operations"), "operations",
            [(scope, list(self.operations.listing(project, scope).values())) for scope in scopes]))

    def list_operations(self, request: Request, scope: str) -> Response:
        project = request.params["project"]
        ops = self.operations.listing(project, scope)
        return Response(200, list_body(request, "compute#operationList",
                                       self.link(f"projects/{project}/{scope}/operations"),
                                       ops.values(), len(ops)))
