"""The GCP zonal evacuation (`evacuate_zone`) as a `CloudLab` for the scenario suite.

The seeded lab's global backend service `web` has backends in us-central1-a, us-central1-b and
us-east1-b; this lab adds `web-canary` over the two us-central1 groups, so that the step drains
two services, one PATCH each (a half-way apply changes one of them), and a service keeps
capacity outside the zone.
"""

from __future__ import annotations

from typing import Any

from google.cloud import compute_v1

from tests.support.clouds import GcpLab

ZONE = "us-central1-a"
SERVICES = ["web", "web-canary"]


class GcpZonalEvacuationLab(GcpLab):
    apply_call = f"PATCH /compute/v1/projects/{GcpLab.project}/global/backendServices/"
    restore_call = apply_call
    zone = ZONE

    def seed(self) -> None:
        from gameday.lab.gcp.seed import GcpClients

        super().seed()
        clients = GcpClients(self.servers.gcp.url)
        groups = [clients.groups.get(project=self.project, zone=zone,
                                     instance_group=f"web-{zone}").self_link
                  for zone in ("us-central1-a", "us-central1-b")]
        clients.wait(self.project, clients.services.insert_unary(
            project=self.project, backend_service_resource=compute_v1.BackendService(
                name="web-canary", protocol="HTTP", port_name="http",
                load_balancing_scheme="EXTERNAL", backends=[
                    compute_v1.Backend(group=groups[0], balancing_mode="UTILIZATION",
                                       capacity_scaler=0.5),
                    compute_v1.Backend(group=groups[1], balancing_mode="UTILIZATION")])))

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "evacuate_zone",
            "target": {"cloud": "gcp", "project": self.project, "zone": ZONE,
                       "backend_services": SERVICES},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(SERVICES)

    def backends(self) -> dict[str, list[tuple[str, Any]]]:
        """Each backend service's backends: (group, capacityScaler as the API shows it)."""
        return {service["name"]: sorted((b["group"].rsplit("/", 1)[-1], b.get("capacityScaler"))
                                        for b in service.get("backends", []))
                for service in self._get("global/backendServices").get("items", [])}

    def snapshot(self) -> Any:
        return {**super().snapshot(), "backends": self.backends()}

    def blackholed(self) -> bool:
        """Both services send the zone nothing; every other backend is as seeded."""
        return self.backends() == {
            "web": [("web-us-central1-a", 0.0), ("web-us-central1-b", 1.0),
                    ("web-us-east1-b", 1.0)],
            "web-canary": [("web-us-central1-a", 0.0), ("web-us-central1-b", 1.0)],
        }

    def add_target(self) -> str:
        raise NotImplementedError("evacuate_zone names its backend services")
