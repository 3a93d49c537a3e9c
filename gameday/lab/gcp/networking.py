"""Networks and VPC firewall rules (global resources, global operations), and the subnetworks of
auto-mode networks (read-only: one per region, named after the network, in the region's
auto-mode range, as Compute Engine creates them)."""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
from typing import Any

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.catalogue import REGIONS
from gameday.lab.gcp.core import GLOBAL, NAME, PROJECT, REGION, Outcome, merge_patch
from gameday.lab.gcp.listing import aggregated_body, list_body
from gameday.lab.gcp.operations import OpFailure, now
from gameday.lab.gcp.subnetworks import SubnetworksApi

_FIREWALL_OUTPUT = ("kind", "id", "creationTimestamp", "selfLink", "name", "network")


class NetworkingApi(SubnetworksApi):
    def register_networking(self) -> None:
        self.add_route("GET", GLOBAL + "/networks", self.list_networks)
        self.add_route("POST", GLOBAL + "/networks", self.insert_network)
        self.add_route("GET", GLOBAL + "/networks/" + NAME, self.get_network)
        self.add_route("DELETE", GLOBAL + "/networks/" + NAME, self.delete_network)
        self.add_route("GET", GLOBAL + "/firewalls", self.list_firewalls)
        self.add_route("POST", GLOBAL + "/firewalls", self.insert_firewall)
        self.add_route("GET", GLOBAL + "/firewalls/" + NAME, self.get_firewall)
        self.add_route("PATCH", GLOBAL + "/firewalls/" + NAME, self.patch_firewall)
        self.add_route("PUT", GLOBAL + "/firewalls/" + NAME, self.update_firewall)
        self.add_route("DELETE", GLOBAL + "/firewalls/" + NAME, self.delete_firewall)
        self.add_route("GET", REGION + "/subnetworks", self.list_subnetworks)
        self.add_route("GET", REGION + "/subnetworks/" + NAME, self.get_subnetwork)
        self.add_route("POST", REGION + "/subnetworks", self.insert_subnetwork)
        self.add_route("DELETE", REGION + "/subnetworks/" + NAME, self.delete_subnetwork)
        self.add_route("GET", PROJECT + "/aggregated/subnetworks", self.aggregated_subnetworks)

    # --- networks --------------------------------------------------------------------------

    def network_link(self, project: str, name: str) -> str:
        return self.link(f"projects/{project}/global/networks/{name}")

    def _network(self, request: Request) -> dict[str, Any]:
        project, name = request.params["project"], request.params["name"]
        network = self.state.networks.get(project, {}).get(name)
        if network is None:
            raise self.not_found(f"projects/{project}/global/networks/{name}")
        return network

    def find_network(self, project: str, reference: str | None) -> tuple[str, OpFailure | None]:
        """The full URL of a referenced network, and a failure if it does not exist."""
        net_project, _, name = self.resolve(reference or "global/networks/default", "networks",
                                            project)
        url = self.network_link(net_project, name)
        if name not in self.state.networks.get(net_project, {}):
            return url, OpFailure(404, "RESOURCE_NOT_FOUND", f"The resource "
                                  f"'projects/{net_project}/global/networks/{name}' was not found")
        return url, None

    def list_networks(self, request: Request) -> Response:
        project = request.params["project"]
        networks = self.state.networks.get(project, {})
        return Response(200, list_body(request, "compute#networkList",
                                       self.link(f"projects/{project}/global/networks"),
                                       networks.values(), len(networks)))

    def get_network(self, request: Request) -> Response:
        return Response(200, self._network(request))

    def insert_network(self, request: Request) -> Response:
        project = request.params["project"]
        body = self.body(request)
        name = self.valid_name(body, "network")

        def apply() -> Outcome:
            networks = self.state.networks.setdefault(project, {})
            link = self.network_link(project, name)
            if name in networks:
                raise ApiError(409, "alreadyExists", f"The resource "
                               f"'projects/{project}/global/networks/{name}' already exists")
            network = {
                "kind": "compute#network",
                "id": self.next_id(),
                "creationTimestamp": now(),
                "name": name,
                "description": body.get("description", ""),
                "autoCreateSubnetworks": body.get("autoCreateSubnetworks", True),
                "routingConfig": body.get("routingConfig") or {"routingMode": "REGIONAL"},
                "mtu": body.get("mtu", 1460),
                "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
                "selfLink": link,
            }
            network["selfLinkWithId"] = self.link(f"projects/{project}/global/networks/"
                                                  f"{network['id']}")
            networks[name] = network
            return link, network["id"], None

        return self.mutate(request, "global", "insert", apply)

    def delete_network(self, request: Request) -> Response:
        project = request.params["project"]

        def apply() -> Outcome:
            network = self._network(request)
            name = network["name"]
            if self.state.network_users.get((project, name), 0) > 0:
                return network["selfLink"], network["id"], OpFailure(
                    400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
                    f"The network resource 'projects/{project}/global/networks/{name}' is "
                    f"already being used by instances or firewall rules")
            del self.state.networks[project][name]
            return network["selfLink"], network["id"], None

        return self.mutate(request, "global", "delete", apply)

    # --- subnetworks ------------------------------------------------------------------------

    def subnetworks(self, project: str, region: str) -> list[dict[str, Any]]:
        """The subnetworks in `region`: one per auto-mode network, then the custom ones."""
        info = REGIONS[region]
        gateway = str(ipaddress.IPv4Network(info.ip_range).network_address + 1)
        subnets = []
        for network in self.state.networks.get(project, {}).values():
            if not network.get("autoCreateSubnetworks"):
                continue
            path = f"projects/{project}/regions/{region}/subnetworks/{network['name']}"
            subnets.append({
                "kind": "compute#subnetwork",
                "id": str(int(hashlib.sha256(path.encode()).hexdigest(), 16) % 10**19),
                "creationTimestamp": network["creationTimestamp"], "name": network["name"],
                "network": network["selfLink"], "ipCidrRange": info.ip_range,
                "gatewayAddress": gateway, "region": self.link(f"projects/{project}/regions/{region}"),
                "selfLink": self.link(path), "privateIpGoogleAccess": False,
                "fingerprint": base64.b64encode(hashlib.sha256(path.encode()).digest()[:8]).decode(),
                "purpose": "PRIVATE", "stackType": "IPV4_ONLY",
            })
        return subnets + self.custom_subnetworks(project, region)

    def list_subnetworks(self, request: Request) -> Response:
        project, region = request.params["project"], self.region(request)
        subnets = self.subnetworks(project, region)
        return Response(200, list_body(request, "compute#subnetworkList",
                                       self.link(f"projects/{project}/regions/{region}/"
                                                 "subnetworks"), subnets, len(subnets)))

    def get_subnetwork(self, request: Request) -> Response:
        project, region, name = request.params["project"], self.region(request), request.params["name"]
        for subnet in self.subnetworks(project, region):
            if subnet["name"] == name:
                return Response(200, subnet)
        raise self.not_found(f"projects/{project}/regions/{region}/subnetworks/{name}")

    def aggregated_subnetworks(self, request: Request) -> Response:
        project = request.params["project"]
        return Response(200, aggregated_body(
            request, "compute#subnetworkAggregatedList",
            self.link(f"projects/{project}/aggregated/subnetworks"), "subnetworks",
            [(f"regions/{region}", self.subnetworks(project, region)) for region in REGIONS]))

    # --- firewalls -------------------------------------------------------------------------

    def _firewall(self, request: Request) -> dict[str, Any]:
        project, name = request.params["project"], request.params["name"]
        firewall = self.state.firewalls.get(project, {}).get(name)
        if firewall is None:
            raise self.not_found(f"projects/{project}/global/firewalls/{name}")
        return firewall

    def list_firewalls(self, request: Request) -> Response:
        project = request.params["project"]
        firewalls = self.state.firewalls.get(project, {})
        return Response(200, list_body(request, "compute#firewallList",
                                       self.link(f"projects/{project}/global/firewalls"),
                                       firewalls.values(), len(firewalls)))

    def get_firewall(self, request: Request) -> Response:
        return Response(200, self._firewall(request))

    def insert_firewall(self, request: Request) -> Response:
        project = request.params["project"]
        body = self.body(request)
        name = self.valid_name(body, "firewall")

        def apply() -> Outcome:
            firewalls = self.state.firewalls.setdefault(project, {})
            link = self.link(f"projects/{project}/global/firewalls/{name}")
            if name in firewalls:
                raise ApiError(409, "alreadyExists", f"The resource "
                               f"'projects/{project}/global/firewalls/{name}' already exists")
            network, failure = self.find_network(project, body.get("network"))
            firewall = _checked_firewall({
                **body, "kind": "compute#firewall", "id": self.next_id(),
                "creationTimestamp": now(), "selfLink": link, "network": network,
            })
            if failure is None:
                firewalls[name] = firewall
                self.use_network(project, network.rsplit("/", 1)[1], +1)
            return link, firewall["id"], failure

        return self.mutate(request, "global", "insert", apply)

    def patch_firewall(self, request: Request) -> Response:
        return self._change_firewall(request, "patch")

    def update_firewall(self, request: Request) -> Response:
        return self._change_firewall(request, "update")

    def _change_firewall(self, request: Request, op_type: str) -> Response:
        project = request.params["project"]
        body = self.body(request)

        def apply() -> Outcome:
            current = self._firewall(request)
            if body.get("name", current["name"]) != current["name"]:
                raise ApiError(400, "invalid", "Invalid value for field 'resource.name': "
                                               f"'{body['name']}'. The name cannot change.")
            if "network" in body:
                network, _ = self.find_network(project, body["network"])
                if network != current["network"]:
                    raise ApiError(400, "invalid", "Invalid value for field 'resource.network'"
                                                   ": the network of a rule cannot change.")
            changed = merge_patch(copy.deepcopy(current), body) if op_type == "patch" else copy.deepcopy(body)
            changed.update({key: current[key] for key in _FIREWALL_OUTPUT})
            if op_type == "patch" and ("allowed" in body) != ("denied" in body):
                changed.pop("denied" if "allowed" in body else "allowed", None)
            self.state.firewalls[project][current["name"]] = _checked_firewall(changed)
            return current["selfLink"], current["id"], None

        return self.mutate(request, "global", op_type, apply)

    def delete_firewall(self, request: Request) -> Response:
        project = request.params["project"]

        def apply() -> Outcome:
            firewall = self._firewall(request)
            del self.state.firewalls[project][firewall["name"]]
            self.use_network(project, firewall["network"].rsplit("/", 1)[1], -1)
            return firewall["selfLink"], firewall["id"], None

        return self.mutate(request, "global", "delete", apply)


