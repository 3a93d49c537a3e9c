"""A reverse proxy in front of moto that injects AWS-shaped failures (throttling, 5xx).

moto cannot be told to fail, but a restore must be proven against a throttled API. boto3 talks to
this proxy (`AWS_ENDPOINT_URL`), which forwards to moto unless a fault rule matches the call's
`Action` (EC2, STS) or its method and path (Route53). Failures are rendered the way each AWS
protocol renders errors, so botocore raises the same `ClientError` codes as against AWS.

In realistic mode (`gameday.lab.realistic`) it adds latency and EC2's and Route 53's documented token
buckets: EC2 per account (access key), region and action, over the limit HTTP 503
`RequestLimitExceeded`; Route 53 per account, over the limit HTTP 400 `Throttling` "Rate exceeded".
Other services (STS, Auto Scaling, RDS, ELB) get the latency only.

Where moto is laxer than EC2 in a way that hides a race, the proxy answers as EC2 does:
`DeleteNetworkAcl` of an ACL that still has subnet associations is refused with
`DependencyViolation`, and `ReplaceNetworkAclAssociation` onto an ACL that does not exist with
`InvalidNetworkAclID.NotFound` (moto deletes the ACL, and drops a subnet's association before
finding that its new ACL does not exist: either way the subnet ends with no ACL, where no restore
finds it); each check is atomic with its call. EC2 calls with `DryRun=true` are answered by the
proxy itself (`DryRunOperation`, or `UnauthorizedOperation` for an action the fault config's
`deny` names, which refuses the real call too): moto ignores `DryRun` on the network-ACL calls and
would make the change. `AssociateRouteTable` is refused as EC2 refuses
it (`gameday.lab.aws.route_tables`). Accounts other than moto's default see their own zone IDs
(`gameday.lab.aws.zone_ids`), as AWS shuffles zone names per account. Instances show the power
states in between (`stopping`, `pending`) and EC2's refusals of `StopInstances` and
`StartInstances`, which moto skips (`gameday.lab.aws.power`).
"""

from __future__ import annotations

import http.client
import os
import re
import threading
import uuid
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from gameday.lab.aws.accounts import assume_role
from gameday.lab.aws.databases import FailoverModel
from gameday.lab.aws.power import PowerModel
from gameday.lab.aws.route_tables import associate_route_table
from gameday.lab.aws.zonal_shift import PREFIXES as ZONAL_SHIFT_PATHS
from gameday.lab.aws.zonal_shift import ZonalShiftModel
from gameday.lab.aws.zone_ids import ACTIONS as ZONE_ID_ACTIONS
from gameday.lab.aws.zone_ids import ZoneIds
from gameday.lab.emulator import ApiError, Emulator, Request, Response
from gameday.lab.realistic import Bucket, Decision, RateCall

_REQUEST_ID = "gameday-lab-injected"
_STS_ACTIONS = {"GetCallerIdentity", "AssumeRole", "GetSessionToken"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
               "server", "date"}
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/[^/]+/(?P<region>[^/]+)/(?P<service>[^/]+)/")
_READ_PREFIXES = ("Describe", "Get", "List")
_EC2_TAGS = {"CreateTags", "DeleteTags"}
EC2_MUTATING = "ec2-mutating"
EC2_NON_MUTATING = "ec2-non-mutating"
EC2_UNFILTERED = "ec2-unfiltered"
EC2_TAGS = "ec2-tags"
ROUTE53 = "route53"
OTHER = "other"


def signer(request: Request) -> tuple[str, str, str]:
    """(access key id, region, service) from the SigV4 `Authorization` header ("" when unsigned)."""
    found = _CREDENTIAL.search(request.headers.get("authorization", ""))
    if not found:
        return "", "", ""
    return found.group("key"), found.group("region"), found.group("service")


def _form(request: Request) -> dict[str, list[str]]:
    if request.body and b"Action=" in request.body:
        return parse_qs(request.body.decode(errors="replace"))
    return request.query


def ec2_category(action: str, params: dict[str, list[str]]) -> str:
    """EC2's throttling category of an action: tags, non-mutating (filtered or paginated,
    else unfiltered) or mutating."""
    if action in _EC2_TAGS:
        return EC2_TAGS
    if action.startswith(_READ_PREFIXES):
        narrowed = any(name.startswith("Filter.") or name in ("MaxResults", "NextToken")
                       or re.search(r"Ids?\.\d+$", name) for name in params)
        return EC2_NON_MUTATING if narrowed else EC2_UNFILTERED
    return EC2_MUTATING


