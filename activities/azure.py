"""Azure: the zone blackhole and the region evacuation (contract §4) with azure-mgmt, and their
activities.

Azure subnets span zones, so a zone is cut per network interface: every NIC of every matching VM
is associated with a deny-all NSG that gameday creates per (run, step). Each NIC carries, while
cut, the NSG it had (`gameday-restore-nsg`, as `<resource group>/<name>` or `none`), so a restore
works from the checkpoint or, for NICs the checkpoint does not know, from the NIC alone.
A region is evacuated by disabling the Traffic Manager endpoints located in it.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkInterface, NetworkSecurityGroup, SecurityRule
from azure.mgmt.trafficmanager import TrafficManagerManagementClient
from azure.mgmt.trafficmanager.models import Endpoint
from pydantic import BaseModel
from temporalio import activity

from activities.base import (
    check_guardrails,
    cloud_span,
    fan_out,
    parallel_calls,
    progress,
    restore_errors,
    temporal_errors,
)
from activities.throttle import BucketKey, Throttle, caller, paced
from gameday.errors import CloudError, Refused, TargetNotFound, UserError
from gameday.plan import (
    Checkpoint,
    FaultRequest,
    FaultResult,
    PrepareRequest,
    ResolvedStep,
    Resource,
    Scope,
    StepRequest,
)
from gameday.runbook import AzureRegionTarget, AzureRegionTraffic, AzureZoneTarget
from gameday.sweep import Leftover, SweepScope

T = TypeVar("T")

ENDPOINT_VARIABLE = "GAMEDAY_AZURE_ENDPOINT"
CA_BUNDLE_VARIABLE = "GAMEDAY_AZURE_CA_BUNDLE"
PUBLIC_SCOPE = "https://management.azure.com/.default"

TAG_RUN = "gameday-run"
TAG_STEP = "gameday-step"
TAG_MANAGED = "gameday-managed-by"
TAG_RESTORE = "gameday-restore-nsg"
NO_NSG = "none"
MAX_TAG_VALUE = 256
MAX_TAGS = 50
MAX_NSG_NAME = 80
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
AZURE_ZONES = ("1", "2", "3")
"""The availability zones a region step covers (a VM without a zone cannot be cut by zone)."""

BUSY_ATTEMPTS = 6
"""Tries of one write while another operation holds the resource, before Temporal takes over."""
MAX_BUSY_WAIT = 5.0

_BUSY = {"RetryableErrorDueToAnotherOperation", "ReferencedResourceNotProvisioned",
         "AnotherOperationInProgress", "PreconditionFailed"}
_DENY_ALL = [
    {"name": f"deny-all-{direction.lower()}", "direction": direction}
    for direction in ("Inbound", "Outbound")
]


# --- checkpoint states ----------------------------------------------------------------------


class NicRecord(BaseModel):
    """One NIC to cut: its VM and the NSG it had before (None: no NSG)."""

    id: str
    vm: str
    nsg: str | None


class BlackholeState(BaseModel):
    resource_group: str
    region: str
    nsg_name: str
    nics: list[NicRecord]


class EndpointRecord(BaseModel):
    """One Traffic Manager endpoint to disable and the status it had before."""

    id: str
    profile: str
    endpoint_type: str
    name: str
    status: str


class EvacuationState(BaseModel):
    resource_group: str
    endpoints: list[EndpointRecord]


# --- clients --------------------------------------------------------------------------------


class StaticTokenCredential:
    """A bearer token that never changes: enough for an ARM emulator, which checks no token."""

    def __init__(self, token: str = "gameday-emulator", lifetime: int = 3600):
        self.token = token
        self.lifetime = lifetime

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + self.lifetime)

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class ArmClients:
    network: NetworkManagementClient
    compute: ComputeManagementClient
    traffic: TrafficManagerManagementClient

    def close(self) -> None:
        for client in (self.network, self.compute, self.traffic):
            client.close()


class AzureConnection:
    """Builds azure-mgmt clients: the ARM endpoint of `GAMEDAY_AZURE_ENDPOINT` with a static token
    when set, else public Azure with `DefaultAzureCredential`. SDK retries stay low so that
    Temporal owns retrying."""

    def __init__(self, retry_total: int = 1):
        self.retry_total = retry_total
        self._default_credential: Any = None
        self._made: dict[tuple[str, str, str], ArmClients] = {}
        self._lock = threading.Lock()

    @contextmanager
    def clients(self, subscription: str) -> Iterator[ArmClients]:
        """The subscription's clients, built once per endpoint and kept: each keeps its HTTPS
        connections open (a TLS handshake per activity otherwise) and they are safe to share
        between threads."""
        endpoint = os.environ.get(ENDPOINT_VARIABLE, "").rstrip("/")
        key = (subscription, endpoint, os.environ.get(CA_BUNDLE_VARIABLE, ""))
        with self._lock:
            if key not in self._made:
                self._made[key] = self._build(subscription, endpoint)
            made = self._made[key]
        yield made

    def close(self) -> None:
        """Close every client built so far."""
        with self._lock:
            made, self._made = list(self._made.values()), {}
        for clients in made:
            clients.close()

    def _build(self, subscription: str, endpoint: str) -> ArmClients:
        settings: dict[str, Any] = {"retry_total": self.retry_total, "connection_timeout": 5,
                                    "read_timeout": 30, "per_retry_policies": [ArmPacing()]}
        credential: Any
        if endpoint:
            credential = StaticTokenCredential()
            settings.update(base_url=endpoint, polling_interval=0,
                            credential_scopes=[f"{endpoint}/.default"])
            ca_bundle = os.environ.get(CA_BUNDLE_VARIABLE)
            if ca_bundle:
                settings["connection_verify"] = ca_bundle
        else:
            if self._default_credential is None:
                from azure.identity import DefaultAzureCredential

                self._default_credential = DefaultAzureCredential()
            credential = self._default_credential
            settings["credential_scopes"] = [PUBLIC_SCOPE]
        return ArmClients(
            network=NetworkManagementClient(credential, subscription, **settings),
            compute=ComputeManagementClient(credential, subscription, **settings),
            traffic=TrafficManagerManagementClient(credential, subscription, **settings),
        )


class _Throttled(Exception):
    def __init__(self, response: PipelineResponse[Any, Any], throttle: Throttle):
        super().__init__("throttled by ARM")
        self.response = response
        self.throttle = throttle


def _throttled(exc: Exception) -> Throttle | None:
    return exc.throttle if isinstance(exc, _Throttled) else None


class ArmPacing(HTTPPolicy):  # type: ignore[type-arg]
    """Every ARM request takes a token of its subscription's read or write bucket first; a 429
    that is throttling (not another operation holding the resource, which `_write` waits out)
    waits, honouring `Retry-After`, and the request is sent again. Only when the bucket makes no
    progress at all does the 429 reach the SDK, which raises it as usual."""

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        category = "arm-read" if http.method in ("GET", "HEAD") else "arm-write"
        parts = http.url.split("/subscriptions/", 1)
        subscription = parts[1].split("/", 1)[0].split("?", 1)[0] if len(parts) == 2 else ""
        key = BucketKey("azure", subscription, caller().region, category)

        def attempt() -> PipelineResponse[Any, Any]:
            response = self.next.send(request)
            throttle = _arm_throttle(response.http_response)
            if throttle is not None:
                raise _Throttled(response, throttle)
            return response

        try:
            return paced(key, attempt, _throttled)
        except _Throttled as exc:
            return exc.response


def _arm_throttle(response: Any) -> Throttle | None:
    """The throttle an ARM answer is: a 429 whose code is not one of another operation's."""
    if response.status_code != 429:
        return None
    try:
        code = str((response.json() or {}).get("error", {}).get("code", ""))
    except Exception:
        code = ""
    if code in _BUSY or code == "RetryableError":
        return None
    value = response.headers.get("Retry-After")
    try:
        return Throttle(retry_after=max(0.0, float(value)) if value is not None else None)
    except ValueError:
        return Throttle(retry_after=1.0)


