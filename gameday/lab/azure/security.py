"""Microsoft.Network's network security groups and their rules, as `NetworkProvider` serves them:
ARM's default rules, priority and name conflicts, and a rule or NSG write that holds the NSG busy
(the NICs that reference it cannot move meanwhile) until its operation ends.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from gameday.lab.azure.arm import (
    ArmError,
    Json,
    Resource,
    Table,
    body_of,
    check_if_match,
    child_not_found,
    key,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.references import owner_of, ref_id
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

NS = "Microsoft.Network"
NSG_TYPE = f"{NS}/networkSecurityGroups"
RULE_TYPE = f"{NS}/networkSecurityGroups/securityRules"
DEFAULT_RULE_TYPE = f"{NS}/networkSecurityGroups/defaultSecurityRules"
_NSG_COMPUTED = {"provisioningState", "resourceGuid", "securityRules", "defaultSecurityRules",
                 "networkInterfaces", "subnets", "flowLogs", "flushConnection"}
_RULE_ENUMS = {
    "protocol": ("Tcp", "Udp", "Icmp", "Esp", "Ah", "*"),
    "access": ("Allow", "Deny"),
    "direction": ("Inbound", "Outbound"),
}
_DEFAULT_RULES = [
    ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*"),
    ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet"),
    ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*"),
]


class SecurityGroups:
    """The NSG half of `NetworkProvider` (which holds the tables and the NIC index it reads)."""

    arm: ResourceManagerEmulator
    nsgs: Table
    nsg_nics: dict[str, dict[str, str]]


    def render_rule(self, rule: Resource) -> Json:
        return rule.envelope({**rule.properties, "provisioningState": rule.state})

    def render_nsg(self, nsg: Resource) -> Json:
        props = dict(nsg.properties)
        props["provisioningState"] = nsg.state
        props["securityRules"] = [self.render_rule(r) for r in nsg.children.values()]
        props["defaultSecurityRules"] = self._default_rules(nsg)
        members = self.nsg_nics.get(nsg.key)
        if members:
            props["networkInterfaces"] = [{"id": nic_id} for nic_id in members.values()]
        return nsg.envelope(props)

    def _default_rules(self, nsg: Resource) -> list[Json]:
        return [
            {"id": f"{nsg.id}/defaultSecurityRules/{name}", "name": name, "type": DEFAULT_RULE_TYPE,
             "etag": nsg.etag,
             "properties": {"provisioningState": "Succeeded", "description": name,
                            "protocol": "*", "sourcePortRange": "*", "destinationPortRange": "*",
                            "sourceAddressPrefix": source, "destinationAddressPrefix": dest,
                            "access": access, "priority": priority, "direction": direction}}
            for name, direction, access, priority, source, dest in _DEFAULT_RULES
        ]

    def _rule(self, nsg_id: str, name: str, body: Json) -> Resource:
        props = {k: v for k, v in (body.get("properties") or {}).items()
                 if k != "provisioningState"}
        for field_name, allowed in _RULE_ENUMS.items():
            value = props.get(field_name)
            match = next((a for a in allowed
                          if isinstance(value, str) and a.lower() == value.lower()), None)
            if match is None:
                raise ArmError(400, "SecurityRuleParameterContainsUnsupportedValue",
                               f"Security rule parameter {field_name[0].upper()}{field_name[1:]} "
                               f"for rule with Id {nsg_id}/securityRules/{name} cannot be "
                               f"{value!r}. Allowed values: {', '.join(allowed)}.")
            props[field_name] = match
        priority = props.get("priority")
        valid = isinstance(priority, int) and not isinstance(priority, bool)
        if not valid or not 100 <= priority <= 4096:
            raise ArmError(400, "SecurityRuleInvalidPriority", f"Security rule has invalid "
                           f"Priority. Value provided: {priority} Allowed values: 100-4096.")
        return Resource(id=f"{nsg_id}/securityRules/{name}", name=name, type=RULE_TYPE,
                        properties=props)

    @staticmethod
    def _check_conflicts(rules: list[Resource]) -> None:
        seen: dict[tuple[str, int], str] = {}
        for rule in rules:
            slot = (rule.properties["direction"], rule.properties["priority"])
            if slot in seen:
                raise ArmError(400, "SecurityRuleConflict", f"Security rule {seen[slot]} "
                               f"conflicts with rule {rule.name}. Rules cannot have the same "
                               "Priority and Direction. To learn more, see aka.ms/nsgrules.")
            seen[slot] = rule.name

    def get_nsg(self, request: Request) -> Response:
        return respond(self.render_nsg(self._existing(request, self.nsgs,
                                                      "networkSecurityGroups", "nsg")))

    def put_nsg(self, request: Request) -> Response:
        nsg_id = self._id(request, "networkSecurityGroups", "nsg")
        existing = self.nsgs.get(nsg_id)
        nsg_id = existing.id if existing else nsg_id
        self.arm.operations.ensure_idle(key(nsg_id), nsg_id)
        check_if_match(request, existing)
        body = body_of(request)
        location = require_location(body, existing)
        if existing and existing.location != location:
            raise ArmError(400, "InvalidResourceLocation", f"The resource {nsg_id} already exists "
                           f"in location {existing.location}; it cannot be moved to {location}.")
        given = body.get("properties") or {}
        rules = [self._rule(nsg_id, str((item or {}).get("name") or ""), item or {})
                 for item in given.get("securityRules") or []]
        self._check_conflicts(rules)
        props = {k: v for k, v in given.items() if k not in _NSG_COMPUTED}
        props["flushConnection"] = bool(given.get("flushConnection", False))
        props["resourceGuid"] = (existing.properties["resourceGuid"] if existing
                                 else str(uuid.uuid4()))
        nsg = Resource(id=nsg_id, name=existing.name if existing else request.params["nsg"],
                       type=NSG_TYPE, location=location, tags=tags_of(body), properties=props,
                       children={r.name.lower(): r for r in rules})
        self.nsgs.put(nsg, *owner_of(nsg.id))

        def done() -> None:
            for rule in nsg.children.values():
                rule.state = "Succeeded"

        for rule in rules:
            rule.state = "Updating"
        return self.arm.write_response(request, nsg, created=existing is None,
                                       kind="networkSecurityGroups", namespace=NS,
                                       location=location, holds=nsg.key,
                                       render=lambda: self.render_nsg(nsg), on_done=done)

    def delete_nsg(self, request: Request) -> Response:
        nsg = self.nsgs.get(self._id(request, "networkSecurityGroups", "nsg"))
        if nsg is None:
            return respond(None, 204)
        self.arm.operations.ensure_idle(nsg.key, nsg.id)
        check_if_match(request, nsg)
        users = list(self.nsg_nics.get(nsg.key, {}).values())
        users += [s.id for v in self.vnets.items.values() for s in v.children.values()
                  if key(ref_id(s.properties.get("networkSecurityGroup")) or "") == nsg.key]
        if users:
            shown = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10
                                             else "")
            raise ArmError(400, "InUseNetworkSecurityGroupCannotBeDeleted", f"Network security "
                           f"group {nsg.id} cannot be deleted because it is in use by the "
                           f"following resources: {shown}. In order to delete the Network "
                           "security group, remove the association with the resource(s).")

        def remove() -> None:
            if self.nsgs.get(nsg.id) is nsg:
                self.nsgs.remove(nsg, *owner_of(nsg.id))

        return self.arm.delete_response(request, nsg, kind="networkSecurityGroups", namespace=NS,
                                        location=nsg.location or "", holds=nsg.key, remove=remove)

    def list_rules(self, request: Request) -> Response:
        nsg = self._existing(request, self.nsgs, "networkSecurityGroups", "nsg")
        return self.arm.page(request, nsg.children.values(), self.render_rule)

    def list_default_rules(self, request: Request) -> Response:
        nsg = self._existing(request, self.nsgs, "networkSecurityGroups", "nsg")
        return respond({"value": self._default_rules(nsg)})

    def get_rule(self, request: Request) -> Response:
        nsg = self._existing(request, self.nsgs, "networkSecurityGroups", "nsg")
        rule = nsg.children.get(request.params["rule"].lower())
        if rule is None:
            raise child_not_found(f"{nsg.id}/securityRules/{request.params['rule']}")
        return respond(self.render_rule(rule))

    def put_rule(self, request: Request) -> Response:
        nsg = self._existing(request, self.nsgs, "networkSecurityGroups", "nsg")
        self.arm.operations.ensure_idle(nsg.key, nsg.id)
        existing = nsg.children.get(request.params["rule"].lower())
        check_if_match(request, existing)
        rule = self._rule(nsg.id, existing.name if existing else request.params["rule"],
                          body_of(request))
        others = [r for name, r in nsg.children.items() if name != rule.name.lower()]
        self._check_conflicts([*others, rule])
        nsg.children[rule.name.lower()] = rule
        nsg.touch()

        def done() -> None:
            nsg.state = "Succeeded"

        if self.arm.style("securityRules", "PUT") != "sync":
            nsg.state = "Updating"
        return self.arm.write_response(request, rule, created=existing is None,
                                       kind="securityRules", namespace=NS,
                                       location=nsg.location or "", holds=nsg.key,
                                       render=lambda: self.render_rule(rule), on_done=done)

    def delete_rule(self, request: Request) -> Response:
        nsg = self._existing(request, self.nsgs, "networkSecurityGroups", "nsg")
        rule = nsg.children.get(request.params["rule"].lower())
        if rule is None:
            return respond(None, 204)
        self.arm.operations.ensure_idle(nsg.key, nsg.id)
        check_if_match(request, rule)

        def remove() -> None:
            if nsg.children.get(rule.name.lower()) is rule:
                del nsg.children[rule.name.lower()]
                nsg.touch()
            nsg.state = "Succeeded"

        if self.arm.style("securityRules", "DELETE") != "sync":
            nsg.state = "Updating"
        return self.arm.delete_response(request, rule, kind="securityRules", namespace=NS,
                                        location=nsg.location or "", holds=nsg.key, remove=remove)

