"""The Azure capacity denial (`deny_capacity`) as a `CloudLab` for the scenario suite.

The lab seeds `web-vmss` (zones 1-3, repairs on, its setting `web-vmss-autoscale` enabled) and
`batch-vmss` (repairs off, its setting disabled). The step names both: the fault changes the two
resources of `web-vmss` and must leave `batch-vmss` and its setting exactly as they were.
"""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AzureLab

NAMED = ["web-vmss", "batch-vmss"]
MARKS = ("gameday-run", "gameday-step")


class AzureCapacityLab(AzureLab):
    apply_call = f"PATCH /subscriptions/{AzureLab.subscription}/resource"
    """Every PATCH of a scale set or an autoscale setting (`resourceGroups`, `resourcegroups`)."""
    restore_call = apply_call

    def seed(self) -> None:
        super().seed()
        self.servers.azure_faults()  # the seed's own writes are not the fault's calls

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "deny_capacity",
            "target": {"cloud": "azure", "subscription": self.subscription,
                       "resource_group": self.resource_group, "region": "eastus",
                       "scale_sets": NAMED},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return 2

    def snapshot(self) -> Any:
        """Every scale set's repairs policy, zones and tags; every setting's enabled and tags."""
        from gameday.lab.azure.autoscale import monitor_client

        assert self.servers.azure is not None
        clients = self._connect()
        monitor = monitor_client(self.servers.azure.url,
                                 self.servers.env["GAMEDAY_AZURE_CA_BUNDLE"], self.subscription)
        try:
            sets = {}
            for vmss in clients.compute.virtual_machine_scale_sets.list(self.resource_group):
                policy = vmss.automatic_repairs_policy
                sets[vmss.name] = {
                    "repairs": (policy.enabled, policy.grace_period, policy.repair_action)
                    if policy else None,
                    "zones": list(vmss.zones or []), "tags": dict(vmss.tags or {})}
            settings = {
                s.name: {"enabled": s.enabled, "target": s.target_resource_uri.lower(),
                         "tags": dict(s.tags or {})}
                for s in monitor.autoscale_settings.list_by_resource_group(self.resource_group)}
        finally:
            clients.close()
            monitor.close()
        return {"scale_sets": sets, "settings": settings}

    def blackholed(self) -> bool:
        """`web-vmss` has repairs off and its setting disabled, both marked; `batch-vmss` and its
        setting as seeded and unmarked."""
        snapshot = self.snapshot()
        web, batch = snapshot["scale_sets"]["web-vmss"], snapshot["scale_sets"]["batch-vmss"]
        on, off = snapshot["settings"]["web-vmss-autoscale"], snapshot["settings"]["batch-vmss-autoscale"]
        marked = all(m in web["tags"] and m in on["tags"] for m in MARKS)
        untouched = not any(m in batch["tags"] or m in off["tags"] for m in MARKS)
        return (marked and untouched and web["repairs"] == (False, "PT30M", "Replace")
                and on["enabled"] is False and batch["repairs"] == (False, "PT30M", "Replace")
                and off["enabled"] is False)
