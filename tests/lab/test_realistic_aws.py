"""The AWS proxy's realistic mode through boto3: EC2's and Route 53's buckets, answered as AWS does.

A moto of this module's own behind a proxy of its own, so the buckets here touch no other test.
Buckets are shrunk (a burst of a few calls, a refill far slower than the test) so that "over the
limit" is certain; `test_documented_buckets` checks the documented defaults themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from gameday.lab.aws import AwsFaultProxy
from gameday.lab.realistic import Bucket, RealisticConfig
from gameday.lab.services import LOOPBACK, free_port, start_moto

SLOW = Bucket(burst=2, refill=0.01)
"""Two calls, then one every 100 s: the third call within a test is over the limit."""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsFaultProxy]:
    moto = start_moto(Path(tmp_path_factory.mktemp("moto")), free_port())
    server = AwsFaultProxy(f"http://{LOOPBACK}:{moto.port}").start()
    yield server
    server.stop()
    moto.stop()


@pytest.fixture
def aws(proxy: AwsFaultProxy) -> Iterator[AwsFaultProxy]:
    httpx.post(f"{proxy.url}/moto-api/reset").raise_for_status()
    proxy.faults.clear_calls()
    yield proxy
    proxy.limits.configure(RealisticConfig())


def client(proxy: AwsFaultProxy, service: str, attempts: int = 1, key: str = "realistic") -> Any:
    return boto3.client(service, endpoint_url=proxy.url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key="secret",
                        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}))


def realistic(proxy: AwsFaultProxy, **buckets: Bucket | None) -> None:
    body = RealisticConfig(enabled=True, mutation_latency_ms=0, read_latency_ms=0,
                           buckets=buckets).model_dump()
    httpx.post(f"{proxy.url}/_emulator/limits", json=body).raise_for_status()


def limits(proxy: AwsFaultProxy) -> dict[str, Any]:
    return httpx.get(f"{proxy.url}/_emulator/limits").json()


def test_documented_buckets(aws):
    buckets = limits(aws)["buckets"]
    assert buckets["ec2-mutating"] == {"burst": 50, "refill": 5}
    assert buckets["ec2-non-mutating"] == {"burst": 100, "refill": 20}
    assert buckets["ec2-unfiltered"] == {"burst": 50, "refill": 10}
    assert buckets["ec2-tags"] == {"burst": 100, "refill": 10}
    assert buckets["route53"] == {"burst": 5, "refill": 5}
    assert limits(aws)["config"]["enabled"] is False


def test_ec2_over_the_limit_raises_request_limit_exceeded(aws):
    realistic(aws, **{"ec2-mutating": SLOW})
    ec2 = client(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_vpc(CidrBlock="10.1.0.0/16")
    with pytest.raises(ClientError) as raised:
        ec2.create_vpc(CidrBlock="10.2.0.0/16")
    error = raised.value.response
    assert error["Error"]["Code"] == "RequestLimitExceeded"
    assert error["Error"]["Message"] == "Request limit exceeded."
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert len(ec2.describe_vpcs()["Vpcs"]) == 3  # the refused call changed nothing (+ default)
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]
    report = limits(aws)
    assert report["throttled"] == {"ec2-mutating": 1}
    assert [c["throttled"] for c in aws.faults.call_log() if c["key"] == "CreateVpc"] == [
        False, False, True]


def test_botocore_treats_the_answer_as_throttling_and_retries_it(aws):
    realistic(aws, **{"ec2-mutating": SLOW})
    ec2 = client(aws, "ec2", attempts=3)
    ec2.create_vpc(CidrBlock="10.0.0.0/16")
    ec2.create_vpc(CidrBlock="10.1.0.0/16")
    with pytest.raises(ClientError) as raised:
        ec2.create_vpc(CidrBlock="10.2.0.0/16")
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert limits(aws)["throttled"] == {"ec2-mutating": 3}


def test_ec2_buckets_are_per_action_account_and_region(aws):
    realistic(aws, **{"ec2-mutating": SLOW})
    ec2 = client(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_vpc(CidrBlock="10.1.0.0/16")
    with pytest.raises(ClientError):
        ec2.create_vpc(CidrBlock="10.2.0.0/16")
    ec2.create_network_acl(VpcId=vpc)  # another action: its own bucket, still full
    client(aws, "ec2", key="another-account").create_vpc(CidrBlock="10.3.0.0/16")
    boto3.client("ec2", endpoint_url=aws.url, region_name="us-west-2",
                 aws_access_key_id="realistic", aws_secret_access_key="secret",
                 config=Config(retries={"total_max_attempts": 1})).create_vpc(CidrBlock="10.4.0.0/16")
    assert limits(aws)["throttled_total"] == 1


def test_ec2_category_buckets_when_configured(aws):
    body = RealisticConfig(enabled=True, mutation_latency_ms=0, read_latency_ms=0,
                           ec2_bucket_per="category", buckets={"ec2-mutating": SLOW})
    httpx.post(f"{aws.url}/_emulator/limits", json=body.model_dump()).raise_for_status()
    ec2 = client(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.create_network_acl(VpcId=vpc)
    with pytest.raises(ClientError) as raised:
        ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"


def test_describes_draw_from_the_non_mutating_buckets(aws):
    realistic(aws, **{"ec2-unfiltered": SLOW, "ec2-mutating": SLOW})
    ec2 = client(aws, "ec2")
    for _ in range(2):
        ec2.describe_network_acls()
    with pytest.raises(ClientError) as raised:
        ec2.describe_network_acls()
    assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
    for _ in range(5):  # filtered: the non-mutating bucket of 100
        ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": ["vpc-1"]}])
    ec2.create_tags(Resources=[ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]],
                    Tags=[{"Key": "a", "Value": "b"}])
    assert limits(aws)["served"] == {"ec2-unfiltered": 2, "ec2-non-mutating": 5,
                                     "ec2-mutating": 1, "ec2-tags": 1}


def test_route53_over_the_limit_raises_throttling(aws):
    realistic(aws, route53=SLOW)
    route53 = client(aws, "route53")
    route53.list_hosted_zones()
    route53.create_hosted_zone(Name="example.com", CallerReference="one")
    with pytest.raises(ClientError) as raised:
        route53.list_hosted_zones()
    error = raised.value.response
    assert error["Error"]["Code"] == "Throttling"
    assert error["Error"]["Message"] == "Rate exceeded"
    assert error["Error"]["Type"] == "Sender"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_under_the_limit_nothing_changes_but_latency(aws):
    body = RealisticConfig(enabled=True, mutation_latency_ms=150, read_latency_ms=50)
    httpx.post(f"{aws.url}/_emulator/limits", json=body.model_dump()).raise_for_status()
    ec2 = client(aws, "ec2")
    started = time.monotonic()
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    assert time.monotonic() - started >= 0.15  # a lower bound: the proxy slept that long
    for index in range(10):
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{index}.0/24")
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    assert len(subnets) == 10
    report = limits(aws)
    assert report["throttled_total"] == 0
    assert report["served"] == {"ec2-mutating": 11, "ec2-non-mutating": 1}


def test_tokens_refill(aws):
    realistic(aws, **{"ec2-mutating": Bucket(burst=1, refill=20)})
    ec2 = client(aws, "ec2")
    ec2.create_vpc(CidrBlock="10.0.0.0/16")
    time.sleep(0.2)  # four tokens' worth; the bucket holds one
    ec2.create_vpc(CidrBlock="10.1.0.0/16")
    assert limits(aws)["throttled_total"] == 0


def test_bad_config_is_refused_in_one_sentence(aws):
    answer = httpx.post(f"{aws.url}/_emulator/limits",
                        json={"enabled": True, "buckets": {"ec2-everything": {"burst": 1,
                                                                              "refill": 1}}})
    assert answer.status_code == 400
    assert "unknown bucket categories ['ec2-everything']" in answer.text
    assert limits(aws)["config"]["enabled"] is False


def test_reset_turns_the_realistic_mode_off(aws):
    realistic(aws, **{"ec2-mutating": SLOW})
    httpx.post(f"{aws.url}/_emulator/reset").raise_for_status()
    assert limits(aws)["config"]["enabled"] is False


def test_an_acl_with_subnets_is_not_deleted_as_ec2_refuses(aws):
    """moto deletes an ACL that subnets are still associated with (their association then names an
    ACL that no longer exists, and no restore finds them); EC2 refuses with DependencyViolation,
    and so does the proxy."""
    ec2 = client(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]

    def association() -> tuple[str, str]:
        found = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
        [entry] = [a for n in found["NetworkAcls"] for a in n["Associations"] if a["SubnetId"] == subnet]
        return entry["NetworkAclAssociationId"], entry["NetworkAclId"]

    original = association()[1]
    ec2.replace_network_acl_association(AssociationId=association()[0], NetworkAclId=acl)
    with pytest.raises(ClientError) as refused:
        ec2.delete_network_acl(NetworkAclId=acl)
    assert refused.value.response["Error"]["Code"] == "DependencyViolation"
    ec2.replace_network_acl_association(AssociationId=association()[0], NetworkAclId=original)
    ec2.delete_network_acl(NetworkAclId=acl)
    assert association()[1] == original


def test_no_subnet_is_moved_onto_an_acl_that_does_not_exist(aws):
    ec2 = client(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    ec2.delete_network_acl(NetworkAclId=acl)
    found = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
    [association] = [a["NetworkAclAssociationId"] for n in found["NetworkAcls"]
                     for a in n["Associations"] if a["SubnetId"] == subnet]
    with pytest.raises(ClientError) as refused:
        ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=acl)
    assert refused.value.response["Error"]["Code"] == "InvalidNetworkAclID.NotFound"
