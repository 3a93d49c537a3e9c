"""`aws.check_permissions`: may the worker's live credentials make the plan's mutating calls?

Every EC2 call a step's apply and restore would make is sent with `DryRun=True` and realistic
parameters from the step's first resource (its subnet, VPC, network ACL and association, route
table, instance): `DryRunOperation` means allowed, `UnauthorizedOperation` means missing, any other
answer leaves the call unchecked with that code. The other APIs gameday changes (Route 53, Auto
Scaling, RDS, ARC zonal shift) offer no dry run: their calls are listed as not checked.
`iam:SimulatePrincipalPolicy` could answer for them, but it needs one more IAM permission, does
not see SCPs or permission boundaries of other accounts the same way, and moto does not serve it.
Read-only: a dry run changes nothing, and the only other calls are describes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.aws.api import TAG_RUN, AwsApi
from activities.base import beat
from gameday.errors import CloudError
from gameday.permissions import Permission, PermissionReport, gathered
from gameday.plan import PermissionCheck, ResolvedStep, Resource

_ACL = ("ec2:CreateNetworkAcl", "ec2:CreateTags", "ec2:CreateNetworkAclEntry",
        "ec2:ReplaceNetworkAclAssociation", "ec2:DeleteNetworkAcl")
_GROUP_HOLD = ("autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags",
               "autoscaling:SuspendProcesses", "autoscaling:ResumeProcesses")

MUTATING: dict[str, tuple[str, ...]] = {
    "blackhole_zone": _ACL,
    "blackhole_region": _ACL,
    "evacuate_region": ("route53:ChangeResourceRecordSets",),
    "stop_instances": ("ec2:CreateTags", "ec2:DeleteTags", "ec2:StopInstances",
                       "ec2:StartInstances", *_GROUP_HOLD),
    "failover_database": ("rds:AddTagsToResource", "rds:RemoveTagsFromResource",
                          "rds:FailoverDBCluster"),
    "deny_capacity": ("autoscaling:UpdateAutoScalingGroup", *_GROUP_HOLD),
    "evacuate_zone": ("arc-zonal-shift:StartZonalShift", "arc-zonal-shift:CancelZonalShift"),
    "partition_regions": ("ec2:CreateRouteTable", "ec2:CreateTags", "ec2:CreateRoute",
                          "ec2:AssociateRouteTable", "ec2:ReplaceRouteTableAssociation",
                          "ec2:DisassociateRouteTable", "ec2:DeleteRouteTable"),
}
"""The IAM actions of the calls each action's apply and restore make (its sweep makes the same):
the one list `gameday plan` checks; tests/test_plan_permissions.py proves it covers every
mutating call of the fault modules."""

NO_DRY_RUN = "no dry run"
_PLAN_TAG = [{"Key": TAG_RUN, "Value": "gameday-plan-dry-run"}]


class AwsPermissions:
    """The live check; built on the AWS faults' shared connection."""

    def __init__(self, api: AwsApi):
        self.api = api

    def check(self, request: PermissionCheck) -> PermissionReport:
        missing: list[Permission] = []
        unchecked: list[Permission] = []
        tried: dict[tuple[str, str], str | None] = {}  # (account, action) -> its answer
        for step in request.steps:
            account = step.scope.account
            for action in MUTATING.get(step.action, ()):
                if not action.startswith("ec2:"):
                    unchecked.append(Permission(cloud="aws", account=account, permission=action,
                                                reason=NO_DRY_RUN))
                    continue
                if not step.resources:
                    continue
                key = (account, action)
                if key not in tried:
                    tried[key] = self._dry_run(step, action)
                answer = tried[key]
                if answer == "UnauthorizedOperation":
                    missing.append(Permission(cloud="aws", account=account, permission=action))
                elif answer is not None:
                    unchecked.append(Permission(cloud="aws", account=account, permission=action,
                                                reason=f"the dry run answered {answer}"))
        return PermissionReport(missing=gathered(missing), unchecked=gathered(unchecked))

    def _dry_run(self, step: ResolvedStep, action: str) -> str | None:
        """The error code of the call's dry run; None when it would have succeeded."""
        beat()
        ec2 = self.api.ec2(step.scope.region, step.scope.account)
        call = self._call(ec2, step.resources[0], action)
        if call is None:
            return f"no association of {step.resources[0].id} to try it on"
        operation, kwargs = call
        try:
            self.api.call(f"{action} (dry run)", operation, DryRun=True, **kwargs)
        except CloudError as exc:
            return None if exc.code == "DryRunOperation" else (exc.code or str(exc))
        return "no DryRunOperation"

    def _call(self, ec2: Any, resource: Resource,
              action: str) -> tuple[Callable[..., Any], dict[str, Any]] | None:
        """The client method and the parameters of `action` as the fault would call it on
        `resource`; None when the association it would name is not found."""
        detail = resource.detail
        vpc, acl, table = detail.get("vpc", ""), detail.get("network_acl", ""), \
            detail.get("route_table", "")
        own = acl or table or resource.id  # the resource gameday would tag
        calls: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
            "ec2:CreateTags": (ec2.create_tags, {"Resources": [own], "Tags": _PLAN_TAG}),
            "ec2:DeleteTags": (ec2.delete_tags, {"Resources": [own],
                                                 "Tags": [{"Key": TAG_RUN}]}),
            "ec2:StopInstances": (ec2.stop_instances, {"InstanceIds": [resource.id]}),
            "ec2:StartInstances": (ec2.start_instances, {"InstanceIds": [resource.id]}),
            "ec2:CreateNetworkAcl": (ec2.create_network_acl, {"VpcId": vpc}),
            "ec2:CreateNetworkAclEntry": (ec2.create_network_acl_entry, {
                "NetworkAclId": acl, "RuleNumber": 1, "Protocol": "-1", "RuleAction": "deny",
                "Egress": False, "CidrBlock": "0.0.0.0/0"}),
            "ec2:DeleteNetworkAcl": (ec2.delete_network_acl, {"NetworkAclId": acl}),
            "ec2:CreateRouteTable": (ec2.create_route_table, {"VpcId": vpc}),
            "ec2:CreateRoute": (ec2.create_route, {
                "RouteTableId": table, "DestinationCidrBlock": "192.0.2.0/24",
                "GatewayId": "local"}),
            "ec2:AssociateRouteTable": (ec2.associate_route_table, {
                "RouteTableId": table, "SubnetId": resource.id}),
            "ec2:DeleteRouteTable": (ec2.delete_route_table, {"RouteTableId": table}),
        }
        if action == "ec2:ReplaceNetworkAclAssociation":
            association = self._acl_association(ec2, acl, resource.id)
            return None if association is None else (ec2.replace_network_acl_association, {
                "AssociationId": association, "NetworkAclId": acl})
        if action in ("ec2:ReplaceRouteTableAssociation", "ec2:DisassociateRouteTable"):
            association = self._table_association(ec2, table, resource.id)
            if association is None:
                return None
            if action == "ec2:DisassociateRouteTable":
                return ec2.disassociate_route_table, {"AssociationId": association}
            return ec2.replace_route_table_association, {
                "AssociationId": association, "RouteTableId": table}
        return calls[action]

    def _acl_association(self, ec2: Any, acl: str, subnet: str) -> str | None:
        """The id of the subnet's association with its network ACL (one ACL asked for: moto's
        subnet filter is unreliable, CLOUD-NOTES)."""
        found = self.api.call("DescribeNetworkAcls", ec2.describe_network_acls,
                              NetworkAclIds=[acl])
        for listed in found.get("NetworkAcls", []):
            for association in listed.get("Associations", []):
                if association.get("SubnetId") == subnet:
                    return str(association["NetworkAclAssociationId"])
        return None

    def _table_association(self, ec2: Any, table: str, subnet: str) -> str | None:
        """The id of the subnet's association with its route table, else the table's main one."""
        found = self.api.call("DescribeRouteTables", ec2.describe_route_tables,
                              RouteTableIds=[table])
        associations = [a for t in found.get("RouteTables", []) for a in t.get("Associations", [])]
        for association in associations:
            if association.get("SubnetId") == subnet or association.get("Main"):
                return str(association["RouteTableAssociationId"])
        return None
