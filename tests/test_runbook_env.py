"""`${VAR}` and `${VAR:-default}` in runbook strings (contract §9): filled in by the loader from the
environment it is given, on the YAML nodes, so every problem keeps its file, line and field."""

from __future__ import annotations

import pytest

from gameday.loader import check_runbook, parse_runbook

RUNBOOK = """\
name: env-gameday
approvers: ["${APPROVER:-ic@example.com}"]
max_duration: 10m
guardrails: {aws_accounts: ["${ACCOUNT}"]}
steady_state:
  probes:
    - name: shop
      http: {url: "${SHOP_URL:-http://127.0.0.1:8270}/health", body_contains: "$${not-a-variable}"}
steps:
  - id: blackhole
    action: blackhole_zone
    target: {cloud: aws, account: "${ACCOUNT}", region: us-east-1, zone: "us-east-1${ZONE:-a}"}
    duration: 1m
"""


def test_variables_and_defaults_are_filled_in_from_the_given_environment():
    runbook, found = parse_runbook(RUNBOOK, "rb.yaml", {"ACCOUNT": "123456789012",
                                                        "SHOP_URL": "http://127.0.0.1:9999"})
    assert found == [] and runbook is not None
    probe = runbook.steady_state.probes[0].http
    assert probe.url == "http://127.0.0.1:9999/health"
    assert probe.body_contains == "${not-a-variable}"
    step = runbook.fault_steps()[0]
    assert (step.target.account, step.target.zone) == ("123456789012", "us-east-1a")
    assert runbook.approver_ids() == ["ic@example.com"]


def test_an_empty_variable_takes_the_default():
    runbook, found = parse_runbook(RUNBOOK, "rb.yaml", {"ACCOUNT": "123456789012", "ZONE": "",
                                                        "SHOP_URL": ""})
    assert found == [] and runbook is not None
    assert runbook.fault_steps()[0].target.zone == "us-east-1a"
    assert runbook.steady_state.probes[0].http.url == "http://127.0.0.1:8270/health"


def test_an_unset_variable_is_a_problem_on_each_line_that_uses_it():
    runbook, found = parse_runbook(RUNBOOK, "rb.yaml", {})
    assert runbook is None
    assert [str(p) for p in found] == [
        "rb.yaml:4: guardrails.aws_accounts[0]: ${ACCOUNT} is not set (give it a value or write "
        "${ACCOUNT:-default})",
        "rb.yaml:12: steps[0].target.account: ${ACCOUNT} is not set (give it a value or write "
        "${ACCOUNT:-default})",
    ]


@pytest.mark.parametrize("value", ["${1X}", "${X", "${X:-a", "${}", "${X-y}"])
def test_a_malformed_reference_is_a_problem(value):
    text = RUNBOOK.replace('"${APPROVER:-ic@example.com}"', f'"{value}"')
    runbook, found = parse_runbook(text, "rb.yaml", {"ACCOUNT": "123456789012"})
    assert runbook is None
    assert [str(p) for p in found] == [
        "rb.yaml:2: approvers[0]: a ${ that is not ${VAR} or ${VAR:-default} (write $${ for a literal ${)"]


def test_a_value_reached_through_an_alias_is_filled_in_once():
    text = RUNBOOK.replace("max_duration: 10m", 'max_duration: 10m\ndescription: &said "$${x} ${Y}"')
    text = text.replace("    duration: 1m", "    duration: 1m\n    description: *said")
    runbook, found = parse_runbook(text, "rb.yaml", {"ACCOUNT": "123456789012", "Y": "$${y}"})
    assert found == [] and runbook is not None
    assert runbook.description == runbook.fault_steps()[0].description == "${x} $${y}"


def test_the_process_environment_is_the_default(tmp_path, monkeypatch):
    path = tmp_path / "rb.yaml"
    path.write_text(RUNBOOK)
    monkeypatch.setenv("ACCOUNT", "123456789012")
    runbook, found = check_runbook(path)
    assert found == [] and runbook is not None
    monkeypatch.delenv("ACCOUNT")
    assert check_runbook(path)[0] is None


def test_the_workflow_gets_the_substituted_runbook():
    """Substitution is the loader's: the model the workflow deserialises has no `${` left."""
    runbook, _ = parse_runbook(RUNBOOK, "rb.yaml", {"ACCOUNT": "123456789012"})
    assert runbook is not None
    assert "${ACCOUNT" not in runbook.model_dump_json()
