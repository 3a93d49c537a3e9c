"""Microsoft.DBforPostgreSQL flexible servers: zones, zone-redundant HA and restart with failover.

A server has `availabilityZone` (its primary's zone), `highAvailability {mode, standbyAvailabilityZone,
state}` and `state`. `GET`, list by resource group or subscription, `PUT` (create or update), `PATCH` (a
`ServerForPatch`: tags replaced when given) and `POST .../restart` answer as ARM does for this
provider: 202 with `Azure-AsyncOperation` (`.../locations/{l}/azureAsyncOperation/{op}`, which
answers `Retry-After` while in progress) and `Location`. A restart with failover
(`restartWithFailover: true`) shows the server `Restarting` with HA `FailingOver` for
`failover_seconds`, then swaps `availabilityZone` and `standbyAvailabilityZone` and shows it
`Ready`/`Healthy`; a plain restart is `Restarting` as long, zones unchanged. While an operation
holds the server every other write is 409 `ServerIsBusy`; a failover of a server without HA is 400
`OperationFailed` (the Azure CLI says "Failing over can only be triggered for zone redundant or
same zone servers"), and of one whose standby is not `Healthy` too ("not in active state").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gameday.lab.azure.arm import (
    GROUP,
    NAME,
    SUB,
    ArmError,
    Json,
    Resource,
    Table,
    body_of,
    not_found,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.network import owner_of
from gameday.lab.azure.operations import Operation
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

NS = "Microsoft.DBforPostgreSQL"
SERVER_TYPE = f"{NS}/flexibleServers"
HA_MODES = ("Disabled", "ZoneRedundant", "SameZone")
FAILOVER_SECONDS = 2.0
"""How long a restart (with or without failover) keeps the server `Restarting` (Azure: a minute
or two; the lab: seconds)."""
POLL_AFTER = "1"
"""`Retry-After` of a restart's 202 and of its status while in progress (ARM's are longer)."""
_READ_ONLY = {"state", "fullyQualifiedDomainName", "minorVersion", "replicaCapacity"}


class PostgresProvider:
    """Flexible servers of every subscription; `failover_seconds` is how long a restart lasts."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        self.servers = Table()
        self.failover_seconds = FAILOVER_SECONDS
        servers = GROUP + "/providers/Microsoft\\.DBforPostgreSQL/flexibleServers"
        arm.route("GET", servers, self.list_servers)
        arm.route("GET", SUB + "/providers/Microsoft\\.DBforPostgreSQL/flexibleServers", self.list_all)
        arm.route("GET", servers + rf"/(?P<server>{NAME})", self.get_server)
        arm.route("PUT", servers + rf"/(?P<server>{NAME})", self.put_server)
        arm.route("PATCH", servers + rf"/(?P<server>{NAME})", self.patch_server)
        arm.route("POST", servers + rf"/(?P<server>{NAME})/restart", self.restart)
        arm.route("GET", SUB + rf"/providers/Microsoft\.DBforPostgreSQL/locations/(?P<loc>{NAME})"
                  rf"/azureAsyncOperation/(?P<op>{NAME})", self.operation_status)

    def reset(self) -> None:
        self.servers.clear()
        self.failover_seconds = FAILOVER_SECONDS

    # --- reading ---------------------------------------------------------------------------

    def render(self, server: Resource) -> Json:
        return server.envelope({**server.properties, "state": server.state})

    def _id(self, request: Request) -> str:
        return f"{self.arm.group(request).id}/providers/{SERVER_TYPE}/{request.params['server']}"

    def _existing(self, request: Request) -> Resource:
        server = self.servers.get(self._id(request))
        if server is None:
            raise not_found(SERVER_TYPE, request.params["server"], request.params["rg"])
        return server

    def list_servers(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.servers.in_group(*owner_of(group.id)), self.render)

    def list_all(self, request: Request) -> Response:
        return self.arm.page(request, self.servers.in_subscription(request.params["sub"]),
                             self.render)

    def get_server(self, request: Request) -> Response:
        return respond(self.render(self._existing(request)))

    def operation_status(self, request: Request) -> Response:
        op = self.arm.operations.poll(request.params["op"])
        if op is None:
            raise ArmError(404, "OperationNotFound", f"Operation {request.params['op']} not found.")
        body = {"name": op.id, "status": op.status,
                "startTime": datetime.fromtimestamp(op.started, UTC).isoformat()}
        return respond(body, 200, {"Retry-After": POLL_AFTER} if op.status == "InProgress" else {})

    # --- writing ---------------------------------------------------------------------------

    def ensure_idle(self, server: Resource) -> None:
        """409 ServerIsBusy while an operation (a restart, an update) holds the server."""
        op = self.arm.operations.busy(server.key)
        if op is not None:
            raise ArmError(409, "ServerIsBusy", f"Server '{server.name}' is busy with another "
                           f"operation ({op.name}). Please try your operation later.",
                           {"Retry-After": POLL_AFTER})

    def put_server(self, request: Request) -> Response:
        """Create or update: zone, HA mode and standby zone taken from the body (a zone-redundant
        server needs its standby in another zone), the server `Ready`, HA `Healthy` (or
        `NotEnabled`)."""
        server_id = self._id(request)
        existing = self.servers.get(server_id)
        if existing is not None:
            self.ensure_idle(existing)
        body = body_of(request)
        location = require_location(body, existing)
        given = {k: v for k, v in (body.get("properties") or {}).items()
                 if k not in _READ_ONLY and k != "administratorLoginPassword"}
        props = {**(existing.properties if existing else {}), **given}
        ha = dict(props.get("highAvailability") or {"mode": "Disabled"})
        mode = ha.get("mode") or "Disabled"
        if mode not in HA_MODES:
            raise ArmError(400, "InvalidParameterValue", f"Invalid value '{mode}' for "
                           f"highAvailability.mode; use one of {', '.join(HA_MODES)}.")
        zone = str(props.get("availabilityZone") or "1")
        standby = str(ha.get("standbyAvailabilityZone") or "")
        if mode == "ZoneRedundant" and (not standby or standby == zone):
            raise ArmError(400, "InvalidParameterValue", "A zone-redundant server needs its "
                           "standbyAvailabilityZone in another zone than its availabilityZone.")
        if mode == "SameZone":
            standby = zone
        props["availabilityZone"] = zone
        props["highAvailability"] = ({"mode": mode, "standbyAvailabilityZone": standby,
                                      "state": "Healthy"} if mode != "Disabled"
                                     else {"mode": "Disabled", "state": "NotEnabled"})
        props["fullyQualifiedDomainName"] = f"{request.params['server']}.postgres.database.azure.com"
        server = Resource(id=existing.id if existing else server_id,
                          name=existing.name if existing else request.params["server"],
                          type=SERVER_TYPE, location=location, tags=tags_of(body),
                          properties=props, extra={"sku": body.get("sku") or {
                              "name": "Standard_D2ds_v5", "tier": "GeneralPurpose"}})
        server.state = "Ready"
        self.servers.put(server, *owner_of(server.id))
        return self._accepted(request, server, "UpsertServerManagementOperation", 0.0, None)

    def patch_server(self, request: Request) -> Response:
        """A `ServerForPatch`: tags replaced when given; other properties are not modelled."""
        server = self._existing(request)
        self.ensure_idle(server)
        body = body_of(request)
        if "tags" in body:
            server.tags = tags_of(body)
        server.touch()
        return self._accepted(request, server, "UpdateServerManagementOperation", 0.0, None)

    def restart(self, request: Request) -> Response:
        server = self._existing(request)
        self.ensure_idle(server)
        parameters = body_of(request)
        failover = bool(parameters.get("restartWithFailover"))
        ha = server.properties["highAvailability"]
        if failover and ha.get("mode") not in ("ZoneRedundant", "SameZone"):
            raise ArmError(400, "OperationFailed", f"Server '{server.name}' has no high "
                           "availability: failing over can only be triggered for zone redundant "
                           "or same zone servers.")
        if failover and ha.get("state") != "Healthy":
            raise ArmError(400, "OperationFailed", "Operation HandleWalServiceFailureManagement"
                           f"Operation failed, because server {server.name} not in active state.")
        if server.state != "Ready":
            raise ArmError(400, "ServerIsNotReady", "Restart or Stop Server can only be performed "
                           f"on Started servers. Server Name = {server.name}, Current Server "
                           f"State = {server.state}")
        server.state = "Restarting"
        if failover:
            ha["state"] = "FailingOver"

        def done() -> None:
            if self.servers.get(server.id) is not server:
                return
            if failover:
                ha["standbyAvailabilityZone"], server.properties["availabilityZone"] = (
                    server.properties["availabilityZone"], ha["standbyAvailabilityZone"])
                ha["state"] = "Healthy"
            server.state = "Ready"

        response = self._accepted(request, server, "RestartServerManagementOperation",
                                  self.failover_seconds, done)
        response.headers["Retry-After"] = POLL_AFTER
        return response

    def _accepted(self, request: Request, server: Resource, name: str, seconds: float,
                  on_done: Any) -> Response:
        """202 with `Azure-AsyncOperation` and `Location`: an operation holding the server that
        ends `seconds` from now (at once when 0: the first poll completes it)."""
        op = self._start(server, name, seconds, on_done or (lambda: None))
        version = quote(request.arg("api-version") or "", safe="")
        prefix = (f"{self.arm.base_url(request)}/subscriptions/{request.params['sub']}/providers/"
                  f"{NS}/locations/{op.location}")
        return respond(None, 202, {
            "Azure-AsyncOperation": f"{prefix}/azureAsyncOperation/{op.id}?api-version={version}",
            "Location": f"{prefix}/operationResults/{op.id}?api-version={version}"})

    def _start(self, server: Resource, name: str, seconds: float, on_done: Any) -> Operation:
        operations = self.arm.operations
        default, operations.seconds = operations.seconds, seconds or operations.seconds
        try:
            op = operations.start(namespace=NS, location=server.location or "", method="POST",
                                  holds=server.key, name=name, on_done=on_done)
        finally:
            operations.seconds = default
        op.polls_left = 10**9 if seconds else 0  # a timed restart ends at its deadline only
        return op


