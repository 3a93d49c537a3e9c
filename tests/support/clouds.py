"""One shape per cloud for the scenario suite: seed, name a zone fault, snapshot, inject faults.

The scenario suite (tests/test_scenarios.py) drives every cloud the same way through a `CloudLab`;
each cloud's lab is a small class here, registered in `CLOUD_LABS`.
"""

from __future__ import annotations

from typing import Any, Protocol

from lab.faults import FaultRule
from tests.support.gameday import ACCOUNT
from tests.support.servers import Servers


class CloudLab(Protocol):
    cloud: str
    apply_call: str
    """Fault-rule match for the per-resource mutation that apply makes."""
    restore_call: str
    """Fault-rule match for the per-resource mutation that restore makes."""

    def seed(self) -> None: ...
    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]: ...
    def target_count(self) -> int: ...
    def snapshot(self) -> Any: ...
    def blackholed(self) -> bool:
        """Every target of `zone_step` is cut off, and nothing else is."""
    def faults(self, *rules: FaultRule, seed: int = 0) -> None: ...
    def calls(self, match: str) -> list[dict[str, Any]]: ...


class AwsLab:
    cloud = "aws"
    apply_call = "ReplaceNetworkAclAssociation"
    restore_call = "ReplaceNetworkAclAssociation"

    def __init__(self, servers: Servers):
        self.servers = servers
        self.topology: dict[str, Any] = {}

    def seed(self) -> None:
        from lab.aws import seed_aws

        self.servers.reset_aws()
        self.topology = seed_aws()

    def zone_step(self, step_id: str, duration: str | None) -> dict[str, Any]:
        step: dict[str, Any] = {
            "id": step_id, "action": "blackhole_zone",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
                       "zone": "us-east-1a", "tags": {"gameday": "enabled"}},
        }
        if duration:
            step["duration"] = duration
        return step

    def _targets(self) -> list[str]:
        subnets = self.topology["subnets"]["us-east-1a"]
        return subnets[:-2] + subnets[-1:]  # all but the untagged ops subnet

    def target_count(self) -> int:
        return len(self._targets())

    def snapshot(self) -> Any:
        from lab.aws import acl_snapshot

        return acl_snapshot()

    def blackholed(self) -> bool:
        snapshot = self.snapshot()
        acls, associations = snapshot["acls"], snapshot["associations"]
        cut = {s for s, acl in associations.items() if acls[acl]["tags"].get("gameday:run")}
        return cut == set(self._targets())

    def faults(self, *rules: FaultRule, seed: int = 0) -> None:
        self.servers.aws_faults(*rules, seed=seed)

    def calls(self, match: str) -> list[dict[str, Any]]:
        return [c for c in self.servers.aws_calls() if match in c["key"]]


CLOUD_LABS: dict[str, type] = {"aws": AwsLab}
