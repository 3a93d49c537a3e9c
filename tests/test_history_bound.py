"""The GameDay's history stays bounded as the zone grows: one activity per fault and zone, however
many subnets it loops over, and payloads far below Temporal's limits (counts, never times)."""

from __future__ import annotations

from typing import Any

import boto3

from gameday.lab.aws import acl_snapshot
from gameday.lab.history import payload_sizes
from tests.support.gameday import approve, aws_zone_step, phase_is, runbook, start, wait_for

EVENT_BOUND = 150
"""A one-step GameDay with a short hold: start, plan, approval, lease, watchdog, prepare, apply,
timer, restore, release, end: 84 to 89 events, at 6 and at 60 subnets alike, when written."""
SLACK = 6
"""Event counts may differ by a few workflow tasks (completions batched or not, the watchdog
child's close racing the parent's)."""
PAYLOAD_WARNING = 256 * 1024


def _add_subnets(vpc: str, count: int, first_octet: int) -> None:
    """`count` more subnets tagged gameday=enabled in us-east-1a of `vpc`."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    for index in range(count):
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{first_octet + index}.0/24",
                          AvailabilityZone="us-east-1a", TagSpecifications=[
                              {"ResourceType": "subnet", "Tags": [
                                  {"Key": "gameday", "Value": "enabled"},
                                  {"Key": "Name", "Value": f"bulk-{first_octet + index}"}]}])


def _one_gameday(client, runner, task_queue) -> tuple[Any, int, int]:
    """Run a one-step blackhole of us-east-1a to completion: (result, events, largest payload)."""

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        result = await handle.result()
        history = await handle.fetch_history()
        sizes = [size for event in history.events for size in payload_sizes(event)]
        return result, len(history.events), max(sizes, default=0)

    return runner.run(scenario(), timeout=120)


def test_history_does_not_grow_with_the_zone(aws, client, runner, task_queue):
    shop = aws["vpcs"]["shop"]
    seeded = len(aws["subnets"]["us-east-1a"]) - 1  # the untagged ops subnet is no target
    _add_subnets(shop, 6 - seeded, 100)
    before = acl_snapshot()
    small, small_events, small_payload = _one_gameday(client, runner, task_queue)
    assert (small.outcome, small.restored) == ("completed", True)
    assert small.steps[0].resources == 6
    assert acl_snapshot() == before

    _add_subnets(shop, 54, 150)
    before = acl_snapshot()
    large, large_events, large_payload = _one_gameday(client, runner, task_queue)
    assert (large.outcome, large.restored) == ("completed", True)
    assert large.steps[0].resources == 60
    assert acl_snapshot() == before

    print(f"history: {small_events} events at 6 subnets, {large_events} at 60; largest payload "
          f"{small_payload} B and {large_payload} B")
    assert small_events < EVENT_BOUND and large_events < EVENT_BOUND, (small_events, large_events)
    assert abs(large_events - small_events) <= SLACK, (small_events, large_events)
    assert large_payload < PAYLOAD_WARNING, large_payload
    assert small_payload <= large_payload
