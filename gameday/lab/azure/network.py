"""Microsoft.Network: virtual networks and subnets, network interfaces; network security groups and
their rules are `gameday.lab.azure.security`.

Associations are kept in reverse indexes (NSG -> NICs, subnet -> NICs, NIC -> VM) so that
`properties.networkInterfaces` of an NSG and the in-use checks cost what they return, not a scan.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import TYPE_CHECKING, Any

from gameday.lab.azure.arm import (
    GROUP,
    NAME,
    SUB,
    ArmError,
    Json,
    Resource,
    Table,
    body_of,
    check_if_match,
    child_not_found,
    key,
    not_found,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.peering import VnetPeerings
from gameday.lab.azure.references import invalid_reference, owner_of, ref_id
from gameday.lab.azure.security import SecurityGroups
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

NS = "Microsoft.Network"
VNET_TYPE = f"{NS}/virtualNetworks"
SUBNET_TYPE = f"{NS}/virtualNetworks/subnets"
NIC_TYPE = f"{NS}/networkInterfaces"
IPCONFIG_TYPE = f"{NS}/networkInterfaces/ipConfigurations"
NSG_TYPE = f"{NS}/networkSecurityGroups"
RULE_TYPE = f"{NS}/networkSecurityGroups/securityRules"
DEFAULT_RULE_TYPE = f"{NS}/networkSecurityGroups/defaultSecurityRules"

_NIC_COMPUTED = {"provisioningState", "resourceGuid", "virtualMachine", "macAddress", "primary",
                 "ipConfigurations", "networkSecurityGroup", "hostedWorkloads",
                 "tapConfigurations", "vnetEncryptionSupported", "privateEndpoint"}
class NetworkProvider(SecurityGroups, VnetPeerings):
    """The Microsoft.Network resources that gameday reads and changes."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        self.vnets = Table()
        self.nics = Table()
        self.nsgs = Table()
        self.peerings: dict[str, dict[str, Resource]] = {}
        self.nsg_nics: dict[str, dict[str, str]] = {}
        self.subnet_nics: dict[str, dict[tuple[str, str], tuple[str, str]]] = {}
        self.vm_of: dict[str, str] = {}
        self._next_host: dict[str, int] = {}
        self._macs = 0
        self._register()

    def reset(self) -> None:
        for table in (self.vnets, self.nics, self.nsgs):
            table.clear()
        for index in (self.nsg_nics, self.subnet_nics, self.vm_of, self._next_host,
                      self.peerings):
            index.clear()

    def _register(self) -> None:
        net = GROUP + "/providers/Microsoft\\.Network"
        all_net = SUB + "/providers/Microsoft\\.Network"
        route = self.arm.route
        for plural, table, render in (
            ("virtualNetworks", self.vnets, self.render_vnet),
            ("networkInterfaces", self.nics, self.render_nic),
            ("networkSecurityGroups", self.nsgs, self.render_nsg),
        ):
            route("GET", f"{net}/{plural}", self._lister(table, render))
            route("GET", f"{all_net}/{plural}", self._sub_lister(table, render))
        vnet = rf"{net}/virtualNetworks/(?P<vnet>{NAME})"
        route("GET", vnet, self.get_vnet)
        route("PUT", vnet, self.put_vnet)
        route("DELETE", vnet, self.delete_vnet)
        route("PATCH", vnet, self._tagger(self.vnets, "vnet", self.render_vnet))
        route("GET", vnet + "/subnets", self.list_subnets)
        self.register_peerings(vnet)
        route("GET", vnet + rf"/subnets/(?P<subnet>{NAME})", self.get_subnet)
        route("PUT", vnet + rf"/subnets/(?P<subnet>{NAME})", self.put_subnet)
        route("DELETE", vnet + rf"/subnets/(?P<subnet>{NAME})", self.delete_subnet)
        nic = rf"{net}/networkInterfaces/(?P<nic>{NAME})"
        route("GET", nic, self.get_nic)
        route("PUT", nic, self.put_nic)
        route("DELETE", nic, self.delete_nic)
        route("PATCH", nic, self._tagger(self.nics, "nic", self.render_nic))
        nsg = rf"{net}/networkSecurityGroups/(?P<nsg>{NAME})"
        route("GET", nsg, self.get_nsg)
        route("PUT", nsg, self.put_nsg)
        route("DELETE", nsg, self.delete_nsg)
        route("PATCH", nsg, self._tagger(self.nsgs, "nsg", self.render_nsg))
        route("GET", nsg + "/securityRules", self.list_rules)
        route("GET", nsg + rf"/securityRules/(?P<rule>{NAME})", self.get_rule)
        route("PUT", nsg + rf"/securityRules/(?P<rule>{NAME})", self.put_rule)
        route("DELETE", nsg + rf"/securityRules/(?P<rule>{NAME})", self.delete_rule)
        route("GET", nsg + "/defaultSecurityRules", self.list_default_rules)

    # --- shared ----------------------------------------------------------------------------

    def _id(self, request: Request, plural: str, name_param: str) -> str:
        group = self.arm.group(request)
        return f"{group.id}/providers/{NS}/{plural}/{request.params[name_param]}"

    def _existing(self, request: Request, table: Table, plural: str, param: str) -> Resource:
        resource = table.get(self._id(request, plural, param))
        if resource is None:
            raise not_found(f"{NS}/{plural}", request.params[param], request.params["rg"])
        return resource

    def _lister(self, table: Table, render: Any) -> Any:
        def handler(request: Request) -> Response:
            group = self.arm.group(request)
            return self.arm.page(request, table.in_group(*owner_of(group.id)), render)

        return handler

    def _sub_lister(self, table: Table, render: Any) -> Any:
        def handler(request: Request) -> Response:
            return self.arm.page(request, table.in_subscription(request.params["sub"]), render)

        return handler

    def _tagger(self, table: Table, param: str, render: Any) -> Any:
        plural = {"vnet": "virtualNetworks", "nic": "networkInterfaces",
                  "nsg": "networkSecurityGroups"}[param]

        def handler(request: Request) -> Response:
            resource = self._existing(request, table, plural, param)
            self.arm.operations.ensure_idle(resource.key, resource.id)
            check_if_match(request, resource)
            body = body_of(request)
            if "tags" in body:
                resource.tags = tags_of(body)
                resource.touch()
            return respond(render(resource))

        return handler

    # --- virtual networks and subnets --------------------------------------------------------

    def render_subnet(self, subnet: Resource) -> Json:
        props = dict(subnet.properties)
        props["provisioningState"] = subnet.state
        users = self.subnet_nics.get(subnet.key, {})
        if users:
            props["ipConfigurations"] = [{"id": f"{nic_id}/ipConfigurations/{name}"}
                                         for nic_id, name in users.values()]
        return subnet.envelope(props)

    def render_vnet(self, vnet: Resource) -> Json:
        props = dict(vnet.properties)
        props["provisioningState"] = vnet.state
        props["subnets"] = [self.render_subnet(s) for s in vnet.children.values()]
        props["virtualNetworkPeerings"] = [self.render_peering(p, vnet.key)
                                           for p in self.peerings_of(vnet)]
        return vnet.envelope(props)

    def _subnet(self, vnet: Resource, name: str, body: Json) -> Resource:
        props = {k: v for k, v in (body.get("properties") or {}).items()
                 if k not in ("provisioningState", "ipConfigurations")}
        prefix = props.get("addressPrefix") or (props.get("addressPrefixes") or [None])[0]
        if not prefix:
            raise ArmError(400, "InvalidRequestFormat",
                           f"Subnet {name} must have an addressPrefix.")
        try:
            ipaddress.ip_network(prefix, strict=False)
        except ValueError as exc:
            raise ArmError(400, "InvalidAddressPrefixFormat", f"Address prefix {prefix} of subnet "
                           f"{name} has an invalid format.") from exc
        nsg_id = ref_id(props.get("networkSecurityGroup"))
        if nsg_id:
            nsg = self.nsgs.get(nsg_id)
            if nsg is None:
                raise invalid_reference(nsg_id, f"{vnet.id}/subnets/{name}")
            props["networkSecurityGroup"] = {"id": nsg.id}
        return Resource(id=f"{vnet.id}/subnets/{name}", name=name, type=SUBNET_TYPE,
                        properties=props)

    def _check_subnet_free(self, subnet: Resource) -> None:
        users = self.subnet_nics.get(subnet.key)
        if users:
            configs = ", ".join(f"{nic_id}/ipConfigurations/{name}"
                                for nic_id, name in list(users.values())[:10])
            raise ArmError(400, "InUseSubnetCannotBeDeleted", f"Subnet {subnet.name} is in use "
                           f"by {configs} and cannot be deleted. In order to delete the subnet, "
                           "delete all the resources within the subnet.")

    def get_vnet(self, request: Request) -> Response:
        return respond(self.render_vnet(self._existing(request, self.vnets, "virtualNetworks",
                                                       "vnet")))

    def put_vnet(self, request: Request) -> Response:
        vnet_id = self._id(request, "virtualNetworks", "vnet")
        existing = self.vnets.get(vnet_id)
        check_if_match(request, existing)
        body = body_of(request)
        location = require_location(body, existing)
        props = {k: v for k, v in (body.get("properties") or {}).items()
                 if k not in ("provisioningState", "subnets", "resourceGuid",
                              "virtualNetworkPeerings")}
        prefixes = (props.get("addressSpace") or {}).get("addressPrefixes") or []
        if not prefixes:
            raise ArmError(400, "InvalidRequestFormat", "addressSpace.addressPrefixes is required.")
        vnet = Resource(id=existing.id if existing else vnet_id, name=request.params["vnet"],
                        type=VNET_TYPE, location=location, tags=tags_of(body), properties=props)
        props.setdefault("resourceGuid", (existing.properties if existing else {}).get(
            "resourceGuid", str(uuid.uuid4())))
        for item in (body.get("properties") or {}).get("subnets") or []:
            subnet = self._subnet(vnet, str(item.get("name") or ""), item)
            vnet.children[subnet.name.lower()] = subnet
        if existing:
            for name, old in existing.children.items():
                if name not in vnet.children:
                    self._check_subnet_free(old)
        vnet.state = "Succeeded"
        self.vnets.put(vnet, *owner_of(vnet.id))
        return respond(self.render_vnet(vnet), 200 if existing else 201)

    def delete_vnet(self, request: Request) -> Response:
        vnet = self.vnets.get(self._id(request, "virtualNetworks", "vnet"))
        if vnet is None:
            return respond(None, 204)
        check_if_match(request, vnet)
        for subnet in vnet.children.values():
            self._check_subnet_free(subnet)
        self.vnets.remove(vnet, *owner_of(vnet.id))
        self.peerings.pop(vnet.key, None)
        return respond(None, 200)

    def _vnet(self, request: Request) -> Resource:
        return self._existing(request, self.vnets, "virtualNetworks", "vnet")

    def _subnet_of(self, request: Request) -> tuple[Resource, Resource | None]:
        vnet = self._existing(request, self.vnets, "virtualNetworks", "vnet")
        return vnet, vnet.children.get(request.params["subnet"].lower())

    def list_subnets(self, request: Request) -> Response:
        vnet = self._existing(request, self.vnets, "virtualNetworks", "vnet")
        return self.arm.page(request, vnet.children.values(), self.render_subnet)

    def get_subnet(self, request: Request) -> Response:
        vnet, subnet = self._subnet_of(request)
        if subnet is None:
            raise child_not_found(f"{vnet.id}/subnets/{request.params['subnet']}")
        return respond(self.render_subnet(subnet))

    def put_subnet(self, request: Request) -> Response:
        vnet, existing = self._subnet_of(request)
        check_if_match(request, existing)
        subnet = self._subnet(vnet, existing.name if existing else request.params["subnet"],
                              body_of(request))
        vnet.children[subnet.name.lower()] = subnet
        vnet.touch()
        return respond(self.render_subnet(subnet), 200 if existing else 201)

    def delete_subnet(self, request: Request) -> Response:
        vnet, subnet = self._subnet_of(request)
        if subnet is None:
            return respond(None, 204)
        self._check_subnet_free(subnet)
        del vnet.children[subnet.name.lower()]
        vnet.touch()
        return respond(None, 200)

    def find_subnet(self, subnet_id: str) -> Resource | None:
        head, sep, name = subnet_id.rstrip("/").rpartition("/subnets/")
        if not sep:
            return None
        vnet = self.vnets.get(head)
        return vnet.children.get(name.lower()) if vnet else None

    # --- network interfaces ------------------------------------------------------------------

    def render_nic(self, nic: Resource) -> Json:
        props = dict(nic.properties)
        props["provisioningState"] = nic.state
        props["ipConfigurations"] = [
            {"id": f"{nic.id}/ipConfigurations/{config['name']}", "name": config["name"],
             "type": IPCONFIG_TYPE, "etag": nic.etag,
             "properties": {**config["properties"], "provisioningState": nic.state}}
            for config in nic.properties["ipConfigurations"]
        ]
        vm_id = self.vm_of.get(nic.key)
        if vm_id:
            props["virtualMachine"] = {"id": vm_id}
        return nic.envelope(props)

    def get_nic(self, request: Request) -> Response:
        return respond(self.render_nic(self._existing(request, self.nics, "networkInterfaces",
                                                      "nic")))

    def put_nic(self, request: Request) -> Response:
        nic_id = self._id(request, "networkInterfaces", "nic")
        existing = self.nics.get(nic_id)
        nic_key = key(nic_id)
        self.arm.operations.ensure_idle(nic_key, nic_id)
        check_if_match(request, existing)
        body = body_of(request)
        location = require_location(body, existing)
        given = body.get("properties") or {}
        nic_id = existing.id if existing else nic_id
        configs = self._ip_configurations(nic_id, given.get("ipConfigurations") or [], existing)
        nsg = self._nsg_reference(given.get("networkSecurityGroup"), nic_id, location)
        props = {k: v for k, v in given.items() if k not in _NIC_COMPUTED}
        old = existing.properties if existing else {}
        props["ipConfigurations"] = configs
        props["resourceGuid"] = old.get("resourceGuid") or str(uuid.uuid4())
        props["macAddress"] = old.get("macAddress") or self._mac()
        props.setdefault("nicType", "Standard")
        if nsg is not None:
            props["networkSecurityGroup"] = {"id": nsg.id}
        nic = Resource(id=nic_id, name=existing.name if existing else request.params["nic"],
                       type=NIC_TYPE, location=location, tags=tags_of(body), properties=props)
        if existing:
            self._unlink_nic(existing)
        self.nics.put(nic, *owner_of(nic.id))
        self._link_nic(nic)
        return self.arm.write_response(request, nic, created=existing is None,
                                       kind="networkInterfaces", namespace=NS, location=location,
                                       holds=nic.key, render=lambda: self.render_nic(nic))

    def _ip_configurations(self, nic_id: str, given: list[Any],
                           existing: Resource | None) -> list[Json]:
        if not given:
            raise ArmError(400, "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
                           f"Network interface {nic_id} must have at least one IP configuration.")
        before = {c["name"].lower(): c for c in (existing.properties["ipConfigurations"]
                                                 if existing else [])}
        configs: list[Json] = []
        for index, item in enumerate(given):
            name = str((item or {}).get("name") or f"ipconfig{index + 1}")
            props = {k: v for k, v in ((item or {}).get("properties") or {}).items()
                     if k != "provisioningState"}
            subnet_id = ref_id(props.get("subnet"))
            subnet = self.find_subnet(subnet_id) if subnet_id else None
            if subnet is None:
                raise invalid_reference(subnet_id or "(no subnet)",
                                        f"{nic_id}/ipConfigurations/{name}")
            props["subnet"] = {"id": subnet.id}
            props.setdefault("privateIPAddressVersion", "IPv4")
            old = before.get(name.lower())
            self._address(props, old["properties"] if old else None, subnet)
            configs.append({"name": name, "properties": props})
        if not any(c["properties"].get("primary") for c in configs):
            configs[0]["properties"]["primary"] = True
        return configs

    def _address(self, props: Json, before: Json | None, subnet: Resource) -> None:
        """A static address stays; a dynamic one is kept while the subnet is unchanged."""
        if props.get("privateIPAddress") and props.get("privateIPAllocationMethod") == "Static":
            return
        if before and key(before["subnet"]["id"]) == subnet.key:
            props["privateIPAddress"] = before["privateIPAddress"]
            props["privateIPAllocationMethod"] = before["privateIPAllocationMethod"]
        elif props.get("privateIPAddress"):
            props["privateIPAllocationMethod"] = "Static"
        else:
            props["privateIPAddress"] = self._allocate(subnet)
            props["privateIPAllocationMethod"] = "Dynamic"

    def _allocate(self, subnet: Resource) -> str:
        prefix = subnet.properties.get("addressPrefix") or subnet.properties["addressPrefixes"][0]
        network = ipaddress.ip_network(prefix, strict=False)
        offset = self._next_host.get(subnet.key, 4)
        if offset >= network.num_addresses - 1:
            raise ArmError(400, "SubnetIsFull", f"Subnet {subnet.name} with address prefix "
                           f"{prefix} does not have enough capacity for 1 IP address.")
        self._next_host[subnet.key] = offset + 1
        return str(network.network_address + offset)

    def _mac(self) -> str:
        self._macs += 1
        value = f"000D3A{self._macs:06X}"
        return "-".join(value[i:i + 2] for i in range(0, 12, 2))

    def _nsg_reference(self, value: Any, nic_id: str, location: str) -> Resource | None:
        nsg_id = ref_id(value)
        if nsg_id is None:
            return None
        nsg = self.nsgs.get(nsg_id)
        if nsg is None or nsg.state == "Deleting":
            raise invalid_reference(nsg_id, nic_id)
        if nsg.location != location:
            raise ArmError(400, "InvalidResourceReference", f"Resource {nsg.id} referenced by "
                           f"resource {nic_id} is in location {nsg.location}, not {location}. "
                           "Both resources must be in the same region.")
        op = self.arm.operations.busy(nsg.key)
        if op is not None:
            raise ArmError(429, "ReferencedResourceNotProvisioned", f"Cannot proceed with "
                           f"operation because resource {nsg.id} used by resource {nic_id} is not "
                           f"in Succeeded state. Resource is in {nsg.state} state and the last "
                           f"operation that updated/is updating the resource is {op.name}.",
                           {"Retry-After": "1"})
        return nsg

    def _link_nic(self, nic: Resource) -> None:
        nsg_id = ref_id(nic.properties.get("networkSecurityGroup"))
        if nsg_id:
            self.nsg_nics.setdefault(key(nsg_id), {})[nic.key] = nic.id
        for config in nic.properties["ipConfigurations"]:
            subnet_key = key(config["properties"]["subnet"]["id"])
            users = self.subnet_nics.setdefault(subnet_key, {})
            users[(nic.key, config["name"])] = (nic.id, config["name"])

    def _unlink_nic(self, nic: Resource) -> None:
        nsg_id = ref_id(nic.properties.get("networkSecurityGroup"))
        if nsg_id:
            members = self.nsg_nics.get(key(nsg_id), {})
            members.pop(nic.key, None)
            if not members:
                self.nsg_nics.pop(key(nsg_id), None)
        for config in nic.properties["ipConfigurations"]:
            subnet_key = key(config["properties"]["subnet"]["id"])
            users = self.subnet_nics.get(subnet_key, {})
            users.pop((nic.key, config["name"]), None)
            if not users:
                self.subnet_nics.pop(subnet_key, None)

    def delete_nic(self, request: Request) -> Response:
        nic = self.nics.get(self._id(request, "networkInterfaces", "nic"))
        if nic is None:
            return respond(None, 204)
        self.arm.operations.ensure_idle(nic.key, nic.id)
        check_if_match(request, nic)
        vm_id = self.vm_of.get(nic.key)
        if vm_id:
            raise ArmError(400, "NicInUse", f"Network Interface {nic.id} is used by existing "
                           f"resource {vm_id}. In order to delete the network interface, it must "
                           "be dissociated from the resource.")
        return self.arm.delete_response(request, nic, kind="networkInterfaces", namespace=NS,
                                        location=nic.location or "", holds=nic.key,
                                        remove=lambda: self.remove_nic(nic))

    def remove_nic(self, nic: Resource) -> None:
        """Forget a NIC and its associations (also used when a VM deletes its NICs)."""
        if self.nics.get(nic.id) is nic:
            self._unlink_nic(nic)
            self.nics.remove(nic, *owner_of(nic.id))
            self.vm_of.pop(nic.key, None)
