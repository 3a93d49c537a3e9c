"""infra/terraform: the roles grant exactly what the activities call, and the code stays canonical.

The drift tests tie three lists together: the SDK operations that the activity modules call (found
by reading their source), the permission sets of `tests/support/permissions.py`, and the permissions
that the Terraform modules grant. A call added without its permission, a permission dropped from
Terraform, or one kept after its last call went, each fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import permissions
from tests.support.permissions import (
    AWS_ACTIONS,
    AZURE_ACTIONS,
    GCP_PERMISSIONS,
    GRANTED,
    SdkCall,
    UnmappedCall,
    required_permissions,
    sdk_calls,
)

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "infra" / "terraform"
MODULES = ("aws", "aws/target-account", "gcp", "azure", "worker", "examples")
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
CLOUDS = ("aws", "gcp", "azure")


def _hcl2() -> Any:
    return pytest.importorskip(
        "hcl2", reason="python-hcl2 is not installed (add python-hcl2 to the dev dependencies)")


def _parse(path: Path) -> dict[str, Any]:
    hcl2 = _hcl2()
    with path.open() as handle:
        return hcl2.load(handle)


def _unquote(value: Any) -> Any:
    """python-hcl2 >= 5 keeps the quotes of string literals and block labels; older ones do not."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _block(doc: dict[str, Any], kind: str, type_: str, name: str) -> dict[str, Any]:
    """The body of `<kind> "<type_>" "<name>" { ... }` (kind: resource or data)."""
    for entry in doc.get(kind, []):
        for found_type, by_name in entry.items():
            if _unquote(found_type) != type_:
                continue
            for found_name, body in by_name.items():
                if _unquote(found_name) == name:
                    return body
    raise AssertionError(f'no {kind} "{type_}" "{name}" found')


def _strings(node: Any, key: str) -> list[str]:
    """Every string in a list under `key`, anywhere in the block (dynamic blocks included)."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, value in node.items():
            if k == key and isinstance(value, list):
                found += [_unquote(v) for v in value if isinstance(v, str)]
            else:
                found += _strings(value, key)
    elif isinstance(node, list):
        for item in node:
            found += _strings(item, key)
    return found


def _drift(granted: list[str], wanted: frozenset[str], where: str) -> str:
    duplicates = sorted({g for g in granted if granted.count(g) > 1})
    missing = sorted(wanted - set(granted))
    extra = sorted(set(granted) - wanted)
    return (f"{where} and tests/support/permissions.py differ: missing in Terraform {missing}, "
            f"not in permissions.py {extra}, listed twice {duplicates}")


# --- the files --------------------------------------------------------------------------------


def test_every_module_has_its_files() -> None:
    for module in MODULES:
        for name in ("variables.tf", "main.tf", "outputs.tf", "README.md"):
            assert (TERRAFORM / module / name).is_file(), f"infra/terraform/{module}/{name} is missing"


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_file_parses(path: Path) -> None:
    assert isinstance(_parse(path), dict)


# --- drift: Terraform == permissions.py -------------------------------------------------------


def test_aws_policy_grants_exactly_aws_actions() -> None:
    doc = _parse(TERRAFORM / "aws" / "main.tf")
    policy = _block(doc, "data", "aws_iam_policy_document", "gameday")
    granted = _strings(policy, "actions")
    assert not _strings(policy, "not_actions"), "the policy must not use not_actions"
    assert set(granted) == AWS_ACTIONS, _drift(sorted(set(granted)), AWS_ACTIONS, "aws/main.tf")
    assert not [a for a in granted if "*" in a], "no wildcard actions"


def test_aws_mutations_are_scoped_by_gameday_tags() -> None:
    """Creating, changing and deleting ACLs is bound to gameday's tag, as far as AWS allows."""
    policy = _block(_parse(TERRAFORM / "aws" / "main.tf"), "data", "aws_iam_policy_document",
                    "gameday")
    statements = {_unquote(s["sid"]): s for s in policy["statement"]}
    for sid, variable in (("CreateGamedayAcl", "aws:RequestTag/${local.managed_by_tag}"),
                          ("ChangeGamedayAcls", "aws:ResourceTag/${local.managed_by_tag}"),
                          ("TagGamedayAclOnCreate", "ec2:CreateAction")):
        conditions = statements[sid]["condition"]
        assert [_unquote(c["variable"]) for c in conditions] == [variable], sid
    for sid, statement in statements.items():
        assert _unquote(statement["effect"]) == "Allow", sid
        if [_unquote(r) for r in statement["resources"]] == ["*"]:
            actions = {_unquote(a) for a in statement["actions"]}
            assert all(":Describe" in a or ":List" in a or ":Get" in a for a in actions), (
                f"{sid}: only reads may apply to every resource")


