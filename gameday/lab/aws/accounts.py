"""Target accounts in the lab: moto keeps resources per account (the access key `AssumeRole`
returns maps to the role's account), and the proxy answers `AssumeRole` as IAM would.

moto lets anyone assume any role, even one that does not exist. The proxy refuses, as AWS does,
the assumption of a role that does not exist in its account (403 `AccessDenied`) and a malformed
role ARN (400 `ValidationError`); it does not evaluate trust policies. `seed_target_account`
makes the role and a small shop in a second account, the shape a GameDay over two accounts needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode
from xml.sax.saxutils import escape

import boto3

from gameday.lab.emulator import Request, Response

SECOND_ACCOUNT = "210987654321"
TARGET_ROLE = "gameday-target"
_ROLE_ARN = re.compile(r"arn:aws:iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*"
                       r"(?P<name>[\w+=,.@-]{1,64})")


def _sts_error(status: int, code: str, message: str) -> Response:
    body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{escape(message)}</Message></Error>"
            "<RequestId>gameday-lab</RequestId></ErrorResponse>")
    return Response(status, body.encode(), {"Content-Type": "text/xml"})


def assume_role(request: Request, forward: Callable[[Request], Response]) -> Response:
    """Forward an `AssumeRole` to moto only when the role exists in its account (asked of moto's
    IAM in that account); else answer as STS does."""
    form = parse_qs(request.body.decode(errors="replace")) if request.body else request.query
    arn = (form.get("RoleArn") or [""])[0]
    named = _ROLE_ARN.fullmatch(arn)
    if named is None:
        return _sts_error(400, "ValidationError",
                          f"{arn!r} is not a valid role ARN (arn:aws:iam::<account>:role/<name>)")
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
    headers["authorization"] = headers.get("authorization", "").replace("/sts/", "/iam/")
    headers["x-moto-account-id"] = named.group("account")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    body = urlencode({"Action": "GetRole", "Version": "2010-05-08",
                      "RoleName": named.group("name")}).encode()
    found = forward(Request(method="POST", path="/", query={}, headers=headers, body=body))
    if found.status != 200:
        return _sts_error(403, "AccessDenied", f"User is not authorized to perform: "
                          f"sts:AssumeRole on resource: {arn}")
    return forward(request)


def with_account(client: Any, account: str) -> Any:
    """`client` with every request addressed to `account` in moto (its `x-moto-account-id`)."""
    def add(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account
    client.meta.events.register("before-send", add)
    return client


def make_target_role(account: str, name: str = TARGET_ROLE) -> str:
    """The role the worker assumes in `account`, trusting the worker's account; its ARN."""
    iam = with_account(boto3.client("iam", region_name="us-east-1"), account)
    own = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
    trust = ('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": '
             f'"sts:AssumeRole", "Principal": {{"AWS": "arn:aws:iam::{own}:root"}}}}]}}')
    return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"])


def seed_target_account(account: str = SECOND_ACCOUNT, region: str = "us-east-1") -> dict[str, Any]:
    """In `account`: the target role, and a `shop` VPC with one subnet tagged `gameday=enabled`
    per zone (a, b, c) on a custom allow-all `shop-web` ACL, plus an untagged `ops` subnet in
    zone a. Returns the VPC, ACL and subnet ids by zone."""
    make_target_role(account)
    ec2 = with_account(boto3.client("ec2", region_name=region), account)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    acl = ec2.create_network_acl(VpcId=vpc, TagSpecifications=[{
        "ResourceType": "network-acl", "Tags": [{"Key": "Name", "Value": "shop-web"}]}],
    )["NetworkAcl"]["NetworkAclId"]
    for egress in (False, True):
        ec2.create_network_acl_entry(NetworkAclId=acl, RuleNumber=100, Protocol="-1",
                                     RuleAction="allow", Egress=egress, CidrBlock="0.0.0.0/0")
    subnets: dict[str, list[str]] = {}
    for index, letter in enumerate("abc"):
        zone = f"{region}{letter}"
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{index}.0/24", AvailabilityZone=zone,
                                   TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                                       {"Key": "Name", "Value": f"shop-web-{zone}"},
                                       {"Key": "gameday", "Value": "enabled"}]}])["Subnet"]
        subnets[zone] = [subnet["SubnetId"]]
        association = next(a for found in ec2.describe_network_acls(Filters=[
            {"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}])["NetworkAcls"]
            for a in found["Associations"] if a["SubnetId"] == subnet["SubnetId"])
        ec2.replace_network_acl_association(
            AssociationId=association["NetworkAclAssociationId"], NetworkAclId=acl)
    ops = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.9.0/24", AvailabilityZone=f"{region}a")
    subnets[f"{region}a"].append(ops["Subnet"]["SubnetId"])
    return {"account": account, "region": region, "vpc": vpc, "acl": acl, "subnets": subnets}


def account_ec2(account: str, region: str = "us-east-1") -> Any:
    """An EC2 client of the lab addressed to `account` (for snapshots and checks in tests)."""
    return with_account(boto3.client("ec2", region_name=region), account)
