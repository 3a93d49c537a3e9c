"""Traffic Manager profiles (location `global`) and their endpoints; every write is synchronous."""

from __future__ import annotations

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
    normalize_location,
    not_found,
    respond,
    tags_of,
)
from gameday.lab.azure.network import owner_of
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

PROFILE_TYPE = "Microsoft.Network/trafficManagerProfiles"
ENDPOINT_SEGMENTS = {"azureendpoints": "azureEndpoints", "externalendpoints": "externalEndpoints",
                     "nestedendpoints": "nestedEndpoints"}
ROUTING_METHODS = ("Performance", "Priority", "Weighted", "Geographic", "MultiValue", "Subnet")
_ENDPOINT_COMPUTED = {"endpointMonitorStatus"}
_PROFILE_COMPUTED = {"endpoints", "provisioningState"}


def _status(value: Any, field: str, default: str) -> str:
    if value is None:
        return default
    for allowed in ("Enabled", "Disabled"):
        if isinstance(value, str) and value.lower() == allowed.lower():
            return allowed
    raise ArmError(400, "BadRequest", f"The value '{value}' of {field} is invalid. Allowed values: "
                   "Enabled, Disabled.")


class TrafficManagerProvider:
    """Profiles with endpoints as child resources (`{type}/{name}` under the profile)."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        self.profiles = Table()
        profiles = GROUP + "/providers/Microsoft\\.Network/trafficmanagerprofiles"
        profile = profiles + rf"/(?P<profile>{NAME})"
        endpoint = (profile + r"/(?P<etype>AzureEndpoints|ExternalEndpoints|NestedEndpoints)"
                    rf"/(?P<endpoint>{NAME})")
        arm.route("GET", profiles, self.list_profiles)
        arm.route("GET", SUB + "/providers/Microsoft\\.Network/trafficmanagerprofiles",
                  self.list_all)
        arm.route("GET", profile, self.get_profile)
        arm.route("PUT", profile, self.put_profile)
        arm.route("PATCH", profile, self.patch_profile)
        arm.route("DELETE", profile, self.delete_profile)
        arm.route("GET", endpoint, self.get_endpoint)
        arm.route("PUT", endpoint, self.put_endpoint)
        arm.route("PATCH", endpoint, self.patch_endpoint)
        arm.route("DELETE", endpoint, self.delete_endpoint)

    def reset(self) -> None:
        self.profiles.clear()

    # --- rendering -------------------------------------------------------------------------

    def render_endpoint(self, endpoint: Resource, profile: Resource) -> Json:
        props = dict(endpoint.properties)
        if "Disabled" in (profile.properties["profileStatus"], props["endpointStatus"]):
            props["endpointMonitorStatus"] = "Disabled"
        else:
            props["endpointMonitorStatus"] = "Online"
        props["provisioningState"] = endpoint.state
        return endpoint.envelope(props)

    def render(self, profile: Resource) -> Json:
        props = dict(profile.properties)
        endpoints = [self.render_endpoint(e, profile) for e in profile.children.values()]
        monitor = dict(props.get("monitorConfig") or {})
        if props["profileStatus"] == "Disabled":
            monitor["profileMonitorStatus"] = "Disabled"
        elif any(e["properties"]["endpointMonitorStatus"] == "Online" for e in endpoints):
            monitor["profileMonitorStatus"] = "Online"
        else:
            monitor["profileMonitorStatus"] = "Inactive"
        props["monitorConfig"] = monitor
        props["endpoints"] = endpoints
        props["provisioningState"] = profile.state
        return profile.envelope(props)

    # --- profiles --------------------------------------------------------------------------

    def _profile_id(self, request: Request) -> str:
        return f"{self.arm.group(request).id}/providers/{PROFILE_TYPE}/{request.params['profile']}"

    def _profile(self, request: Request) -> Resource:
        profile = self.profiles.get(self._profile_id(request))
        if profile is None:
            raise not_found(PROFILE_TYPE, request.params["profile"], request.params["rg"])
        return profile

    def list_profiles(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.profiles.in_group(*owner_of(group.id)), self.render)

    def list_all(self, request: Request) -> Response:
        return self.arm.page(request, self.profiles.in_subscription(request.params["sub"]),
                             self.render)

    def get_profile(self, request: Request) -> Response:
        return respond(self.render(self._profile(request)))

    def _profile_properties(self, given: Json, name: str) -> Json:
        props = {k: v for k, v in given.items() if k not in _PROFILE_COMPUTED}
        props["profileStatus"] = _status(props.get("profileStatus"), "profileStatus", "Enabled")
        method = props.get("trafficRoutingMethod")
        if method not in ROUTING_METHODS:
            raise ArmError(400, "BadRequest", f"The value '{method}' of trafficRoutingMethod is "
                           f"invalid. Allowed values: {', '.join(ROUTING_METHODS)}.")
        dns = dict(props.get("dnsConfig") or {})
        relative = dns.get("relativeName") or name
        dns.update(relativeName=relative, fqdn=f"{relative.lower()}.trafficmanager.net",
                   ttl=dns.get("ttl", 30))
        props["dnsConfig"] = dns
        monitor = {k: v for k, v in (props.get("monitorConfig") or {}).items()
                   if k != "profileMonitorStatus"}
        monitor.setdefault("protocol", "HTTP")
        monitor.setdefault("port", 80)
        monitor.setdefault("path", "/")
        props["monitorConfig"] = monitor
        props.setdefault("trafficViewEnrollmentStatus", "Disabled")
        return props

    def put_profile(self, request: Request) -> Response:
        profile_id = self._profile_id(request)
        existing = self.profiles.get(profile_id)
        check_if_match(request, existing)
        body = body_of(request)
        location = normalize_location(str(body.get("location") or "global"))
        if location != "global":
            raise ArmError(400, "LocationNotAvailableForResourceType", f"The provided location "
                           f"'{location}' is not available for resource type '{PROFILE_TYPE}'. "
                           "List of available regions for the resource type is 'global'.")
        name = existing.name if existing else request.params["profile"]
        given = body.get("properties") or {}
        profile = Resource(id=existing.id if existing else profile_id, name=name,
                           type=PROFILE_TYPE, location="global", tags=tags_of(body),
                           properties=self._profile_properties(given, name))
        for item in given.get("endpoints") or []:
            endpoint = self._endpoint(profile, self._segment_of(item), str(item.get("name") or ""),
                                      item, None)
            profile.children[endpoint.name.lower()] = endpoint
        self.profiles.put(profile, *owner_of(profile.id))
        return respond(self.render(profile), 200 if existing else 201)

    def patch_profile(self, request: Request) -> Response:
        profile = self._profile(request)
        check_if_match(request, profile)
        body = body_of(request)
        if "tags" in body:
            profile.tags = tags_of(body)
        given = body.get("properties") or {}
        merged = {**profile.properties, **{k: v for k, v in given.items() if k != "endpoints"}}
        profile.properties = self._profile_properties(merged, profile.name)
        if given.get("endpoints") is not None:
            profile.children = {}
            for item in given["endpoints"]:
                endpoint = self._endpoint(profile, self._segment_of(item),
                                          str(item.get("name") or ""), item, None)
                profile.children[endpoint.name.lower()] = endpoint
        profile.touch()
        return respond(self.render(profile))

    def delete_profile(self, request: Request) -> Response:
        profile = self.profiles.get(self._profile_id(request))
        if profile is None:
            return respond(None, 204)
        check_if_match(request, profile)
        self.profiles.remove(profile, *owner_of(profile.id))
        return respond({"boolean": True})

    # --- endpoints -------------------------------------------------------------------------

    @staticmethod
    def _segment_of(item: Json) -> str:
        kind = str(item.get("type") or "").rsplit("/", 1)[-1].lower()
        if kind not in ENDPOINT_SEGMENTS:
            raise ArmError(400, "BadRequest", f"Endpoint '{item.get('name')}' needs a type such as "
                           f"'{PROFILE_TYPE}/azureEndpoints'.")
        return ENDPOINT_SEGMENTS[kind]

    def _endpoint(self, profile: Resource, segment: str, name: str, body: Json,
                  existing: Resource | None) -> Resource:
        if not name:
            raise ArmError(400, "BadRequest", "Every endpoint needs a name.")
        given = {k: v for k, v in (body.get("properties") or {}).items()
                 if k not in _ENDPOINT_COMPUTED and k != "provisioningState"}
        props = {**(existing.properties if existing else {}), **given}
        props["endpointStatus"] = _status(props.get("endpointStatus"), "endpointStatus", "Enabled")
        needs = "target" if segment == "externalEndpoints" else "targetResourceId"
        if not props.get(needs):
            raise ArmError(400, "BadRequest", f"Endpoint '{name}' of type {segment} requires "
                           f"'{needs}'.")
        method = profile.properties["trafficRoutingMethod"]
        if method == "Weighted":
            props.setdefault("weight", 1)
        if method == "Priority" and props.get("priority") is None:
            props["priority"] = 1 + len([e for e in profile.children.values()
                                         if e.name.lower() != name.lower()])
        located = props.get("endpointLocation") or segment == "azureEndpoints"
        if method == "Performance" and not located:
            raise ArmError(400, "BadRequest", f"Endpoint '{name}' requires 'endpointLocation' for "
                           "the Performance traffic routing method.")
        return Resource(id=f"{profile.id}/{segment}/{name}", name=name,
                        type=f"{PROFILE_TYPE}/{segment}", properties=props)

    def _find_endpoint(self, request: Request) -> tuple[Resource, str, Resource | None]:
        profile = self._profile(request)
        segment = ENDPOINT_SEGMENTS[request.params["etype"].lower()]
        endpoint = profile.children.get(request.params["endpoint"].lower())
        if endpoint is not None and not endpoint.type.endswith(f"/{segment}"):
            endpoint = None
        return profile, segment, endpoint

    def get_endpoint(self, request: Request) -> Response:
        profile, segment, endpoint = self._find_endpoint(request)
        if endpoint is None:
            raise child_not_found(f"{profile.id}/{segment}/{request.params['endpoint']}")
        return respond(self.render_endpoint(endpoint, profile))

    def put_endpoint(self, request: Request) -> Response:
        profile, segment, existing = self._find_endpoint(request)
        check_if_match(request, existing)
        name = existing.name if existing else request.params["endpoint"]
        clash = profile.children.get(name.lower())
        if existing is None and clash is not None:
            raise ArmError(409, "Conflict", f"An endpoint named '{name}' already exists in profile "
                           f"'{profile.name}' with type {clash.type}.")
        endpoint = self._endpoint(profile, segment, name, body_of(request), None)
        profile.children[name.lower()] = endpoint
        profile.touch()
        return respond(self.render_endpoint(endpoint, profile), 200 if existing else 201)

    def patch_endpoint(self, request: Request) -> Response:
        profile, segment, existing = self._find_endpoint(request)
        if existing is None:
            raise child_not_found(f"{profile.id}/{segment}/{request.params['endpoint']}")
        check_if_match(request, existing)
        endpoint = self._endpoint(profile, segment, existing.name, body_of(request), existing)
        profile.children[existing.name.lower()] = endpoint
        profile.touch()
        return respond(self.render_endpoint(endpoint, profile))

    def delete_endpoint(self, request: Request) -> Response:
        profile, _, endpoint = self._find_endpoint(request)
        if endpoint is None:
            return respond(None, 204)
        check_if_match(request, endpoint)
        del profile.children[endpoint.name.lower()]
        profile.touch()
        return respond({"boolean": True})
