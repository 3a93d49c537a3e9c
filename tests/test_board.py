"""The incident commander's board (gameday/board.py), on the statuses of real runs.

Each test runs a real GameDay against the lab's clouds, queries its `status`, `plan` and
`checkpoints` at the moments an IC looks (awaiting approval, active, restoring, closed), renders the
board from them and asserts on it; the workflow's own Current Details (the board the Temporal UI
shows, from the built-in `__temporal_workflow_metadata` query) must say the same. The approve and
abort signal inputs are taken from the board and sent as they stand, so a board whose JSON the
workflow would not accept fails here.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from gameday.board import BoardFacts, render_board
from gameday.lab.aws import acl_snapshot
from gameday.lab.faults import FaultRule
from gameday.plan import Checkpoint, ResolvedStep
from gameday.runbook import Runbook
from gameday.status import GameDayStatus
from tests.support.clouds import AwsLab, AzureLab, GcpLab
from tests.support.gameday import (
    APPROVER,
    abort,
    aws_zone_step,
    final,
    phase_is,
    runbook,
    start,
    status,
    step_state,
    wait_for,
)
from tests.support.health import HealthServer
from workflows.gameday import GameDayWorkflow

IN_EFFECT = ("injecting", "active", "restoring")


@pytest.fixture
def health():
    server = HealthServer()
    yield server
    server.stop()


def _steady(health: HealthServer, **extra: Any) -> dict[str, Any]:
    return {"interval": "1s", "tolerance": 2, "recovery_timeout": "2s",
            "probes": [{"name": "checkout", "http": {"url": health.url, "timeout": "1s"}}], **extra}


async def _board(handle: WorkflowHandle[Any, Any], book: Runbook) -> tuple[GameDayStatus, str, str]:
    """The status, the board rendered from the run's queries, and the workflow's own board."""
    current = await status(handle)
    plan = await handle.query(GameDayWorkflow.plan)
    checkpoints = await handle.query(GameDayWorkflow.checkpoints)
    states = {s.id: s.state for s in current.steps}
    # zone steps: the unit id is the step id; a unit is in effect while its step is
    in_effect = [(c.step_id, c) for c in checkpoints if states.get(c.step_id) in IN_EFFECT]
    facts = BoardFacts(workflow_id=handle.id, now=datetime.now(UTC), runbook=book,
                       plan=[ResolvedStep.model_validate(p) for p in plan],
                       in_effect=[(s, Checkpoint.model_validate(c)) for s, c in in_effect])
    own = (await handle.query("__temporal_workflow_metadata")).current_details
    return current, render_board(current, facts), own


def _paragraph(board: str, title: str) -> str:
    """The board's paragraph that starts with `**title`."""
    found = [p for p in board.split("\n\n") if p.startswith(f"**{title}")]
    assert found, f"no {title!r} paragraph in the board:\n{board}"
    return found[0]


def _signal_input(board: str, signal: str) -> dict[str, Any]:
    """The JSON the board says to paste into the UI's Send a Signal dialog for `signal`."""
    found = re.search(rf"Send a Signal `{signal}`: `(\{{.*?\}})`", board)
    assert found, f"no {signal} signal input in the board:\n{board}"
    return json.loads(found.group(1))


def _seed_three_clouds(servers: Any) -> tuple[AwsLab, GcpLab, AzureLab]:
    labs = AwsLab(servers), GcpLab(servers), AzureLab(servers)
    for lab in labs:
        lab.seed()
    return labs


