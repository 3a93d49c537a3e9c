"""GCP region partition (contract §10): the region's subnet ranges cut off from the peer regions'.

Before: network N has subnets in region R and in the peer regions P (primary and secondary
ranges); no gameday firewall rule exists for the step.
After apply: priority-0 deny-all firewall rules in N, INGRESS (sources = P's ranges, destinations
= R's ranges) and EGRESS (sources = R's ranges, destinations = P's ranges); a side with more than
256 ranges (GCE's limit per rule) is split over several rules.
After restore: the rules are deleted; no gameday firewall rule of the step remains.

Firewall rules carry no labels: each rule's name derives from (run id, step id, network,
direction, index) and its description names the run and the step (`blackhole.rule_description`),
so `gameday sweep` finds and deletes it as it does the zone blackhole's rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

from google.api_core import exceptions
from google.cloud import compute_v1
from pydantic import BaseModel

from activities.gcp.api import Compute, call, compute_clients, last, mutate, translated
from activities.gcp.blackhole import (
    _NAME,
    MAX_NAME,
    RULE_PRIORITY,
    TAG_PREFIX,
    _digest,
    _trimmed,
    insert_rule,
    parse_description,
    rule_description,
)
from gameday.errors import Refused, TargetNotFound
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
from gameday.targets import GcpPartitionTarget

MAX_RANGES = 256
"""GCE's limit on sourceRanges (and on destinationRanges) of one firewall rule."""

Direction = Literal["INGRESS", "EGRESS"]


class PartitionRule(BaseModel):
    name: str
    direction: Direction
    source_ranges: list[str]
    destination_ranges: list[str]


class PartitionState(BaseModel):
    network: str
    """The network's self link, as the subnets name it."""
    rules: list[PartitionRule]


def partition_rule_name(run_id: str, step_id: str, network: str, direction: Direction,
                        index: int) -> str:
    """The name of a run's partition rule: a valid firewall name of ≤ 63 characters."""
    suffix = "in" if direction == "INGRESS" else "eg"
    name = (f"{TAG_PREFIX}{_trimmed(step_id, 20)}-{_trimmed(last(network), 15)}-"
            f"{_digest(run_id, step_id, last(network), 'partition')[:8]}-{suffix}{index}")
    assert _NAME.fullmatch(name) and len(name) <= MAX_NAME
    return name


def _chunks(ranges: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ranges), MAX_RANGES):
        yield ranges[start:start + MAX_RANGES]


def _ranges(subnet: compute_v1.Subnetwork) -> list[str]:
    return [subnet.ip_cidr_range, *(r.ip_cidr_range for r in subnet.secondary_ip_ranges)]


def partition_rules(run_id: str, step_id: str, network: str, region_ranges: list[str],
                    peer_ranges: list[str]) -> list[PartitionRule]:
    """The deny rules that cut `region_ranges` off `peer_ranges`, both directions, ≤ 256 ranges
    on each side of a rule."""
    rules: list[PartitionRule] = []
    for direction in ("INGRESS", "EGRESS"):
        index = 0
        for mine in _chunks(sorted(region_ranges)):
            for theirs in _chunks(sorted(peer_ranges)):
                sources, destinations = (theirs, mine) if direction == "INGRESS" else (mine, theirs)
                rules.append(PartitionRule(
                    name=partition_rule_name(run_id, step_id, network, direction, index),
                    direction=direction, source_ranges=sources, destination_ranges=destinations))
                index += 1
    return rules