# --- errors ---------------------------------------------------------------------------------


def error_code(exc: HttpResponseError) -> str:
    """The ARM error code of a failed call ("" when the body has none)."""
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "code", None):
        return str(error.code)
    try:
        return str(exc.response.json()["error"]["code"])  # type: ignore[union-attr]
    except Exception:
        return ""


def _detail_codes(exc: HttpResponseError) -> set[str]:
    error = getattr(exc, "error", None)
    codes = {str(getattr(d, "code", "")) for d in (getattr(error, "details", None) or [])}
    try:
        details = exc.response.json()["error"].get("details") or []  # type: ignore[union-attr]
        codes |= {str(d.get("code", "")) for d in details if isinstance(d, dict)}
    except Exception:
        pass
    return codes - {""}


def retry_after(exc: HttpResponseError) -> float | None:
    """Seconds from the `Retry-After` header (delta or HTTP date), None when absent."""
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 1.0


def is_busy(exc: Exception) -> bool:
    """Another operation holds the resource (or our read went stale): retrying soon will work."""
    if not isinstance(exc, HttpResponseError):
        return False
    code = error_code(exc)
    return code in _BUSY or (code == "RetryableError" and bool(_detail_codes(exc) & _BUSY))


def _arm_message(exc: HttpResponseError) -> str:
    """ARM's own one-line message (azure-core's `message` is three lines: `(Code) text`,
    `Code: …`, `Message: …`)."""
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    if not message:
        try:
            message = exc.response.json()["error"]["message"]  # type: ignore[union-attr]
        except Exception:
            message = (exc.message or str(exc)).splitlines()[0]
    return " ".join(str(message).split())


_ARM_PATH = re.compile(r"/subscriptions/(?P<subscription>[^/?]+)"
                       r"(?:/resourceGroups/(?P<group>[^/?]+))?"
                       r"(?:/providers/(?P<namespace>[^/?]+)/(?P<type>[^/?]+)/(?P<name>[^/?]+))?",
                       re.IGNORECASE)
_ARM_KINDS = {"networksecuritygroups": "network security group",
              "networkinterfaces": "network interface", "virtualmachines": "virtual machine",
              "trafficmanagerprofiles": "Traffic Manager profile"}


def not_found_sentence(exc: HttpResponseError) -> str | None:
    """One sentence naming what ARM did not find, from the error code and the request's URL;
    None when the answer is not a 'not found'."""
    code = error_code(exc)
    if exc.status_code != 404 and not code.endswith("NotFound"):
        return None
    request = getattr(exc.response, "request", None)
    found = _ARM_PATH.search(getattr(request, "url", "") or "")
    if found is None:
        return None
    subscription, group = found["subscription"], found["group"]
    if code == "SubscriptionNotFound" or group is None:
        return f"subscription {subscription} does not exist, or the worker may not use it"
    if code == "ResourceGroupNotFound" or found["name"] is None:
        return f"resource group {group} does not exist in subscription {subscription}"
    kind = _ARM_KINDS.get(found["type"].lower(), found["type"])
    return f"{kind} {found['name']} does not exist in resource group {group}"


