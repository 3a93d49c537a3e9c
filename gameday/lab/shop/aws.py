"""How the shop reads AWS (moto): a region serves while a `tier=web` subnet of the `shop` VPC is
on no deny-all network ACL and holds a running `tier=web` instance (powered and reachable) in a
zone that no active ARC zonal shift of load balancer `shop-web` moves traffic away from
(evacuate_zone), and the writer of DB cluster `orders` is reachable: the cluster `available` (not
`failing-over`: a failover is a short outage, then recovery) and its writer in a zone with a
`tier=db` subnet of the VPC on no deny-all ACL (a zone without `tier=db` subnets is not modelled:
reachable). A region without that cluster has no database modelled: the web tier decides alone.
The global routing is the weighted records of `www.shop.example.com`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from gameday.lab.shop.reading import CALL_TIMEOUT, NotConfigured, ReadCache, ShopConfig
from gameday.lab.shop.verdicts import joined, route_verdict, verdict

AWS_ACL_RUN_TAG = "gameday:run"        # activities.aws.TAG_RUN
AWS_DB_CLUSTER = "orders"              # gameday.lab.aws.databases
AWS_DB_TIER = "db"


def aws_acl_cut(acl: Mapping[str, Any]) -> str | None:
    """Why this network ACL lets nothing through, or None when it lets traffic through."""
    acl_id = acl.get("NetworkAclId", "?")
    tags = {t["Key"]: t["Value"] for t in acl.get("Tags", [])}
    if tags.get(AWS_ACL_RUN_TAG):
        return f"on gameday's deny-all network ACL {acl_id} (run {tags[AWS_ACL_RUN_TAG]})"
    for egress, word in ((False, "inbound"), (True, "outbound")):
        entries = [e for e in acl.get("Entries", []) if bool(e.get("Egress")) == egress]
        allows = [int(e["RuleNumber"]) for e in entries if e.get("RuleAction") == "allow"]
        denies = [int(e["RuleNumber"]) for e in entries if e.get("RuleAction") == "deny"
                  and e.get("CidrBlock") == "0.0.0.0/0" and str(e.get("Protocol")) in ("-1", "all")]
        if not allows:
            return f"network ACL {acl_id} allows no {word} traffic"
        if denies and min(denies) < min(allows):
            return (f"network ACL {acl_id} denies all {word} traffic at rule {min(denies)}, "
                    f"before its first allow (rule {min(allows)})")
    return None


AWS_WEB_LOAD_BALANCER = "shop-web"    # gameday.lab.aws.zonal_shift


class AwsShop:
    """AWS clients are per service and region, each built once from `AWS_ENDPOINT_URL`."""

    def __init__(self, env: Mapping[str, str], cache: ReadCache, config: ShopConfig):
        self.env = env
        self.cache = cache
        self.config = config
        self._clients: dict[tuple[str, str], Any] = {}
        self._session: Any = None
        self._lock = threading.Lock()

    def client(self, service: str, region: str) -> Any:
        endpoint = self.env.get("AWS_ENDPOINT_URL")
        if not endpoint:
            raise NotConfigured("AWS_ENDPOINT_URL is not set (see `gameday lab env`)")
        with self._lock:
            made = self._clients.get((service, region))
            if made is None:
                import boto3
                from botocore.config import Config

                if self._session is None:  # one session: its clients share the loaded models
                    self._session = boto3.session.Session(
                        aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID") or "gameday-lab",
                        aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY")
                        or "gameday-lab")
                made = self._session.client(service, region_name=region, endpoint_url=endpoint,
                                            config=Config(connect_timeout=1,
                                                          read_timeout=CALL_TIMEOUT,
                                                          retries={"max_attempts": 1,
                                                                   "mode": "standard"}))
                self._clients[(service, region)] = made
            return made

    def _read(self, notes: list[str], key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        return self.cache.get(("aws", *key), load, notes)

    def _shifted_zones(self, region: str, notes: list[str]) -> dict[str, str]:
        """Zone name -> the active ARC zonal shift that moves the web load balancer's traffic
        away from it (evacuate_zone)."""
        ec2, arc = self.client("ec2", region), self.client("arc-zonal-shift", region)
        names = self._read(notes, (region, "zone-ids"), lambda: {
            z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]})
        shifts = self._read(notes, (region, "zonal-shifts"), lambda: arc.list_zonal_shifts(
            status="ACTIVE").get("items", []))
        return {names[s["awayFrom"]]: f"zonal shift {s['zonalShiftId']} moves "
                f"{AWS_WEB_LOAD_BALANCER}'s traffic away" for s in shifts
                if f"/{AWS_WEB_LOAD_BALANCER}/" in s.get("resourceIdentifier", "")
                and s.get("awayFrom") in names}

    def _web_subnets(self, region: str, notes: list[str]) -> tuple[list[str], list[Any]]:
        """The ids of the region's shop VPCs and their web-tier subnets (none: outside the lab)."""
        ec2 = self.client("ec2", region)
        vpcs = self._read(notes, (region, "vpcs"), lambda: ec2.describe_vpcs(Filters=[
            {"Name": "tag:Name", "Values": [self.config.aws_vpc_name]}])["Vpcs"])
        vpc_ids = sorted(v["VpcId"] for v in vpcs)
        if not vpc_ids:
            return [], []
        subnets = self._read(notes, (region, "web-subnets"), lambda: ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": vpc_ids},
            {"Name": "tag:tier", "Values": [self.config.aws_web_tier]}])["Subnets"])
        return vpc_ids, subnets

    def region(self, region: str) -> dict[str, Any]:
        notes: list[str] = []
        ec2 = self.client("ec2", region)
        vpc_ids, subnets = self._web_subnets(region, notes)
        if not vpc_ids:
            return verdict("aws", region, True, f"no VPC named {self.config.aws_vpc_name} in "
                           f"{region}: a region outside the lab, assumed to serve",
                           modelled=False, notes=notes)
        acls = self._read(notes, (region, "acls"), lambda: ec2.describe_network_acls(Filters=[
            {"Name": "vpc-id", "Values": vpc_ids}])["NetworkAcls"])
        acl_of: dict[str, Mapping[str, Any]] = {}
        default_of: dict[str, Mapping[str, Any]] = {}
        for acl in acls:
            if acl.get("IsDefault"):
                default_of[acl["VpcId"]] = acl
            for association in acl.get("Associations", []):
                acl_of[association["SubnetId"]] = acl
        instances = self._read(notes, (region, "web-instances"), lambda: [
            i for r in ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": "vpc-id", "Values": vpc_ids},
                {"Name": "tag:tier", "Values": [self.config.aws_web_tier]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]).build_full_result()["Reservations"] for i in r["Instances"]])
        running: dict[str, list[str]] = {}
        for instance in instances:
            running.setdefault(instance.get("SubnetId", ""), []).append(instance["InstanceId"])
        zones: dict[str, dict[str, Any]] = {}
        for subnet in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"])):
            acl = acl_of.get(subnet["SubnetId"]) or default_of.get(subnet["VpcId"]) or {}
            cut = aws_acl_cut(acl) if acl else "no network ACL holds it"
            zone = zones.setdefault(subnet["AvailabilityZone"], {"serving": False, "subnets": []})
            name = next((t["Value"] for t in subnet.get("Tags", []) if t["Key"] == "Name"), None)
            powered = sorted(running.get(subnet["SubnetId"], []))
            zone["subnets"].append({"id": subnet["SubnetId"], "name": name,
                                    "network_acl": acl.get("NetworkAclId"), "cut": cut,
                                    "running_instances": powered})
            zone["serving"] = zone["serving"] or (cut is None and bool(powered))
        for name, shift in self._shifted_zones(region, notes).items():
            if name in zones:  # the load balancer sends the zone nothing: it serves no one
                zones[name]["serving"] = False
                zones[name]["shifted"] = shift
        serving = sorted(z for z, v in zones.items() if v["serving"])
        database = self._database(region, notes, vpc_ids, lambda subnet: aws_acl_cut(
            acl_of.get(subnet["SubnetId"]) or default_of.get(subnet["VpcId"]) or {}))
        if serving and database["reachable"] is False:
            return verdict("aws", region, False, database["reason"], modelled=True, zones=zones,
                           database=database, notes=notes)
        if serving:
            reason = f"serving from {joined(serving)}"
        elif zones and all(v.get("shifted") for v in zones.values()):
            reason = f"ARC has shifted {AWS_WEB_LOAD_BALANCER}'s traffic away from every zone"
        elif zones and all(s["cut"] for z in zones.values() for s in z["subnets"]):
            reason = (f"every {self.config.aws_web_tier}-tier subnet of "
                      f"{self.config.aws_vpc_name} in {region} is on a deny-all network ACL "
                      f"(zones {joined(sorted(zones))})")
        elif zones:
            reason = (f"no running {self.config.aws_web_tier}-tier instance in a reachable "
                      f"{self.config.aws_web_tier}-tier subnet of {self.config.aws_vpc_name} in "
                      f"{region} (zones {joined(sorted(zones))})")
        else:
            reason = (f"VPC {self.config.aws_vpc_name} has no subnet tagged "
                      f"tier={self.config.aws_web_tier} in {region}")
        return verdict("aws", region, bool(serving), reason, modelled=True, zones=zones,
                       database=database, notes=notes)

    def peers(self, region: str) -> dict[str, Any]:
        """Serving while every web-tier subnet of the shop VPC routes to each peer region the
        lab connects it to (`aws_peers`); a region without the VPC is not modelled."""
        from gameday.lab.shop.aws_peers import peer_links, peers_verdict

        notes: list[str] = []
        ec2 = self.client("ec2", region)
        vpc_ids, subnets = self._web_subnets(region, notes)
        if not vpc_ids:
            return verdict("aws", region, True, f"no VPC named {self.config.aws_vpc_name} in "
                           f"{region}: a region outside the lab, assumed to reach its peers",
                           modelled=False, notes=notes)
        tables = self._read(notes, (region, "route-tables"), lambda: ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": vpc_ids}])["RouteTables"])
        peerings = self._read(notes, (region, "peerings"), lambda: ec2.describe_vpc_peering_connections(
        )["VpcPeeringConnections"])
        attachments = self._read(notes, (region, "tgw-peerings"), lambda: ec2
                                 .describe_transit_gateway_peering_attachments()
                                 ["TransitGatewayPeeringAttachments"])
        answer = peers_verdict(region, subnets, tables,
                               peer_links(region, vpc_ids, peerings, attachments))
        answer.setdefault("notes", notes)
        return answer

    def _database(self, region: str, notes: list[str], vpc_ids: list[str],
                  cut: Callable[[Mapping[str, Any]], str | None]) -> dict[str, Any]:
        """Whether the writer of `AWS_DB_CLUSTER` is reachable (None: no such cluster here)."""
        rds = self.client("rds", region)
        clusters = self._read(notes, (region, "db-clusters"), lambda: rds.get_paginator(
            "describe_db_clusters").paginate().build_full_result()["DBClusters"])
        cluster = next((c for c in clusters if c["DBClusterIdentifier"] == AWS_DB_CLUSTER), None)
        if cluster is None:
            return {"reachable": None, "reason": f"no DB cluster {AWS_DB_CLUSTER}: not modelled"}
        writer = next((m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])
                       if m.get("IsClusterWriter")), None)
        instances = self._read(notes, (region, "db-instances"), lambda: rds.get_paginator(
            "describe_db_instances").paginate(Filters=[
                {"Name": "db-cluster-id", "Values": [AWS_DB_CLUSTER]}]).build_full_result()[
                "DBInstances"])
        zone = next((i.get("AvailabilityZone", "") for i in instances
                     if i["DBInstanceIdentifier"] == writer), "")
        seen = {"cluster": AWS_DB_CLUSTER, "writer": writer, "zone": zone,
                "status": cluster.get("Status", "")}
        what = f"the writer of DB cluster {AWS_DB_CLUSTER} ({writer or 'none'}, {zone or '?'})"
        if writer is None or cluster.get("Status") != "available":
            return {**seen, "reachable": False,
                    "reason": f"{what} is not available: the cluster is {seen['status']}"}
        ec2 = self.client("ec2", region)
        subnets = self._read(notes, (region, "db-subnets"), lambda: ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": vpc_ids},
            {"Name": "tag:tier", "Values": [AWS_DB_TIER]}])["Subnets"])
        local = [s for s in subnets if s["AvailabilityZone"] == zone]
        if local and all(cut(s) for s in local):
            return {**seen, "reachable": False,
                    "reason": f"{what} is unreachable: every {AWS_DB_TIER}-tier subnet of {zone} "
                              "is on a deny-all network ACL"}
        return {**seen, "reachable": True, "reason": f"{what} is available"}

    def global_(self) -> dict[str, Any]:
        notes: list[str] = []
        route53 = self.client("route53", "us-east-1")
        domain = self.config.aws_domain.rstrip(".") + "."
        record = f"{self.config.aws_record}.{domain}"
        hosted = self._read(notes, ("hosted-zones",), lambda: route53.get_paginator(
            "list_hosted_zones").paginate().build_full_result()["HostedZones"])
        zone_ids = [z["Id"] for z in hosted if z["Name"] == domain]
        if not zone_ids:
            return verdict("aws", "global", False, f"no Route53 hosted zone {domain}",
                           notes=notes)
        records: list[dict[str, Any]] = []
        for zone_id in zone_ids:
            records += self._read(notes, ("records", zone_id), lambda z=zone_id: route53
                                  .get_paginator("list_resource_record_sets")
                                  .paginate(HostedZoneId=z).build_full_result()
                                  ["ResourceRecordSets"])
        weighted = [r for r in records if r["Name"] == record and "Weight" in r]
        routes = [{"region": r.get("SetIdentifier", ""), "weight": r["Weight"], "type": r["Type"]}
                  for r in weighted]
        for route in routes:
            route["takes_traffic"] = route["weight"] > 0
        return route_verdict("aws", f"the weighted records of {record.rstrip('.')}", routes,
                             self.region, notes)
