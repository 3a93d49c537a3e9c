"""State, links, ids, fingerprints and the mutation → Operation helper shared by the API modules."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gameday.lab.emulator import ApiError, Emulator, Request, Response
from gameday.lab.gcp.catalogue import REGIONS, ZONES
from gameday.lab.gcp.operations import WAIT_BLOCK, OperationStore, OpFailure
from gameday.lab.realistic import Bucket, Decision, RateCall

GOOGLE_BASE = "https://www.googleapis.com/compute/v1"
PROJECT = r"/compute/v1/projects/(?P<project>[^/]+)"
ZONE = PROJECT + r"/zones/(?P<zone>[^/]+)"
REGION = PROJECT + r"/regions/(?P<region>[^/]+)"
GLOBAL = PROJECT + r"/global"
NAME = r"(?P<name>[^/]+)"

_NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_BASE_REASONS = {
    "NotFound": "notFound", "MethodNotAllowed": "httpMethodNotAllowed",
    "TooManyRequests": "rateLimitExceeded", "InternalError": "backendError",
    "ServiceUnavailable": "backendError", "InjectedFault": "backendError",
}
_DOMAINS = {"rateLimitExceeded": "usageLimits", "quotaExceeded": "usageLimits",
            "userRateLimitExceeded": "usageLimits"}
_STATUSES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
             409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED",
             500: "INTERNAL", 503: "UNAVAILABLE"}

MUTATIONS = "mutations"
READS = "reads"
LISTS = "lists"
OPERATION_READS = "operation-reads"
_PROJECT_PATH = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)(?:/(?P<rest>.*))?$")
_WAIT_PATH = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)/(?P<scope>global|regions/[^/]+|"
                        r"zones/[^/]+)/operations/(?P<name>[^/]+)/wait$")
POWER_SECONDS = 30.0
"""How long a power operation (stop, start, suspend, resume) takes when nobody hurries it:
Compute Engine's take tens of seconds."""
_QUOTA = {MUTATIONS: ("Queries", "defaultPerMinutePerProject"),
          READS: ("Read requests", "ReadRequestsPerMinutePerProject"),
          LISTS: ("List requests", "ListRequestsPerMinutePerProject"),
          OPERATION_READS: ("Operation read requests", "OperationReadRequestsPerMinutePerProject")}


def rate_category(method: str, rest: str) -> str:
    """Compute Engine's rate quota group of a call below `projects/{p}/`: operation reads
    (get and wait), other mutations, lists (collections, aggregated) or gets."""
    parts = [p for p in rest.split("/") if p]
    if "operations" in parts:
        return OPERATION_READS
    if method != "GET":
        return MUTATIONS
    if parts[:1] == ["aggregated"]:
        return LISTS
    if parts[:1] == ["global"]:
        parts = parts[1:]
    elif parts[:1] in (["zones"], ["regions"]) and len(parts) >= 3:
        parts = parts[2:]
    return LISTS if len(parts) % 2 == 1 else READS


Outcome = tuple[str, str, OpFailure | None]
"""What a mutation did: target link, target id, and the failure its operation reports, if any."""


@dataclass
class State:
    """All resources. Published resource dicts are never changed in place: a change stores a new
    dict, so a response being serialised outside the lock never sees a half-made change."""

    networks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    firewalls: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    instances: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    members: dict[tuple[str, str, str], dict[str, None]] = field(default_factory=dict)
    """(project, zone, group) → instance names in the group, in the order they were added."""
    groups_of: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    """(project, zone, instance) → names of the groups it belongs to."""
    backend_services: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    network_users: dict[tuple[str, str], int] = field(default_factory=dict)
    addresses: dict[tuple[str, str, str], int] = field(default_factory=dict)
    subnetworks: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    """(project, region) → custom-mode subnetworks by name (`gameday.lab.gcp.subnetworks`)."""
    """(project, network, region) → how many addresses were handed out."""


