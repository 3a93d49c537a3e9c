"""Cloud SQL Admin API v1, the subset gameday uses: instances insert, get, list and patch, the
`failover` of an HA instance as a long operation, and operations get, at `/v1/projects/{p}/...`
on the GCP emulator's server (the client is google-api-python-client's `sqladmin` v1).

An instance has Cloud SQL's shape: `state`, `gceZone` (the primary's zone), `secondaryGceZone`
(the standby's, HA only), `settings` with `availabilityType` (`REGIONAL` is HA), `userLabels` and
`settingsVersion`. A patch whose `settings.settingsVersion` is not the current one is refused
(412 `staleData`), as is a failover whose `failoverContext.settingsVersion` is not; a patch of
the settings bumps the version. A failover is refused for an instance without HA (400) and while
another operation runs on it (409 `operationInProgress`); accepted, its operation is PENDING,
then RUNNING for `failover_seconds` while the instance is `MAINTENANCE`, then DONE: the primary
and standby zones have swapped and the instance is `RUNNABLE` again. It lands whether or not
anyone polls it.

Known deviations from Cloud SQL: insert and patch finish at once (their operations are DONE when
returned); Cloud SQL does not document the `state` an instance shows while it fails over (the lab
shows `MAINTENANCE`); the 400 for a failover without HA is the lab's wording; `filter` and paging
of the list are ignored; databases, users, backups and replicas are not served.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gameday.lab.emulator import ApiError, Request, Response
from gameday.lab.gcp.catalogue import ZONES
from gameday.lab.gcp.core import ComputeCore, merge_patch
from gameday.lab.gcp.operations import now

SQL_BASE = "https://sqladmin.googleapis.com/v1"
SQL_PROJECT = r"/v1/projects/(?P<project>[^/]+)"
FAILOVER_SECONDS = 2.0
"""How long a failover takes in the lab (Cloud SQL's take tens of seconds)."""


@dataclass
class SqlState:
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(project, instance name) → the instance as stored."""
    operations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    failing_over: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    """(project, instance) → (its failover operation, the monotonic time it is DONE by)."""


class SqlAdminApi(ComputeCore):
    sql: SqlState

    def __init__(self, *args: Any, **kwargs: Any):
        self.sql = SqlState()
        self.failover_seconds = FAILOVER_SECONDS
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        self.sql = SqlState()
        self.failover_seconds = FAILOVER_SECONDS
        super().reset()

    def register_sqladmin(self) -> None:
        instances = SQL_PROJECT + "/instances"
        one = instances + "/(?P<name>[^/]+)"
        self.add_route("GET", instances, self.list_sql_instances)
        self.add_route("POST", instances, self.insert_sql_instance)
        self.add_route("GET", one, self.get_sql_instance)
        self.add_route("PATCH", one, self.patch_sql_instance)
        self.add_route("POST", one + "/failover", self.failover_sql_instance)
        self.add_route("GET", SQL_PROJECT + "/operations/(?P<name>[^/]+)", self.get_sql_operation)

    # --- time --------------------------------------------------------------------------------

    def settle_sql(self) -> None:
        """Finish every failover whose time has come (under the lock), read or not."""
        moment = time.monotonic()
        for key, (op_name, due) in list(self.sql.failing_over.items()):
            if due > moment:
                continue
            del self.sql.failing_over[key]
            instance = dict(self.sql.instances[key])
            instance["gceZone"], instance["secondaryGceZone"] = (instance["secondaryGceZone"],
                                                                 instance["gceZone"])
            instance["state"] = "RUNNABLE"
            self.sql.instances[key] = instance
            op = dict(self.sql.operations[(key[0], op_name)])
            op.update(status="DONE", endTime=now())
            self.sql.operations[(key[0], op_name)] = op

    def _sql_instance(self, request: Request) -> dict[str, Any]:
        self.settle_sql()
        key = (request.params["project"], request.params["name"])
        if key not in self.sql.instances:
            raise ApiError(404, "instanceDoesNotExist", "The Cloud SQL instance does not exist.")
        return self.sql.instances[key]

    def _sql_operation(self, project: str, instance: dict[str, Any], op_type: str,
                   status: str) -> dict[str, Any]:
        name = str(uuid.uuid4())
        op = {"kind": "sql#operation", "name": name, "operationType": op_type, "status": status,
              "targetId": instance["name"], "targetProject": project,
              "targetLink": instance["selfLink"], "user": "gameday-lab@emulator",
              "insertTime": now(), "startTime": now(),
              "selfLink": f"{SQL_BASE}/projects/{project}/operations/{name}"}
        if status == "DONE":
            op["endTime"] = now()
        self.sql.operations[(project, name)] = op
        return op

    # --- routes ------------------------------------------------------------------------------

    def list_sql_instances(self, request: Request) -> Response:
        self.settle_sql()
        project = request.params["project"]
        items = [i for (p, _), i in self.sql.instances.items() if p == project]
        return Response(200, {"kind": "sql#instancesList", **({"items": items} if items else {})})

    def get_sql_instance(self, request: Request) -> Response:
        return Response(200, self._sql_instance(request))

    def insert_sql_instance(self, request: Request) -> Response:
        project, body = request.params["project"], self.body(request)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "invalidParameterValue", "Invalid request: instance name is missing.")
        if (project, name) in self.sql.instances:
            raise ApiError(409, "instanceAlreadyExists",
                           "The Cloud SQL instance already exists.")
        settings = dict(body.get("settings") or {})
        where = dict(settings.get("locationPreference") or {})
        zone, secondary = where.get("zone"), where.get("secondaryZone")
        regional = settings.get("availabilityType") == "REGIONAL"
        if zone not in ZONES or (regional and (secondary not in ZONES or secondary == zone)):
            raise ApiError(400, "invalidParameterValue",
                           "Invalid request: locationPreference needs a zone (and, for "
                           "REGIONAL, another secondaryZone) of the region.")
        region = zone.rsplit("-", 1)[0]
        settings.update(kind="sql#settings", settingsVersion="1",
                        availabilityType="REGIONAL" if regional else "ZONAL",
                        userLabels=dict(settings.get("userLabels") or {}))
        instance: dict[str, Any] = {
            "kind": "sql#instance", "name": name, "project": project, "state": "RUNNABLE",
            "databaseVersion": body.get("databaseVersion", "POSTGRES_16"), "region": region,
            "gceZone": zone, "instanceType": "CLOUD_SQL_INSTANCE", "backendType": "SECOND_GEN",
            "connectionName": f"{project}:{region}:{name}", "settings": settings,
            "selfLink": f"{SQL_BASE}/projects/{project}/instances/{name}"}
        if regional:
            instance["secondaryGceZone"] = secondary
        self.sql.instances[(project, name)] = instance
        return Response(200, self._sql_operation(project, instance, "CREATE", "DONE"))

    def patch_sql_instance(self, request: Request) -> Response:
        instance, body = self._sql_instance(request), self.body(request)
        project = request.params["project"]
        settings = dict(body.get("settings") or {})
        version = settings.pop("settingsVersion", None)
        current = instance["settings"]["settingsVersion"]
        if version is not None and str(version) != current:
            raise ApiError(412, "staleData", "Condition does not match.")
        if (project, instance["name"]) in self.sql.failing_over:
            raise _busy()
        patched = dict(instance)  # only the settings are patchable here
        if settings:
            patched["settings"] = merge_patch(instance["settings"], settings)
            patched["settings"]["settingsVersion"] = str(int(current) + 1)
        self.sql.instances[(project, instance["name"])] = patched
        return Response(200, self._sql_operation(project, patched, "UPDATE", "DONE"))

    def failover_sql_instance(self, request: Request) -> Response:
        instance, body = self._sql_instance(request), self.body(request)
        project = request.params["project"]
        if instance["settings"].get("availabilityType") != "REGIONAL":
            raise ApiError(400, "invalidRequest", "The instance is not configured for high "
                                                  "availability (availabilityType ZONAL): it "
                                                  "has no standby to fail over to.")
        if (project, instance["name"]) in self.sql.failing_over:
            raise _busy()
        version = (body.get("failoverContext") or {}).get("settingsVersion")
        if version is not None and str(version) != instance["settings"]["settingsVersion"]:
            raise ApiError(412, "staleData", "Condition does not match.")
        op = self._sql_operation(project, instance, "FAILOVER", "PENDING")
        self.sql.failing_over[(project, instance["name"])] = (
            op["name"], time.monotonic() + self.failover_seconds)
        self.sql.instances[(project, instance["name"])] = {**instance, "state": "MAINTENANCE"}
        return Response(200, op)

    def get_sql_operation(self, request: Request) -> Response:
        self.settle_sql()
        key = (request.params["project"], request.params["name"])
        op = self.sql.operations.get(key)
        if op is None:
            raise ApiError(404, "operationDoesNotExist", "The Cloud SQL operation does not exist.")
        if op["status"] == "PENDING":
            op = {**op, "status": "RUNNING"}
            self.sql.operations[key] = op
        return Response(200, op)


def _busy() -> ApiError:
    return ApiError(409, "operationInProgress",
                    "Operation failed because another operation was already in progress.")


# --- the lab's instances -----------------------------------------------------------------------


@dataclass(frozen=True)
class LabDatabase:
    name: str
    zone: str
    secondary: str | None
    """The standby's zone; None: no HA (`ZONAL`)."""
    labels: dict[str, str]


LAB_DATABASES = (
    LabDatabase("shop-db", "us-central1-a", "us-central1-b", {"app": "shop", "tier": "db"}),
    LabDatabase("orders-db", "us-central1-a", "us-central1-c", {"app": "orders", "tier": "db"}),
    LabDatabase("ledger-db", "us-central1-b", "us-central1-a", {"app": "ledger", "tier": "db"}),
    LabDatabase("reports-db", "us-central1-a", None, {"app": "reports", "tier": "db"}),
)
"""`shop-db` (the shop's writer) and `orders-db` are HA with their primary in us-central1-a,
`ledger-db` is HA led from us-central1-b, `reports-db` has no HA."""


def seed_sql(endpoint: str, project: str = "gameday-lab") -> list[str]:
    """Create `LAB_DATABASES` in `project` through the real client; their names."""
    from google.auth.credentials import AnonymousCredentials
    from googleapiclient.discovery import build

    service = build("sqladmin", "v1", static_discovery=True, credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": endpoint})
    for db in LAB_DATABASES:
        preference = {"zone": db.zone, **({"secondaryZone": db.secondary} if db.secondary else {})}
        service.instances().insert(project=project, body={
            "name": db.name, "databaseVersion": "POSTGRES_16", "region": db.zone[:-2],
            "settings": {"tier": "db-custom-2-7680", "userLabels": db.labels,
                         "availabilityType": "REGIONAL" if db.secondary else "ZONAL",
                         "locationPreference": preference}}).execute()
    return [db.name for db in LAB_DATABASES]
