"""AWS region partition (contract §10), like FIS's Cross-Region: Connectivity.

Before: subnet S of the region (of `vpc_ids` when given) uses route table T, explicitly or as its
VPC's main table, and T has routes to a peer region: a VPC peering connection whose other side is
in a peer region, or a transit gateway peered (by a peering attachment) with a transit gateway of
a peer region, for a destination that overlaps a CIDR of a VPC in a peer region.
After apply: S is explicitly associated with a gameday copy of T in S's VPC, tagged with the run,
the step, T (`gameday:source`) and `gameday:restore:S` = T (explicit) or `main` (implicit); the copy
has T's static routes except those to the peer regions (local, internet, NAT, instance, ENI,
other peering and transit gateway routes stay). A subnet whose table has no such route is left
alone.
After restore: S is back on T (`ReplaceRouteTableAssociation`), or, when it was on the main table
implicitly, its explicit association is removed (`DisassociateRouteTable`); no gameday copy of the
step remains.

Not copied, so refused before any change: tables with gateway-endpoint routes (`vpce-`) or routes
propagated from a virtual private gateway (a copy cannot hold them without other calls). Routes in
state `blackhole` carry nothing and are not copied. A prefix-list destination is cut when its
target is a peering connection to a peer region; to a transit gateway it is kept (the overlap with
the peer regions' CIDRs is not read from the prefix list).

EC2 allows 50 tags per resource, so one copy holds at most `SUBNETS_PER_COPY` subnets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
from activities.aws.routes import Tables, peer_paths, read_tables, route_key, static_route
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
from gameday.sweep import Leftover
from gameday.targets import AwsPartitionTarget

TAG_SOURCE = "gameday:source"
MAIN = "main"
"""The restore tag's value of a subnet that was on its VPC's main table implicitly."""
SUBNETS_PER_COPY = 40  # 40 restore tags + 6 of our own stay under EC2's 50 tags per resource
MAX_TABLES_PER_VPC = 200


class TableCopy(BaseModel):
    """One gameday copy to be: its source table, and the subnets it will hold, each with the
    table it had (`main`: the VPC's main table, implicitly)."""

    vpc_id: str
    source: str
    chunk: int
    subnets: dict[str, str]
    routes: list[dict[str, str]]
    """The source's static routes that the copy keeps (destination and target keys)."""
    cut: list[dict[str, str]]
    """The source's routes to the peer regions, which the copy lacks."""


class PartitionState(BaseModel):
    copies: list[TableCopy]


class AwsRegionPartition:
    """The region partition's SDK calls: resolve, prepare, apply and restore, each idempotent."""

    State = PartitionState

    def __init__(self, api: AwsApi | None = None):
        self.api = api or AwsApi()

    # --- the four verbs -------------------------------------------------------------------

    def resolve(self, request: StepRequest) -> ResolvedStep:
        """Every subnet of the region's VPCs (or `vpc_ids`) whose route table routes to a peer
        region, with its table and the routes the copy will lack; refused when there is none."""
        target = request.step.target
        assert isinstance(target, AwsPartitionTarget)
        scope = Scope.of(target)
        self.api.check_identity(scope)
        ec2 = self.api.ec2(target.region, scope.account)
        filters = [{"Name": "vpc-id", "Values": list(target.vpc_ids)}] if target.vpc_ids else []
        subnets = self.api.pages(ec2, "describe_subnets", "Subnets", Filters=filters)
        if target.vpc_ids:
            missing = sorted(set(target.vpc_ids) - {s["VpcId"] for s in subnets})
            if missing:
                raise TargetNotFound(f"step {request.step.id}: VPC {', '.join(missing)} has no "
                                     f"subnet in {target.region}")
        paths = peer_paths(self.api, ec2, target.region, list(target.peer_regions), scope.account)
        current = read_tables(self.api, ec2, (s["VpcId"] for s in subnets))
        held = {t["RouteTableId"] for t in current.made_by(request.run_id)}
        resources = []
        for subnet in sorted(subnets, key=lambda s: (s["VpcId"], s["SubnetId"])):
            table_id = current.table_of(subnet)
            if request.only_new and table_id in held:
                continue
            table = current.tables.get(table_id, {})
            holder = tags_of(table).get(TAG_RUN)
            if holder and (holder, tags_of(table).get(TAG_STEP)) != (request.run_id,
                                                                     request.step.id):
                raise Refused(f"subnet {subnet['SubnetId']} is already partitioned by gameday "
                              f"run {holder}")
            cut = [route_key(r) for r in table.get("Routes", []) if paths.leads_to(r)]
            if not cut or holder:
                continue
            resources.append(Resource(
                id=subnet["SubnetId"], kind="subnet", name=tags_of(subnet).get("Name"),
                detail={"vpc": subnet["VpcId"], "zone": subnet.get("AvailabilityZone", ""),
                        "route_table": table_id,
                        "association": "explicit" if subnet["SubnetId"] in current.explicit
                        else MAIN,
                        "cut_routes": ", ".join(cut)}))
        if not resources and not request.only_new:
            where = ", ".join(target.vpc_ids) if target.vpc_ids else target.region
            raise Refused(f"step {request.step.id}: no route table of {where} routes to "
                          f"{', '.join(target.peer_regions)} over a VPC peering connection or a "
                          "peered transit gateway: nothing to cut")
        return ResolvedStep(step_id=request.step.id, action=request.step.action, scope=scope,
                            resources=resources)

    def prepare(self, request: PrepareRequest) -> Checkpoint:
        """Record each subnet's table and association, the copies to make and their routes;
        refuse a subnet another run holds, a table a copy cannot reproduce, a full VPC."""
        resolved = request.resolved
        scope = resolved.scope
        if len(request.run_id) > MAX_TAG_VALUE:
            raise Refused(f"run id is longer than {MAX_TAG_VALUE} characters, EC2's tag limit")
        ec2 = self.api.ec2(scope.region, scope.account)
        target = request.step.target
        assert isinstance(target, AwsPartitionTarget)
        vpc_of = {r.id: r.detail["vpc"] for r in resolved.resources}
        current = read_tables(self.api, ec2, vpc_of.values())
        paths = peer_paths(self.api, ec2, scope.region, list(target.peer_regions), scope.account)
        by_table: dict[tuple[str, str], dict[str, str]] = {}
        for subnet, vpc in sorted(vpc_of.items()):
            table_id = current.table_of({"SubnetId": subnet, "VpcId": vpc})
            holder = tags_of(current.tables.get(table_id, {})).get(TAG_RUN)
            if holder:
                raise Refused(f"subnet {subnet} is already partitioned by gameday run {holder}")
            if not table_id:
                continue
            by_table.setdefault((vpc, table_id), {})[subnet] = (
                table_id if subnet in current.explicit else MAIN)
        copies: list[TableCopy] = []
        for (vpc, table_id), subnets in sorted(by_table.items()):
            table = current.tables[table_id]
            self._check_copyable(table)
            kept = [static_route(r) for r in table.get("Routes", [])
                    if r.get("Origin") == "CreateRoute" and r.get("State") != "blackhole"
                    and not paths.leads_to(r)]
            cut = [static_route(r) for r in table.get("Routes", []) if paths.leads_to(r)]
            if not cut:  # its routes changed since resolve: nothing to cut, left alone
                continue
            members = sorted(subnets)
            for chunk, start in enumerate(range(0, len(members), SUBNETS_PER_COPY)):
                copies.append(TableCopy(
                    vpc_id=vpc, source=table_id, chunk=chunk, routes=kept, cut=cut,
                    subnets={s: subnets[s] for s in members[start:start + SUBNETS_PER_COPY]}))
        for vpc in sorted({c.vpc_id for c in copies}):
            have = sum(1 for t in current.tables.values() if t["VpcId"] == vpc)
            more = sum(1 for c in copies if c.vpc_id == vpc)
            if have + more > MAX_TABLES_PER_VPC:
                raise Refused(f"VPC {vpc} has {have} route tables: {more} gameday copies would "
                              f"pass EC2's limit of {MAX_TABLES_PER_VPC}")
        state = PartitionState(copies=copies)
        return Checkpoint(run_id=request.run_id, step_id=resolved.step_id,
                          action="partition_regions", scope=scope,
                          resources=sum(len(c.subnets) for c in copies),
                          state=state.model_dump(mode="json"))

    @staticmethod
    def _check_copyable(table: dict[str, Any]) -> None:
        table_id = table["RouteTableId"]
        if table.get("PropagatingVgws"):
            raise Refused(f"route table {table_id} has routes propagated from a virtual private "
                          "gateway, which partition_regions does not copy")
        endpoints = sorted({r["GatewayId"] for r in table.get("Routes", [])
                            if str(r.get("GatewayId", "")).startswith("vpce-")})
        if endpoints:
            raise Refused(f"route table {table_id} has routes of gateway endpoint "
                          f"{', '.join(endpoints)}, which partition_regions does not copy")

    def apply(self, request: FaultRequest) -> FaultResult:
        """Make each missing copy with its routes, then move each subnet onto its copy."""
        checkpoint = request.checkpoint
        scope = checkpoint.scope
        state = PartitionState.model_validate(checkpoint.state)
        result = FaultResult()
        self.api.check_identity(scope)
        ec2 = self.api.ec2(scope.region, scope.account)
        current = read_tables(self.api, ec2, (c.vpc_id for c in state.copies))
        ours = {(tags_of(t).get(TAG_SOURCE), tags_of(t).get(TAG_CHUNK)): t
                for t in current.made_by(checkpoint.run_id, checkpoint.step_id)}
        missing = [c for c in state.copies if (c.source, str(c.chunk)) not in ours]
        made = {(c.source, c.chunk): copy_id for c, copy_id in fan_out(
            missing, lambda c: self._create_copy(ec2, checkpoint, c), parallel_calls("aws"))}
        routes: list[tuple[str, dict[str, str]]] = []  # every route every copy still lacks
        copy_of: dict[tuple[str, int], str] = {}
        for copy in state.copies:
            found = ours.get((copy.source, str(copy.chunk)))
            copy_id = (made[(copy.source, copy.chunk)] if found is None
                       else found["RouteTableId"])
            copy_of[(copy.source, copy.chunk)] = copy_id
            have = {route_key(r) for r in (found or {}).get("Routes", [])}
            routes += [(copy_id, r) for r in copy.routes if route_key(r) not in have]
        for _ in fan_out(routes, self._create_route(ec2), parallel_calls("aws")):
            pass
        moves: list[tuple[str, str, str | None]] = []  # (copy, subnet, association to replace)
        for copy in state.copies:
            copy_id = copy_of[(copy.source, copy.chunk)]
            for subnet in copy.subnets:
                held = current.explicit.get(subnet)
                if held and held[0] == copy_id:
                    result.unchanged += 1
                else:
                    moves.append((copy_id, subnet, held[1] if held else None))
        for _ in fan_out(moves, self._move(ec2, result), parallel_calls("aws")):
            pass
        return result

    def _create_copy(self, ec2: Any, checkpoint: Checkpoint, copy: TableCopy) -> str:
        tags = {
            "Name": f"gameday-{checkpoint.step_id}-{copy.source}-{copy.chunk}"[:MAX_TAG_VALUE],
            TAG_MANAGED: "gameday", TAG_RUN: checkpoint.run_id, TAG_STEP: checkpoint.step_id,
            TAG_SOURCE: copy.source, TAG_CHUNK: str(copy.chunk),
        }
        tags.update({f"{TAG_RESTORE}{subnet}": was for subnet, was in copy.subnets.items()})
        created = self.api.call(
            "CreateRouteTable", ec2.create_route_table, VpcId=copy.vpc_id,
            TagSpecifications=[{"ResourceType": "route-table",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
        return str(created["RouteTable"]["RouteTableId"])

    def _create_route(self, ec2: Any) -> Callable[[tuple[str, dict[str, str]]], None]:
        """Copy one route; one that exists already (a lost answer) is as good."""
        def create(change: tuple[str, dict[str, str]]) -> None:
            try:
                self.api.call("CreateRoute", ec2.create_route, RouteTableId=change[0],
                              **change[1])
            except CloudError as exc:
                if exc.code != "RouteAlreadyExists":
                    raise
        return create

    def _move(self, ec2: Any, result: FaultResult) -> Callable[[tuple[str, str, str | None]],
                                                                None]:
        def move(change: tuple[str, str, str | None]) -> None:
            copy_id, subnet, association = change
            try:
                if association:
                    self.api.call("ReplaceRouteTableAssociation",
                                  ec2.replace_route_table_association,
                                  AssociationId=association, RouteTableId=copy_id)
                else:
                    self.api.call("AssociateRouteTable", ec2.associate_route_table,
                                  SubnetId=subnet, RouteTableId=copy_id)
            except CloudError as exc:
                if exc.code != "InvalidSubnetID.NotFound":
                    raise
                result.notes.append(f"subnet {subnet} no longer exists; skipped")
                return
            result.changed += 1
        return move

    def restore(self, request: FaultRequest) -> FaultResult:
        """Put every subnet on a copy back as it was, then delete the copies. Safe to repeat."""
        checkpoint = request.checkpoint
        state = PartitionState.model_validate(checkpoint.state)
        ec2 = self.api.ec2(checkpoint.scope.region, checkpoint.scope.account)
        vpcs = {c.vpc_id for c in state.copies}  # a step's copies are made only in these
        current = read_tables(self.api, ec2, vpcs)
        ours = [t["RouteTableId"] for t in current.made_by(checkpoint.run_id, checkpoint.step_id)]
        original = {s: was for c in state.copies for s, was in c.subnets.items()}
        return self.restore_subnets(ec2, original, vpcs, ours, current)

    def restore_subnets(self, ec2: Any, original: dict[str, str], vpc_ids: Iterable[str],
                        copy_ids: list[str], current: Tables | None = None) -> FaultResult:
        """Every subnet on one of `copy_ids` back on the table the copy's restore tags (or
        `original`) name, then the copies deleted."""
        result = FaultResult()
        current = current or read_tables(self.api, ec2, vpc_ids)
        wanted = dict(original)
        for copy_id in copy_ids:
            for key, value in tags_of(current.tables.get(copy_id, {})).items():
                if key.startswith(TAG_RESTORE):
                    wanted.setdefault(key.removeprefix(TAG_RESTORE), value)
        moves: list[tuple[str, str, str]] = []  # (subnet, association, table or MAIN)
        for subnet, was in sorted(wanted.items()):
            held = current.explicit.get(subnet)
            if held is None or held[0] not in copy_ids:
                result.unchanged += 1
                continue
            if was != MAIN and was not in current.tables:
                result.notes.append(f"subnet {subnet}: its route table {was} is gone; it is "
                                    "back on its VPC's main table")
                was = MAIN
            moves.append((subnet, held[1], was))
        for _ in fan_out(moves, self._move_back(ec2), parallel_calls("aws")):
            result.changed += 1
        for copy_id in copy_ids:
            try:
                self.api.call(f"DeleteRouteTable {copy_id}", ec2.delete_route_table,
                              RouteTableId=copy_id)
            except CloudError as exc:
                if exc.code != "InvalidRouteTableID.NotFound":
                    raise
        return result

    def _move_back(self, ec2: Any) -> Callable[[tuple[str, str, str]], None]:
        def move_back(change: tuple[str, str, str]) -> None:
            _, association, was = change
            try:
                if was == MAIN:
                    self.api.call("DisassociateRouteTable", ec2.disassociate_route_table,
                                  AssociationId=association)
                else:
                    self.api.call("ReplaceRouteTableAssociation",
                                  ec2.replace_route_table_association,
                                  AssociationId=association, RouteTableId=was)
            except CloudError as exc:
                if exc.code != "InvalidAssociationID.NotFound":
                    raise
        return move_back

    # --- the sweeper's part ---------------------------------------------------------------

    def find(self, region: str, account: str | None = None) -> list[Leftover]:
        """Every gameday copy of a route table in the region, found by its run tag."""
        ec2 = self.api.ec2(region, account)
        found = []
        for table in self.api.pages(ec2, "describe_route_tables", "RouteTables",
                                    Filters=[{"Name": "tag-key", "Values": [TAG_RUN]}]):
            tags = tags_of(table)
            if TAG_SOURCE not in tags:
                continue
            held = sorted(a["SubnetId"] for a in table.get("Associations", [])
                          if a.get("SubnetId"))
            found.append(Leftover(
                cloud="aws", kind="route-table", id=table["RouteTableId"], run_id=tags[TAG_RUN],
                step_id=tags.get(TAG_STEP, ""), location=region, account=account or "",
                detail={"vpc": table["VpcId"], "source": tags[TAG_SOURCE],
                        "subnets_held": ",".join(held)}))
        return found

    def sweep(self, leftover: Leftover) -> FaultResult:
        """Undo one copy from its tags alone: its subnets back, then the copy deleted."""
        ec2 = self.api.ec2(leftover.location, leftover.account or None)
        current = read_tables(self.api, ec2, [leftover.detail["vpc"]])
        if leftover.id not in current.tables:
            return FaultResult(notes=[f"{leftover.id} is already gone"])
        return self.restore_subnets(ec2, {}, [leftover.detail["vpc"]], [leftover.id], current)
