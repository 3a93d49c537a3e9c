"""`AssociateRouteTable` as EC2 answers it, where moto is laxer (the lab's AWS proxy calls this).

moto accepts an association of a subnet that already has an explicit one (it silently moves the
subnet, where EC2 refuses with `Resource.AlreadyAssociated`) and of a route table that does not
exist (EC2: `InvalidRouteTableID.NotFound`). Either laxness would hide a partition bug: an apply
that associates where it must replace, or a move onto a copy already deleted. Each check is made
under the proxy's lock, so it is atomic with the call."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from gameday.lab.emulator import ApiError, Request, Response

Forward = Callable[[Request], Response]


def _describe(request: Request, forward: Forward, **params: str) -> bytes:
    """moto's DescribeRouteTables answer for `params` (asked with the caller's headers)."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    body = f"Action=DescribeRouteTables&Version=2016-11-15&{query}".encode()
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return forward(Request(method="POST", path="/", query={}, headers=headers, body=body)).body


def associate_route_table(request: Request, forward: Forward) -> Response:
    form = parse_qs((request.body or b"").decode(errors="replace"))
    table = (form.get("RouteTableId") or [""])[0]
    subnet = (form.get("SubnetId") or [""])[0]
    if table:
        found = _describe(request, forward, **{"Filter.1.Name": "route-table-id",
                                                "Filter.1.Value.1": table})
        if f"<routeTableId>{table}<".encode() not in found:
            raise ApiError(400, "InvalidRouteTableID.NotFound",
                           f"The routeTable ID '{table}' does not exist")
    if subnet:
        held = _describe(request, forward, **{"Filter.1.Name": "association.subnet-id",
                                               "Filter.1.Value.1": subnet})
        if f"<subnetId>{subnet}<".encode() in held:
            raise ApiError(400, "Resource.AlreadyAssociated",
                           f"the specified association for route table {table} conflicts with "
                           "an existing association")
    return forward(request)
