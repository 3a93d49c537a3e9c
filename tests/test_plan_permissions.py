"""`gameday plan` checks the live credentials (contract §11): every mutating call of the plan tried
as a dry run where the cloud offers one, each one the worker may not make listed per account,
exit 1 when any is missing, and nothing in the lab changed. Real servers: moto behind the lab's
proxy, the GCP and ARM emulators, the Temporal dev server."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gameday.lab.aws import acl_snapshot
from gameday.lab.faults import FaultConfig
from gameday.lab.snapshot import lab_view
from tests.support.clouds import CLOUD_LABS
from tests.support.gameday import runbook

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"
MAY_NOT = re.compile(r"^(aws|gcp|azure) (\S+): may not (\S+)$")
DENIED_ONE_EACH = {"aws": "ec2:ReplaceNetworkAclAssociation", "gcp": "compute.firewalls.create",
                   "azure": "Microsoft.Network/networkSecurityGroups/write"}


def _deny(servers, *permissions: str) -> None:
    """The lab's deny rule, posted as a user posts it (`POST /_emulator/faults`)."""
    body = FaultConfig(deny=list(permissions)).model_dump()
    httpx.post(f"{servers.aws_proxy.url}/_emulator/faults", json=body).raise_for_status()
    httpx.post(f"{servers.gcp.url}/_emulator/faults", json=body).raise_for_status()
    httpx.post(f"{servers.azure.url}/_emulator/faults", json=body,
               verify=ssl.create_default_context(cafile=servers.env["GAMEDAY_AZURE_CA_BUNDLE"])).raise_for_status()


@pytest.fixture
def labs(servers):
    for name in ("aws", "gcp", "azure"):
        CLOUD_LABS[name](servers).seed()
    yield {name: CLOUD_LABS[name](servers) for name in ("aws", "gcp", "azure")}
    _deny(servers)


def _ec2(servers):
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=servers.aws_proxy.url)


def test_the_proxy_answers_a_dry_run_itself_and_a_denied_action_is_refused(servers, aws):
    ec2 = _ec2(servers)
    acls = ec2.describe_network_acls()["NetworkAcls"]
    # a subnet's association, and another ACL of its VPC to move it onto
    association, other = next((a, o["NetworkAclId"]) for acl in acls for a in acl["Associations"]
                              for o in acls if o["VpcId"] == acl["VpcId"]
                              and o["NetworkAclId"] != acl["NetworkAclId"])
    before = acl_snapshot()
    call = {"AssociationId": association["NetworkAclAssociationId"], "NetworkAclId": other}

    with pytest.raises(ClientError) as dry:
        ec2.replace_network_acl_association(DryRun=True, **call)
    assert dry.value.response["Error"]["Code"] == "DryRunOperation"
    assert dry.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert dry.value.response["Error"]["Message"] == (
        "Request would have succeeded, but DryRun flag is set.")
    assert acl_snapshot() == before  # moto itself would have moved the subnet

    _deny(servers, "ec2:ReplaceNetworkAclAssociation")
    for dry_run in (True, False):
        with pytest.raises(ClientError) as refused:
            ec2.replace_network_acl_association(DryRun=dry_run, **call)
        assert refused.value.response["Error"]["Code"] == "UnauthorizedOperation"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert acl_snapshot() == before
    _deny(servers)


