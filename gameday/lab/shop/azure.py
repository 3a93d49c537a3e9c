"""How the shop reads Azure (gameday's ARM emulator): a region serves while a web VM located there
is powered (`PowerState/running` in its instance view) and has a NIC on no deny-all NSG and not
`Down` in a load balancer pool (evacuate_zone), and every database writer of the region (the
`tier=db` PostgreSQL flexible servers of the resource group) is `Ready`: a failover (`Restarting`,
HA `FailingOver`) is a short outage, then recovery. The global routing is the endpoints of Traffic
Manager profile `shop-tm`."""

from __future__ import annotations

from typing import Any

from gameday.lab.shop.reading import CALL_TIMEOUT, CloudReader
from gameday.lab.shop.verdicts import joined, last_segment, route_verdict, verdict, wire_text

AZURE_RUN_TAG = "gameday-run"           # activities.azure.TAG_RUN
AZURE_MANAGED_TAG = "gameday-managed-by"  # activities.azure.TAG_MANAGED
ANYWHERE = {"0.0.0.0/0", "*", "internet", "any"}


def vm_power(vm: Any) -> str:
    """The VM's power state from its instance view (`running`, `stopped`, `deallocated`,
    `starting`...); "" when the answer has none."""
    view = getattr(vm, "instance_view", None)
    for status in (view.statuses or []) if view is not None else []:
        code = status.code or ""
        if code.startswith("PowerState/"):
            return code.split("/", 1)[1]
    return ""


def powered_cut(vm: Any) -> str | None:
    """Why this VM cannot serve for lack of power, or None (running, or the state unknown)."""
    power = vm_power(vm)
    return None if power in ("running", "") else f"VM {vm.name} is {power} (not running)"


def database_cut(server: Any) -> str | None:
    """Why this flexible server takes no writes now (restarting, failing over...), or None."""
    state = wire_text(server.state)
    ha = wire_text(server.high_availability.state) if server.high_availability else ""
    if state in ("Ready", "") and ha != "FailingOver":
        return None
    return f"database {server.name} is {state or '?'}" + (f" (HA {ha})" if ha else "")


def _location(value: str | None) -> str:
    """`East US` and `eastus` name the same Azure region."""
    return (value or "").replace(" ", "").lower()


def _anywhere(prefix: str | None, prefixes: list[str] | None) -> bool:
    values = [p for p in [prefix, *(prefixes or [])] if p]
    return any(v.lower() in ANYWHERE for v in values)


def azure_nsg_cut(nsg: Any) -> str | None:
    """Why this NSG lets nothing through, or None."""
    tags = nsg.tags or {}
    if tags.get(AZURE_MANAGED_TAG) == "gameday" or tags.get(AZURE_RUN_TAG):
        return f"on gameday's deny-all NSG {nsg.name} (run {tags.get(AZURE_RUN_TAG, '?')})"
    for direction in ("Inbound", "Outbound"):
        rules = [r for r in nsg.security_rules or [] if wire_text(r.direction) == direction]
        allows = [r.priority for r in rules if wire_text(r.access) == "Allow"]
        remote = ("source_address_prefix", "source_address_prefixes") if direction == "Inbound" \
            else ("destination_address_prefix", "destination_address_prefixes")
        denies = [(r.priority, r.name) for r in rules if wire_text(r.access) == "Deny"
                  and wire_text(r.protocol) in ("*", "") and _anywhere(getattr(r, remote[0]),
                                                                       getattr(r, remote[1]))
                  and (r.destination_port_range or "*") == "*"]
        if denies:
            priority, name = min(denies)
            if not allows or priority < min(allows):
                return (f"NSG {nsg.name} denies all {direction.lower()} traffic with rule {name} "
                        f"at priority {priority}"
                        + (f", before every allow (first at {min(allows)})" if allows else ""))
    return None


