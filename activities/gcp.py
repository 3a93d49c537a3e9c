"""GCP: the zone blackhole and the region evacuation (contract §4) with google-cloud-compute.

A blackholed instance carries a network tag of the run and step; two priority-0 firewall rules per
network (ingress and egress, deny all) target that tag. The rules exist before any instance is
tagged, and restore removes only that one tag, so tags that others add or remove meanwhile stay.
Names of rules and tag derive from (run id, step id, network), never at random, and each rule's
description names the run and the step for `gameday sweep`.

An evacuated region has `capacityScaler` 0 on every backend of the named global backend services
whose group lies in it; restore puts each backend's own value back.

Every mutation is a `*_unary` call whose operation is polled through operations clients built
with the same options (never `.result()`, which polls Google itself). SDK retries are off:
Temporal owns retries, so throttling and 5xx become retryable `CloudError`s.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import TransportError
from google.cloud import compute_v1
from pydantic import BaseModel
from temporalio import activity

from activities.base import (
    beat,
    check_guardrails,
    cloud_span,
    fan_out,
    parallel_calls,
    progress,
    restore_errors,
    temporal_errors,
)
from activities.throttle import BucketKey, Throttle, paced
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
from gameday.runbook import GcpRegionTarget, GcpRegionTraffic, GcpZoneTarget
from gameday.sweep import Leftover, SweepScope

ENDPOINT_VARIABLE = "GAMEDAY_GCP_ENDPOINT"
CALL_TIMEOUT = 30.0
FINGERPRINT_ATTEMPTS = 5
OPERATION_DEADLINE = 600.0
MAX_NAME = 63
TAG_PREFIX = "gameday-"
RULE_PRIORITY = 0
DESCRIPTION_PREFIX = "gameday fault"
REQUEST_NAMESPACE = uuid.UUID("6f0c3a5e-5d1b-4f55-9a7e-1c0d2b6f9e41")
THROTTLED_RETRY_AFTER = 1.0

_NAME = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_NETWORK = re.compile(r"(?:^|/)projects/(?P<project>[^/]+)/global/networks/(?P<name>[^/]+)$")
_GROUP_LOCATION = re.compile(r"(?:^|/)(?P<kind>zones|regions|global)(?:/(?P<where>[^/]+))?/"
                             r"[^/]+/[^/]+$")
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


@functools.lru_cache(maxsize=4)
def _compute(endpoint: str | None) -> Compute:
    options: dict[str, Any] = {}
    if endpoint:
        options = {"client_options": ClientOptions(api_endpoint=endpoint),
                   "credentials": AnonymousCredentials()}
    return Compute(
        zones=compute_v1.ZonesClient(**options),
        instances=compute_v1.InstancesClient(**options),
        firewalls=compute_v1.FirewallsClient(**options),
        backend_services=compute_v1.BackendServicesClient(**options),
        global_operations=compute_v1.GlobalOperationsClient(**options),
        zone_operations=compute_v1.ZoneOperationsClient(**options),
    )


def compute_clients() -> Compute:
    """Clients for `GAMEDAY_GCP_ENDPOINT` with anonymous credentials when it is set, else for
    Google with Application Default Credentials."""
    return _compute(os.environ.get(ENDPOINT_VARIABLE) or None)


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
def _translated(doing: str) -> Iterator[None]:
    """Raise any SDK failure that escapes the block as a CloudError."""
    try:
        yield
    except _SDK_FAILURES as exc:
        raise _error(exc, doing) from exc


TRANSIENT_ATTEMPTS = 6


def _call(method: Callable[..., Any], *, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> Any:
    """One SDK call, the SDK's own retries off, paced by the project's token bucket: a throttled
    call waits and is made again for as long as the bucket makes progress. Another transient
    failure (5xx, no answer) is tried again here a few times, heartbeating between, so that one
    such failure does not throw away the progress of an activity over many instances; anything
    else, or a failure that persists, goes to Temporal's retries. Safe because gameday's
    mutations are idempotent (`requestId`) or fingerprint-guarded, and callers treat 409, 404
    and 412 as they must."""
    bucket = bucket_of(method, kwargs)
    for attempt in range(TRANSIENT_ATTEMPTS):
        beat()
        try:
            return paced(bucket, lambda: method(**kwargs, retry=None, timeout=timeout), throttle_of)
        except _SDK_FAILURES as exc:
            error = _error(exc, "a call")
            stalled = throttle_of(exc) is not None  # `paced` waited as long as it may
            if stalled or not error.retryable or attempt == TRANSIENT_ATTEMPTS - 1:
                raise
            if activity.in_activity():
                activity.heartbeat({"retrying": error.code or "transient", "attempt": attempt + 1})
            time.sleep(min(error.retry_after or 0.2 * 2 ** attempt, 2.0))
    raise AssertionError("unreachable")


WAIT_SLICE = 5.0
"""The longest one `operations.wait` request may block: well inside the heartbeat timeout."""


def _mutate(compute: Compute, method: Callable[..., compute_v1.Operation], **kwargs: Any) -> None:
    """Start a `*_unary` mutation and wait for its operation with `operations.wait` (which
    returns when it is DONE) in slices of `WAIT_SLICE`, heartbeating between; raise its failure
    as the SDK would."""
    project = kwargs["project"] if "project" in kwargs else kwargs["request"].project
    operation = _call(method, **kwargs)
    deadline = time.monotonic() + OPERATION_DEADLINE
    while operation.status != _DONE:
        if time.monotonic() > deadline:
            raise CloudError(f"GCP operation {operation.name} on {operation.target_link} is not "
                             f"done after {OPERATION_DEADLINE:.0f}s", retryable=True)
        if activity.in_activity():
            activity.heartbeat({"waiting": operation.name})
        try:
            if operation.zone:
                operation = _call(compute.zone_operations.wait, timeout=WAIT_SLICE,
                                  project=project, zone=_last(operation.zone),
                                  operation=operation.name)
            else:
                operation = _call(compute.global_operations.wait, timeout=WAIT_SLICE,
                                  project=project, operation=operation.name)
        except (exceptions.DeadlineExceeded, requests.Timeout):
            continue  # the slice ended before the operation: ask again
    if operation.error.errors or operation.http_error_status_code:
        first = operation.error.errors[0] if operation.error.errors else None
        message = first.message if first else operation.http_error_message
        raise exceptions.from_http_status(operation.http_error_status_code or 500,
                                          f"{operation.operation_type} {operation.target_link}: "
                                          f"{message}")


def _last(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _trimmed(text: str, limit: int) -> str:
    return text[:limit].strip("-") or "x"


def blackhole_tag(run_id: str, step_id: str) -> str:
    """The network tag that marks a run's blackholed instances: a valid tag of ≤ 63 characters."""
    tag = f"{TAG_PREFIX}{_trimmed(step_id, 40)}-{_digest(run_id, step_id)[:12]}"
    assert _NAME.fullmatch(tag) and len(tag) <= MAX_NAME
    return tag


