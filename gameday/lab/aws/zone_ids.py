"""Zone IDs per account, as real AWS gives them: moto maps each zone name to the same zone ID in
every account, while AWS shuffles the names of older regions per account (`us-east-1a` is
`use1-az6` in one account and `use1-az1` in the next). The lab's proxy keeps moto's mapping in
moto's default account (`OWN`, the worker's own in the lab) and shows every other account a
rotation of it, the same on every run: `DescribeAvailabilityZones` answers with the account's
zone IDs, `DescribeSubnets` and `CreateSubnet` show a subnet's `availabilityZoneId` in them, and
zone IDs a caller sends (`ZoneId.N`, a `zone-id` or `availability-zone-id` filter, `CreateSubnet`'s
`AvailabilityZoneId`) are read in the account's mapping. Zone names are never rewritten: a
subnet's `availabilityZone` is what moto says, so resources stay where they are.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode

import boto3

from gameday.lab.emulator import Request, Response

OWN = "123456789012"
"""moto's default account: its zone IDs are moto's."""

ACTIONS = {"DescribeAvailabilityZones", "DescribeSubnets", "CreateSubnet"}
"""The EC2 actions that show or take zone IDs, which the proxy rewrites for other accounts."""

_ID_FILTERS = {"zone-id", "availability-zone-id"}
_ID_TAGS = re.compile(rb"<(zoneId|availabilityZoneId)>([^<]+)</\1>")


def rotated(account: str, moto_ids: dict[str, str]) -> dict[str, str]:
    """Zone name → zone ID in `account`: moto's for `OWN`; for any other, each name takes the ID
    of the name `1 + account % (n - 1)` places further on, so no name keeps its ID."""
    names = sorted(moto_ids)
    if account == OWN or len(names) < 2:
        return dict(moto_ids)
    step = 1 + int(account) % (len(names) - 1)
    return {name: moto_ids[names[(i + step) % len(names)]] for i, name in enumerate(names)}


class ZoneIds:
    """The proxy's side: which account a caller is (moto's STS, asked once per access key) and
    its zone IDs per region (moto's, asked once per region)."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self._accounts: dict[str, str] = {}
        self._moto: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def account(self, key: str) -> str:
        """The account of an access key, as moto resolves it (assumed roles' keys included)."""
        if not key:
            return OWN
        with self._lock:
            known = self._accounts.get(key)
        if known is None:
            sts = boto3.client("sts", region_name="us-east-1", endpoint_url=self.upstream,
                               aws_access_key_id=key, aws_secret_access_key="testing")
            known = str(sts.get_caller_identity()["Account"])
            with self._lock:
                self._accounts[key] = known
        return known

    def ids(self, account: str, region: str) -> dict[str, str]:
        """Zone name → zone ID of `region` as `account` sees it."""
        with self._lock:
            moto_ids = self._moto.get(region)
        if moto_ids is None:
            ec2 = boto3.client("ec2", region_name=region, endpoint_url=self.upstream,
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            moto_ids = {z["ZoneName"]: z["ZoneId"]
                        for z in ec2.describe_availability_zones()["AvailabilityZones"]}
            with self._lock:
                self._moto[region] = moto_ids
        return rotated(account, moto_ids)

    def handle(self, request: Request, key: str, region: str,
               forward: Callable[[Request], Response]) -> Response:
        """Forward the call to moto in moto's zone IDs and answer in the account's."""
        # a lab client may address an account directly, as moto allows (`x-moto-account-id`)
        account = request.headers.get("x-moto-account-id") or self.account(key)
        if account == OWN:
            return forward(request)
        moto_ids = self.ids(OWN, region)
        mine = self.ids(account, region)
        to_moto = {mine[name]: moto_ids[name] for name in mine}
        to_mine = {moto_ids[name]: mine[name] for name in mine}
        answer = forward(_translated(request, to_moto))
        body = _ID_TAGS.sub(lambda m: b"<%s>%s</%s>" % (
            m.group(1), to_mine.get(m.group(2).decode(), m.group(2).decode()).encode(), m.group(1)),
            answer.body)
        return Response(answer.status, body, answer.headers)


def _translated(request: Request, to_moto: dict[str, str]) -> Request:
    """The call with every zone ID it sends read in moto's mapping."""
    if not request.body or b"Action=" not in request.body:
        return request
    pairs = parse_qsl(request.body.decode(), keep_blank_values=True)
    filters = {name.rsplit(".", 1)[0] for name, value in pairs
               if re.fullmatch(r"Filter\.\d+\.Name", name) and value in _ID_FILTERS}

    def moto_value(name: str, value: str) -> str:
        sends_id = (re.fullmatch(r"ZoneId\.\d+", name) or name == "AvailabilityZoneId"
                    or any(name.startswith(f"{f}.Value.") for f in filters))
        return to_moto.get(value, value) if sends_id else value

    return replace(request, body=urlencode([(n, moto_value(n, v)) for n, v in pairs]).encode())
