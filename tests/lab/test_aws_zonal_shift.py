"""The lab's AWS proxy serves ARC zonal shift (moto does not), through the real boto3 client."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.servers import Servers


def refused(call: Any, code: str) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code
    return dict(caught.value.response)


def test_a_shift_moves_weight_off_the_zone_conflicts_expires_and_cancels(
        servers: Servers, aws: dict[str, Any]) -> None:
    arc = boto3.client("arc-zonal-shift", region_name="us-east-1")
    arn = aws["load_balancers"]["shop-web"]
    [managed] = [r for r in arc.list_managed_resources()["items"] if r["arn"] == arn]
    assert len(managed["availabilityZones"]) == 3
    zone = managed["availabilityZones"][0]
    assert set(arc.get_managed_resource(resourceIdentifier=arn)["appliedWeights"].values()) == {1.0}

    shift = arc.start_zonal_shift(resourceIdentifier=arn, awayFrom=zone, expiresIn="30m",
                                  comment="gameday run-1 step-1")
    assert shift["status"] == "ACTIVE"
    weights = arc.get_managed_resource(resourceIdentifier=arn)["appliedWeights"]
    assert weights[zone] == 0.0 and sorted(weights.values()) == [0.0, 1.0, 1.0]
    conflict = refused(lambda: arc.start_zonal_shift(
        resourceIdentifier=arn, awayFrom=zone, expiresIn="5m", comment="x"), "ConflictException")
    assert conflict["reason"] == "ZonalShiftAlreadyExists"
    updated = arc.update_zonal_shift(zonalShiftId=shift["zonalShiftId"], expiresIn="2h")
    assert updated["expiryTime"] > shift["expiryTime"]
    assert [s["zonalShiftId"] for s in arc.list_zonal_shifts(status="ACTIVE")["items"]] == [
        shift["zonalShiftId"]]

    arc.cancel_zonal_shift(zonalShiftId=shift["zonalShiftId"])
    assert arc.list_zonal_shifts(status="ACTIVE")["items"] == []
    assert len(arc.list_zonal_shifts(status="CANCELED")["items"]) == 1
    refused(lambda: arc.cancel_zonal_shift(zonalShiftId=shift["zonalShiftId"]), "ConflictException")

    again = arc.start_zonal_shift(resourceIdentifier=arn, awayFrom=zone, expiresIn="1m",
                                  comment="again")
    servers.aws_proxy.zonal_shift.expire_all()
    assert [s["zonalShiftId"] for s in arc.list_zonal_shifts(status="EXPIRED")["items"]] == [
        again["zonalShiftId"]]


def test_refusals_as_aws_renders_them(servers: Servers, aws: dict[str, Any]) -> None:
    arc = boto3.client("arc-zonal-shift", region_name="us-east-1")
    arn = aws["load_balancers"]["shop-web"]
    missing = arn.replace("shop-web", "nowhere")
    refused(lambda: arc.get_managed_resource(resourceIdentifier=missing),
            "ResourceNotFoundException")
    invalid = refused(lambda: arc.start_zonal_shift(
        resourceIdentifier=arn, awayFrom="use1-az9", expiresIn="5m", comment="x"),
        "ValidationException")
    assert invalid["reason"] == "InvalidAz"
    too_long = refused(lambda: arc.start_zonal_shift(
        resourceIdentifier=arn, awayFrom="use1-az1", expiresIn="73h", comment="x"),
        "ValidationException")
    assert too_long["reason"] == "InvalidExpiresIn"
    refused(lambda: arc.cancel_zonal_shift(zonalShiftId="no-such-shift"),
            "ResourceNotFoundException")