def test_a_three_cloud_run_on_the_board_from_approval_to_close(servers, client, runner, task_queue,
                                                               health):
    aws, gcp, azure = _seed_three_clouds(servers)
    before = acl_snapshot()
    book = runbook({"parallel": [lab.zone_step(f"blackhole-{lab.cloud}", "5m") for lab in (aws, gcp, azure)]},
                   steady_state=_steady(health))

    async def scenario() -> dict[str, Any]:
        handle = await start(client, book, task_queue)
        seen: dict[str, Any] = {"id": handle.id}
        await wait_for(handle, phase_is("awaiting_approval"))
        seen["waiting"] = await _board(handle, book)
        # the approval exactly as the board gives it to paste into the UI, the approver filled in
        payload = _signal_input(seen["waiting"][1], "approve")
        await handle.signal("approve", {**payload, "approver": APPROVER})
        await wait_for(handle, lambda s: all(x.state == "active" for x in s.steps), what="all three cut")
        seen["active"] = await _board(handle, book)
        await handle.signal("abort", {**_signal_input(seen["active"][1], "abort"), "by": APPROVER})
        closed = await final(handle)
        seen["closed"] = (closed, *(await _board(handle, book))[1:])
        return seen

    seen = runner.run(scenario(), timeout=180)
    run_id = seen["id"]

    waiting, board, own = seen["waiting"]
    assert board.startswith("**test-gameday** · **awaiting_approval** · updated ")
    gate = _paragraph(board, "Awaiting approval of start")
    assert gate.startswith(f"**Awaiting approval of start**: 0 of 1, from {APPROVER}, second@example.com; "
                           "no approval by ")
    assert f"`gameday approve {run_id} --as <approver> --plan-hash {waiting.plan_hash}`" in gate
    assert _signal_input(board, "approve") == {"approver": "<approver>", "step": None,
                                               "plan_hash": waiting.plan_hash}
    assert re.fullmatch(rf"\*\*Deadline\*\*: every fault restored by {waiting.deadline:%Y-%m-%d %H:%M:%S} "
                        r"UTC \((9m\d+s|9m|10m) left\)", _paragraph(board, "Deadline"))
    assert _paragraph(board, "Cut now") == "**Cut now**: nothing"
    assert _paragraph(board, "Steady state") == "**Steady state**: not checked yet (every 1s)"
    assert f"`gameday abort {run_id} --as <you> --reason \"<why>\"`" in _paragraph(board, "Abort")
    assert _paragraph(own, "Awaiting approval of start") == gate

    active, board, own = seen["active"]
    assert "**active**" not in board and board.startswith("**test-gameday** · **running** · ")
    cut = _paragraph(board, "Cut now")
    counts = {lab.cloud: lab.target_count() for lab in (aws, gcp, azure)}
    assert cut.splitlines()[0] == f"**Cut now**: {sum(counts.values())} resources in 3 clouds"
    lines = cut.splitlines()[1:]
    assert [line.split(":")[0] for line in lines] == [
        "- **aws** blackhole_zone us-east-1a", "- **gcp** blackhole_zone us-central1-a",
        "- **azure** blackhole_zone eastus zone 1"]
    for line, (cloud, kind) in zip(lines, (("aws", "subnets"), ("gcp", "instances"), ("azure", "NICs")),
                                   strict=True):
        assert f": {counts[cloud]} {kind} `" in line
        assert line.endswith(f"(step blackhole-{cloud})")
    assert "`web-1-nic0`" in lines[2]
    for line, count in zip(lines, counts.values(), strict=True):
        assert line.count("`") == 2 * min(count, 3)
        assert (f"` +{count - 3} more (step" in line) == (count > 3)
    assert _paragraph(board, "Steady state").startswith("**Steady state**: passing at the last check, ")
    assert _paragraph(board, "Steady state").endswith("; 0 consecutive failed checks (tolerance 2)")
    assert "Awaiting approval" not in board
    assert _paragraph(own, "Cut now") == cut
    assert _paragraph(own, "Abort") == _paragraph(board, "Abort")

    closed, board, own = seen["closed"]
    assert closed.outcome == "aborted" and closed.restored is True
    assert board.startswith("**test-gameday** · **aborted** · hypothesis held: yes · every fault "
                            "restored: yes · ended ")
    assert f"aborted by {APPROVER}: \\<why\\>" in board
    assert _paragraph(board, "Cut now") == "**Cut now**: nothing; every fault is restored"
    assert "Abort" not in board and "Deadline" not in board
    assert own == board
    assert acl_snapshot() == before


def test_a_breach_and_a_retrying_restore_on_the_board(aws, servers, client, runner, task_queue, health):
    before = acl_snapshot()
    book = runbook(aws_zone_step(duration="5m"), steady_state=_steady(health))

    async def scenario() -> dict[str, Any]:
        handle = await start(client, book, task_queue)
        seen: dict[str, Any] = {}
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", {"approver": APPROVER, "step": None})
        await wait_for(handle, step_state("blackhole-use1a", "active"), what="the cut")
        # the restore meets a throttled EC2 until the board has been read
        servers.aws_faults(FaultRule(match=AwsLab.restore_call, status=503, code="RequestLimitExceeded",
                                     count=1000))
        health.status = 503
        await wait_for(handle, phase_is("restoring"), what="the breach's restore")
        seen["restoring"] = await _board(handle, book)
        servers.aws_faults()
        seen["closed"] = await final(handle)
        seen["closed_board"] = (await _board(handle, book))[1]
        return seen

    seen = runner.run(scenario(), timeout=180)
    restoring, board, own = seen["restoring"]
    assert "**restoring**" in board.splitlines()[0]
    assert "2 consecutive failed checks (tolerance 2): checkout: HTTP 503, expected 200" in board
    cut = _paragraph(board, "Cut now")
    assert re.search(r"\(step blackhole-use1a, restoring since \d\d:\d\d:\d\d UTC\)$", cut), cut
    assert "**Abort**" not in board  # it is stopping already
    assert _paragraph(board, "Restoring blackhole-use1a") == (
        "**Restoring blackhole-use1a**: its restore retries until it succeeds; the last failure of an "
        "attempt shows under Pending Activities")
    steady = _paragraph(board, "Steady state")
    assert steady.startswith("**Steady state**: FAILING at the last check, ")
    assert steady.endswith("; 2 consecutive failed checks (tolerance 2) (checkout: HTTP 503, expected 200)")
    assert _paragraph(own, "Cut now") == cut
    assert _paragraph(own, "Steady state") == steady

    closed, board = seen["closed"], seen["closed_board"]
    assert (closed.outcome, closed.hypothesis_held, closed.restored) == ("aborted", False, True)
    assert board.startswith("**test-gameday** · **aborted** · hypothesis held: no · every fault "
                            "restored: yes")
    assert _paragraph(board, "Cut now") == "**Cut now**: nothing; every fault is restored"
    assert acl_snapshot() == before