# --- the lab's servers ----------------------------------------------------------------------

SERVERS: list[tuple[str, str, str, str, dict[str, str]]] = [
    ("shop-db", "ZoneRedundant", "1", "2", {"app": "shop", "tier": "db"}),
    ("carts-db", "ZoneRedundant", "1", "3", {"app": "shop", "tier": "db"}),
    ("orders-db", "ZoneRedundant", "2", "3", {"app": "shop", "tier": "db"}),
    ("reports-db", "Disabled", "1", "", {"app": "shop", "tier": "reporting"}),
]
"""(name, HA mode, primary zone, standby zone, tags): `shop-db` and `carts-db` are led from zone
1, `orders-db` from zone 2 (a failover of zone 1 leaves it alone), `reports-db` has no HA (a step
naming it is refused). The shop needs every `tier=db` server of its region `Ready`."""


def postgres_client(endpoint: str, ca_bundle: str | None, subscription: str,
                    **options: Any) -> Any:
    """The real azure-mgmt-postgresqlflexibleservers client for the emulator at `endpoint`."""
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient

    from activities.azure import StaticTokenCredential

    settings: dict[str, Any] = {"base_url": endpoint.rstrip("/"), "polling_interval": 0}
    if ca_bundle:
        settings["connection_verify"] = ca_bundle
    settings.update(options)
    return PostgreSQLManagementClient(StaticTokenCredential(), subscription, **settings)


