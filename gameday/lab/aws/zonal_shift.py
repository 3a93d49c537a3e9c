"""ARC zonal shift as the lab's AWS proxy serves it (moto does not): the REST-JSON API of
`arc-zonal-shift` (botocore's service model 2022-10-30 gives the shapes).

Managed resources are moto's elbv2 load balancers (ALBs and NLBs) of the caller's account and
region, each with the AZ IDs of its subnets' zones. A shift is ACTIVE until its expiry (the lab's
clock) or its cancel, then EXPIRED or CANCELED. Errors are those AWS answers: ValidationException
with a reason, ResourceNotFoundException for an ARN that is not a managed resource or an unknown
shift, ConflictException when a shift is already active for the resource.
`POST /_emulator/zonal-shifts/expire` ends every active shift now; `reset` forgets them all.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import boto3

from gameday.lab.emulator import Request, Response

PREFIXES = ("/managedresources", "/zonalshifts")
_EXPIRES = re.compile(r"^([1-9][0-9]*)(m|h)$")
MAX_EXPIRY_SECONDS = 3 * 24 * 3600


@dataclass
class Shift:
    zonal_shift_id: str
    resource: str
    away_from: str
    start: float
    expiry: float
    comment: str
    created: str
    """When the load balancer was created: a shift ends with its resource (moto's reset too)."""
    status: str = "ACTIVE"

    def settle(self, now: float) -> None:
        if self.status == "ACTIVE" and now >= self.expiry:
            self.status = "EXPIRED"

    def shape(self) -> dict[str, Any]:
        return {"zonalShiftId": self.zonal_shift_id, "resourceIdentifier": self.resource,
                "awayFrom": self.away_from, "startTime": self.start, "expiryTime": self.expiry,
                "status": self.status, "comment": self.comment}


def _error(status: int, code: str, message: str, **extra: str) -> Response:
    return Response(status, {"message": message, **extra},
                    {"Content-Type": "application/json", "x-amzn-ErrorType": code})


def _seconds(expires_in: str) -> float | None:
    found = _EXPIRES.match(expires_in or "")
    if not found:
        return None
    return int(found.group(1)) * (60 if found.group(2) == "m" else 3600)


class ZonalShiftModel:
    """The shifts the lab holds, and the managed resources read from moto."""

    def __init__(self, upstream: str, clock: Any = time.time):
        self.upstream = upstream
        self.clock = clock
        self.shifts: dict[str, Shift] = {}
        self._lock = threading.Lock()
        self._moto: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.zone_ids: Any = None
        """The proxy's zone IDs per account (`gameday.lab.aws.zone_ids.ZoneIds`), when set:
        a load balancer's zones are shown in its account's zone IDs, as EC2 shows them."""

    def reset(self) -> None:
        with self._lock:
            self.shifts.clear()

    def expire_all(self) -> None:
        with self._lock:
            for shift in self.shifts.values():
                if shift.status == "ACTIVE":
                    shift.status = "EXPIRED"
                    shift.expiry = self.clock()

    def active(self) -> list[dict[str, Any]]:
        """Every active shift (the lab snapshot's and the shop's view)."""
        with self._lock:
            now = self.clock()
            for shift in self.shifts.values():
                shift.settle(now)
            return [s.shape() for s in self.shifts.values() if s.status == "ACTIVE"]

    def _clients(self, key: str, region: str) -> tuple[Any, Any]:
        """moto's elbv2 and EC2 clients for the caller's account (its key) and region, built
        once: building a client loads its model (hundreds of ms)."""
        if (key, region) not in self._moto:
            session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key="testing",
                                            region_name=region)
            self._moto[(key, region)] = (session.client("elbv2", endpoint_url=self.upstream),
                                         session.client("ec2", endpoint_url=self.upstream))
        return self._moto[(key, region)]

    def _resources(self, key: str, region: str) -> dict[str, dict[str, Any]]:
        """moto's load balancers of the caller: ARN to name and AZ IDs."""
        elbv2, ec2 = self._clients(key or "testing", region)
        if self.zone_ids is not None:
            zone_ids = self.zone_ids.ids(self.zone_ids.account(key), region)
        else:
            zone_ids = {z["ZoneName"]: z["ZoneId"]
                        for z in ec2.describe_availability_zones()["AvailabilityZones"]}
        found = {}
        for lb in elbv2.describe_load_balancers()["LoadBalancers"]:
            zones = sorted({zone_ids.get(z["ZoneName"], z["ZoneName"])
                            for z in lb.get("AvailabilityZones", [])})
            found[lb["LoadBalancerArn"]] = {"name": lb["LoadBalancerName"], "zones": zones,
                                            "created": str(lb.get("CreatedTime", ""))}
        return found

    def _in_resource(self, arn: str, now: float) -> list[dict[str, Any]]:
        return [{**s.shape(), "appliedStatus": "APPLIED"} for s in self.shifts.values()
                if s.resource == arn and s.status == "ACTIVE"]

    def _weights(self, zones: list[str], shifts: list[dict[str, Any]]) -> dict[str, float]:
        away = {s["awayFrom"] for s in shifts}
        return {zone: 0.0 if zone in away else 1.0 for zone in zones}

    def handle(self, request: Request, key: str, region: str) -> Response:
        with self._lock:
            now = self.clock()
            for shift in self.shifts.values():
                shift.settle(now)
            resources = self._resources(key, region)
            for gone in [k for k, s in self.shifts.items()
                         if resources.get(s.resource, {}).get("created") != s.created
                         and s.resource.split(":")[3:4] == [region]]:
                del self.shifts[gone]
            return self._handle(request, resources, now)

    def _handle(self, request: Request, resources: dict[str, dict[str, Any]],
                now: float) -> Response:
        path = request.path.rstrip("/")
        if path == "/managedresources" and request.method == "GET":
            items = []
            for arn, lb in resources.items():
                shifts = self._in_resource(arn, now)
                items.append({"arn": arn, "name": lb["name"], "availabilityZones": lb["zones"],
                              "appliedWeights": self._weights(lb["zones"], shifts),
                              "zonalShifts": shifts})
            return Response(200, {"items": items})
        if path.startswith("/managedresources/") and request.method == "GET":
            arn = unquote(path[len("/managedresources/"):])
            lb = resources.get(arn)
            if lb is None:
                return _error(404, "ResourceNotFoundException",
                              f"The resource {arn} is not a managed resource.")
            shifts = self._in_resource(arn, now)
            return Response(200, {"arn": arn, "name": lb["name"],
                                  "appliedWeights": self._weights(lb["zones"], shifts),
                                  "zonalShifts": shifts, "autoshifts": [],
                                  "zonalAutoshiftStatus": "DISABLED"})
        if path == "/zonalshifts" and request.method == "GET":
            status = request.arg("status") or "ACTIVE"
            resource = request.arg("resourceIdentifier")
            items = [s.shape() for s in self.shifts.values() if s.status == status
                     and (not resource or s.resource == resource)]
            return Response(200, {"items": items})
        if path == "/zonalshifts" and request.method == "POST":
            return self._start(request.json() or {}, resources, now)
        if path.startswith("/zonalshifts/"):
            shift = self.shifts.get(unquote(path[len("/zonalshifts/"):]))
            if shift is None:
                return _error(404, "ResourceNotFoundException", "The zonal shift was not found.")
            if request.method == "DELETE":
                if shift.status != "ACTIVE":
                    return _error(409, "ConflictException", "The zonal shift is not active.",
                                  reason="ZonalShiftStatusNotActive",
                                  zonalShiftId=shift.zonal_shift_id)
                shift.status = "CANCELED"
                return Response(200, shift.shape())
            if request.method == "PATCH":
                body = request.json() or {}
                if shift.status != "ACTIVE":
                    return _error(409, "ConflictException", "The zonal shift is not active.",
                                  reason="ZonalShiftStatusNotActive",
                                  zonalShiftId=shift.zonal_shift_id)
                if "expiresIn" in body:
                    seconds = _seconds(body["expiresIn"])
                    if seconds is None or seconds > MAX_EXPIRY_SECONDS:
                        return _error(400, "ValidationException", "The expiry is not valid.",
                                      reason="InvalidExpiresIn")
                    shift.expiry = now + seconds
                if "comment" in body:
                    shift.comment = str(body["comment"])
                return Response(200, shift.shape())
        return _error(404, "UnknownOperationException", f"{request.method} {request.path}")

    def _start(self, body: dict[str, Any], resources: dict[str, dict[str, Any]],
               now: float) -> Response:
        arn = str(body.get("resourceIdentifier", ""))
        seconds = _seconds(str(body.get("expiresIn", "")))
        if seconds is None or seconds > MAX_EXPIRY_SECONDS:
            return _error(400, "ValidationException", "The expiry is not valid: at most 3 days.",
                          reason="InvalidExpiresIn")
        comment = str(body.get("comment", ""))
        if len(comment) > 128:
            return _error(400, "ValidationException", "The comment is longer than 128 characters.",
                          reason="InvalidStatus")
        lb = resources.get(arn)
        if lb is None:
            return _error(404, "ResourceNotFoundException",
                          f"The resource {arn} is not a managed resource.")
        away = str(body.get("awayFrom", ""))
        if away not in lb["zones"]:
            return _error(400, "ValidationException",
                          f"The resource does not have the Availability Zone {away}.",
                          reason="InvalidAz")
        for shift in self.shifts.values():
            if shift.resource == arn and shift.status == "ACTIVE":
                return _error(409, "ConflictException",
                              "A zonal shift is already active for the resource.",
                              reason="ZonalShiftAlreadyExists",
                              zonalShiftId=shift.zonal_shift_id)
        shift = Shift(str(uuid.uuid4()), arn, away, now, now + seconds, comment, lb["created"])
        self.shifts[shift.zonal_shift_id] = shift
        return Response(201, shift.shape())


