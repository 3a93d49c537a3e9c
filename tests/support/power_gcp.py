"""The GCP power interruption as a `CloudLab` for the scenario suite (tests/test_scenarios.py).

The seeded lab (`gameday.lab.gcp.seed`): in us-central1-a, `web-…-1`, `web-…-2` and `api-…-1` run
with `gameday=enabled` (the targets), `batch-…-1` carries the label but is stopped before any run,
`legacy-…-1` and the bastion run without it. The emulator keeps Compute Engine's timing here (a
power operation is RUNNING until `POWER_SECONDS` have passed, however it is polled).
"""

from __future__ import annotations

from typing import Any

import httpx

from activities.gcp.power import is_mark
from tests.support.clouds import GcpLab
from tests.support.servers import Servers

POWER_SECONDS = 0.5
"""How long the lab's stops and starts take: long enough to be seen, short enough for a suite."""


def realistic_power(servers: Servers, seconds: float = POWER_SECONDS) -> None:
    """Give the emulator Compute Engine's timing: power operations take `seconds` however they
    are polled (`reset_gcp` puts the emulator's default back)."""
    with servers.gcp.lock:
        servers.gcp.polls_hurry = False
        servers.gcp.power_seconds = seconds


class GcpPowerLab(GcpLab):
    apply_call = "/stop"
    restore_call = "/start"

    def seed(self) -> None:
        super().seed()
        realistic_power(self.servers)

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "stop_instances",
            "target": {"cloud": "gcp", "project": self.project, "zone": self.zone,
                       "labels": {"gameday": "enabled"}},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> set[str]:
        from gameday.lab.gcp.seed import lab_instances

        return {vm.name for vm in lab_instances()
                if vm.zone == self.zone and vm.labels.get("gameday") == "enabled" and vm.running}

    def target_count(self) -> int:
        return len(self._targets())

    def _get(self, path: str) -> dict[str, Any]:
        url = f"{self.servers.gcp.url}/compute/v1/projects/{self.project}/{path}"
        response = httpx.get(url, params={"maxResults": 500})
        response.raise_for_status()
        return response.json()

    def snapshot(self) -> Any:
        """Every instance's status, labels and tags, as the API shows them."""
        instances = {}
        for scope in self._get("aggregated/instances")["items"].values():
            for instance in scope.get("instances", []):
                instances[instance["name"]] = {"status": instance["status"],
                                               "labels": instance.get("labels", {}),
                                               "tags": instance["tags"].get("items", [])}
        return instances

    def blackholed(self) -> bool:
        """Every target is TERMINATED and carries gameday's marks; every other instance has its
        seeded status and no mark."""
        from gameday.lab.gcp.seed import lab_instances

        targets = self._targets()
        seeded = {vm.name: "RUNNING" if vm.running else "TERMINATED" for vm in lab_instances()}
        for name, instance in self.snapshot().items():
            marked = any(is_mark(key) for key in instance["labels"])
            if name in targets:
                if instance["status"] != "TERMINATED" or not marked:
                    return False
            elif marked or instance["status"] != seeded.get(name, "RUNNING"):
                return False
        return True

    def add_target(self) -> str:
        base = f"{self.servers.gcp.url}/compute/v1/projects/{self.project}"
        response = httpx.post(f"{base}/zones/{self.zone}/instances", json={
            "name": "late-web", "labels": {"gameday": "enabled", "tier": "web"},
            "machineType": f"zones/{self.zone}/machineTypes/e2-small",
            "networkInterfaces": [{"network": "global/networks/shop-vpc"}]})
        response.raise_for_status()
        return "late-web"