class ComputeCore(Emulator):
    """The plumbing of the Compute Engine emulator; the API modules add the routes."""

    name = "gcp-compute"
    rate_limits: ClassVar[dict[str, Bucket]] = {
        category: Bucket(burst=1500, refill=25) for category in _QUOTA}

    def __init__(self, host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
                 keyfile: str | None = None, link_base: str = GOOGLE_BASE):
        super().__init__(host, port, certfile, keyfile)
        self.link_base = link_base.rstrip("/")
        self.power_seconds = POWER_SECONDS
        """Seconds a power operation takes; its instance shows the transitional status meanwhile."""
        self.polls_hurry = True
        """Whether reading a power operation finishes it early (two `get`s, or one `wait`), as
        every operation of the emulator does; False gives Compute Engine's timing: RUNNING
        until `power_seconds` have passed, however it is read."""
        self.state = State()
        self._ids = itertools.count(1)
        self.operations = OperationStore(self.link, self.next_id)
        self.register()

    def register(self) -> None:
        """Add every route; the assembled emulator calls each API module's `register_*`."""

    def reset(self) -> None:
        self.state = State()
        self.operations = OperationStore(self.link, self.next_id)
        self.power_seconds = POWER_SECONDS
        self.polls_hurry = True
        super().reset()

    def handle(self, request: Request) -> Response:
        """Settle what time has finished (an instance's stop lands whether or not anyone polls
        it), and hold a `wait` on an operation that takes time, outside the lock, until it is
        DONE or for `WAIT_BLOCK` seconds, before answering it."""
        with self.lock:
            self.operations.settle()
            found = _WAIT_PATH.match(request.path) if request.method == "POST" else None
            pause = (self.operations.remaining(found["project"], found["scope"], found["name"])
                     if found else 0.0)
        if pause:
            time.sleep(min(pause, WAIT_BLOCK))
            with self.lock:
                self.operations.settle()
        return super().handle(request)

    def error_body(self, error: ApiError) -> Any:
        reason = _BASE_REASONS.get(error.code, error.code)
        return {"error": {
            "code": error.status,
            "message": error.message,
            "errors": [{"message": error.message, "domain": _DOMAINS.get(reason, "global"),
                        "reason": reason}],
            "status": _STATUSES.get(error.status, "UNKNOWN"),
        }}

    def fault_key(self, request: Request) -> str:
        """`METHOD /compute/v1/projects/...`, so a rule can match a method, a path or both."""
        return f"{request.method} {request.path}"

    def rate_call(self, request: Request) -> RateCall | None:
        found = _PROJECT_PATH.match(request.path)
        if not found:
            return None
        category = rate_category(request.method, found.group("rest") or "")
        return RateCall(category, (found.group("project"),), category == MUTATIONS)

    def throttled_response(self, request: Request, decision: Decision) -> Response:
        """403 `rateLimitExceeded` in domain `usageLimits` (what Compute Engine documents; the
        client raises `Forbidden`), or with `gce_status` 429 `RESOURCE_EXHAUSTED`
        (`TooManyRequests`); both carry an `ErrorInfo` detail `RATE_LIMIT_EXCEEDED`."""
        assert decision.call is not None
        status = self.limits.config.gce_status
        metric, limit = _QUOTA[decision.call.category]
        bucket = self.limits.bucket(decision.call.category)
        project = decision.call.scope[0]
        message = (f"Quota exceeded for quota metric '{metric}' and limit '{metric} per minute' "
                   f"of service 'compute.googleapis.com' for consumer 'project:{project}'.")
        body = {"error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "usageLimits", "reason": "rateLimitExceeded"}],
            "status": "PERMISSION_DENIED" if status == 403 else "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                         "metadata": {"service": "compute.googleapis.com",
                                      "consumer": f"projects/{project}",
                                      "quota_limit": limit,
                                      "quota_limit_value": str(int(bucket.burst) if bucket else 0)}}],
        }}
        return Response(status, body)

    # --- links, ids, fingerprints ----------------------------------------------------------

    def link(self, path: str) -> str:
        return f"{self.link_base}/{path}"

    def next_id(self) -> str:
        return str(3_000_000_000_000_000_000 + next(self._ids) * 7919)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"fingerprint:{next(self._ids)}".encode()).digest()
        return base64.b64encode(digest[:8]).decode()

    def resolve(self, reference: str | None, kind: str, project: str,
                scope: str = "global") -> tuple[str, str, str]:
        """(project, scope, name) of a resource given as URL, partial path or bare name."""
        text = (reference or "").strip()
        found = re.search(rf"(?:^|/)projects/([^/]+)/(global|zones/[^/]+|regions/[^/]+)/"
                          rf"{kind}/([^/]+)$", text)
        if found:
            return found.group(1), found.group(2), found.group(3)
        found = re.fullmatch(rf"(global|zones/[^/]+|regions/[^/]+)/{kind}/([^/]+)", text)
        if found:
            return project, found.group(1), found.group(2)
        if _NAME_RE.fullmatch(text):
            return project, scope, text
        raise ApiError(400, "invalid", f"Invalid value for field '{kind}': '{reference}'.")

    # --- validation ------------------------------------------------------------------------

    def zone(self, request: Request) -> str:
        zone = request.params["zone"]
        if zone not in ZONES:
            raise ApiError(404, "notFound", f"The resource 'projects/{request.params['project']}"
                                            f"/zones/{zone}' was not found")
        return zone

    def region(self, request: Request) -> str:
        region = request.params["region"]
        if region not in REGIONS:
            raise ApiError(404, "notFound", f"The resource 'projects/{request.params['project']}"
                                            f"/regions/{region}' was not found")
        return region

    @staticmethod
    def valid_name(body: dict[str, Any], what: str) -> str:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.name': "
                                           f"'{name}'. Must be a match of regex "
                                           f"'(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)' ({what})")
        return name

    @staticmethod
    def body(request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "the request body must be a JSON object")
        return body

    @staticmethod
    def not_found(path: str) -> ApiError:
        return ApiError(404, "notFound", f"The resource '{path}' was not found")

    @staticmethod
    def same_fingerprint(given: object, current: str) -> bool:
        """Fingerprints are base64 bytes; clients may send them URL-safe (gcloud does)."""
        if not isinstance(given, str):
            return False
        return given.replace("-", "+").replace("_", "/") == current.replace("-", "+").replace("_", "/")

    @staticmethod
    def stale(what: str) -> ApiError:
        return ApiError(412, "conditionNotMet",
                        f"Supplied fingerprint does not match current {what} fingerprint.")

    # --- mutations -------------------------------------------------------------------------

    def mutate(self, request: Request, scope: str, op_type: str,
               apply: Callable[[], Outcome], on_done: Callable[[], None] | None = None,
               seconds: Callable[[], float | None] | None = None) -> Response:
        """Run `apply` once per `requestId` and answer with the Operation that records it.

        `apply` raises `ApiError` for what fails synchronously (409, 412, 400, 404 of the target)
        and returns an `OpFailure` for what the operation reports as failed; `on_done` runs when
        the operation is DONE (not when it failed or replays a `requestId`); `seconds`, asked
        after `apply`, is how long the operation takes (None: no time of its own).
        """
        project = request.params["project"]
        request_id = request.arg("requestId")
        previous = self.operations.by_request(project, request_id)
        if previous is not None:
            return Response(200, previous)
        target_link, target_id, failure = apply()
        return Response(200, self.operations.create(
            project, scope, op_type, target_link, target_id, failure, request_id,
            None if failure else on_done, seconds() if seconds and not failure else None,
            hurried=self.polls_hurry))

    def use_network(self, project: str, name: str, delta: int) -> None:
        key = (project, name)
        self.state.network_users[key] = self.state.network_users.get(key, 0) + delta


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch (lists replace, null deletes) into a copy of `target`."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged
