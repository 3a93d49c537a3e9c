"""Runbook validation: every problem is one line naming file, line and field, never a traceback."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gameday.durations import LONGEST, format_duration, parse_duration
from gameday.loader import check_runbook, parse_runbook
from gameday.runbook import Runbook
from gameday.units import zone_unit_id

ROOT = Path(__file__).resolve().parent.parent

VALID = """\
name: q4-us-east-zone-outage
approvers: [ic@example.com]
max_duration: 2h
guardrails:
  aws_accounts: ["123456789012"]
steps:
  - id: blackhole-aws-use1a
    action: blackhole_zone
    target: {cloud: aws, account: "123456789012", region: us-east-1, zone: us-east-1a}
    duration: 15m
"""


def problems(text: str) -> list[str]:
    runbook, found = parse_runbook(text, "rb.yaml")
    assert runbook is None
    return [str(p) for p in found]


def test_the_contract_example_is_valid():
    runbook, found = parse_runbook(VALID, "rb.yaml")
    assert found == []
    assert runbook is not None and runbook.steps[0].duration == timedelta(minutes=15)


@pytest.mark.parametrize("text, expected", [
    ("", "rb.yaml:1: runbook: the file is empty"),
    ("a: [\n", "rb.yaml:2: yaml: not valid YAML"),
    ("- a\n- b\n", "rb.yaml:1: runbook: a runbook is a mapping of fields, not a list"),
    ("just text\n", "rb.yaml:1: runbook: a runbook is a mapping of fields, not a str"),
    ("name: a\nname: b\n", 'rb.yaml:2: yaml: found duplicate key "name"'),
    (VALID.replace("zone: us-east-1a", "zone: us-west-2a"),
     "rb.yaml:9: steps[0].target: zone 'us-west-2a' is not in region us-east-1"),
    (VALID.replace("duration: 15m", "duration: ten minutes"),
     "rb.yaml:10: steps[0].duration: 'ten minutes' is not a duration; write it like 90s, 15m or 2h"),
    (VALID.replace("approvers: [ic@example.com]", "approvers: []"), "rb.yaml:2: approvers:"),
    (VALID + "  - id: blackhole-aws-use1a\n    action: wait\n    duration: 1m\n",
     "rb.yaml:11: steps[1].id: step id 'blackhole-aws-use1a' is used more than once"),
    (VALID.replace("max_duration: 2h", "max_duration: 2h\ncolour: red"), "rb.yaml:4: colour: unknown field"),
    (VALID.replace("duration: 15m", "duration: 15m\n    expect: {recover_within: 5m}"),
     "rb.yaml:11: steps[0].expect: step 'blackhole-aws-use1a' expects recovery within 5m, but the "
     "runbook has no steady_state to measure it against"),
    (VALID.replace("duration: 15m", "duration: 15m\n    expect: {recover_within: soon}"),
     "rb.yaml:11: steps[0].expect.recover_within:"),
    (VALID.replace("action: blackhole_zone", "action: explode"),
     "rb.yaml:8: steps[0].action: action must be one of 'blackhole_zone', 'blackhole_region', "
     "'evacuate_region', 'stop_instances', 'deny_capacity', 'failover_database', "
     "'partition_regions', 'evacuate_zone', 'wait', not 'explode'"),
    (VALID.replace("cloud: aws", "cloud: oracle"),
     "rb.yaml:9: steps[0].target.cloud: cloud must be one of 'aws', 'gcp', 'azure', not 'oracle'"),
    (VALID.replace("max_duration: 2h", "max_duration: 10m"),
     "the steps take at least 15m but max_duration is 10m"),
    (VALID.replace("name: q4-us-east-zone-outage", "name: Q4 Outage"),
     "rb.yaml:1: name: use lowercase letters, digits and '-' only"),
])
def test_problems_name_file_line_and_field(text, expected):
    found = problems(text)
    assert any(expected in line for line in found), found


def test_every_problem_is_reported_at_once():
    text = VALID.replace("zone: us-east-1a", "zone: us-west-2a")
    text = text.replace("max_duration: 2h", "max_duration: x")
    assert len(problems(text)) == 2


def test_unquoted_account_ids_keep_their_leading_zeros():
    text = VALID.replace('"123456789012"', "012345678901")
    runbook, found = parse_runbook(text.replace("aws_accounts: [012345678901]",
                                                'aws_accounts: ["012345678901"]'))
    assert found == [] and runbook is not None
    assert runbook.fault_steps()[0].target.account == "012345678901"


def test_missing_and_unreadable_files_are_problems_not_exceptions(tmp_path):
    assert str(check_runbook(tmp_path / "nope.yaml")[1][0]).endswith("file: no such file")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert check_runbook(binary)[0] is None


def test_durations_round_trip():
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert format_duration(timedelta(seconds=5400)) == "1h30m"
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert format_duration(timedelta(milliseconds=1500)) == "1s500ms"
    assert parse_duration(format_duration(timedelta(minutes=2, milliseconds=5))) == timedelta(
        minutes=2, milliseconds=5)
    with pytest.raises(ValueError):
        parse_duration("0s")


def test_a_runbook_survives_a_json_round_trip():
    runbook, _ = parse_runbook(VALID)
    assert runbook is not None
    assert Runbook.model_validate_json(runbook.model_dump_json()) == runbook


def test_json_schema_is_closed():
    schema = Runbook.model_json_schema()
    assert schema["additionalProperties"] is False
    assert json.dumps(schema)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("runbooks/**/*.yaml")))
def test_shipped_runbooks_are_valid(path):
    runbook, found = check_runbook(ROOT / path)
    assert found == [], [str(p) for p in found]


# --- identities (contract §7, defect 1) --------------------------------------------------------


def test_approvers_are_normalised_and_distinct_after_normalisation():
    runbook, found = parse_runbook(VALID.replace("[ic@example.com]", '[" IC@Example.com ", sre@x.io]'))
    assert found == [] and runbook is not None
    assert runbook.approver_ids() == ["ic@example.com", "sre@x.io"]
    text = VALID.replace("approvers: [ic@example.com]",
                         'approvers:\n  - ic@example.com\n  - "IC@example.com "\napprovals_required: 2')
    assert problems(text) == [
        "rb.yaml:4: approvers[1]: ic@example.com is listed more than once (approvers are compared "
        "without case and surrounding spaces)",
        "rb.yaml:5: approvals_required: approvals_required is 2 but only 1 distinct approvers are listed",
    ]


def test_a_blank_approver_is_refused_on_its_line():
    text = VALID.replace("approvers: [ic@example.com]", 'approvers:\n  - ic@example.com\n  - "  "')
    assert problems(text) == ["rb.yaml:4: approvers[1]: an identity must not be blank"]


def test_a_bool_is_not_a_count():
    text = VALID.replace("max_duration: 2h", "max_duration: 2h\napprovals_required: true")
    assert problems(text) == ["rb.yaml:4: approvals_required: Input should be a valid integer"]


# --- what validate can refuse without a cloud (defect 5) ---------------------------------------


@pytest.mark.parametrize("guardrails, listed", [
    ('aws_accounts: ["999999999999"]', "999999999999"),
    ("gcp_projects: [gameday-lab]", "none listed"),
])
def test_a_target_outside_the_runbooks_own_guardrails_is_refused(guardrails, listed):
    text = VALID.replace('aws_accounts: ["123456789012"]', guardrails)
    assert problems(text) == [
        "rb.yaml:9: steps[0].target.account: aws account 123456789012 is not in the runbook's "
        f"guardrails (guardrails.aws_accounts: {listed})"]


STEADY = """\
steady_state:
  interval: {interval}
  probes:
    - name: shop
      http: {{url: "http://127.0.0.1:8270/health", timeout: {timeout}}}
