"""The lab's "shop": an HTTP service whose health really follows the faults that gameday injects.

Nothing in the lab carries traffic, so the shop decides whether it would serve by reading the
emulated control planes through the real SDKs (the variables of `gameday lab env`), as a load
balancer's health checks would see the data plane:

- `GET /aws/<region>/health`: 200 when at least one zone of the region has a subnet tagged
  `tier=web` in the VPC named `shop` that is not on a deny-all network ACL (one gameday made,
  tagged `gameday:run`, or any ACL whose first rule matching 0.0.0.0/0 in a direction is a deny
  that comes before every allow, or that allows nothing in a direction);
- `GET /gcp/<region>/health`: 200 when at least one instance labelled `tier=web` in a zone of the
  region is not cut off: no enabled deny-all firewall rule of its network (protocol `all`, from or
  to 0.0.0.0/0) that targets it (by one of its tags, or all instances) takes precedence over every
  allow rule that targets it in that direction (as gameday's tag plus priority-0 rules do);
- `GET /azure/<region>/health`: 200 when at least one web VM (tag `tier=web`, or a name starting
  `web-`) located in the region has a NIC not on a deny-all NSG (one gameday made, tagged
  `gameday-managed-by=gameday`, or one whose deny-all rule comes before every allow in a
  direction);
- `GET /<cloud>/global/health`: 200 when the global routing sends traffic to at least one serving
  region: AWS, the weighted records `www.shop.example.com` with weight > 0 (the region is the
  `SetIdentifier`); GCP, the backends of backend service `web` with capacityScaler > 0 (the region
  of the backend's group); Azure, the `Enabled` endpoints of Traffic Manager profile `shop-tm` (the
  endpoint's location);
- `GET /health`: 200 only when all three global endpoints serve; the body lists each.

A region where the lab builds no shop at all (no `shop` VPC, no web instance, no web VM; e.g. the
lab's us-west-2 or westus, which only appear in the global routing) stands for a healthy region
outside the lab: it serves, and its answer says `"modelled": false`.

Every answer is JSON with `serving` and a `reason`; 503 when not serving. Each control-plane read
is cached for `CACHE_SECONDS` (probes every second do not hammer the emulators), shared by
concurrent requests, and when a read fails its last good value is used for up to `STALE_SECONDS`
(the answer notes it). Every answer comes within `ANSWER_SECONDS`: a control plane that does not
answer by then makes the endpoint 503.

`python -m gameday.lab.shop [--port P]` serves on 127.0.0.1, port 8270 when free, else a free one; it prints
its URL. `start_shop(env)` does the same in a thread. The lab exports the URL as `GAMEDAY_SHOP_URL`
(`gameday lab env`), and the lab's runbooks probe `${GAMEDAY_SHOP_URL:-http://127.0.0.1:8270}`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8270
CACHE_SECONDS = 0.5
STALE_SECONDS = 10.0
ANSWER_SECONDS = 2.0
CALL_TIMEOUT = 1.5
CLOUDS = ("aws", "gcp", "azure")

AWS_ACL_RUN_TAG = "gameday:run"        # activities.aws.TAG_RUN
AZURE_RUN_TAG = "gameday-run"           # activities.azure.TAG_RUN
AZURE_MANAGED_TAG = "gameday-managed-by"  # activities.azure.TAG_MANAGED
ANYWHERE = {"0.0.0.0/0", "*", "internet", "any"}

_REGION = re.compile(r"^[a-z][a-z0-9-]{1,40}$")


@dataclass(frozen=True)
class ShopConfig:
    """Where the shop lives in each cloud: the lab's topology (gameday/lab/*/seed.py)."""

    aws_vpc_name: str = "shop"
    aws_web_tier: str = "web"
    aws_domain: str = "shop.example.com"
    aws_record: str = "www"
    gcp_project: str = "gameday-lab"
    gcp_backend_service: str = "web"
    gcp_web_tier: str = "web"
    azure_subscription: str = "00000000-0000-0000-0000-000000000000"
    azure_resource_group: str = "shop"
    azure_profile: str = "shop-tm"


class NotConfigured(Exception):
    """The environment names no endpoint for this cloud."""


