"""Availability zones by physical identity (contract §11): in older AWS regions a zone's name
(`us-east-1a`) means a different physical zone in each account, while its zone ID (`use1-az6`)
means the same one everywhere. `AwsZones` maps between the two with the target account's own
`DescribeAvailabilityZones`, so that a step names a physical zone by `zone_id` and acts on the
zone of that name in its account, and every zone step's scope carries both.
"""

from __future__ import annotations

import threading

from activities.aws.api import AwsApi
from gameday.errors import TargetNotFound
from gameday.plan import Scope
from gameday.runbook import FaultStep
from gameday.targets import AwsZoned


class AwsZones:
    """Zone names and IDs of each account and region, asked once per worker: an account's mapping
    of names to zone IDs never changes."""

    def __init__(self, api: AwsApi):
        self.api = api
        self._ids: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def ids(self, account: str, region: str) -> dict[str, str]:
        """Zone name → zone ID, as `account` sees `region` (one paced call, then cached)."""
        with self._lock:
            known = self._ids.get((account, region))
        if known is not None:
            return known
        ec2 = self.api.client("ec2", region, account=account)
        zones = self.api.call("DescribeAvailabilityZones", ec2.describe_availability_zones)
        known = {str(z["ZoneName"]): str(z["ZoneId"]) for z in zones["AvailabilityZones"]
                 if z.get("ZoneId")}
        with self._lock:
            self._ids[(account, region)] = known
        return known

    def place(self, step: FaultStep, scope: Scope | None = None) -> FaultStep:
        """The step with its zone named both ways: a `zone_id` target gets the zone's name in its
        account (`TargetNotFound` when the account has no such zone in the region), a `zone`
        target its zone ID. `scope`, a resolve's answer, saves the call. A zone the account does
        not have by name is left to the fault, which says so as before."""
        target = step.target
        if not isinstance(target, AwsZoned):
            return step
        if scope is not None and scope.zone and scope.zone_id and target.zone in (None, scope.zone):
            return step.model_copy(update={"target": target.named(scope.zone, scope.zone_id)})
        ids = self.ids(target.account, target.region)
        if target.zone_id is None:
            zone_id = ids.get(target.zone_name)
            if zone_id is None:
                return step
            return step.model_copy(update={"target": target.named(target.zone_name, zone_id)})
        names = sorted(name for name, zone_id in ids.items() if zone_id == target.zone_id)
        if not names:
            known = ", ".join(f"{name} ({zone_id})" for name, zone_id in sorted(ids.items()))
            raise TargetNotFound(f"step {step.id}: zone ID {target.zone_id} is not a zone of "
                                 f"{target.region} in account {target.account} (its zones: "
                                 f"{known or 'none'})")
        return step.model_copy(update={"target": target.named(names[0], target.zone_id)})

    def scope(self, scope: Scope) -> Scope:
        """AWS scopes carry their zone ID from the placed target already (`Scope.of`)."""
        return scope