"""


@pytest.mark.parametrize("interval, timeout, expected", [
    ("1ms", "2s", "rb.yaml:5: steady_state.interval: 1ms is too short; check the steady state at "
                  "most once every 1s"),
    ("3h", "2s", "rb.yaml:5: steady_state.interval: 3h is longer than max_duration (2h)"),
    ("15s", "3h", "rb.yaml:8: steady_state.probes[0].http.timeout: 3h is longer than max_duration (2h)"),
])
def test_steady_state_timing_is_bounded(interval, timeout, expected):
    text = VALID.replace("guardrails:", STEADY.format(interval=interval, timeout=timeout) + "guardrails:")
    assert problems(text) == [expected]


def test_drift_is_checked_at_most_once_a_second():
    text = VALID.replace("max_duration: 2h", "max_duration: 2h\ndrift_interval: 10ms")
    assert problems(text) == ["rb.yaml:4: drift_interval: 10ms is too short; look for new resources "
                              "at most once every 1s"]
    assert parse_runbook(VALID.replace("max_duration: 2h", "max_duration: 2h\ndrift_interval: null"))[1] == []


def test_a_fault_held_for_no_time_is_refused():
    held = VALID.replace("    duration: 15m\n", "")
    assert problems(held) == ["rb.yaml:7: steps[0].id: step 'blackhole-aws-use1a' is held for no "
                              "time: nothing after it takes time; give it a duration"]
    soaked = held + "  - id: soak\n    action: wait\n    duration: 5m\n"
    assert parse_runbook(soaked)[1] == []
    beside = held.replace("steps:\n  - id:", "steps:\n  - parallel:\n    - id:").replace(
        "\n    action: blackhole_zone", "\n      action: blackhole_zone").replace(
        "\n    target:", "\n      target:")
    assert len(problems(beside)) == 1
    with_a_sibling = beside + "    - id: soak\n      action: wait\n      duration: 1m\n"
    assert parse_runbook(with_a_sibling)[1] == []


# --- durations are bounded (defects 3 and 4) ---------------------------------------------------


@pytest.mark.parametrize("field, value, expected", [
    ("max_duration", "100000000h", "rb.yaml:3: max_duration: '100000000h' is longer than 168h (7 days)"),
    ("max_duration", "169h", "rb.yaml:3: max_duration: '169h' is longer than 168h (7 days)"),
    ("duration", "99999999999999999999999s",
     "rb.yaml:10: steps[0].duration: '99999999999999999999999s' is longer than 168h (7 days)"),
    ("duration", "9" * 5000 + "ms", "rb.yaml:10: steps[0].duration: '99999"),
])
def test_absurd_durations_are_one_sentence(field, value, expected):
    text = re.sub(rf"(?m)^(\s*{field}): .*$", rf"\1: {value}", VALID)
    (found,) = problems(text)
    assert found.startswith(expected) and "\n" not in found and len(found) < 200


def test_the_longest_durations_are_accepted_and_cross_into_the_workflow():
    text = VALID.replace("max_duration: 2h", "max_duration: 168h\napproval_timeout: 7h0m0s")
    runbook, found = parse_runbook(text)
    assert found == [] and runbook is not None
    assert runbook.max_duration == LONGEST
    assert Runbook.model_validate_json(runbook.model_dump_json()) == runbook
    assert datetime(9000, 1, 1, tzinfo=UTC) + runbook.max_duration  # the deadline is a datetime


# --- unit ids (contract §7, defect 2) ----------------------------------------------------------


REGION = """\
name: region-outage
approvers: [ic@example.com]
max_duration: 2h
guardrails: {aws_accounts: ["123456789012"], azure_subscriptions: ["00000000-0000-0000-0000-000000000000"]}
steps:
  - parallel:
      - id: r
        action: blackhole_region
        target: {cloud: aws, account: "123456789012", region: us-east-1}
        duration: 5m
      - id: OTHER
        action: blackhole_zone
        target: {cloud: azure, subscription: "00000000-0000-0000-0000-000000000000",
                 resource_group: shop, region: eastus, zone: "1"}
        duration: 5m