def _checked_firewall(rule: dict[str, Any]) -> dict[str, Any]:
    """`rule` with Compute Engine's defaults filled in, or 400 if it is not a valid rule."""
    allowed, denied = rule.get("allowed") or [], rule.get("denied") or []
    if bool(allowed) == bool(denied):
        raise ApiError(400, "invalid", "Exactly one of 'allowed' or 'denied' must be specified.")
    for entry in allowed or denied:
        if not isinstance(entry, dict) or not entry.get("IPProtocol"):
            raise ApiError(400, "invalid", "Required field 'IPProtocol' not specified")
    direction = rule.get("direction") or "INGRESS"
    if direction not in ("INGRESS", "EGRESS"):
        raise ApiError(400, "invalid", f"Invalid value for field 'resource.direction': "
                                       f"'{direction}'.")
    priority = rule.get("priority", 1000)
    if not isinstance(priority, int) or not 0 <= priority <= 65535:
        raise ApiError(400, "invalid", f"Invalid value for field 'resource.priority': "
                                       f"'{priority}'. Must be between 0 and 65535.")
    checked = {key: value for key, value in rule.items() if value not in ([], None)}
    checked.update(direction=direction, priority=priority,
                   disabled=bool(rule.get("disabled", False)),
                   logConfig=rule.get("logConfig") or {"enable": False},
                   description=rule.get("description", ""))
    sources = ("sourceRanges", "sourceTags", "sourceServiceAccounts")
    if direction == "INGRESS" and not any(checked.get(key) for key in sources):
        checked["sourceRanges"] = ["0.0.0.0/0"]
    if direction == "EGRESS" and not checked.get("destinationRanges"):
        checked["destinationRanges"] = ["0.0.0.0/0"]
    return checked