def deny_rule_name(run_id: str, step_id: str, network: str, direction: str) -> str:
    """The name of a run's deny rule in `network`: a valid firewall name of ≤ 63 characters."""
    suffix = "ingress" if direction == "INGRESS" else "egress"
    found = _NETWORK.search(network)
    canonical = f"projects/{found['project']}/global/networks/{found['name']}" if found else network
    name = (f"{TAG_PREFIX}{_trimmed(step_id, 20)}-{_trimmed(_last(network), 15)}-"
            f"{_digest(run_id, step_id, canonical)[:8]}-{suffix}")
    assert _NAME.fullmatch(name) and len(name) <= MAX_NAME
    return name


def rule_description(run_id: str, step_id: str) -> str:
    return f"{DESCRIPTION_PREFIX} run={run_id} step={step_id}"


# --- blackhole_zone -------------------------------------------------------------------------


class TaggedInstance(BaseModel):
    """An instance to be blackholed and its exact tags before (fingerprints are read live)."""

    name: str
    networks: list[str]
    tags: list[str]


class DenyRule(BaseModel):
    name: str
    network: str
    direction: Literal["INGRESS", "EGRESS"]


class BlackholeState(BaseModel):
    tag: str
    rules: list[DenyRule]
    instances: list[TaggedInstance]


def _label_filter(labels: dict[str, str]) -> str | None:
    if not labels:
        return None
    return " ".join(f'(labels.{key} = "{value}")' for key, value in sorted(labels.items()))


