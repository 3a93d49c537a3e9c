"""The AWS capacity denial (`deny_capacity`) as a `CloudLab` for the scenario suite."""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AwsLab
from tests.support.gameday import ACCOUNT

ZONE = "us-east-1a"
NAMED = ["shop-web", "shop-app", "shop-jobs"]
"""`shop-web` and `shop-app` have a subnet in the zone (`shop-app` with `AZRebalance` suspended
already); `shop-jobs` has none (left out)."""
NARROWED = {"shop-web", "shop-app"}


class AwsCapacityLab(AwsLab):
    apply_call = "UpdateAutoScalingGroup"  # one per narrowed group
    restore_call = "UpdateAutoScalingGroup"

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "deny_capacity",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "auto_scaling_groups": NAMED},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(NARROWED)

    def snapshot(self) -> Any:
        from gameday.lab.aws.groups import capacity_snapshot

        return capacity_snapshot()

    def blackholed(self) -> bool:
        """The narrowed groups have no subnet in the zone any more, `AZRebalance` suspended and
        gameday's marks; no other group changed."""
        snapshot = self.snapshot()
        seeded = self.topology["auto_scaling_groups"] | {
            "shop-web": ",".join(self.topology["subnets"][z][0]
                                 for z in ("us-east-1a", "us-east-1b", "us-east-1c"))}
        zone_a = set(self.topology["subnets"][ZONE])
        for name, group in snapshot.items():
            subnets = group["subnets"].split(",")
            if name in NARROWED:
                wanted = [s for s in seeded[name].split(",") if s not in zone_a]
                if subnets != wanted or "AZRebalance" not in group["suspended"] or \
                        "gameday:run" not in group["tags"]:
                    return False
            elif group["subnets"] != seeded[name] or "gameday:run" in group["tags"]:
                return False
        return True
