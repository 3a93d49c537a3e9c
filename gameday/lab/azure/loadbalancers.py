"""Microsoft.Network's load balancers as ARM serves them: frontend IP configurations, backend
address pools and their members (`loadBalancerBackendAddresses`) with `adminState`.

A member is NIC-based or IP-based, and a pool holds one kind only, as in ARM. A NIC-based member
is a NIC IP configuration that names the pool in its `loadBalancerBackendAddressPools`; the pool
shows it with its (read-only) `networkInterfaceIPConfiguration`, named `<group>_<nic><ipconfig>`,
and a write of the load balancer sets its `adminState` by that name. An IP-based member is written
with `ipAddress` and an existing `virtualNetwork`. `adminState` is `None`, `Up` or `Down` (any
case on input, ARM's spelling on output), shown only to API versions 2023-04-01 and later, which
introduced it; a member written without it is shown without it. A PUT honours `If-Match`, answers
in the style configured for `loadBalancers` (`Azure-AsyncOperation` by default) and holds the load
balancer busy until its operation ends. Pools are also served as child resources (list, get). A
NIC's reference to a pool is not checked against the pool's existence.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from gameday.lab.azure.arm import (
    GROUP,
    NAME,
    SUB,
    ArmError,
    Json,
    Resource,
    Table,
    body_of,
    check_if_match,
    child_not_found,
    key,
    not_found,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.references import owner_of, ref_id
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator
    from gameday.lab.azure.network import NetworkProvider

NS = "Microsoft.Network"
LB_TYPE = f"{NS}/loadBalancers"
POOL_TYPE = f"{LB_TYPE}/backendAddressPools"
FRONTEND_TYPE = f"{LB_TYPE}/frontendIPConfigurations"
ADMIN_STATES = ("None", "Up", "Down")
ADMIN_STATE_SINCE = "2023-04-01"
_LB_COMPUTED = {"provisioningState", "resourceGuid", "frontendIPConfigurations",
                "backendAddressPools"}
_CHILD_LISTS = ("loadBalancingRules", "probes", "inboundNatRules", "inboundNatPools",
                "outboundRules")


class LoadBalancersProvider:
    """`Microsoft.Network/loadBalancers`: list, get, put, tag and delete; pools list and get."""

    def __init__(self, arm: ResourceManagerEmulator, network: NetworkProvider):
        self.arm = arm
        self.network = network
        self.lbs = Table()
        self._register()

    def reset(self) -> None:
        self.lbs.clear()

    def _register(self) -> None:
        route = self.arm.route
        lbs = GROUP + "/providers/Microsoft\\.Network/loadBalancers"
        route("GET", lbs, self.list_group)
        route("GET", SUB + "/providers/Microsoft\\.Network/loadBalancers", self.list_subscription)
        lb = rf"{lbs}/(?P<lb>{NAME})"
        route("GET", lb, self.get_lb)
        route("PUT", lb, self.put_lb)
        route("PATCH", lb, self.patch_lb)
        route("DELETE", lb, self.delete_lb)
        route("GET", lb + "/backendAddressPools", self.list_pools)
        route("GET", lb + rf"/backendAddressPools/(?P<pool>{NAME})", self.get_pool)

    # --- rendering ---------------------------------------------------------------------------

    @staticmethod
    def _shows_admin_state(request: Request) -> bool:
        return (request.arg("api-version") or "") >= ADMIN_STATE_SINCE

    def nic_members(self, pool_id: str) -> list[tuple[str, str]]:
        """(member name, NIC IP configuration id) of every NIC IP configuration that names the
        pool in its `loadBalancerBackendAddressPools`, named as ARM names them."""
        members = []
        sub, group = owner_of(pool_id)
        for nic in self.network.nics.in_subscription(sub):
            for config in nic.properties["ipConfigurations"]:
                pools = config["properties"].get("loadBalancerBackendAddressPools") or []
                if any(key(ref_id(p) or "") == key(pool_id) for p in pools):
                    members.append((f"{group}_{nic.name}{config['name']}",
                                    f"{nic.id}/ipConfigurations/{config['name']}"))
        return sorted(members)

    def render_pool(self, lb: Resource, pool: Json, request: Request) -> Json:
        pool_id = f"{lb.id}/backendAddressPools/{pool['name']}"
        shown = self._shows_admin_state(request)
        members: list[Json] = []
        configs = []
        for name, config in self.nic_members(pool_id):
            props: Json = {"networkInterfaceIPConfiguration": {"id": config}}
            state = pool["states"].get(name.lower())
            if state is not None and shown:
                props["adminState"] = state
            members.append({"name": name, "properties": props})
            configs.append({"id": config})
        for member in pool["addresses"]:
            props = dict(member["properties"])
            if not shown:
                props.pop("adminState", None)
            members.append({"name": member["name"], "properties": props})
        body: Json = {"provisioningState": lb.state, "loadBalancerBackendAddresses": members}
        if configs:
            body["backendIPConfigurations"] = configs
        return {"id": pool_id, "name": pool["name"], "type": POOL_TYPE, "etag": lb.etag,
                "properties": body}

    def render_lb(self, lb: Resource, request: Request) -> Json:
        props = dict(lb.properties)
        props["provisioningState"] = lb.state
        props["frontendIPConfigurations"] = [
            {"id": f"{lb.id}/frontendIPConfigurations/{f['name']}", "name": f["name"],
             "type": FRONTEND_TYPE, "etag": lb.etag,
             **({"zones": f["zones"]} if f.get("zones") else {}),
             "properties": {**f["properties"], "provisioningState": lb.state}}
            for f in lb.properties["frontendIPConfigurations"]]
        props["backendAddressPools"] = [self.render_pool(lb, p, request)
                                        for p in lb.properties["backendAddressPools"]]
        return lb.envelope(props)

    # --- validation --------------------------------------------------------------------------

    @staticmethod
    def _admin_state(value: Any, where: str) -> str | None:
        if value is None:
            return None
        match = next((s for s in ADMIN_STATES if isinstance(value, str)
                      and s.lower() == value.lower()), None)
        if match is None:
            raise ArmError(400, "InvalidRequestFormat", f"Backend address {where} has adminState "
                           f"{value!r}; allowed: {', '.join(ADMIN_STATES)}.")
        return match

    def _address(self, where: str, props: Json) -> Json:
        """An IP-based member's properties, checked."""
        vnet = ref_id(props.get("virtualNetwork"))
        if not vnet or self.network.vnets.get(vnet) is None:
            raise ArmError(400, "InvalidResourceReference", f"Backend address {where} needs an "
                           "existing virtualNetwork.")
        kept = {k: v for k, v in props.items() if v is not None
                and k in ("ipAddress", "virtualNetwork", "subnet", "adminState")}
        kept["virtualNetwork"] = {"id": vnet}
        state = self._admin_state(props.get("adminState"), where)
        if state is not None:
            kept["adminState"] = state
        return kept

    def _pools(self, lb_id: str, given: list[Any]) -> list[Json]:
        """Each pool as kept: IP-based members (`addresses`) and the admin state set on each
        NIC-based member, by name (`states`); a NIC joins a pool from its own IP configuration."""
        pools: list[Json] = []
        for item in given:
            item = item if isinstance(item, dict) else {}
            name = str(item.get("name") or "")
            if not name:
                raise ArmError(400, "InvalidRequestFormat", f"A backend pool of {lb_id} needs a "
                               "name.")
            pool_id = f"{lb_id}/backendAddressPools/{name}"
            nic_names = {n.lower() for n, _ in self.nic_members(pool_id)}
            addresses: list[Json] = []
            states: dict[str, str] = {}
            seen: set[str] = set()
            for index, raw in enumerate((item.get("properties") or {})
                                        .get("loadBalancerBackendAddresses") or []):
                raw = raw if isinstance(raw, dict) else {}
                member = str(raw.get("name") or "")
                props = raw.get("properties") or {}
                where = f"{member or index} of {pool_id}"
                if not member or member.lower() in seen:
                    raise ArmError(400, "InvalidRequestFormat", f"Backend address {where} needs "
                                   "a name of its own.")
                seen.add(member.lower())
                if props.get("ipAddress"):
                    addresses.append({"name": member, "properties": self._address(where, props)})
                elif member.lower() in nic_names:
                    state = self._admin_state(props.get("adminState"), where)
                    if state is not None:
                        states[member.lower()] = state
                else:
                    raise ArmError(400, "InvalidRequestFormat", f"Backend address {where} has "
                                   "no ipAddress and names no NIC IP configuration of the pool.")
            if addresses and nic_names:
                raise ArmError(400, "BackendAddressPoolMixedBackends", f"Backend pool {pool_id} "
                               "mixes NIC-based and IP-based backend addresses.")
            pools.append({"name": name, "addresses": addresses, "states": states})
        return pools

    @staticmethod
    def _frontends(given: list[Any]) -> list[Json]:
        fronts = []
        for item in given:
            item = item if isinstance(item, dict) else {}
            props = {k: v for k, v in (item.get("properties") or {}).items()
                     if k != "provisioningState"}
            props.setdefault("privateIPAllocationMethod", "Dynamic")
            fronts.append({"name": str(item.get("name") or "frontend"), "properties": props,
                           "zones": item.get("zones")})
        return fronts

    # --- handlers ----------------------------------------------------------------------------

    def _id(self, request: Request) -> str:
        group = self.arm.group(request)
        return f"{group.id}/providers/{LB_TYPE}/{request.params['lb']}"

    def _existing(self, request: Request) -> Resource:
        lb = self.lbs.get(self._id(request))
        if lb is None:
            raise not_found(LB_TYPE, request.params["lb"], request.params["rg"])
        return lb

    def list_group(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.lbs.in_group(*owner_of(group.id)),
                             lambda lb: self.render_lb(lb, request))

    def list_subscription(self, request: Request) -> Response:
        return self.arm.page(request, self.lbs.in_subscription(request.params["sub"]),
                             lambda lb: self.render_lb(lb, request))

    def get_lb(self, request: Request) -> Response:
        return respond(self.render_lb(self._existing(request), request))

    def put_lb(self, request: Request) -> Response:
        lb_id = self._id(request)
        existing = self.lbs.get(lb_id)
        lb_id = existing.id if existing else lb_id
        self.arm.operations.ensure_idle(key(lb_id), lb_id)
        check_if_match(request, existing)
        body = body_of(request)
        location = require_location(body, existing)
        if existing and existing.location != location:
            raise ArmError(400, "InvalidResourceLocation", f"The resource {lb_id} already exists "
                           f"in location {existing.location}; it cannot be moved to {location}.")
        given = body.get("properties") or {}
        fronts = self._frontends(given.get("frontendIPConfigurations") or [])
        pools = self._pools(lb_id, given.get("backendAddressPools") or [])
        props = {k: v for k, v in given.items() if k not in _LB_COMPUTED}
        props["frontendIPConfigurations"] = fronts
        props["backendAddressPools"] = pools
        for name in _CHILD_LISTS:
            props.setdefault(name, [])
        props["resourceGuid"] = (existing.properties["resourceGuid"] if existing
                                 else str(uuid.uuid4()))
        sku = body.get("sku") or (existing.extra.get("sku") if existing else None) or {
            "name": "Standard", "tier": "Regional"}
        lb = Resource(id=lb_id, name=existing.name if existing else request.params["lb"],
                      type=LB_TYPE, location=location, tags=tags_of(body), properties=props,
                      extra={"sku": sku})
        self.lbs.put(lb, *owner_of(lb.id))
        return self.arm.write_response(request, lb, created=existing is None,
                                       kind="loadBalancers", namespace=NS, location=location,
                                       holds=lb.key, render=lambda: self.render_lb(lb, request))

    def patch_lb(self, request: Request) -> Response:
        """Tags only (`TagsObject`), as ARM's PATCH of a load balancer."""
        lb = self._existing(request)
        self.arm.operations.ensure_idle(lb.key, lb.id)
        check_if_match(request, lb)
        body = body_of(request)
        if "tags" in body:
            lb.tags = tags_of(body)
            lb.touch()
        return respond(self.render_lb(lb, request))

    def delete_lb(self, request: Request) -> Response:
        lb = self.lbs.get(self._id(request))
        if lb is None:
            return respond(None, 204)
        self.arm.operations.ensure_idle(lb.key, lb.id)
        check_if_match(request, lb)

        def remove() -> None:
            if self.lbs.get(lb.id) is lb:
                self.lbs.remove(lb, *owner_of(lb.id))

        return self.arm.delete_response(request, lb, kind="loadBalancers", namespace=NS,
                                        location=lb.location or "", holds=lb.key, remove=remove)

    def list_pools(self, request: Request) -> Response:
        lb = self._existing(request)
        return respond({"value": [self.render_pool(lb, p, request)
                                  for p in lb.properties["backendAddressPools"]]})

    def get_pool(self, request: Request) -> Response:
        lb = self._existing(request)
        wanted = request.params["pool"].lower()
        for pool in lb.properties["backendAddressPools"]:
            if pool["name"].lower() == wanted:
                return respond(self.render_pool(lb, pool, request))
        raise child_not_found(f"{lb.id}/backendAddressPools/{request.params['pool']}")
