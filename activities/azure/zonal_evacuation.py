"""Azure zonal evacuation (contract §10, `evacuate_zone`): load balancer members in the zone Down.

Before: each named load balancer's backend pools hold members (`loadBalancerBackendAddresses`),
each with an admin state S: unset, `None` or `Up` (a member already `Down` is left alone).
After apply: every member in the zone has admin state `Down`, so the load balancer sends it
nothing while its VM keeps running; the load balancer carries the marks `gameday-evacuate-run` /
`-step` and the members it took Down with their S (`activities.azure.lb_marks`), written in the
same PUT, guarded by its etag.
After restore: each of those members has exactly its S again (unset stays unset), and gameday's
tags are gone.

A member's zone is the zone of the VM whose NIC IP configuration it is (NIC-based pools), or of
the VM whose NIC holds its address in its VNet (IP-based pools); a member whose VM has no zone, or
whose address no NIC of the subscription holds, is outside every zone. A scale-set instance's NIC
is refused (gameday does not place scale-set instances here). Refused before any change, each in
one sentence: an unknown load balancer, one outside the target's region, one without a member in
the zone, a pool whose members outside the zone are all Down (no capacity would remain), a load
balancer held by another run, and marks that do not fit ARM's 50 tags.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import BaseModel

from activities.azure.api import (
    MAX_TAG_VALUE,
    ArmClients,
    AzureConnection,
    find,
    id_parts,
    listing,
    normalize_location,
    text,
    write,
)
from activities.azure.lb_marks import (
    DOWN,
    MARKS,
    TAG_EVACUATE_RUN,
    TAG_EVACUATE_STEP,
    Member,
    marks_for,
    pool_members,
    put_lb,
    without_marks,
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
from gameday.targets import AzureZoneTraffic


class BalancerRecord(BaseModel):
    """One load balancer: the members gameday takes Down, each with its admin state before."""

    id: str
    members: list[Member]


class ZonalEvacuationState(BaseModel):
    resource_group: str
    zone: str
    load_balancers: list[BalancerRecord]


class Placement:
    """Where pool members are: NIC -> VM -> zone, read once each per resolve."""

    def __init__(self, arm: ArmClients):
        self.arm = arm
        self._nics: dict[str, Any] = {}
        self._zones: dict[str, str] = {}
        self._by_address: dict[tuple[str, str], str] | None = None

    def _nic(self, nic_id: str) -> Any:
        if nic_id.lower() not in self._nics:
            _, group, name = id_parts(nic_id)
            self._nics[nic_id.lower()] = find(
                f"reading NIC {name}", partial(self.arm.network.network_interfaces.get, group, name))
        return self._nics[nic_id.lower()]

    def _vm_zone(self, vm_id: str) -> str:
        if vm_id.lower() not in self._zones:
            _, group, name = id_parts(vm_id)
            vm = find(f"reading VM {name}",
                      partial(self.arm.compute.virtual_machines.get, group, name))
            self._zones[vm_id.lower()] = ",".join(vm.zones or []) if vm is not None else ""
        return self._zones[vm_id.lower()]

    def _nic_zone(self, nic: Any) -> str:
        vm = nic.virtual_machine.id if nic is not None and nic.virtual_machine else None
        return self._vm_zone(vm) if vm else ""

    def _address_index(self) -> dict[tuple[str, str], str]:
        """(VNet id, private IP) -> the NIC id holding it, over the subscription's NICs."""
        if self._by_address is None:
            self._by_address = {}
            for nic in listing("listing the NICs of the subscription",
                               self.arm.network.network_interfaces.list_all):
                self._nics[str(nic.id).lower()] = nic
                for config in nic.ip_configurations or []:
                    subnet = config.subnet.id if config.subnet else ""
                    vnet = (subnet or "").lower().split("/subnets/")[0]
                    if vnet and config.private_ip_address:
                        self._by_address[(vnet, config.private_ip_address)] = str(nic.id)
        return self._by_address

    def zone_of(self, member: Any, where: str) -> str:
        """The member's zone ("" when it has none); a scale-set instance's NIC is refused."""
        config = member.network_interface_ip_configuration
        if config is not None and config.id:
            if "/virtualmachinescalesets/" in config.id.lower():
                raise Refused(f"member {member.name} of {where} is a scale-set instance's NIC, "
                              "which evacuate_zone does not place in a zone; name a load "
                              "balancer of VMs or use deny_capacity")
            return self._nic_zone(self._nic(config.id.split("/ipConfigurations/")[0]))
        vnet = member.virtual_network.id if member.virtual_network else ""
        if not member.ip_address or not vnet:
            return ""
        holder = self._address_index().get((vnet.lower(), member.ip_address))
        return self._nic_zone(self._nic(holder)) if holder else ""


