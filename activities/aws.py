"""AWS: the zone blackhole (contract §4) with boto3, and its activities.

A blackholed subnet is associated with a deny-all network ACL that gameday creates per VPC. Each
gameday ACL carries the run and step in tags and, per subnet it holds, the ACL that subnet had
(`gameday:restore:<subnet>`), so a restore works from the checkpoint or from the tags alone.
EC2 allows 50 tags per resource, so one ACL holds at most `SUBNETS_PER_ACL` subnets and a large
zone gets several ACLs per VPC.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError
from pydantic import BaseModel
from temporalio import activity

from activities.base import (
    beat,
    check_guardrails,
    cloud_span,
    fan_out,
    parallel_calls,
    progress,
    restore_errors,
    temporal_errors,
)
from activities.throttle import BUCKETS, BucketKey, Throttle, caller, paced
from gameday.errors import CloudError, Refused, TargetNotFound
from gameday.plan import (
    Checkpoint,
    FaultRequest,
    FaultResult,
    PrepareRequest,
    ResolvedStep,
    Resource,
    Scope,
    StepRequest,
)
from gameday.runbook import AwsRegionTarget, AwsRegionTraffic, AwsZoneTarget
from gameday.sweep import Leftover, SweepScope

TAG_RUN = "gameday:run"
TAG_STEP = "gameday:step"
TAG_CHUNK = "gameday:chunk"
TAG_MANAGED = "gameday:managed-by"
TAG_RESTORE = "gameday:restore:"
SUBNETS_PER_ACL = 40  # 40 restore tags + 6 of our own stay under EC2's 50 tags per resource
MAX_TAG_VALUE = 256

_THROTTLED = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "SlowDown", "EC2ThrottledException", "PriorRequestNotComplete",
}
_TRANSIENT = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"}
_DENY_ALL = [
    {"RuleNumber": 1, "CidrBlock": "0.0.0.0/0"},
    {"RuleNumber": 2, "Ipv6CidrBlock": "::/0"},
]


class AclGroup(BaseModel):
    """One gameday ACL to be: the subnets it will hold, each with the ACL it had before."""

    vpc_id: str
    chunk: int
    subnets: dict[str, str]


class BlackholeState(BaseModel):
    groups: list[AclGroup]


@dataclass(frozen=True)
class EntryChange:
    """One deny-all entry that a gameday ACL lacks."""

    acl_id: str
    egress: bool
    entry: dict[str, Any]


def _entry_changes(acl_id: str, acl: dict[str, Any] | None) -> list[EntryChange]:
    """The deny-all entries `acl` (as EC2 describes it; None: just created) does not have yet."""
    have = {(e.get("Egress"), e.get("RuleNumber")) for e in (acl or {}).get("Entries", [])}
    return [EntryChange(acl_id, egress, entry) for egress in (False, True) for entry in _DENY_ALL
            if (egress, entry["RuleNumber"]) not in have]


def _error(exc: Exception, doing: str) -> Exception:
    """Turn a boto error into a CloudError that says whether retrying can help."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _THROTTLED or status == 429:
            return CloudError(f"AWS throttled {doing}: {code}", retryable=True, retry_after=1.0,
                              code=code)
        retryable = code in _TRANSIENT or status >= 500
        return CloudError(f"AWS refused {doing}: {code}: {message}", retryable=retryable, code=code)
    if isinstance(exc, ConnectionError | HTTPClientError):
        return CloudError(f"AWS did not answer {doing}: {exc}", retryable=True)
    return CloudError(f"AWS call failed {doing}: {exc}", retryable=True)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def throttle_of(exc: Exception) -> Throttle | None:
    """The throttle an AWS answer is (EC2's 503 `RequestLimitExceeded`, Route 53's
    `Throttling` and `PriorRequestNotComplete`, any 429), or None."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if _code(exc) in _THROTTLED or status == 429:
            return Throttle(retry_after=None)
    return None


def api_category(service: str, operation: str) -> str:
    """The token bucket an AWS API call draws from (EC2 throttles per action family)."""
    if service == "ec2":
        if operation in ("create_tags", "delete_tags"):
            return "ec2-tags"
        if operation.startswith(("describe_", "get_")):
            return "ec2-describe"
        return "ec2-mutating"
    if service in ("route53", "sts"):
        return service
    return "aws-other"


def bucket_of(client: Any, operation: str) -> BucketKey:
    """The bucket of one call of `client`: per account (the activity's), region and category."""
    service = client.meta.service_model.service_name
    region = "global" if service == "route53" else client.meta.region_name
    # EC2 keeps one bucket per API action, of its category's size and rate
    action = operation if service == "ec2" else ""
    return BucketKey("aws", caller().account, region or "", api_category(service, operation), action)


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


@dataclass
class Associations:
    """Which ACL each subnet of some VPCs is associated with, read in one pass per VPC."""

    acl_of: dict[str, str]
    association_of: dict[str, str]
    vpc_of: dict[str, str]
    default_acl: dict[str, str]
    acls: dict[str, dict[str, Any]]
    """Every ACL of those VPCs as EC2 describes it, tags included."""

    def made_by(self, run_id: str, step_id: str | None = None) -> list[dict[str, Any]]:
        """The ACLs gameday made for a run (and step): read from the per-VPC describes, never
        with a tag filter (which EC2, and moto far more, answers by scanning every tag)."""
        return [acl for acl in self.acls.values()
                if _tags(acl).get(TAG_RUN) == run_id
                and (step_id is None or _tags(acl).get(TAG_STEP) == step_id)]

    def holder(self, acl_id: str) -> str | None:
        """The run that made this ACL, when gameday made it."""
        return _tags(self.acls.get(acl_id, {})).get(TAG_RUN)


class AwsApi:
    """boto3 plumbing shared by the AWS faults: clients with low SDK retries, errors translated."""

    def __init__(self, session_factory: Any = boto3.session.Session):
        self._session_factory = session_factory
        # No SDK retries: throttles wait for tokens in `_call` (never multiplied by botocore's
        # own retries), everything else goes to Temporal's retry policy.
        self._config = Config(retries={"max_attempts": 1, "mode": "standard"},
                              connect_timeout=5, read_timeout=30)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        """One client per service and region, built once: boto3 clients are thread-safe, and
        building one loads the service's model (tens of MB, hundreds of ms)."""
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self._session_factory(region_name=region).client(
                    service, config=self._config)
            return self._clients[key]

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def _call(self, doing: str, fn: Any, **kwargs: Any) -> Any:
        """One call of a client method, paced by its token bucket; a throttled call waits and
        is made again (see `activities.throttle.paced`)."""
        beat()
        try:
            return paced(bucket_of(fn.__self__, fn.__name__), lambda: fn(**kwargs), throttle_of)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, doing) from exc

    def _pages(self, client: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a paginated listing, each page paced; a throttled page starts the
        listing again once the bucket lets it."""
        bucket = bucket_of(client, operation)

        def listing() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            pages = iter(client.get_paginator(operation).paginate(**kwargs))
            for number in itertools.count():
                if number:  # `paced` took the first page's token
                    who = caller()
                    BUCKETS.bucket(bucket).take(who.priority, who.stopped)
                page = next(pages, None)
                if page is None:
                    return items
                beat()
                items.extend(page.get(key, []))
            raise AssertionError("unreachable")

        try:
            return paced(bucket, listing, throttle_of)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, operation) from exc

    def check_identity(self, scope: Scope) -> None:
        """The credentials must belong to the account the runbook names."""
        sts = self.client("sts", scope.region)
        account = self._call("GetCallerIdentity", sts.get_caller_identity)["Account"]
        if account != scope.account:
            raise Refused(
                f"the worker's AWS credentials are for account {account}, "
                f"but the step targets account {scope.account}"
            )


class AwsZoneBlackhole(AwsApi):
    """The zone blackhole's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    def associations(self, ec2: Any, vpc_ids: Iterable[str]) -> Associations:
        found = Associations({}, {}, {}, {}, {})
        for vpc_id in sorted(set(vpc_ids)):
            acls = self._pages(ec2, "describe_network_acls", "NetworkAcls",
                               Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
            for acl in acls:
                found.acls[acl["NetworkAclId"]] = acl
                if acl.get("IsDefault"):
                    found.default_acl[vpc_id] = acl["NetworkAclId"]
                for association in acl.get("Associations", []):
                    found.acl_of[association["SubnetId"]] = acl["NetworkAclId"]
                    found.vpc_of[association["SubnetId"]] = vpc_id
                    found.association_of[association["SubnetId"]] = association[
                        "NetworkAclAssociationId"
                    ]
        return found

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """The subnets of the zone (or, for blackhole_region, of every zone of the region) that
        match the target's VPCs and tags, each with its zone and current ACL."""
        target = request.step.target
        assert isinstance(target, AwsZoneTarget | AwsRegionTarget)
        scope = Scope.of(target)
        with cloud_span(f"aws.resolve_{request.step.action}", scope) as span:
            check_guardrails(request.step.id, scope, request.guardrails, None)
            self.check_identity(scope)
            ec2 = self.ec2(target.region)
            zones = self._call("DescribeAvailabilityZones", ec2.describe_availability_zones,
                               Filters=[{"Name": "region-name", "Values": [target.region]}])
            names = sorted(z["ZoneName"] for z in zones.get("AvailabilityZones", []))
            wanted = [target.zone] if isinstance(target, AwsZoneTarget) else names
            if isinstance(target, AwsZoneTarget) and target.zone not in names:
                raise TargetNotFound(
                    f"step {request.step.id}: zone {target.zone} does not exist in "
                    f"{target.region} (zones: {', '.join(names) or 'none'})"
                )
            filters = [{"Name": "availability-zone", "Values": wanted}]
            if target.vpc_ids:
                filters.append({"Name": "vpc-id", "Values": list(target.vpc_ids)})
            filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(target.tags.items())]
            subnets = self._pages(ec2, "describe_subnets", "Subnets", Filters=filters)
            if not subnets:
                tags = ", ".join(f"{k}={v}" for k, v in sorted(target.tags.items()))
                raise TargetNotFound(
                    f"step {request.step.id}: no subnet in {' '.join(wanted) or target.region}"
                    + (f" of {', '.join(target.vpc_ids)}" if target.vpc_ids else "")
                    + (f" carries the tags {tags}" if tags else "")
                )
            current = self.associations(ec2, (s["VpcId"] for s in subnets))
            if request.only_new:
                held = {a["NetworkAclId"] for a in current.made_by(request.run_id)}
                subnets = [s for s in subnets if current.acl_of.get(s["SubnetId"]) not in held]
            resources = [
                Resource(
                    id=s["SubnetId"], kind="subnet", name=_tags(s).get("Name"),
                    detail={"zone": s["AvailabilityZone"], "vpc": s["VpcId"],
                            "cidr": s.get("CidrBlock", ""),
                            "network_acl": current.acl_of.get(s["SubnetId"], "")},
                )
                for s in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
            ]
            span.set_attribute("gameday.resources", len(resources))
            return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                                resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each subnet's current ACL; refuse a subnet another run already holds."""
        resolved = request.resolved
        scope = resolved.scope
        with cloud_span("aws.prepare_blackhole_zone", scope, len(resolved.resources)):
            if len(request.run_id) > MAX_TAG_VALUE:
                raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, EC2's tag limit")
            check_guardrails(resolved.step_id, scope, request.guardrails, len(resolved.resources))
            ec2 = self.ec2(scope.region)
            vpc_of = {r.id: r.detail["vpc"] for r in resolved.resources}
            current = self.associations(ec2, vpc_of.values())
            groups: list[AclGroup] = []
            for vpc_id in sorted(set(vpc_of.values())):
                subnets = sorted(s for s, v in vpc_of.items() if v == vpc_id and s in current.acl_of)
                for subnet in subnets:
                    holder = current.holder(current.acl_of[subnet])
                    if holder:
                        raise Refused(
                            f"subnet {subnet} is already blackholed by gameday run {holder}"
                        )
                for chunk, start in enumerate(range(0, len(subnets), SUBNETS_PER_ACL)):
                    members = subnets[start:start + SUBNETS_PER_ACL]
                    groups.append(AclGroup(vpc_id=vpc_id, chunk=chunk,
                                           subnets={s: current.acl_of[s] for s in members}))
            state = BlackholeState(groups=groups)
            count = sum(len(g.subnets) for g in groups)
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="blackhole_zone", scope=scope, resources=count,
                              state=state.model_dump(mode="json"))

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = BlackholeState.model_validate(checkpoint.state)
        result = FaultResult()
        with cloud_span("aws.apply_blackhole_zone", scope, checkpoint.resources):
            check_guardrails(checkpoint.step_id, scope, request.guardrails, checkpoint.resources)
            self.check_identity(scope)
            ec2 = self.ec2(scope.region)
            current = self.associations(ec2, (g.vpc_id for g in state.groups))
            ours = {(_tags(a).get(TAG_CHUNK), a["VpcId"]): a
                    for a in current.made_by(checkpoint.run_id, checkpoint.step_id)}
            existing = {key: acl["NetworkAclId"] for key, acl in ours.items()}
            missing = [g for g in state.groups if (str(g.chunk), g.vpc_id) not in existing]
            for group, acl_id in fan_out(missing, lambda g: self._create_acl(ec2, checkpoint, g),
                                         parallel_calls("aws")):
                existing[(str(group.chunk), group.vpc_id)] = acl_id
            # Every deny entry of every ACL, also of ACLs an earlier attempt made: one throttled
            # CreateNetworkAclEntry must not leave an ACL that lets traffic through.
            entries = [change for group in state.groups
                       for change in _entry_changes(existing[(str(group.chunk), group.vpc_id)],
                                                    ours.get((str(group.chunk), group.vpc_id)))]
            for _ in fan_out(entries, self._set_entry(ec2), parallel_calls("aws")):
                pass
            moves: list[tuple[str, str]] = []  # (association, deny-all ACL)
            for group in state.groups:
                acl_id = existing[(str(group.chunk), group.vpc_id)]
                for subnet in group.subnets:
                    if current.acl_of.get(subnet) == acl_id:
                        result.unchanged += 1
                    elif subnet not in current.association_of:
                        result.notes.append(f"subnet {subnet} no longer exists; skipped")
                    else:
                        moves.append((current.association_of[subnet], acl_id))
            for _ in fan_out(moves, self._move(ec2), parallel_calls("aws")):
                result.changed += 1
            return result

    def _move(self, ec2: Any) -> Callable[[tuple[str, str]], None]:
        """Re-associate (association id, ACL id): the one call a blackhole makes per subnet."""
        def move(change: tuple[str, str]) -> None:
            self._call("ReplaceNetworkAclAssociation", ec2.replace_network_acl_association,
                       AssociationId=change[0], NetworkAclId=change[1])
        return move

    def _create_acl(self, ec2: Any, checkpoint: Checkpoint, group: AclGroup) -> str:
        """Create one gameday ACL with its tags (the restore map among them); its entries
        follow in `_set_entry`."""
        tags = {
            "Name": f"gameday-{checkpoint.step_id}-{group.chunk}"[:MAX_TAG_VALUE],
            TAG_MANAGED: "gameday",
            TAG_RUN: checkpoint.run_id,
            TAG_STEP: checkpoint.step_id,
            TAG_CHUNK: str(group.chunk),
        }
        tags.update({f"{TAG_RESTORE}{subnet}": acl for subnet, acl in group.subnets.items()})
        created = self._call(
            "CreateNetworkAcl", ec2.create_network_acl, VpcId=group.vpc_id,
            TagSpecifications=[{"ResourceType": "network-acl",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        return str(created["NetworkAcl"]["NetworkAclId"])

    def _set_entry(self, ec2: Any) -> Callable[[EntryChange], None]:
        """Create one deny entry; one that exists already (a lost answer) is as good."""
        def set_entry(change: EntryChange) -> None:
            try:
                self._call("CreateNetworkAclEntry", ec2.create_network_acl_entry,
                           NetworkAclId=change.acl_id, Egress=change.egress, Protocol="-1",
                           RuleAction="deny", **change.entry)
            except CloudError as exc:
                if exc.code != "NetworkAclEntryAlreadyExists":
                    raise
        return set_entry

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put every subnet back on the ACL it had, then delete gameday's ACLs. Safe to repeat."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = BlackholeState.model_validate(checkpoint.state)
        with cloud_span("aws.restore_blackhole_zone", scope, checkpoint.resources):
            ec2 = self.ec2(scope.region)
            original = {s: acl for g in state.groups for s, acl in g.subnets.items()}
            vpcs = {g.vpc_id for g in state.groups}  # a step's ACLs are made only in these
            current = self.associations(ec2, vpcs)
            ours = current.made_by(checkpoint.run_id, checkpoint.step_id)
            for acl in ours:  # subnets on our ACLs that the checkpoint does not know
                for key, value in _tags(acl).items():
                    if key.startswith(TAG_RESTORE):
                        original.setdefault(key.removeprefix(TAG_RESTORE), value)
            return self.restore_subnets(ec2, original, vpcs, [a["NetworkAclId"] for a in ours],
                                        current)

    def restore_subnets(self, ec2: Any, original: dict[str, str], vpc_ids: Iterable[str],
                        gameday_acl_ids: list[str],
                        current: Associations | None = None) -> FaultResult:
        """Associate each subnet with its original ACL, then delete the given gameday ACLs;
        `current`, when given, is a fresh read of the VPCs' associations."""
        result = FaultResult()
        current = current or self.associations(ec2, vpc_ids)
        existing_acls = set(current.acl_of.values()) | set(current.default_acl.values())
        existing_acls |= set(gameday_acl_ids)
        moves: list[tuple[str, str]] = []  # (association, original ACL)
        for subnet, acl in sorted(original.items()):
            if subnet not in current.association_of:
                result.notes.append(f"subnet {subnet} no longer exists; nothing to restore")
                continue
            if current.acl_of[subnet] == acl:
                result.unchanged += 1
                continue
            wanted = acl
            if acl not in existing_acls and not self._acl_exists(ec2, acl):
                wanted = current.default_acl.get(current.vpc_of[subnet], "")
                if not wanted:
                    raise CloudError(f"subnet {subnet}: its ACL {acl} is gone and no default ACL "
                                     "was found", retryable=False)
                result.notes.append(f"subnet {subnet}: original ACL {acl} is gone; "
                                    f"restored to the VPC's default ACL {wanted}")
            moves.append((current.association_of[subnet], wanted))
        for _ in fan_out(moves, self._move(ec2), parallel_calls("aws")):
            result.changed += 1
        for acl_id in gameday_acl_ids:
            try:
                self._call(f"DeleteNetworkAcl {acl_id}", ec2.delete_network_acl,
                           NetworkAclId=acl_id)
            except CloudError as exc:
                if exc.code != "InvalidNetworkAclID.NotFound":
                    raise
        return result

    def _acl_exists(self, ec2: Any, acl_id: str) -> bool:
        try:
            found = self._call("DescribeNetworkAcls", ec2.describe_network_acls,
                               NetworkAclIds=[acl_id])
        except CloudError as exc:
            if exc.code == "InvalidNetworkAclID.NotFound":
                return False
            raise
        return bool(found.get("NetworkAcls"))


class AwsSweeper(AwsZoneBlackhole):
    """Finds gameday's network ACLs by their tags and undoes them from those tags alone."""

    def regions(self, scope: SweepScope) -> list[str]:
        if scope.aws_regions:
            return scope.aws_regions
        ec2 = self.ec2(os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        found = self._call("DescribeRegions", ec2.describe_regions)
        return sorted(r["RegionName"] for r in found.get("Regions", []))

    def find(self, scope: SweepScope) -> list[Leftover]:
        leftovers: list[Leftover] = []
        for region in self.regions(scope):
            ec2 = self.ec2(region)
            acls = self._pages(ec2, "describe_network_acls", "NetworkAcls",
                               Filters=[{"Name": "tag-key", "Values": [TAG_RUN]}])
            for acl in acls:
                tags = _tags(acl)
                subnets = {k.removeprefix(TAG_RESTORE): v for k, v in tags.items()
                           if k.startswith(TAG_RESTORE)}
                held = [a["SubnetId"] for a in acl.get("Associations", [])]
                leftovers.append(Leftover(
                    cloud="aws", kind="network-acl", id=acl["NetworkAclId"], run_id=tags[TAG_RUN],
                    step_id=tags.get(TAG_STEP, ""), location=region,
                    detail={"vpc": acl["VpcId"], "subnets_held": ",".join(sorted(held)),
                            "restore_map": ",".join(f"{k}={v}" for k, v in sorted(subnets.items()))},
                ))
        return leftovers

    def sweep(self, leftover: Leftover) -> FaultResult:
        ec2 = self.ec2(leftover.location)
        acls = self._pages(ec2, "describe_network_acls", "NetworkAcls",
                           Filters=[{"Name": "tag:" + TAG_RUN, "Values": [leftover.run_id]}])
        acl = next((a for a in acls if a["NetworkAclId"] == leftover.id), None)
        if acl is None:
            return FaultResult(notes=[f"{leftover.id} is already gone"])
        original = {k.removeprefix(TAG_RESTORE): v for k, v in _tags(acl).items()
                    if k.startswith(TAG_RESTORE)}
        return self.restore_subnets(ec2, original, [acl["VpcId"]], [leftover.id])


class WeightedRecord(BaseModel):
    """One weighted record set of the evacuated region, and its weight before."""

    name: str
    type: str
    set_identifier: str
    weight: int


class EvacuationState(BaseModel):
    hosted_zone_id: str
    records: list[WeightedRecord]


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def _zone_id(hosted_zone_id: str) -> str:
    return hosted_zone_id.rsplit("/", 1)[-1]


class AwsRegionEvacuation(AwsApi):
    """Route53: the region's weighted records go to weight 0, then back to their own weights."""

    def _zone(self, route53: Any, hosted_zone: str) -> str:
        """The id of a hosted zone given by id or, when it contains a dot, by its DNS name."""
        if "." not in hosted_zone:
            return _zone_id(hosted_zone)
        zones = [z for z in self._pages(route53, "list_hosted_zones", "HostedZones")
                 if z["Name"] == _fqdn(hosted_zone)]
        if len(zones) != 1:
            found = "no" if not zones else f"{len(zones)}"
            raise TargetNotFound(f"{found} hosted zones are named {hosted_zone}; give its id")
        return _zone_id(zones[0]["Id"])

    def _record_sets(self, route53: Any, hosted_zone: str) -> list[dict[str, Any]]:
        try:
            return self._pages(route53, "list_resource_record_sets", "ResourceRecordSets",
                               HostedZoneId=self._zone(route53, hosted_zone))
        except CloudError as exc:
            if exc.code == "NoSuchHostedZone":
                raise TargetNotFound(f"hosted zone {hosted_zone} does not exist") from exc
            raise

    def resolve(self, request: StepRequest) -> ResolvedStep:
        target = request.step.target
        assert isinstance(target, AwsRegionTraffic)
        scope = Scope.of(target)
        with cloud_span("aws.resolve_evacuate_region", scope) as span:
            check_guardrails(request.step.id, scope, request.guardrails, None)
            self.check_identity(scope)
            sets = self._record_sets(self.client("route53", "us-east-1"), target.hosted_zone_id)
            resources: list[Resource] = []
            for name in target.record_names:
                weighted = [r for r in sets if r["Name"] == _fqdn(name) and "Weight" in r]
                ours = [r for r in weighted if r.get("SetIdentifier") == target.region]
                if not ours:
                    raise TargetNotFound(
                        f"step {request.step.id}: {name} has no weighted record whose "
                        f"SetIdentifier is {target.region} in hosted zone {target.hosted_zone_id}"
                    )
                for record in ours:
                    others = [r for r in weighted if r["Type"] == record["Type"]
                              and r.get("SetIdentifier") != target.region and r["Weight"] > 0]
                    if not others:
                        raise Refused(
                            f"step {request.step.id}: evacuating {target.region} would leave "
                            f"{name} ({record['Type']}) with no positive weight anywhere"
                        )
                    resources.append(Resource(
                        id=f"{record['Name']}|{record['Type']}|{record['SetIdentifier']}",
                        kind="record", name=record["Name"],
                        detail={"type": record["Type"], "weight": str(record["Weight"]),
                                "other_regions": ",".join(r["SetIdentifier"] for r in others)},
                    ))
            span.set_attribute("gameday.resources", len(resources))
            return ResolvedStep(step_id=request.step.id, action="evacuate_region", scope=scope,
                                resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        target = request.step.target
        assert isinstance(target, AwsRegionTraffic)
        resolved = request.resolved
        with cloud_span("aws.prepare_evacuate_region", resolved.scope, len(resolved.resources)):
            check_guardrails(resolved.step_id, resolved.scope, request.guardrails,
                             len(resolved.resources))
            sets = self._record_sets(self.client("route53", "us-east-1"), target.hosted_zone_id)
            wanted = {r.id for r in resolved.resources}
            records = [
                WeightedRecord(name=r["Name"], type=r["Type"], set_identifier=r["SetIdentifier"],
                               weight=r["Weight"])
                for r in sets
                if f"{r['Name']}|{r['Type']}|{r.get('SetIdentifier')}" in wanted
            ]
            state = EvacuationState(hosted_zone_id=target.hosted_zone_id, records=records)
            return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                              action="evacuate_region", scope=resolved.scope,
                              resources=len(records), state=state.model_dump(mode="json"))

    def _set_weights(self, checkpoint: Checkpoint, weight_of: Any, verb: str) -> FaultResult:
        """Upsert each record with `weight_of(record)`, keeping whatever else changed meanwhile."""
        state = EvacuationState.model_validate(checkpoint.state)
        route53 = self.client("route53", "us-east-1")
        current = {(r["Name"], r["Type"], r.get("SetIdentifier")): r
                   for r in self._record_sets(route53, state.hosted_zone_id) if "Weight" in r}
        result = FaultResult()
        changes = []
        for record in state.records:
            live = current.get((record.name, record.type, record.set_identifier))
            if live is None:
                result.notes.append(f"{record.name} {record.type} {record.set_identifier} "
                                    "no longer exists")
                continue
            weight = weight_of(record)
            if live["Weight"] == weight:
                result.unchanged += 1
                continue
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {**live, "Weight": weight}})
        for start in range(0, len(changes), 500):
            self._call(f"ChangeResourceRecordSets ({verb})", route53.change_resource_record_sets,
                       HostedZoneId=self._zone(route53, state.hosted_zone_id),
                       ChangeBatch={"Comment": f"gameday {checkpoint.run_id} {checkpoint.step_id} "
                                               f"{verb}",
                                    "Changes": changes[start:start + 500]})
            result.changed += len(changes[start:start + 500])
            progress(result.changed, len(changes))
        return result

    def apply(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        with cloud_span("aws.apply_evacuate_region", checkpoint.scope, checkpoint.resources):
            check_guardrails(checkpoint.step_id, checkpoint.scope, request.guardrails,
                             checkpoint.resources)
            self.check_identity(checkpoint.scope)
            return self._set_weights(checkpoint, lambda record: 0, "evacuate")

    def restore(self, request: FaultRequest) -> FaultResult:
        checkpoint = request.checkpoint
        with cloud_span("aws.restore_evacuate_region", checkpoint.scope, checkpoint.resources):
            return self._set_weights(checkpoint, lambda record: record.weight, "fail back")


class AwsActivities:
    """AWS activities, named `aws.<verb>_<action>`; thin wrappers over the plain classes above."""

    def __init__(self, blackhole: AwsZoneBlackhole | None = None,
                 evacuation: AwsRegionEvacuation | None = None):
        self.blackhole = blackhole or AwsZoneBlackhole()
        self.evacuation = evacuation or AwsRegionEvacuation()
        self.sweeper = AwsSweeper()

    @activity.defn(name="aws.resolve_blackhole_zone")
    @temporal_errors
    def resolve_blackhole_zone(self, request: StepRequest) -> ResolvedStep:
        return self.blackhole.resolve(request)

    @activity.defn(name="aws.resolve_blackhole_region")
    @temporal_errors
    def resolve_blackhole_region(self, request: StepRequest) -> ResolvedStep:
        return self.blackhole.resolve(request)

    @activity.defn(name="aws.prepare_blackhole_zone")
    @temporal_errors
    def prepare_blackhole_zone(self, request: PrepareRequest) -> Checkpoint:
        return self.blackhole.prepare(request)

    @activity.defn(name="aws.apply_blackhole_zone")
    @temporal_errors
    def apply_blackhole_zone(self, request: FaultRequest) -> FaultResult:
        return self.blackhole.apply(request)

    @activity.defn(name="aws.restore_blackhole_zone")
    @restore_errors
    def restore_blackhole_zone(self, request: FaultRequest) -> FaultResult:
        return self.blackhole.restore(request)

    @activity.defn(name="aws.find_leftovers")
    @temporal_errors
    def find_leftovers(self, scope: SweepScope) -> list[Leftover]:
        return self.sweeper.find(scope)

    @activity.defn(name="aws.sweep_leftover")
    @restore_errors
    def sweep_leftover(self, leftover: Leftover) -> FaultResult:
        return self.sweeper.sweep(leftover)

    @activity.defn(name="aws.resolve_evacuate_region")
    @temporal_errors
    def resolve_evacuate_region(self, request: StepRequest) -> ResolvedStep:
        return self.evacuation.resolve(request)

    @activity.defn(name="aws.prepare_evacuate_region")
    @temporal_errors
    def prepare_evacuate_region(self, request: PrepareRequest) -> Checkpoint:
        return self.evacuation.prepare(request)

    @activity.defn(name="aws.apply_evacuate_region")
    @temporal_errors
    def apply_evacuate_region(self, request: FaultRequest) -> FaultResult:
        return self.evacuation.apply(request)

    @activity.defn(name="aws.restore_evacuate_region")
    @restore_errors
    def restore_evacuate_region(self, request: FaultRequest) -> FaultResult:
        return self.evacuation.restore(request)

    def all(self) -> list[Any]:
        return [self.resolve_blackhole_zone, self.resolve_blackhole_region, self.prepare_blackhole_zone,
                self.apply_blackhole_zone, self.restore_blackhole_zone,
                self.resolve_evacuate_region, self.prepare_evacuate_region,
                self.apply_evacuate_region, self.restore_evacuate_region,
                self.find_leftovers, self.sweep_leftover]
