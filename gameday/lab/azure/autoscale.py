"""Microsoft.Insights autoscale settings: which resource they scale, their profiles, enabled, tags.

Paths: `/subscriptions/{s}/resourcegroups/{rg}/providers/Microsoft.Insights/autoscalesettings`
(list, and `/{name}` GET, PUT, PATCH, DELETE) and the subscription's list. Every write answers
synchronously (200, 201 on creation), as Insights does: no long-running operation, and no etag.
`PUT` needs `location`, `properties.profiles` (1 to 20) and `properties.targetResourceUri`; a
PATCH (`AutoscaleSettingResourcePatch`) replaces the tags when given and merges `properties`
(note: the SDK's patch model always sends `properties.enabled`, false unless set).
"""

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
    not_found,
    require_location,
    respond,
    tags_of,
)
from gameday.lab.azure.network import owner_of
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

SETTING_TYPE = "Microsoft.Insights/autoscaleSettings"
_WRITABLE = {"profiles", "notifications", "enabled", "predictiveAutoscalePolicy", "name",
             "targetResourceUri", "targetResourceLocation"}


class AutoscaleProvider:
    """Autoscale settings by id."""

    def __init__(self, arm: ResourceManagerEmulator):
        self.arm = arm
        self.settings = Table()
        base = GROUP + "/providers/Microsoft\\.Insights/autoscalesettings"
        arm.route("GET", base, self.list_settings)
        arm.route("GET", SUB + "/providers/Microsoft\\.Insights/autoscalesettings", self.list_all)
        one = base + rf"/(?P<setting>{NAME})"
        arm.route("GET", one, self.get_setting)
        arm.route("PUT", one, self.put_setting)
        arm.route("PATCH", one, self.patch_setting)
        arm.route("DELETE", one, self.delete_setting)

    def reset(self) -> None:
        self.settings.clear()

    @staticmethod
    def render(setting: Resource) -> Json:
        body = setting.envelope(dict(setting.properties))
        body.pop("etag", None)  # Insights shows no etag
        return body

    def _id(self, request: Request) -> str:
        return (f"{self.arm.group(request).id}/providers/{SETTING_TYPE}/"
                f"{request.params['setting']}")

    def _existing(self, request: Request) -> Resource:
        setting = self.settings.get(self._id(request))
        if setting is None:
            raise not_found(SETTING_TYPE, request.params["setting"], request.params["rg"])
        return setting

    def list_settings(self, request: Request) -> Response:
        group = self.arm.group(request)
        return self.arm.page(request, self.settings.in_group(*owner_of(group.id)), self.render)

    def list_all(self, request: Request) -> Response:
        return self.arm.page(request, self.settings.in_subscription(request.params["sub"]),
                             self.render)

    def get_setting(self, request: Request) -> Response:
        return respond(self.render(self._existing(request)))

    def put_setting(self, request: Request) -> Response:
        setting_id = self._id(request)
        existing = self.settings.get(setting_id)
        body = body_of(request)
        location = require_location(body, existing)
        props = {k: v for k, v in (body.get("properties") or {}).items() if k in _WRITABLE}
        _check(props)
        props.setdefault("enabled", False)
        props.setdefault("notifications", [])
        props["name"] = existing.name if existing else request.params["setting"]
        setting = Resource(id=existing.id if existing else setting_id, name=props["name"],
                           type=SETTING_TYPE, location=location, tags=tags_of(body),
                           properties=props)
        self.settings.put(setting, *owner_of(setting.id))
        return respond(self.render(setting), 200 if existing else 201)

    def patch_setting(self, request: Request) -> Response:
        setting = self._existing(request)
        body = body_of(request)
        given = {k: v for k, v in (body.get("properties") or {}).items()
                 if k in _WRITABLE - {"name"}}
        merged = {**setting.properties, **given}
        _check(merged)
        setting.properties = merged
        if "tags" in body:
            setting.tags = tags_of(body)
        return respond(self.render(setting))

    def delete_setting(self, request: Request) -> Response:
        setting = self.settings.get(self._id(request))
        if setting is None:
            return respond(None, 204)
        self.settings.remove(setting, *owner_of(setting.id))
        return respond(None, 200)


def _check(props: Json) -> None:
    profiles = props.get("profiles")
    if not isinstance(profiles, list) or not 1 <= len(profiles) <= 20:
        raise ArmError(400, "InvalidRequestContent", "The autoscale setting must have between 1 "
                       "and 20 profiles.")
    if not props.get("targetResourceUri"):
        raise ArmError(400, "InvalidRequestContent", "The property 'targetResourceUri' is "
                       "required.")
    if not isinstance(props.get("enabled", False), bool):
        raise ArmError(400, "InvalidRequestContent", "The property 'enabled' must be a boolean.")


def monitor_client(endpoint: str, ca_bundle: str | None, subscription: str, **options: Any) -> Any:
    """azure-mgmt-monitor's client for the emulator, configured as `clients.connect` configures
    the others."""
    from azure.mgmt.monitor import MonitorManagementClient

    from activities.azure import StaticTokenCredential

    settings: dict[str, Any] = {"base_url": endpoint.rstrip("/"), "polling_interval": 0}
    if ca_bundle:
        settings["connection_verify"] = ca_bundle
    settings.update(options)
    return MonitorManagementClient(StaticTokenCredential(), subscription, **settings)
