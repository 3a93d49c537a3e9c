"""Azure Resource Graph: `POST /providers/Microsoft.ResourceGraph/resources` for a small KQL subset.

What tools send to find VMs by zone and tag, and no more:

    Resources
    | where type =~ 'microsoft.compute/virtualmachines'
    | where zones has '1' and tags['gameday'] == 'enabled'
    | project name, resourceGroup, zones
    | limit 100

- the table is `Resources`; then any of `where`, `project` (plain columns), `limit`/`take`;
- a `where` is clauses joined by `and`, each `COLUMN OP 'literal'` with OP one of `==`, `!=`, `=~`
  (case-insensitive equal), `!~`, `contains`, `has` (for `zones`: holds the value),
  `startswith`; COLUMN is a row column (`id`, `name`, `type`, `location`, `resourceGroup`,
  `subscriptionId`, `zones`...), `tags['k']` / `tags.k`, or `properties.a.b`.

Rows are Resource Graph's: `type` and `resourceGroup` lowercase, `properties` as ARM renders them.
The answer is `{"totalRecords", "count", "data": [...], "facets": [], "resultTruncated"}` with
`options.resultFormat` `objectArray` (the default here). Anything else is 400 `BadRequest` with an
`InvalidQuery` detail, naming the part the lab does not understand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gameday.lab.azure.arm import ArmError, Json, Resource, Table, body_of, respond
from gameday.lab.azure.identity import LAB_TENANT
from gameday.lab.azure.network import owner_of
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

_CLAUSE = re.compile(
    r"^\s*(?P<column>[A-Za-z_][\w.]*(?:\[\s*'[^']*'\s*\])?)\s*"
    r"(?P<op>==|!=|=~|!~|\bcontains\b|\bhas\b|\bstartswith\b)\s*"
    r"(?P<quote>['\"])(?P<value>.*?)(?P=quote)\s*$", re.IGNORECASE)
_COLUMN = re.compile(r"^[A-Za-z_]\w*$")

Row = dict[str, Any]


def invalid_query(message: str) -> ArmError:
    return ArmError(400, "BadRequest", "Please provide below info when asking for support: the "
                    f"query is invalid. {message}",
                    details=[{"code": "InvalidQuery", "message": message}])


def _value(row: Row, column: str) -> Any:
    found = re.match(r"^tags\s*\[\s*'(?P<key>[^']*)'\s*\]$", column)
    if found:
        return (row.get("tags") or {}).get(found.group("key"))
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part) if part in value else next(
            (v for k, v in value.items() if k.lower() == part.lower()), None)
    return value


def _test(op: str, actual: Any, wanted: str) -> bool:
    if isinstance(actual, list):
        if op in ("has", "contains", "=~", "=="):
            return any(_test(op, item, wanted) for item in actual)
        return not any(_test({"!=": "==", "!~": "=~"}.get(op, op), item, wanted) for item in actual)
    text = "" if actual is None else str(actual)
    return {
        "==": lambda: text == wanted, "!=": lambda: text != wanted,
        "=~": lambda: text.lower() == wanted.lower(), "!~": lambda: text.lower() != wanted.lower(),
        "contains": lambda: wanted.lower() in text.lower(),
        "has": lambda: wanted.lower() in re.split(r"\W+", text.lower()),
        "startswith": lambda: text.lower().startswith(wanted.lower()),
    }[op]()


def _where(condition: str) -> Callable[[Row], bool]:
    tests = []
    for part in re.split(r"\s+and\s+", condition.strip(), flags=re.IGNORECASE):
        found = _CLAUSE.match(part)
        if not found:
            raise invalid_query(f"The lab does not understand the condition '{part.strip()}'.")
        column = found.group("column").replace('"', "'")
        if column.lower().startswith("tags.") and "[" not in column:
            column = f"tags['{column[5:]}']"
        tests.append((column, found.group("op").lower(), found.group("value")))
    return lambda row: all(_test(op, _value(row, column), value) for column, op, value in tests)


def run_query(query: str, rows: list[Row]) -> list[Row]:
    """The rows `query` selects, in order, shaped by its `project`."""
    stages = [stage.strip() for stage in query.split("|")]
    if not stages or stages[0].lower() != "resources":
        raise invalid_query(f"The lab serves the table Resources only, not '{stages[0]}'.")
    for stage in stages[1:]:
        verb, _, rest = stage.partition(" ")
        verb = verb.lower()
        if verb == "where":
            rows = [row for row in rows if _where(rest)(row)]
        elif verb == "project":
            columns = [c.strip() for c in rest.split(",")]
            if not all(_COLUMN.match(c) for c in columns):
                raise invalid_query(f"The lab projects plain columns only, not '{rest.strip()}'.")
            rows = [{c: _value(row, c) for c in columns} for row in rows]
        elif verb in ("limit", "take") and rest.strip().isdigit():
            rows = rows[: int(rest)]
        else:
            raise invalid_query(f"The lab does not understand '{stage}'.")
    return rows


class ResourceGraphProvider:
    """Answers Resource Graph queries over the lab's top-level resources."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        arm.route("POST", r"/providers/Microsoft\.ResourceGraph/resources", self.query)

    def _tables(self) -> list[tuple[Table, Callable[[Resource], Json]]]:
        arm = self.arm
        return [(arm.network.vnets, arm.network.render_vnet), (arm.network.nics, arm.network.render_nic),
                (arm.network.nsgs, arm.network.render_nsg), (arm.compute.vms, arm.compute.render),
                (arm.traffic.profiles, arm.traffic.render)]

    @staticmethod
    def row(resource: Resource, rendered: Json) -> Row:
        subscription, group = owner_of(resource.id)
        return {"id": resource.id, "name": resource.name, "type": resource.type.lower(),
                "tenantId": LAB_TENANT, "kind": "", "location": resource.location or "",
                "resourceGroup": group.lower(), "subscriptionId": subscription, "managedBy": "",
                "sku": None, "plan": None, "properties": rendered.get("properties", {}),
                "tags": dict(resource.tags or {}), "identity": None,
                "zones": list(resource.extra.get("zones", [])) or None, "extendedLocation": None}

    def query(self, request: Request) -> Response:
        body = body_of(request)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise invalid_query("The request has no query.")
        subscriptions = body.get("subscriptions") or self.arm.identity.subscriptions()
        wanted = {str(s).lower() for s in subscriptions}
        rows = [self.row(resource, render(resource))
                for table, render in self._tables() for resource in table.items.values()
                if owner_of(resource.id)[0].lower() in wanted]
        data = run_query(query, rows)
        return respond({"totalRecords": len(data), "count": len(data), "data": data,
                        "facets": [], "resultTruncated": "false"})
