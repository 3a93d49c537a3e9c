"""Microsoft.Compute virtual machine scale sets: sku, zones, tags, etag and automatic repairs.

`PUT` creates or replaces a scale set; `PATCH` takes a `VirtualMachineScaleSetUpdate` (tags given
replace the tags, properties merged one level deep, so `{"automaticRepairsPolicy": {"enabled":
false}}` keeps its grace period and repair action, as ARM merges a PATCH). Both are long-running
operations followed through `Azure-AsyncOperation` (the style of `virtualMachineScaleSets`); while
one runs, every other write to the set is 409 `AnotherOperationInProgress` with `Retry-After`, as
Microsoft.Compute answers for VMs. `If-Match` with a stale etag is 412. `automaticRepairsPolicy`
is checked as ARM checks it: `gracePeriod` an ISO 8601 duration from PT10M to PT90M, `repairAction`
one of Replace, Restart, Reimage. The lab keeps no instances: capacity is `sku.capacity`.
"""

from __future__ import annotations

import re
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
    not_found,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.compute import ZONES
from gameday.lab.azure.network import owner_of
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

NS = "Microsoft.Compute"
KIND = "virtualMachineScaleSets"
VMSS_TYPE = f"{NS}/{KIND}"
REPAIR_ACTIONS = ("Replace", "Restart", "Reimage")
_COMPUTED = {"provisioningState", "uniqueId", "timeCreated"}
_MINUTES = re.compile(r"^PT(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?$")


def check_repairs(policy: Any) -> None:
    """400 InvalidParameter for a policy ARM refuses."""
    if policy is None:
        return
    if not isinstance(policy, dict):
        raise ArmError(400, "InvalidParameter", "automaticRepairsPolicy must be an object.")
    grace = policy.get("gracePeriod")
    if grace is not None:
        found = _MINUTES.match(str(grace))
        minutes = (int(found["h"] or 0) * 60 + int(found["m"] or 0)) if found else -1
        if not 10 <= minutes <= 90:
            raise ArmError(400, "InvalidParameter", f"The value '{grace}' of parameter "
                           "'automaticRepairsPolicy.gracePeriod' is invalid: the grace period must "
                           "be between PT10M and PT90M.")
    action = policy.get("repairAction")
    if action is not None and action not in REPAIR_ACTIONS:
        raise ArmError(400, "InvalidParameter", f"The value '{action}' of parameter "
                       f"'automaticRepairsPolicy.repairAction' is invalid. Allowed values: "
                       f"{', '.join(REPAIR_ACTIONS)}.")


