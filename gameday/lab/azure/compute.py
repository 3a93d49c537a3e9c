"""Microsoft.Compute virtual machines: zones, tags and the NICs they use (profiles kept loosely).

A VM has a power state (running after its creation) shown in its instance view (`GET` with
`$expand=instanceView`, a list with `$expand=instanceView`, or `GET .../instanceView`). The power
actions `start`, `powerOff` (`skipShutdown` accepted), `deallocate` and `restart` answer as ARM
does: 202 with `Azure-AsyncOperation` and `Location`; while the operation runs the VM is
`starting`/`stopping`/`deallocating` with provisioning state `Updating`, and its end state is set
when the operation completes (first poll, or `operation_seconds` later when nobody polls). An
action already in effect (`start` of a running VM, `powerOff` of a stopped one) is a 202 that
changes nothing; `powerOff` of a deallocated VM is 409 `OperationNotAllowed`, as ARM answers it.
While an operation holds the VM, every other write to it (action, PUT, PATCH, DELETE) is 409
`AnotherOperationInProgress` naming the operation to poll, as Microsoft.Compute answers
(Microsoft.Network answers 429). `PATCH` takes a `VirtualMachineUpdate`: `tags` given replace the
tags, `properties` given are merged one level deep. `Retry-After: 1` tells clients that poll on
their own schedule (the Azure CLI waits 30 s without it) to come back in a second: lab time is
short.
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
from gameday.lab.azure.operations import retry_after
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
        arm.route("PATCH", vms + rf"/(?P<vm>{NAME})", self.patch_vm)
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

    def _lister(self, request: Request) -> Any:
        """How a list renders each VM: `$expand=instanceView` adds its instance view."""
        expand = (request.arg("$expand") or "").lower().split(",")
        return lambda vm: self.render(vm, "instanceview" in expand)

    def list_vms(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.vms.in_group(*owner_of(group.id)), self._lister(request))

    def list_all(self, request: Request) -> Response:
        return self.arm.page(request, self.vms.in_subscription(request.params["sub"]),
                             self._lister(request))

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

    def ensure_idle(self, vm: Resource, doing: str) -> None:
        """409 AnotherOperationInProgress while an operation holds the VM, naming the operation's
        status URL, as Microsoft.Compute answers."""
        op = self.arm.operations.busy(vm.key)
        if op is None:
            return
        subscription = owner_of(vm.id)[0]
        status = (f"/subscriptions/{subscription}/providers/{NS}/locations/{op.location}/"
                  f"operations/{op.id}")
        raise ArmError(409, "AnotherOperationInProgress", f"Operation '{doing}' is not allowed: "
                       f"another operation ({op.name}) on this or dependent resource is in "
                       f"progress. To retrieve status of the operation use uri: {status}.",
                       {"Retry-After": str(retry_after(op))})

    def power_action(self, request: Request) -> Response:
        vm = self._existing(request)
        action = request.params["action"]
        self.ensure_idle(vm, action)
        during, after, name = POWER_ACTIONS[action]
        now = self.power.get(vm.key, "running")
        if action == "powerOff" and now == "deallocated":
            raise ArmError(409, "OperationNotAllowed", f"Operation 'powerOff' is not allowed on "
                           f"VM '{vm.name}' since the VM is deallocated or marked to be "
                           "deallocated.")
        if now != after or action == "restart":
            self.power[vm.key] = during
        vm.state = "Updating"

        def done() -> None:
            if self.vms.get(vm.id) is vm:
                self.power[vm.key] = after
                vm.state = "Succeeded"

        return self.arm.action_response(request, namespace=NS, location=vm.location or "",
                                        holds=vm.key, name=f"{name}Operation", on_done=done)

    def patch_vm(self, request: Request) -> Response:
        """A `VirtualMachineUpdate`: tags replaced when given, properties merged one level deep;
        zones and NICs are not changed here."""
        vm = self._existing(request)
        self.ensure_idle(vm, "Update VM")
        check_if_match(request, vm)
        body = body_of(request)
        if "zones" in body and [str(z) for z in body["zones"] or []] != vm.extra.get("zones", []):
            raise ArmError(409, "PropertyChangeNotAllowed", "Changing property 'zones' is not "
                           "allowed.")
        if "tags" in body:
            vm.tags = tags_of(body)
        for name, value in (body.get("properties") or {}).items():
            if name in _COMPUTED:
                continue
            current = vm.properties.get(name)
            vm.properties[name] = ({**current, **value} if isinstance(current, dict)
                                   and isinstance(value, dict) else value)
        vm.touch()
        return self.arm.write_response(request, vm, created=False, kind="virtualMachines",
                                       namespace=NS, location=vm.location or "", holds=vm.key,
                                       render=lambda: self.render(vm))

    def put_vm(self, request: Request) -> Response:
        vm_id = self._vm_id(request)
        existing = self.vms.get(vm_id)
        vm_id = existing.id if existing else vm_id
        if existing is not None:
            self.ensure_idle(existing, "Update VM")
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
        self.ensure_idle(vm, "Delete VM")
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