class GcpZoneBlackhole:
    """The zone blackhole's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The matching instances of the zone (or, for blackhole_region, of every zone of the
        region), each with its zone, networks and tags."""
        target = request.step.target
        assert isinstance(target, GcpZoneTarget | GcpRegionTarget)
        scope = Scope.of(target)
        where = target.zone if isinstance(target, GcpZoneTarget) else target.region
        with cloud_span(f"gcp.resolve_{request.step.action}", scope) as span, \
                _translated(f"listing instances in {where}"):
            check_guardrails(request.step.id, scope, request.guardrails, None)
            compute = self._clients()
            if isinstance(target, GcpZoneTarget):
                found = [(target.zone, i) for i in self._matching(compute, target,
                                                                  request.step.id)]
            else:
                found = self._matching_region(compute, target, request.step.id)
            if request.only_new:
                held = self._tags_of_run(compute, target.project, request.run_id)
                found = [(zone, i) for zone, i in found if not held & set(i.tags.items)]
            resources = [
                Resource(id=i.name, kind="instance", name=i.name, detail={
                    "zone": zone,
                    "networks": ",".join(_last(n.network) for n in i.network_interfaces),
                    "tags": ",".join(i.tags.items),
                })
                for zone, i in sorted(found, key=lambda pair: (pair[0], pair[1].name))
            ]
            span.set_attribute("gameday.resources", len(resources))
            return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                                resources=resources)

    @staticmethod
    def _tags_of_run(compute: Compute, project: str, run_id: str) -> set[str]:
        """The blackhole tags of every step of a run: those its deny rules target."""
        return {tag for rule in _call(compute.firewalls.list, project=project)
                if (parsed := parse_description(rule.description)) and parsed[0] == run_id
                for tag in rule.target_tags}

    @staticmethod
    def _listed(compute: Compute, project: str, zone: str, labels: dict[str, str],
                network: str | None) -> list[compute_v1.Instance]:
        found = list(_call(compute.instances.list, request=compute_v1.ListInstancesRequest(
            project=project, zone=zone, filter=_label_filter(labels))))
        if network:
            wanted = _last(network)
            found = [i for i in found if any(_last(n.network) == wanted
                                             for n in i.network_interfaces)]
        return found

    @staticmethod
    def _nothing(step_id: str, where: str, project: str, network: str | None,
                 labels: dict[str, str]) -> TargetNotFound:
        text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return TargetNotFound(
            f"step {step_id}: no instance in {where} of project {project}"
            + (f" in network {network}" if network else "")
            + (f" carries the labels {text}" if text else "")
        )

    def _matching(self, compute: Compute, target: GcpZoneTarget,
                  step_id: str) -> list[compute_v1.Instance]:
        try:
            _call(compute.zones.get, project=target.project, zone=target.zone)
        except exceptions.NotFound as exc:
            raise TargetNotFound(f"step {step_id}: zone {target.zone} does not exist in project "
                                 f"{target.project}") from exc
        found = self._listed(compute, target.project, target.zone, target.labels, target.network)
        if not found:
            raise self._nothing(step_id, target.zone, target.project, target.network,
                                target.labels)
        return found

    def region_zones(self, compute: Compute, project: str, region: str) -> list[str]:
        """The zones of a region, as the Zones API lists them for the project."""
        zones = _call(compute.zones.list, project=project)
        return sorted(z.name for z in zones if _last(z.region) == region)

    def _matching_region(self, compute: Compute, target: GcpRegionTarget,
                         step_id: str) -> list[tuple[str, compute_v1.Instance]]:
        """The matching instances of every zone of the region, each with its zone."""
        zones = self.region_zones(compute, target.project, target.region)
        if not zones:
            raise TargetNotFound(f"step {step_id}: region {target.region} has no zone in "
                                 f"project {target.project} (or does not exist)")
        found: list[tuple[str, compute_v1.Instance]] = []
        for zone in zones:
            found += [(zone, i) for i in self._listed(compute, target.project, zone,
                                                       target.labels, target.network)]
        if not found:
            raise self._nothing(step_id, f"any zone of {target.region} ({', '.join(zones)})",
                                target.project, target.network, target.labels)
        return found

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each instance's exact tags and name the tag and deny rules to be made."""
        resolved = request.resolved
        scope = resolved.scope
        assert scope.zone is not None
        with cloud_span("gcp.prepare_blackhole_zone", scope, len(resolved.resources)), \
                _translated(f"reading instances in {scope.zone}"):
            check_guardrails(resolved.step_id, scope, request.guardrails, len(resolved.resources))
            compute = self._clients()
            planned = {r.id for r in resolved.resources}
            listed = _call(compute.instances.list, project=scope.account, zone=scope.zone)
            instances: list[TaggedInstance] = []
            networks: set[str] = set()
            for instance in sorted((i for i in listed if i.name in planned), key=lambda i: i.name):
                links = sorted({n.network for n in instance.network_interfaces})
                for link in links:
                    found = _NETWORK.search(link)
                    if found is None or found["project"] != scope.account:
                        raise Refused(f"step {resolved.step_id}: instance {instance.name} uses "
                                      f"network {link} of another project; gameday makes "
                                      f"firewall rules only in project {scope.account}")
                networks.update(links)
                instances.append(TaggedInstance(name=instance.name, networks=links,
                                                tags=list(instance.tags.items)))
            if not instances:
                raise TargetNotFound(f"step {resolved.step_id}: none of the planned instances "
                                     f"exists any more in {scope.zone}")
            rules = [DenyRule(name=deny_rule_name(request.run_id, resolved.step_id, network,
                                                  direction), network=network, direction=direction)
                     for network in sorted(networks) for direction in ("INGRESS", "EGRESS")]
            state = BlackholeState(tag=blackhole_tag(request.run_id, resolved.step_id),
                                   rules=rules, instances=instances)
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="blackhole_zone", scope=scope, resources=len(instances),
                              state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Make the deny rules, then tag each instance; what is already so is left as it is."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = BlackholeState.model_validate(checkpoint.state)
        result = FaultResult()
        with cloud_span("gcp.apply_blackhole_zone", scope, checkpoint.resources), \
                _translated(f"blackholing {scope.zone}"):
            check_guardrails(checkpoint.step_id, scope, request.guardrails, checkpoint.resources)
            compute = self._clients()
            for rule in state.rules:
                self._create_rule(compute, checkpoint, state.tag, rule)
            known = self._tags_now(compute, scope)
            for member, outcome in fan_out(
                    state.instances,
                    lambda m: self._retag(compute, scope, m.name,
                                          lambda items: items if state.tag in items
                                          else [*items, state.tag], known.get(m.name)),
                    parallel_calls("gcp")):
                self._count(result, outcome, member.name, "was not blackholed")
            return result

    def _create_rule(self, compute: Compute, checkpoint: Checkpoint, tag: str,
                     rule: DenyRule) -> None:
        firewall = compute_v1.Firewall(
            name=rule.name, network=rule.network, direction=rule.direction,
            priority=RULE_PRIORITY, target_tags=[tag],
            denied=[compute_v1.Denied(I_p_protocol="all")],
            description=rule_description(checkpoint.run_id, checkpoint.step_id),
        )
        if rule.direction == "INGRESS":
            firewall.source_ranges = ["0.0.0.0/0"]
        else:
            firewall.destination_ranges = ["0.0.0.0/0"]
        request_id = str(uuid.uuid5(REQUEST_NAMESPACE,
                                    f"{checkpoint.run_id}\n{checkpoint.step_id}\n{rule.name}"))
        try:
            _mutate(compute, compute.firewalls.insert_unary,
                    request=compute_v1.InsertFirewallRequest(
                        project=checkpoint.scope.account, firewall_resource=firewall,
                        request_id=request_id))
        except exceptions.Conflict:
            pass

    @staticmethod
    def _tags_now(compute: Compute, scope: Scope) -> dict[str, compute_v1.Tags]:
        """Every instance's tags (with fingerprint) in the zone, read in one listing: the first
        attempt of each retag needs no read of its own."""
        listed = _call(compute.instances.list, request=compute_v1.ListInstancesRequest(
            project=scope.account, zone=scope.zone, max_results=500))
        return {i.name: i.tags for i in listed}

    def _retag(self, compute: Compute, scope: Scope, name: str,
               change: Callable[[list[str]], list[str]],
               known: compute_v1.Tags | None = None) -> Literal["changed", "unchanged", "gone"]:
        """Set an instance's tags to `change(current tags)`, starting from `known` tags when
        given, re-reading on a stale fingerprint."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            if known is None:
                try:
                    known = _call(compute.instances.get, project=scope.account, zone=scope.zone,
                                  instance=name).tags
                except exceptions.NotFound:
                    return "gone"
            current = list(known.items)
            wanted = change(current)
            if wanted == current:
                return "unchanged"
            try:
                tags = compute_v1.Tags(items=wanted, fingerprint=known.fingerprint)
                _mutate(compute, compute.instances.set_tags_unary,
                        project=scope.account, zone=scope.zone, instance=name, tags_resource=tags)
            except exceptions.PreconditionFailed:
                known = None
                continue
            except exceptions.NotFound:
                return "gone"
            return "changed"
        raise CloudError(f"the tags of instance {name} kept changing under gameday "
                         f"({FINGERPRINT_ATTEMPTS} stale fingerprints in a row)", retryable=True)

    @staticmethod
    def _count(result: FaultResult, outcome: str, name: str, gone: str) -> None:
        if outcome == "changed":
            result.changed += 1
        elif outcome == "unchanged":
            result.unchanged += 1
        else:
            result.notes.append(f"instance {name} no longer exists; it {gone}")

    def restore(self, request: FaultRequest) -> FaultResult:
        """Remove only gameday's tag from each instance, then delete the deny rules. Safe to
        repeat; a gone instance or rule is already restored."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        result = FaultResult()
        with cloud_span("gcp.restore_blackhole_zone", scope, checkpoint.resources), \
                _translated(f"restoring {scope.zone}"):
            compute = self._clients()
            known = self._tags_now(compute, scope)  # first, so the restore reaches GCP at once
            state = BlackholeState.model_validate(checkpoint.state)
            result.unchanged += sum(1 for m in state.instances if state.tag in m.tags)
            for member, outcome in fan_out(
                    [m for m in state.instances if state.tag not in m.tags],
                    lambda m: self._retag(compute, scope, m.name,
                                          lambda items: [t for t in items if t != state.tag],
                                          known.get(m.name)),
                    parallel_calls("gcp")):
                self._count(result, outcome, member.name, "has nothing to restore")
            for rule in state.rules:
                try:
                    _mutate(compute, compute.firewalls.delete_unary,
                            project=scope.account, firewall=rule.name)
                except exceptions.NotFound:
                    pass
            return result