class ScaleSetsProvider:
    """Scale sets by id; the compute provider's operation guard answers while one is busy."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        self.sets = Table()
        base = GROUP + "/providers/Microsoft\\.Compute/virtualMachineScaleSets"
        arm.route("GET", base, self.list_sets)
        arm.route("GET", SUB + "/providers/Microsoft\\.Compute/virtualMachineScaleSets",
                  self.list_all)
        one = base + rf"/(?P<vmss>{NAME})"
        arm.route("GET", one, self.get_set)
        arm.route("PUT", one, self.put_set)
        arm.route("PATCH", one, self.patch_set)
        arm.route("DELETE", one, self.delete_set)

    def reset(self) -> None:
        self.sets.clear()

    def render(self, vmss: Resource) -> Json:
        return vmss.envelope({**vmss.properties, "provisioningState": vmss.state})

    def _id(self, request: Request) -> str:
        return f"{self.arm.group(request).id}/providers/{VMSS_TYPE}/{request.params['vmss']}"

    def _existing(self, request: Request) -> Resource:
        vmss = self.sets.get(self._id(request))
        if vmss is None:
            raise not_found(VMSS_TYPE, request.params["vmss"], request.params["rg"])
        return vmss

    def list_sets(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.sets.in_group(*owner_of(group.id)), self.render)

    def list_all(self, request: Request) -> Response:
        return self.arm.page(request, self.sets.in_subscription(request.params["sub"]),
                             self.render)

    def get_set(self, request: Request) -> Response:
        return respond(self.render(self._existing(request)))

    def put_set(self, request: Request) -> Response:
        vmss_id = self._id(request)
        existing = self.sets.get(vmss_id)
        if existing is not None:
            self.arm.compute.ensure_idle(existing, "Update VMSS")
        check_if_match(request, existing)
        body = body_of(request)
        location = require_location(body, existing)
        zones = [str(z) for z in body.get("zones") or []]
        if any(z not in ZONES for z in zones):
            raise ArmError(400, "InvalidParameter", f"The value {zones} of parameter 'zones' is "
                           f"invalid. Allowed values: {', '.join(ZONES)}.")
        props = {k: v for k, v in (body.get("properties") or {}).items() if k not in _COMPUTED}
        check_repairs(props.get("automaticRepairsPolicy"))
        old = existing.properties if existing else {}
        props["uniqueId"] = old.get("uniqueId") or str(uuid.uuid4())
        props["timeCreated"] = old.get("timeCreated") or datetime.now(UTC).isoformat()
        extra: Json = {"sku": body.get("sku") or {"name": "Standard_B2s", "capacity": 0}}
        if zones:
            extra["zones"] = zones
        vmss = Resource(id=existing.id if existing else vmss_id,
                        name=existing.name if existing else request.params["vmss"],
                        type=VMSS_TYPE, location=location, tags=tags_of(body), properties=props,
                        extra=extra)
        self.sets.put(vmss, *owner_of(vmss.id))
        return self.arm.write_response(request, vmss, created=existing is None, kind=KIND,
                                       namespace=NS, location=location, holds=vmss.key,
                                       render=lambda: self.render(vmss))

    def patch_set(self, request: Request) -> Response:
        """A `VirtualMachineScaleSetUpdate`: tags replaced when given, properties merged one level
        deep, `sku` merged; zones may not change."""
        vmss = self._existing(request)
        self.arm.compute.ensure_idle(vmss, "Update VMSS")
        check_if_match(request, vmss)
        body = body_of(request)
        if "zones" in body and [str(z) for z in body["zones"] or []] != vmss.extra.get("zones", []):
            raise ArmError(409, "PropertyChangeNotAllowed", "Changing property 'zones' is not "
                           "allowed.")
        given = {k: v for k, v in (body.get("properties") or {}).items() if k not in _COMPUTED}
        merged = {}
        for name, value in given.items():
            current = vmss.properties.get(name)
            merged[name] = ({**current, **value} if isinstance(current, dict)
                            and isinstance(value, dict) else value)
        check_repairs(merged.get("automaticRepairsPolicy"))
        vmss.properties.update(merged)
        if "tags" in body:
            vmss.tags = tags_of(body)
        if isinstance(body.get("sku"), dict):
            vmss.extra["sku"] = {**vmss.extra.get("sku", {}), **body["sku"]}
        vmss.touch()
        return self.arm.write_response(request, vmss, created=False, kind=KIND, namespace=NS,
                                       location=vmss.location or "", holds=vmss.key,
                                       render=lambda: self.render(vmss))

    def delete_set(self, request: Request) -> Response:
        vmss = self.sets.get(self._id(request))
        if vmss is None:
            return respond(None, 204)
        self.arm.compute.ensure_idle(vmss, "Delete VMSS")
        check_if_match(request, vmss)

        def remove() -> None:
            if self.sets.get(vmss.id) is vmss:
                self.sets.remove(vmss, *owner_of(vmss.id))

        return self.arm.delete_response(request, vmss, kind=KIND, namespace=NS,
                                        location=vmss.location or "", holds=vmss.key,
                                        remove=remove)


# --- the lab's scale sets -------------------------------------------------------------------

#: (scale set, zones, automatic repairs on, its autoscale setting enabled)
SCALE_SETS = [("web-vmss", ["1", "2", "3"], True, True), ("batch-vmss", ["1"], False, False)]


def seed_scale_sets(endpoint: str, ca_bundle: str, subscription: str, group: str,
                    location: str = "eastus") -> dict[str, Any]:
    """`web-vmss` over zones 1-3 with automatic repairs on and the enabled autoscale setting
    `web-vmss-autoscale`; `batch-vmss` in zone 1 with repairs off and the disabled setting
    `batch-vmss-autoscale`. Built through the real SDK models; create-or-update, so seeding twice
    leaves the same."""
    from azure.mgmt.compute import models as compute
    from azure.mgmt.monitor import models as insights

    from gameday.lab.azure.autoscale import monitor_client
    from gameday.lab.azure.clients import connect

    clients = connect(endpoint, ca_bundle, subscription)
    monitor = monitor_client(endpoint, ca_bundle, subscription)
    made: dict[str, Any] = {}
    try:
        for name, zones, repairs, autoscale in SCALE_SETS:
            vmss = clients.compute.virtual_machine_scale_sets.begin_create_or_update(
                group, name, compute.VirtualMachineScaleSet(
                    location=location, zones=zones, tags={"app": "shop"},
                    sku=compute.Sku(name="Standard_B2s", tier="Standard", capacity=3),
                    properties=compute.VirtualMachineScaleSetProperties(
                        upgrade_policy=compute.UpgradePolicy(mode="Automatic"),
                        automatic_repairs_policy=compute.AutomaticRepairsPolicy(
                            enabled=repairs, grace_period="PT30M", repair_action="Replace"),
                    ))).result()
            monitor.autoscale_settings.create_or_update(
                group, f"{name}-autoscale", insights.AutoscaleSettingResource(
                    location=location, tags={"app": "shop"}, enabled=autoscale,
                    target_resource_uri=vmss.id, profiles=[insights.AutoscaleProfile(
                        name="default", rules=[], capacity=insights.ScaleCapacity(
                            minimum="2", maximum="9", default="3"))]))
            made[name] = {"zones": zones, "repairs": repairs, "autoscale": autoscale}
    finally:
        clients.close()
        monitor.close()
    return made
