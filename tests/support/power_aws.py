"""The AWS power interruption (`stop_instances`) as a `CloudLab` for the scenario suite."""

from __future__ import annotations

from typing import Any

from tests.support.clouds import AwsLab
from tests.support.gameday import ACCOUNT

ZONE = "us-east-1a"


class AwsPowerLab(AwsLab):
    """Zone a of the lab: two running tagged web instances (one in the group `shop-web`), one
    tagged but already stopped, one untagged; the group also holds instances of zones b and c."""

    apply_call = "StopInstances"  # one call per group's batch, then the instances in none
    restore_call = "StartInstances"

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "stop_instances",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "tags": {"gameday": "enabled"}},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> set[str]:
        from gameday.lab.aws.fleet import FLEET

        return {self.topology["instances"][name] for name, zone, tagged, _, running in FLEET
                if zone == ZONE and tagged and running}

    def target_count(self) -> int:
        return len(self._targets())

    def snapshot(self) -> Any:
        from gameday.lab.aws.fleet import power_snapshot

        return power_snapshot()

    def blackholed(self) -> bool:
        """Exactly the targets are stopped beyond what was stopped at seed, each marked by
        gameday, and the group holding one of them has its healing suspended."""
        from gameday.lab.aws.fleet import FLEET, GROUP

        snapshot = self.snapshot()
        seeded_stopped = {self.topology["instances"][name] for name, *_, running in FLEET
                          if not running}
        stopped = {i for i, v in snapshot["instances"].items()
                   if v["state"] == "stopped" and i not in seeded_stopped}
        marked = {i for i, v in snapshot["instances"].items() if "gameday:run" in v["tags"]}
        group = snapshot["groups"][GROUP]
        return (stopped == marked == self._targets()
                and {"HealthCheck", "ReplaceUnhealthy"} <= set(group["suspended"])
                and any(key.startswith("gameday:hold:") for key in group["tags"]))

    def add_target(self) -> str:
        import boto3

        from gameday.lab.aws.fleet import launch

        ec2 = boto3.client("ec2", region_name="us-east-1")
        return launch(ec2, "late-web", self.topology["subnets"][ZONE][0],
                      {"gameday": "enabled", "tier": "web"})