# --- the sweeper ----------------------------------------------------------------------------

UNKNOWN_RUN = "(unknown)"
"""The run of a gameday tag no deny rule names any more: unrecoverable, so never `running`."""

_DESCRIPTION = re.compile(re.escape(DESCRIPTION_PREFIX) + r" run=(?P<run>.+) step=(?P<step>\S*)$")
_BLACKHOLE_TAG = re.compile(re.escape(TAG_PREFIX) + r"(?P<step>[a-z0-9-]*)-[0-9a-f]{12}")


def parse_description(description: str) -> tuple[str, str] | None:
    """(run id, step id) of a gameday deny rule's description; None for any other rule."""
    found = _DESCRIPTION.fullmatch(description or "")
    return (found["run"], found["step"]) if found else None


class GcpSweeper(GcpZoneBlackhole):
    """Finds gameday's deny rules (by name and description) and blackhole tags in each project,
    and undoes each from what the project itself shows: a tag is mapped to its run through the
    rules that target it."""

    def find(self, scope: SweepScope) -> list[Leftover]:
        compute = self._clients()
        leftovers: list[Leftover] = []
        for project in scope.gcp_projects:
            with _translated(f"looking for gameday artifacts in project {project}"):
                tagged = self._tagged(compute, project)
                rules = [(rule, parsed) for rule in _call(compute.firewalls.list, project=project)
                         if rule.name.startswith(TAG_PREFIX)
                         and (parsed := parse_description(rule.description)) is not None]
            owner: dict[str, tuple[str, str]] = {}
            for rule, parsed in rules:
                for tag in rule.target_tags:
                    owner.setdefault(tag, parsed)
            holding: dict[str, int] = {}
            for zone, name, tag in tagged:
                if tag not in owner and not _BLACKHOLE_TAG.fullmatch(tag):
                    continue
                holding[tag] = holding.get(tag, 0) + 1
                found = _BLACKHOLE_TAG.fullmatch(tag)
                run_id, step_id = owner.get(tag, (UNKNOWN_RUN, found["step"] if found else ""))
                leftovers.append(Leftover(
                    cloud="gcp", kind="instance-tag", id=f"{name}/{tag}", run_id=run_id,
                    step_id=step_id, location=zone,
                    detail={"project": project, "zone": zone, "instance": name, "tag": tag,
                            "tag_owner": "deny rule" if tag in owner else "none found"},
                ))
            for rule, (run_id, step_id) in rules:
                leftovers.append(Leftover(
                    cloud="gcp", kind="firewall-rule", id=rule.name, run_id=run_id,
                    step_id=step_id, location=project,
                    detail={"project": project, "network": _last(rule.network),
                            "direction": rule.direction,
                            "target_tags": ",".join(rule.target_tags),
                            "instances_tagged": str(sum(holding.get(t, 0)
                                                        for t in rule.target_tags))},
                ))
        return leftovers

    def _tagged(self, compute: Compute, project: str) -> list[tuple[str, str, str]]:
        """(zone, instance, tag) for every `gameday-` network tag of the project's instances."""
        found: list[tuple[str, str, str]] = []
        listed = _call(compute.instances.aggregated_list,
                       request=compute_v1.AggregatedListInstancesRequest(project=project))
        for where, scoped in listed:
            zone = _last(where)
            for instance in scoped.instances:
                found += [(zone, instance.name, tag) for tag in instance.tags.items
                          if tag.startswith(TAG_PREFIX)]
        return sorted(found)

    def sweep(self, leftover: Leftover) -> FaultResult:
        project = leftover.detail.get("project") or leftover.location
        compute = self._clients()
        if leftover.kind == "firewall-rule":
            with _translated(f"deleting firewall rule {leftover.id}"):
                return self._delete_rule(compute, project, leftover)
        if leftover.kind == "instance-tag":
            zone, name, tag = (leftover.detail["zone"], leftover.detail["instance"],
                               leftover.detail["tag"])
            scope = Scope(cloud="gcp", account=project, region=zone.rsplit("-", 1)[0], zone=zone)
            result = FaultResult()
            with _translated(f"removing tag {tag} from instance {name}"):
                outcome = self._retag(compute, scope, name,
                                      lambda items: [t for t in items if t != tag])
            self._count(result, outcome, name, "has nothing to restore")
            progress(1, 1)
            return result
        raise UserError(f"gcp has no leftover of kind {leftover.kind}")

    @staticmethod
    def _delete_rule(compute: Compute, project: str, leftover: Leftover) -> FaultResult:
        try:
            rule = _call(compute.firewalls.get, project=project, firewall=leftover.id)
        except exceptions.NotFound:
            return FaultResult(notes=[f"firewall rule {leftover.id} is already gone"])
        parsed = parse_description(rule.description)
        if parsed is None or parsed[0] != leftover.run_id:
            return FaultResult(notes=[f"firewall rule {leftover.id} is no longer gameday's rule "
                                      f"of run {leftover.run_id}; left alone"])
        try:
            _mutate(compute, compute.firewalls.delete_unary, project=project,
                    firewall=leftover.id)
        except exceptions.NotFound:
            return FaultResult(notes=[f"firewall rule {leftover.id} is already gone"])
        progress(1, 1)
        return FaultResult(changed=1)