def test_a_target_account_role_has_the_workers_policy_and_trusts_only_the_worker() -> None:
    """Every call the code makes in a target account is granted there: the target role is the
    worker's own module (so exactly AWS_ACTIONS, scoped to that account), assuming nothing
    further; the worker may assume only the target roles it is given."""
    doc = _parse(TERRAFORM / "aws" / "target-account" / "main.tf")
    [target] = [body for entry in doc["module"] for name, body in entry.items()
                if _unquote(name) == "target"]
    assert _unquote(target["source"]) == "../"
    assert target["target_role_arns"] == []
    trust = _block(doc, "data", "aws_iam_policy_document", "trust")["statement"][0]
    assert _strings(trust, "actions") == ["sts:AssumeRole"]
    assert [_unquote(i) for i in trust["principals"][0]["identifiers"]] == [
        "${var.worker_role_arn}"]
    policy = _block(_parse(TERRAFORM / "aws" / "main.tf"), "data", "aws_iam_policy_document",
                    "gameday")
    dynamic = [block for entry in policy["dynamic"] for kind, block in entry.items()
               if _unquote(kind) == "statement"]
    [assume] = [b for b in dynamic if _unquote(b["content"][0]["sid"]) == "AssumeTargetRoles"]
    assert _strings(assume["content"][0], "actions") == ["sts:AssumeRole"]
    assert "var.target_role_arns" in assume["for_each"]
    statements = [s for s in policy["statement"]] + [b["content"][0] for b in dynamic]
    assert [s for s in statements if "sts:AssumeRole" in _strings(s, "actions")] == [
        assume["content"][0]], "only the AssumeTargetRoles statement may grant sts:AssumeRole"


def test_gcp_role_has_exactly_gcp_permissions() -> None:
    doc = _parse(TERRAFORM / "gcp" / "main.tf")
    role = _block(doc, "resource", "google_project_iam_custom_role", "gameday")
    granted = [_unquote(p) for p in role["permissions"]]
    assert sorted(granted) == sorted(GCP_PERMISSIONS), _drift(granted, GCP_PERMISSIONS,
                                                              "gcp/main.tf")


def test_azure_role_has_exactly_azure_actions() -> None:
    doc = _parse(TERRAFORM / "azure" / "main.tf")
    role = _block(doc, "resource", "azurerm_role_definition", "gameday")
    granted = _strings(role["permissions"], "actions")
    assert sorted(granted) == sorted(AZURE_ACTIONS), _drift(granted, AZURE_ACTIONS,
                                                            "azure/main.tf")
    assert not _strings(role["permissions"], "not_actions")
    assert not _strings(role["permissions"], "data_actions")
    assert not [a for a in granted if "*" in a], "no wildcard actions"


