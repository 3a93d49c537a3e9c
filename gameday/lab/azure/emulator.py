"""The Azure Resource Manager emulator: resource groups, long-running operations and the providers.

Paths follow ARM: `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`,
matched case-insensitively; every call needs `api-version` (any value). Subscriptions exist
implicitly; resource groups must be created first (`PUT /subscriptions/{sub}/resourcegroups/{rg}`),
a resource under a missing group is 404 `ResourceGroupNotFound`. Beside ARM the same port serves
what a client needs to log in (`gameday.lab.azure.identity`: cloud metadata, the lab tenant's OIDC and
token endpoints, `/subscriptions`; these identity paths take no `api-version`), the generic
`/resources` lists (`gameday.lab.azure.resources`) and a Resource Graph subset (`gameday.lab.azure.graph`).

In realistic mode (`gameday.lab.realistic`) calls under `/subscriptions/{sub}` draw from ARM's token
buckets per subscription (writes 200 then 10/s, deletes 200 then 10/s, reads 250 then 25/s);
answers carry `x-ms-ratelimit-remaining-subscription-{writes,deletes,reads}`, and an over-limit
call is 429 `SubscriptionRequestsThrottled` with `Retry-After`, as ARM answers it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from gameday.lab.azure.arm import (
    NAME,
    SUB,
    ArmError,
    Json,
    Resource,
    body_of,
    normalize_location,
    page,
    respond,
    tags_of,
)
from gameday.lab.azure.authorization import AuthorizationProvider
from gameday.lab.azure.autoscale import AutoscaleProvider
from gameday.lab.azure.compute import ComputeProvider
from gameday.lab.azure.graph import ResourceGraphProvider
from gameday.lab.azure.identity import IDENTITY_PATH, IdentityProvider
from gameday.lab.azure.loadbalancers import LoadBalancersProvider
from gameday.lab.azure.locations import LocationsProvider
from gameday.lab.azure.network import NetworkProvider
from gameday.lab.azure.operations import ASYNC_OPERATION, LOCATION, STYLES, SYNC, Operations
from gameday.lab.azure.postgres import PostgresProvider
from gameday.lab.azure.resources import ResourcesProvider
from gameday.lab.azure.scalesets import ScaleSetsProvider
from gameday.lab.azure.trafficmanager import TrafficManagerProvider
from gameday.lab.emulator import ApiError, Emulator, Request, Response
from gameday.lab.realistic import Bucket, Decision, RateCall

#: (resource kind, method) -> LRO style; kinds absent here answer synchronously.
DEFAULT_STYLES: dict[tuple[str, str], str] = {
    ("networkInterfaces", "PUT"): SYNC,
    ("networkInterfaces", "DELETE"): LOCATION,
    ("networkSecurityGroups", "PUT"): ASYNC_OPERATION,
    ("networkSecurityGroups", "DELETE"): LOCATION,
    ("securityRules", "PUT"): ASYNC_OPERATION,
    ("securityRules", "DELETE"): ASYNC_OPERATION,
    ("virtualMachines", "PUT"): ASYNC_OPERATION,
    ("virtualMachines", "DELETE"): ASYNC_OPERATION,
    ("virtualMachineScaleSets", "PUT"): ASYNC_OPERATION,
    ("virtualMachineScaleSets", "DELETE"): ASYNC_OPERATION,
    ("loadBalancers", "PUT"): ASYNC_OPERATION,
    ("loadBalancers", "DELETE"): ASYNC_OPERATION,
}


WRITES, DELETES, READS = "writes", "deletes", "reads"
#: `Retry-After` of a POST action's 202 (ARM says 10 s or more; lab time is short): the Azure
#: CLI, which otherwise waits 30 s, polls after it. Writes and deletes send none, since azure-core
#: honours it over `polling_interval=0` and every LRO of gameday's own clients would wait.
POLL_AFTER = "1"
_SUBSCRIPTION = re.compile(r"^/subscriptions/(?P<sub>[^/]+)", re.IGNORECASE)


class ResourceManagerEmulator(Emulator):
    """ARM over http(s) for Microsoft.Network (VNets, NICs, NSGs, Traffic Manager) and VMs.

    `lro_styles` overrides `DEFAULT_STYLES`; `page_size` bounds list pages (`nextLink` after);
    `operation_seconds` is how long an operation nobody polls stays InProgress.
    """

    name = "azure-arm"
    rate_limits: ClassVar[dict[str, Bucket]] = {
        WRITES: Bucket(burst=200, refill=10),
        DELETES: Bucket(burst=200, refill=10),
        READS: Bucket(burst=250, refill=25),
    }

    def __init__(self, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
                 keyfile: str | None = None, *, page_size: int = 1000,
                 operation_seconds: float = 1.0,
                 lro_styles: dict[tuple[str, str], str] | None = None):
        super().__init__(host, port, certfile, keyfile)
        self.page_size = page_size
        self.lro_styles = dict(DEFAULT_STYLES)
        for (kind, method), style in (lro_styles or {}).items():
            if style not in STYLES:
                raise ValueError(f"unknown LRO style {style!r}; use one of {STYLES}")
            self.lro_styles[(kind, method.upper())] = style
        self.operations = Operations(operation_seconds)
        self.groups: dict[tuple[str, str], Resource] = {}
        self._register()
        self.identity = IdentityProvider(self)
        self.network = NetworkProvider(self)
        self.compute = ComputeProvider(self, self.network)
        self.traffic = TrafficManagerProvider(self)
        self.scale_sets = ScaleSetsProvider(self)
        self.autoscale = AutoscaleProvider(self)
        self.resources = ResourcesProvider(self)
        self.graph = ResourceGraphProvider(self)
        self.postgres = PostgresProvider(self)
        self.load_balancers = LoadBalancersProvider(self, self.network)
        self.authorization = AuthorizationProvider(self)
        self.locations = LocationsProvider(self)  # zone mappings per subscription

    # --- Emulator hooks ----------------------------------------------------------------------

    def error_body(self, error: ApiError) -> Any:
        inner: Json = {"code": error.code, "message": error.message}
        details = getattr(error, "details", None)
        if details:
            inner["details"] = details
        return {"error": inner}

    def rate_call(self, request: Request) -> RateCall | None:
        found = _SUBSCRIPTION.match(request.path)
        if not found:
            return None
        kind = {"GET": READS, "HEAD": READS, "DELETE": DELETES}.get(request.method, WRITES)
        return RateCall(kind, (found.group("sub").lower(),), kind != READS)

    def throttled_response(self, request: Request, decision: Decision) -> Response:
        assert decision.call is not None
        kind = decision.call.category.removesuffix("s")
        seconds = decision.retry_after_seconds
        error = ArmError(429, "SubscriptionRequestsThrottled", f"Number of '{kind}' requests for "
                         f"subscription '{decision.call.scope[0]}' actor 'gameday-lab' exceeded. "
                         f"Please try again after '{seconds}' seconds after additional tokens are "
                         "available. Refer to https://aka.ms/arm-throttling for additional "
                         "information.")
        return Response(429, self.error_body(error), {
            "Retry-After": str(seconds), **self.rate_headers(decision)})

    def rate_headers(self, decision: Decision) -> dict[str, str]:
        if decision.call is None or decision.remaining is None:
            return {}
        return {f"x-ms-ratelimit-remaining-subscription-{decision.call.category}":
                str(decision.remaining)}

    def reset(self) -> None:
        self.groups.clear()
        self.operations.clear()
        self.network.reset()
        self.compute.reset()
        self.traffic.reset()
        self.scale_sets.reset()
        self.autoscale.reset()
        self.postgres.reset()
        self.load_balancers.reset()

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_emulator/"):
            return super().dispatch(request)
        if not request.arg("api-version") and not IDENTITY_PATH.match(request.path):
            raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter "
                           "(?api-version=) is required for all requests.")
        with self.lock:
            self.operations.settle()
        response = super().dispatch(request)
        if "X-Gameday-Injected" in response.headers and response.status == 429:
            response.headers.setdefault("Retry-After", "1")
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        return response

    # --- helpers for the providers -----------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Callable[[Request], Response]) -> None:
        """Register `pattern` (a path regex) case-insensitively; path parameters arrive unquoted."""

        def call(request: Request) -> Response:
            request.params = {k: unquote(v) for k, v in request.params.items()}
            return handler(request)

        self.add_route(method, f"(?i:{pattern})", call)

    def base_url(self, request: Request) -> str:
        return f"{self.scheme}://{request.headers.get('host') or f'{self.host}:{self.port}'}"

    def page(self, request: Request, items: Any, render: Callable[[Resource], Json]) -> Response:
        return page(request, self.base_url(request), items, render, self.page_size)

    def group(self, request: Request) -> Resource:
        """The resource group of the request path; 404 ResourceGroupNotFound when missing."""
        sub, rg = request.params["sub"], request.params["rg"]
        group = self.groups.get((sub.lower(), rg.lower()))
        if group is None:
            raise ArmError(404, "ResourceGroupNotFound",
                           f"Resource group '{rg}' could not be found.")
        return group

    def style(self, kind: str, method: str) -> str:
        return self.lro_styles.get((kind, method), SYNC)

    def write_response(self, request: Request, resource: Resource, *, created: bool, kind: str,
                       namespace: str, location: str, holds: str, render: Callable[[], Json],
                       on_done: Callable[[], None] | None = None) -> Response:
        """Answer a PUT in the style configured for `kind`, holding `holds` while in progress."""
        style = self.style(kind, "PUT")
        status = 201 if created else 200
        if style == SYNC:
            resource.state = "Succeeded"
            if on_done:
                on_done()
            return respond(render(), status)

        def done() -> None:
            resource.state = "Succeeded"
            if on_done:
                on_done()

        resource.state = "Creating" if created and namespace == "Microsoft.Compute" else "Updating"
        op = self.operations.start(namespace=namespace, location=location, method="PUT",
                                   holds=holds, name=f"Put{_singular(kind)}Operation",
                                   on_done=done, result=render)
        return respond(render(), status, self._operation_headers(request, op.id, namespace,
                                                                 op.location, style))

    def delete_response(self, request: Request, resource: Resource, *, kind: str, namespace: str,
                        location: str, holds: str, remove: Callable[[], None]) -> Response:
        """Answer a DELETE in the style configured for `kind`; `remove` runs when it completes."""
        style = self.style(kind, "DELETE")
        if style == SYNC:
            remove()
            return respond(None, 200)
        resource.state = "Deleting"
        op = self.operations.start(namespace=namespace, location=location, method="DELETE",
                                   holds=holds, name=f"Delete{_singular(kind)}Operation",
                                   on_done=remove)
        headers = self._operation_headers(request, op.id, namespace, op.location, style)
        if style == ASYNC_OPERATION:
            headers.update(
                self._operation_headers(request, op.id, namespace, op.location, LOCATION))
        return respond(None, 202, headers)

    def action_response(self, request: Request, *, namespace: str, location: str, holds: str,
                        name: str, on_done: Callable[[], None]) -> Response:
        """Answer a POST action (a VM's `start`, `powerOff`...): 202 with `Azure-AsyncOperation`,
        `Location` and `Retry-After`; the first poll of its status completes it."""
        op = self.operations.start(namespace=namespace, location=location, method="POST",
                                   holds=holds, name=name, on_done=on_done)
        op.polls_left = 0
        headers = self._operation_headers(request, op.id, namespace, op.location, ASYNC_OPERATION)
        headers.update(self._operation_headers(request, op.id, namespace, op.location, LOCATION))
        headers["Retry-After"] = POLL_AFTER
        return respond(None, 202, headers)

    def _operation_headers(self, request: Request, op_id: str, namespace: str, location: str,
                           style: str) -> dict[str, str]:
        version = quote(request.arg("api-version") or "", safe="")
        prefix = (f"{self.base_url(request)}/subscriptions/{request.params['sub']}/providers/"
                  f"{namespace}/locations/{location}")
        if style == ASYNC_OPERATION:
            return {"Azure-AsyncOperation": f"{prefix}/operations/{op_id}?api-version={version}"}
        return {"Location": f"{prefix}/operationResults/{op_id}?api-version={version}"}

    # --- resource groups and operation status ----------------------------------------------

    def _register(self) -> None:
        groups = SUB + r"/resourcegroups"
        self.route("GET", groups, self._list_groups)
        self.route("PUT", groups + rf"/(?P<rg>{NAME})", self._put_group)
        self.route("GET", groups + rf"/(?P<rg>{NAME})", self._get_group)
        operation = SUB + rf"/providers/(?P<ns>{NAME})/locations/(?P<loc>{NAME})"
        self.route("GET", operation + rf"/operations/(?P<op>{NAME})", self._operation_status)
        self.route("GET", operation + rf"/operationResults/(?P<op>{NAME})", self._operation_result)

    def _render_group(self, group: Resource) -> Json:
        body: Json = {"id": group.id, "name": group.name, "type": group.type,
                      "location": group.location}
        if group.tags:
            body["tags"] = dict(group.tags)
        body["properties"] = {"provisioningState": group.state}
        return body

    def _put_group(self, request: Request) -> Response:
        sub, rg = request.params["sub"], request.params["rg"]
        body = body_of(request)
        if not body.get("location"):
            raise ArmError(400, "LocationRequired", "The location property is required for this "
                           "definition.")
        group_key = (sub.lower(), rg.lower())
        existing = self.groups.get(group_key)
        if existing is not None:
            if normalize_location(body["location"]) != existing.location:
                raise ArmError(409, "InvalidResourceGroupLocation", f"Invalid resource group "
                               f"location '{body['location']}'. The Resource group already exists "
                               f"in location '{existing.location}'.")
            existing.tags = tags_of(body)
            return respond(self._render_group(existing), 200)
        group = Resource(id=f"/subscriptions/{sub}/resourceGroups/{rg}", name=rg,
                         type="Microsoft.Resources/resourceGroups",
                         location=normalize_location(body["location"]), tags=tags_of(body))
        self.groups[group_key] = group
        return respond(self._render_group(group), 201)

    def _get_group(self, request: Request) -> Response:
        return respond(self._render_group(self.group(request)))

    def _list_groups(self, request: Request) -> Response:
        sub = request.params["sub"].lower()
        mine = (g for (owner, _), g in self.groups.items() if owner == sub)
        return self.page(request, mine, self._render_group)

    def _operation_status(self, request: Request) -> Response:
        op = self.operations.poll(request.params["op"])
        if op is None:
            raise ArmError(404, "OperationNotFound", f"Operation {request.params['op']} not found.")
        return respond({"id": request.path, "name": op.id, "status": op.status,
                        "startTime": _iso(op.started)})

    def _operation_result(self, request: Request) -> Response:
        op = self.operations.poll(request.params["op"])
        if op is None:
            raise ArmError(404, "OperationNotFound", f"Operation {request.params['op']} not found.")
        if op.status == "InProgress":
            location = f"{self.base_url(request)}{request.path}?api-version=" + quote(
                request.arg("api-version") or "", safe="")
            return respond(None, 202, {"Location": location})
        if op.method == "PUT" and op.result is not None:
            return respond(op.result(), 200)
        return respond(None, 204)


def _singular(kind: str) -> str:
    """`networkSecurityGroups` -> `NetworkSecurityGroup`, as in ARM operation names."""
    return kind[0].upper() + kind[1:-1]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