# --- evacuate_region ------------------------------------------------------------------------


class BackendCapacity(BaseModel):
    """A backend (by group URL) and its capacityScaler before the evacuation."""

    group: str
    capacity_scaler: float


class ServiceCapacity(BaseModel):
    service: str
    backends: list[BackendCapacity]


class EvacuationState(BaseModel):
    services: list[ServiceCapacity]


def group_region(group: str) -> str | None:
    """The region of a backend's group URL (zonal or regional); None for a global group."""
    found = _GROUP_LOCATION.search(group)
    if found is None or found["kind"] == "global" or not found["where"]:
        return None
    where = found["where"]
    return where.rsplit("-", 1)[0] if found["kind"] == "zones" else where


def _scaler(backend: compute_v1.Backend) -> float:
    """A backend's capacityScaler; Compute Engine's default 1.0 when the field is absent."""
    return round(backend.capacity_scaler, 6) if "capacity_scaler" in backend else 1.0


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


class GcpRegionEvacuation:
    """The region evacuation's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    def _service(self, compute: Compute, project: str, name: str,
                 step_id: str) -> compute_v1.BackendService:
        try:
            return _call(compute.backend_services.get, project=project, backend_service=name)
        except exceptions.NotFound as exc:
            raise TargetNotFound(f"step {step_id}: backend service {name} does not exist in "
                                 f"project {project}") from exc

    @staticmethod
    def _refuse_without_capacity(step_id: str, service: compute_v1.BackendService, region: str,
                                 scalers: dict[str, float]) -> None:
        """Refuse an evacuation that would leave a service no capacity outside the region."""
        outside = [b for b in service.backends if group_region(b.group) != region
                   and scalers.get(b.group, _scaler(b)) > 0]
        if not outside:
            raise Refused(f"step {step_id}: evacuating {region} would leave backend service "
                          f"{service.name} no capacity: no backend outside {region} has "
                          "capacityScaler > 0")

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, GcpRegionTraffic)
        scope = Scope.of(target)
        with cloud_span("gcp.resolve_evacuate_region", scope) as span, \
                _translated("reading backend services"):
            check_guardrails(request.step.id, scope, request.guardrails, None)
            compute = self._clients()
            resources: list[Resource] = []
            for name in target.backend_services:
                service = self._service(compute, target.project, name, request.step.id)
                inside = [b for b in service.backends if group_region(b.group) == target.region]
                if inside:
                    self._refuse_without_capacity(request.step.id, service, target.region, {})
                resources += [
                    Resource(id=f"{name}/{b.group.split('/projects/', 1)[-1]}", kind="backend",
                             name=_last(b.group), detail={
                                 "backend_service": name, "group": b.group,
                                 "capacity_scaler": str(_scaler(b))})
                    for b in inside
                ]
            if not resources:
                raise TargetNotFound(f"step {request.step.id}: no backend of "
                                     f"{', '.join(target.backend_services)} has its group in "
                                     f"{target.region}")
            span.set_attribute("gameday.resources", len(resources))
            return ResolvedStep(step_id=request.step.id, action="evacuate_region", scope=scope,
                                resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each in-region backend's capacityScaler as it is now."""
        resolved = request.resolved
        scope = resolved.scope
        with cloud_span("gcp.prepare_evacuate_region", scope, len(resolved.resources)), \
                _translated("reading backend services"):
            check_guardrails(resolved.step_id, scope, request.guardrails, len(resolved.resources))
            compute = self._clients()
            services: list[ServiceCapacity] = []
            for name in sorted({r.detail["backend_service"] for r in resolved.resources}):
                service = self._service(compute, scope.account, name, resolved.step_id)
                inside = [b for b in service.backends if group_region(b.group) == scope.region]
                if not inside:
                    continue
                self._refuse_without_capacity(resolved.step_id, service, scope.region, {})
                services.append(ServiceCapacity(service=name, backends=[
                    BackendCapacity(group=b.group, capacity_scaler=_scaler(b)) for b in inside]))
            count = sum(len(s.backends) for s in services)
            if not count:
                raise TargetNotFound(f"step {resolved.step_id}: no backend has its group in "
                                     f"{scope.region} any more")
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="evacuate_region", scope=scope, resources=count,
                              state=EvacuationState(services=services).model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        """Set capacityScaler 0 on each recorded backend, still refusing to drain a service."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        result = FaultResult()
        with cloud_span("gcp.apply_evacuate_region", scope, checkpoint.resources), \
                _translated(f"evacuating {scope.region}"):
            check_guardrails(checkpoint.step_id, scope, request.guardrails, checkpoint.resources)
            compute = self._clients()
            for done, entry in enumerate(state.services, start=1):
                wanted = {b.group: 0.0 for b in entry.backends}
                self._set_scalers(compute, scope, checkpoint.step_id, entry.service, wanted,
                                  result, check_capacity=True)
                progress(done, len(state.services))
            return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put each backend's own capacityScaler back. Safe to repeat; a gone backend is noted."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = EvacuationState.model_validate(checkpoint.state)
        result = FaultResult()
        with cloud_span("gcp.restore_evacuate_region", scope, checkpoint.resources), \
                _translated(f"failing back to {scope.region}"):
            compute = self._clients()
            for done, entry in enumerate(state.services, start=1):
                wanted = {b.group: b.capacity_scaler for b in entry.backends}
                self._set_scalers(compute, scope, checkpoint.step_id, entry.service, wanted,
                                  result, check_capacity=False)
                progress(done, len(state.services))
            return result

    def _set_scalers(self, compute: Compute, scope: Scope, step_id: str, name: str,
                     wanted: dict[str, float], result: FaultResult, *,
                     check_capacity: bool) -> None:
        """Patch one service's backends to the wanted scalers, re-reading on a stale fingerprint."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            try:
                service = _call(compute.backend_services.get, project=scope.account,
                                backend_service=name)
            except exceptions.NotFound:
                result.notes.append(f"backend service {name} no longer exists; nothing to change")
                return
            present = {b.group for b in service.backends}
            missing = sorted(set(wanted) - present)
            changing = [b for b in service.backends
                        if b.group in wanted and not _same(_scaler(b), wanted[b.group])]
            if check_capacity and changing:
                self._refuse_without_capacity(step_id, service, scope.region, wanted)
            if not changing:
                break
            backends = []
            for backend in service.backends:
                copy = compute_v1.Backend(backend)
                if backend.group in wanted:
                    copy.capacity_scaler = wanted[backend.group]
                backends.append(copy)
            try:
                patch = compute_v1.BackendService(backends=backends,
                                                  fingerprint=service.fingerprint)
                _mutate(compute, compute.backend_services.patch_unary,
                        project=scope.account, backend_service=name,
                        backend_service_resource=patch)
            except exceptions.PreconditionFailed:
                continue
            break
        else:
            raise CloudError(f"backend service {name} kept changing under gameday "
                             f"({FINGERPRINT_ATTEMPTS} stale fingerprints in a row)",
                             retryable=True)
        result.changed += len(changing)
        result.unchanged += len(wanted) - len(changing) - len(missing)
        result.notes += [f"backend {_last(group)} is no longer in backend service {name}; "
                         "nothing to change" for group in missing]


