"""The lab's AWS proxy shows EC2's power states and refusals that moto skips, through real boto3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from gameday.lab.aws.fleet import INSTANCE_STORE_AMI, launch, wait_for_state
from tests.support.servers import Servers


@pytest.fixture
def ec2(servers: Servers, aws: dict[str, Any]) -> Iterator[Any]:
    power = servers.aws_proxy.power
    stop, start = power.stop_seconds, power.start_seconds
    power.stop_seconds = power.start_seconds = 1.5
    yield boto3.client("ec2", region_name="us-east-1")
    power.stop_seconds, power.start_seconds = stop, start


def state(ec2: Any, instance_id: str) -> dict[str, Any]:
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return dict(reservation["Instances"][0]["State"])


def with_state(ec2: Any, name: str) -> set[str]:
    reservations = ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": [name]},
        {"Name": "tag:tier", "Values": ["web"]}])["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"]}


def refused(call: Any, code: str) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code
    return str(caught.value.response["Error"]["Message"])


def test_a_stop_shows_stopping_then_stopped_and_the_state_filter_follows(
        ec2: Any, aws: dict[str, Any]) -> None:
    web = aws["instances"]["web-1b-1"]
    answer = ec2.stop_instances(InstanceIds=[web], Force=True)["StoppingInstances"][0]
    assert (answer["PreviousState"]["Name"], answer["CurrentState"]["Name"]) == ("running",
                                                                                 "stopping")
    assert state(ec2, web) == {"Code": 64, "Name": "stopping"}
    assert web in with_state(ec2, "stopping") and web not in with_state(ec2, "stopped")
    again = ec2.stop_instances(InstanceIds=[web], Force=True)["StoppingInstances"][0]
    assert again["PreviousState"]["Name"] == "stopping"  # EC2 takes a forced stop of a stopping one
    wait_for_state(ec2, [web], "stopped", timeout=5)
    assert state(ec2, web) == {"Code": 80, "Name": "stopped"}
    assert web in with_state(ec2, "stopped")


def test_ec2s_refusals_of_stop_and_start_in_between(ec2: Any, aws: dict[str, Any]) -> None:
    web = aws["instances"]["web-1b-1"]
    ec2.stop_instances(InstanceIds=[web])
    message = refused(lambda: ec2.start_instances(InstanceIds=[web]), "IncorrectInstanceState")
    assert "can be started" in message
    wait_for_state(ec2, [web], "stopped", timeout=5)
    started = ec2.start_instances(InstanceIds=[web])["StartingInstances"][0]
    assert started["CurrentState"]["Name"] == "pending"
    assert state(ec2, web)["Name"] == "pending" and web in with_state(ec2, "pending")
    assert web not in with_state(ec2, "running")
    refused(lambda: ec2.stop_instances(InstanceIds=[web], Force=True), "IncorrectInstanceState")
    wait_for_state(ec2, [web], "running", timeout=5)

    ec2.terminate_instances(InstanceIds=[web])
    refused(lambda: ec2.start_instances(InstanceIds=[web]), "IncorrectInstanceState")
    time.sleep(0.1)
    assert state(ec2, web)["Name"] == "terminated"  # moto alone would have it running again


def test_an_instance_store_root_is_shown_and_cannot_be_stopped(ec2: Any,
                                                               aws: dict[str, Any]) -> None:
    ephemeral = launch(ec2, "ephemeral", aws["subnets"]["us-east-1b"][0], {},
                       image=INSTANCE_STORE_AMI)
    [reservation] = ec2.describe_instances(InstanceIds=[ephemeral])["Reservations"]
    assert reservation["Instances"][0]["RootDeviceType"] == "instance-store"
    refused(lambda: ec2.stop_instances(InstanceIds=[ephemeral], Force=True),
            "UnsupportedOperation")
    assert state(ec2, ephemeral)["Name"] == "running"
    [web] = ec2.describe_instances(InstanceIds=[aws["instances"]["web-1b-1"]])["Reservations"]
    assert web["Instances"][0]["RootDeviceType"] == "ebs"
