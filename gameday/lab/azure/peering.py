"""Microsoft.Network's virtual network peerings, as `NetworkProvider` serves them under a VNet:
list, get and put; each rendered with its `remoteVirtualNetwork`, the remote VNet's
`remoteAddressSpace`, and `peeringState` Connected when the remote VNet peers back, Initiated
while it does not, Disconnected once the remote VNet is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gameday.lab.azure.arm import (
    Json,
    Resource,
    Table,
    body_of,
    check_if_match,
    child_not_found,
    key,
    respond,
)
from gameday.lab.azure.references import invalid_reference, ref_id
from gameday.lab.emulator import Request, Response

if TYPE_CHECKING:
    from gameday.lab.azure.emulator import ResourceManagerEmulator

PEERING_TYPE = "Microsoft.Network/virtualNetworks/virtualNetworkPeerings"
_PEERING_COMPUTED = {"provisioningState", "peeringState", "peeringSyncLevel",
                     "remoteAddressSpace", "remoteVirtualNetworkAddressSpace", "resourceGuid"}


class VnetPeerings:
    """The peering half of `NetworkProvider`: peerings by VNet key, then by peering name."""

    arm: ResourceManagerEmulator
    vnets: Table
    peerings: dict[str, dict[str, Resource]]

    def register_peerings(self, vnet_route: str) -> None:
        route = self.arm.route
        route("GET", vnet_route + "/virtualNetworkPeerings", self.list_peerings)
        route("GET", vnet_route + r"/virtualNetworkPeerings/(?P<peering>[^/]+)", self.get_peering)
        route("PUT", vnet_route + r"/virtualNetworkPeerings/(?P<peering>[^/]+)", self.put_peering)

    def _vnet(self, request: Request) -> Resource:
        raise NotImplementedError  # NetworkProvider's

    def peerings_of(self, vnet: Resource) -> list[Resource]:
        return list(self.peerings.get(vnet.key, {}).values())

    def render_peering(self, peering: Resource, vnet_key: str) -> Json:
        props = dict(peering.properties)
        remote = self.vnets.get(ref_id(props.get("remoteVirtualNetwork")) or "")
        if remote is None:
            state = "Disconnected"
        else:
            back = any(key(ref_id(p.properties.get("remoteVirtualNetwork")) or "") == vnet_key
                       for p in self.peerings_of(remote))
            state = "Connected" if back else "Initiated"
            space = remote.properties.get("addressSpace") or {"addressPrefixes": []}
            props["remoteAddressSpace"] = space
            props["remoteVirtualNetworkAddressSpace"] = space
        props["peeringState"] = state
        props["peeringSyncLevel"] = "FullyInSync"
        props["provisioningState"] = peering.state
        return peering.envelope(props)

    def list_peerings(self, request: Request) -> Response:
        vnet = self._vnet(request)
        return self.arm.page(request, self.peerings_of(vnet),
                             lambda p: self.render_peering(p, vnet.key))

    def get_peering(self, request: Request) -> Response:
        vnet = self._vnet(request)
        peering = self.peerings.get(vnet.key, {}).get(request.params["peering"].lower())
        if peering is None:
            raise child_not_found(f"{vnet.id}/virtualNetworkPeerings/{request.params['peering']}")
        return respond(self.render_peering(peering, vnet.key))

    def put_peering(self, request: Request) -> Response:
        vnet = self._vnet(request)
        name = request.params["peering"]
        table = self.peerings.setdefault(vnet.key, {})
        existing = table.get(name.lower())
        check_if_match(request, existing)
        props = {k: v for k, v in (body_of(request).get("properties") or {}).items()
                 if k not in _PEERING_COMPUTED}
        remote_id = ref_id(props.get("remoteVirtualNetwork"))
        peering_id = f"{vnet.id}/virtualNetworkPeerings/{existing.name if existing else name}"
        if not remote_id:
            raise invalid_reference("", peering_id)
        props["remoteVirtualNetwork"] = {"id": remote_id}
        peering = Resource(id=peering_id, name=existing.name if existing else name,
                           type=PEERING_TYPE, properties=props)
        peering.state = "Succeeded"
        table[peering.name.lower()] = peering
        vnet.touch()
        return respond(self.render_peering(peering, vnet.key), 200 if existing else 201)
