"""Azure region partition (contract §10): the region's subnets cut off from VNets in the peer regions.

Before: the group's VNets in region R peer (`virtualNetworkPeerings`) with VNets in the peer
regions P; every subnet of those VNets in R is on an NSG, with its own rules.
After apply: each such NSG holds two more rules, `gameday-partition-in-<digest>` (Inbound, sources
= P's address spaces) and `gameday-partition-out-<digest>` (Outbound, destinations = P's address
spaces), both Deny, at a free priority below every existing rule of their direction (ARM evaluates
lower numbers first), and the NSG carries the tags `gameday-partition-run` / `-step`.
After restore: exactly those two rules are deleted and the two tags removed: every NSG's rules
exactly as before.

A subnet of R without an NSG is refused before any change, naming the subnet: gameday does not
attach an NSG of its own. The marks are not `gameday-run`, which the sweeper reads as "gameday
made this NSG, delete it": these NSGs are the customer's, only their gameday rules go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal

from azure.mgmt.network.models import SecurityRule, TagsObject
from pydantic import BaseModel

from activities.azure.api import (
    MAX_TAG_VALUE,
    MAX_TAGS,
    ArmClients,
    AzureConnection,
    find,
    id_parts,
    normalize_location,
    text,
    write,
)
from activities.base import progress
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
from gameday.sweep import Leftover
from gameday.targets import AzurePartitionTarget

TAG_PARTITION_RUN = "gameday-partition-run"
TAG_PARTITION_STEP = "gameday-partition-step"
MARKS = (TAG_PARTITION_RUN, TAG_PARTITION_STEP)
RULE_PREFIX = "gameday-partition-"
MIN_PRIORITY = 100
"""ARM's lowest (first evaluated) custom rule priority; 4096 the highest."""

Direction = Literal["Inbound", "Outbound"]
DIRECTIONS: tuple[Direction, ...] = ("Inbound", "Outbound")


class PartitionRule(BaseModel):
    name: str
    direction: Direction
    priority: int


class NsgRecord(BaseModel):
    """One NSG to change: the subnets on it, and the rules gameday adds to it."""

    id: str
    subnets: list[str]
    rules: list[PartitionRule]


class PartitionState(BaseModel):
    resource_group: str
    region: str
    peer_prefixes: list[str]
    nsgs: list[NsgRecord]


def rule_name(run_id: str, step_id: str, direction: Direction) -> str:
    """Deterministic per (run, step, direction), ARM's 80 characters at most."""
    digest = hashlib.sha256(f"{run_id}\0{step_id}".encode()).hexdigest()[:16]
    return f"{RULE_PREFIX}{'in' if direction == 'Inbound' else 'out'}-{digest}"


def free_priority(rules: list[SecurityRule], direction: Direction, ours: set[str]) -> int | None:
    """A priority below every existing rule of the direction (gameday's own aside), or None."""
    taken = [r.priority for r in rules if text(r.direction) == direction
             and (r.name or "") not in ours and r.priority is not None]
    lowest = min(taken, default=4097)
    return MIN_PRIORITY if lowest > MIN_PRIORITY else None


