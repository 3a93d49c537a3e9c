"""Microsoft.Compute virtual machines: zones, tags and the NICs they use (profiles kept loosely).

A VM has a power state (running after its creation) shown in its instance view (`GET` with
`$expand=instanceView`, or `GET .../instanceView`). The power actions `start`, `powerOff`,
`deallocate` and `restart` answer as ARM does: 202 with `Azure-AsyncOperation` and `Location`;
while the operation runs the VM is `starting`/`stopping`/`deallocating` (and another write to it
is 429), and its end state is set when the operation completes (first poll, or `operation_seconds`
later when nobody polls). `Retry-After: 1` tells clients that poll on their own schedule (the
Azure CLI waits 30 s without it) to come back in a second: lab time is short.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gameday.lab.azure.arm import (
    GROUP,
    NAME,
    SUB,
    ArmError,
    Json,
    Resource,
    Table,
    body_of,
    check_if_match,
    key,
    not_found,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.network import NetworkProvider, owner_of
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

NS = "Microsoft.Compute"
VM_TYPE = f"{NS}/virtualMachines"
ZONES = ("1", "2", "3")
_COMPUTED = {"provisioningState", "vmId", "timeCreated", "instanceView", "networkProfile"}
#: action -> (power state while it runs, power state after it, ARM's operation name)
POWER_ACTIONS = {
    "start": ("starting", "running", "StartVirtualMachine"),
    "powerOff": ("stopping", "stopped", "PowerOffVirtualMachine"),
    "deallocate": ("deallocating", "deallocated", "DeallocateVirtualMachine"),
    "restart": ("starting", "running", "RestartVirtualMachine"),
}


class ComputeProvider:
    """Virtual machines; attaching a NIC shows as `properties.virtualMachine` on the NIC."""

    def __init__(self, arm: ResourceManagerEmulator, network: NetworkProvider):
        self.arm = arm
        self.network = network
        self.vms = Table()
        self.power: dict[str, str] = {}
        vms = GROUP + "/providers/Microsoft\\.Compute/virtualMachines"
        arm.route("GET", vms, self.list_vms)
        arm.route("GET", SUB + "/providers/Microsoft\\.Compute/virtualMachines", self.list_all)
        arm.route("GET", vms + rf"/(?P<vm>{NAME})", self.get_vm)
        arm.route("PUT", vms + rf"/(?P<vm>{NAME})", self.put_vm)
        arm.route("DELETE", vms + rf"/(?P<vm>{NAME})", self.delete_vm)
        arm.route("GET", vms + rf"/(?P<vm>{NAME})/instanceView", self.get_instance_view)
        actions = "|".join(POWER_ACTIONS)
        arm.route("POST", vms + rf"/(?P<vm>{NAME})/(?P<action>{actions})", self.power_action)

    def reset(self) -> None:
        self.vms.clear()
        self.power.clear()

    def render(self, vm: Resource, instance_view: bool = False) -> Json:
        props = {**vm.properties, "provisioningState": vm.state}
        if instance_view:
            props["instanceView"] = self.instance_view(vm)
        return vm.envelope(props)

    def instance_view(self, vm: Resource) -> Json:
        """The statuses clients read: provisioning state, then power state."""
        power = self.power.get(vm.key, "running")
        return {
            "computerName": (vm.properties.get("osProfile") or {}).get("computerName", vm.name),
            "osName": "ubuntu", "osVersion": "24.04", "hyperVGeneration": "V2",
            "statuses": [
                {"code": f"ProvisioningState/{vm.state.lower()}", "level": "Info",
                 "displayStatus": f"Provisioning {vm.state.lower()}",
                 "time": vm.properties.get("timeCreated")},
                {"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"},
            ],
        }

    def _vm_id(self, request: Request) -> str:
        return f"{self.arm.group(request).id}/providers/{VM_TYPE}/{request.params['vm']}"

    def list_vms(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.vms.in_group(*owner_of(group.id)), self.render)

    def list_all(self, request: Request) -> Response:
        return self.arm.page(request, self.vms.in_subscription(request.params["sub"]), self.render)

    def _existing(self, request: Request) -> Resource:
        vm = self.vms.get(self._vm_id(request))
        if vm is None:
            raise not_found(VM_TYPE, request.params["vm"], request.params["rg"])
        return vm

    def get_vm(self, request: Request) -> Response:
        """`$expand=instanceView` adds the instance view (other expansions are ignored)."""
        expand = (request.arg("$expand") or "").lower().split(",")
        return respond(self.render(self._existing(request), "instanceview" in expand))

    def get_instance_view(self, request: Request) -> Response:
        return respond(self.instance_view(self._existing(request)))

    def power_action(self, request: Request) -> Response:
        vm = self._existing(request)
        self.arm.operations.ensure_idle(vm.key, vm.id)
        during, after, name = POWER_ACTIONS[request.params["action"]]
        self.power[vm.key] = during

        def done() -> None:
            if self.vms.get(vm.id) is vm:
                self.power[vm.key] = after

        return self.arm.action_response(request, namespace=NS, location=vm.location or "",
                                        holds=vm.key, name=f"{name}Operation", on_done=done)

    def put_vm(self, request: Request) -> Response:
        vm_id = self._vm_id(request)
        existing = self.vms.get(vm_id)
        vm_id = existing.id if existing else vm_id
        self.arm.operations.ensure_idle(key(vm_id), vm_id)
        check_if_match(request, existing)
        body = body_of(request)
        location = require_location(body, existing)
        zones = [str(z) for z in body.get("zones") or []]
        if any(z not in ZONES for z in zones):
            raise ArmError(400, "InvalidParameter", f"The value {zones} of parameter 'zones' is "
                           f"invalid. Allowed values: {', '.join(ZONES)}.")
        if existing and zones != existing.extra.get("zones", []):
            raise ArmError(409, "PropertyChangeNotAllowed", "Changing property 'zones' is not "
                           "allowed.")
        given = body.get("properties") or {}
        props = {k: v for k, v in given.items() if k not in _COMPUTED}
        if isinstance(props.get("osProfile"), dict):
            props["osProfile"] = {k: v for k, v in props["osProfile"].items()
                                  if k != "adminPassword"}
        nics = self._network_interfaces(vm_id, location, given.get("networkProfile") or {})
        props["networkProfile"] = {**(given.get("networkProfile") or {}), "networkInterfaces": nics}
        old = existing.properties if existing else {}
        props["vmId"] = old.get("vmId") or str(uuid.uuid4())
        props["timeCreated"] = old.get("timeCreated") or datetime.now(UTC).isoformat()
        vm = Resource(id=vm_id, name=existing.name if existing else request.params["vm"],
                      type=VM_TYPE, location=location, tags=tags_of(body), properties=props,
                      extra={"zones": zones} if zones else {})
        if existing:
            self._detach(existing)
        else:
            self.power[vm.key] = "running"
        self.vms.put(vm, *owner_of(vm.id))
        for nic in nics:
            self.network.vm_of[key(nic["id"])] = vm.id
        return self.arm.write_response(request, vm, created=existing is None,
                                       kind="virtualMachines", namespace=NS, location=location,
                                       holds=vm.key, render=lambda: self.render(vm))

    def _network_interfaces(self, vm_id: str, location: str, profile: Json) -> list[Json]:
        given: list[Any] = profile.get("networkInterfaces") or []
        if not given:
            raise ArmError(400, "InvalidParameter", "Required parameter 'networkProfile' is "
                           "missing (null).")
        refs: list[Json] = []
        for item in given:
            nic_id = (item or {}).get("id")
            nic = self.network.nics.get(str(nic_id)) if nic_id else None
            if nic is None:
                raise ArmError(400, "InvalidParameter", f"Network interface {nic_id} referenced "
                               f"by virtual machine {vm_id} was not found.")
            user = self.network.vm_of.get(nic.key)
            if user and key(user) != key(vm_id):
                raise ArmError(409, "NicInUse", f"Network interface {nic.id} is used by existing "
                               f"resource {user}.")
            if nic.location != location:
                raise ArmError(400, "InvalidParameter", f"Network interface {nic.id} is in "
                               f"location {nic.location}, not in {location} of the virtual "
                               "machine.")
            props = dict((item or {}).get("properties") or {})
            refs.append({"id": nic.id, "properties": props})
        primaries = [r for r in refs if r["properties"].get("primary")]
        if len(refs) == 1:
            refs[0]["properties"]["primary"] = True
        elif len(primaries) != 1:
            raise ArmError(400, "InvalidParameter", "Virtual machine with multiple network "
                           "interfaces must have exactly one primary network interface.")
        return refs

    def _detach(self, vm: Resource) -> None:
        for nic in vm.properties["networkProfile"]["networkInterfaces"]:
            if key(self.network.vm_of.get(key(nic["id"]), "")) == vm.key:
                del self.network.vm_of[key(nic["id"])]

    def delete_vm(self, request: Request) -> Response:
        vm = self.vms.get(self._vm_id(request))
        if vm is None:
            return respond(None, 204)
        self.arm.operations.ensure_idle(vm.key, vm.id)
        check_if_match(request, vm)

        def remove() -> None:
            if self.vms.get(vm.id) is not vm:
                return
            self._detach(vm)
            self.vms.remove(vm, *owner_of(vm.id))
            self.power.pop(vm.key, None)
            for ref in vm.properties["networkProfile"]["networkInterfaces"]:
                nic = self.network.nics.get(ref["id"])
                if nic is not None and ref["properties"].get("deleteOption") == "Delete":
                    self.network.remove_nic(nic)

        return self.arm.delete_response(request, vm, kind="virtualMachines", namespace=NS,
                                        location=vm.location or "", holds=vm.key, remove=remove)
