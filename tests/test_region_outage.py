"""A whole-region outage as practised: evacuate, black out every zone, soak, then fail back in
reverse order (zones first, traffic last), on success and on abort alike."""

from __future__ import annotations

from gameday.lab.aws import acl_snapshot, route53_snapshot
from tests.support.gameday import ACCOUNT, abort, approve, phase_is, runbook, start, step_state, wait_for
from tests.test_aws_evacuation import evacuate_step

REGION_STEP = {
    "id": "blackout-use1", "action": "blackhole_region",
    "target": {"cloud": "aws", "account": ACCOUNT, "region": "us-east-1",
               "tags": {"gameday": "enabled"}},
}


def _restore_calls(servers) -> list[str]:
    keys = []
    for call in servers.aws_calls():
        if call["key"] == "ReplaceNetworkAclAssociation":
            keys.append("zone")
        elif call["key"].startswith("POST") and "/rrset" in call["key"]:
            keys.append("traffic")
    return keys


def test_blackhole_region_cuts_every_zone_with_one_checkpoint_each(aws, client, runner, task_queue):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook({**REGION_STEP, "duration": "3s"}), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        during = await wait_for(handle, step_state("blackout-use1", "active"))
        return during, acl_snapshot(), await handle.result()

    during, snapshot, result = runner.run(scenario())
    assert during.steps[0].resources == 9  # three tagged subnets in each of three zones
    gameday_acls = {acl for acl, a in snapshot["acls"].items() if a["tags"].get("gameday:run")}
    steps = {snapshot["acls"][a]["tags"]["gameday:step"] for a in gameday_acls}
    assert steps == {"blackout-use1-us-east-1a", "blackout-use1-us-east-1b", "blackout-use1-us-east-1c"}
    restored = [e.detail for e in result.events if e.kind == "restored"]
    assert [d.split(":")[0] for d in restored] == [
        "blackout-use1-us-east-1c", "blackout-use1-us-east-1b", "blackout-use1-us-east-1a"]
    assert (result.outcome, result.restored) == ("completed", True)
    assert acl_snapshot() == before


def test_abort_during_the_soak_restores_zones_first_and_traffic_last(aws, servers, client, runner,
                                                                     task_queue):
    acls, records = acl_snapshot(), route53_snapshot()
    steps = [evacuate_step(duration=None, restore="with_run"),
             {**REGION_STEP, "restore": "with_run"},
             {"id": "soak", "action": "wait", "duration": "5m"}]

    async def scenario():
        handle = await start(client, runbook(*steps), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("soak", "active"))
        servers.aws_faults()  # clears the call log: from here on, only the fail-back
        await abort(handle, reason="soak broke checkout")
        return await handle.result()

    result = runner.run(scenario())
    assert (result.outcome, result.restored) == ("aborted", True)
    order = _restore_calls(servers)
    assert order.count("traffic") == 1 and order[-1] == "traffic"
    assert order.count("zone") == 9
    assert acl_snapshot() == acls and route53_snapshot() == records


def test_a_completed_region_outage_fails_back_in_the_same_order(aws, servers, client, runner,
                                                                task_queue):
    steps = [evacuate_step(duration=None, restore="with_run"),
             {**REGION_STEP, "restore": "with_run"},
             {"id": "soak", "action": "wait", "duration": "2s"}]

    async def scenario():
        handle = await start(client, runbook(*steps), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("soak", "active"))
        servers.aws_faults()
        return await handle.result()

    result = runner.run(scenario())
    assert (result.outcome, result.restored) == ("completed", True)
    order = _restore_calls(servers)
    assert order[-1] == "traffic" and set(order[:-1]) == {"zone"}