class AzureRegionPartition:
    """The region partition's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = PartitionState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    # --- reading ----------------------------------------------------------------------------

    def _peer_prefixes(self, arm: ArmClients, vnets: list[Any], peers: set[str]) -> list[str]:
        """The address spaces of the VNets in the peer regions that the region's VNets peer with."""
        prefixes: list[str] = []
        locations: dict[str, str] = {}
        for vnet in vnets:
            for peering in vnet.virtual_network_peerings or []:
                remote = peering.remote_virtual_network.id if peering.remote_virtual_network else ""
                if not remote:
                    continue
                if remote.lower() not in locations:
                    _, group, name = id_parts(remote)
                    found = find(f"reading VNet {name}",
                                  partial(arm.network.virtual_networks.get, group, name))
                    locations[remote.lower()] = normalize_location(found.location) if found else ""
                if locations[remote.lower()] not in peers:
                    continue
                space = peering.remote_address_space
                for prefix in (space.address_prefixes if space else None) or []:
                    if prefix not in prefixes:
                        prefixes.append(prefix)
        return prefixes

    def _plan(self, arm: ArmClients, step_id: str, run_id: str,
              target: AzurePartitionTarget) -> PartitionState:
        """What apply would do now: refuses a subnet without an NSG, an NSG held by another run,
        and an NSG without a free priority below its rules, before any change."""
        region = normalize_location(target.region)
        peers = {normalize_location(p) for p in target.peer_regions}
        listed = find(f"listing VNets of resource group {target.resource_group}",
                      lambda: list(arm.network.virtual_networks.list(target.resource_group)))
        if listed is None:
            raise TargetNotFound(f"step {step_id}: resource group {target.resource_group} does "
                                 f"not exist in subscription {target.subscription}")
        vnets = [v for v in listed if normalize_location(v.location) == region]
        prefixes = self._peer_prefixes(arm, vnets, peers)
        if not prefixes:
            raise TargetNotFound(
                f"step {step_id}: no VNet of resource group {target.resource_group} in "
                f"{target.region} peers with a VNet in {', '.join(target.peer_regions)}")
        subnets_of: dict[str, list[str]] = {}
        for vnet in vnets:
            for subnet in vnet.subnets or []:
                nsg = subnet.network_security_group.id if subnet.network_security_group else None
                if not nsg:
                    raise Refused(f"step {step_id}: subnet {subnet.id} has no NSG to hold "
                                  "gameday's deny rules; attach one first")
                subnets_of.setdefault(nsg.lower(), []).append(str(subnet.id))
        names = {d: rule_name(run_id, step_id, d) for d in DIRECTIONS}
        records: list[NsgRecord] = []
        for done, (key, subnets) in enumerate(sorted(subnets_of.items()), start=1):
            progress(done, len(subnets_of))
            _, group, name = id_parts(key)
            nsg = find(f"reading NSG {name}",
                        partial(arm.network.network_security_groups.get, group, name))
            if nsg is None:
                raise TargetNotFound(f"step {step_id}: NSG {key} of subnet {subnets[0]} does "
                                     "not exist")
            tags = nsg.tags or {}
            holder = tags.get(TAG_PARTITION_RUN)
            if holder is not None and (holder != run_id
                                       or tags.get(TAG_PARTITION_STEP) != step_id):
                raise Refused(f"NSG {nsg.id} is already partitioned by gameday run {holder} "
                              f"(step {tags.get(TAG_PARTITION_STEP, '?')})")
            if holder is None and len(tags) + len(MARKS) > MAX_TAGS:
                raise Refused(f"NSG {nsg.id} already carries {len(tags)} tags; ARM's limit of "
                              f"{MAX_TAGS} leaves no room for gameday's two marks")
            rules = list(nsg.security_rules or [])
            existing = {(r.name or ""): r for r in rules}
            planned: list[PartitionRule] = []
            for direction in DIRECTIONS:
                mine = existing.get(names[direction])
                priority = (mine.priority if mine is not None and mine.priority
                            else free_priority(rules, direction, set(names.values())))
                if priority is None:
                    raise Refused(f"NSG {nsg.id} has a {direction.lower()} rule at priority "
                                  f"{MIN_PRIORITY}, ARM's lowest: no free priority is left "
                                  "below its rules for gameday's deny rule")
                planned.append(PartitionRule(name=names[direction], direction=direction,
                                             priority=priority))
            records.append(NsgRecord(id=str(nsg.id), subnets=sorted(subnets), rules=planned))
        return PartitionState(resource_group=target.resource_group, region=region,
                              peer_prefixes=prefixes, nsgs=records)

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """Every NSG of the region's subnets, with its subnets, the peer prefixes it will deny
        and the priorities of gameday's rules (read-only)."""
        target = request.step.target
        assert isinstance(target, AzurePartitionTarget)
        with self.connection.clients(target.subscription) as arm:
            state = self._plan(arm, request.step.id, request.run_id, target)
        resources = [Resource(
            id=record.id, kind="network_security_group", name=id_parts(record.id)[2],
            detail={"subnets": ",".join(record.subnets),
                    "deny": ",".join(state.peer_prefixes),
                    "priorities": ",".join(f"{r.direction}={r.priority}" for r in record.rules)},
        ) for record in state.nsgs]
        return ResolvedStep(step_id=request.step.id, action=request.step.action,
                            scope=Scope.of(target), resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each NSG, the peer prefixes and the rules to add; refuse before any change."""
        target = request.step.target
        assert isinstance(target, AzurePartitionTarget)
        resolved = request.resolved
        if len(request.run_id) > MAX_TAG_VALUE or len(resolved.step_id) > MAX_TAG_VALUE:
            raise Refused(f"run or step id is longer than {MAX_TAG_VALUE} characters, ARM's tag "
                          "limit")
        with self.connection.clients(target.subscription) as arm:
            state = self._plan(arm, resolved.step_id, request.run_id, target)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="partition_regions", scope=resolved.scope,
                          resources=len(state.nsgs), state=state.model_dump(mode="json"))

    # --- changing ---------------------------------------------------------------------------

    def apply(self, request: FaultRequest) -> FaultResult:
        """Mark each NSG, then add its two deny rules; a rule already so is left alone."""
        checkpoint = request.checkpoint
        state = PartitionState.model_validate(checkpoint.state)
        result = FaultResult()
        marks = {TAG_PARTITION_RUN: checkpoint.run_id, TAG_PARTITION_STEP: checkpoint.step_id}
        with self.connection.clients(checkpoint.scope.account) as arm:
            for done, record in enumerate(state.nsgs, start=1):
                progress(done, len(state.nsgs))
                if not set_marks(arm, record.id, marks):
                    result.notes.append(f"NSG {record.id} no longer exists; skipped")
                    continue
                for rule in record.rules:
                    changed = self._ensure_rule(arm, record.id, rule, state.peer_prefixes)
                    result.changed += changed
                    result.unchanged += not changed
        return result

    @staticmethod
    def _ensure_rule(arm: ArmClients, nsg: str, rule: PartitionRule, prefixes: list[str]) -> bool:
        _, group, name = id_parts(nsg)
        found = find(f"reading rule {rule.name} of NSG {name}",
                     lambda: arm.network.security_rules.get(group, name, rule.name))
        inbound = rule.direction == "Inbound"
        if (found is not None and text(found.access) == "Deny" and found.priority == rule.priority
                and text(found.direction) == rule.direction):
            return False
        body = SecurityRule(  # type: ignore[call-overload, misc]
            direction=rule.direction, priority=rule.priority, access="Deny", protocol="*",
            source_port_range="*", destination_port_range="*",
            source_address_prefixes=prefixes if inbound else None,
            source_address_prefix=None if inbound else "*",
            destination_address_prefixes=None if inbound else prefixes,
            destination_address_prefix="*" if inbound else None,
            description="gameday: partition from the peer regions")
        write(f"writing rule {rule.name} of NSG {name}",
              lambda: arm.network.security_rules.begin_create_or_update(
                  group, name, rule.name, body).result())
        return True

    def restore(self, request: FaultRequest) -> FaultResult:
        """Delete exactly gameday's rules of each NSG, then its marks; safe to repeat."""
        checkpoint = request.checkpoint
        state = PartitionState.model_validate(checkpoint.state)
        result = FaultResult()
        with self.connection.clients(checkpoint.scope.account) as arm:
            for done, record in enumerate(state.nsgs, start=1):
                progress(done, len(state.nsgs))
                remove_partition(arm, record.id, [r.name for r in record.rules], result)
        return result


def set_marks(arm: ArmClients, nsg: str, marks: Mapping[str, str | None]) -> bool:
    """Set (a value) or remove (None) the NSG's partition marks, keeping every other tag; False
    when the NSG is gone."""
    _, group, name = id_parts(nsg)
    found = find(f"reading NSG {name}",
                 lambda: arm.network.network_security_groups.get(group, name))
    if found is None:
        return False
    tags = dict(found.tags or {})
    wanted = {k: v for k, v in {**tags, **marks}.items() if v is not None}
    if wanted != tags:
        write(f"tagging NSG {name}",
              lambda: arm.network.network_security_groups.update_tags(
                  group, name, TagsObject(tags=wanted)))
    return True


def _get_rule(arm: ArmClients, group: str, name: str, rule: str) -> SecurityRule:
    return arm.network.security_rules.get(group, name, rule)


def _delete_rule(arm: ArmClients, group: str, name: str, rule: str) -> None:
    arm.network.security_rules.begin_delete(group, name, rule).result()


def remove_partition(arm: ArmClients, nsg: str, names: list[str], result: FaultResult) -> None:
    """Delete the named gameday rules of the NSG, then its partition marks."""
    _, group, name = id_parts(nsg)
    for rule in names:
        found = find(f"reading rule {rule} of NSG {name}", partial(_get_rule, arm, group, name, rule))
        if found is None:
            result.unchanged += 1
            continue
        write(f"deleting rule {rule} of NSG {name}", partial(_delete_rule, arm, group, name, rule))
        result.changed += 1
    if not set_marks(arm, nsg, dict.fromkeys(MARKS)):
        result.notes.append(f"NSG {nsg} no longer exists; nothing to restore")


def partition_leftover(nsg: Any, subscription: str) -> Leftover:
    """A customer NSG still marked by a partition (`gameday sweep`)."""
    tags = nsg.tags or {}
    return Leftover(cloud="azure", kind="partitioned-nsg", id=str(nsg.id),
                    run_id=tags[TAG_PARTITION_RUN], step_id=tags.get(TAG_PARTITION_STEP, ""),
                    location=subscription,
                    detail={"resource_group": id_parts(str(nsg.id))[1],
                            "rules": ",".join(r.name for r in nsg.security_rules or []
                                              if (r.name or "").startswith(RULE_PREFIX))})


def sweep_partition(arm: ArmClients, leftover: Leftover, result: FaultResult) -> None:
    """From the marks alone: delete the rules named after the marked (run, step), then the marks;
    an NSG whose marks name another run now is left alone."""
    _, group, name = id_parts(leftover.id)
    found = find(f"reading NSG {name}", lambda: arm.network.network_security_groups.get(group, name))
    if found is None:
        result.notes.append(f"NSG {leftover.id} no longer exists; nothing to restore")
        return
    if (found.tags or {}).get(TAG_PARTITION_RUN) != leftover.run_id:
        result.notes.append(f"NSG {leftover.id} no longer carries the mark of run "
                            f"{leftover.run_id}; left alone")
        return
    names = [rule_name(leftover.run_id, leftover.step_id, d) for d in DIRECTIONS]
    remove_partition(arm, leftover.id, names, result)
