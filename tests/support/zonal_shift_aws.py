"""The AWS zonal evacuation (`evacuate_zone` through ARC zonal shift) as a `CloudLab` for the
scenario suite."""

from __future__ import annotations

from typing import Any

import boto3

from tests.support.clouds import AwsLab
from tests.support.gameday import ACCOUNT

ZONE = "us-east-1a"


class AwsZonalShiftLab(AwsLab):
    apply_call = "POST /zonalshifts"  # one StartZonalShift per load balancer
    restore_call = "DELETE /zonalshifts"

    def _arns(self) -> list[str]:
        return sorted(self.topology["load_balancers"].values())

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "evacuate_zone",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": ZONE,
                       "resources": self._arns()},
        }
        if duration:
            step["duration"] = duration
        return step

    def target_count(self) -> int:
        return len(self._arns())

    def snapshot(self) -> Any:
        from gameday.lab.aws.zonal_shift import zonal_shift_snapshot

        return zonal_shift_snapshot()

    def blackholed(self) -> bool:
        """Each load balancer has one active shift away from the zone's AZ ID, marked gameday."""
        ec2 = boto3.client("ec2", region_name="us-east-1")
        [zone] = ec2.describe_availability_zones(ZoneNames=[ZONE])["AvailabilityZones"]
        shifts = self.snapshot()
        return sorted(arn for arn, away, comment in shifts
                      if away == zone["ZoneId"] and comment.startswith("gameday ")) == self._arns() \
            and len(shifts) == len(self._arns())
