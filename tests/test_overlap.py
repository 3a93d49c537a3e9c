"""Two faults of one run never change one resource while both are in effect (found by the generated
runbooks: a zone step beside a region step over the same zone left NICs behind)."""

from __future__ import annotations

from gameday.lab.aws import acl_snapshot
from gameday.plan import ResolvedStep, Resource, Scope
from tests.support.gameday import aws_zone_step, final, phase_is, runbook, start, wait_for
from workflows.planning import overlap_problems

SCOPE = Scope(cloud="aws", account="123456789012", region="us-east-1", zone="us-east-1a")


def _resolved(step_id: str, *ids: str) -> ResolvedStep:
    return ResolvedStep(step_id=step_id, action="blackhole_zone", scope=SCOPE,
                        resources=[Resource(id=i, kind="subnet") for i in ids])


def test_steps_in_effect_together_may_not_share_a_resource():
    together = runbook({"parallel": [aws_zone_step("a", duration="2s"), aws_zone_step("b", duration="2s")]})
    [problem] = overlap_problems(together, [_resolved("a", "subnet-1", "subnet-2"),
                                            _resolved("b", "subnet-2")])
    assert problem.startswith("steps a and b would both change 1 resources") and "subnet-2" in problem
    assert overlap_problems(together, [_resolved("a", "subnet-1"), _resolved("b", "subnet-2")]) == []


def test_a_step_restored_before_the_next_one_starts_may_share_its_resources():
    one_after_the_other = runbook(aws_zone_step("a", duration="2s"), aws_zone_step("b", duration="2s"))
    assert overlap_problems(one_after_the_other, [_resolved("a", "subnet-1"),
                                                  _resolved("b", "subnet-1")]) == []
    held_to_the_end = runbook(aws_zone_step("a", duration=None, restore="with_run"),
                              aws_zone_step("b", duration="2s"))
    assert len(overlap_problems(held_to_the_end, [_resolved("a", "subnet-1"),
                                                  _resolved("b", "subnet-1")])) == 1


def test_a_power_interruption_beside_a_network_cut_of_its_instances_is_allowed():
    """A GCP blackhole changes an instance's network tags, a power interruption its power state:
    each restores only its own part. Two power interruptions of one instance still conflict."""
    stop = {"action": "stop_instances", "duration": "2s",
            "target": {"cloud": "gcp", "project": "gameday-lab", "zone": "us-central1-a"}}
    cut = {"id": "cut", "action": "blackhole_zone", "duration": "2s",
           "target": {"cloud": "gcp", "project": "gameday-lab", "zone": "us-central1-a"}}
    scope = Scope(cloud="gcp", account="gameday-lab", region="us-central1", zone="us-central1-a")
    instance = [Resource(id="web-1", kind="instance")]

    def resolved(step_id: str, action: str) -> ResolvedStep:
        return ResolvedStep(step_id=step_id, action=action, scope=scope, resources=instance)

    together = runbook({"parallel": [cut, {"id": "power", **stop}]})
    assert overlap_problems(together, [resolved("cut", "blackhole_zone"),
                                       resolved("power", "stop_instances")]) == []
    twice = runbook({"parallel": [{"id": "power", **stop}, {"id": "again", **stop}]})
    [problem] = overlap_problems(twice, [resolved("power", "stop_instances"),
                                         resolved("again", "stop_instances")])
    assert "(e.g. the power of web-1)" in problem


def test_a_run_whose_steps_overlap_is_refused_before_any_change(aws, client, runner, task_queue):
    before = acl_snapshot()
    region = {"id": "region", "action": "blackhole_region", "duration": "2s",
              "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                         "tags": {"gameday": "enabled"}}}

    async def scenario():
        handle = await start(client, runbook({"parallel": [aws_zone_step("zone", duration="2s"), region]}),
                             task_queue)
        await wait_for(handle, phase_is("failed"))
        return await final(handle)

    result = runner.run(scenario())
    assert result.outcome == "failed" and "steps zone and region would both change" in result.reason
    assert all(s.state == "skipped" for s in result.steps)
    assert acl_snapshot() == before
