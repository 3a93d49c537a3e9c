"""AWS zone blackhole (contract §4): every matching subnet of the zone denies all traffic.

Before: subnet S is associated with network ACL A (its own, or the VPC's default).
After apply: S is associated with a deny-all ACL that gameday made in S's VPC (inbound and
outbound, IPv4 and IPv6), tagged with the run, the step and `gameday:restore:S = A`.
After restore: S is associated with A again (the VPC's default ACL when A is gone meanwhile), and
no ACL made by gameday for the step remains.

EC2 allows 50 tags per resource, so one ACL holds at most `SUBNETS_PER_ACL` subnets and a large
zone gets several ACLs per VPC; the restore map in the tags lets a restore, or the sweeper, work
from the tags alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from activities.aws.api import (
    MAX_TAG_VALUE,
    TAG_CHUNK,
    TAG_MANAGED,
    TAG_RESTORE,
    TAG_RUN,
    TAG_STEP,
    AwsApi,
    tags_of,
)
from activities.base import fan_out, parallel_calls
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
from gameday.targets import AwsRegionTarget, AwsZoneTarget

SUBNETS_PER_ACL = 40  # 40 restore tags + 6 of our own stay under EC2's 50 tags per resource

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
                if tags_of(acl).get(TAG_RUN) == run_id
                and (step_id is None or tags_of(acl).get(TAG_STEP) == step_id)]

    def holder(self, acl_id: str) -> str | None:
        """The run that made this ACL, when gameday made it."""
        return tags_of(self.acls.get(acl_id, {})).get(TAG_RUN)


class AwsZoneBlackhole:
    """The zone blackhole's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = BlackholeState

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    def associations(self, ec2: Any, vpc_ids: Iterable[str]) -> Associations:
        found = Associations({}, {}, {}, {}, {})
        for vpc_id in sorted(set(vpc_ids)):
            acls = self.api.pages(ec2, "describe_network_acls", "NetworkAcls",
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
        self.api.check_identity(scope)
        ec2 = self.api.ec2(target.region, scope.account)
        zones = self.api.call("DescribeAvailabilityZones", ec2.describe_availability_zones,
                           Filters=[{"Name": "region-name", "Values": [target.region]}])
        names = sorted(z["ZoneName"] for z in zones.get("AvailabilityZones", []))
        wanted = [target.zone_name] if isinstance(target, AwsZoneTarget) else names
        if isinstance(target, AwsZoneTarget) and target.zone not in names:
            raise TargetNotFound(
                f"step {request.step.id}: zone {target.zone} does not exist in "
                f"{target.region} (zones: {', '.join(names) or 'none'})"
            )
        filters = [{"Name": "availability-zone", "Values": wanted}]
        if target.vpc_ids:
            filters.append({"Name": "vpc-id", "Values": list(target.vpc_ids)})
        filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(target.tags.items())]
        subnets = self.api.pages(ec2, "describe_subnets", "Subnets", Filters=filters)
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
                id=s["SubnetId"], kind="subnet", name=tags_of(s).get("Name"),
                detail={"zone": s["AvailabilityZone"], "vpc": s["VpcId"],
                        "cidr": s.get("CidrBlock", ""),
                        "network_acl": current.acl_of.get(s["SubnetId"], "")},
            )
            for s in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
        ]
        return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each subnet's current ACL; refuse a subnet another run already holds."""
        resolved = request.resolved
        scope = resolved.scope
        if len(request.run_id) > MAX_TAG_VALUE:
            raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, EC2's tag limit")
        ec2 = self.api.ec2(scope.region, scope.account)
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
        self.api.check_identity(scope)
        ec2 = self.api.ec2(scope.region, scope.account)
        current = self.associations(ec2, (g.vpc_id for g in state.groups))
        ours = {(tags_of(a).get(TAG_CHUNK), a["VpcId"]): a
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
            self.api.call("ReplaceNetworkAclAssociation", ec2.replace_network_acl_association,
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
        created = self.api.call(
            "CreateNetworkAcl", ec2.create_network_acl, VpcId=group.vpc_id,
            TagSpecifications=[{"ResourceType": "network-acl",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )
        return str(created["NetworkAcl"]["NetworkAclId"])

    def _set_entry(self, ec2: Any) -> Callable[[EntryChange], None]:
        """Create one deny entry; one that exists already (a lost answer) is as good."""
        def set_entry(change: EntryChange) -> None:
            try:
                self.api.call("CreateNetworkAclEntry", ec2.create_network_acl_entry,
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
        ec2 = self.api.ec2(scope.region, scope.account)
        original = {s: acl for g in state.groups for s, acl in g.subnets.items()}
        vpcs = {g.vpc_id for g in state.groups}  # a step's ACLs are made only in these
        current = self.associations(ec2, vpcs)
        ours = current.made_by(checkpoint.run_id, checkpoint.step_id)
        for acl in ours:  # subnets on our ACLs that the checkpoint does not know
            for key, value in tags_of(acl).items():
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
                self.api.call(f"DeleteNetworkAcl {acl_id}", ec2.delete_network_acl,
                           NetworkAclId=acl_id)
            except CloudError as exc:
                if exc.code != "InvalidNetworkAclID.NotFound":
                    raise
        return result

    def _acl_exists(self, ec2: Any, acl_id: str) -> bool:
        try:
            found = self.api.call("DescribeNetworkAcls", ec2.describe_network_acls,
                               NetworkAclIds=[acl_id])
        except CloudError as exc:
            if exc.code == "InvalidNetworkAclID.NotFound":
                return False
            raise
        return bool(found.get("NetworkAcls"))