# --- the cache ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    at: float | None = None
    value: Any = None
    good_at: float | None = None
    error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReadCache:
    """Each read (by key) at most once per `ttl`, shared by concurrent callers; a failed read
    falls back to the last good value while it is younger than `stale_for`."""

    def __init__(self, ttl: float = CACHE_SECONDS, stale_for: float = STALE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.stale_for = stale_for
        self.clock = clock
        self._entries: dict[Any, _Entry] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: Any, load: Callable[[], Any], notes: list[str] | None = None) -> Any:
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        with entry.lock:
            if entry.at is not None and self.clock() - entry.at < self.ttl:
                return self._answer(key, entry, notes)
            try:
                self.loads += 1
                value = load()
            except Exception as exc:  # any SDK failure: remembered for ttl, like a value
                entry.at, entry.error = self.clock(), exc
            else:
                entry.at, entry.value, entry.good_at, entry.error = self.clock(), value, \
                    self.clock(), None
            return self._answer(key, entry, notes)

    def _answer(self, key: Any, entry: _Entry, notes: list[str] | None) -> Any:
        if entry.error is None:
            return entry.value
        if entry.good_at is not None and self.clock() - entry.good_at < self.stale_for:
            if notes is not None:
                notes.append(f"{_key_text(key)}: the read failed ({_short(entry.error)}); using "
                             f"the one from {self.clock() - entry.good_at:.1f}s ago")
            return entry.value
        raise entry.error


def _key_text(key: Any) -> str:
    return " ".join(str(part) for part in key) if isinstance(key, tuple) else str(key)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- helpers -----------------------------------------------------------------------------------


def _verdict(cloud: str, where: str, serving: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"cloud": cloud, "region": where, "serving": serving, "reason": reason, **extra}


def _last(link: str | None) -> str:
    return (link or "").rstrip("/").rsplit("/", 1)[-1]


def _text(value: Any) -> str:
    """An SDK enum's wire value."""
    return str(getattr(value, "value", value) or "")


def _location(value: str | None) -> str:
    """`East US` and `eastus` name the same Azure region."""
    return (value or "").replace(" ", "").lower()


