"""Physical zones on AWS (contract §11): the lab's proxy shows each account its own zone IDs,
`zone_id` targets act on the zone of that ID in their account, and every AWS zone step's scope
carries both the name and the ID."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.registry import CloudActivities
from gameday.lab.aws.accounts import SECOND_ACCOUNT, account_ec2, seed_target_account
from gameday.lab.aws.zone_ids import rotated
from gameday.plan import FaultRequest, PrepareRequest, StepRequest
from tests.support.gameday import ACCOUNT, aws_zone_step, runbook
from tests.test_cli import RUNBOOK, cli, cli_env  # noqa: F401  (the CLI fixtures)


def _ids(ec2: Any) -> dict[str, str]:
    return {z["ZoneName"]: z["ZoneId"]
            for z in ec2.describe_availability_zones()["AvailabilityZones"]}


@pytest.fixture
def second(aws: dict[str, Any]) -> dict[str, Any]:
    return seed_target_account()


@pytest.fixture(scope="module")
def activities(servers: Any) -> CloudActivities:
    return CloudActivities("aws")


def _by_id(zone_id: str, account: str = ACCOUNT) -> Any:
    step = aws_zone_step("by-id", duration="5m")
    del step["target"]["zone"]
    step["target"] |= {"zone_id": zone_id, "account": account}
    book = runbook(step, guardrails={"aws_accounts": [ACCOUNT, SECOND_ACCOUNT]})
    [fault] = book.fault_steps()
    return book, fault


def test_each_account_sees_its_own_zone_ids_and_the_worker_s_keeps_moto_s(aws, second):
    own, other = _ids(account_ec2(ACCOUNT)), _ids(account_ec2(SECOND_ACCOUNT))
    assert sorted(own) == sorted(other)
    assert sorted(own.values()) == sorted(other.values())  # the same physical zones
    assert all(own[name] != other[name] for name in own)  # each under another name
    assert other == rotated(SECOND_ACCOUNT, own)
    # a subnet shows its account's zone ID, and a zone-id filter is read in that account's IDs
    ec2 = account_ec2(SECOND_ACCOUNT)
    [subnet] = [s for s in ec2.describe_subnets()["Subnets"]
                if s["SubnetId"] == second["subnets"]["us-east-1b"][0]]
    assert subnet["AvailabilityZoneId"] == other["us-east-1b"]
    found = ec2.describe_subnets(Filters=[{"Name": "availability-zone-id",
                                           "Values": [other["us-east-1b"]]}])["Subnets"]
    assert {s["AvailabilityZone"] for s in found} == {"us-east-1b"}
    [zone] = ec2.describe_availability_zones(ZoneIds=[other["us-east-1c"]])["AvailabilityZones"]
    assert (zone["ZoneName"], zone["ZoneId"]) == ("us-east-1c", other["us-east-1c"])


def test_a_zone_id_step_acts_on_the_zone_of_that_id_in_each_account(aws, second, activities):
    physical = _ids(account_ec2(ACCOUNT))["us-east-1c"]
    assert _ids(account_ec2(SECOND_ACCOUNT))["us-east-1a"] == physical  # the lab's rotation
    resolve = activities.by_name["aws.resolve_blackhole_zone"]
    for account, name, subnets in ((ACCOUNT, "us-east-1c", aws["subnets"]["us-east-1c"]),
                                   (SECOND_ACCOUNT, "us-east-1a", second["subnets"]["us-east-1a"])):
        book, step = _by_id(physical, account)
        resolved = resolve(StepRequest(run_id="zone-ids", step=step, guardrails=book.guardrails))
        assert (resolved.scope.zone, resolved.scope.zone_id) == (name, physical)
        assert {r.id for r in resolved.resources} <= set(subnets) and resolved.resources
    # prepare acts on the named zone and its checkpoint keeps both; restore undoes the apply
    checkpoint = activities.by_name["aws.prepare_blackhole_zone"](
        PrepareRequest(run_id="zone-ids", step=step, resolved=resolved, guardrails=book.guardrails))
    assert (checkpoint.scope.zone, checkpoint.scope.zone_id) == ("us-east-1a", physical)
    request = FaultRequest(checkpoint=checkpoint, guardrails=book.guardrails)
    assert activities.by_name["aws.apply_blackhole_zone"](request).changed
    activities.by_name["aws.restore_blackhole_zone"](request)


def test_a_zone_named_by_name_gets_its_id_and_an_unknown_id_is_refused(aws, activities):
    own = _ids(account_ec2(ACCOUNT))
    book = runbook(aws_zone_step(zone="us-east-1b"))
    [step] = book.fault_steps()
    resolved = activities.by_name["aws.resolve_blackhole_zone"](
        StepRequest(run_id="zone-ids", step=step, guardrails=book.guardrails))
    assert (resolved.scope.zone, resolved.scope.zone_id) == ("us-east-1b", own["us-east-1b"])
    assert resolved.scope.where == f"us-east-1b ({own['us-east-1b']})"
    book, step = _by_id("use1-az9")
    with pytest.raises(ApplicationError, match="zone ID use1-az9 is not a zone of us-east-1 in "
                       f"account {ACCOUNT}"):
        activities.by_name["aws.resolve_blackhole_zone"](
            StepRequest(run_id="zone-ids", step=step, guardrails=book.guardrails))


def test_plan_shows_each_zone_by_name_and_physical_id(cli, aws, tmp_path):  # noqa: F811
    path = tmp_path / "by-id.yaml"
    path.write_text(RUNBOOK.format(account=ACCOUNT, duration="5m")
                    .replace("zone: us-east-1a", "zone_id: use1-az1"))
    shown = cli("plan", str(path))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"blackhole_zone on aws {ACCOUNT} us-east-1 us-east-1b (use1-az1):" in shown.stdout
    listed = json.loads(cli("plan", str(path), "--json").stdout)
    assert listed["steps"][0]["scope"] == {
        "cloud": "aws", "account": ACCOUNT, "region": "us-east-1", "zone": "us-east-1b",
        "zone_id": "use1-az1"}
