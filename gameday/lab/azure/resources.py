"""Microsoft.Resources generic listing: `GET /subscriptions/{s}[/resourceGroups/{rg}]/resources`.

Every top-level resource the lab holds (VNets, NICs, NSGs, VMs, Traffic Manager profiles; not
child resources such as subnets or rules) in ARM's generic shape: `id`, `name`, `type`,
`location`, `tags` when it has any. `$filter` takes the subset of ARM's OData that `az resource
list` sends: clauses joined by `and`, each `FIELD eq 'VALUE'` with FIELD one of `tagName`,
`tagValue` (only after `tagName`), `resourceType`, `name`, `location`, `resourceGroup`; names and
types compare case-insensitively, tag values exactly. Anything else is 400
`InvalidFilterInQueryString`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from gameday.lab.azure.arm import GROUP, SUB, ArmError, Json, Resource, Table, normalize_location
from gameday.lab.azure.network import owner_of
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

_CLAUSE = re.compile(r"^\s*(?P<field>\w+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*$", re.IGNORECASE)
_FIELDS = {"tagname", "tagvalue", "resourcetype", "name", "location", "resourcegroup"}

Match = Callable[[Resource], bool]


def parse_filter(text: str) -> Match:
    """The predicate of a `$filter`; 400 InvalidFilterInQueryString for what the lab does not
    understand."""
    clauses: dict[str, str] = {}
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        found = _CLAUSE.match(part)
        field = found.group("field").lower() if found else ""
        if not found or field not in _FIELDS or field in clauses:
            raise ArmError(400, "InvalidFilterInQueryString", f"Invalid $filter '{text}' "
                           "specified in the query string.")
        clauses[field] = found.group("value").replace("''", "'")
    if "tagvalue" in clauses and "tagname" not in clauses:
        raise ArmError(400, "InvalidFilterInQueryString", f"Invalid $filter '{text}': tagValue "
                       "needs tagName.")

    def match(resource: Resource) -> bool:
        tags = {k.lower(): v for k, v in (resource.tags or {}).items()}
        if "tagname" in clauses:
            name = clauses["tagname"].lower()
            if name not in tags or ("tagvalue" in clauses and tags[name] != clauses["tagvalue"]):
                return False
        checks = {"resourcetype": resource.type, "name": resource.name,
                  "resourcegroup": owner_of(resource.id)[1]}
        for field, actual in checks.items():
            if field in clauses and clauses[field].lower() != actual.lower():
                return False
        return "location" not in clauses or (
            normalize_location(clauses["location"]) == (resource.location or ""))

    return match


def render_generic(resource: Resource) -> Json:
    body: Json = {"id": resource.id, "name": resource.name, "type": resource.type}
    if resource.location is not None:
        body["location"] = resource.location
    if resource.tags:
        body["tags"] = dict(resource.tags)
    if resource.extra.get("zones"):
        body["zones"] = list(resource.extra["zones"])
    return body


class ResourcesProvider:
    """The generic `/resources` lists over every provider's tables."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        arm.route("GET", SUB + "/resources", self.list_in_subscription)
        arm.route("GET", GROUP + "/resources", self.list_in_group)

    def _tables(self) -> list[Table]:
        arm = self.arm
        return [arm.network.vnets, arm.network.nics, arm.network.nsgs, arm.compute.vms,
                arm.traffic.profiles]

    def _list(self, request: Request, found: Iterator[Resource]) -> Response:
        text = request.arg("$filter")
        match = parse_filter(text) if text else None
        chosen = (r for r in found if match is None or match(r))
        return self.arm.page(request, chosen, render_generic)

    def list_in_subscription(self, request: Request) -> Response:
        sub = request.params["sub"]
        return self._list(request, (r for t in self._tables() for r in t.in_subscription(sub)))

    def list_in_group(self, request: Request) -> Response:
        group = self.arm.group(request)
        sub, rg = owner_of(group.id)
        return self._list(request, (r for t in self._tables() for r in t.in_group(sub, rg)))
