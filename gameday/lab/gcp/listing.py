"""Paging and filtering of list calls: `maxResults` (default and most 500), `pageToken`, `filter`.

A page token is the position in the unfiltered collection where the next page starts, so paging
through n resources costs O(n) filter evaluations in total. Collections keep insertion order.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, TypeVar

from gameday.lab.emulator import ApiError, Request
from gameday.lab.gcp.filters import FilterError, Predicate, compile_filter

MAX_RESULTS = 500
T = TypeVar("T")


def request_filter(request: Request) -> Predicate:
    try:
        return compile_filter(request.arg("filter"))
    except FilterError as exc:
        raise ApiError(400, "invalid", f"Invalid value for field 'filter': {exc}") from exc


def max_results(request: Request) -> int:
    raw = request.arg("maxResults")
    if raw is None or raw in ("", "0"):
        return MAX_RESULTS
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid", f"Invalid value for field 'maxResults': '{raw}'.") from exc
    if not 0 <= value <= MAX_RESULTS:
        raise ApiError(400, "invalid", f"Invalid value for field 'maxResults': '{raw}'. "
                                       f"Must be less than or equal to {MAX_RESULTS}")
    return value


def _start(request: Request) -> int:
    token = request.arg("pageToken")
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("pos:"))
    except ValueError as exc:
        raise ApiError(400, "invalid", f"Invalid value for field 'pageToken': '{token}'.") from exc


def _token(position: int) -> str:
    return base64.urlsafe_b64encode(f"pos:{position}".encode()).decode()


def page(request: Request, items: Iterable[T], total: int,
         accept: Callable[[T], bool]) -> tuple[list[T], str | None]:
    """One page of `items` (of which there are `total`) that pass `accept`, and the next token."""
    limit = max_results(request)
    position = _start(request)
    chosen: list[T] = []
    for item in islice(items, position, None):
        position += 1
        if accept(item):
            chosen.append(item)
            if len(chosen) == limit:
                break
    return chosen, (_token(position) if len(chosen) == limit and position < total else None)


def list_body(request: Request, kind: str, self_link: str,
              items: Iterable[dict[str, Any]], total: int) -> dict[str, Any]:
    """A `compute#...List` answer: one filtered page of `items`."""
    accept = request_filter(request)
    chosen, token = page(request, items, total, accept)
    body: dict[str, Any] = {"kind": kind, "id": self_link.split("/compute/v1/", 1)[-1],
                            "items": chosen, "selfLink": self_link}
    if token:
        body["nextPageToken"] = token
    return body


def aggregated_body(request: Request, kind: str, self_link: str, field: str,
                    scopes: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """A `compute#...AggregatedList` answer: one filtered page over `scopes` (each scope name,
    such as `zones/us-central1-a`, `regions/us-central1` or `global`, with its resources, in
    order), every scope keyed in `items`, those without results on the page with Compute's
    `NO_RESULTS_ON_PAGE` warning."""
    accept = request_filter(request)

    def pairs() -> Iterable[tuple[str, dict[str, Any]]]:
        for scope, resources in scopes:
            for resource in resources:
                yield scope, resource

    chosen, token = page(request, pairs(), sum(len(resources) for _, resources in scopes),
                         lambda pair: accept(pair[1]))
    found: dict[str, list[dict[str, Any]]] = {}
    for scope, resource in chosen:
        found.setdefault(scope, []).append(resource)
    items: dict[str, Any] = {}
    for scope, _ in scopes:
        if scope in found:
            items[scope] = {field: found[scope]}
        else:
            items[scope] = {"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": f"There are no results for scope '{scope}' on this page.",
                "data": [{"key": "scope", "value": scope}]}}
    body: dict[str, Any] = {"kind": kind, "id": self_link.split("/compute/v1/", 1)[-1],
                            "items": items, "selfLink": self_link}
    if token:
        body["nextPageToken"] = token
    return body
