"""Azure sweep: gameday's NSGs (tagged `gameday-run`), the NICs carrying gameday's restore tag and
the VMs a power interruption marked (tagged `gameday-run`), left by runs that are over, found in
each subscription.

Before: a NIC on a gameday NSG carries `gameday-restore-nsg` naming the NSG it had; a VM gameday
powered off carries `gameday-run` and `gameday-step` (it was running: only those are marked).
After sweep: the NIC is back on that NSG (or none) without the tag (a NIC moved elsewhere
meanwhile only loses the stale tag); a gameday NSG, once no NIC holds it, is deleted; the VM is
running again, without gameday's tags. A scale set or autoscale setting a capacity denial marked
(`activities.azure.capacity`) gets its repairs policy or `enabled` back from its own tags; a load
balancer a zonal evacuation marked (`activities.azure.lb_marks`) gets its members' admin states
back from its own tags.
"""

from __future__ import annotations

from activities.azure.api import (
    TAG_RESTORE,
    TAG_RUN,
    TAG_STEP,
    ArmClients,
    AzureConnection,
    find,
    id_parts,
    listing,
    resource_id,
)
from activities.azure.blackhole import AzureZoneBlackhole, BlackholeState, from_restore_tag, nsg_of, tally
from activities.azure.capacity import LEFTOVER_KINDS, AzureCapacityDenial
from activities.azure.database import AzureDatabaseFailover
from activities.azure.lb_marks import LEFTOVER_KIND as EVACUATED_LB
from activities.azure.lb_marks import TAG_EVACUATE_RUN, evacuation_leftover, sweep_evacuation
from activities.azure.partition import TAG_PARTITION_RUN, partition_leftover, sweep_partition
from activities.azure.power import RUNNING, restore_vm
from activities.base import progress
from gameday.errors import UserError
from gameday.plan import FaultResult
from gameday.sweep import Leftover, SweepScope

UNKNOWN_RUN = "(unknown)"
"""The run of a NIC whose restore tag no gameday NSG explains: unrecoverable, never `running`."""

KINDS = ("network-interface", "network-security-group", "virtual-machine", "partitioned-nsg",
         EVACUATED_LB, *LEFTOVER_KINDS)


