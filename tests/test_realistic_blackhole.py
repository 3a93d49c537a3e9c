"""Issue 20's proof: a 453-subnet zone blackhole completes and restores exactly under rate limits.

The shape of the issue: 1,500 subnets in us-east-1 over six VPCs, 453 of them targets in
us-east-1a (tagged), 47 untagged there and the rest, tagged, in the other zones; every seventh
subnet on a custom ACL. The AWS proxy runs in realistic mode (100 ms per mutation, 40 ms per read,
EC2's buckets answering 503 `RequestLimitExceeded`).

Scaled for the suite: with EC2's real mutating bucket (burst 50, then 5 per second per action)
each direction would take ~(453 − 50) / 5 ≈ 80 s. Here `ReplaceNetworkAclAssociation` and the
other mutating actions get a burst of 1 and 40 per second (~11 s per direction), while the
worker's own pacing is told the bucket is far larger (`GAMEDAY_RATE_EC2_MUTATING=120/120`): its
first parallel calls alone overdraw the burst, so throttling is certain and heavy (hundreds of
503s), and the GameDay must treat it as back-pressure (`activities.throttle`), not failure.
Without that (botocore's retries, then the apply activity's bounded attempts) the same test
fails as issue 20 reports: the apply gives up with part of the zone cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gameday.lab.aws import acl_snapshot
from gameday.lab.aws.seed import seed_large_region
from gameday.lab.realistic import Bucket, RealisticConfig
from tests.support.gameday import approve, aws_zone_step, phase_is, runbook, start, wait_for

LAB_MUTATING = Bucket(burst=1, refill=40)
CLIENT_RATE = "120/120"
"""What the worker believes EC2's mutating bucket is: three times the lab's rate, 120× its burst."""


@pytest.fixture
def region(servers: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from activities.throttle import BUCKETS

    servers.reset_aws()
    topology = seed_large_region()
    monkeypatch.setenv("GAMEDAY_RATE_EC2_MUTATING", CLIENT_RATE)
    BUCKETS.clear()
    servers.aws_proxy.limits.configure(RealisticConfig(
        enabled=True, buckets={"ec2-mutating": LAB_MUTATING}))
    servers.aws_proxy.faults.clear_calls()
    try:
        yield topology
    finally:
        servers.aws_proxy.limits.configure(RealisticConfig())
        BUCKETS.clear()


def test_453_subnet_blackhole_completes_and_restores_exactly_under_rate_limits(
        region, servers, client, runner, task_queue):
    servers.aws_proxy.limits.configure(RealisticConfig())  # the snapshot is not the GameDay's
    before = acl_snapshot()
    servers.aws_proxy.limits.configure(RealisticConfig(
        enabled=True, buckets={"ec2-mutating": LAB_MUTATING}))
    targets = set(region["targets"])
    book = runbook(aws_zone_step(duration="5s"), guardrails={
        "aws_accounts": ["123456789012"], "max_resources_per_step": 500})

    async def scenario() -> tuple[Any, Any, Any]:
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"), timeout=120, what="approval gate")
        await approve(handle)
        during = await wait_for(handle, lambda s: s.active_faults == ["blackhole-use1a"],
                                timeout=300, what="the zone blackholed")
        snapshot = acl_snapshot()
        return during, snapshot, await handle.result()

    during, snapshot, result = runner.run(scenario(), timeout=900)
    limits = servers.aws_proxy.limits.report()
    servers.aws_proxy.limits.configure(RealisticConfig())
    after = acl_snapshot()

    print(f"served {limits['served']}, throttled {limits['throttled']}")
    assert limits["throttled"].get("ec2-mutating", 0) > 0, limits  # the premise: heavy throttling
    assert during.steps[0].resources == len(targets) == 453
    made = {acl for acl, found in snapshot["acls"].items() if found["tags"].get("gameday:run")}
    assert {s for s, acl in snapshot["associations"].items() if acl in made} == targets
    for acl in made:
        assert {(e[0], e[1], e[2]) for e in snapshot["acls"][acl]["entries"]} == {
            (1, False, "deny"), (2, False, "deny"), (1, True, "deny"), (2, True, "deny")}
    assert result.outcome == "completed" and result.restored, result.reason
    assert after == before