def cloud_error(exc: Exception, doing: str) -> CloudError:
    """Turn an azure-core error into a CloudError that says whether retrying can help, in one
    sentence naming the resource (never azure-core's three-line message)."""
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = error_code(exc)
        message = _arm_message(exc)
        missing = not_found_sentence(exc)
        if missing is not None:
            return CloudError(f"Azure refused {doing}: {missing}", retryable=False, code=code)
        if code == "PreconditionFailed":
            return CloudError(f"Azure resource changed while gameday was {doing}; reading it "
                              "again will do", retryable=True, retry_after=0.0, code=code)
        if status == 429 or is_busy(exc) or code == "RetryableError":
            wait = retry_after(exc)
            return CloudError(f"Azure throttled {doing}: {code or status}", retryable=True,
                              retry_after=1.0 if wait is None else wait, code=code)
        if status >= 500 or status in (0, 408):
            return CloudError(f"Azure failed {doing}: {code or status}: {message}",
                              retryable=True, retry_after=retry_after(exc), code=code)
        return CloudError(f"Azure refused {doing}: {code or status}: {message}", retryable=False,
                          code=code)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return CloudError(f"Azure did not answer {doing}: {exc}", retryable=True)
    return CloudError(f"Azure call failed {doing}: {exc}", retryable=True)


def _find(doing: str, fn: Callable[[], T]) -> T | None:
    """The resource, or None when ARM says it does not exist."""
    try:
        return fn()
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise cloud_error(exc, doing) from exc


def _write(doing: str, fn: Callable[[], T]) -> T:
    """One write (usually a read-modify-write): retried here, after `Retry-After`, while another
    operation holds the resource; every other failure goes to Temporal's retry policy."""
    for attempt in range(1, BUSY_ATTEMPTS + 1):
        try:
            return fn()
        except AzureError as exc:
            if not is_busy(exc) or attempt == BUSY_ATTEMPTS:
                raise cloud_error(exc, doing) from exc
            wait = retry_after(exc) if isinstance(exc, HttpResponseError) else None
            if activity.in_activity():
                activity.heartbeat({"waiting": doing})
            time.sleep(min(MAX_BUSY_WAIT, 0.2 if wait is None else wait))
    raise AssertionError("unreachable")


# --- names and ids --------------------------------------------------------------------------


def same_id(a: str | None, b: str | None) -> bool:
    """ARM ids compare case-insensitively."""
    return (a or "").rstrip("/").lower() == (b or "").rstrip("/").lower()