def _joined(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


# --- AWS -------------------------------------------------------------------------------------


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


class AwsShop:
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

    def region(self, region: str) -> dict[str, Any]:
        notes: list[str] = []
        ec2 = self.client("ec2", region)
        vpcs = self._read(notes, (region, "vpcs"), lambda: ec2.describe_vpcs(Filters=[
            {"Name": "tag:Name", "Values": [self.config.aws_vpc_name]}])["Vpcs"])
        vpc_ids = sorted(v["VpcId"] for v in vpcs)
        if not vpc_ids:
            return _verdict("aws", region, True, f"no VPC named {self.config.aws_vpc_name} in "
                            f"{region}: a region outside the lab, assumed to serve",
                            modelled=False, notes=notes)
        subnets = self._read(notes, (region, "web-subnets"), lambda: ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": vpc_ids},
            {"Name": "tag:tier", "Values": [self.config.aws_web_tier]}])["Subnets"])
        acls = self._read(notes, (region, "acls"), lambda: ec2.describe_network_acls(Filters=[
            {"Name": "vpc-id", "Values": vpc_ids}])["NetworkAcls"])
        acl_of: dict[str, Mapping[str, Any]] = {}
        default_of: dict[str, Mapping[str, Any]] = {}
        for acl in acls:
            if acl.get("IsDefault"):
                default_of[acl["VpcId"]] = acl
            for association in acl.get("Associations", []):
                acl_of[association["SubnetId"]] = acl
        zones: dict[str, dict[str, Any]] = {}
        for subnet in sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"])):
            acl = acl_of.get(subnet["SubnetId"]) or default_of.get(subnet["VpcId"]) or {}
            cut = aws_acl_cut(acl) if acl else "no network ACL holds it"
            zone = zones.setdefault(subnet["AvailabilityZone"], {"serving": False, "subnets": []})
            name = next((t["Value"] for t in subnet.get("Tags", []) if t["Key"] == "Name"), None)
            zone["subnets"].append({"id": subnet["SubnetId"], "name": name,
                                    "network_acl": acl.get("NetworkAclId"), "cut": cut})
            zone["serving"] = zone["serving"] or cut is None
        serving = sorted(z for z, v in zones.items() if v["serving"])
        if serving:
            reason = f"serving from {_joined(serving)}"
        elif zones:
            reason = (f"every {self.config.aws_web_tier}-tier subnet of "
                      f"{self.config.aws_vpc_name} in {region} is on a deny-all network ACL "
                      f"(zones {_joined(sorted(zones))})")
        else:
            reason = (f"VPC {self.config.aws_vpc_name} has no subnet tagged "
                      f"tier={self.config.aws_web_tier} in {region}")
        return _verdict("aws", region, bool(serving), reason, modelled=True, zones=zones,
                        notes=notes)

    def global_(self) -> dict[str, Any]:
        notes: list[str] = []
        route53 = self.client("route53", "us-east-1")
        domain = self.config.aws_domain.rstrip(".") + "."
        record = f"{self.config.aws_record}.{domain}"
        hosted = self._read(notes, ("hosted-zones",), lambda: route53.get_paginator(
            "list_hosted_zones").paginate().build_full_result()["HostedZones"])
        zone_ids = [z["Id"] for z in hosted if z["Name"] == domain]
        if not zone_ids:
            return _verdict("aws", "global", False, f"no Route53 hosted zone {domain}",
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


def route_verdict(cloud: str, what: str, routes: list[dict[str, Any]],
                  region_health: Callable[[str], dict[str, Any]],
                  notes: list[str]) -> dict[str, Any]:
    """The global verdict: serving when a route that takes traffic (`takes_traffic`) leads to a
    serving region; each route gets `serving` and its region's reason."""
    health: dict[str, dict[str, Any]] = {}
    live = [r for r in routes if r["takes_traffic"]]
    for route in routes:
        if route["takes_traffic"]:
            region = route["region"]
            if region not in health:
                try:
                    health[region] = region_health(region)
                except Exception as exc:
                    health[region] = {"serving": False, "reason": f"unknown: {_short(exc)}"}
                notes += [f"{region}: {note}" for note in health[region].get("notes", [])]
            route["serving"] = health[region]["serving"]
            route["region_reason"] = health[region]["reason"]
        else:
            route["serving"] = False
            route["region_reason"] = "takes no traffic"
    good = sorted({r["region"] for r in live if r["serving"]})
    if good:
        reason = f"traffic reaches {_joined(good)}"
    elif not live:
        reason = f"no {what} takes traffic"
    else:
        reason = (f"every region that {what} send traffic to is down: " + "; ".join(
            f"{region}: {h['reason']}" for region, h in sorted(health.items())))
    return _verdict(cloud, "global", bool(good), reason, routes=routes, notes=notes)


# --- GCP -------------------------------------------------------------------------------------


def _covers_all(ranges: list[str]) -> bool:
    return not ranges or any(r in ("0.0.0.0/0",) for r in ranges)


def gcp_instance_cut(instance: Any, firewalls: list[Any]) -> str | None:
    """Why no traffic reaches or leaves this instance, or None."""
    tags = set(instance.tags.items)
    networks = {_last(n.network) for n in instance.network_interfaces}
    for direction in ("INGRESS", "EGRESS"):
        allows: list[int] = []
        denies: list[tuple[int, str]] = []
        for rule in firewalls:
            if rule.disabled or _text(rule.direction) != direction:
                continue
            if _last(rule.network) not in networks:
                continue
            targets = set(rule.target_tags)
            if targets and not targets & tags:
                continue
            if rule.allowed:
                allows.append(rule.priority)
            ranges = list(rule.source_ranges if direction == "INGRESS" else
                          rule.destination_ranges)
            if (any(d.I_p_protocol == "all" for d in rule.denied) and _covers_all(ranges)
                    and (direction == "EGRESS" or not rule.source_tags or ranges)):
                denies.append((rule.priority, rule.name))
        if denies:
            priority, name = min(denies)
            if not allows or priority <= min(allows):
                by = " (gameday's)" if name.startswith("gameday-") else ""
                return (f"firewall rule {name}{by} denies all {direction.lower()} traffic at "
                        f"priority {priority}"
                        + (f", before every allow (first at {min(allows)})" if allows else ""))
    return None


def gcp_group_region(group: str) -> str | None:
    """The region of a backend's zonal or regional group URL."""
    found = re.search(r"/(zones|regions)/([^/]+)/", group)
    if found is None:
        return None
    return found[2].rsplit("-", 1)[0] if found[1] == "zones" else found[2]


class GcpShop:
    def __init__(self, env: Mapping[str, str], cache: ReadCache, config: ShopConfig):
        self.env = env
        self.cache = cache
        self.config = config
        self._clients: Any = None
        self._lock = threading.Lock()

    def clients(self) -> Any:
        endpoint = self.env.get("GAMEDAY_GCP_ENDPOINT")
        if not endpoint:
            raise NotConfigured("GAMEDAY_GCP_ENDPOINT is not set (see `gameday lab env`)")
        with self._lock:
            if self._clients is None:
                from google.api_core.client_options import ClientOptions
                from google.auth.credentials import AnonymousCredentials
                from google.cloud import compute_v1

                options: dict[str, Any] = {
                    "client_options": ClientOptions(api_endpoint=endpoint),
                    "credentials": AnonymousCredentials()}
                self._clients = (compute_v1.InstancesClient(**options),
                                 compute_v1.FirewallsClient(**options),
                                 compute_v1.BackendServicesClient(**options))
            return self._clients

    def _instances(self) -> list[Any]:
        from google.cloud import compute_v1

        instances, _, _ = self.clients()
        request = compute_v1.AggregatedListInstancesRequest(project=self.config.gcp_project,
                                                            max_results=500)
        found: list[Any] = []
        for _, scoped in instances.aggregated_list(request=request, retry=None,
                                                   timeout=CALL_TIMEOUT):
            found += list(scoped.instances)
        return found

    def _firewalls(self) -> list[Any]:
        _, firewalls, _ = self.clients()
        return list(firewalls.list(project=self.config.gcp_project, retry=None,
                                   timeout=CALL_TIMEOUT))

    def region(self, region: str) -> dict[str, Any]:
        notes: list[str] = []
        instances = self.cache.get(("gcp", "instances"), self._instances, notes)
        web = sorted((i for i in instances
                      if i.labels.get("tier") == self.config.gcp_web_tier
                      and _last(i.zone).rsplit("-", 1)[0] == region), key=lambda i: i.name)
        if not web:
            return _verdict("gcp", region, True, f"no instance labelled "
                            f"tier={self.config.gcp_web_tier} in {region}: a region outside the "
                            "lab, assumed to serve", modelled=False, notes=notes)
        firewalls = self.cache.get(("gcp", "firewalls"), self._firewalls, notes)
        zones: dict[str, dict[str, Any]] = {}
        for instance in web:
            cut = gcp_instance_cut(instance, firewalls)
            zone = zones.setdefault(_last(instance.zone), {"serving": False, "instances": []})
            zone["instances"].append({"name": instance.name, "tags": list(instance.tags.items),
                                      "cut": cut})
            zone["serving"] = zone["serving"] or cut is None
        serving = sorted(z for z, v in zones.items() if v["serving"])
        reason = (f"serving from {_joined(serving)}" if serving else
                  f"every instance labelled tier={self.config.gcp_web_tier} in {region} is cut "
                  f"off by a deny-all firewall rule (zones {_joined(sorted(zones))})")
        return _verdict("gcp", region, bool(serving), reason, modelled=True, zones=zones,
                        notes=notes)

    def global_(self) -> dict[str, Any]:
        notes: list[str] = []
        _, _, services = self.clients()
        name = self.config.gcp_backend_service
        service = self.cache.get(("gcp", "backend-service", name), lambda: services.get(
            project=self.config.gcp_project, backend_service=name, retry=None,
            timeout=CALL_TIMEOUT), notes)
        routes = []
        for backend in service.backends:
            scaler = round(backend.capacity_scaler, 6) if "capacity_scaler" in backend else 1.0
            routes.append({"region": gcp_group_region(backend.group) or "global",
                           "group": _last(backend.group), "capacity_scaler": scaler,
                           "takes_traffic": scaler > 0})
        return route_verdict("gcp", f"the backends of backend service {name}", routes,
                             self.region, notes)


# --- Azure -----------------------------------------------------------------------------------


def _anywhere(prefix: str | None, prefixes: list[str] | None) -> bool:
    values = [p for p in [prefix, *(prefixes or [])] if p]
    return any(v.lower() in ANYWHERE for v in values)


def azure_nsg_cut(nsg: Any) -> str | None:
    """Why this NSG lets nothing through, or None."""
    tags = nsg.tags or {}
    if tags.get(AZURE_MANAGED_TAG) == "gameday" or tags.get(AZURE_RUN_TAG):
        return f"on gameday's deny-all NSG {nsg.name} (run {tags.get(AZURE_RUN_TAG, '?')})"
    for direction in ("Inbound", "Outbound"):
        rules = [r for r in nsg.security_rules or [] if _text(r.direction) == direction]
        allows = [r.priority for r in rules if _text(r.access) == "Allow"]
        remote = ("source_address_prefix", "source_address_prefixes") if direction == "Inbound" \
            else ("destination_address_prefix", "destination_address_prefixes")
        denies = [(r.priority, r.name) for r in rules if _text(r.access) == "Deny"
                  and _text(r.protocol) in ("*", "") and _anywhere(getattr(r, remote[0]),
                                                                   getattr(r, remote[1]))
                  and (r.destination_port_range or "*") == "*"]
        if denies:
            priority, name = min(denies)
            if not allows or priority < min(allows):
                return (f"NSG {nsg.name} denies all {direction.lower()} traffic with rule {name} "
                        f"at priority {priority}"
                        + (f", before every allow (first at {min(allows)})" if allows else ""))
    return None


class AzureShop:
    def __init__(self, env: Mapping[str, str], cache: ReadCache, config: ShopConfig):
        self.env = env
        self.cache = cache
        self.config = config
        self._clients: Any = None
        self._lock = threading.Lock()

    def clients(self) -> Any:
        endpoint = self.env.get("GAMEDAY_AZURE_ENDPOINT")
        if not endpoint:
            raise NotConfigured("GAMEDAY_AZURE_ENDPOINT is not set (see `gameday lab env`)")
        with self._lock:
            if self._clients is None:
                from gameday.lab.azure.clients import connect

                self._clients = connect(endpoint, self.env.get("GAMEDAY_AZURE_CA_BUNDLE"),
                                        self.config.azure_subscription, retry_total=0,
                                        connection_timeout=1, read_timeout=CALL_TIMEOUT)
            return self._clients

    def close(self) -> None:
        with self._lock:
            if self._clients is not None:
                self._clients.close()
                self._clients = None

    @staticmethod
    def _nsg(arm: Any, nsg_id: str) -> Any:
        """One NSG by id; None when it is gone (a NIC cannot stay on a deleted NSG)."""
        from azure.core.exceptions import ResourceNotFoundError

        parts = nsg_id.strip("/").split("/")
        try:
            return arm.network.network_security_groups.get(parts[3], parts[-1])
        except ResourceNotFoundError:
            return None

    def _is_web(self, vm: Any) -> bool:
        return (vm.tags or {}).get("tier") == "web" or (vm.name or "").startswith("web-")

    def region(self, region: str) -> dict[str, Any]:
        notes: list[str] = []
        arm = self.clients()
        group = self.config.azure_resource_group
        vms = self.cache.get(("azure", "vms", group), lambda: list(
            arm.compute.virtual_machines.list(group)), notes)
        web = sorted((vm for vm in vms if self._is_web(vm) and _location(vm.location) == region),
                     key=lambda vm: vm.name)
        if not web:
            return _verdict("azure", region, True, f"no web VM in {region} (resource group "
                            f"{group}): a region outside the lab, assumed to serve",
                            modelled=False, notes=notes)
        nics = self.cache.get(("azure", "nics"), lambda: {
            (n.id or "").lower(): n for n in arm.network.network_interfaces.list_all()}, notes)
        nsgs = self.cache.get(("azure", "nsgs"), lambda: {
            (n.id or "").lower(): n for n in arm.network.network_security_groups.list_all()},
            notes)
        zones: dict[str, dict[str, Any]] = {}
        for vm in web:
            cuts: list[str | None] = []
            for reference in vm.network_profile.network_interfaces or []:
                nic = nics.get((reference.id or "").lower())
                if nic is None:
                    cuts.append(f"NIC {_last(reference.id)} does not exist")
                    continue
                held = nic.network_security_group
                nsg = None
                if held is not None and held.id:
                    nsg = nsgs.get(held.id.lower())
                    if nsg is None:  # made or deleted between the two list reads: ask for it
                        nsg = self.cache.get(("azure", "nsg", held.id.lower()),
                                             lambda i=held.id: self._nsg(arm, i), notes)
                cuts.append(azure_nsg_cut(nsg) if nsg is not None else None)
            serving = any(c is None for c in cuts)
            zone = zones.setdefault(",".join(vm.zones or []) or "none",
                                    {"serving": False, "vms": []})
            zone["vms"].append({"name": vm.name, "serving": serving,
                                "cut": None if serving else "; ".join(
                                    c for c in cuts if c) or "it has no NIC"})
            zone["serving"] = zone["serving"] or serving
        serving_zones = sorted(z for z, v in zones.items() if v["serving"])
        reason = (f"serving from zones {_joined(serving_zones)}" if serving_zones else
                  f"every web VM in {region} has all its NICs on a deny-all NSG "
                  f"(zones {_joined(sorted(zones))})")
        return _verdict("azure", region, bool(serving_zones), reason, modelled=True,
                        zones=zones, notes=notes)

    def global_(self) -> dict[str, Any]:
        notes: list[str] = []
        arm = self.clients()
        group, name = self.config.azure_resource_group, self.config.azure_profile
        profile = self.cache.get(("azure", "profile", group, name),
                                 lambda: arm.traffic.profiles.get(group, name), notes)
        if _text(profile.profile_status) not in ("Enabled", ""):
            return _verdict("azure", "global", False, f"Traffic Manager profile {name} is "
                            f"{_text(profile.profile_status)}", routes=[], notes=notes)
        routes = []
        for endpoint in profile.endpoints or []:
            status = _text(endpoint.endpoint_status) or "Enabled"
            routes.append({"region": _location(endpoint.endpoint_location),
                           "endpoint": endpoint.name, "status": status,
                           "takes_traffic": status == "Enabled"})
        return route_verdict("azure", f"the endpoints of Traffic Manager profile {name}", routes,
                             self.region, notes)


# --- the service -----------------------------------------------------------------------------


class Shop:
    """Decides every answer; the HTTP handler only routes and renders."""

    def __init__(self, env: Mapping[str, str], config: ShopConfig | None = None,
                 answer_within: float = ANSWER_SECONDS, cache: ReadCache | None = None):
        self.env = dict(env)
        self.config = config or ShopConfig()
        self.cache = cache or ReadCache()
        self.answer_within = answer_within
        self.clouds: dict[str, Any] = {
            "aws": AwsShop(self.env, self.cache, self.config),
            "gcp": GcpShop(self.env, self.cache, self.config),
            "azure": AzureShop(self.env, self.cache, self.config),
        }
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="shop")

    def warm(self) -> None:
        """Import the SDKs and build the clients of every configured cloud now, then read the
        global routing once in the background: the first probe need not pay for either."""
        for cloud in CLOUDS:
            try:
                shop = self.clouds[cloud]
                if cloud == "aws":
                    shop.client("ec2", self.env.get("AWS_DEFAULT_REGION") or "us-east-1")
                    shop.client("route53", "us-east-1")
                else:
                    shop.clients()
            except NotConfigured:
                pass
        for cloud in CLOUDS:
            self._submit(cloud, "global")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.clouds["azure"].close()

    def _evaluate(self, cloud: str, where: str) -> dict[str, Any]:
        try:
            shop = self.clouds[cloud]
            return shop.global_() if where == "global" else shop.region(where)
        except NotConfigured as exc:
            return _verdict(cloud, where, False, f"{cloud} is not configured: {exc}")
        except Exception as exc:
            return _verdict(cloud, where, False, f"could not read the {cloud} control plane: "
                                                 f"{_short(exc)}")

    def _submit(self, cloud: str, where: str) -> Future[dict[str, Any]]:
        return self.executor.submit(self._evaluate, cloud, where)

    def _wait(self, future: Future[dict[str, Any]], cloud: str, where: str,
              deadline: float) -> dict[str, Any]:
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            return _verdict(cloud, where, False, f"the {cloud} control plane did not answer "
                                                 f"within {self.answer_within:g}s")

    def health(self, cloud: str, where: str) -> dict[str, Any]:
        """One endpoint: `where` is a region or `global`."""
        deadline = time.monotonic() + self.answer_within
        return self._wait(self._submit(cloud, where), cloud, where, deadline)

    def overall(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.answer_within
        futures = {cloud: self._submit(cloud, "global") for cloud in CLOUDS}
        answers = {cloud: self._wait(f, cloud, "global", deadline) for cloud, f in futures.items()}
        down = [cloud for cloud, answer in answers.items() if not answer["serving"]]
        reason = ("every global endpoint serves" if not down else
                  "; ".join(f"{cloud}: {answers[cloud]['reason']}" for cloud in down))
        return {"serving": not down, "reason": reason, "clouds": answers}


class _Handler(BaseHTTPRequestHandler):
    server: _ShopServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body = self.server.route(urlsplit(self.path).path)
        self._send(status, body)

    def do_HEAD(self) -> None:  # noqa: N802
        status, body = self.server.route(urlsplit(self.path).path)
        self._send(status, body, head=True)

    def _send(self, status: int, body: dict[str, Any], head: bool = False) -> None:
        data = (json.dumps(body, indent=2, default=str) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: probes come every second."""


class _ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], shop: Shop):
        super().__init__(address, _Handler)
        self.shop = shop

    def route(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        if parts == ["health"]:
            answer = self.shop.overall()
        elif len(parts) == 3 and parts[2] == "health" and parts[0] in CLOUDS \
                and _REGION.match(parts[1]):
            answer = self.shop.health(parts[0], parts[1])
        elif not parts:
            return 200, {"service": "gameday lab shop", "endpoints": [
                "/health", "/<cloud>/global/health", "/<cloud>/<region>/health"],
                "clouds": list(CLOUDS)}
        else:
            return 404, {"serving": False, "reason": f"no such endpoint: {path}; try /health, "
                                                     "/<cloud>/global/health or "
                                                     "/<cloud>/<region>/health"}
        return (200 if answer["serving"] else 503), answer


def _bind(port: int | None, shop: Shop) -> _ShopServer:
    """Port None: `DEFAULT_PORT` when free, else any free port; 0: any free port."""
    if port is None:
        try:
            return _ShopServer((LOOPBACK, DEFAULT_PORT), shop)
        except OSError:
            port = 0
    return _ShopServer((LOOPBACK, port), shop)


def start_shop(env: Mapping[str, str], port: int | None = 0,
               config: ShopConfig | None = None) -> tuple[str, Callable[[], None]]:
    """Serve the shop in a background thread; returns its URL and a function that stops it."""
    shop = Shop(env, config)
    shop.warm()
    server = _bind(port, shop)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="shop", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shop.close()

    return f"http://{LOOPBACK}:{server.server_address[1]}", stop


def main(argv: list[str] | None = None) -> None:
    """`python -m gameday.lab.shop [--port P]`: serve in the foreground with this environment."""
    import os

    parser = argparse.ArgumentParser(prog="python -m gameday.lab.shop", description=main.__doc__)
    parser.add_argument("--port", type=int, default=None,
                        help=f"default: {DEFAULT_PORT} when free, else a free port; 0: a free port")
    args = parser.parse_args(argv)
    shop = Shop(os.environ)
    shop.warm()
    try:
        server = _bind(args.port, shop)
    except OSError as exc:
        print(f"cannot listen on {LOOPBACK}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"http://{LOOPBACK}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shop.close()


if __name__ == "__main__":
    main()