# --- activities -----------------------------------------------------------------------------


class GcpActivities:
    """GCP activities, named `gcp.<verb>_<action>`; thin wrappers over the plain classes above."""

    def __init__(self, blackhole: GcpZoneBlackhole | None = None,
                 evacuation: GcpRegionEvacuation | None = None):
        self.blackhole = blackhole or GcpZoneBlackhole()
        self.evacuation = evacuation or GcpRegionEvacuation()
        self.sweeper = GcpSweeper()

    @activity.defn(name="gcp.resolve_blackhole_zone")
    @temporal_errors
    def resolve_blackhole_zone(self, request: StepRequest) -> ResolvedStep:
        return self.blackhole.resolve(request)

    @activity.defn(name="gcp.resolve_blackhole_region")
    @temporal_errors
    def resolve_blackhole_region(self, request: StepRequest) -> ResolvedStep:
        return self.blackhole.resolve(request)

    @activity.defn(name="gcp.prepare_blackhole_zone")
    @temporal_errors
    def prepare_blackhole_zone(self, request: PrepareRequest) -> Checkpoint:
        return self.blackhole.prepare(request)

    @activity.defn(name="gcp.apply_blackhole_zone")
    @temporal_errors
    def apply_blackhole_zone(self, request: FaultRequest) -> FaultResult:
        return self.blackhole.apply(request)

    @activity.defn(name="gcp.restore_blackhole_zone")
    @restore_errors
    def restore_blackhole_zone(self, request: FaultRequest) -> FaultResult:
        return self.blackhole.restore(request)

    @activity.defn(name="gcp.resolve_evacuate_region")
    @temporal_errors
    def resolve_evacuate_region(self, request: StepRequest) -> ResolvedStep:
        return self.evacuation.resolve(request)

    @activity.defn(name="gcp.prepare_evacuate_region")
    @temporal_errors
    def prepare_evacuate_region(self, request: PrepareRequest) -> Checkpoint:
        return self.evacuation.prepare(request)

    @activity.defn(name="gcp.apply_evacuate_region")
    @temporal_errors
    def apply_evacuate_region(self, request: FaultRequest) -> FaultResult:
        return self.evacuation.apply(request)

    @activity.defn(name="gcp.restore_evacuate_region")
    @restore_errors
    def restore_evacuate_region(self, request: FaultRequest) -> FaultResult:
        return self.evacuation.restore(request)

    @activity.defn(name="gcp.find_leftovers")
    @temporal_errors
    def find_leftovers(self, scope: SweepScope) -> list[Leftover]:
        return self.sweeper.find(scope)

    @activity.defn(name="gcp.sweep_leftover")
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