@pytest.fixture
def cli(servers, task_queue):
    env = {**os.environ, **servers.env, "GAMEDAY_TASK_QUEUE": task_queue}

    def gameday(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gameday.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    return gameday


def test_plan_lists_the_one_permission_denied_per_cloud_and_exits_1(cli, servers, labs):
    book = str(ROOT / "runbooks/lab/multicloud-region-evacuation.yaml")
    before = lab_view(servers.env)

    allowed = cli("plan", book)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "may not" not in allowed.stdout
    # Route 53 has no dry run: said, not hidden, and not a failure
    assert (f"aws {ACCOUNT}: not checked (no dry run): route53:ChangeResourceRecordSets"
            in allowed.stdout)

    _deny(servers, *DENIED_ONE_EACH.values())
    denied = cli("plan", book)
    assert denied.returncode == 1, denied.stdout + denied.stderr
    lines = [line for line in denied.stdout.splitlines() if "may not" in line]
    assert lines == [f"aws {ACCOUNT}: may not ec2:ReplaceNetworkAclAssociation",
                     "azure 00000000-0000-0000-0000-000000000000: may not "
                     "Microsoft.Network/networkSecurityGroups/write",
                     "gcp gameday-lab: may not compute.firewalls.create"]
    as_json = json.loads(cli("plan", book, "--json").stdout)
    assert {(p["cloud"], p["permission"]) for p in as_json["missing_permissions"]} == set(
        DENIED_ONE_EACH.items())
    assert as_json["problems"] == []

    assert lab_view(servers.env) == before  # plan is read-only, dry runs included


def test_a_gameday_is_refused_before_approval_when_the_worker_lacks_a_permission(cli, servers, labs):
    """`gameday run` checks as `plan` does, before anyone is asked to approve: nothing changes."""
    book = str(ROOT / "runbooks/lab/multicloud-region-evacuation.yaml")
    before = lab_view(servers.env)
    _deny(servers, DENIED_ONE_EACH["aws"])
    run = cli("run", book)
    assert run.returncode == 1, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert (f"the worker lacks permissions the plan needs: aws {ACCOUNT}: may not "
            "ec2:ReplaceNetworkAclAssociation") in said, said
    assert "Traceback" not in said and "awaiting approval" not in said.lower(), said
    assert lab_view(servers.env) == before


def _zone_steps(servers) -> list[dict]:
    return [CLOUD_LABS[name](servers).zone_step(f"blackhole-{name}", "1m")
            for name in ("aws", "gcp", "azure")]


def _needed() -> dict[str, set[str]]:
    from activities.aws.permissions import MUTATING as AWS
    from activities.azure.permissions import MUTATING as AZURE
    from activities.gcp.permissions import MUTATING as GCP

    return {"aws": set(AWS["blackhole_zone"]), "gcp": set(GCP["blackhole_zone"]),
            "azure": set(AZURE["blackhole_zone"])}


ALL_NEEDED = sorted((cloud, p) for cloud, ps in _needed().items() for p in ps)


@settings(max_examples=4, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sets(st.sampled_from(ALL_NEEDED), max_size=4))
def test_the_plan_workflow_lists_exactly_the_denied_subset(client, runner, task_queue, servers,
                                                           labs, denied):
    from gameday import operations

    book = runbook(*_zone_steps(servers))
    _deny(servers, *(p for _, p in denied))
    before = lab_view(servers.env)
    os.environ["GAMEDAY_TASK_QUEUE"] = task_queue
    try:
        result = runner.run(operations.plan(client, book, "test", 60))
    finally:
        os.environ.pop("GAMEDAY_TASK_QUEUE", None)
    assert {(p.cloud, p.permission) for p in result.missing_permissions} == set(denied)
    assert all(MAY_NOT.match(p.sentence) for p in result.missing_permissions)
    assert result.unchecked_permissions == []  # every call of a zone blackhole has a dry run
    assert result.problems == [] and result.plan_hash
    assert lab_view(servers.env) == before


def _mutating(cloud: str, permission: str) -> bool:
    if cloud == "aws":
        return not re.match(r"^[a-z0-9-]+:(Describe|List|Get)", permission) \
            and not permission.startswith("sts:")
    if cloud == "gcp":
        return not permission.endswith((".get", ".list"))
    return not permission.endswith("/read")


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_the_checked_calls_are_every_mutating_call_the_faults_make(cloud):
    """One source of truth: what `plan` checks per action covers each mutating permission the
    action's fault module needs (read from its source), and together exactly the mutating part of
    what infra/terraform grants."""
    import importlib

    from activities.registry import FAULTS, Offered
    from tests.support.permissions import GRANTED, required_permissions

    checked = importlib.import_module(f"activities.{cloud}.permissions").MUTATING
    needed = required_permissions(cloud)
    for (of, action), entry in FAULTS.items():
        if of != cloud or not isinstance(entry, Offered):
            continue
        module = f"{cloud}/{entry.fault.split(':')[0]}.py"
        own = {p for call, ps in needed.items() if call.module == module for p in ps
               if _mutating(cloud, p)}
        if cloud == "azure" and action == "evacuate_region":
            continue  # per endpoint type, added per resource (activities/azure/permissions.py)
        assert own <= set(checked[action]), (action, own - set(checked[action]))
    every = {p for ps in checked.values() for p in ps}
    if cloud == "azure":
        every |= {f"Microsoft.Network/trafficManagerProfiles/{kind}/write"
                  for kind in ("azureEndpoints", "externalEndpoints", "nestedEndpoints")}
    assert every == {p for p in GRANTED[cloud] if _mutating(cloud, p)}


def test_arm_wildcards_and_not_actions():
    from activities.azure.permissions import allowed

    write = "Microsoft.Network/networkSecurityGroups/write"
    assert allowed(write, [{"actions": ["*"], "notActions": []}])
    assert allowed(write, [{"actions": ["microsoft.network/*"]}])
    assert not allowed(write, [{"actions": ["*"], "notActions": ["*/write"]}])
    assert allowed(write, [{"actions": ["*"], "notActions": ["*/write"]},
                           {"actions": ["Microsoft.Network/networkSecurityGroups/*"]}])
    assert not allowed(write, [{"actions": ["*/read"]}])
