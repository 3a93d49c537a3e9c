"""ARM plumbing every Azure fault shares: azure-mgmt clients for `GAMEDAY_AZURE_ENDPOINT` (a static
token) or public Azure (`DefaultAzureCredential`), built once per subscription and kept, with low
SDK retries off and every request paced by the token buckets of `activities.throttle`; reads and
writes that fail transiently sent again under `activities.transient`'s policy; ARM errors turned
into `CloudError`s that say whether retrying can help; ARM ids and names.

Every artifact gameday makes on Azure carries the run and step in tags (`TAG_RUN`, `TAG_STEP`), so
that `gameday sweep` finds it after any failure.
"""

from __future__ import annotations

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
from azure.mgmt.trafficmanager import TrafficManagerManagementClient

from activities.throttle import BucketKey, Throttle, caller, paced
from activities.transient import Transient, retried
from gameday.errors import CloudError

T = TypeVar("T")
C = TypeVar("C")

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
NSG_TYPE = "Microsoft.Network/networkSecurityGroups"
_BUSY = {"RetryableErrorDueToAnotherOperation", "ReferencedResourceNotProvisioned",
         "AnotherOperationInProgress", "PreconditionFailed"}


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
    when set, else public Azure with `DefaultAzureCredential`. SDK retries are off: transient
    failures follow `activities.transient`, then Temporal's retry policy."""

    def __init__(self, retry_total: int = 0):
        self.retry_total = retry_total
        self._default_credential: Any = None
        self._made: dict[tuple[str, str, str], ArmClients] = {}
        self._others: dict[tuple[str, str, str, str], Any] = {}
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
            others, self._others = list(self._others.values()), {}
        for clients in [*made, *others]:
            clients.close()

    def client(self, kind: Callable[..., C], subscription: str) -> C:
        """Another azure-mgmt client of the subscription (azure-mgmt-monitor's, the flexible
        servers'...), built with the same endpoint, credential, pacing and retries as
        `clients`, and kept."""
        endpoint = os.environ.get(ENDPOINT_VARIABLE, "").rstrip("/")
        key = (kind.__name__, subscription, endpoint, os.environ.get(CA_BUNDLE_VARIABLE, ""))
        with self._lock:
            if key not in self._others:
                credential, settings = self._settings(endpoint)
                self._others[key] = kind(credential, subscription, **settings)
            return self._others[key]

    def _settings(self, endpoint: str) -> tuple[Any, dict[str, Any]]:
        """The credential and the client settings every azure-mgmt client is built with."""
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
        return credential, settings

    def _build(self, subscription: str, endpoint: str) -> ArmClients:
        credential, settings = self._settings(endpoint)
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


class ArmPacing(HTTPPolicy):
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


def transient_of(exc: Exception) -> Transient | None:
    """An ARM failure worth sending the call again for, or None: another operation holds the
    resource (or our read went stale), a 5xx or 408, or no answer."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return Transient(type(exc).__name__)
    if not isinstance(exc, HttpResponseError):
        return None
    status = exc.status_code or 0
    if is_busy(exc) or status >= 500 or status == 408:
        return Transient(error_code(exc) or str(status), retry_after(exc))
    return None


def throttle_of(exc: Exception) -> Throttle | None:
    """The throttle a failed ARM call is: a 429 `ArmPacing` waited out until its bucket stalled."""
    if isinstance(exc, HttpResponseError) and exc.response is not None:
        return _arm_throttle(exc.response)
    return None


def find(doing: str, fn: Callable[[], T]) -> T | None:
    """The resource, or None when ARM says it does not exist."""
    try:
        return retried(fn, transient_of, throttle_of)
    except ResourceNotFoundError:
        return None
    except AzureError as exc:
        raise cloud_error(exc, doing) from exc


def write(doing: str, fn: Callable[[], T]) -> T:
    """One write (usually a read-modify-write, so sending it again re-reads first): sent again
    under `activities.transient`'s policy, after `Retry-After`, while another operation holds
    the resource or ARM fails transiently; every other failure goes to Temporal's retry policy."""
    try:
        return retried(fn, transient_of, throttle_of)
    except AzureError as exc:
        raise cloud_error(exc, doing) from exc


# --- names and ids --------------------------------------------------------------------------


def same_id(a: str | None, b: str | None) -> bool:
    """ARM ids compare case-insensitively."""
    return (a or "").rstrip("/").lower() == (b or "").rstrip("/").lower()


def resource_id(resource: Any) -> str:
    """The ARM id of a resource ARM returned (always set there; the SDK types it optional)."""
    if not resource.id:
        raise CloudError(f"ARM returned a {type(resource).__name__} without an id", retryable=False)
    return str(resource.id)


def id_parts(resource_id: str) -> tuple[str, str, str]:
    """(subscription, resource group, name) of an ARM resource id."""
    parts = resource_id.strip("/").split("/")
    return parts[1], parts[3], parts[-1]


def nsg_id(subscription: str, resource_group: str, name: str) -> str:
    return (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
            f"{NSG_TYPE}/{name}")



def normalize_location(value: str | None) -> str:
    """`East US` and `eastus` name the same region."""
    return (value or "").replace(" ", "").lower()


def text(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def listing(doing: str, fn: Callable[[], Any]) -> list[Any]:
    """Every item of a listing; one that fails transiently is listed again from the start."""
    try:
        return retried(lambda: list(fn()), transient_of, throttle_of)
    except AzureError as exc:
        raise cloud_error(exc, doing) from exc


def connect() -> AzureConnection:
    """The connection the Azure faults of one worker share (clients built once per subscription)."""
    return AzureConnection()
