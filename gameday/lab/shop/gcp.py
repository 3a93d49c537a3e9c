"""How the shop reads GCP (gameday's Compute emulator): a region serves while an instance labelled
`tier=web` in one of its zones is RUNNING and cut off by no deny-all firewall rule, and the
shop's database writer is reachable: Cloud SQL instance `shop-db` RUNNABLE (not failing over: a
failover is a short outage, then recovery) with its primary in no cut zone. A firewall
blackhole cuts no zone for it: gameday's deny rules target Compute instances by network tag,
while the primary lives in Cloud SQL's own network. A region without that instance has no
database modelled: the web tier decides alone. The global routing is the backends of backend service
`web`."""

from __future__ import annotations

import re
from typing import Any

from gameday.lab.shop.reading import CALL_TIMEOUT, CloudReader
from gameday.lab.shop.verdicts import joined, last_segment, route_verdict, verdict, wire_text

GCP_DB_INSTANCE = "shop-db"  # gameday.lab.gcp.sqladmin.LAB_DATABASES


def _covers_all(ranges: list[str]) -> bool:
    return not ranges or any(r in ("0.0.0.0/0",) for r in ranges)


def gcp_instance_cut(instance: Any, firewalls: list[Any]) -> str | None:
    """Why no traffic reaches or leaves this instance, or None."""
    tags = set(instance.tags.items)
    networks = {last_segment(n.network) for n in instance.network_interfaces}
    for direction in ("INGRESS", "EGRESS"):
        allows: list[int] = []
        denies: list[tuple[int, str]] = []
        for rule in firewalls:
            if rule.disabled or wire_text(rule.direction) != direction:
                continue
            if last_segment(rule.network) not in networks:
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


class GcpShop(CloudReader):
    """Compute clients (instances, firewalls, backend services) for `GAMEDAY_GCP_ENDPOINT`,
    with anonymous credentials."""

    endpoint_variable = "GAMEDAY_GCP_ENDPOINT"

    def connect(self, endpoint: str) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import compute_v1

        options: dict[str, Any] = {
            "client_options": ClientOptions(api_endpoint=endpoint),
            "credentials": AnonymousCredentials()}
        return (compute_v1.InstancesClient(**options),
                compute_v1.FirewallsClient(**options),
                compute_v1.BackendServicesClient(**options))

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
                      and last_segment(i.zone).rsplit("-", 1)[0] == region), key=lambda i: i.name)
        if not web:
            return verdict("gcp", region, True, f"no instance labelled "
                           f"tier={self.config.gcp_web_tier} in {region}: a region outside the "
                           "lab, assumed to serve", modelled=False, notes=notes)
        firewalls = self.cache.get(("gcp", "firewalls"), self._firewalls, notes)
        zones: dict[str, dict[str, Any]] = {}
        powered = 0
        for instance in web:
            cut = gcp_instance_cut(instance, firewalls)
            status = wire_text(instance.status)
            powered += status == "RUNNING"
            zone = zones.setdefault(last_segment(instance.zone), {"serving": False, "instances": []})
            zone["instances"].append({"name": instance.name, "tags": list(instance.tags.items),
                                      "status": status, "cut": cut})
            zone["serving"] = zone["serving"] or (cut is None and status == "RUNNING")
        serving = sorted(z for z, v in zones.items() if v["serving"])
        database = self._database(region, notes, cut_zones=set())
        if serving and database["reachable"] is False:
            return verdict("gcp", region, False, database["reason"], modelled=True, zones=zones,
                           database=database, notes=notes)
        tier = f"tier={self.config.gcp_web_tier}"
        if serving:
            reason = f"serving from {joined(serving)}"
        elif not powered:
            reason = (f"no instance labelled {tier} in {region} is running (zones "
                      f"{joined(sorted(zones))})")
        elif powered == len(web):
            reason = (f"every instance labelled {tier} in {region} is cut off by a deny-all "
                      f"firewall rule (zones {joined(sorted(zones))})")
        else:
            reason = (f"every instance labelled {tier} in {region} is stopped or cut off by a "
                      f"deny-all firewall rule (zones {joined(sorted(zones))})")
        return verdict("gcp", region, bool(serving), reason, modelled=True, zones=zones,
                       database=database, notes=notes)

    def _sql_instances(self) -> list[dict[str, Any]]:
        import google_auth_httplib2
        import httplib2
        from google.auth.credentials import AnonymousCredentials
        from googleapiclient.discovery import build

        credentials = AnonymousCredentials()
        service = build("sqladmin", "v1", static_discovery=True, credentials=credentials,
                        client_options={"api_endpoint": self.env[self.endpoint_variable]})
        http = google_auth_httplib2.AuthorizedHttp(credentials,
                                                   http=httplib2.Http(timeout=CALL_TIMEOUT))
        listed = service.instances().list(project=self.config.gcp_project).execute(http=http)
        return list(listed.get("items", []))

    def _database(self, region: str, notes: list[str], cut_zones: set[str]) -> dict[str, Any]:
        """Whether the primary of `GCP_DB_INSTANCE` is reachable (None: no such instance here)."""
        instances = self.cache.get(("gcp", "sql-instances"), self._sql_instances, notes)
        found = next((i for i in instances if i["name"] == GCP_DB_INSTANCE
                      and i.get("region") == region), None)
        if found is None:
            return {"reachable": None, "reason": f"no Cloud SQL instance {GCP_DB_INSTANCE} in "
                                                 f"{region}: not modelled"}
        zone, state = str(found.get("gceZone", "")), str(found.get("state", ""))
        seen = {"instance": GCP_DB_INSTANCE, "zone": zone, "state": state}
        what = f"the primary of Cloud SQL instance {GCP_DB_INSTANCE} ({zone or '?'})"
        if state != "RUNNABLE":
            return {**seen, "reachable": False,
                    "reason": f"{what} is not available: the instance is {state} "
                              "(failing over)" if state == "MAINTENANCE" else
                              f"{what} is not available: the instance is {state}"}
        if zone in cut_zones:
            return {**seen, "reachable": False,
                    "reason": f"{what} is unreachable: every instance of {zone} is cut off"}
        return {**seen, "reachable": True, "reason": f"{what} is available"}

    def peers(self, region: str) -> dict[str, Any]:
        """Serving while the region's subnets reach every other region's (`gcp_peers`)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import compute_v1

        from gameday.lab.shop.gcp_peers import peers_verdict

        self.clients()  # refuses while no endpoint is set
        subnetworks = compute_v1.SubnetworksClient(
            client_options=ClientOptions(api_endpoint=self.env[self.endpoint_variable]),
            credentials=AnonymousCredentials())
        subnets = [(last_segment(where), s) for where, scoped in subnetworks.aggregated_list(
                       project=self.config.gcp_project, retry=None, timeout=CALL_TIMEOUT)
                   for s in scoped.subnetworks]
        return peers_verdict(region, subnets, self._firewalls())

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
                           "group": last_segment(backend.group), "capacity_scaler": scaler,
                           "takes_traffic": scaler > 0})
        return route_verdict("gcp", f"the backends of backend service {name}", routes,
                             self.region, notes)
