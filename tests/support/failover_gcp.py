"""The GCP database failover (`failover_database`) as a `CloudLab` for the scenario suite.

The seeded lab (`gameday.lab.gcp.sqladmin.LAB_DATABASES`): `shop-db` and `orders-db` are HA with
their primary in us-central1-a (the targets), `ledger-db` is HA led from us-central1-b (named,
left alone). `reports-db` has no HA and is not named (it would be refused).
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.clouds import GcpLab

NAMED = ["shop-db", "orders-db", "ledger-db"]
FAILOVER_SECONDS = 0.5
"""How long the lab's failovers take: long enough to be seen, short enough for a suite."""


def sql_snapshot(url: str, project: str) -> dict[str, Any]:
    """Every Cloud SQL instance's primary and standby zone, state and labels, as the API shows
    them (not `settingsVersion`, which every label change moves on)."""
    response = httpx.get(f"{url}/v1/projects/{project}/instances")
    response.raise_for_status()
    return {i["name"]: {"zone": i["gceZone"], "standby": i.get("secondaryGceZone"),
                        "state": i["state"], "labels": i["settings"].get("userLabels", {})}
            for i in response.json().get("items", [])}


class GcpFailoverLab(GcpLab):
    apply_call = "/failover"
    restore_call = "/failover"

    def seed(self) -> None:
        super().seed()
        with self.servers.gcp.lock:
            self.servers.gcp.failover_seconds = FAILOVER_SECONDS

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "failover_database",
            "target": {"cloud": "gcp", "project": self.project, "zone": self.zone,
                       "instances": NAMED},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return 2

    def snapshot(self) -> Any:
        return sql_snapshot(self.servers.gcp.url, self.project)

    def blackholed(self) -> bool:
        """`shop-db` and `orders-db` are led from their standby's zone and marked; nothing else
        moved or carries a mark."""
        snapshot = self.snapshot()
        moved = {name for name, i in snapshot.items() if i["zone"] != self.zone}
        marked = {name for name, i in snapshot.items() if "gameday-run" in i["labels"]}
        return moved - {"ledger-db"} == marked == {"shop-db", "orders-db"} and \
            (snapshot["shop-db"]["zone"], snapshot["orders-db"]["zone"]) == \
            ("us-central1-b", "us-central1-c") and snapshot["ledger-db"]["zone"] == "us-central1-b"
