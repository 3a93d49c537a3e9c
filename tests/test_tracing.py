"""One trace per GameDay: workflow, step, activity and cloud spans share it, with cloud attributes."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import SPANS
from tests.support.gameday import approve, aws_zone_step, phase_is, runbook, start, wait_for


def test_a_gameday_is_one_trace_with_cloud_spans(aws, client, runner, task_queue):
    SPANS.clear()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await handle.result()
        return handle.id

    workflow_id = runner.run(scenario())
    spans = [s for s in SPANS.get_finished_spans()
             if (s.attributes or {}).get("temporalWorkflowID") in (workflow_id, None)]
    by_name = {s.name: s for s in spans}
    root = by_name["StartWorkflow:GameDayWorkflow"]
    trace_id = root.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    parents = {s.context.span_id: s for s in in_trace}

    def ancestors(span):
        names = []
        while span.parent is not None and span.parent.span_id in parents:
            span = parents[span.parent.span_id]
            names.append(span.name)
        return names

    for verb in ("resolve", "prepare", "apply", "restore"):
        cloud = by_name[f"aws.{verb}_blackhole_zone"]
        assert cloud.context.trace_id == trace_id
        expected = {"cloud.provider": "aws", "cloud.region": "us-east-1",
                    "cloud.availability_zone": "us-east-1a", "gameday.resources": 3}
        assert {k: cloud.attributes.get(k) for k in expected} == expected
        chain = ancestors(cloud)
        assert chain[0] == f"RunActivity:aws.{verb}_blackhole_zone"
        assert chain[-1] == "StartWorkflow:GameDayWorkflow"
        assert "RunWorkflow:GameDayWorkflow" in chain
    apply_chain = ancestors(by_name["aws.apply_blackhole_zone"])
    assert "step blackhole-use1a" in apply_chain


def test_metrics_span_events_and_search_attributes(aws, client, runner, task_queue):
    from temporalio.common import SearchAttributeKey

    from tests.conftest import METRICS
    from tests.support.gameday import abort, step_state

    ZONES = SearchAttributeKey.for_keyword_list("GameDayZones")
    SPANS.clear()

    def aws_points(name: str) -> list:
        data = METRICS.get_metrics_data()
        return [point for resource in (data.resource_metrics if data else [])
                for scope in resource.scope_metrics for metric in scope.metrics
                if metric.name == name for point in metric.data.data_points
                if point.attributes.get("cloud.provider") == "aws"]

    active_before = sum(p.value for p in aws_points("gameday.faults.active"))
    restores_before = sum(p.count for p in aws_points("gameday.restore.duration"))

    async def scenario():
        import uuid

        from gameday.config import Settings
        from gameday.operations import start_options
        from gameday.status import GameDayInput
        from workflows.gameday import GameDayWorkflow

        book = runbook(aws_zone_step(duration="5m"))
        options = start_options(book, Settings(task_queue=task_queue, namespace="default"))
        handle = await client.start_workflow(GameDayWorkflow.run, GameDayInput(runbook=book),
                                             id=f"attrs-{uuid.uuid4().hex[:8]}", **options)
        await wait_for(handle, phase_is("awaiting_approval"))
        await approve(handle)
        await wait_for(handle, step_state("blackhole-use1a", "active"))
        cut = (await handle.describe()).typed_search_attributes.get(ZONES)
        deadline = time.monotonic() + 30
        while handle.id not in [w.id async for w in client.list_workflows(
                'GameDayZones = "aws:us-east-1a"')]:  # the saved view "dark in us-east-1a"
            assert time.monotonic() < deadline, "not listed by GameDayZones"
            await asyncio.sleep(0.2)
        await abort(handle, reason="metrics drill")
        await handle.result()
        return cut, (await handle.describe()).typed_search_attributes

    cut, attributes = runner.run(scenario())
    assert cut == ["aws:us-east-1a"]
    assert attributes.get(ZONES) is None  # nothing is cut once the run has closed
    assert attributes.get(SearchAttributeKey.for_keyword_list("GameDayClouds")) == ["aws"]
    assert attributes.get(SearchAttributeKey.for_keyword("GameDayOutcome")) == "aborted"
    assert attributes.get(SearchAttributeKey.for_keyword("GameDayPhase")) == "aborted"
    assert attributes.get(SearchAttributeKey.for_keyword("GameDayRunbook")) == "test-gameday"

    events = {event.name for span in SPANS.get_finished_spans() for event in span.events}
    assert {"gameday.approved", "gameday.abort_requested"} <= events

    # this run applied and restored one fault: the gauge is back where it was, one more restore
    assert sum(p.value for p in aws_points("gameday.faults.active")) == active_before
    assert sum(p.count for p in aws_points("gameday.restore.duration")) == restores_before + 1
