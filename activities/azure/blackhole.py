"""Azure zone blackhole (contract §4): every NIC of every matching VM of the zone denies all traffic.

Azure subnets span zones, so a zone is cut per network interface.
Before: NIC N is associated with NSG S (or none).
After apply: N is associated with a deny-all NSG that gameday made for the (run, step), with
`flushConnection` so that open flows end too, and N carries the tag `gameday-restore-nsg` naming S
(`<resource group>/<name>`, or `none`).
After restore: N is associated with S again (or none), without the tag, and gameday's NSG is
deleted. NICs the checkpoint does not know are restored from their own tag.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.network.models import NetworkInterface, NetworkSecurityGroup, SecurityRule
from pydantic import BaseModel

from activities.azure.api import (
    MAX_TAG_VALUE,
    MAX_TAGS,
    NO_NSG,
    TAG_MANAGED,
    TAG_RESTORE,
    TAG_RUN,
    TAG_STEP,
    ArmClients,
    AzureConnection,
    find,
    id_parts,
    listing,
    normalize_location,
    nsg_id,
    resource_id,
    same_id,
    text,
    write,
)
from activities.base import fan_out, parallel_calls, progress
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
from gameday.targets import AzureRegionTarget, AzureZoneTarget

MAX_NSG_NAME = 80
AZURE_ZONES = ("1", "2", "3")
_DENY_ALL = [
    {"name": f"deny-all-{direction.lower()}", "direction": direction}
    for direction in ("Inbound", "Outbound")
]



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



def tally(result: FaultResult, outcome: bool | None, gone: str) -> None:
    """Count one NIC move (`_move_nic`'s answer): changed, already so, or `gone` noted."""
    if outcome is None:
        result.notes.append(gone)
    elif outcome:
        result.changed += 1
    else:
        result.unchanged += 1


def nsg_of(nic: NetworkInterface) -> str | None:
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
            listed = find(f"listing NICs of resource group {group}",
                          lambda: list(self._arm.network.network_interfaces.list(group)))
            # None: no such group, so none of its NICs exists
            self._groups[key] = {nic.id.lower(): nic for nic in listed or [] if nic.id}
        return self._groups[key].get(nic_id.lower())



class AzureZoneBlackhole:
    """The zone blackhole's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = BlackholeState

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The NICs of the matching VMs of the zone (or, for blackhole_region, of every zone of
        the region), each with its VM, zone and current NSG."""
        target = request.step.target
        assert isinstance(target, AzureZoneTarget | AzureRegionTarget)
        scope = Scope.of(target)
        with self.connection.clients(target.subscription) as arm:
            resources = self._targets(arm, request.step.id, target)
            if request.only_new:
                held = self._nsgs_of_run(arm, target.resource_group, request.run_id)
                resources = [r for r in resources
                             if r.detail["network_security_group"].lower() not in held]
        return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                            resources=resources)

    @staticmethod
    def _nsgs_of_run(arm: ArmClients, resource_group: str, run_id: str) -> set[str]:
        """The ids (lower case) of the deny-all NSGs a run made in the resource group."""
        listed = listing(f"listing NSGs of resource group {resource_group}",
                          lambda: arm.network.network_security_groups.list(resource_group))
        return {nsg.id.lower() for nsg in listed if nsg.id and (nsg.tags or {}).get(TAG_RUN) == run_id
                and (nsg.tags or {}).get(TAG_MANAGED) == "gameday"}

    def _targets(self, arm: ArmClients, step_id: str,
                 target: AzureZoneTarget | AzureRegionTarget) -> list[Resource]:
        vms = find("listing virtual machines",
                   lambda: list(arm.compute.virtual_machines.list(target.resource_group)))
        if vms is None:
            raise TargetNotFound(
                f"step {step_id}: resource group {target.resource_group} does not exist in "
                f"subscription {target.subscription}")
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
                            "network_security_group": nsg_of(nic) or ""},
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
        if len(request.run_id) > MAX_TAG_VALUE:
            raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, ARM's tag limit")
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
                current = nsg_of(nic)
                if same_id(current, ours):
                    current = from_restore_tag(tags.get(TAG_RESTORE, NO_NSG), resource_id(nic))
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
            found = find(f"reading NSG {name}",
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
        with self.connection.clients(scope.account) as arm:
            blackhole = self._ensure_nsg(arm, checkpoint, state)
            listed = NicReader(arm)

            def move(record: NicRecord) -> bool | None:
                return self.move_nic(arm, record.id, blackhole, restore_tag(record.nsg), listed)

            moves = fan_out(state.nics, move, parallel_calls("azure"))
            for done, (record, outcome) in enumerate(moves, start=1):
                tally(result, outcome, f"NIC {record.id} no longer exists; skipped")
                progress(done, len(state.nics))
        return result

    def _ensure_nsg(self, arm: ArmClients, checkpoint: Checkpoint, state: BlackholeState) -> str:
        group, name = state.resource_group, state.nsg_name
        existing = find(f"reading NSG {name}",
                         lambda: arm.network.network_security_groups.get(group, name))
        if existing is not None and existing.flush_connection and denies_all(existing):
            return resource_id(existing)
        # The models take their properties flattened at run time; their stubs list only `properties`.
        body = NetworkSecurityGroup(  # type: ignore[call-overload]
            location=state.region,
            tags={TAG_RUN: checkpoint.run_id, TAG_STEP: checkpoint.step_id,
                  TAG_MANAGED: "gameday"},
            flush_connection=True,
            security_rules=[
                SecurityRule(name=rule["name"], direction=rule["direction"],  # type: ignore[call-overload]
                             priority=100,
                             access="Deny", protocol="*", source_address_prefix="*",
                             source_port_range="*", destination_address_prefix="*",
                             destination_port_range="*",
                             description="gameday: blackhole of the zone")
                for rule in _DENY_ALL
            ],
        )
        made = write(f"creating NSG {name}", lambda: arm.network.network_security_groups
                      .begin_create_or_update(group, name, body).result())
        return resource_id(made)

    def move_nic(self, arm: ArmClients, nic_id: str, nsg: str | None, tag: str | None,
                  listed: NicReader | None = None) -> bool | None:
        """Put the NIC on `nsg` and set (or, with None, remove) its restore tag, keeping every
        other tag; True when changed, False when already so, None when the NIC is gone. The
        first try starts from the NIC as `listed` shows it, when given (one listing per group
        instead of one GET per NIC); its etag guards the write, and a stale one reads again."""
        _, group, name = id_parts(nic_id)
        first = [listed]

        def update() -> bool | None:
            reader = first.pop() if first else None
            nic = reader.get(nic_id) if reader is not None else find(
                f"reading NIC {name}", lambda: arm.network.network_interfaces.get(group, name))
            if nic is None:
                return None
            tags = dict(nic.tags or {})
            wanted_tags = dict(tags)
            if tag is None:
                wanted_tags.pop(TAG_RESTORE, None)
            else:
                wanted_tags[TAG_RESTORE] = tag
            if same_id(nsg_of(nic), nsg) and wanted_tags == tags:
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

        return write(f"updating NIC {name}", update)

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put every NIC back on the NSG it had (or none), then delete gameday's NSG."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = BlackholeState.model_validate(checkpoint.state)
        result = FaultResult()
        ours = nsg_id(scope.account, state.resource_group, state.nsg_name)
        with self.connection.clients(scope.account) as arm:
            listed = NicReader(arm)

            def put_back(record: NicRecord) -> FaultResult:
                one = FaultResult()  # each move tallies apart: they run in parallel
                self.restore_nic(arm, record.id, record.nsg, one, listed)
                return one

            moves = fan_out(state.nics, put_back, parallel_calls("azure"))
            for done, (_, one) in enumerate(moves, start=1):
                result.changed += one.changed
                result.unchanged += one.unchanged
                result.notes += one.notes
                progress(done, len(state.nics))
            self.delete_nsg(arm, state, ours, result)
            return result

    def restore_nic(self, arm: ArmClients, nic_id: str, nsg: str | None,
                     result: FaultResult, listed: NicReader | None = None) -> None:
        try:
            outcome = self.move_nic(arm, nic_id, nsg, None, listed)
        except CloudError as exc:
            if exc.code != "InvalidResourceReference" or nsg is None:
                raise
            _, group, name = id_parts(nsg)
            if find(f"reading NSG {name}",
                     lambda: arm.network.network_security_groups.get(group, name)) is not None:
                raise
            outcome = self.move_nic(arm, nic_id, None, None)
            result.notes.append(f"NIC {nic_id}: its NSG {nsg} is gone; left without an NSG")
        tally(result, outcome, f"NIC {nic_id} no longer exists; nothing to restore")

    def delete_nsg(self, arm: ArmClients, state: BlackholeState, ours: str,
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
                write(f"deleting NSG {name}", delete)
                return
            except CloudError as exc:
                if exc.code != "InUseNetworkSecurityGroupCannotBeDeleted" or attempt == 2:
                    raise
            found = find(f"reading NSG {name}",
                          lambda: arm.network.network_security_groups.get(group, name))
            for member in (found.network_interfaces or []) if found is not None else []:
                self.restore_from_tag(arm, member.id, ours, result)

    def restore_from_tag(self, arm: ArmClients, nic_id: str, ours: str,
                          result: FaultResult) -> None:
        _, group, name = id_parts(nic_id)
        nic = find(f"reading NIC {name}", lambda: arm.network.network_interfaces.get(group, name))
        if nic is None or not same_id(nsg_of(nic), ours):
            return
        tag = (nic.tags or {}).get(TAG_RESTORE)
        if tag is None:
            result.notes.append(f"NIC {nic_id} was on gameday's NSG without a restore record; "
                                "left without an NSG")
        self.restore_nic(arm, resource_id(nic), from_restore_tag(tag or NO_NSG, resource_id(nic)), result)


def denies_all(nsg: NetworkSecurityGroup) -> bool:
    rules = {(r.name or "").lower(): r for r in nsg.security_rules or []}
    for wanted in _DENY_ALL:
        rule = rules.get(wanted["name"])
        if rule is None or text(rule.access) != "Deny" or rule.priority != 100:
            return False
    return True