def aws_action(request: Request) -> str:
    """The API action of a call: `Action` of query protocols, else method and path."""
    if request.body and b"Action=" in request.body:
        values = parse_qs(request.body.decode(errors="replace")).get("Action")
        if values:
            return values[0]
    action = request.arg("Action")
    return action or f"{request.method} {request.path}"


class AwsFaultProxy(Emulator):
    name = "aws-proxy"
    rate_limits: ClassVar[dict[str, Bucket]] = {
        EC2_MUTATING: Bucket(burst=50, refill=5),
        EC2_NON_MUTATING: Bucket(burst=100, refill=20),
        EC2_UNFILTERED: Bucket(burst=50, refill=10),
        EC2_TAGS: Bucket(burst=100, refill=10),
        ROUTE53: Bucket(burst=5, refill=5),
    }

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._associations = threading.Lock()
        """Held across a DeleteNetworkAcl's dependency check and the delete, and across each
        ReplaceNetworkAclAssociation: no association lands between the check and the delete."""
        self.power = PowerModel()
        self.failover = FailoverModel()  # Aurora's `failing-over` (gameday.lab.aws.databases)
        self.zonal_shift = ZonalShiftModel(upstream)  # ARC zonal shift (gameday.lab.aws.zonal_shift)
        self.zone_ids = ZoneIds(upstream)  # zone IDs per account (gameday.lab.aws.zone_ids)
        self.zonal_shift.zone_ids = self.zone_ids

    def reset(self) -> None:
        self.power.reset()
        self.failover.reset()
        self.zonal_shift.reset()

    def _admin(self, request: Request) -> Response:
        """Besides the emulator's admin API, `POST /_emulator/settle`: every instance between two
        power states lands in the next one now (a seed need not wait out `stop_seconds`)."""
        if request.path == "/_emulator/settle" and request.method == "POST":
            self.power.reset()
            return Response(204)
        if request.path == "/_emulator/zonal-shifts" and request.method == "GET":
            return Response(200, {"active": self.zonal_shift.active()})
        if request.path == "/_emulator/zonal-shifts/expire" and request.method == "POST":
            self.zonal_shift.expire_all()
            return Response(204)
        return super()._admin(request)

    def fault_key(self, request: Request) -> str:
        return aws_action(request)

    def error_body(self, error: ApiError) -> bytes:
        return self._query_error(error, ec2=True)

    def injected_body(self, error: ApiError, request: Request) -> bytes:
        """EC2 answers `<Response><Errors>`; other query APIs (STS) and REST-XML APIs (Route53)
        answer `<ErrorResponse>`, which is what botocore parses for each."""
        action = aws_action(request)
        if " " in action:
            return self._rest_error(error)
        return self._query_error(error, ec2=action[:1].isupper() and action not in _STS_ACTIONS)

    @staticmethod
    def _query_error(error: ApiError, ec2: bool) -> bytes:
        code, message = escape(error.code), escape(error.message)
        if ec2:
            return (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                    f"</Error></Errors><RequestID>{_REQUEST_ID}</RequestID></Response>").encode()
        return AwsFaultProxy._rest_error(error)

    @staticmethod
    def _rest_error(error: ApiError) -> bytes:
        kind = "Receiver" if error.status >= 500 else "Sender"
        return (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>"
                f"<Message>{escape(error.message)}</Message></Error>"
                f"<RequestId>{_REQUEST_ID}</RequestId></ErrorResponse>").encode()

    def rate_call(self, request: Request) -> RateCall | None:
        key, region, service = signer(request)
        action = aws_action(request)
        if service == "ec2":
            category = ec2_category(action, _form(request))
            bucket = action if self.limits.config.ec2_bucket_per == "action" else category
            return RateCall(category, (key, region, bucket), category != EC2_NON_MUTATING
                            and category != EC2_UNFILTERED)
        if service == "route53":
            return RateCall(ROUTE53, (key,), request.method != "GET")
        mutating = not (request.method == "GET" or action.startswith(_READ_PREFIXES))
        return RateCall(OTHER, (key, region, service), mutating)

    def throttled_response(self, request: Request, decision: Decision) -> Response:
        """EC2: 503 `RequestLimitExceeded` in EC2's `<Response><Errors>`; Route 53: 400
        `Throttling` "Rate exceeded" in its namespaced `<ErrorResponse>` (as AWS answers)."""
        request_id = str(uuid.uuid4())
        assert decision.call is not None
        if decision.call.category == ROUTE53:
            body = ('<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/'
                    'doc/2013-04-01/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>'
                    f'Rate exceeded</Message></Error><RequestId>{request_id}</RequestId>'
                    '</ErrorResponse>')
            return Response(400, body.encode(), {"Content-Type": "text/xml",
                                                 "x-amzn-RequestId": request_id})
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>'
                'RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error>'
                f'</Errors><RequestID>{request_id}</RequestID></Response>')
        return Response(503, body.encode(), {"Content-Type": "text/xml;charset=UTF-8"})

    def handle(self, request: Request) -> Response:
        action = aws_action(request)
        key, region, service = signer(request)
        if service == "ec2":
            self._authorize_ec2(action, request)
        if service == "arc-zonal-shift" and request.path.startswith(ZONAL_SHIFT_PATHS):
            return self.zonal_shift.handle(request, key, region)
        if action == "AssumeRole":  # as IAM: only a role that exists (gameday.lab.aws.accounts)
            return assume_role(request, self._forward)
        if action in ("StopInstances", "StartInstances"):
            return self.power.power_call(action, request, self._forward)
        if action == "DescribeInstances":
            return self.power.describe_instances(request, self._forward)
        if action == "FailoverDBCluster":
            return self.failover.failover_call(request, self._forward)
        if action == "DescribeDBClusters":
            return self.failover.describe_clusters(request, self._forward)
        if service == "ec2" and action in ZONE_ID_ACTIONS:
            return self.zone_ids.handle(request, key, region, self._forward)
        if action == "AssociateRouteTable":
            with self._associations:
                return associate_route_table(request, self._forward)
        if action not in ("DeleteNetworkAcl", "ReplaceNetworkAclAssociation"):
            return self._forward(request)
        acl_id = (_form(request).get("NetworkAclId") or [""])[0]
        with self._associations:
            if acl_id:
                found = self._describe_acl(request, acl_id)
                if action == "DeleteNetworkAcl" and b"<subnetId>" in found:
                    raise ApiError(400, "DependencyViolation",
                                   f"The networkAcl '{acl_id}' has dependencies and cannot be deleted.")
                listed = f"<networkAclId>{acl_id}<".encode() in found
                if action == "ReplaceNetworkAclAssociation" and not listed:
                    raise ApiError(400, "InvalidNetworkAclID.NotFound",
                                   f"The networkAcl ID '{acl_id}' does not exist")
            return self._forward(request)

    def _authorize_ec2(self, action: str, request: Request) -> None:
        """EC2's permission check, which comes before everything else: an action the lab's
        `deny` names is `UnauthorizedOperation` (403); a `DryRun` call is answered here, never
        forwarded (moto ignores `DryRun` on the network-ACL calls and makes the change), with
        EC2's 412 `DryRunOperation`."""
        if self.faults.denied(f"ec2:{action}"):
            raise ApiError(403, "UnauthorizedOperation",
                           "You are not authorized to perform this operation.")
        if (_form(request).get("DryRun") or [""])[0].lower() == "true":
            raise ApiError(412, "DryRunOperation",
                           "Request would have succeeded, but DryRun flag is set.")

    def _describe_acl(self, request: Request, acl_id: str) -> bytes:
        """moto's DescribeNetworkAcls answer for this ACL (asked with the caller's headers)."""
        body = f"Action=DescribeNetworkAcls&Version=2016-11-15&NetworkAclId.1={acl_id}".encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self._forward(Request(method="POST", path="/", query={}, headers=headers, body=body)).body

    def _forward(self, request: Request) -> Response:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        path = request.path + (f"?{request.raw_query}" if request.raw_query else "")
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
        try:
            connection.request(request.method, path, body=request.body or None, headers=headers)
            upstream = connection.getresponse()
            body = upstream.read()
        finally:
            connection.close()
        kept = {k: v for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP}
        return Response(upstream.status, body, kept)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="AWS fault-injecting proxy in front of moto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="moto's URL, e.g. http://127.0.0.1:5000")
    options = parser.parse_args()
    proxy = AwsFaultProxy(options.upstream, options.host, options.port)
    proxy.failover.seconds = float(os.environ.get("GAMEDAY_LAB_AWS_FAILOVER_SECONDS") or 0.5)
    proxy.start()
    print(proxy.url, flush=True)
    proxy.serve_forever()
