"""The Azure power interruption (`stop_instances`) as a `CloudLab` for the scenario suite.

The lab is seeded with its powered-off VMs (`seed_azure(powered_off=True)`): in zone 1, `web-1`
and `app-1` run with `gameday=enabled`, `db-1` runs without it, `batch-1` is stopped and
`spare-1` deallocated, both with it. The targets are the two running tagged VMs.
"""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AzureLab
from tests.support.servers import Servers

MARKS = ("gameday-run", "gameday-step")


def power_of(vm: Any) -> str:
    """`running`, `stopped`, `deallocated`... from a VM read with its instance view."""
    for status in vm.instance_view.statuses or []:
        if (status.code or "").startswith("PowerState/"):
            return str(status.code).split("/", 1)[1]
    return ""


class AzurePowerLab(AzureLab):
    apply_call = "/powerOff"
    """`POST .../virtualMachines/<vm>/powerOff` (the fault-rule key has no query string)."""
    restore_call = "/start"
    """`POST .../virtualMachines/<vm>/start`."""

    def __init__(self, servers: Servers):
        super().__init__(servers)
        self.seeded: dict[str, str] = {}

    def seed(self) -> None:
        from gameday.lab.azure.seed import seed_azure

        assert self.servers.azure is not None
        self.servers.reset_azure()
        seed_azure(self.servers.azure.url, self.servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                   self.subscription, self.resource_group, powered_off=True)
        self.seeded = {name: vm["power"] for name, vm in self.snapshot().items()}
        self.servers.azure_faults()  # the seed's own power-offs are not the fault's calls

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step = super().zone_step(step_id, duration)
        step["action"] = "stop_instances"
        return step

    def _targets(self) -> set[str]:  # type: ignore[override]
        from gameday.lab.azure.seed import VMS

        return {vm for vm, zone, enabled, _ in VMS if zone == self.zone and enabled}

    def snapshot(self) -> Any:
        """Every VM's power state, zones and tags, as the instance view and the VM show them."""
        clients = self._connect()
        try:
            return {
                vm.name: {"power": power_of(vm), "zones": list(vm.zones or []),
                          "tags": dict(vm.tags or {})}
                for vm in clients.compute.virtual_machines.list(self.resource_group,
                                                                expand="instanceView")
            }
        finally:
            clients.close()

    def blackholed(self) -> bool:
        """Every target powered off (not deallocated) and marked; every other VM as seeded and
        unmarked."""
        snapshot = self.snapshot()
        targets = self._targets()
        for name, vm in snapshot.items():
            marked = all(mark in vm["tags"] for mark in MARKS)
            if name in targets:
                if vm["power"] != "stopped" or not marked:
                    return False
            elif vm["power"] != self.seeded.get(name) or any(m in vm["tags"] for m in MARKS):
                return False
        return targets <= set(snapshot)
