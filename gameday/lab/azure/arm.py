"""ARM building blocks shared by the resource families: errors, resource records, tables, paging.

Resources are kept as `Resource` records keyed by their lowercase id (ARM ids are
case-insensitive); handlers render them to fresh dicts and serialise them while holding the
emulator's lock, so a response never shares mutable state with the store.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any
from urllib.parse import quote

from gameday.lab.emulator import ApiError, Request, Response

Json = dict[str, Any]

SUB = r"/subscriptions/(?P<sub>[^/]+)"
GROUP = SUB + r"/resourceGroups/(?P<rg>[^/]+)"
NAME = r"[^/]+"


class ArmError(ApiError):
    """An ARM error: `{"error": {"code", "message", "details"?}}`."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None, details: list[Json] | None = None):
        super().__init__(status, code, message, headers)
        self.details = details or []


def key(resource_id: str) -> str:
    """The lookup key of an ARM id: ids compare case-insensitively, trailing slash ignored."""
    return resource_id.rstrip("/").lower()


def new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def normalize_location(value: str) -> str:
    """`East US` and `eastus` name the same region, as in ARM."""
    return value.replace(" ", "").lower()


@dataclass
class Resource:
    """One ARM resource (or child resource): what was written, plus its provisioning state."""

    id: str
    name: str
    type: str
    location: str | None = None
    tags: dict[str, str] | None = None
    properties: Json = field(default_factory=dict)
    extra: Json = field(default_factory=dict)
    etag: str = field(default_factory=new_etag)
    state: str = "Succeeded"
    children: dict[str, Resource] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return key(self.id)

    def touch(self) -> None:
        self.etag = new_etag()

    def envelope(self, properties: Json) -> Json:
        """The resource as ARM shows it, with `properties` already rendered."""
        body: Json = {"id": self.id, "name": self.name, "type": self.type}
        if self.location is not None:
            body["location"] = self.location
        if self.tags is not None:
            body["tags"] = dict(self.tags)
        body["etag"] = self.etag
        body.update(self.extra)
        body["properties"] = properties
        return body


class Table:
    """Resources of one type by key, indexed by (subscription, resource group) for listing."""

    def __init__(self) -> None:
        self.items: dict[str, Resource] = {}
        self._groups: dict[tuple[str, str], dict[str, Resource]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def get(self, resource_id: str) -> Resource | None:
        return self.items.get(key(resource_id))

    def put(self, resource: Resource, subscription: str, group: str) -> None:
        self.items[resource.key] = resource
        self._groups.setdefault((subscription.lower(), group.lower()), {})[resource.key] = resource

    def remove(self, resource: Resource, subscription: str, group: str) -> None:
        self.items.pop(resource.key, None)
        self._groups.get((subscription.lower(), group.lower()), {}).pop(resource.key, None)

    def in_group(self, subscription: str, group: str) -> Iterable[Resource]:
        return self._groups.get((subscription.lower(), group.lower()), {}).values()

    def in_subscription(self, subscription: str) -> Iterator[Resource]:
        sub = subscription.lower()
        for (owner, _), members in list(self._groups.items()):
            if owner == sub:
                yield from members.values()

    def clear(self) -> None:
        self.items.clear()
        self._groups.clear()


def body_of(request: Request) -> Json:
    """The JSON object in the request body ({} when empty); 400 InvalidRequestContent otherwise."""
    if not request.body:
        return {}
    try:
        value = json.loads(request.body)
    except ValueError as exc:
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could "
                       f"not be deserialized: {exc}") from exc
    if not isinstance(value, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    return value


def respond(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised now (under the emulator's lock)."""
    payload = b"" if body is None else json.dumps(body).encode()
    return Response(status, payload if payload else None, dict(headers or {}))


def check_if_match(request: Request, existing: Resource | None) -> None:
    """Honour `If-Match` / `If-None-Match: *` as ARM does (412 PreconditionFailed)."""
    if_match = request.headers.get("if-match")
    if if_match and if_match != "*" and (existing is None or existing.etag != if_match):
        raise ArmError(412, "PreconditionFailed", "The condition specified using HTTP conditional "
                       "header(s) is not met.")
    if_none = request.headers.get("if-none-match")
    if if_none == "*" and existing is not None:
        raise ArmError(412, "PreconditionFailed", f"Resource {existing.id} already exists.")


def require_location(body: Json, existing: Resource | None) -> str:
    location = body.get("location") or (existing.location if existing else None)
    if not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this "
                       "definition.")
    return normalize_location(str(location))


def tags_of(body: Json) -> dict[str, str] | None:
    """The tags a write sets; None when it sets none (`tags` absent, null or `{}`), so that the
    resource is shown without `tags`, as ARM shows it."""
    tags = body.get("tags") or {}
    if not isinstance(tags, dict):
        raise ArmError(400, "InvalidRequestContent", "tags must be an object of strings.")
    return {str(k): str(v) for k, v in tags.items()} or None


def not_found(resource_type: str, name: str, group: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"The Resource '{resource_type}/{name}' under "
                    f"resource group '{group}' was not found. For more details please go to "
                    "https://aka.ms/ARMResourceNotFoundFix")


def child_not_found(resource_id: str) -> ArmError:
    return ArmError(404, "NotFound", f"Resource {resource_id} not found.")


def page(request: Request, base_url: str, items: Iterable[Resource],
         render: Callable[[Resource], Json], size: int) -> Response:
    """One page of a list: `{"value": [...], "nextLink"?}` with `$skiptoken` as an offset."""
    token = request.arg("$skiptoken") or request.arg("$skipToken") or "0"
    try:
        start = max(0, int(token))
    except ValueError as exc:
        raise ArmError(400, "InvalidSkipToken", f"invalid $skiptoken: {token}") from exc
    chunk = list(islice(items, start, start + size + 1))
    body: Json = {"value": [render(item) for item in chunk[:size]]}
    if len(chunk) > size:
        version = quote(request.arg("api-version") or "", safe="")
        body["nextLink"] = (f"{base_url}{request.path}?api-version={version}"
                            f"&$skiptoken={start + size}")
    return respond(body)
