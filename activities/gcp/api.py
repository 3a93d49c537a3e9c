"""Compute Engine plumbing every GCP fault shares: the clients (built with the same options, for
`GAMEDAY_GCP_ENDPOINT` or Google), calls paced by the project's token bucket, `*_unary` mutations
whose operations are polled through operations clients built with the same options (never
`.result()`, which polls Google itself), and SDK errors turned into `CloudError`s that say whether
retrying can help. SDK retries are off: a transient failure is sent again under the one policy
of `activities.transient`, then left to Temporal's retries.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import TransportError
from google.cloud import compute_v1
from temporalio import activity

from activities.gcp.impersonation import impersonated, service_account_for
from activities.throttle import BucketKey, Throttle, caller
from activities.transient import Transient, paced_and_retried
from gameday.errors import CloudError

ENDPOINT_VARIABLE = "GAMEDAY_GCP_ENDPOINT"
CALL_TIMEOUT = 30.0
FINGERPRINT_ATTEMPTS = 5
OPERATION_DEADLINE = 600.0
THROTTLED_RETRY_AFTER = 1.0

_RETRYABLE = (exceptions.TooManyRequests, exceptions.ServiceUnavailable,
              exceptions.InternalServerError, exceptions.DeadlineExceeded,
              exceptions.BadGateway, exceptions.GatewayTimeout)
_SDK_FAILURES = (exceptions.GoogleAPIError, requests.RequestException, TransportError,
                 ConnectionError, TimeoutError)
_DONE = compute_v1.Operation.Status.DONE


# --- clients and errors ---------------------------------------------------------------------


@dataclass(frozen=True)
class Compute:
    """The Compute Engine clients gameday uses, all built with the same options."""

    zones: compute_v1.ZonesClient
    instances: compute_v1.InstancesClient
    firewalls: compute_v1.FirewallsClient
    backend_services: compute_v1.BackendServicesClient
    global_operations: compute_v1.GlobalOperationsClient
    zone_operations: compute_v1.ZoneOperationsClient
    managers: compute_v1.RegionInstanceGroupManagersClient
    """Regional managed instance groups (deny_capacity, and stop_instances' hold on members)."""
    autoscalers: compute_v1.RegionAutoscalersClient
    region_operations: compute_v1.RegionOperationsClient
    subnetworks: compute_v1.SubnetworksClient
    """Read-only: partition_regions reads the ranges of a network's subnets."""


@functools.lru_cache(maxsize=64)
def _compute(endpoint: str | None, service_account: str | None = None) -> Compute:
    options: dict[str, Any] = {}
    if endpoint:
        options = {"client_options": ClientOptions(api_endpoint=endpoint),
                   "credentials": AnonymousCredentials()}
    elif service_account:
        options = {"credentials": impersonated(service_account)}
    return Compute(
        zones=compute_v1.ZonesClient(**options),
        instances=compute_v1.InstancesClient(**options),
        firewalls=compute_v1.FirewallsClient(**options),
        backend_services=compute_v1.BackendServicesClient(**options),
        global_operations=compute_v1.GlobalOperationsClient(**options),
        zone_operations=compute_v1.ZoneOperationsClient(**options),
        managers=compute_v1.RegionInstanceGroupManagersClient(**options),
        autoscalers=compute_v1.RegionAutoscalersClient(**options),
        region_operations=compute_v1.RegionOperationsClient(**options),
        subnetworks=compute_v1.SubnetworksClient(**options),
    )


def reached_as(project: str) -> tuple[str | None, str | None]:
    """Where and as whom a call for `project` goes: `GAMEDAY_GCP_ENDPOINT` (the lab, anonymous)
    and no service account when it is set, else Google (None) as the service account
    `GAMEDAY_GCP_IMPERSONATE` names for the project, or None for the worker's own credentials."""
    endpoint = os.environ.get(ENDPOINT_VARIABLE) or None
    return endpoint, None if endpoint else service_account_for(project)


def compute_clients() -> Compute:
    """Clients for `GAMEDAY_GCP_ENDPOINT` with anonymous credentials when it is set, else for
    Google with Application Default Credentials, acting as the service account
    `GAMEDAY_GCP_IMPERSONATE` names for the project of the current call (its scope,
    `activities.throttle.caller`; `activities.gcp.impersonation`)."""
    return _compute(*reached_as(caller().account))


def _retry_after(exc: exceptions.GoogleAPICallError) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        value = headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_RATE_LIMITED = {"rateLimitExceeded", "userRateLimitExceeded"}
"""The reasons of Compute Engine's 403 (and 429) answers to a project over its rate quota."""


def throttle_of(exc: Exception) -> Throttle | None:
    """The throttle a Compute Engine answer is (429, or 403 `rateLimitExceeded`), or None."""
    if isinstance(exc, exceptions.TooManyRequests) or (
            isinstance(exc, exceptions.Forbidden) and _reasons(exc) & _RATE_LIMITED):
        return Throttle(retry_after=_retry_after(exc))
    return None


def _reasons(exc: exceptions.GoogleAPICallError) -> set[str]:
    """The `reason`s of an error: Compute Engine's `errors[].reason`, and the ErrorInfo's."""
    found = {str(e.get("reason")) for e in exc.errors or [] if isinstance(e, dict)}
    return found | ({exc.reason} if exc.reason else set())


def bucket_of(method: Callable[..., Any], kwargs: dict[str, Any]) -> BucketKey:
    """Compute Engine's quotas are per project: mutations (`*_unary`) and reads apart."""
    project = kwargs["project"] if "project" in kwargs else getattr(kwargs.get("request"),
                                                                    "project", "")
    name = getattr(method, "__name__", "")
    category = "gce-mutation" if name.endswith("_unary") else "gce-read"
    return BucketKey("gcp", str(project), "global", category)


_RESOURCE_PATH = re.compile(
    r"/projects/(?P<project>[^/?:\s]+)"
    r"(?:/(?:(?P<scope>zones|regions)/(?P<where>[^/?:\s]+)|global))?"
    r"(?:/(?P<collection>[A-Za-z]+)(?:/(?P<name>[^/?:\s]+))?)?")
_KINDS = {"instances": "instance", "firewalls": "firewall rule", "networks": "network",
          "backendServices": "backend service", "operations": "operation",
          "instanceGroups": "instance group", "zones": "zone", "regions": "region"}


def _not_found(exc: exceptions.GoogleAPICallError) -> str:
    """One sentence naming what a 404 did not find, read from the request's URL (which the
    SDK's message starts with: `GET http://…/projects/p/zones/z/instances`)."""
    found = _RESOURCE_PATH.search(exc.message or "")
    if found is None:
        return "a resource it names does not exist"
    project, scope, where = found["project"], found["scope"], found["where"]
    collection, name = found["collection"], found["name"]
    if scope and where and (collection is None or name is None):
        return f"{_KINDS[scope]} {where} does not exist in project {project}"
    if collection in _KINDS and name:
        place = f" in {_KINDS[scope]} {where}" if scope and where else ""
        return f"{_KINDS[collection]} {name} does not exist{place} in project {project}"
    return f"project {project} does not exist, or the worker may not use it"


def _server_message(exc: exceptions.GoogleAPICallError) -> str:
    """The server's own message, without the method and URL the SDK puts before it."""
    message = exc.message or ""
    if re.match(r"[A-Z]+ https?://", message) and ": " in message:
        message = message.split(": ", 1)[1]
    return " ".join(message.split())


def _error(exc: BaseException, doing: str) -> CloudError:
    """A CloudError for a failed SDK call that says whether retrying can help, in one sentence
    that names the resource (never the raw `404 GET http://…`)."""
    if isinstance(exc, exceptions.GoogleAPICallError):
        code = str(exc.code or "")
        reason = exc.reason or code
        if isinstance(exc, exceptions.NotFound):
            return CloudError(f"GCP refused {doing}: {_not_found(exc)}", retryable=False,
                              code=reason)
        if isinstance(exc, exceptions.TooManyRequests) or throttle_of(exc) is not None:
            retry_after = _retry_after(exc)
            return CloudError(f"GCP throttled {doing}: {_server_message(exc)}", retryable=True,
                              retry_after=THROTTLED_RETRY_AFTER if retry_after is None
                              else retry_after, code=reason)
        if isinstance(exc, _RETRYABLE) or (exc.code or 0) >= 500:
            return CloudError(f"GCP failed {doing}: {code} {_server_message(exc)}",
                              retryable=True, retry_after=_retry_after(exc), code=reason)
        return CloudError(f"GCP refused {doing}: {code} {_server_message(exc)}", retryable=False,
                          code=reason)
    return CloudError(f"GCP did not answer {doing}: {exc}", retryable=True)


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Raise any SDK failure that escapes the block as a CloudError."""
    try:
        yield
    except _SDK_FAILURES as exc:
        raise _error(exc, doing) from exc


def transient_of(exc: Exception) -> Transient | None:
    """A Compute Engine failure worth sending the call again for (5xx, no answer), or None."""
    if not isinstance(exc, _SDK_FAILURES):
        return None
    error = _error(exc, "a call")
    return Transient(error.code or "transient", error.retry_after) if error.retryable else None


def call(method: Callable[..., Any], *, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> Any:
    """One SDK call, the SDK's own retries off, paced by the project's token bucket: a throttled
    call waits and is made again for as long as the bucket makes progress. Another transient
    failure (5xx, no answer) is sent again under `activities.transient`'s policy, so that one
    such failure does not throw away the progress of an activity over many instances; anything
    else, or a failure that persists, goes to Temporal's retries. Safe because gameday's
    mutations are idempotent (`requestId`) or fingerprint-guarded, and callers treat 409, 404
    and 412 as they must."""
    return paced_and_retried(bucket_of(method, kwargs),
                             lambda: method(**kwargs, retry=None, timeout=timeout),
                             throttle_of, transient_of)


WAIT_SLICE = 5.0
"""The longest one `operations.wait` request may block: well inside the heartbeat timeout."""


def mutate(compute: Compute, method: Callable[..., compute_v1.Operation], **kwargs: Any) -> None:
    """Start a `*_unary` mutation and wait for its operation (zonal, regional or global) with
    `operations.wait` (which returns when it is DONE) in slices of `WAIT_SLICE`, heartbeating
    between; raise its failure as the SDK would."""
    project = kwargs["project"] if "project" in kwargs else kwargs["request"].project
    operation = call(method, **kwargs)
    deadline = time.monotonic() + OPERATION_DEADLINE
    while operation.status != _DONE:
        if time.monotonic() > deadline:
            raise CloudError(f"GCP operation {operation.name} on {operation.target_link} is not "
                             f"done after {OPERATION_DEADLINE:.0f}s", retryable=True)
        if activity.in_activity():
            activity.heartbeat({"waiting": operation.name})
        try:
            if operation.zone:
                operation = call(compute.zone_operations.wait, timeout=WAIT_SLICE,
                                  project=project, zone=last(operation.zone),
                                  operation=operation.name)
            elif operation.region:
                operation = call(compute.region_operations.wait, timeout=WAIT_SLICE,
                                  project=project, region=last(operation.region),
                                  operation=operation.name)
            else:
                operation = call(compute.global_operations.wait, timeout=WAIT_SLICE,
                                  project=project, operation=operation.name)
        except (exceptions.DeadlineExceeded, requests.Timeout):
            continue  # the slice ended before the operation: ask again
    if operation.error.errors or operation.http_error_status_code:
        first = operation.error.errors[0] if operation.error.errors else None
        message = first.message if first else operation.http_error_message
        raise exceptions.from_http_status(operation.http_error_status_code or 500,
                                          f"{operation.operation_type} {operation.target_link}: "
                                          f"{message}")


def last(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


def connect() -> Callable[[], Compute]:
    """What the GCP faults of one worker share: the factory of the (cached) Compute clients."""
    return compute_clients