# --- drift: permissions.py == what the code calls ---------------------------------------------


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_sdk_call_is_granted(cloud: str) -> None:
    calls = sdk_calls(cloud)
    assert calls, f"no SDK call found in the {cloud} activities: the analysis is broken"
    uncovered: dict[str, Any] = {}
    for call in calls:
        try:
            missing = sorted(permissions.permissions_of(cloud, call) - GRANTED[cloud])
        except UnmappedCall:
            missing = ["(operation unknown to tests/support/permissions.py)"]
        if missing:
            uncovered[str(call)] = missing
    assert not uncovered, (f"{cloud} calls that tests/support/permissions.py (and Terraform) do not "
                           f"grant: {uncovered}")


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_granted_permission_is_needed(cloud: str) -> None:
    needed: frozenset[str] = frozenset()
    for call in sdk_calls(cloud):
        try:
            needed |= permissions.permissions_of(cloud, call)
        except UnmappedCall:
            continue  # test_every_sdk_call_is_granted reports it
    unused = sorted(GRANTED[cloud] - needed)
    assert not unused, f"{cloud} permissions that no call needs any more: {unused}"


def test_the_analysis_finds_what_the_code_does() -> None:
    """Spot checks that the static analysis reads each calling style of the modules."""
    aws = {c.operation for c in sdk_calls("aws")}
    assert {"sts:GetCallerIdentity",        # self._call("...", sts.get_caller_identity)
            "ec2:DescribeSubnets",          # self._pages(ec2, "describe_subnets", ...)
            "ec2:CreateNetworkAclEntry",    # ec2.create_network_acl_entry(...)
            "route53:ChangeResourceRecordSets"} <= aws
    gcp = {c.operation for c in sdk_calls("gcp")}
    assert {"InstancesClient.set_tags_unary", "FirewallsClient.insert_unary",
            "ZoneOperationsClient.wait", "BackendServicesClient.patch_unary"} <= gcp
    azure = {c.operation for c in sdk_calls("azure")}
    assert {"NetworkManagementClient.network_interfaces.begin_create_or_update",
            "NetworkManagementClient.network_security_groups.begin_delete",
            "TrafficManagerManagementClient.endpoints.update"} <= azure


def test_the_operations_found_exist_in_the_sdks() -> None:
    """Every GCP and Azure operation found is a real method of the SDK: the analysis reads
    calls, not look-alikes."""
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.monitor import MonitorManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.postgresqlflexibleservers import PostgreSQLManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient
    from azure.mgmt.trafficmanager import TrafficManagerManagementClient
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1
    from googleapiclient.discovery import build

    sqladmin = build("sqladmin", "v1", static_discovery=True, credentials=AnonymousCredentials())
    for call in sdk_calls("gcp"):
        if call.operation.startswith("sqladmin."):  # the discovery client: sqladmin.<resource>.<method>
            _, resource, method = call.operation.split(".")
            assert callable(getattr(getattr(sqladmin, resource)(), method, None)), str(call)
            continue
        client, method = call.operation.split(".")
        assert callable(getattr(getattr(compute_v1, client), method, None)), str(call)

    class Credential:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no call is made")

    subscription = "00000000-0000-0000-0000-000000000000"
    clients = {
        "NetworkManagementClient": NetworkManagementClient(Credential(), subscription),
        "ComputeManagementClient": ComputeManagementClient(Credential(), subscription),
        "TrafficManagerManagementClient": TrafficManagerManagementClient(Credential(),
                                                                         subscription),
        "MonitorManagementClient": MonitorManagementClient(Credential(), subscription),
        "PostgreSQLManagementClient": PostgreSQLManagementClient(Credential(), subscription),
        "SubscriptionClient": SubscriptionClient(Credential()),
    }
    try:
        for call in sdk_calls("azure"):
            client, group, method = call.operation.split(".")
            assert callable(getattr(getattr(clients[client], group), method, None)), str(call)
    finally:
        for made in clients.values():
            made.close()