class GcpRegionPartition:
    """The region partition's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = PartitionState

    def __init__(self, clients: Callable[[], Compute] = compute_clients):
        self._clients = clients

    def _subnets(self, compute: Compute, target: GcpPartitionTarget,
                 step_id: str) -> tuple[str, list[tuple[str, compute_v1.Subnetwork]]]:
        """(network link, [(region, subnet)]) of the network's subnets in the region and peers;
        refused when the region or every peer region has none."""
        wanted = {target.region, *target.peer_regions}
        found: list[tuple[str, compute_v1.Subnetwork]] = []
        link = ""
        listed = call(compute.subnetworks.aggregated_list,
                      request=compute_v1.AggregatedListSubnetworksRequest(project=target.project))
        for scope, scoped in listed:
            region = last(scope)
            if region not in wanted:
                continue
            for subnet in scoped.subnetworks:
                if last(subnet.network) == target.network:
                    link = subnet.network
                    found.append((region, subnet))
        where = f"network {target.network} of project {target.project}"
        if not any(region == target.region for region, _ in found):
            raise TargetNotFound(f"step {step_id}: {where} has no subnet in {target.region}")
        if all(region == target.region for region, _ in found):
            raise TargetNotFound(f"step {step_id}: {where} has no subnet in any peer region "
                                 f"({', '.join(target.peer_regions)})")
        return link, sorted(found, key=lambda pair: (pair[0], pair[1].name))

    def _planned(self, compute: Compute, target: GcpPartitionTarget, run_id: str,
                 step_id: str) -> tuple[list[tuple[str, compute_v1.Subnetwork]], PartitionState]:
        link, subnets = self._subnets(compute, target, step_id)
        mine = [r for region, s in subnets if region == target.region for r in _ranges(s)]
        theirs = [r for region, s in subnets if region != target.region for r in _ranges(s)]
        rules = partition_rules(run_id, step_id, link, mine, theirs)
        return subnets, PartitionState(network=link, rules=rules)

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The network's subnets of the region and the peer regions (with their ranges), and the
        deny rules that would be made."""
        target = request.step.target
        assert isinstance(target, GcpPartitionTarget)
        with translated(f"listing subnets of network {target.network}"):
            subnets, state = self._planned(self._clients(), target, request.run_id,
                                           request.step.id)
        resources = [Resource(id=f"{region}/{s.name}", kind="subnetwork", name=s.name,
                              detail={"region": region, "network": s.network,
                                      "ranges": ",".join(_ranges(s)),
                                      "side": "region" if region == target.region else "peer"})
                     for region, s in subnets]
        resources += [Resource(id=rule.name, kind="firewall rule", name=rule.name,
                               detail={"direction": rule.direction,
                                       "sources": ",".join(rule.source_ranges),
                                       "destinations": ",".join(rule.destination_ranges)})
                      for rule in state.rules]
        return ResolvedStep(step_id=request.step.id, action=request.step.action,
                            scope=Scope.of(target), resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record the rules to be made from the subnets as they are now; refused when a rule of
        that name already exists for another run."""
        resolved = request.resolved
        scope = resolved.scope
        with translated(f"reading subnets for the partition of {scope.region}"):
            compute = self._clients()
            rule_names = {r.name for r in resolved.resources if r.kind == "firewall rule"}
            state = self._from_plan(resolved, request.run_id)
            for rule in call(compute.firewalls.list, project=scope.account):
                if rule.name in rule_names:
                    owner = parse_description(rule.description)
                    if owner is None or owner[0] != request.run_id:
                        raise Refused(f"step {resolved.step_id}: firewall rule {rule.name} "
                                      f"already exists and is not this run's")
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="partition_regions", scope=scope,
                              resources=len(state.rules), state=state.model_dump(mode="json"))

    @staticmethod
    def _from_plan(resolved: ResolvedStep, run_id: str) -> PartitionState:
        """The state of the rules `resolve` listed (the plan is what the operator approved)."""
        rules = [PartitionRule(name=r.id, direction=r.detail["direction"],
                               source_ranges=r.detail["sources"].split(","),
                               destination_ranges=r.detail["destinations"].split(","))
                 for r in resolved.resources if r.kind == "firewall rule"]
        if not rules:
            raise TargetNotFound(f"step {resolved.step_id}: the plan names no firewall rule")
        network = resolved.resources[0].detail.get("network", "")
        return PartitionState(network=network, rules=rules)

    def apply(self, request: FaultRequest) -> FaultResult:
        """Make each deny rule; one that already exists (this run's: `prepare` refused any other) is
        left as it is."""
        checkpoint = request.checkpoint
        state = PartitionState.model_validate(checkpoint.state)
        result = FaultResult()
        with translated(f"partitioning {checkpoint.scope.region}"):
            compute = self._clients()
            present = {r.name for r in call(compute.firewalls.list,
                                            project=checkpoint.scope.account)}
            for rule in state.rules:
                if rule.name in present:
                    result.unchanged += 1
                    continue
                firewall = compute_v1.Firewall(
                    name=rule.name, network=state.network, direction=rule.direction,
                    priority=RULE_PRIORITY, source_ranges=rule.source_ranges,
                    destination_ranges=rule.destination_ranges,
                    denied=[compute_v1.Denied(I_p_protocol="all")],
                    description=rule_description(checkpoint.run_id, checkpoint.step_id))
                if insert_rule(compute, checkpoint, firewall):
                    result.changed += 1
                else:
                    result.unchanged += 1
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Delete each deny rule of the checkpoint. Safe to repeat; a gone rule is restored."""
        checkpoint = request.checkpoint
        state = PartitionState.model_validate(checkpoint.state)
        result = FaultResult()
        with translated(f"restoring the partition of {checkpoint.scope.region}"):
            compute = self._clients()
            for rule in state.rules:
                try:
                    mutate(compute, compute.firewalls.delete_unary,
                           project=checkpoint.scope.account, firewall=rule.name)
                except exceptions.NotFound:
                    result.unchanged += 1
                    continue
                result.changed += 1
        return result