def down_members(balancers: Any) -> dict[str, str]:
    """NIC IP configuration id (lowercase) or private address -> the load balancer pool that
    holds it with admin state `Down` (evacuate_zone): such a member takes no traffic."""
    down: dict[str, str] = {}
    for lb in balancers:
        for pool in lb.backend_address_pools or []:
            for member in pool.load_balancer_backend_addresses or []:
                if wire_text(member.admin_state) != "Down":
                    continue
                config = member.network_interface_ip_configuration
                place = (config.id or "").lower() if config is not None else member.ip_address
                if place:
                    down[place] = f"pool {pool.name} of load balancer {lb.name}"
    return down


def lb_down_cut(nic: Any, down: dict[str, str]) -> str | None:
    """Why this NIC takes no load-balanced traffic (a pool member of it is Down), or None."""
    for config in nic.ip_configurations or []:
        pool = down.get((config.id or "").lower()) or down.get(config.private_ip_address or "")
        if pool:
            return f"NIC {nic.name} is Down in {pool}"
    return None


class AzureShop(CloudReader):
    """The lab's ARM clients for `GAMEDAY_AZURE_ENDPOINT` (trusting `GAMEDAY_AZURE_CA_BUNDLE`),
    without retries; `close()` lets them go."""

    endpoint_variable = "GAMEDAY_AZURE_ENDPOINT"
    database_tier = "db"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._postgres: Any = None

    def connect(self, endpoint: str) -> Any:
        from gameday.lab.azure.clients import connect

        return connect(endpoint, self.env.get("GAMEDAY_AZURE_CA_BUNDLE"),
                       self.config.azure_subscription, retry_total=0,
                       connection_timeout=1, read_timeout=CALL_TIMEOUT)

    def close(self) -> None:
        with self._lock:
            if self._clients is not None:
                self._clients.close()
                self._clients = None
            if self._postgres is not None:
                self._postgres.close()
                self._postgres = None

    def postgres(self) -> Any:
        """The flexible servers' client (azure-mgmt-postgresqlflexibleservers), built once."""
        self.clients()  # raises NotConfigured first when there is no endpoint
        with self._lock:
            if self._postgres is None:
                from gameday.lab.azure.postgres import postgres_client

                self._postgres = postgres_client(
                    self.env[self.endpoint_variable], self.env.get("GAMEDAY_AZURE_CA_BUNDLE"),
                    self.config.azure_subscription, retry_total=0, connection_timeout=1,
                    read_timeout=CALL_TIMEOUT)
            return self._postgres

    def _writers(self, region: str, notes: list[str]) -> list[Any]:
        """The region's database writers: `tier=db` flexible servers of the resource group; none
        when they cannot be read (noted)."""
        group = self.config.azure_resource_group
        try:
            servers = self.cache.get(("azure", "postgres", group), lambda: list(
                self.postgres().servers.list_by_resource_group(group)), notes)
        except Exception as exc:
            notes.append(f"the database writers could not be read ({type(exc).__name__}); "
                         "assumed to take writes")
            return []
        return sorted((s for s in servers if (s.tags or {}).get("tier") == self.database_tier
                       and _location(s.location) == region), key=lambda s: s.name)

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
            arm.compute.virtual_machines.list(group, expand="instanceView")), notes)
        web = sorted((vm for vm in vms if self._is_web(vm) and _location(vm.location) == region),
                     key=lambda vm: vm.name)
        if not web:
            return verdict("azure", region, True, f"no web VM in {region} (resource group "
                           f"{group}): a region outside the lab, assumed to serve",
                           modelled=False, notes=notes)
        nics = self.cache.get(("azure", "nics"), lambda: {
            (n.id or "").lower(): n for n in arm.network.network_interfaces.list_all()}, notes)
        nsgs = self.cache.get(("azure", "nsgs"), lambda: {
            (n.id or "").lower(): n for n in arm.network.network_security_groups.list_all()},
            notes)
        down = self.cache.get(("azure", "lb-down", group), lambda: down_members(
            arm.network.load_balancers.list(group)), notes)
        zones: dict[str, dict[str, Any]] = {}
        for vm in web:
            unpowered = powered_cut(vm)
            cuts: list[str | None] = []
            for reference in vm.network_profile.network_interfaces or []:
                nic = nics.get((reference.id or "").lower())
                if nic is None:
                    cuts.append(f"NIC {last_segment(reference.id)} does not exist")
                    continue
                held = nic.network_security_group
                nsg = None
                if held is not None and held.id:
                    nsg = nsgs.get(held.id.lower())
                    if nsg is None:  # made or deleted between the two list reads: ask for it
                        nsg = self.cache.get(("azure", "nsg", held.id.lower()),
                                             lambda i=held.id: self._nsg(arm, i), notes)
                cuts.append((azure_nsg_cut(nsg) if nsg is not None else None)
                            or lb_down_cut(nic, down))
            serving = unpowered is None and any(c is None for c in cuts)
            zone = zones.setdefault(",".join(vm.zones or []) or "none",
                                    {"serving": False, "vms": []})
            zone["vms"].append({"name": vm.name, "serving": serving, "power": vm_power(vm),
                                "cut": None if serving else unpowered or "; ".join(
                                    c for c in cuts if c) or "it has no NIC"})
            zone["serving"] = zone["serving"] or serving
        serving_zones = sorted(z for z, v in zones.items() if v["serving"])
        reason = (f"serving from zones {joined(serving_zones)}" if serving_zones else
                  f"no web VM in {region} is both running and reachable: each is powered off "
                  f"or has all its NICs on a deny-all NSG or Down in a load balancer pool "
                  f"(zones {joined(sorted(zones))})")
        writers = self._writers(region, notes)
        databases = {s.name: {"zone": s.availability_zone, "cut": database_cut(s)} for s in writers}
        down = [d["cut"] for d in databases.values() if d["cut"]]
        if serving_zones and down:
            reason = f"no database writer takes writes: {'; '.join(down)}"
        return verdict("azure", region, bool(serving_zones) and not down, reason, modelled=True,
                       zones=zones, databases=databases, notes=notes)

    def peers(self, region: str) -> dict[str, Any]:
        """Serving while the region's subnets reach every peered VNet of another region, both
        ways (`azure_peers`); a region without a VNet of the group is not modelled."""
        from gameday.lab.shop.azure_peers import peers_verdict

        notes: list[str] = []
        arm = self.clients()
        vnets = self.cache.get(("azure", "vnets"), lambda: list(
            arm.network.virtual_networks.list_all()), notes)
        nsgs = self.cache.get(("azure", "nsgs"), lambda: {
            (n.id or "").lower(): n for n in arm.network.network_security_groups.list_all()},
            notes)
        answer = peers_verdict(region, self.config.azure_resource_group, vnets, nsgs)
        answer["notes"] = notes
        return answer

    def global_(self) -> dict[str, Any]:
        notes: list[str] = []
        arm = self.clients()
        group, name = self.config.azure_resource_group, self.config.azure_profile
        profile = self.cache.get(("azure", "profile", group, name),
                                 lambda: arm.traffic.profiles.get(group, name), notes)
        if wire_text(profile.profile_status) not in ("Enabled", ""):
            return verdict("azure", "global", False, f"Traffic Manager profile {name} is "
                           f"{wire_text(profile.profile_status)}", routes=[], notes=notes)
        routes = []
        for endpoint in profile.endpoints or []:
            status = wire_text(endpoint.endpoint_status) or "Enabled"
            routes.append({"region": _location(endpoint.endpoint_location),
                           "endpoint": endpoint.name, "status": status,
                           "takes_traffic": status == "Enabled"})
        return route_verdict("azure", f"the endpoints of Traffic Manager profile {name}", routes,
                             self.region, notes)