NEW_CALLS = {
    "aws": ("def forgotten(ec2):\n"
            "    ec2.delete_subnet(SubnetId='subnet-1')\n"),
    "gcp": ("class Compute:\n"
            "    instances: compute_v1.InstancesClient\n\n"
            "def forgotten(compute: Compute):\n"
            "    compute.instances.delete(project='p', zone='z', instance='i')\n"),
    "azure": ("class ArmClients:\n"
              "    network: NetworkManagementClient\n\n"
              "def forgotten(arm: ArmClients):\n"
              "    arm.network.virtual_networks.begin_delete('group', 'network')\n"),
}


def test_a_new_call_without_its_permission_is_caught() -> None:
    """The guard itself: a call that nothing grants fails the tests above."""
    found = sdk_calls("aws", {"new.py": NEW_CALLS["aws"]})
    assert [c.operation for c in found] == ["ec2:DeleteSubnet"]
    needed = frozenset().union(*required_permissions("aws", found).values())
    assert needed - AWS_ACTIONS == {"ec2:DeleteSubnet"}
    for cloud, operation in (("gcp", "InstancesClient.delete"),
                             ("azure", "NetworkManagementClient.virtual_networks.begin_delete")):
        found = sdk_calls(cloud, {"new.py": NEW_CALLS[cloud]})
        assert [c.operation for c in found] == [operation]
        with pytest.raises(UnmappedCall, match=operation):
            required_permissions(cloud, found)


def test_tags_given_at_creation_need_create_tags() -> None:
    call = SdkCall("aws.py", 1, "ec2:CreateNetworkAcl", frozenset({"TagSpecifications"}))
    assert permissions.permissions_of("aws", call) == {"ec2:CreateNetworkAcl", "ec2:CreateTags"}
    bare = SdkCall("aws.py", 1, "ec2:CreateNetworkAcl")
    assert permissions.permissions_of("aws", bare) == {"ec2:CreateNetworkAcl"}


# --- the worker ----------------------------------------------------------------------------


def test_worker_sets_the_contract_environment() -> None:
    text = (TERRAFORM / "worker" / "main.tf").read_text()
    for variable in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "GAMEDAY_TASK_QUEUE",
                     "GAMEDAY_WORKER_CLOUD", "GAMEDAY_WORKER_REGION", "GAMEDAY_WORKER_ZONE",
                     "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "TEMPORAL_API_KEY"):
        assert re.search(rf"\b{variable}\b", text), f"worker/main.tf does not set {variable}"


def test_no_secret_has_a_value_in_terraform() -> None:
    for path in TF_FILES:
        text = path.read_text()
        assert not re.search(r"(?i)(password|client_secret|private_key|api_key)\s*=\s*\"",
                             text), f"{path.relative_to(ROOT)} holds a secret"


# --- tools ------------------------------------------------------------------------------------


def test_terraform_fmt_is_canonical() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary on PATH: `terraform fmt -check` cannot run")
    done = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})
    assert done.returncode == 0, f"not `terraform fmt` canonical:\n{done.stdout}{done.stderr}"


def _checkov() -> str | None:
    beside = Path(sys.executable).parent / "checkov"
    return os.environ.get("CHECKOV") or shutil.which("checkov") or (
        str(beside) if beside.exists() else None)


def test_checkov_passes() -> None:
    binary = _checkov()
    if binary is None:
        pytest.skip("checkov is not installed (or set CHECKOV to its path)")
    done = subprocess.run(
        [binary, "-d", str(TERRAFORM), "--framework", "terraform", "--quiet", "--compact",
         "--skip-download"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert done.returncode == 0, f"checkov failed:\n{done.stdout[-6000:]}"
    assert "Failed checks: 0" in done.stdout or "Passed checks" not in done.stdout, done.stdout


def test_every_checkov_skip_says_why() -> None:
    for path in TF_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#checkov:skip=CKV2?_[A-Z0-9_]+:\S.{10,}", line), (
                    f"{path.relative_to(ROOT)}: a checkov skip without a reason: {line.strip()}")
