"""The AWS database failover (`failover_database`) as a `CloudLab` for the scenario suite."""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AwsLab
from tests.support.gameday import ACCOUNT

ZONE = "us-east-1a"
NAMED = ["orders", "payments", "catalog"]
"""The clusters the step names: `orders` and `payments` have their writer in the zone, `catalog`
has it in us-east-1b (left alone)."""


class AwsFailoverLab(AwsLab):
    apply_call = "FailoverDBCluster"
    restore_call = "FailoverDBCluster"

    def seed(self) -> None:
        from gameday.lab.aws.databases import seed_databases

        super().seed()
        seed_databases()

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "failover_database",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "db_clusters": NAMED},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return 2

    def snapshot(self) -> Any:
        from gameday.lab.aws.databases import database_snapshot

        return database_snapshot()

    def blackholed(self) -> bool:
        """`orders` and `payments` are led from outside the zone and tagged; nothing else moved."""
        snapshot = self.snapshot()
        moved = {name for name, c in snapshot.items() if not c["writer"].endswith("-1")}
        tagged = {name for name, c in snapshot.items() if "gameday:run" in c["tags"]}
        return moved == tagged == {"orders", "payments"} and \
            (snapshot["orders"]["writer"], snapshot["payments"]["writer"]) == ("orders-2", "payments-2")
