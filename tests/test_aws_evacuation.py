"""AWS region evacuation: Route53 weighted records of the region to 0, then exactly back."""

from __future__ import annotations

from typing import Any

import boto3

from gameday.lab.aws import route53_snapshot
from gameday.lab.faults import FaultRule
from tests.support.gameday import (
    ACCOUNT,
    abort,
    approve,
    final,
    phase_is,
    runbook,
    start,
    step_state,
    wait_for,
)


def evacuate_step(duration: str | None = "3s", region: str = "us-east-1",
                  records: tuple[str, ...] = ("www.shop.example.com", "api.shop.example.com"),
                  **extra: Any) -> dict[str, Any]:
    step = {"id": f"evacuate-{region}", "action": "evacuate_region",
            "target": {"cloud": "aws", "account": ACCOUNT, "region": region,
                       "hosted_zone_id": "shop.example.com", "record_names": list(records)}}
    if duration:
        step["duration"] = duration
    return step | extra


def _weights() -> dict[str, int]:
    return {k: v["Weight"] for k, v in route53_snapshot().items() if "Weight" in v}


def test_evacuate_and_fail_back_exactly(aws, client, runner, task_queue):
    before = route53_snapshot()

    async def scenario():
        handle = await start(client, runbook(evacuate_step()), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("evacuate-us-east-1", "active"))
        during = _weights()
        return during, await handle.result()

    during, result = runner.run(scenario())
    east = {k: v for k, v in during.items() if k.endswith("|us-east-1")}
    others = {k: v for k, v in during.items() if not k.endswith("|us-east-1")}
    assert len(east) == 2 and set(east.values()) == {0}
    assert set(others.values()) == {100, 50}
    assert (result.outcome, result.restored) == ("completed", True)
    assert result.steps[0].resources == 2
    assert route53_snapshot() == before


def test_refused_when_no_positive_weight_would_remain(aws, client, runner, task_queue):
    route53 = boto3.client("route53", region_name="us-east-1")
    zone = aws["hosted_zone"]
    changes = [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": "www.shop.example.com.", "Type": "A", "SetIdentifier": region, "Weight": 0,
        "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.99"}]}} for region in ("us-west-2", "eu-west-1")]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})
    before = route53_snapshot()

    async def scenario():
        handle = await start(client, runbook(evacuate_step()), task_queue)
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "failed"
    assert "would leave www.shop.example.com (A) with no positive weight anywhere" in result.reason
    assert route53_snapshot() == before


def test_throttled_fail_back_restores_exactly(aws, servers, client, runner, task_queue):
    before = route53_snapshot()

    async def scenario():
        handle = await start(client, runbook(evacuate_step(duration="5m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("evacuate-us-east-1", "active"))
        servers.aws_faults(FaultRule(match="POST /2013-04-01/hostedzone/", count=2, status=400,
                                     code="Throttling"))
        await abort(handle)
        return await handle.result()

    result = runner.run(scenario(), timeout=120)
    assert (result.outcome, result.restored) == ("aborted", True)
    throttled = [c for c in servers.aws_calls() if c["injected"]]
    assert len(throttled) == 2
    assert route53_snapshot() == before
