"""The AWS region partition (`partition_regions`) as a `CloudLab` for the scenario suite.

From the lab's seed (`gameday.lab.aws.peering`): us-east-1's `shop` VPC reaches us-west-2 over a
cross-region peering (web, app and main route tables) and a peered transit gateway (app table).
The step cuts us-east-1 off us-west-2: the web and app subnets (explicitly on shared tables) and
the ops subnets (implicitly on the main table) move onto gameday copies; `batch` stays.
"""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AwsLab
from tests.support.gameday import ACCOUNT

CUT = {"10.2.0.0/16", "10.3.0.0/16"}


class AwsPartitionLab(AwsLab):
    apply_call = "ReplaceRouteTableAssociation"  # one per explicitly associated subnet
    restore_call = "ReplaceRouteTableAssociation"

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "partition_regions",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                       "peer_regions": ["us-west-2"]},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> set[str]:
        return {s for zone in self.topology["subnets"].values() for s in zone[:3]}

    def target_count(self) -> int:
        return len(self._targets())

    def snapshot(self) -> Any:
        from gameday.lab.aws.peering import route_snapshot

        return route_snapshot()

    def blackholed(self) -> bool:
        """Exactly the shop's subnets sit on gameday copies, none of which routes to us-west-2;
        the seeded tables are untouched."""
        snapshot = self.snapshot()
        tables, associations = snapshot["tables"], snapshot["associations"]
        copies = {t for t, v in tables.items() if v["tags"].get("gameday:run")}
        cut = {s for s, t in associations.items() if t in copies}
        routes = {dict(r).get("DestinationCidrBlock") for t in copies for r in tables[t]["routes"]}
        return cut == self._targets() and not routes & CUT and len(copies) == 3

    def add_target(self) -> str:
        raise NotImplementedError("a partition names its regions: nothing new is drifted in")
