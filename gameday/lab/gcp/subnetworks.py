"""Custom-mode subnetworks (regional resources, regional operations): insert, delete, and the
ones `networking` lists next to the auto-mode subnetworks. Ranges of one network may not overlap
(400, as Compute Engine answers); an unknown network is 404."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from typing import Any

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.catalogue import REGIONS
from gameday.lab.gcp.core import ComputeCore, Outcome
from gameday.lab.gcp.operations import now


class SubnetworksApi(ComputeCore):
    def custom_subnetworks(self, project: str, region: str) -> list[dict[str, Any]]:
        return list(self.state.subnetworks.get((project, region), {}).values())

    def _ranges_of_network(self, project: str, network: str) -> list[tuple[str, str, str]]:
        """(region, subnet, range) of every custom subnet range of `network`, and auto ranges."""
        found = []
        for region in REGIONS:
            for subnet in self.subnetworks(project, region):  # type: ignore[attr-defined]
                if subnet["network"] == network:
                    found += [(region, subnet["name"], r) for r in _ranges(subnet)]
        return found

    def insert_subnetwork(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        body = self.body(request)
        name = self.valid_name(body, "subnetwork")

        def apply() -> Outcome:
            subnets = self.state.subnetworks.setdefault((project, region), {})
            path = f"projects/{project}/regions/{region}/subnetworks/{name}"
            if name in subnets:
                raise ApiError(409, "alreadyExists", f"The resource '{path}' already exists")
            net_project, _, net_name = self.resolve(body.get("network"), "networks", project)
            if net_name not in self.state.networks.get(net_project, {}):
                raise self.not_found(f"projects/{net_project}/global/networks/{net_name}")
            network = self.state.networks[net_project][net_name]["selfLink"]
            subnet = {
                "kind": "compute#subnetwork", "id": self.next_id(), "creationTimestamp": now(),
                "name": name, "description": body.get("description", ""), "network": network,
                "ipCidrRange": body.get("ipCidrRange"),
                "secondaryIpRanges": [{"rangeName": r.get("rangeName"),
                                       "ipCidrRange": r.get("ipCidrRange")}
                                      for r in body.get("secondaryIpRanges") or []],
                "region": self.link(f"projects/{project}/regions/{region}"),
                "selfLink": self.link(path), "privateIpGoogleAccess": False,
                "fingerprint": base64.b64encode(hashlib.sha256(path.encode()).digest()[:8]).decode(),
                "purpose": "PRIVATE", "stackType": "IPV4_ONLY",
            }
            new = []
            for cidr in _ranges(subnet):
                try:
                    ipaddress.IPv4Network(cidr)
                except (ValueError, TypeError) as exc:
                    raise ApiError(400, "invalid", f"Invalid value for field "
                                   f"'resource.ipCidrRange': '{cidr}'. Invalid IPCidrRange: "
                                   f"{cidr}.") from exc
                new.append(cidr)
            taken = self._ranges_of_network(project, network)
            for cidr in new:
                for where, other, existing in taken + [(region, name, c) for c in new if c != cidr]:
                    if ipaddress.IPv4Network(cidr).overlaps(ipaddress.IPv4Network(existing)):
                        raise ApiError(400, "invalid", f"Invalid IPCidrRange: {cidr} conflicts "
                                       f"with existing subnetwork '{other}' in region "
                                       f"'{where}'.")
            subnet["gatewayAddress"] = str(ipaddress.IPv4Network(subnet["ipCidrRange"])
                                           .network_address + 1)
            subnets[name] = subnet
            return subnet["selfLink"], subnet["id"], None

        return self.mutate(request, f"regions/{region}", "insert", apply)

    def delete_subnetwork(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        name = request.params["name"]

        def apply() -> Outcome:
            subnets = self.state.subnetworks.get((project, region), {})
            subnet = subnets.get(name)
            if subnet is None:
                raise self.not_found(f"projects/{project}/regions/{region}/subnetworks/{name}")
            del subnets[name]
            return subnet["selfLink"], subnet["id"], None

        return self.mutate(request, f"regions/{region}", "delete", apply)


def _ranges(subnet: dict[str, Any]) -> list[str]:
    return [subnet["ipCidrRange"], *(r["ipCidrRange"] for r in subnet.get("secondaryIpRanges", []))]