class AzureZonalEvacuation:
    """The zonal evacuation's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = ZonalEvacuationState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    # --- reading ----------------------------------------------------------------------------

    def _balancer(self, arm: ArmClients, step_id: str, run_id: str, target: AzureZoneTraffic,
                  name: str, placement: Placement) -> BalancerRecord:
        lb = find(f"reading load balancer {name}",
                  partial(arm.network.load_balancers.get, target.resource_group, name))
        if lb is None:
            raise TargetNotFound(f"step {step_id}: load balancer {name} does not exist in "
                                 f"resource group {target.resource_group} of subscription "
                                 f"{target.subscription}")
        if target.region and normalize_location(lb.location) != normalize_location(target.region):
            raise Refused(f"step {step_id}: load balancer {name} is in {lb.location}, not in "
                          f"{target.region}")
        tags = lb.tags or {}
        holder = tags.get(TAG_EVACUATE_RUN)
        if holder is not None and (holder != run_id or tags.get(TAG_EVACUATE_STEP) != step_id):
            raise Refused(f"load balancer {lb.id} is already evacuated by gameday run {holder} "
                          f"(step {tags.get(TAG_EVACUATE_STEP, '?')})")
        members: list[Member] = []
        in_zone = 0
        for pool in lb.backend_address_pools or []:
            where = f"pool {pool.name} of load balancer {name}"
            taken: list[Member] = []
            remaining = 0
            for member in pool.load_balancer_backend_addresses or []:
                state = text(member.admin_state) or None
                if placement.zone_of(member, where) != target.zone:
                    remaining += state != DOWN
                    continue
                in_zone += 1
                if state != DOWN:
                    taken.append(Member(pool=pool.name or "", name=member.name or "",
                                        before=state))
            if taken and not remaining:
                raise Refused(f"step {step_id}: every member of {where} that is not Down is in "
                              f"zone {target.zone}: taking them Down would leave it no capacity")
            members += taken
        if not in_zone:
            raise TargetNotFound(f"step {step_id}: load balancer {name} has no backend pool "
                                 f"member in zone {target.zone}")
        record = BalancerRecord(id=str(lb.id), members=members)
        marks_for(record.id, run_id, step_id, members, tags)  # refuses marks that do not fit
        return record

    def _plan(self, arm: ArmClients, step_id: str, run_id: str,
              target: AzureZoneTraffic) -> ZonalEvacuationState:
        placement = Placement(arm)
        names = list(dict.fromkeys(target.load_balancers))
        records = []
        for done, name in enumerate(names, start=1):
            progress(done, len(names))
            records.append(self._balancer(arm, step_id, run_id, target, name, placement))
        return ZonalEvacuationState(resource_group=target.resource_group, zone=target.zone,
                                    load_balancers=records)

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """Every named load balancer, with the members of the zone it would take Down and their
        admin state now (read-only)."""
        target = request.step.target
        assert isinstance(target, AzureZoneTraffic)
        with self.connection.clients(target.subscription) as arm:
            state = self._plan(arm, request.step.id, request.run_id, target)
        resources = [Resource(
            id=record.id, kind="load_balancer", name=id_parts(record.id)[2],
            detail={"zone": target.zone,
                    "members_down": ",".join(f"{m.pool}/{m.name}={m.before or 'unset'}"
                                             for m in record.members) or "(all already Down)"},
        ) for record in state.load_balancers]
        return ResolvedStep(step_id=request.step.id, action=request.step.action,
                            scope=Scope.of(target), resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each load balancer's members in the zone and their admin state; refuse before
        any change."""
        target = request.step.target
        assert isinstance(target, AzureZoneTraffic)
        resolved = request.resolved
        if len(request.run_id) > MAX_TAG_VALUE or len(resolved.step_id) > MAX_TAG_VALUE:
            raise Refused(f"run or step id is longer than {MAX_TAG_VALUE} characters, ARM's tag "
                          "limit")
        with self.connection.clients(target.subscription) as arm:
            state = self._plan(arm, resolved.step_id, request.run_id, target)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="evacuate_zone", scope=resolved.scope,
                          resources=len(state.load_balancers), state=state.model_dump(mode="json"))

    # --- changing ---------------------------------------------------------------------------

    def apply(self, request: FaultRequest) -> FaultResult:
        """Mark each load balancer and take its members of the zone Down, in one PUT guarded by
        its etag; a load balancer already so is left alone."""
        checkpoint = request.checkpoint
        state = ZonalEvacuationState.model_validate(checkpoint.state)
        result = FaultResult()
        with self.connection.clients(checkpoint.scope.account) as arm:
            for done, record in enumerate(state.load_balancers, start=1):
                progress(done, len(state.load_balancers))
                outcome = evacuate(arm, record, checkpoint.run_id, checkpoint.step_id)
                tally(result, outcome, f"load balancer {record.id} no longer exists; skipped")
        return result

    def restore(self, request: FaultRequest) -> FaultResult:
        """Give each recorded member its admin state back and remove gameday's tags; safe to
        repeat, and a load balancer already so is left alone."""
        checkpoint = request.checkpoint
        state = ZonalEvacuationState.model_validate(checkpoint.state)
        result = FaultResult()
        with self.connection.clients(checkpoint.scope.account) as arm:
            for done, record in enumerate(state.load_balancers, start=1):
                progress(done, len(state.load_balancers))
                outcome = put_back(arm, record.id, record.members, checkpoint.run_id)
                tally(result, outcome, f"load balancer {record.id} no longer exists; nothing "
                                       "to restore")
        return result