LOAD_BALANCERS = {"shop-web": "application", "shop-api": "network"}


def seed_load_balancers(region: str, subnets: dict[str, list[str]]) -> dict[str, str]:
    """The shop's load balancers registered with zonal shift, each on the first subnet of each
    of the three zones: `shop-web` (an ALB) and `shop-api` (an NLB); name to ARN. One that
    exists already is kept."""
    elbv2 = boto3.client("elbv2", region_name=region)
    found = {lb["LoadBalancerName"]: lb["LoadBalancerArn"]
             for lb in elbv2.describe_load_balancers()["LoadBalancers"]}
    for name, kind in LOAD_BALANCERS.items():
        if name not in found:
            made = elbv2.create_load_balancer(
                Name=name, Subnets=[ids[0] for ids in subnets.values()], Type=kind,
                Scheme="internet-facing")["LoadBalancers"][0]
            found[name] = made["LoadBalancerArn"]
    return {name: found[name] for name in LOAD_BALANCERS}


def zonal_shift_snapshot(region: str = "us-east-1") -> list[tuple[str, str, str]]:
    """Every active zonal shift as ARC lists it: (resource, away from, comment), sorted."""
    arc = boto3.client("arc-zonal-shift", region_name=region)
    return sorted((s["resourceIdentifier"], s["awayFrom"], s["comment"])
                  for s in arc.list_zonal_shifts(status="ACTIVE")["items"])