class AzureSweeper:
    """Finds gameday's NSGs (tagged `gameday-run`), the NICs carrying gameday's restore tag and
    the VMs marked by a power interruption in each subscription, and undoes each from those tags
    alone."""

    def __init__(self, connection: AzureConnection | None = None):
        self.connection = connection or AzureConnection()
        self.blackhole = AzureZoneBlackhole(self.connection)
        self.capacity = AzureCapacityDenial(self.connection)
        self.databases = AzureDatabaseFailover(self.connection)

    def find(self, scope: SweepScope) -> list[Leftover]:
        leftovers: list[Leftover] = []
        for subscription in scope.azure_subscriptions:
            with self.connection.clients(subscription) as arm:
                nics = listing(f"listing the NICs of subscription {subscription}",
                                arm.network.network_interfaces.list_all)
                nsgs = listing(f"listing the NSGs of subscription {subscription}",
                                arm.network.network_security_groups.list_all)
                vms = listing(f"listing the VMs of subscription {subscription}",
                               arm.compute.virtual_machines.list_all)
                balancers = listing(f"listing the load balancers of subscription {subscription}",
                                    arm.network.load_balancers.list_all)
            leftovers += [evacuation_leftover(lb, subscription) for lb in balancers
                          if TAG_EVACUATE_RUN in (lb.tags or {})]
            ours = {nsg.id.lower(): nsg for nsg in nsgs if TAG_RUN in (nsg.tags or {})}
            leftovers += [partition_leftover(nsg, subscription) for nsg in nsgs
                          if TAG_PARTITION_RUN in (nsg.tags or {})]
            for nic in sorted(nics, key=lambda n: n.id.lower()):
                tags = nic.tags or {}
                if TAG_RESTORE not in tags:
                    continue
                holder = ours.get((nsg_of(nic) or "").lower())
                holder_tags = (holder.tags or {}) if holder is not None else {}
                leftovers.append(Leftover(
                    cloud="azure", kind="network-interface", id=nic.id,
                    run_id=holder_tags.get(TAG_RUN, UNKNOWN_RUN),
                    step_id=holder_tags.get(TAG_STEP, ""), location=subscription,
                    detail={"resource_group": id_parts(nic.id)[1],
                            "network_security_group": nsg_of(nic) or "",
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
            for vm in sorted(vms, key=lambda v: str(v.id).lower()):
                tags = vm.tags or {}
                if TAG_RUN not in tags:
                    continue
                leftovers.append(Leftover(
                    cloud="azure", kind="virtual-machine", id=str(vm.id), run_id=tags[TAG_RUN],
                    step_id=tags.get(TAG_STEP, ""), location=subscription,
                    detail={"resource_group": id_parts(str(vm.id))[1],
                            "zone": ",".join(vm.zones or []), "restore": "start"},
                ))
            leftovers.extend(self.capacity.leftovers(subscription))
        for subscription in scope.azure_subscriptions:  # flexible servers a failover marked
            leftovers += self.databases.find(subscription)
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        if leftover.kind == "postgresql-flexible-server":
            return self.databases.sweep(leftover)
        if leftover.kind not in KINDS:
            raise UserError(f"azure has no leftover of kind {leftover.kind}")
        result = FaultResult()
        if leftover.kind in LEFTOVER_KINDS:
            self.capacity.sweep(leftover, result)
            progress(1, 1)
            return result
        with self.connection.clients(leftover.location) as arm:
            if leftover.kind == "network-interface":
                self._sweep_nic(arm, leftover.id, result)
            elif leftover.kind == "partitioned-nsg":
                sweep_partition(arm, leftover, result)
            elif leftover.kind == EVACUATED_LB:
                sweep_evacuation(arm, leftover, result)
            elif leftover.kind == "virtual-machine":
                self._sweep_vm(arm, leftover, result)
            else:
                self._sweep_nsg(arm, leftover, result)
        progress(1, 1)
        return result

    def _sweep_nic(self, arm: ArmClients, nic_id: str, result: FaultResult) -> None:
        """Back onto the NSG its tag names (or none), without the tag; a NIC no longer on a
        gameday NSG was moved by someone else, so only the stale tag goes."""
        _, group, name = id_parts(nic_id)
        nic = find(f"reading NIC {name}", lambda: arm.network.network_interfaces.get(group, name))
        if nic is None:
            result.notes.append(f"NIC {nic_id} no longer exists; nothing to restore")
            return
        tag = (nic.tags or {}).get(TAG_RESTORE)
        if tag is None:
            result.unchanged += 1
            return
        current = nsg_of(nic)
        if current is not None and self._holder_tags(arm, current).get(TAG_RUN):
            self.blackhole.restore_nic(arm, resource_id(nic), from_restore_tag(tag, resource_id(nic)), result)
            return
        result.notes.append(f"NIC {nic_id} is no longer on a gameday NSG; only its restore tag "
                            "was removed")
        outcome = self.blackhole.move_nic(arm, resource_id(nic), current, None)
        tally(result, outcome, f"NIC {nic_id} no longer exists; nothing to restore")

    @staticmethod
    def _sweep_vm(arm: ArmClients, leftover: Leftover, result: FaultResult) -> None:
        """Running again, without gameday's tags: a VM is marked only just before gameday powers
        it off, so a marked VM was running. A VM whose mark names another run is left alone."""
        _, group, name = id_parts(leftover.id)
        vm = find(f"reading VM {name}", lambda: arm.compute.virtual_machines.get(group, name))
        if vm is None:
            result.notes.append(f"VM {leftover.id} no longer exists; nothing to restore")
            return
        if (vm.tags or {}).get(TAG_RUN) != leftover.run_id:
            result.notes.append(f"VM {leftover.id} no longer carries the mark of run "
                                f"{leftover.run_id}; left alone")
            result.unchanged += 1
            return
        outcome = restore_vm(arm, leftover.id, RUNNING)
        if outcome == "gone":
            result.notes.append(f"VM {leftover.id} no longer exists; nothing to restore")
        elif outcome == "changed":
            result.changed += 1
        else:
            result.unchanged += 1

    def _holder_tags(self, arm: ArmClients, nsg: str) -> dict[str, str]:
        _, group, name = id_parts(nsg)
        found = find(f"reading NSG {name}",
                      lambda: arm.network.network_security_groups.get(group, name))
        return dict(found.tags or {}) if found is not None else {}

    def _sweep_nsg(self, arm: ArmClients, leftover: Leftover, result: FaultResult) -> None:
        """Put every NIC still on gameday's NSG back from its own tag, then delete the NSG."""
        _, group, name = id_parts(leftover.id)
        found = find(f"reading NSG {name}",
                      lambda: arm.network.network_security_groups.get(group, name))
        if found is None:
            result.notes.append(f"NSG {leftover.id} is already gone")
            return
        if (found.tags or {}).get(TAG_RUN) != leftover.run_id:
            result.notes.append(f"NSG {leftover.id} is no longer gameday's NSG of run "
                                f"{leftover.run_id}; left alone")
            return
        for member in found.network_interfaces or []:
            self.blackhole.restore_from_tag(arm, resource_id(member), resource_id(found), result)
        state = BlackholeState(resource_group=group, region=found.location or "", nsg_name=name,
                               nics=[])
        self.blackhole.delete_nsg(arm, state, resource_id(found), result)