def id_parts(resource_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of an ARM resource id."""
    parts = resource_id.strip("/").split("/")
    return parts[1], parts[3], parts[-1]


def nsg_id(subscription: str, resource_group: str, name: str) -> str:
    return (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
            f"{NSG_TYPE}/{name}")


def restore_tag(nsg: str | None) -> str:
    """The NIC tag value naming its NSG before the fault, short enough for ARM's 256 characters:
    `<resource group>/<name>` (at most 90 + 1 + 80), the subscription being the NIC's own."""
    if nsg is None:
        return NO_NSG
    _, group, name = id_parts(nsg)
    return f"{group}/{name}"


def from_restore_tag(value: str, nic: str) -> str | None:
    group, _, name = value.partition("/")
    if value == NO_NSG or not name:
        return None
    return nsg_id(id_parts(nic)[0], group, name)


def gameday_nsg_name(run_id: str, step_id: str) -> str:
    """Deterministic per (run, step), a valid NSG name of at most 80 characters."""
    digest = hashlib.sha256(f"{run_id}\0{step_id}".encode()).hexdigest()[:10]
    room = MAX_NSG_NAME - len("gameday--") - len(digest)
    return f"gameday-{step_id[:room].strip('-')}-{digest}"


def normalize_location(value: str | None) -> str:
    """`East US` and `eastus` name the same region."""
    return (value or "").replace(" ", "").lower()


def _text(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _tally(result: FaultResult, outcome: bool | None, gone: str) -> None:
    """Count one NIC move (`_move_nic`'s answer): changed, already so, or `gone` noted."""
    if outcome is None:
        result.notes.append(gone)
    elif outcome:
        result.changed += 1
    else:
        result.unchanged += 1


def _nsg_of(nic: NetworkInterface) -> str | None:
    nsg = nic.network_security_group
    return nsg.id if nsg is not None and nsg.id else None


class NicReader:
    """NICs by id, read with one listing per resource group (paged by ARM) rather than one GET
    per NIC: a zone of thousands of NICs is read in a few calls."""

    def __init__(self, arm: ArmClients):
        self._arm = arm
        self._groups: dict[str, dict[str, NetworkInterface]] = {}
        self._lock = threading.Lock()  # NICs move in parallel: one listing per group all the same

    def get(self, nic_id: str) -> NetworkInterface | None:
        """The NIC as ARM lists it now, or None when it does not exist."""
        with self._lock:
            return self._get(nic_id)

    def _get(self, nic_id: str) -> NetworkInterface | None:
        _, group, name = id_parts(nic_id)
        key = group.lower()
        if key not in self._groups:
            try:
                listed = list(self._arm.network.network_interfaces.list(group))
            except ResourceNotFoundError:
                listed = []  # no such group: none of its NICs exists
            except AzureError as exc:
                raise cloud_error(exc, f"listing NICs of resource group {group}") from exc
            self._groups[key] = {nic.id.lower(): nic for nic in listed if nic.id}
        return self._groups[key].get(nic_id.lower())


# --- the zone blackhole ---------------------------------------------------------------------


class AzureZoneBlackhole:
    """The zone blackhole's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The NICs of the matching VMs of the zone (or, for blackhole_region, of every zone of
        the region), each with its VM, zone and current NSG."""
        target = request.step.target
        assert isinstance(target, AzureZoneTarget | AzureRegionTarget)
        scope = Scope.of(target)
        with cloud_span(f"azure.resolve_{request.step.action}", scope) as span:
            check_guardrails(request.step.id, scope, request.guardrails, None)
            with self.connection.clients(target.subscription) as arm:
                resources = self._targets(arm, request.step.id, target)
                if request.only_new:
                    held = self._nsgs_of_run(arm, target.resource_group, request.run_id)
                    resources = [r for r in resources
                                 if r.detail["network_security_group"].lower() not in held]
            span.set_attribute("gameday.resources", len(resources))
            return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                                resources=resources)

    @staticmethod
    def _nsgs_of_run(arm: ArmClients, resource_group: str, run_id: str) -> set[str]:
        """The ids (lower case) of the deny-all NSGs a run made in the resource group."""
        listed = _listing(f"listing NSGs of resource group {resource_group}",
                          lambda: arm.network.network_security_groups.list(resource_group))
        return {nsg.id.lower() for nsg in listed if nsg.id and (nsg.tags or {}).get(TAG_RUN) == run_id
                and (nsg.tags or {}).get(TAG_MANAGED) == "gameday"}

    def _targets(self, arm: ArmClients, step_id: str,
                 target: AzureZoneTarget | AzureRegionTarget) -> list[Resource]:
        try:
            vms = list(arm.compute.virtual_machines.list(target.resource_group))
        except ResourceNotFoundError as exc:
            raise TargetNotFound(
                f"step {step_id}: resource group {target.resource_group} does not exist in "
                f"subscription {target.subscription}"
            ) from exc
        except AzureError as exc:
            raise cloud_error(exc, "listing virtual machines") from exc
        region = normalize_location(target.region)
        wanted = [target.zone] if isinstance(target, AzureZoneTarget) else list(AZURE_ZONES)
        chosen: list[tuple[str, Any]] = []
        for vm in vms:
            zone = next((z for z in vm.zones or [] if z in wanted), None)
            if (zone is not None and normalize_location(vm.location) == region
                    and all((vm.tags or {}).get(k) == v for k, v in target.tags.items())):
                chosen.append((zone, vm))
        resources: list[Resource] = []
        nics = NicReader(arm)
        for index, (zone, vm) in enumerate(chosen, start=1):
            progress(index, len(chosen))
            for reference in vm.network_profile.network_interfaces or []:
                nic = nics.get(reference.id)
                if nic is None:
                    continue
                resources.append(Resource(
                    id=nic.id, kind="network_interface", name=nic.name,
                    detail={"vm": vm.name, "zone": zone,
                            "network_security_group": _nsg_of(nic) or ""},
                ))
        if not resources:
            tags = ", ".join(f"{k}={v}" for k, v in sorted(target.tags.items()))
            where = (f"zone {target.zone} of {target.region}" if isinstance(target, AzureZoneTarget)
                     else f"any zone ({', '.join(AZURE_ZONES)}) of {target.region}")
            raise TargetNotFound(
                f"step {step_id}: no VM in {where} in resource "
                f"group {target.resource_group}" + (f" carries the tags {tags}" if tags else "")
                + " (or none has a network interface)"
            )
        return sorted(resources, key=lambda r: (r.detail["zone"], r.id.lower()))

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each NIC's current NSG; refuse a NIC that another run already holds."""
        resolved = request.resolved
        scope = resolved.scope
        target = request.step.target
        assert isinstance(target, AzureZoneTarget)
        with cloud_span("azure.prepare_blackhole_zone", scope, len(resolved.resources)):
            if len(request.run_id) > MAX_TAG_VALUE:
                raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, ARM's tag limit")
            check_guardrails(resolved.step_id, scope, request.guardrails, len(resolved.resources))
            name = gameday_nsg_name(request.run_id, resolved.step_id)
            ours = nsg_id(scope.account, target.resource_group, name)
            records: list[NicRecord] = []
            holders: dict[str, str | None] = {}
            with self.connection.clients(scope.account) as arm:
                nics = NicReader(arm)
                for done, resource in enumerate(resolved.resources, start=1):
                    progress(done, len(resolved.resources))
                    nic = nics.get(resource.id)
                    if nic is None:
                        continue
                    tags = nic.tags or {}
                    current = _nsg_of(nic)
                    if same_id(current, ours):
                        current = from_restore_tag(tags.get(TAG_RESTORE, NO_NSG), nic.id)
                    elif current is not None:
                        holder = self._holder(arm, current, holders)
                        if holder is not None:
                            raise Refused(f"NIC {nic.id} is already blackholed by gameday run "
                                          f"{holder}")
                    if TAG_RESTORE not in tags and len(tags) >= MAX_TAGS:
                        raise Refused(f"NIC {nic.id} already carries {len(tags)} tags, ARM's "
                                      f"limit; gameday needs one for its restore record")
                    records.append(NicRecord(id=nic.id, vm=resource.detail.get("vm", ""),
                                             nsg=current))
            state = BlackholeState(resource_group=target.resource_group, region=scope.region,
                                   nsg_name=name, nics=records)
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="blackhole_zone", scope=scope, resources=len(records),
                              state=state.model_dump(mode="json"))

    def _holder(self, arm: ArmClients, nsg: str, cache: dict[str, str | None]) -> str | None:
        """The run that made this NSG, when gameday made it."""
        key = nsg.lower()
        if key not in cache:
            _, group, name = id_parts(nsg)
            found = _find(f"reading NSG {name}",
                          lambda: arm.network.network_security_groups.get(group, name))
            tags = (found.tags or {}) if found is not None else {}
            cache[key] = tags.get(TAG_RUN) if tags.get(TAG_MANAGED) == "gameday" else None
        return cache[key]

    def apply(self, request: FaultRequest) -> FaultResult:
        """Ensure the deny-all NSG, then move the NICs onto it, `parallel_calls("azure")` at a time
        (ARM holds each NIC while it updates it; the NSG is only referenced)."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = BlackholeState.model_validate(checkpoint.state)
        result = FaultResult()
        with cloud_span("azure.apply_blackhole_zone", scope, checkpoint.resources):
            check_guardrails(checkpoint.step_id, scope, request.guardrails, checkpoint.resources)
            with self.connection.clients(scope.account) as arm:
                blackhole = self._ensure_nsg(arm, checkpoint, state)
                listed = NicReader(arm)

                def move(record: NicRecord) -> bool | None:
                    return self._move_nic(arm, record.id, blackhole, restore_tag(record.nsg), listed)

                moves = fan_out(state.nics, move, parallel_calls("azure"))
                for done, (record, outcome) in enumerate(moves, start=1):
                    _tally(result, outcome, f"NIC {record.id} no longer exists; skipped")
                    progress(done, len(state.nics))
            return result

    def _ensure_nsg(self, arm: ArmClients, checkpoint: Checkpoint, state: BlackholeState) -> str:
        group, name = state.resource_group, state.nsg_name
        existing = _find(f"reading NSG {name}",
                         lambda: arm.network.network_security_groups.get(group, name))
        if existing is not None and existing.flush_connection and _denies_all(existing):
            return existing.id
        body = NetworkSecurityGroup(
            location=state.region,
            tags={TAG_RUN: checkpoint.run_id, TAG_STEP: checkpoint.step_id,
                  TAG_MANAGED: "gameday"},
            flush_connection=True,
            security_rules=[
                SecurityRule(name=rule["name"], direction=rule["direction"], priority=100,
                             access="Deny", protocol="*", source_address_prefix="*",
                             source_port_range="*", destination_address_prefix="*",
                             destination_port_range="*",
                             description="gameday: blackhole of the zone")
                for rule in _DENY_ALL
            ],
        )
        made = _write(f"creating NSG {name}", lambda: arm.network.network_security_groups
                      .begin_create_or_update(group, name, body).result())
        return made.id

    def _move_nic(self, arm: ArmClients, nic_id: str, nsg: str | None, tag: str | None,
                  listed: NicReader | None = None) -> bool | None:
        """Put the NIC on `nsg` and set (or, with None, remove) its restore tag, keeping every
        other tag; True when changed, False when already so, None when the NIC is gone. The
        first try starts from the NIC as `listed` shows it, when given (one listing per group
        instead of one GET per NIC); its etag guards the write, and a stale one reads again."""
        _, group, name = id_parts(nic_id)
        first = [listed]

        def update() -> bool | None:
            reader = first.pop() if first else None
            nic = reader.get(nic_id) if reader is not None else _find(
                f"reading NIC {name}", lambda: arm.network.network_interfaces.get(group, name))
            if nic is None:
                return None
            tags = dict(nic.tags or {})
            wanted_tags = dict(tags)
            if tag is None:
                wanted_tags.pop(TAG_RESTORE, None)
            else:
                wanted_tags[TAG_RESTORE] = tag
            if same_id(_nsg_of(nic), nsg) and wanted_tags == tags:
                return False
            nic.network_security_group = NetworkSecurityGroup(id=nsg) if nsg else None
            nic.tags = wanted_tags
            try:
                arm.network.network_interfaces.begin_create_or_update(
                    group, name, nic, headers={"If-Match": nic.etag} if nic.etag else None,
                ).result()
            except ResourceNotFoundError:
                return None
            return True

        return _write(f"updating NIC {name}", update)

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put every NIC back on the NSG it had (or none), then delete gameday's NSG."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = BlackholeState.model_validate(checkpoint.state)
        result = FaultResult()
        ours = nsg_id(scope.account, state.resource_group, state.nsg_name)
        with (cloud_span("azure.restore_blackhole_zone", scope, checkpoint.resources),
              self.connection.clients(scope.account) as arm):
            listed = NicReader(arm)

            def put_back(record: NicRecord) -> FaultResult:
                one = FaultResult()  # each move tallies apart: they run in parallel
                self._restore_nic(arm, record.id, record.nsg, one, listed)
                return one

            moves = fan_out(state.nics, put_back, parallel_calls("azure"))
            for done, (_, one) in enumerate(moves, start=1):
                result.changed += one.changed
                result.unchanged += one.unchanged
                result.notes += one.notes
                progress(done, len(state.nics))
            self._delete_nsg(arm, state, ours, result)
            return result

    def _restore_nic(self, arm: ArmClients, nic_id: str, nsg: str | None,
                     result: FaultResult, listed: NicReader | None = None) -> None:
        try:
            outcome = self._move_nic(arm, nic_id, nsg, None, listed)
        except CloudError as exc:
            if exc.code != "InvalidResourceReference" or nsg is None:
                raise
            _, group, name = id_parts(nsg)
            if _find(f"reading NSG {name}",
                     lambda: arm.network.network_security_groups.get(group, name)) is not None:
                raise
            outcome = self._move_nic(arm, nic_id, None, None)
            result.notes.append(f"NIC {nic_id}: its NSG {nsg} is gone; left without an NSG")
        _tally(result, outcome, f"NIC {nic_id} no longer exists; nothing to restore")

    def _delete_nsg(self, arm: ArmClients, state: BlackholeState, ours: str,
                    result: FaultResult) -> None:
        """Delete gameday's NSG; NICs still on it (not in the checkpoint) go back first, each to
        the NSG its restore tag names."""
        group, name = state.resource_group, state.nsg_name

        def delete() -> None:
            try:
                arm.network.network_security_groups.begin_delete(group, name).result()
            except ResourceNotFoundError:
                pass

        for attempt in (1, 2):
            try:
                _write(f"deleting NSG {name}", delete)
                return
            except CloudError as exc:
                if exc.code != "InUseNetworkSecurityGroupCannotBeDeleted" or attempt == 2:
                    raise
            found = _find(f"reading NSG {name}",
                          lambda: arm.network.network_security_groups.get(group, name))
            for member in (found.network_interfaces or []) if found is not None else []:
                self._restore_from_tag(arm, member.id, ours, result)

    def _restore_from_tag(self, arm: ArmClients, nic_id: str, ours: str,
                          result: FaultResult) -> None:
        _, group, name = id_parts(nic_id)
        nic = _find(f"reading NIC {name}", lambda: arm.network.network_interfaces.get(group, name))
        if nic is None or not same_id(_nsg_of(nic), ours):
            return
        tag = (nic.tags or {}).get(TAG_RESTORE)
        if tag is None:
            result.notes.append(f"NIC {nic_id} was on gameday's NSG without a restore record; "
                                "left without an NSG")
        self._restore_nic(arm, nic.id, from_restore_tag(tag or NO_NSG, nic.id), result)


def _denies_all(nsg: NetworkSecurityGroup) -> bool:
    rules = {(r.name or "").lower(): r for r in nsg.security_rules or []}
    for wanted in _DENY_ALL:
        rule = rules.get(wanted["name"])
        if rule is None or _text(rule.access) != "Deny" or rule.priority != 100:
            return False
    return True


# --- the sweeper ----------------------------------------------------------------------------

UNKNOWN_RUN = "(unknown)"
"""The run of a NIC whose restore tag no gameday NSG explains: unrecoverable, never `running`."""


def _listing(doing: str, fn: Callable[[], Any]) -> list[Any]:
    try:
        return list(fn())
    except AzureError as exc:
        raise cloud_error(exc, doing) from exc


class AzureSweeper(AzureZoneBlackhole):
    """Finds gameday's NSGs (tagged `gameday-run`) and the NICs carrying gameday's restore tag in
    each subscription, and undoes each from those tags alone."""

    def find(self, scope: SweepScope) -> list[Leftover]:
        leftovers: list[Leftover] = []
        for subscription in scope.azure_subscriptions:
            with self.connection.clients(subscription) as arm:
                nics = _listing(f"listing the NICs of subscription {subscription}",
                                arm.network.network_interfaces.list_all)
                nsgs = _listing(f"listing the NSGs of subscription {subscription}",
                                arm.network.network_security_groups.list_all)
            ours = {nsg.id.lower(): nsg for nsg in nsgs if TAG_RUN in (nsg.tags or {})}
            for nic in sorted(nics, key=lambda n: n.id.lower()):
                tags = nic.tags or {}
                if TAG_RESTORE not in tags:
                    continue
                holder = ours.get((_nsg_of(nic) or "").lower())
                holder_tags = (holder.tags or {}) if holder is not None else {}
                leftovers.append(Leftover(
                    cloud="azure", kind="network-interface", id=nic.id,
                    run_id=holder_tags.get(TAG_RUN, UNKNOWN_RUN),
                    step_id=holder_tags.get(TAG_STEP, ""), location=subscription,
                    detail={"resource_group": id_parts(nic.id)[1],
                            "network_security_group": _nsg_of(nic) or "",
                            "restore_nsg": tags[TAG_RESTORE]},
                ))
            for key in sorted(ours):
                nsg = ours[key]
                tags = nsg.tags or {}
                held = sorted(member.id for member in nsg.network_interfaces or [])
                leftovers.append(Leftover(
                    cloud="azure", kind="network-security-group", id=nsg.id,
                    run_id=tags[TAG_RUN], step_id=tags.get(TAG_STEP, ""), location=subscription,
                    detail={"resource_group": id_parts(nsg.id)[1], "region": nsg.location or "",
                            "nics_held": ",".join(held)},
                ))
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        if leftover.kind not in ("network-interface", "network-security-group"):
            raise UserError(f"azure has no leftover of kind {leftover.kind}")
        result = FaultResult()
        with self.connection.clients(leftover.location) as arm:
            if leftover.kind == "network-interface":
                self._sweep_nic(arm, leftover.id, result)
            else:
                self._sweep_nsg(arm, leftover, result)
        progress(1, 1)
        return result

    def _sweep_nic(self, arm: ArmClients, nic_id: str, result: FaultResult) -> None:
        """Back onto the NSG its tag names (or none), without the tag; a NIC no longer on a
        gameday NSG was moved by someone else, so only the stale tag goes."""
        _, group, name = id_parts(nic_id)
        nic = _find(f"reading NIC {name}", lambda: arm.network.network_interfaces.get(group, name))
        if nic is None:
            result.notes.append(f"NIC {nic_id} no longer exists; nothing to restore")
            return
        tag = (nic.tags or {}).get(TAG_RESTORE)
        if tag is None:
            result.unchanged += 1
            return
        current = _nsg_of(nic)
        if current is not None and self._holder_tags(arm, current).get(TAG_RUN):
            self._restore_nic(arm, nic.id, from_restore_tag(tag, nic.id), result)
            return
        result.notes.append(f"NIC {nic_id} is no longer on a gameday NSG; only its restore tag "
                            "was removed")
        outcome = self._move_nic(arm, nic.id, current, None)
        _tally(result, outcome, f"NIC {nic_id} no longer exists; nothing to restore")

    def _holder_tags(self, arm: ArmClients, nsg: str) -> dict[str, str]:
        _, group, name = id_parts(nsg)
        found = _find(f"reading NSG {name}",
                      lambda: arm.network.network_security_groups.get(group, name))
        return dict(found.tags or {}) if found is not None else {}

    def _sweep_nsg(self, arm: ArmClients, leftover: Leftover, result: FaultResult) -> None:
        """Put every NIC still on gameday's NSG back from its own tag, then delete the NSG."""
        _, group, name = id_parts(leftover.id)
        found = _find(f"reading NSG {name}",
                      lambda: arm.network.network_security_groups.get(group, name))
        if found is None:
            result.notes.append(f"NSG {leftover.id} is already gone")
            return
        if (found.tags or {}).get(TAG_RUN) != leftover.run_id:
            result.notes.append(f"NSG {leftover.id} is no longer gameday's NSG of run "
                                f"{leftover.run_id}; left alone")
            return
        for member in found.network_interfaces or []:
            self._restore_from_tag(arm, member.id, found.id, result)
        state = BlackholeState(resource_group=group, region=found.location or "", nsg_name=name,
                               nics=[])
        self._delete_nsg(arm, state, found.id, result)