def tally(result: FaultResult, outcome: bool | None, gone: str) -> None:
    if outcome is None:
        result.notes.append(gone)
    elif outcome:
        result.changed += 1
    else:
        result.unchanged += 1


def evacuate(arm: ArmClients, record: BalancerRecord, run_id: str, step_id: str) -> bool | None:
    """The members Down and the marks set, in one PUT: True when changed, False when already so,
    None when the load balancer is gone. Refused when another run holds it, or when a pool
    would keep no member up outside the zone."""
    _, group, name = id_parts(record.id)

    def update() -> bool | None:
        lb = find(f"reading load balancer {name}",
                  partial(arm.network.load_balancers.get, group, name))
        if lb is None:
            return None
        tags = dict(lb.tags or {})
        holder = tags.get(TAG_EVACUATE_RUN)
        if holder is not None and (holder != run_id or tags.get(TAG_EVACUATE_STEP) != step_id):
            raise Refused(f"load balancer {lb.id} is already evacuated by gameday run {holder}")
        found = pool_members(lb)
        ours = {(m.pool, m.name) for m in record.members}
        for pool in sorted({m.pool for m in record.members}):
            up_elsewhere = [k for k, m in found.items() if k[0] == pool and k not in ours
                            and text(m.admin_state) != DOWN]
            if not up_elsewhere:
                raise Refused(f"pool {pool} of load balancer {name} has no member up outside "
                              "the zone any more: taking the zone Down would leave it no "
                              "capacity")
        changed = False
        for member in record.members:
            current = found.get((member.pool, member.name))
            if current is not None and text(current.admin_state) != DOWN:
                current.admin_state = DOWN
                changed = True
        wanted = {**without_marks(tags),
                  **marks_for(record.id, run_id, step_id, record.members, tags)}
        if not changed and wanted == tags:
            return False
        lb.tags = wanted
        put_lb(arm, lb)
        return True

    return write(f"evacuating load balancer {name}", update)


def put_back(arm: ArmClients, lb_id: str, members: list[Member], run_id: str) -> bool | None:
    """Each member given exactly its recorded admin state (unset stays unset), then gameday's
    tags removed, in one PUT guarded by the etag: True when changed, False when already so, None
    when the load balancer is gone. Marks of another run are left in place."""
    _, group, name = id_parts(lb_id)

    def update() -> bool | None:
        lb = find(f"reading load balancer {name}",
                  partial(arm.network.load_balancers.get, group, name))
        if lb is None:
            return None
        tags = dict(lb.tags or {})
        found = pool_members(lb)
        changed = False
        for member in members:
            current = found.get((member.pool, member.name))
            if current is not None and (text(current.admin_state) or None) != member.before:
                current.admin_state = member.before
                changed = True
        wanted = without_marks(tags) if tags.get(TAG_EVACUATE_RUN) in (run_id, None) else tags
        if not changed and wanted == tags:
            return False
        lb.tags = wanted
        put_lb(arm, lb)
        return True

    return write(f"restoring load balancer {name}", update)


__all__ = ["MARKS", "AzureZonalEvacuation", "BalancerRecord", "evacuate", "put_back"]
