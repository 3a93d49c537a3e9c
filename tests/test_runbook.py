"""Runbook validation: every problem is one line naming file, line and field, never a traceback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from gameday.durations import format_duration, parse_duration
from gameday.loader import check_runbook, parse_runbook
from gameday.runbook import Runbook

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
    (VALID.replace("action: blackhole_zone", "action: explode"),
     "rb.yaml:8: steps[0].action: action must be one of 'blackhole_zone', 'blackhole_region', "
     "'evacuate_region', 'wait', not 'explode'"),
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