# --- the region evacuation ------------------------------------------------------------------


class AzureRegionEvacuation:
    """Disable the Traffic Manager endpoints of a region, and put each back to its own status."""

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, AzureRegionTraffic)
        scope = Scope.of(target)
        with cloud_span("azure.resolve_evacuate_region", scope) as span:
            check_guardrails(request.step.id, scope, request.guardrails, None)
            with self.connection.clients(target.subscription) as arm:
                records = self._in_region(arm, request.step.id, target)
            resources = [
                Resource(id=r.id, kind="traffic_manager_endpoint", name=r.name,
                         detail={"profile": r.profile, "type": r.endpoint_type,
                                 "status": r.status})
                for r in records
            ]
            span.set_attribute("gameday.resources", len(resources))
            return ResolvedStep(step_id=request.step.id, action="evacuate_region", scope=scope,
                                resources=resources)

    def _in_region(self, arm: ArmClients, step_id: str,
                   target: AzureRegionTraffic) -> list[EndpointRecord]:
        """The endpoints of the named profiles located in the region; refuses a profile that would
        keep no enabled endpoint outside it."""
        region = normalize_location(target.region)
        records: list[EndpointRecord] = []
        for profile_name in target.traffic_manager_profiles:
            try:
                profile = arm.traffic.profiles.get(target.resource_group, profile_name)
            except ResourceNotFoundError as exc:
                missing = (not_found_sentence(exc) if error_code(exc) == "ResourceGroupNotFound"
                           else None)
                raise TargetNotFound(f"step {step_id}: " + (
                    missing or f"Traffic Manager profile {profile_name} does not exist in "
                               f"resource group {target.resource_group}")) from exc
            except AzureError as exc:
                raise cloud_error(exc, f"reading profile {profile_name}") from exc
            endpoints = list(profile.endpoints or [])
            inside = [e for e in endpoints if normalize_location(e.endpoint_location) == region]
            if not inside:
                continue
            moved = {e.id for e in inside}
            remaining = [e for e in endpoints if e.id not in moved
                         and _text(e.endpoint_status) == "Enabled"]
            if not remaining:
                raise Refused(
                    f"step {step_id}: evacuating {target.region} would leave Traffic Manager "
                    f"profile {profile_name} with no enabled endpoint outside {target.region}"
                )
            records += [
                EndpointRecord(id=e.id, profile=profile.name or profile_name,
                               endpoint_type=_endpoint_type(e.type), name=e.name,
                               status=_text(e.endpoint_status) or "Enabled")
                for e in inside
            ]
        if not records:
            raise TargetNotFound(
                f"step {step_id}: no endpoint of Traffic Manager profile(s) "
                f"{', '.join(target.traffic_manager_profiles)} is located in {target.region}"
            )
        return sorted(records, key=lambda r: r.id.lower())

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each endpoint's type and current status, re-checking that traffic has somewhere
        else to go."""
        resolved = request.resolved
        scope = resolved.scope
        target = request.step.target
        assert isinstance(target, AzureRegionTraffic)
        with cloud_span("azure.prepare_evacuate_region", scope, len(resolved.resources)):
            check_guardrails(resolved.step_id, scope, request.guardrails, len(resolved.resources))
            with self.connection.clients(scope.account) as arm:
                records = self._in_region(arm, resolved.step_id, target)
            state = EvacuationState(resource_group=target.resource_group, endpoints=records)
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="evacuate_region", scope=scope, resources=len(records),
                              state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        with cloud_span("azure.apply_evacuate_region", scope, checkpoint.resources):
            check_guardrails(checkpoint.step_id, scope, request.guardrails, checkpoint.resources)
            with self.connection.clients(scope.account) as arm:
                return self._set_statuses(arm, state, {r.id: "Disabled" for r in state.endpoints})

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put each endpoint back to its own status before the fault (already equal: skipped)."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        with (cloud_span("azure.restore_evacuate_region", scope, checkpoint.resources),
              self.connection.clients(scope.account) as arm):
            return self._set_statuses(arm, state, {r.id: r.status for r in state.endpoints})

    def _set_statuses(self, arm: ArmClients, state: EvacuationState,
                      wanted: dict[str, str]) -> FaultResult:
        result = FaultResult()
        group = state.resource_group
        for done, record in enumerate(state.endpoints, start=1):
            status = wanted[record.id]
            current = _find(f"reading endpoint {record.name}", lambda r=record: arm.traffic
                            .endpoints.get(group, r.profile, r.endpoint_type, r.name))
            if current is None:
                result.notes.append(f"endpoint {record.id} no longer exists; skipped")
            elif _text(current.endpoint_status) == status:
                result.unchanged += 1
            else:
                _write(f"setting endpoint {record.name} {status}", lambda r=record, s=status: arm
                       .traffic.endpoints.update(group, r.profile, r.endpoint_type, r.name,
                                                 Endpoint(endpoint_status=s)))
                result.changed += 1
            progress(done, len(state.endpoints))
        return result


def _endpoint_type(resource_type: str | None) -> str:
    """`Microsoft.Network/trafficManagerProfiles/azureEndpoints` -> `AzureEndpoints`."""
    kind = (resource_type or "").rsplit("/", 1)[-1]
    return kind[:1].upper() + kind[1:] if kind else "AzureEndpoints"


# --- activities -----------------------------------------------------------------------------


class AzureActivities:
    """Azure activities, named `azure.<verb>_<action>`; thin wrappers over the classes above."""

    def __init__(self, blackhole: AzureZoneBlackhole | None = None,
                 evacuation: AzureRegionEvacuation | None = None):
        connection = AzureConnection()
        self.blackhole = blackhole or AzureZoneBlackhole(connection)
        self.evacuation = evacuation or AzureRegionEvacuation(connection)
        self.sweeper = AzureSweeper(connection)

    @activity.defn(name="azure.resolve_blackhole_zone")
    @temporal_errors
    def resolve_blackhole_zone(self, request: StepRequest) -> ResolvedStep:
        return self.blackhole.resolve(request)

    @activity.defn(name="azure.resolve_blackhole_region")
    @temporal_errors
    def resolve_blackhole_region(self, request: StepRequest) -> ResolvedStep:
        return self.blackhole.resolve(request)

    @activity.defn(name="azure.prepare_blackhole_zone")
    @temporal_errors
    def prepare_blackhole_zone(self, request: PrepareRequest) -> Checkpoint:
        return self.blackhole.prepare(request)

    @activity.defn(name="azure.apply_blackhole_zone")
    @temporal_errors
    def apply_blackhole_zone(self, request: FaultRequest) -> FaultResult:
        return self.blackhole.apply(request)

    @activity.defn(name="azure.restore_blackhole_zone")
    @restore_errors
    def restore_blackhole_zone(self, request: FaultRequest) -> FaultResult:
        return self.blackhole.restore(request)

    @activity.defn(name="azure.resolve_evacuate_region")
    @temporal_errors
    def resolve_evacuate_region(self, request: StepRequest) -> ResolvedStep:
        return self.evacuation.resolve(request)

    @activity.defn(name="azure.prepare_evacuate_region")
    @temporal_errors
    def prepare_evacuate_region(self, request: PrepareRequest) -> Checkpoint:
        return self.evacuation.prepare(request)

    @activity.defn(name="azure.apply_evacuate_region")
    @temporal_errors
    def apply_evacuate_region(self, request: FaultRequest) -> FaultResult:
        return self.evacuation.apply(request)

    @activity.defn(name="azure.restore_evacuate_region")
    @restore_errors
    def restore_evacuate_region(self, request: FaultRequest) -> FaultResult:
        return self.evacuation.restore(request)

    @activity.defn(name="azure.find_leftovers")
    @temporal_errors
    def find_leftovers(self, scope: SweepScope) -> list[Leftover]:
        return self.sweeper.find(scope)

    @activity.defn(name="azure.sweep_leftover")
    @restore_errors
    def sweep_leftover(self, leftover: Leftover) -> FaultResult:
        return self.sweeper.sweep(leftover)

    def all(self) -> list[Any]:
        return [self.resolve_blackhole_zone, self.resolve_blackhole_region,
                self.prepare_blackhole_zone, self.apply_blackhole_zone,
                self.restore_blackhole_zone,
                self.resolve_evacuate_region, self.prepare_evacuate_region,
                self.apply_evacuate_region, self.restore_evacuate_region,
                self.find_leftovers, self.sweep_leftover]
