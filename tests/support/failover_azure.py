"""The Azure database failover (`failover_database`) as a `CloudLab` for the scenario suite.

The lab's flexible servers (`gameday.lab.azure.postgres.SERVERS`): `shop-db` and `carts-db` are
led from zone 1 (the targets), `orders-db` from zone 2 (named, left alone); a restart with
failover lasts `FAILOVER_SECONDS` here."""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AzureLab

NAMED = ["shop-db", "carts-db", "orders-db"]
TARGETS = {"shop-db": "2", "carts-db": "3"}
"""Each target and the zone its primary moves to."""
FAILOVER_SECONDS = 1.0


class AzureFailoverLab(AzureLab):
    apply_call = "/restart"
    """`POST .../flexibleServers/<server>/restart` (the fault-rule key has no query string)."""
    restore_call = "/restart"

    def seed(self) -> None:
        super().seed()
        assert self.servers.azure is not None
        with self.servers.azure.lock:
            self.servers.azure.postgres.failover_seconds = FAILOVER_SECONDS

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "failover_database",
            "target": {"cloud": "azure", "subscription": self.subscription,
                       "resource_group": self.resource_group, "region": "eastus",
                       "zone": self.zone, "servers": NAMED},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(TARGETS)

    def snapshot(self) -> Any:
        from gameday.lab.azure.postgres import server_snapshot

        assert self.servers.azure is not None
        return server_snapshot(self.servers.azure.url, self.servers.env["GAMEDAY_AZURE_CA_BUNDLE"],
                               self.subscription, self.resource_group)

    def blackholed(self) -> bool:
        """Each target led from its standby zone, Ready and tagged; nothing else moved or tagged."""
        snapshot = self.snapshot()
        moved = {name: s["zone"] for name, s in snapshot.items() if "gameday-run" in s["tags"]}
        settled = all(s["state"] == "Ready" for s in snapshot.values())
        return moved == TARGETS and settled and snapshot["orders-db"]["zone"] == "2"
