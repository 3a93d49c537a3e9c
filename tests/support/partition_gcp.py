"""The GCP region partition (`partition_regions`) as a `CloudLab` for the scenario suite.

The seeded lab: network `shop-vpc` (auto mode: one subnet per region); the step cuts us-central1
off us-east1 and europe-west1 with two deny rules (INGRESS, EGRESS), each a `POST` of a firewall
rule in apply and a `DELETE` in restore. The base snapshot lists every firewall rule.
"""

from __future__ import annotations

from typing import Any

from activities.gcp.blackhole import parse_description
from tests.support.clouds import GcpLab

REGION = "us-central1"
PEERS = ["us-east1", "europe-west1"]
NETWORK = "shop-vpc"


class GcpPartitionLab(GcpLab):
    apply_call = f"POST /compute/v1/projects/{GcpLab.project}/global/firewalls"
    restore_call = f"DELETE /compute/v1/projects/{GcpLab.project}/global/firewalls/"

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "partition_regions",
            "target": {"cloud": "gcp", "project": self.project, "region": REGION,
                       "peer_regions": PEERS, "network": NETWORK},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return 2  # one INGRESS and one EGRESS rule: a few ranges on each side

    def gameday_rules(self) -> list[dict[str, Any]]:
        return [rule for rule in self._get("global/firewalls").get("items", [])
                if parse_description(rule.get("description", ""))]

    def blackholed(self) -> bool:
        """Both deny rules exist, priority 0, one per direction."""
        rules = self.gameday_rules()
        return sorted(r["direction"] for r in rules if r["priority"] == 0
                      and r.get("denied")) == ["EGRESS", "INGRESS"]

    def add_target(self) -> str:
        raise NotImplementedError("a partition names its regions: nothing new can appear")