def test_a_region_blackhole_shows_each_zone_with_its_own_names(aws, client, runner, task_queue):
    before = acl_snapshot()
    step = {"id": "blackout-use1", "action": "blackhole_region", "duration": "5m",
            "target": {"cloud": "aws", "account": "123456789012", "region": "us-east-1",
                       "tags": {"gameday": "enabled"}}}
    book = runbook(step)

    async def scenario() -> tuple[GameDayStatus, str, GameDayStatus]:
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", {"approver": APPROVER, "step": None})
        active = await wait_for(handle, step_state("blackout-use1", "active"), what="the region cut")
        own = (await handle.query("__temporal_workflow_metadata")).current_details
        await handle.signal("abort", {"by": APPROVER, "reason": "seen"})
        return active, own, await final(handle)

    active, board, closed = runner.run(scenario(), timeout=120)
    cut = _paragraph(board, "Cut now").splitlines()
    assert cut[0] == f"**Cut now**: {active.steps[0].resources} resources in 1 cloud"
    zones = [re.match(r"- \*\*aws\*\* blackhole_region (us-east-1[a-z]): (\d+) subnets ", line)
             for line in cut[1:]]
    assert all(zones), cut
    assert len(zones) == 3 and sum(int(z.group(2)) for z in zones if z) == active.steps[0].resources
    for line, zone in zip(cut[1:], zones, strict=True):
        assert zone is not None
        names = re.findall(r"`([^`]+)`", line)
        assert names and all(name.endswith(zone.group(1)) or f"{zone.group(1)}-" in name for name in names)
        assert line.endswith("(step blackout-use1)")
    assert (closed.outcome, closed.restored) == ("aborted", True)
    assert acl_snapshot() == before


def test_a_failing_check_shows_on_the_board_while_the_watch_window_is_open(
        aws, client, runner, task_queue, health):
    """The watch holds a 5-minute window open; the board shows each failed check at once and the
    recovery after it (signal `steady_state_seen`), while a holding steady state writes nothing."""
    book = runbook(aws_zone_step(duration="5m"), steady_state=_steady(health, tolerance=100))

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        handle = await start(client, book, task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", {"approver": APPROVER, "step": None})
        await wait_for(handle, step_state("blackhole-use1a", "active"), what="the cut")
        await asyncio.sleep(3)  # three passing checks: nothing to tell
        seen["signals_while_passing"] = await _seen_signals(handle)
        health.status = 503
        failing = await wait_for(handle, lambda s: s.steady_state_now is not None
                                 and s.steady_state_now.consecutive_failures >= 2, what="2 failures")
        seen["failing"] = failing
        seen["failing_board"] = (await _board(handle, book))[2]
        health.status = 200
        seen["passing"] = await wait_for(handle, lambda s: s.steady_state_now is not None
                                         and s.steady_state_now.ok, what="the recovery")
        await abort(handle)
        seen["closed"] = await final(handle)
        seen["signals"] = await _seen_signals(handle)
        return seen

    seen = runner.run(scenario(), timeout=120)
    assert seen["signals_while_passing"] == []
    failing = seen["failing"]
    assert all(r.ok for r in failing.probe_checks)  # the window has not reported yet
    steady = _paragraph(seen["failing_board"], "Steady state")
    assert steady.startswith("**Steady state**: FAILING at the last check, ")
    assert (f"; {failing.steady_state_now.consecutive_failures} consecutive failed checks "
            "(tolerance 100) (checkout: HTTP 503, expected 200)") in steady
    signals = seen["signals"]
    # one signal per failed check, counting up, then one for the recovery; none for a passing check
    assert [s["ok"] for s in signals] == [False] * (len(signals) - 1) + [True]
    assert [s["consecutive_failures"] for s in signals] == [*range(1, len(signals)), 0]
    assert seen["closed"].outcome == "aborted"


async def _seen_signals(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    found = []
    async for event in handle.fetch_history_events():
        attributes = event.workflow_execution_signaled_event_attributes
        if event.HasField("workflow_execution_signaled_event_attributes") and \
                attributes.signal_name == "steady_state_seen":
            found.append(json.loads(attributes.input.payloads[0].data))
    return found
