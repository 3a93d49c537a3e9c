"""Replay safety: every recorded history replays on the current workflow code, as the worker runs it.

A change to a workflow that would make a GameDay in flight take a different path on replay (a
command added, removed or reordered without a `workflow.patched` guard, an activity renamed, a
payload the models no longer read) fails here instead of stranding a run's faults in production.
The histories come from real runs (`python -m tests.replay.record`, see record.py); replaying
them needs no server.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from temporalio.client import WorkflowHistory
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, WorkflowReplayResult

from gameday.codec import DATA_CONVERTER, ENCODING
from gameday.telemetry import setup_tracing
from tests.replay.record import COMPRESSED_SCENARIO, HISTORIES, SCENARIOS
from tests.support.runner import AsyncRunner
from worker import WORKFLOW_RUNNER
from workflows import all_workflows

ROOT = Path(__file__).resolve().parents[2]
RECORDED = sorted(HISTORIES.glob("*/*.json"))
COMPRESSED = base64.b64encode(ENCODING).decode()
"""The codec's encoding as a history's JSON spells it in a payload's metadata."""


@pytest.fixture(scope="module", autouse=True)
def tracing() -> None:
    """The worker's tracing plugin wants a replay-safe global tracer provider: install it exactly
    as the session's `servers` fixture does, so that whichever comes first, both get the same."""
    from tests.conftest import METRICS, SPANS

    setup_tracing("gameday-tests", SimpleSpanProcessor(SPANS), METRICS)


def replayer(data_converter: DataConverter = DATA_CONVERTER) -> Replayer:
    """A replayer configured as worker.py's workflow worker is: every workflow type it registers,
    its sandbox (`WORKFLOW_RUNNER`), gameday's data converter and the client's tracing plugin
    (gameday.connection.connect)."""
    return Replayer(workflows=all_workflows(), workflow_runner=WORKFLOW_RUNNER,
                    data_converter=data_converter,
                    plugins=[OpenTelemetryPlugin(add_temporal_spans=True)])


def load(path: Path) -> WorkflowHistory:
    """A recorded history; its file is named for its workflow id, which the replay needs (the
    GameDay derives its watchdog's id and its lease holder from it)."""
    return WorkflowHistory.from_json(path.stem, path.read_text())


def workflow_type(path: Path) -> str:
    first = json.loads(path.read_text())["events"][0]
    return str(first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def replay(runner: AsyncRunner, history: WorkflowHistory,
           data_converter: DataConverter = DATA_CONVERTER) -> WorkflowReplayResult:
    return runner.run(replayer(data_converter).replay_workflow(history, raise_on_replay_failure=False))


def why(failure: Exception) -> str:
    """The replay's reason in a line, e.g. `[TMPRL1100] Nondeterminism error: Child workflow machine
    does not handle this event (event 22, ActivityTaskScheduled)`, not the core's whole dump."""
    text = str(failure)
    found = re.search(r'message: "(.*?)(?:: HistoryEvent|", source)', text)
    reason = found.group(1) if found else text[:500]
    event = (re.search(r"event_id: (\d+),.*?event_type: (\w+)", text)
             or re.search(r"HistoryEvent\(id: (\d+), (\w+)\)", text))
    return reason + (f" (event {event.group(1)}, {event.group(2)})" if event else "")


async def replay_all(histories: list[WorkflowHistory]) -> dict[str, WorkflowReplayResult]:
    """Each history's replay, by workflow id, all through one replayer (one per history costs
    about 0.6 s each; one for all, about 0.2 s each)."""

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    results: dict[str, WorkflowReplayResult] = {}
    async with replayer().workflow_replay_iterator(each()) as replays:
        async for result in replays:
            results[result.history.workflow_id] = result
    return results


@pytest.fixture(scope="module")
def replayed(runner: AsyncRunner) -> dict[str, WorkflowReplayResult]:
    return runner.run(replay_all([load(path) for path in RECORDED]))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_recorded_history_replays_on_the_current_code(
        path: Path, replayed: dict[str, WorkflowReplayResult]) -> None:
    failure = replayed[path.stem].replay_failure
    if failure is not None:
        pytest.fail(f"{path.relative_to(ROOT)} ({workflow_type(path)}) no longer replays: {why(failure)}. "
                    "A run in flight would fail the same way: guard the change with "
                    "workflow.patched(), or, if no such run can exist, re-record with "
                    "`python -m tests.replay.record`", pytrace=False)


def test_every_scenario_has_its_histories() -> None:
    recorded = {path.parent.name for path in RECORDED}
    assert recorded == set(SCENARIOS), "re-record with `python -m tests.replay.record`"


def test_every_workflow_type_the_worker_registers_has_a_history() -> None:
    registered = {getattr(cls, "__temporal_workflow_definition").name for cls in all_workflows()}
    recorded = {workflow_type(path) for path in RECORDED}
    assert registered <= recorded, f"no recorded history of {sorted(registered - recorded)}"


def test_each_gameday_that_injected_has_its_watchdog_and_lease_histories() -> None:
    for scenario in {path.parent for path in RECORDED}:
        types = sorted(workflow_type(path) for path in scenario.glob("*.json"))
        if "GameDayWatchdog" in types:
            assert {"GameDayWorkflow", "GameDayLeases"} <= set(types), scenario.name


def test_compressed_payloads_replay_only_with_gamedays_codec(runner: AsyncRunner) -> None:
    """Large checkpoints are stored zlib-compressed (gameday/codec.py): the recorded scenario
    carries such payloads, and the replay reads them only through gameday's converter."""
    path = HISTORIES / COMPRESSED_SCENARIO / f"replay-{COMPRESSED_SCENARIO}.json"
    assert COMPRESSED in path.read_text(), f"{path.name} holds no compressed payload"
    with_codec = replay(runner, load(path)).replay_failure
    assert with_codec is None, why(with_codec)
    without_codec = dataclasses.replace(DATA_CONVERTER, payload_codec=None)
    assert replay(runner, load(path), without_codec).replay_failure is not None
