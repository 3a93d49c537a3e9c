"""GCP zone blackhole (contract §4): every matching instance of the zone is cut off by the firewall.

Before: instance I carries network tags T; no gameday firewall rule exists.
After apply: two priority-0 firewall rules per network of the instances (ingress and egress, deny
all) target the run's tag G, and I carries T + [G]. The rules exist before any instance is
tagged.
After restore: I carries its tags without G (tags others added or removed meanwhile stay), and
the rules are deleted.

Names of rules and tag derive from (run id, step id, network), never at random, and each rule's
description names the run and the step (`rule_description`) for `gameday sweep`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from typing import Literal

from google.api_core import exceptions
from google.cloud import compute_v1
from pydantic import BaseModel

from activities.base import fan_out, parallel_calls
from activities.gcp.api import (
    FINGERPRINT_ATTEMPTS,
    Compute,
    call,
    compute_clients,
    last,
    mutate,
    translated,
)
from gameday.errors import CloudError, Refused, TargetNotFound
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
from gameday.targets import GcpRegionTarget, GcpZoneTarget

MAX_NAME = 63
TAG_PREFIX = "gameday-"
RULE_PRIORITY = 0
DESCRIPTION_PREFIX = "gameday fault"
REQUEST_NAMESPACE = uuid.UUID("6f0c3a5e-5d1b-4f55-9a7e-1c0d2b6f9e41")

_NAME = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_NETWORK = re.compile(r"(?:^|/)projects/(?P<project>[^/]+)/global/networks/(?P<name>[^/]+)$")


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
    name = (f"{TAG_PREFIX}{_trimmed(step_id, 20)}-{_trimmed(last(network), 15)}-"
            f"{_digest(run_id, step_id, canonical)[:8]}-{suffix}")
    assert _NAME.fullmatch(name) and len(name) <= MAX_NAME
    return name


def rule_description(run_id: str, step_id: str) -> str:
    return f"{DESCRIPTION_PREFIX} run={run_id} step={step_id}"


def insert_rule(compute: Compute, checkpoint: Checkpoint, firewall: compute_v1.Firewall) -> bool:
    """Insert one of the checkpoint's deny rules, under a request id derived from the run, step and
    rule, so that a retried insert is one insert; False when the rule already exists."""
    request_id = str(uuid.uuid5(REQUEST_NAMESPACE,
                                f"{checkpoint.run_id}\n{checkpoint.step_id}\n{firewall.name}"))
    try:
        mutate(compute, compute.firewalls.insert_unary, request=compute_v1.InsertFirewallRequest(
            project=checkpoint.scope.account, firewall_resource=firewall, request_id=request_id))
    except exceptions.Conflict:
        return False
    return True



_DESCRIPTION = re.compile(re.escape(DESCRIPTION_PREFIX) + r" run=(?P<run>.+) step=(?P<step>\S*)$")


def parse_description(description: str) -> tuple[str, str] | None:
    """(run id, step id) of a gameday deny rule's description; None for any other rule."""
    found = _DESCRIPTION.fullmatch(description or "")
    return (found["run"], found["step"]) if found else None



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

    State = BlackholeState

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The matching instances of the zone (or, for blackhole_region, of every zone of the
        region), each with its zone, networks and tags."""
        target = request.step.target
        assert isinstance(target, GcpZoneTarget | GcpRegionTarget)
        scope = Scope.of(target)
        where = target.zone if isinstance(target, GcpZoneTarget) else target.region
        with translated(f"listing instances in {where}"):
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
                    "networks": ",".join(last(n.network) for n in i.network_interfaces),
                    "tags": ",".join(i.tags.items),
                })
                for zone, i in sorted(found, key=lambda pair: (pair[0], pair[1].name))
            ]
            return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                                resources=resources)

    @staticmethod
    def _tags_of_run(compute: Compute, project: str, run_id: str) -> set[str]:
        """The blackhole tags of every step of a run: those its deny rules target."""
        return {tag for rule in call(compute.firewalls.list, project=project)
                if (parsed := parse_description(rule.description)) and parsed[0] == run_id
                for tag in rule.target_tags}

    @staticmethod
    def _listed(compute: Compute, project: str, zone: str, labels: dict[str, str],
                network: str | None) -> list[compute_v1.Instance]:
        found = list(call(compute.instances.list, request=compute_v1.ListInstancesRequest(
            project=project, zone=zone, filter=_label_filter(labels))))
        if network:
            wanted = last(network)
            found = [i for i in found if any(last(n.network) == wanted
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
            call(compute.zones.get, project=target.project, zone=target.zone)
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
        zones = call(compute.zones.list, project=project)
        return sorted(z.name for z in zones if last(z.region) == region)

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
        with translated(f"reading instances in {scope.zone}"):
            compute = self._clients()
            planned = {r.id for r in resolved.resources}
            listed = call(compute.instances.list, project=scope.account, zone=scope.zone)
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
        with translated(f"blackholing {scope.zone}"):
            compute = self._clients()
            for rule in state.rules:
                self._create_rule(compute, checkpoint, state.tag, rule)
            known = self._tags_now(compute, scope)
            for member, outcome in fan_out(
                    state.instances,
                    lambda m: self.retag(compute, scope, m.name,
                                          lambda items: items if state.tag in items
                                          else [*items, state.tag], known.get(m.name)),
                    parallel_calls("gcp")):
                self.count(result, outcome, member.name, "was not blackholed")
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
        insert_rule(compute, checkpoint, firewall)

    @staticmethod
    def _tags_now(compute: Compute, scope: Scope) -> dict[str, compute_v1.Tags]:
        """Every instance's tags (with fingerprint) in the zone, read in one listing: the first
        attempt of each retag needs no read of its own."""
        listed = call(compute.instances.list, request=compute_v1.ListInstancesRequest(
            project=scope.account, zone=scope.zone, max_results=500))
        return {i.name: i.tags for i in listed}

    def retag(self, compute: Compute, scope: Scope, name: str,
               change: Callable[[list[str]], list[str]],
               known: compute_v1.Tags | None = None) -> Literal["changed", "unchanged", "gone"]:
        """Set an instance's tags to `change(current tags)`, starting from `known` tags when
        given, re-reading on a stale fingerprint."""
        for _ in range(FINGERPRINT_ATTEMPTS):
            if known is None:
                try:
                    known = call(compute.instances.get, project=scope.account, zone=scope.zone,
                                  instance=name).tags
                except exceptions.NotFound:
                    return "gone"
            current = list(known.items)
            wanted = change(current)
            if wanted == current:
                return "unchanged"
            try:
                tags = compute_v1.Tags(items=wanted, fingerprint=known.fingerprint)
                mutate(compute, compute.instances.set_tags_unary,
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
    def count(result: FaultResult, outcome: str, name: str, gone: str) -> None:
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
        with translated(f"restoring {scope.zone}"):
            compute = self._clients()
            known = self._tags_now(compute, scope)  # first, so the restore reaches GCP at once
            state = BlackholeState.model_validate(checkpoint.state)
            result.unchanged += sum(1 for m in state.instances if state.tag in m.tags)
            for member, outcome in fan_out(
                    [m for m in state.instances if state.tag not in m.tags],
                    lambda m: self.retag(compute, scope, m.name,
                                          lambda items: [t for t in items if t != state.tag],
                                          known.get(m.name)),
                    parallel_calls("gcp")):
                self.count(result, outcome, member.name, "has nothing to restore")
            for rule in state.rules:
                try:
                    mutate(compute, compute.firewalls.delete_unary,
                            project=scope.account, firewall=rule.name)
                except exceptions.NotFound:
                    pass
            return result