"""


@pytest.mark.parametrize("other, message", [
    ("r-us-east-1a", "step id 'r-us-east-1a' is the id of zone us-east-1a of step 'r'"),
    ("r-us-east-1f", "step id 'r-us-east-1f' is the id of zone us-east-1f of step 'r'"),
    ("r-us-east-1b-d3", "step id 'r-us-east-1b-d3' is the id of drift round 3 of zone us-east-1b of "
                        "step 'r' ('r-us-east-1b')"),
    ("r-d1", "step id 'r-d1' is the id of drift round 1 of step 'r'"),
])
def test_step_ids_another_unit_could_have_are_refused_on_their_id_line(other, message):
    assert problems(REGION.replace("OTHER", other)) == [
        f"rb.yaml:11: steps[0].parallel[1].id: {message}; choose another id"]


def test_unit_ids_that_cannot_collide_are_accepted():
    for other in ("r-us-east-2a", "r-us-east-1", "r-us-east-1a-d0", "r-d01", "rr-us-east-1a"):
        assert parse_runbook(REGION.replace("OTHER", other))[1] == [], other


def test_a_region_step_id_too_long_for_its_zones_is_refused():
    long_id = "r" * 60
    (found,) = problems(REGION.replace("id: r\n", f"id: {long_id}\n").replace("OTHER", "zone"))
    assert found.startswith("rb.yaml:7: steps[0].parallel[0].id: step id 'rrr")
    assert "must fit in 63 characters" in found


def test_zone_step_uses_the_unit_id():
    runbook, _ = parse_runbook(REGION.replace("OTHER", "zone"))
    assert runbook is not None
    region = runbook.all_steps()[0]
    assert region.zone_step("us-east-1c").id == zone_unit_id("r", "us-east-1c") == "r-us-east-1c"
