"""Hostile input: malformed runbooks and signal payloads never crash anything, every refusal is one
sentence, and nothing changes in a cloud."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gameday.lab.aws import acl_snapshot
from gameday.loader import parse_runbook
from tests.support.gameday import aws_zone_step, phase_is, runbook, start, wait_for


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    # a named function, not a lambda: hypothesis parses a lambda's source to describe it, and
    # CPython 3.11's ast.parse can fail there ("AST constructor recursion depth mismatch")
    return st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "steps", "approvers", "max_duration", "guardrails", "id", "action",
                         "target", "cloud", "zone", "duration", "approver", "step", "reason", "by",
                         "x"]), children, max_size=5)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    _containers,
    max_leaves=12,
)


def _one_line_located(problems, name="rb.yaml") -> bool:
    return all("\n" not in str(p) and str(p).startswith(f"{name}:") for p in problems)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_runbook_or_located_problems(text):
    runbook_, problems = parse_runbook(text, "rb.yaml")
    assert (runbook_ is None) == bool(problems)
    assert _one_line_located(problems)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_yaml_document_is_a_runbook_or_located_problems(document):
    text = json.dumps(document)  # JSON is YAML
    runbook_, problems = parse_runbook(text, "rb.yaml")
    assert runbook_ is None and problems
    assert _one_line_located(problems)


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(json_values, min_size=5, max_size=12), json_values)
def test_malformed_signals_change_nothing_and_any_abort_aborts(aws, client, runner, task_queue,
                                                               payloads, abort_payload):
    before = acl_snapshot()

    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1m")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        for payload in payloads:
            await handle.signal("approve", payload)
            await handle.signal("reject", payload)
        waiting = await wait_for(handle, lambda s: len(
            [e for e in s.events if e.kind.endswith("_refused")]) >= len(payloads), timeout=30)
        await handle.signal("abort", abort_payload)
        return waiting, await handle.result()

    waiting, result = runner.run(scenario(), timeout=120)
    assert waiting.phase == "awaiting_approval"
    assert all("\n" not in e.detail for e in waiting.events)
    assert result.outcome == "aborted"
    assert acl_snapshot() == before


def test_a_null_approval_does_not_stop_the_run(aws, client, runner, task_queue):
    async def scenario():
        handle = await start(client, runbook(aws_zone_step(duration="1s")), task_queue)
        await wait_for(handle, phase_is("awaiting_approval"))
        await handle.signal("approve", None)
        await handle.signal("approve", {"approver": 5})
        current = await wait_for(handle, lambda s: sum(e.kind == "approval_refused"
                                                      for e in s.events) == 2)
        await handle.signal("approve", {"approver": "ic@example.com"})
        return current, await handle.result()

    current, result = runner.run(scenario())
    refused = [e.detail for e in current.events if e.kind == "approval_refused"]
    assert refused[1] == "5 is not an approver of this runbook"  # an identity is text (contract §7)
    assert result.outcome == "completed"