def seed_servers(endpoint: str, ca_bundle: str, subscription: str, resource_group: str,
                 location: str = "eastus") -> dict[str, str]:
    """Create `SERVERS` in the resource group through the SDK; server → its primary zone."""
    from azure.mgmt.postgresqlflexibleservers.models import (
        HighAvailability,
        Server,
        ServerProperties,
        Sku,
    )

    client = postgres_client(endpoint, ca_bundle, subscription)
    try:
        for name, mode, zone, standby, tags in SERVERS:
            client.servers.begin_create_or_update(resource_group, name, Server(
                location=location, tags=tags, sku=Sku(name="Standard_D2ds_v5", tier="GeneralPurpose"),
                properties=ServerProperties(
                    version="16", availability_zone=zone,
                    high_availability=HighAvailability(
                        mode=mode, standby_availability_zone=standby or None)))).result()
    finally:
        client.close()
    return {name: zone for name, _, zone, _, _ in SERVERS}


def server_snapshot(endpoint: str, ca_bundle: str, subscription: str,
                    resource_group: str) -> dict[str, Any]:
    """Each server's zones, HA, state and tags, as the SDK reads them."""
    client = postgres_client(endpoint, ca_bundle, subscription)
    try:
        return {s.name: {"zone": s.availability_zone,
                         "standby": s.high_availability.standby_availability_zone
                         if s.high_availability else None,
                         "ha": _wire(s.high_availability.state) if s.high_availability else None,
                         "state": _wire(s.state), "tags": dict(s.tags or {})}
                for s in client.servers.list_by_resource_group(resource_group)}
    finally:
        client.close()


def _wire(value: Any) -> str:
    """An SDK enum's wire value (`Ready`, not `ServerState.READY`)."""
    return str(getattr(value, "value", value) or "")
